using System.Text;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Storage;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Host.Training;

/// <summary>
/// What one optimiser step did, as device scalars: reading them synchronises with the device, so a training loop reads them
/// only on logging steps (<see cref="StepLog.Read"/>).
/// </summary>
/// <param name="Applied">1 when the step was applied, 0 when it was skipped for a non-finite loss or gradient (float32 scalar).</param>
/// <param name="GradNorm">Global gradient norm before clipping (float32 scalar; non-finite on a skipped step).</param>
/// <param name="LearningRate">Learning rate used.</param>
/// <param name="SkippedTotal">Steps of this module skipped so far (float64 scalar; logged as <c>skipped_total</c>, so skips between
/// logged steps show).</param>
public readonly record struct StepOutcome(Tensor Applied, Tensor GradNorm, double LearningRate, Tensor SkippedTotal)
{
    /// <summary>Whether the step was applied (synchronises with the device).</summary>
    public bool WasApplied => Applied.item<float>() > 0;
}

/// <summary>A run stopped because of repeated non-finite losses or gradients.</summary>
/// <param name="message">What happened: the module, the step, the non-finite loss term and what to do.</param>
public sealed class NonFiniteLossException(string message) : Exception(message);

/// <summary>
/// Adam or AdamW (Kingma &amp; Ba 2015, Algorithm 1; Loshchilov &amp; Hutter 2019 for the decoupled weight decay) for one
/// module, with global-norm gradient clipping, a learning-rate schedule, a NaN/Inf guard and an optional EMA, computed on
/// the parameters' device without reading anything back to the host: a step whose loss or gradient norm is not finite is
/// masked on the device (a 0/1 factor on every update), so parameters, moment estimates, step count and EMA stay exactly
/// as they were, and the loop never waits for the device. Only the consecutive-skip check reads a counter, every
/// <see cref="CheckEvery"/> steps (the training loop sets it to <c>run.logEvery</c>).
/// </summary>
/// <remarks>
/// State is kept in float32 on the parameters' device whatever the network's compute precision (the moments are
/// <c>[same shape as the parameter]</c>, the step count a scalar shared by the module's parameters; parameters that get no
/// gradient in a step are left alone). The update matches PyTorch's <c>torch.optim.Adam</c>/<c>AdamW</c> (tested against
/// TorchSharp's <c>optim.Adam</c>/<c>AdamW</c> to float32 rounding).
/// </remarks>
public sealed class ModuleOptimizer : IDisposable
{
    private readonly List<(string Name, Parameter Parameter, Tensor ExpAvg, Tensor ExpAvgSq)> _parameters;
    private readonly HashSet<string> _parameterNames;
    private readonly Func<long, double> _schedule;
    private readonly int _maxConsecutiveSkips;
    // Device scalars (float64): Adam's step count, applied/skipped counts, skipped steps since the last applied one.
    private readonly Tensor _stepCount, _updates, _skipped, _consecutive;

    /// <summary>Creates the optimiser; its state is allocated on the device the module's parameters are on now.</summary>
    /// <param name="name">Name in logs and checkpoints (e.g. <c>student</c>).</param>
    /// <param name="module">The module; parameters with <c>requires_grad</c> are optimised.</param>
    /// <param name="settings">Adam(W) settings (weight decay &gt; 0: decoupled, AdamW).</param>
    /// <param name="emaDecay">EMA decay (0: no EMA). After n updates the decay is <c>min(d, n / (n + 1))</c>: the plain mean of
    /// the weights so far until the configured decay is slower, so short runs get a meaningful average too.</param>
    /// <param name="schedule">Learning-rate multiplier by step (null: constant).</param>
    /// <param name="maxConsecutiveSkips">Consecutive skipped steps that stop the run.</param>
    /// <exception cref="ArgumentException">When the module has no trainable parameters.</exception>
    public ModuleOptimizer(string name, nn.Module module, OptimizerSettings settings, double emaDecay = 0,
        Func<long, double>? schedule = null, int maxConsecutiveSkips = 20)
    {
        Name = name;
        Module = module;
        Settings = settings;
        using (no_grad())
        {
            _parameters = module.named_parameters().Where(p => p.parameter.requires_grad)
                .Select(p => (p.name, p.parameter,
                    zeros_like(p.parameter, dtype: ScalarType.Float32).DetachFromDisposeScope(),
                    zeros_like(p.parameter, dtype: ScalarType.Float32).DetachFromDisposeScope()))
                .ToList();
        }
        if (_parameters.Count == 0) throw new ArgumentException($"{name} has no trainable parameters.", nameof(module));
        _parameterNames = _parameters.Select(p => p.Name).ToHashSet();
        var device = _parameters[0].Parameter.device;
        _stepCount = Scalar(device);
        _updates = Scalar(device);
        _skipped = Scalar(device);
        _consecutive = Scalar(device);
        _schedule = schedule ?? (_ => 1.0);
        _maxConsecutiveSkips = maxConsecutiveSkips;
        if (emaDecay > 0) Ema = new ExponentialMovingAverage(module, emaDecay);
    }

