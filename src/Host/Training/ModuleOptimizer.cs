using System.Text;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Storage;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Host.Training;

/// <summary>What one optimiser step did.</summary>
/// <param name="Applied">False when the step was skipped for a non-finite loss or gradient.</param>
/// <param name="GradNorm">Global gradient norm before clipping.</param>
/// <param name="LearningRate">Learning rate used.</param>
/// <param name="SkippedTotal">Steps of this module skipped so far (logged as <c>skipped_total</c>, so skips between logged steps show).</param>
public readonly record struct StepOutcome(bool Applied, double GradNorm, double LearningRate, long SkippedTotal = 0);

/// <summary>A run stopped because of repeated non-finite losses or gradients.</summary>
/// <param name="message">What happened: the module, the step, the non-finite loss term and what to do.</param>
public sealed class NonFiniteLossException(string message) : Exception(message);

/// <summary>
/// Adam(W) for one module with gradient clipping, a learning-rate schedule, a NaN/Inf guard and an
/// optional EMA. The step zeroes this module's gradients, backpropagates, and steps only when the
/// loss and the gradient norm are finite; otherwise parameters and optimiser state stay unchanged.
/// </summary>
public sealed class ModuleOptimizer : IDisposable
{
    private readonly OptimizerHelper _optimizer;
    private readonly IList<Parameter> _parameters;
    private readonly Func<long, double> _schedule;
    private readonly int _maxConsecutiveSkips;
    private int _consecutiveSkips;

    /// <summary>Creates the optimiser.</summary>
    /// <param name="name">Name in logs and checkpoints (e.g. <c>student</c>).</param>
    /// <param name="module">The module; parameters with <c>requires_grad</c> are optimised.</param>
    /// <param name="settings">Adam(W) settings.</param>
    /// <param name="emaDecay">EMA decay (0: no EMA). After n updates the decay is <c>min(d, n / (n + 1))</c>: the plain mean of
    /// the weights so far until the configured decay is slower, so short runs get a meaningful average too.</param>
    /// <param name="schedule">Learning-rate multiplier by step (null: constant).</param>
    /// <param name="maxConsecutiveSkips">Consecutive skipped steps that stop the run.</param>
    public ModuleOptimizer(string name, nn.Module module, OptimizerSettings settings, double emaDecay = 0,
        Func<long, double>? schedule = null, int maxConsecutiveSkips = 20)
    {
        Name = name;
        Module = module;
        Settings = settings;
        _parameters = module.parameters().Where(p => p.requires_grad).ToList();
        if (_parameters.Count == 0) throw new ArgumentException($"{name} has no trainable parameters.", nameof(module));
        _optimizer = settings.WeightDecay > 0
            ? optim.AdamW(_parameters, settings.LearningRate, settings.Beta1, settings.Beta2, weight_decay: settings.WeightDecay)
            : optim.Adam(_parameters, settings.LearningRate, settings.Beta1, settings.Beta2);
        _schedule = schedule ?? (_ => 1.0);
        _maxConsecutiveSkips = maxConsecutiveSkips;
        if (emaDecay > 0) Ema = new ExponentialMovingAverage(module, emaDecay);
    }

    /// <summary>Name in logs.</summary>
    public string Name { get; }

    /// <summary>The optimised module.</summary>
    public nn.Module Module { get; }

    /// <summary>Optimiser settings.</summary>
    public OptimizerSettings Settings { get; }

    /// <summary>The EMA of the module, if any.</summary>
    public ExponentialMovingAverage? Ema { get; }

    /// <summary>Applied updates so far.</summary>
    public long Updates { get; private set; }

    /// <summary>Skipped (non-finite) steps so far.</summary>
    public long Skipped { get; private set; }

    /// <summary>Skipped steps since the last applied one (0 after a finite step).</summary>
    public int ConsecutiveSkips => _consecutiveSkips;

    /// <summary>
    /// Backpropagates <paramref name="loss"/>'s total into the module and steps; when it is skipped as non-finite, the
    /// error after too many skips names the first non-finite term of the breakdown.
    /// </summary>
    /// <exception cref="NonFiniteLossException">After too many consecutive non-finite steps.</exception>
    public StepOutcome Step(LossBreakdown loss, long step, string context)
    {
        ZeroGrad();
        loss.Total.backward();
        return Apply(loss, step, context);
    }

    /// <summary>Clears this module's gradients (before a backward shared by several optimisers).</summary>
    public void ZeroGrad() => _optimizer.zero_grad();

