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
/// <param name="neverFinite">No step of the module was ever finite (a NaN from the start: a component or the data, not the
/// learning rate).</param>
public sealed class NonFiniteLossException(string message, bool neverFinite = false) : Exception(message)
{
    /// <summary>No step of the module was ever finite, so its parameters are the initial ones.</summary>
    public bool NeverFinite { get; } = neverFinite;
}

/// <summary>
/// Adam or AdamW (Kingma &amp; Ba 2015, Algorithm 1; Loshchilov &amp; Hutter 2019 for the decoupled weight decay) for one
/// module, with global-norm gradient clipping, a learning-rate schedule, a NaN/Inf guard and an optional EMA, computed on
/// the parameters' device without reading anything back to the host: a step whose loss or gradient norm is not finite is
/// masked on the device (a 0/1 factor on every update), so parameters, moment estimates, step count and EMA stay exactly
/// as they were, and the loop never waits for the device. Only the consecutive-skip check reads a counter, every
/// <see cref="CheckEvery"/> steps (the training loop sets it to <c>run.logEvery</c>).
/// </summary>
/// <remarks>
/// <para>Flat buffers: at construction the module's trainable parameters become views of one float32 buffer
/// (<c>Tensor.set_</c>), and their gradients views of another, so that backward accumulates straight into it and a step is a
/// dozen whole-buffer kernels whatever the number of parameter tensors (a per-parameter loop issues about a dozen kernels
/// per tensor: on a GPU, launch time rather than arithmetic). The module must already be on its device; a parameter that is
/// later replaced (<c>module.to(...)</c>, assigning new tensors) is reported at the next step, and a gradient that backward
/// allocated anew (e.g. a <c>create_graph</c> backward) is copied back into the buffer.</para>
/// <para>State (moments, step count, EMA) is float32 on the parameters' device whatever the network's compute precision. A
/// parameter that gets no gradient in a step is updated with a zero gradient (every parameter takes part in every step).
/// The update matches PyTorch's <c>torch.optim.Adam</c>/<c>AdamW</c> (tested against TorchSharp's <c>optim.Adam</c>/<c>AdamW</c>
/// with <c>clip_grad_norm_</c> to float32 rounding).</para>
/// </remarks>
public sealed class ModuleOptimizer : IDisposable
{
    private readonly List<Slot> _slots;
    private readonly Tensor _parameters, _gradients, _expAvg, _expAvgSq;
    private readonly Func<long, double> _schedule;
    private readonly int _maxConsecutiveSkips;
    // Device scalars (float64): applied updates (Adam's step count t), skipped steps, skipped steps since the last applied one.
    private readonly Tensor _updates, _skipped, _consecutive;
    private long _calls;
    private (LossBreakdown Breakdown, Tensor Norm, long Step, string Context)? _last;

    /// <summary>One parameter: its name, the parameter, and its views into the flat buffers.</summary>
    private sealed record Slot(string Name, Parameter Parameter, Tensor Value, Tensor Gradient, Tensor ExpAvg, Tensor ExpAvgSq,
        IntPtr ValuePointer, IntPtr GradientPointer);

