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
    private readonly HashSet<string> _omitWhenZero = new();

    /// <summary>Adds every value of a loss breakdown under <paramref name="prefix"/> (e.g. <c>student/loss</c>).</summary>
    public void Add(string prefix, LossBreakdown loss)
    {
        foreach (var (name, t) in loss.All()) _tensors[Key(prefix, name)] = t;
    }

    /// <summary>
    /// Adds an optimiser step's gradient norm, learning rate and skip counts under <paramref name="prefix"/> (<c>skipped</c> and
    /// <c>skipped_total</c> are dropped when 0).
    /// </summary>
    public void Add(string prefix, StepOutcome outcome)
    {
        _tensors[Key(prefix, "grad_norm")] = outcome.GradNorm;
        _values[Key(prefix, "lr")] = outcome.LearningRate;
        _tensors[Key(prefix, "skipped")] = 1 - outcome.Applied;
        _tensors[Key(prefix, "skipped_total")] = outcome.SkippedTotal;
        _omitWhenZero.Add(Key(prefix, "skipped"));
        _omitWhenZero.Add(Key(prefix, "skipped_total"));
    }

    /// <summary>Adds a number.</summary>
    public void Add(string name, double value) => _values[name] = value;

    /// <summary>Materialises every value with one transfer from the device.</summary>
    public Dictionary<string, double> Read()
    {
        var result = new Dictionary<string, double>(_values);
        if (_tensors.Count == 0) return result;
        var names = _tensors.Keys.ToList();
        using var scope = NewDisposeScope();
        var device = _tensors[names[0]].device;
        var values = stack(names.Select(n => _tensors[n].detach().reshape([]).to_type(ScalarType.Float64).to(device))).cpu().data<double>().ToArray();
        for (int i = 0; i < names.Count; i++)
            if (!(values[i] == 0 && _omitWhenZero.Contains(names[i]))) result[names[i]] = values[i];
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
    /// <summary>
    /// Runs <paramref name="steps"/> steps of <paramref name="step"/>, continuing from the run's checkpoint when the run was
    /// resumed inside this stage, writing a full-state checkpoint every <c>run.checkpointEvery</c> steps and, when
    /// cancelled (Ctrl-C/SIGTERM), at the step boundary before stopping.
    /// </summary>
    /// <param name="run">The run context.</param>
    /// <param name="stage">Stage key (for logs, metrics and checkpoints).</param>
    /// <param name="steps">Number of steps.</param>
    /// <param name="step">One step; returns what to log.</param>
    /// <param name="statusKey">The logged value shown in the progress line.</param>
    /// <param name="state">What the stage trains (null: nothing is checkpointed).</param>
    /// <returns>Wall time in seconds (including the part before a resume).</returns>
    /// <exception cref="OperationCanceledException">When cancelled (after the checkpoint is written).</exception>
    /// <exception cref="NonFiniteLossException">After too many consecutive non-finite steps; the message names the last good checkpoint.</exception>
    public static double Run(RunContext run, string stage, long steps, Func<TrainingProgress, StepLog> step, string statusKey,
        TrainingState? state = null)
    {
        var clock = Stopwatch.StartNew();
        int logEvery = run.Config.Config.Run.LogEvery;
        var checkpoints = state is null ? null : run.Checkpoints;
        long start = 0;
        double before = 0;
        if (checkpoints?.Resume(stage, steps, state!) is { } resumed)
        {
            (start, before) = resumed;
            run.Logger.Information("Stage {Stage}: resumed at step {Step} of {Steps} from {Checkpoint}", stage, start, steps, checkpoints.Path);
        }
        double Seconds() => before + clock.Elapsed.TotalSeconds;
        run.DeviceMemory?.ResetPeak();
        using var task = run.Progress.Start(stage, steps);
        if (start > 0) task.Report(start, IProgressTask.Resumed);
        using var process = Process.GetCurrentProcess();
        // The consecutive-skip check reads the device: only on logged steps.
        if (state is not null) foreach (var o in state.Optimizers) o.CheckEvery = logEvery;
        string status = "";
        // HIERDISTILL_PHASE_TIMING=N: the stage's last N steps are timed phase by phase (a diagnostic; off by default).
        int timedSteps = PhaseTiming.RequestedSteps();
        var phases = timedSteps > 0 ? new PhaseTiming(run.Environment.Device) : null;
        for (long i = start; i < steps; i++)
        {
            if (run.Cancellation.IsCancellationRequested)
            {
                task.Report(i, IProgressTask.Stopped); // the progress line shows the step the run stopped at, not the last logged one
                if (checkpoints is not null)
                {
                    checkpoints.Save(stage, i, steps, Seconds(), state!);
                    run.Logger.Warning("Stopped by a signal at stage {Stage} step {Step}; checkpoint written: {Checkpoint}", stage, i, checkpoints.Path);
                }
                run.Cancellation.ThrowIfCancellationRequested();
            }
            // Tensors alive between steps (parameters, optimiser state, EMA): constant unless something leaks.
            long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            StepLog log;
            using var scope = NewDisposeScope();
            bool timed = phases is not null && i >= steps - timedSteps;
            if (timed) phases!.Begin();
            try
            {
                log = step(new TrainingProgress(i, steps));
                // The skip limit of every optimiser is also checked at the stage's last step (Apply checks every logEvery of its
                // own steps), so a stage cannot finish with the limit reached in its tail.
                if (i == steps - 1 && state is not null) foreach (var o in state.Optimizers) o.CheckSkips(stageEnd: true);
            }
            // Any failure: the progress line shows the step that failed, not the last logged one (the filter only reports).
            catch (Exception) when (StoppedAt(task, i) || Abandon(phases))
            {
                throw;
            }
            catch (NonFiniteLossException e) when (checkpoints is not null)
            {
                throw new NonFiniteLossException(checkpoints.Last is null
                    ? $"{e.Message} Nothing was saved after the last good step; {checkpoints.LastDescription}."
                    : $"{e.Message} Nothing was saved after the last good step; {checkpoints.LastDescription}: continue from it with " +
                      (e.NeverFinite
                          ? "--resume once the component or the data is mended."
                          : "--resume after lowering the learning rate or setting gradClip (learning rates, gradClip and run.maxSkippedSteps " +
                            "may change on resume)."), e.NeverFinite);
            }
            if (i % logEvery == 0 || i == steps - 1)
            {
                var values = log.Read();
                if (timed) PhaseTiming.Mark("read-back");
                values["steps_per_s"] = (i + 1 - start) / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                values["live_tensors"] = live;
                process.Refresh();
                values["rss_mb"] = process.WorkingSet64 / (1024.0 * 1024.0);
                values["managed_mb"] = GC.GetTotalMemory(forceFullCollection: false) / (1024.0 * 1024.0);
                if (run.DeviceMemory is { } gpu) values["device_mb"] = gpu.CurrentMiB;
                run.Metrics.Log(stage, i, values);
                // A value logged only on some steps (stage 2's generator loss, on generator iterations) keeps showing its last value.
                if (values.TryGetValue(statusKey, out var v)) status = $"{statusKey}={v.ToString("0.0000", CultureInfo.InvariantCulture)}";
                task.Report(i + 1, status);
            }
            // Periodic checkpoints only from a healthy state: while steps are being skipped as non-finite the previous
            // checkpoint stays the last good one.
            if (checkpoints is not null && checkpoints.Every > 0 && (i + 1) % checkpoints.Every == 0 && i + 1 < steps
                && state!.Optimizers.All(o => o.ConsecutiveSkips == 0))
            {
                run.Metrics.Flush();
                checkpoints.Save(stage, i + 1, steps, Seconds(), state!);
            }
            if (timed) phases!.End();
        }
        run.Metrics.Flush();
        if (phases is { Steps: > 0 })
            run.Logger.Information("Stage {Stage}: phase times over its last {Steps} steps ({Variable}; the device synchronised at each phase " +
                                   "boundary, so they sum to more than a step's time): {Phases}", stage, phases.Steps, PhaseTiming.Variable, phases.Describe());
        return Seconds();
    }

    /// <summary>Stops the phase timing of a step that failed; returns false (for an exception filter).</summary>
    private static bool Abandon(PhaseTiming? phases)
    {
        phases?.Abandon();
        return false;
    }

    /// <summary>Reports <paramref name="step"/> as the step the stage stopped at; returns false (for an exception filter).</summary>
    private static bool StoppedAt(IProgressTask task, long step)
    {
        task.Report(step, IProgressTask.Stopped);
        return false;
    }
}
