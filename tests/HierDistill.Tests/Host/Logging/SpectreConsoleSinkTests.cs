using HierDistill.Host.Logging;
using Serilog.Events;
using Serilog.Formatting.Display;
using Serilog.Parsing;
using Spectre.Console;
using Xunit;

namespace HierDistill.Tests.Host.Logging;

/// <summary>The live-display log sink: errors go where standard error was redirected, other lines to the live console.</summary>
public class SpectreConsoleSinkTests
{
    private static LogEvent Event(LogEventLevel level, string text) =>
        new(DateTimeOffset.Now, level, null, new MessageTemplateParser().Parse(text), []);

    private static (SpectreConsoleSink Sink, StringWriter Live) Sink(TextWriter? errors)
    {
        var live = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Out = new AnsiConsoleOutput(live),
        });
        return (new SpectreConsoleSink(new MessageTemplateTextFormatter("{Level:u3} {Message:lj}{NewLine}"), console, errors), live);
    }

    [Fact]
    public void With_standard_error_redirected_error_lines_go_there_and_the_rest_to_the_live_console()
    {
        var errors = new StringWriter();
        var (sink, live) = Sink(errors);
        sink.Emit(Event(LogEventLevel.Information, "step 10 of 100"));
        sink.Emit(Event(LogEventLevel.Warning, "slow disk"));
        sink.Emit(Event(LogEventLevel.Error, "loss is NaN at step 11"));
        sink.Emit(Event(LogEventLevel.Fatal, "run:zzz: failed"));

        Assert.Contains("INF step 10 of 100", live.ToString());
        Assert.Contains("WRN slow disk", live.ToString());
        Assert.DoesNotContain("NaN", live.ToString());
        Assert.DoesNotContain("failed", live.ToString());
        Assert.Equal($"ERR loss is NaN at step 11{Environment.NewLine}FTL run:zzz: failed{Environment.NewLine}", errors.ToString());
    }

    [Fact]
    public void Without_a_redirected_standard_error_every_line_goes_to_the_live_console_as_typed()
    {
        var (sink, live) = Sink(null);
        sink.Emit(Event(LogEventLevel.Information, "step 10 of 100"));
        sink.Emit(Event(LogEventLevel.Error, "run:zzz: failed [red]"));

        Assert.Contains("INF step 10 of 100", live.ToString());
        Assert.Contains("ERR run:zzz: failed [red]", live.ToString());
    }
}