    /// <summary>Creates the optimiser; the module's trainable parameters become views of its flat buffer (values unchanged).</summary>
    /// <param name="name">Name in logs and checkpoints (e.g. <c>student</c>).</param>
    /// <param name="module">The module, already on its device; parameters with <c>requires_grad</c> (float32) are optimised.</param>
    /// <param name="settings">Adam(W) settings (weight decay &gt; 0: decoupled, AdamW).</param>
    /// <param name="emaDecay">EMA decay (0: no EMA). After n updates the decay is <c>min(d, n / (n + 1))</c>: the plain mean of
    /// the weights so far until the configured decay is slower, so short runs get a meaningful average too.</param>
    /// <param name="schedule">Learning-rate multiplier by step (null: constant).</param>
    /// <param name="maxConsecutiveSkips">Consecutive skipped steps that stop the run.</param>
    /// <exception cref="ArgumentException">When the module has no trainable parameters, or they are not float32 on one device.</exception>
    public ModuleOptimizer(string name, nn.Module module, OptimizerSettings settings, double emaDecay = 0,
        Func<long, double>? schedule = null, int maxConsecutiveSkips = 20)
    {
        Name = name;
        Module = module;
        Settings = settings;
        var trainable = module.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (trainable.Count == 0) throw new ArgumentException($"{name} has no trainable parameters.", nameof(module));
        var device = trainable[0].parameter.device;
        foreach (var (n, p) in trainable)
        {
            if (p.dtype != ScalarType.Float32)
                throw new ArgumentException($"{name}: parameter '{n}' is {p.dtype}; the optimiser keeps float32 weights (run.precision=bfloat16 " +
                                            "computes in bfloat16 from float32 parameters).", nameof(module));
            if (p.device.type != device.type || p.device.index != device.index)
                throw new ArgumentException($"{name}: parameter '{n}' is on {p.device}, '{trainable[0].name}' on {device}; move the module to one device first.", nameof(module));
        }
        long total = trainable.Sum(p => p.parameter.numel());
        _parameters = Flat(total, device);
        _gradients = Flat(total, device);
        _expAvg = Flat(total, device);
        _expAvgSq = Flat(total, device);
        _slots = [];
        using (no_grad())
        {
            long offset = 0;
            foreach (var (n, p) in trainable)
            {
                long count = p.numel();
                var shape = p.shape;
                var value = _parameters.narrow(0, offset, count).view(shape).DetachFromDisposeScope();
                value.copy_(p);
                p.set_(value);
                var gradient = _gradients.narrow(0, offset, count).view(shape).DetachFromDisposeScope();
                p.grad = gradient;
                _slots.Add(new Slot(n, p, value, gradient,
                    _expAvg.narrow(0, offset, count).view(shape).DetachFromDisposeScope(),
                    _expAvgSq.narrow(0, offset, count).view(shape).DetachFromDisposeScope(),
                    StoragePointer(p), StoragePointer(gradient)));
                offset += count;
            }
        }
        _updates = Scalar(device);
        _skipped = Scalar(device);
        _consecutive = Scalar(device);
        _schedule = schedule ?? (_ => 1.0);
        _maxConsecutiveSkips = maxConsecutiveSkips;
        if (emaDecay > 0) Ema = new ModuleEma(module, emaDecay, _slots.ToDictionary(s => s.Name, s => s.Value), _parameters);
    }

    /// <summary>Address of a float32 tensor's first element (storage base + offset): host metadata, no device work.</summary>
    private static IntPtr StoragePointer(Tensor t) => t.storage<float>().data_ptr() + (nint)(t.storage_offset() * sizeof(float));

    private static Tensor Flat(long count, Device device) => zeros([count], ScalarType.Float32, device).DetachFromDisposeScope();

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
    public ModuleEma? Ema { get; }