    /// <summary>Adam's ε (PyTorch's default).</summary>
    public const double Epsilon = 1e-8;

    private static Tensor Scalar(Device device) => zeros([], ScalarType.Float64, device).DetachFromDisposeScope();

    /// <summary>Name in logs.</summary>
    public string Name { get; }

    /// <summary>The optimised module.</summary>
    public nn.Module Module { get; }

    /// <summary>Optimiser settings.</summary>
    public OptimizerSettings Settings { get; }

    /// <summary>The EMA of the module, if any.</summary>
    public ExponentialMovingAverage? Ema { get; }

    /// <summary>
    /// Steps between two reads of the consecutive-skip count (default 1: every step, which synchronises with the device each
    /// step). The check runs on steps that are multiples of it, so a run stops at most this many steps after the limit.
    /// </summary>
    public int CheckEvery { get; set; } = 1;

    /// <summary>Applied updates so far (reads the device).</summary>
    public long Updates => (long)_updates.item<double>();

    /// <summary>Skipped (non-finite) steps so far (reads the device).</summary>
    public long Skipped => (long)_skipped.item<double>();

    /// <summary>Skipped steps since the last applied one, 0 after a finite step (reads the device).</summary>
    public int ConsecutiveSkips => (int)_consecutive.item<double>();

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
    public void ZeroGrad()
    {
        foreach (var (_, p, _, _) in _parameters)
        {
            if (p.grad is { } g) g.zero_();
        }
    }

    /// <summary>
    /// Steps with the gradients already accumulated from <paramref name="breakdown"/>'s total (after a backward shared by several
    /// optimisers): clip, guard against non-finite values, update, EMA — all on the device.
    /// </summary>
    /// <exception cref="NonFiniteLossException">After too many consecutive non-finite steps (checked every <see cref="CheckEvery"/>
    /// steps); names the first non-finite term.</exception>
    public StepOutcome Apply(LossBreakdown breakdown, long step, string context)
    {
        double lr = Settings.LearningRate * _schedule(step);
        var withGrad = _parameters.Where(p => p.Parameter.grad is not null).ToList();
        using var _ = no_grad();
        var norm = withGrad.Count == 0
            ? zeros([], ScalarType.Float32, _stepCount.device)
            : stack(withGrad.Select(p => p.Parameter.grad!.detach().to_type(ScalarType.Float32).norm())).norm();
        var finite = norm.isfinite().logical_and(breakdown.Total.detach().isfinite());
        var applied = finite.to_type(ScalarType.Float32);
        // The factor every gradient is multiplied by: the clip coefficient (PyTorch's clip_grad_norm_) on a finite step, 0 on a
        // skipped one, so that nothing non-finite reaches the moments.
        var coefficient = Settings.GradClipNorm is { } clip
            ? where(finite, (clip / (norm + 1e-6)).clamp_max(1.0), zeros_like(norm))
            : applied;

        _stepCount.add_(applied);
        var t = _stepCount.clamp_min(1.0);
        // Bias corrections 1 - β^t in float64 (as PyTorch computes them on the host), then float32 like the moments.
        var stepSize = -lr * applied / (1 - (t * Math.Log(Settings.Beta1)).exp()).to_type(ScalarType.Float32);
        var biasCorrection2Sqrt = (1 - (t * Math.Log(Settings.Beta2)).exp()).sqrt().to_type(ScalarType.Float32);
        var w1 = applied * (1 - Settings.Beta1);
        var w2 = applied * (1 - Settings.Beta2);
        var decay = Settings.WeightDecay > 0 ? 1 - lr * Settings.WeightDecay * applied : null;
        foreach (var (_, p, m, v) in withGrad)
        {
            var g = p.grad!.nan_to_num_(0, 0, 0).mul_(coefficient).to_type(ScalarType.Float32);
            if (decay is not null) p.mul_(decay);
            m.lerp_(g, w1);
            v.lerp_(g.square(), w2);
            var denominator = v.sqrt().div_(biasCorrection2Sqrt).add_(Epsilon);
            p.addcmul_(m.div(denominator), stepSize, 1);
        }
        _updates.add_(applied);
        _skipped.add_(1 - applied);
        _consecutive.add_(1).mul_(1 - applied);
        if (Ema is not null)
        {
            // Warm-up: the running mean of all updates so far until that is slower than the configured decay; 1 (no change)
            // on a skipped step.
            var emaDecay = where(finite, (_updates / (_updates + 1)).clamp_max(Ema.Decay), ones_like(_updates)).to_type(ScalarType.Float32);
            UpdateEma(Ema, emaDecay, finite);
        }
        if (step % Math.Max(1, CheckEvery) == 0)
        {
            int consecutive = ConsecutiveSkips;
            if (consecutive >= _maxConsecutiveSkips)
                throw new NonFiniteLossException(
                    $"{context}: {consecutive} consecutive steps of '{Name}' skipped for a non-finite loss or gradient, the last at step {step} " +
                    $"({Culprit(breakdown, norm)}); parameters and optimiser state are those of the last finite step. " +
                    "Lower the learning rate, set or lower gradClip, or check the data.");
        }
        return new StepOutcome(applied, norm, lr, _skipped.clone());
    }

