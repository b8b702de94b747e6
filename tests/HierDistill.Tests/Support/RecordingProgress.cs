using HierDistill.Host.Training;

namespace HierDistill.Tests.Support;

/// <summary>A progress reporter that records every report (task name, done, total, status) and can act on each.</summary>
internal sealed class RecordingProgress(Action<string, long, long>? onReport = null) : IProgressReporter
{
    /// <summary>Every report so far, in order.</summary>
    public List<(string Name, long Done, long Total, string Status)> Reports { get; } = [];

    public IProgressTask Start(string name, long total) => new Task(this, name, total);

    private sealed class Task(RecordingProgress owner, string name, long total) : IProgressTask
    {
        public void Report(long done, string status)
        {
            owner.Reports.Add((name, done, total, status));
            owner.OnReport?.Invoke(name, done, total);
        }

        public void Dispose() { }
    }

    private Action<string, long, long>? OnReport { get; } = onReport;
}