    /// <summary>
    /// This optimiser's steps between two reads of the consecutive-skip count (default 1: every step, which synchronises with
    /// the device each step; the training loop sets <c>run.logEvery</c> and also checks at a stage's last step), so a run stops
    /// at most this many of its steps after the limit.
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
        Backward(loss, this);
        return Apply(loss, step, context);
    }

    /// <summary>
    /// Clears the gradients of <paramref name="optimizers"/> and backpropagates <paramref name="loss"/>'s total into them (one
    /// backward shared by several optimisers, each then stepped with <see cref="Apply"/>); the phase timing's forward ends
    /// here and its backward with it.
    /// </summary>
    public static void Backward(LossBreakdown loss, params IEnumerable<ModuleOptimizer> optimizers)
    {
        PhaseTiming.Mark("forward");
        foreach (var o in optimizers) o.ZeroGrad();
        loss.Total.backward();
        PhaseTiming.Mark("backward");
    }

    /// <summary>Clears this module's gradients (one kernel; <see cref="Backward"/> calls it before a backward).</summary>
    public void ZeroGrad()
    {
        using var _ = no_grad();
        _gradients.zero_();
    }

    /// <summary>
    /// Steps with the gradients already accumulated from <paramref name="breakdown"/>'s total (after a backward shared by several
    /// optimisers): clip, guard against non-finite values, update, EMA — all on the device.
    /// </summary>
    /// <exception cref="NonFiniteLossException">After too many consecutive non-finite steps (checked every <see cref="CheckEvery"/>
    /// steps); names the first non-finite term.</exception>
    /// <exception cref="InvalidOperationException">When a parameter was replaced after the optimiser was created.</exception>
    public StepOutcome Apply(LossBreakdown breakdown, long step, string context)
    {
        double lr = Settings.LearningRate * _schedule(step);
        using var _ = no_grad();
        // Parameters are checked on this optimiser's first step and on check steps (a replaced parameter is a programming error,
        // reported within CheckEvery steps); gradients every step (a re-allocated gradient must reach this step's update).
        GatherGradients(checkParameters: _calls == 0 || (_calls + 1) % Math.Max(1, CheckEvery) == 0);
        var norm = _gradients.norm();
        var finite = norm.isfinite().logical_and(breakdown.Total.detach().isfinite());
        var applied = finite.to_type(ScalarType.Float32);
        // The factor the gradient is multiplied by: the clip coefficient (PyTorch's clip_grad_norm_) on a finite step, 0 on a
        // skipped one, so that nothing non-finite reaches the moments.
        var coefficient = Settings.GradClipNorm is { } clip
            ? where(finite, (clip / (norm + 1e-6)).clamp_max(1.0), zeros_like(norm))
            : applied;
        var g = _gradients.nan_to_num_(0, 0, 0).mul_(coefficient);

        _updates.add_(applied);
        var t = _updates.clamp_min(1.0);
        // Bias corrections 1 - β^t in float64 (as PyTorch computes them on the host), then float32 like the moments.
        var stepSize = -lr * applied / (1 - (t * Math.Log(Settings.Beta1)).exp()).to_type(ScalarType.Float32);
        var biasCorrection2Sqrt = (1 - (t * Math.Log(Settings.Beta2)).exp()).sqrt().to_type(ScalarType.Float32);
        if (Settings.WeightDecay > 0) _parameters.mul_(1 - lr * Settings.WeightDecay * applied);
        _expAvg.lerp_(g, applied * (1 - Settings.Beta1));
        _expAvgSq.lerp_(g.square(), applied * (1 - Settings.Beta2));
        var denominator = _expAvgSq.sqrt().div_(biasCorrection2Sqrt).add_(Epsilon);
        _parameters.addcmul_(_expAvg.div(denominator), stepSize, 1);
        _skipped.add_(1 - applied);
        _consecutive.add_(1).mul_(1 - applied);
        // Warm-up: the running mean of all updates so far until that is slower than the configured decay; 1 (no change) on a
        // skipped step.
        Ema?.Update(Module, where(finite, (_updates / (_updates + 1)).clamp_max(Ema.Decay), ones_like(_updates)), finite);
        _last = (breakdown, norm, step, context);
        // Counted in this optimiser's own steps, so a module stepped every k-th iteration (DMD's generator) is checked as often.
        if (++_calls % Math.Max(1, CheckEvery) == 0) CheckSkips();
        var outcome = new StepOutcome(applied, norm, lr, _skipped.clone());
        PhaseTiming.Mark("optimizer");
        return outcome;
    }

    /// <summary>
    /// Reads the consecutive-skip count (one device read) and stops the run when it reached <c>run.maxSkippedSteps</c>, naming the
    /// last step this optimiser took and its first non-finite loss term. Called by <see cref="Apply"/> every
    /// <see cref="CheckEvery"/> of its own steps and by the training loop at a stage's last step (<paramref name="stageEnd"/>),
    /// where a module none of whose steps was finite also stops the run, however few they were (a short stage, or a
    /// generator stepped every k-th iteration, would otherwise finish with the initial weights as if trained); call it inside
    /// the dispose scope of the step that last called <see cref="Apply"/> (the message reads that step's loss terms).
    /// </summary>
    /// <exception cref="NonFiniteLossException">When the limit is reached, or at the stage's end no step was finite.</exception>
    public void CheckSkips(bool stageEnd = false)
    {
        if (_last is not { } last) return;
        int consecutive = ConsecutiveSkips;
        if (consecutive >= _maxConsecutiveSkips || (stageEnd && consecutive > 0 && Updates == 0))
        {
            var (culprit, owner) = Culprit(last.Breakdown, last.Norm);
            throw new NonFiniteLossException(
                $"{last.Context}: {consecutive} consecutive steps of '{Name}' skipped for a non-finite loss or gradient, the last at step {last.Step} " +
                $"({culprit}); " + (Updates == 0
                    // Never finite: not a divergence, which a learning rate would cure, but a NaN from the start.
                    ? "none of its steps has been finite, so its parameters are still the initial ones: the loss is non-finite from the start, " +
                      "which points to the weights it starts from (an earlier stage that diverged without a NaN), a component's output (a NaN in a " +
                      "plugin's forward pass or loss) or the data, not to this stage's learning rate."
                    : "parameters and optimiser state are those of the last finite step. Lower the learning rate, set or lower gradClip, or check the data" +
                      (owner is null ? "." : $"; or, if {owner}'s loss can be NaN for finite inputs (a division, log or square root of a value " +
                                             "that can reach 0), mend it.")),
                Updates == 0);
        }
    }

    /// <summary>
    /// Host-side checks that backward wrote into the flat gradient buffer (pointer comparisons, no device work): a gradient
    /// that was set to null or allocated anew is copied back into its slot; a parameter that no longer aliases the flat
    /// buffer is an error.
    /// </summary>
    private void GatherGradients(bool checkParameters)
    {
        foreach (var slot in _slots)
        {
            if (checkParameters && Replaced(slot)) throw ReplacedParameter(slot);
            Tensor? gradient;
            try
            {
                gradient = slot.Parameter.grad;
            }
            catch (InvalidOperationException)
            {
                throw ReplacedParameter(slot); // disposed by the module that swapped it out
            }
            if (gradient is null)
            {
                slot.Parameter.grad = slot.Gradient;
            }
            else if (StoragePointer(gradient) != slot.GradientPointer)
            {
                slot.Gradient.copy_(gradient);
                slot.Parameter.grad = slot.Gradient;
            }
        }
    }

    private InvalidOperationException ReplacedParameter(Slot slot) => new(
        $"{Name}: parameter '{slot.Name}' was replaced after the optimiser was created (module.to(...) or a load that assigns " +
        "new tensors instead of copying into them); move modules to their device before creating the optimiser.");

    /// <summary>Whether the slot's parameter no longer aliases the flat buffer (or was disposed when a module swapped it out).</summary>
    private static bool Replaced(Slot slot)
    {
        try
        {
            return StoragePointer(slot.Parameter) != slot.ValuePointer;
        }
        catch (InvalidOperationException)
        {
            return true; // "Tensor invalid -- empty handle": the module disposed it when a new parameter was assigned
        }
    }

    /// <summary>The first non-finite loss term (read only when a run is about to stop), else the gradient norm.</summary>
    /// <summary>
    /// The component a loss term comes from, for the message of a non-finite stop (e.g. <c>'dmd' (HierDistill.Plugins.Dmd)</c>
    /// for DMD's <c>dm</c>, the discriminator for <c>adv/…</c>); null: not named.
    /// </summary>
    public Func<string, string?>? TermOwner { get; set; }

    /// <returns>What was non-finite, and the component whose loss it was (null when not known or when only the gradient was).</returns>
    private (string Text, string? Owner) Culprit(LossBreakdown breakdown, Tensor norm)
    {
        try
        {
            return CulpritOf(breakdown, norm);
        }
        catch (InvalidOperationException)
        {
            // The step's tensors were disposed with an earlier step's scope (a module stepped every k-th iteration).
            return ("its loss terms are in metrics.jsonl", null);
        }
    }

    private (string Text, string? Owner) CulpritOf(LossBreakdown breakdown, Tensor norm)
    {
        foreach (var (name, t) in breakdown.Terms)
        {
            double v = t.detach().to_type(ScalarType.Float64).cpu().item<double>();
            if (!double.IsFinite(v))
                return TermOwner?.Invoke(name) is { Length: > 0 } owner ? ($"loss term '{name}' = {v}, from {owner}", owner) : ($"loss term '{name}' = {v}", null);
        }
        double total = breakdown.Total.detach().to_type(ScalarType.Float64).cpu().item<double>();
        if (double.IsFinite(total)) return ($"gradient norm = {norm.to_type(ScalarType.Float64).cpu().item<double>()}, loss = {total}", null);
        // Every logged term finite, the total not: the part of the total no term logs, that of the component whose loss is the
        // unprefixed rest (a distiller's bare total; stage 2's matcher beside finite adv/ and reg/ terms).
        string? rest = TermOwner?.Invoke("") is { Length: > 0 } o ? o : null;
        return rest is null ? ($"loss = {total}", null) : ($"loss = {total}, from {rest}", rest);
    }

    /// <summary>
    /// Adds this optimiser's full state to a checkpoint under <c>module/NAME/</c>, <c>ema/NAME/</c>,
    /// <c>optimizer/NAME/exp_avg/PARAM</c>, <c>optimizer/NAME/exp_avg_sq/PARAM</c> (Adam's moment estimates),
    /// and <c>counters/NAME</c> (updates — Adam's step count —, skipped, consecutive skips). The tensors
    /// are CPU copies valid until the caller's dispose scope ends.
    /// </summary>
    public void SaveState(IDictionary<string, Tensor> into)
    {
        foreach (var (name, t) in Module.state_dict()) into[$"module/{Name}/{name}"] = t.detach().cpu();
        if (Ema is not null)
            foreach (var (name, t) in Ema.State) into[$"ema/{Name}/{name}"] = t.detach().cpu();
        foreach (var slot in _slots)
        {
            into[$"optimizer/{Name}/exp_avg/{slot.Name}"] = slot.ExpAvg.cpu();
            into[$"optimizer/{Name}/exp_avg_sq/{slot.Name}"] = slot.ExpAvgSq.cpu();
        }
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
        WeightsFile.CopyInto(Module, module, $"{source} ({Name})"); // copies into the parameters: the flat buffer stays theirs
        if (Ema is not null)
        {
            var ema = Prefixed(from, $"ema/{Name}/");
            if (ema.Count == 0) throw new WeightsMismatchException($"{source} holds no EMA of '{Name}', which this stage keeps; it was written with another emaDecay.");
            Ema.Load(ema, $"{source} (EMA of {Name})");
        }
        if (!from.TryGetValue($"counters/{Name}", out var counters))
            throw new WeightsMismatchException($"{source} holds no optimiser state of '{Name}'.");
        using var _ = no_grad();
        WeightsFile.CopyInto(_slots.ToDictionary(s => s.Name, s => s.ExpAvg), Prefixed(from, $"optimizer/{Name}/exp_avg/"), $"{source} (Adam exp_avg of {Name})");
        WeightsFile.CopyInto(_slots.ToDictionary(s => s.Name, s => s.ExpAvgSq), Prefixed(from, $"optimizer/{Name}/exp_avg_sq/"), $"{source} (Adam exp_avg_sq of {Name})");
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
        foreach (var slot in _slots)
        {
            slot.Value.Dispose();
            slot.ExpAvg.Dispose();
            slot.ExpAvgSq.Dispose();
            // slot.Gradient stays: it is the parameter's .grad (its storage lives as long as the parameter holds it).
        }
        foreach (var t in new[] { _parameters, _gradients, _expAvg, _expAvgSq, _updates, _skipped, _consecutive }) t.Dispose();
        Ema?.Dispose();
    }
}