    /// <summary>Folds the module's weights into the EMA with a device-side decay; buffers are copied only on an applied step.</summary>
    private void UpdateEma(ExponentialMovingAverage ema, Tensor decay, Tensor finite)
    {
        var weight = 1 - decay;
        foreach (var (name, t) in Module.state_dict())
        {
            var s = ema.State[name];
            if (_parameterNames.Contains(name) && t.is_floating_point()) s.lerp_(t.to_type(s.dtype), weight.to_type(s.dtype));
            else s.copy_(where(finite, t, s));
        }
    }

    /// <summary>The first non-finite loss term (read only when a run is about to stop), else the gradient norm.</summary>
    private static string Culprit(LossBreakdown breakdown, Tensor norm)
    {
        foreach (var (name, t) in breakdown.Terms)
        {
            double v = t.detach().to_type(ScalarType.Float64).cpu().item<double>();
            if (!double.IsFinite(v)) return $"loss term '{name}' = {v}";
        }
        double total = breakdown.Total.detach().to_type(ScalarType.Float64).cpu().item<double>();
        return double.IsFinite(total) ? $"gradient norm = {norm.to_type(ScalarType.Float64).cpu().item<double>()}, loss = {total}" : $"loss = {total}";
    }

    /// <summary>
    /// Adds this optimiser's full state to a checkpoint under <c>module/NAME/</c>, <c>ema/NAME/</c>,
    /// <c>optimizer/NAME/exp_avg/PARAM</c>, <c>optimizer/NAME/exp_avg_sq/PARAM</c> (Adam's moment estimates),
    /// <c>optimizer/NAME/step</c> (Adam's step count) and <c>counters/NAME</c> (updates, skipped, consecutive skips). The tensors
    /// are CPU copies valid until the caller's dispose scope ends.
    /// </summary>
    public void SaveState(IDictionary<string, Tensor> into)
    {
        foreach (var (name, t) in Module.state_dict()) into[$"module/{Name}/{name}"] = t.detach().cpu();
        if (Ema is not null)
            foreach (var (name, t) in Ema.State) into[$"ema/{Name}/{name}"] = t.detach().cpu();
        foreach (var (name, _, m, v) in _parameters)
        {
            into[$"optimizer/{Name}/exp_avg/{name}"] = m.cpu();
            into[$"optimizer/{Name}/exp_avg_sq/{name}"] = v.cpu();
        }
        into[$"optimizer/{Name}/step"] = _stepCount.cpu();
        into[$"counters/{Name}"] = stack([_updates, _skipped, _consecutive]).to_type(ScalarType.Int64).cpu();
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
        if (!from.TryGetValue($"optimizer/{Name}/step", out var stepCount) || !from.TryGetValue($"counters/{Name}", out var counters))
            throw new WeightsMismatchException($"{source} holds no optimiser state of '{Name}'.");
        using var _ = no_grad();
        foreach (var (name, _, m, v) in _parameters)
        {
            foreach (var (key, target) in new[] { ($"optimizer/{Name}/exp_avg/{name}", m), ($"optimizer/{Name}/exp_avg_sq/{name}", v) })
            {
                if (!from.TryGetValue(key, out var saved))
                    throw new WeightsMismatchException($"{source} holds no '{key}': it was written for another architecture of '{Name}'.");
                if (!saved.shape.SequenceEqual(target.shape))
                    throw new WeightsMismatchException($"{source}: '{key}' {Shapes.Format(saved.shape)} vs {Shapes.Format(target.shape)} here.");
                target.copy_(saved);
            }
        }
        _stepCount.copy_(stepCount);
        var c = counters.to_type(ScalarType.Float64);
        _updates.copy_(c[0]);
        _skipped.copy_(c[1]);
        _consecutive.copy_(c[2]);
    }

    private static Dictionary<string, Tensor> Prefixed(IReadOnlyDictionary<string, Tensor> all, string prefix) =>
        all.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var (_, _, m, v) in _parameters)
        {
            m.Dispose();
            v.Dispose();
        }
        foreach (var t in new[] { _stepCount, _updates, _skipped, _consecutive }) t.Dispose();
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
