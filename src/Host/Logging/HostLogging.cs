using Microsoft.Extensions.Configuration;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting;
using Serilog.Formatting.Display;
using Spectre.Console;

namespace HierDistill.Host.Logging;

/// <summary>
/// Serilog set-up: levels and extra sinks from the config's <c>Serilog</c> section
/// (Serilog.Settings.Configuration), plus the console and, for runs, <c>log.txt</c> in the run folder.
/// </summary>
public static class HostLogging
{
    private const string ConsoleTemplate = "[{Timestamp:HH:mm:ss} {Level:u3}] {Message:lj}{NewLine}";
    private const string FileTemplate = "{Timestamp:yyyy-MM-dd HH:mm:ss.fff} [{Level:u3}] {SourceContext} {Message:lj}{NewLine}{Exception}";

    /// <summary>Whether stdout is an interactive terminal (live progress) rather than redirected output.</summary>
    public static bool Interactive => !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    /// <summary>Checks the config's <c>Serilog</c> section by building a logger from it alone (sinks it names are created and disposed).</summary>
    /// <returns>The problem, or null when the section is usable or absent.</returns>
    public static string? Check(IConfiguration configuration)
    {
        if (!configuration.GetSection("Serilog").Exists()) return null;
        try
        {
            using var logger = new LoggerConfiguration().ReadFrom.Configuration(configuration).CreateLogger();
            return null;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return e.Message;
        }
    }

    /// <summary>Creates the logger.</summary>
    /// <param name="configuration">The run's configuration (its <c>Serilog</c> section is applied), or null.</param>
    /// <param name="logFile">A log file to write (the run folder's <c>log.txt</c>), or null.</param>
    /// <param name="liveConsole">Write console lines through Spectre.Console so they appear above a live progress display.</param>
    public static Logger Create(IConfiguration? configuration, string? logFile, bool liveConsole)
    {
        var config = new LoggerConfiguration().MinimumLevel.Debug().Enrich.FromLogContext();
        if (configuration is not null && configuration.GetSection("Serilog").Exists())
            config = config.ReadFrom.Configuration(configuration);
        // The console shows Information and above without stack traces; the file also keeps Debug events (stack traces).
        config = liveConsole
            ? config.WriteTo.Sink(new SpectreConsoleSink(new MessageTemplateTextFormatter(ConsoleTemplate),
                errors: Console.IsErrorRedirected ? Console.Error : null), LogEventLevel.Information)
            : config.WriteTo.Console(outputTemplate: ConsoleTemplate, standardErrorFromLevel: LogEventLevel.Error,
                restrictedToMinimumLevel: LogEventLevel.Information);
        if (logFile is not null) config = config.WriteTo.File(logFile, outputTemplate: FileTemplate);
        return config.CreateLogger();
    }
}

/// <summary>
/// Writes log events through Spectre.Console so that they render above a live progress display; <c>Error</c> and
/// <c>Fatal</c> lines go to <paramref name="errors"/> instead when one is given (standard error redirected away from the
/// terminal, e.g. <c>2&gt; errors.log</c>, so that errors land where the user sent them).
/// </summary>
/// <param name="formatter">Formats one event as one line.</param>
/// <param name="console">The console of the live display; default <see cref="AnsiConsole.Console"/>.</param>
/// <param name="errors">Where error lines go as plain text, or null to show them on <paramref name="console"/> in red.</param>
public sealed class SpectreConsoleSink(ITextFormatter formatter, IAnsiConsole? console = null, TextWriter? errors = null) : ILogEventSink
{
    /// <inheritdoc/>
    public void Emit(LogEvent logEvent)
    {
        using var writer = new StringWriter();
        formatter.Format(logEvent, writer);
        if (errors is not null && logEvent.Level >= LogEventLevel.Error)
        {
            errors.Write(writer.ToString());
            errors.Flush();
            return;
        }
        var style = logEvent.Level switch
        {
            >= LogEventLevel.Error => new Style(Color.Red),
            LogEventLevel.Warning => new Style(Color.Yellow),
            _ => Style.Plain,
        };
        (console ?? AnsiConsole.Console).Write(new Text(writer.ToString(), style));
    }
}