/// <summary>
/// The exponential moving average of a module's weights that <see cref="ModuleOptimizer"/> keeps: the parameters' averages in
/// one flat float32 buffer (one kernel per update), buffers (e.g. spectral-norm vectors) copied on applied steps.
/// </summary>
public sealed class ModuleEma : IDisposable
{
    private readonly Tensor _flat;
    private readonly Tensor _source;
    private readonly Dictionary<string, Tensor> _state = new();
    private readonly HashSet<string> _parameters;
    private readonly bool _hasOthers; // buffers or frozen parameters: copied, not averaged

    internal ModuleEma(nn.Module module, double decay, IReadOnlyDictionary<string, Tensor> parameterViews, Tensor flatParameters)
    {
        Decay = decay;
        _source = flatParameters;
        using var _ = no_grad();
        _flat = flatParameters.clone().DetachFromDisposeScope();
        _parameters = parameterViews.Keys.ToHashSet();
        long offset = 0;
        foreach (var (name, view) in parameterViews)
        {
            _state[name] = _flat.narrow(0, offset, view.numel()).view(view.shape).DetachFromDisposeScope();
            offset += view.numel();
        }
        foreach (var (name, t) in module.state_dict())
            if (!_parameters.Contains(name)) _state[name] = t.detach().clone().DetachFromDisposeScope();
        _hasOthers = _state.Count > _parameters.Count;
    }

