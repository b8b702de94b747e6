using HierDistill.Host.Training;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Xunit;

namespace HierDistill.Tests.Host.Training;

/// <summary>The plain progress lines of redirected output (CI logs, log.txt).</summary>
public class ProgressReporterTests
{
    private sealed class Lines : ILogEventSink
    {
        public List<string> Messages { get; } = [];
        public void Emit(LogEvent logEvent) => Messages.Add(logEvent.RenderMessage());
    }

    private static (IProgressReporter Reporter, Lines Lines) Reporter()
    {
        var lines = new Lines();
        var logger = new LoggerConfiguration().WriteTo.Sink(lines).CreateLogger();
        // Interval zero: every report may print a periodic line (as when a logged step takes longer than the interval).
        return (new LogProgressReporter(logger, TimeSpan.Zero), lines);
    }

    [Fact]
    public void The_last_line_says_done_or_stopped_once_with_the_last_loss_and_where_a_resumed_stage_started()
    {
        var (reporter, lines) = Reporter();
        using (var task = reporter.Start("teacher", 10)) task.Report(10, "loss 0.5");
        using (var task = reporter.Start("structure", 10))
        {
            task.Report(3, "loss 0.7");
            task.Report(3, IProgressTask.Stopped);
        }
        using (var task = reporter.Start("detail", 10))
        {
            task.Report(4, IProgressTask.Resumed);
            task.Report(10, "");
        }
        using (var task = reporter.Start("detail", 10)) task.Report(6, IProgressTask.Resumed);
        var closing = lines.Messages.Where(m => m.Contains(" done ") || m.Contains(" stopped at ")).ToList();
        Assert.Equal(4, closing.Count);
        Assert.Matches(@"^""?teacher""?: done 10/10 in \d+\.\ds ""?loss 0\.5""?$", closing[0]);
        Assert.Matches(@"^""?structure""?: stopped at 3/10 after \d+\.\ds ""?loss 0\.7""?$", closing[1]);
        // "stopped" and "resumed" appear in no periodic line: the closing lines say them.
        Assert.Equal(2, lines.Messages.Count(m => m.Contains("stopped")));
        Assert.Equal(0, lines.Messages.Count(m => m.Contains("resumed") && !m.Contains("(resumed at")));
        Assert.Matches(@"^""?detail""?: done 10/10 in \d+\.\ds \(resumed at 4\)$", closing[2]);
        Assert.Matches(@"^""?detail""?: stopped at 6/10 after \d+\.\ds \(resumed at 6\)$", closing[3]);
    }
}
