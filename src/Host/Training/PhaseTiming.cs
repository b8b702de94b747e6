using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Host.Training;

/// <summary>
/// An opt-in diagnostic of where a training step's time goes. With the environment variable
/// <c>HIERDISTILL_PHASE_TIMING=N</c>, the last N steps of every training stage are timed phase by phase, the device
/// synchronised at every phase boundary: <c>forward</c> (from the step's start to the first backward: batch, the
/// component's loss with its teacher calls and JVP), <c>backward</c>, <c>optimizer</c> (clipping, Adam, EMA; from the end of
/// a backward to the end of the update), and <c>rest</c> (what follows the last update; a logged step's read-back). Stage 2
/// sums its several updates per phase. The stage's log then says the mean milliseconds per step of each phase.
/// </summary>
/// <remarks>
/// The synchronisations stop the host from running ahead of the device, so a timed step is slower than an untimed one and
/// the phases sum to more than the step time in <c>metrics.jsonl</c>; they say which part of a step takes the time, not the
/// step time itself. Off (unset, 0 or not a number), nothing is synchronised. bench/gpu/reference.py times the same phases
/// of its PyTorch steps (<c>--phase-steps</c>).
/// </remarks>
internal sealed class PhaseTiming(Device device)
{
    /// <summary>The environment variable that turns the timing on.</summary>
    public const string Variable = "HIERDISTILL_PHASE_TIMING";

    // Per thread: a step runs on the thread of its training loop, and other runs in the process (compare, tests) must not
    // mark this one's phases.
    [ThreadStatic]
    private static PhaseTiming? _current;
    private readonly Stopwatch _clock = new();
    private readonly List<string> _order = [];
    private readonly Dictionary<string, double> _milliseconds = [];
    private readonly Dictionary<string, double> _step = [];

    /// <summary>Steps timed so far.</summary>
    public int Steps { get; private set; }

    /// <summary>The number of final steps of each stage to time (0: off), from <see cref="Variable"/>.</summary>
    public static int RequestedSteps() =>
        int.TryParse(Environment.GetEnvironmentVariable(Variable), NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : 0;

    /// <summary>Ends the phase <paramref name="phase"/> of the step being timed, if any (nothing otherwise: no synchronisation).</summary>
    public static void Mark(string phase) => _current?.Record(phase);

    /// <summary>Starts timing a step (synchronises the device first, so earlier work is not counted).</summary>
    public void Begin()
    {
        _step.Clear();
        Synchronize();
        _clock.Restart();
        _current = this;
    }

    /// <summary>Ends the timed step: what followed the last mark is <c>rest</c>.</summary>
    public void End()
    {
        if (_current != this) return;
        Record("rest");
        _current = null;
        foreach (var (phase, ms) in _step)
        {
            if (!_milliseconds.ContainsKey(phase)) _order.Add(phase);
            _milliseconds[phase] = _milliseconds.GetValueOrDefault(phase) + ms;
        }
        Steps++;
    }

    /// <summary>Stops timing without counting the step (it failed or was stopped).</summary>
    public void Abandon()
    {
        if (_current == this) _current = null;
        _step.Clear();
    }

    /// <summary>E.g. <c>forward 10.52 ms, backward 18.03 ms, optimizer 1.20 ms, rest 0.08 ms (sum 29.83 ms)</c>: means per timed step.</summary>
    public string Describe() =>
        string.Join(", ", _order.Select(p => $"{p} {Mean(_milliseconds[p])} ms")) + $" (sum {Mean(_milliseconds.Values.Sum())} ms)";

    private string Mean(double total) => (total / Math.Max(1, Steps)).ToString("0.00", CultureInfo.InvariantCulture);

    private void Record(string phase)
    {
        Synchronize();
        double ms = _clock.Elapsed.TotalMilliseconds;
        _clock.Restart();
        _step[phase] = _step.GetValueOrDefault(phase) + ms;
    }

    private void Synchronize()
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }
}
