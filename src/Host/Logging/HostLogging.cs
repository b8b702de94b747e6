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
            ? config.WriteTo.Sink(new SpectreConsoleSink(new MessageTemplateTextFormatter(ConsoleTemplate)), LogEventLevel.Information)
            : config.WriteTo.Console(outputTemplate: ConsoleTemplate, standardErrorFromLevel: LogEventLevel.Error,
                restrictedToMinimumLevel: LogEventLevel.Information);
        if (logFile is not null) config = config.WriteTo.File(logFile, outputTemplate: FileTemplate);
        return config.CreateLogger();
    }
}

/// <summary>Writes log events through Spectre.Console so that they render above a live progress display.</summary>
public sealed class SpectreConsoleSink(ITextFormatter formatter) : ILogEventSink
{
    /// <inheritdoc/>
    public void Emit(LogEvent logEvent)
    {
        using var writer = new StringWriter();
        formatter.Format(logEvent, writer);
        var style = logEvent.Level switch
        {
            >= LogEventLevel.Error => new Style(Color.Red),
            LogEventLevel.Warning => new Style(Color.Yellow),
            _ => Style.Plain,
        };
        AnsiConsole.Write(new Text(writer.ToString(), style));
    }
}
