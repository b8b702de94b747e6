using System.Diagnostics;
using Serilog;
using Spectre.Console;

namespace HierDistill.Host.Training;

/// <summary>Reports the progress of long work: a live display on a terminal, plain periodic log lines otherwise.</summary>
public interface IProgressReporter
{
    /// <summary>Starts a task of <paramref name="total"/> units.</summary>
    IProgressTask Start(string name, long total);
}

/// <summary>One task's progress.</summary>
public interface IProgressTask : IDisposable
{
    /// <summary>The status a training loop reports when a signal stops it (the display then keeps that step).</summary>
    const string Stopped = "stopped";

    /// <summary>The status a training loop reports first when it continues a resumed stage (the display then starts at that step).</summary>
    const string Resumed = "resumed";

    /// <summary>Sets the completed units and a short status (e.g. the latest loss).</summary>
    void Report(long done, string status);
}

/// <summary>Helpers of <see cref="IProgressTask"/>.</summary>
public static class ProgressTaskExtensions
{
    /// <summary>
    /// When <paramref name="cancellation"/> is cancelled (Ctrl-C, SIGTERM): shows the task stopped at <paramref name="done"/>
    /// and throws; otherwise nothing. For loops with nothing to save at the stop (the evaluation, the classifier).
    /// </summary>
    /// <exception cref="OperationCanceledException">When cancelled.</exception>
    public static void StopIfCancelled(this IProgressTask task, long done, CancellationToken cancellation)
    {
        if (!cancellation.IsCancellationRequested) return;
        task.Report(done, IProgressTask.Stopped);
        cancellation.ThrowIfCancellationRequested();
    }
}

/// <summary>Periodic log lines (for CI and redirected output): at most one every <c>interval</c>, plus start and end.</summary>
public sealed class LogProgressReporter(ILogger logger, TimeSpan interval) : IProgressReporter
{
    /// <inheritdoc/>
    public IProgressTask Start(string name, long total) => new Task(logger, interval, name, total);

    private sealed class Task(ILogger logger, TimeSpan interval, string name, long total) : IProgressTask
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private TimeSpan _last = TimeSpan.Zero;
        private long _done;
        private long _resumedAt = -1;
        private string _status = "";

        public void Report(long done, string status)
        {
            if (status == IProgressTask.Resumed && _resumedAt < 0) _resumedAt = done;
            _done = done;
            // Stopped and resumed are said by the closing line (and the loop's own log line), not by a periodic one.
            if (status is IProgressTask.Stopped or IProgressTask.Resumed) return;
            _status = status;
            if (_clock.Elapsed - _last < interval) return;
            _last = _clock.Elapsed;
            logger.Information("{Task}: {Done}/{Total} ({Percent:0}%, {Elapsed:0.0}s) {Status}", name, done, total,
                100.0 * done / Math.Max(1, total), _clock.Elapsed.TotalSeconds, status);
        }

        public void Dispose()
        {
            // The last status (a loss) when it says more than the line itself; the time is this process's, so a resumed stage
            // says where it started.
            string status = _status;
            string since = _resumedAt > 0 ? $" (resumed at {_resumedAt})" : "";
            if (_done >= total)
                logger.Information("{Task}: done {Done}/{Total} in {Elapsed:0.0}s{Since:l}{Status:l}", name, _done, total, _clock.Elapsed.TotalSeconds,
                    since, status.Length > 0 ? " " + status : "");
            else
                logger.Warning("{Task}: stopped at {Done}/{Total} after {Elapsed:0.0}s{Since:l}{Status:l}", name, _done, total, _clock.Elapsed.TotalSeconds,
                    since, status.Length > 0 ? " " + status : "");
        }
    }
}

/// <summary>A Spectre.Console live progress display; log lines written through <see cref="Logging.SpectreConsoleSink"/> appear above it.</summary>
public sealed class SpectreProgressReporter(ProgressContext context) : IProgressReporter
{
    /// <inheritdoc/>
    public IProgressTask Start(string name, long total) => new Task(context.AddTask(Markup.Escape(name), maxValue: Math.Max(1, total)), name);

    private sealed class Task(ProgressTask task, string name) : IProgressTask
    {
        private bool _stopped;

        public void Report(long done, string status)
        {
            task.Value = done;
            task.Description = Markup.Escape(status.Length > 0 ? $"{name} {status}" : name);
            _stopped = status == IProgressTask.Stopped;
        }

        public void Dispose()
        {
            // A finished task shows 100 %; one stopped by a signal keeps the step it stopped at.
            if (!_stopped) task.Value = task.MaxValue;
            task.StopTask();
        }
    }
}