    /// <summary>The configured decay d.</summary>
    public double Decay { get; }

    /// <summary>The averaged tensors by state-dict name (parameters and buffers).</summary>
    public IReadOnlyDictionary<string, Tensor> State => _state;

    /// <summary>Folds the current weights in with a device-side decay (float64 scalar; 1 leaves the average unchanged); buffers
    /// are copied where <paramref name="applied"/> (bool scalar) is true.</summary>
    internal void Update(nn.Module module, Tensor decay, Tensor applied)
    {
        _flat.lerp_(_source, (1 - decay).to_type(ScalarType.Float32));
        if (!_hasOthers) return;
        foreach (var (name, t) in module.state_dict())
            if (!_parameters.Contains(name)) _state[name].copy_(where(applied, t, _state[name]));
    }

    /// <summary>Writes the averaged weights into <paramref name="target"/> (same architecture).</summary>
    /// <exception cref="WeightsMismatchException">When the target's tensors differ from the average's in name or shape.</exception>
    public void CopyTo(nn.Module target) => WeightsFile.CopyInto(target, _state, "the EMA");

    /// <summary>Replaces the average with the given tensors (e.g. from a checkpoint).</summary>
    /// <param name="state">Tensors by state-dict name.</param>
    /// <param name="source">Where they come from, for messages.</param>
    /// <exception cref="WeightsMismatchException">When a tensor is missing, extra or of another shape.</exception>
    public void Load(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var _ = no_grad();
        WeightsFile.CopyInto(_state, state, source);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var t in _state.Values) t.Dispose();
        _state.Clear();
        _flat.Dispose();
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