    /// <summary>
    /// Steps with the gradients already accumulated from <paramref name="breakdown"/>'s total (after a backward shared by several
    /// optimisers): clip, guard against non-finite values, update, EMA.
    /// </summary>
    /// <exception cref="NonFiniteLossException">After too many consecutive non-finite steps; names the first non-finite term.</exception>
    public StepOutcome Apply(LossBreakdown breakdown, long step, string context)
    {
        var loss = breakdown.Total;
        double lr = Settings.LearningRate * _schedule(step);
        double norm = Settings.GradClipNorm is { } clip
            ? nn.utils.clip_grad_norm_(_parameters, clip)
            : GradNorm();
        double value = loss.item<float>();
        bool finite = double.IsFinite(norm) && double.IsFinite(value);
        if (!finite)
        {
            _optimizer.zero_grad();
            Skipped++;
            if (++_consecutiveSkips >= _maxConsecutiveSkips)
                throw new NonFiniteLossException(
                    $"{context}: {_consecutiveSkips} consecutive steps of '{Name}' skipped for a non-finite loss or gradient, the last at step {step} " +
                    $"({Culprit(value, norm, breakdown)}); parameters and optimiser state are those of the last finite step. " +
                    "Lower the learning rate, set or lower gradClip, or check the data.");
            return new StepOutcome(false, norm, lr, Skipped);
        }
        _consecutiveSkips = 0;
        foreach (var group in _optimizer.ParamGroups) group.LearningRate = lr;
        _optimizer.step();
        Updates++;
        // Warm-up: the running mean of all updates so far until that is slower than the configured decay.
        Ema?.Update(Module, Math.Min(Ema.Decay, Updates / (Updates + 1.0)));
        return new StepOutcome(true, norm, lr, Skipped);
    }

    /// <summary>The first non-finite loss term (read only when a run is about to stop), else the gradient norm.</summary>
    private static string Culprit(double total, double norm, LossBreakdown breakdown)
    {
        foreach (var (name, t) in breakdown.Terms)
        {
            double v = t.detach().to_type(ScalarType.Float64).cpu().item<double>();
            if (!double.IsFinite(v)) return $"loss term '{name}' = {v}";
        }
        return double.IsFinite(total) ? $"gradient norm = {norm}, loss = {total}" : $"loss = {total}";
    }

    /// <summary>
    /// Adds this optimiser's full state to a checkpoint under <c>module/NAME/</c>, <c>ema/NAME/</c>, <c>optimizer/NAME</c>
    /// (TorchSharp's serialised Adam state: step counts and moment estimates) and <c>counters/NAME</c> (updates, skipped,
    /// consecutive skips). The tensors are views or CPU copies valid until the caller's dispose scope ends.
    /// </summary>
    public void SaveState(IDictionary<string, Tensor> into)
    {
        foreach (var (name, t) in Module.state_dict()) into[$"module/{Name}/{name}"] = t.detach().cpu();
        if (Ema is not null)
            foreach (var (name, t) in Ema.State) into[$"ema/{Name}/{name}"] = t.detach().cpu();
        using var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true)) _optimizer.save_state_dict(writer);
        into[$"optimizer/{Name}"] = tensor(buffer.ToArray());
        into[$"counters/{Name}"] = tensor(new[] { Updates, Skipped, _consecutiveSkips });
    }

    /// <summary>Restores what <see cref="SaveState"/> wrote: module weights and buffers, EMA, Adam state and counters.</summary>
    /// <param name="from">The checkpoint's tensors.</param>
    /// <param name="source">The checkpoint, for messages.</param>
    /// <exception cref="WeightsMismatchException">When the checkpoint lacks this module or holds another architecture; the
    /// message names the first mismatched tensor and both shapes.</exception>
    public void RestoreState(IReadOnlyDictionary<string, Tensor> from, string source)
    {
        var module = Prefixed(from, $"module/{Name}/");
        if (module.Count == 0)
            throw new WeightsMismatchException($"{source} holds no state of '{Name}'; it was written by another pipeline or stage.");
        WeightsFile.CopyInto(Module, module, $"{source} ({Name})");
        if (Ema is not null)
        {
            var ema = Prefixed(from, $"ema/{Name}/");
            if (ema.Count == 0) throw new WeightsMismatchException($"{source} holds no EMA of '{Name}', which this stage keeps; it was written with another emaDecay.");
            Ema.Load(ema);
        }
        if (!from.TryGetValue($"optimizer/{Name}", out var optimizer) || !from.TryGetValue($"counters/{Name}", out var counters))
            throw new WeightsMismatchException($"{source} holds no optimiser state of '{Name}'.");
        using (var reader = new BinaryReader(new MemoryStream(optimizer.data<byte>().ToArray()), Encoding.UTF8))
            _optimizer.load_state_dict(reader);
        var c = counters.data<long>().ToArray();
        Updates = c[0];
        Skipped = c[1];
        _consecutiveSkips = (int)c[2];
    }

    private static Dictionary<string, Tensor> Prefixed(IReadOnlyDictionary<string, Tensor> all, string prefix) =>
        all.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);

    private double GradNorm()
    {
        using var _ = no_grad();
        double sum = 0;
        foreach (var p in _parameters)
        {
            if (p.grad is { } g) sum += g.square().sum().item<float>();
        }
        return Math.Sqrt(sum);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _optimizer.Dispose();
        Ema?.Dispose();
    }
}

/// <summary>Learning-rate schedules as multipliers of the base rate.</summary>
public static class LearningRateSchedules
{
    /// <summary>Linear warm-up over <paramref name="warmup"/> steps, then constant.</summary>
    public static Func<long, double> Warmup(long warmup) => step => warmup <= 0 ? 1.0 : Math.Min(1.0, (step + 1.0) / warmup);

    /// <summary>Cosine decay from 1 to <paramref name="finalFraction"/> over <paramref name="steps"/>.</summary>
    public static Func<long, double> Cosine(long steps, double finalFraction) => step =>
        steps <= 1 ? 1.0 : finalFraction + (1 - finalFraction) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(step, steps - 1) / (steps - 1)));
}
