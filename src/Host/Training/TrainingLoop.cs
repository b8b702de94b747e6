using System.Diagnostics;
using System.Globalization;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Losses;
using HierDistill.Host.Pipeline;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Host.Training;

/// <summary>The values one training step reports: loss tensors (read only on logging steps) and plain numbers.</summary>
public sealed class StepLog
{
    private readonly Dictionary<string, Tensor> _tensors = new();
    private readonly Dictionary<string, double> _values = new();

    /// <summary>Adds every value of a loss breakdown under <paramref name="prefix"/> (e.g. <c>student/loss</c>).</summary>
    public void Add(string prefix, LossBreakdown loss)
    {
        foreach (var (name, t) in loss.All()) _tensors[Key(prefix, name)] = t;
    }

    /// <summary>Adds an optimiser step's gradient norm and learning rate under <paramref name="prefix"/>.</summary>
    public void Add(string prefix, StepOutcome outcome)
    {
        _values[Key(prefix, "grad_norm")] = outcome.GradNorm;
        _values[Key(prefix, "lr")] = outcome.LearningRate;
        if (!outcome.Applied) _values[Key(prefix, "skipped")] = 1;
    }

    /// <summary>Adds a number.</summary>
    public void Add(string name, double value) => _values[name] = value;

    /// <summary>Materialises every value (synchronises with the device).</summary>
    public Dictionary<string, double> Read()
    {
        var result = new Dictionary<string, double>(_values);
        foreach (var (name, t) in _tensors) result[name] = t.to_type(ScalarType.Float64).cpu().item<double>();
        return result;
    }

    private static string Key(string prefix, string name) => string.IsNullOrEmpty(prefix) ? name : $"{prefix}/{name}";
}

/// <summary>
/// The one training loop (design.md): every step in its own dispose scope, values read and logged
/// only every <c>run.logEvery</c> steps, progress reported, Ctrl-C honoured at step boundaries.
/// </summary>
public static class TrainingLoop
{
    /// <summary>Runs <paramref name="steps"/> steps of <paramref name="step"/>.</summary>
    /// <param name="run">The run context.</param>
    /// <param name="stage">Stage key (for logs and metrics).</param>
    /// <param name="steps">Number of steps.</param>
    /// <param name="step">One step; returns what to log.</param>
    /// <param name="statusKey">The logged value shown in the progress line.</param>
    /// <returns>Wall time in seconds.</returns>
    /// <exception cref="OperationCanceledException">When cancelled.</exception>
    public static double Run(RunContext run, string stage, long steps, Func<TrainingProgress, StepLog> step, string statusKey)
    {
        var clock = Stopwatch.StartNew();
        int logEvery = run.Config.Config.Run.LogEvery;
        using var task = run.Progress.Start(stage, steps);
        for (long i = 0; i < steps; i++)
        {
            run.Cancellation.ThrowIfCancellationRequested();
            // Tensors alive between steps (parameters, optimiser state, EMA): constant unless something leaks.
            long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            using var scope = NewDisposeScope();
            var log = step(new TrainingProgress(i, steps));
            if (i % logEvery == 0 || i == steps - 1)
            {
                var values = log.Read();
                values["steps_per_s"] = (i + 1) / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                values["live_tensors"] = live;
                run.Metrics.Log(stage, i, values);
                string status = values.TryGetValue(statusKey, out var v) ? $"{statusKey}={v.ToString("0.0000", CultureInfo.InvariantCulture)}" : "";
                task.Report(i + 1, status);
            }
        }
        run.Metrics.Flush();
        return clock.Elapsed.TotalSeconds;
    }
}
