using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Numerics;

/// <summary>
/// An exponential moving average of a module's parameters, <c>θ̄ ← d θ̄ + (1 - d) θ</c>; buffers
/// are copied. The shadow tensors live outside any dispose scope until <see cref="Dispose"/>.
/// </summary>
public sealed class ExponentialMovingAverage : IDisposable
{
    private readonly Dictionary<string, Tensor> _shadow = new();
    private readonly HashSet<string> _parameters;

    /// <summary>Starts the average at the module's current weights.</summary>
    /// <param name="module">The module to track.</param>
    /// <param name="decay">Decay d in [0, 1).</param>
    /// <exception cref="ArgumentOutOfRangeException">For a decay outside [0, 1).</exception>
    public ExponentialMovingAverage(nn.Module module, double decay)
    {
        if (!(decay >= 0 && decay < 1)) throw new ArgumentOutOfRangeException(nameof(decay), decay, "EMA decay must be in [0, 1).");
        Decay = decay;
        _parameters = module.named_parameters().Select(p => p.name).ToHashSet();
        using var _ = no_grad();
        foreach (var (name, t) in module.state_dict())
            _shadow[name] = t.detach().clone().DetachFromDisposeScope();
    }

    /// <summary>The decay d.</summary>
    public double Decay { get; }

    /// <summary>The averaged tensors by state-dict name.</summary>
    public IReadOnlyDictionary<string, Tensor> State => _shadow;

    /// <summary>Folds the module's current weights into the average with decay <see cref="Decay"/>.</summary>
    public void Update(nn.Module module) => Update(module, Decay);

    /// <summary>Folds the module's current weights into the average with the given decay (e.g. a warm-up schedule).</summary>
    /// <exception cref="ArgumentOutOfRangeException">For a decay outside [0, 1).</exception>
    public void Update(nn.Module module, double decay)
    {
        if (!(decay >= 0 && decay < 1)) throw new ArgumentOutOfRangeException(nameof(decay), decay, "EMA decay must be in [0, 1).");
        using var _ = no_grad();
        foreach (var (name, t) in module.state_dict())
        {
            var s = _shadow[name];
            if (_parameters.Contains(name) && t.is_floating_point()) s.mul_(decay).add_(t, alpha: 1 - decay);
            else s.copy_(t);
        }
    }

    /// <summary>Writes the averaged weights into <paramref name="target"/> (same architecture).</summary>
    public void CopyTo(nn.Module target)
    {
        using var _ = no_grad();
        foreach (var (name, t) in target.state_dict())
        {
            if (!_shadow.TryGetValue(name, out var s)) throw new ArgumentException($"EMA has no tensor '{name}'.");
            t.copy_(s);
        }
    }

    /// <summary>Replaces the average with the given tensors (e.g. from a checkpoint).</summary>
    public void Load(IReadOnlyDictionary<string, Tensor> state)
    {
        using var _ = no_grad();
        foreach (var (name, s) in _shadow)
        {
            if (!state.TryGetValue(name, out var t)) throw new ArgumentException($"EMA state has no tensor '{name}'.");
            if (!t.shape.SequenceEqual(s.shape))
                throw new ArgumentException($"EMA state tensor '{name}' has shape [{string.Join(", ", t.shape)}], the average [{string.Join(", ", s.shape)}].");
            s.copy_(t);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var t in _shadow.Values) t.Dispose();
        _shadow.Clear();
    }
}
