using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Models;

/// <summary>
/// A velocity field <c>v(z, t | c)</c> (method.md §1).
/// </summary>
/// <param name="z">States <c>[B, ...S]</c>.</param>
/// <param name="t">Times in [0, 1] (t = 0 data, t = 1 noise), <c>[B]</c>.</param>
/// <param name="labels">Class labels <c>[B]</c> int64; the null label ∅ selects the unconditional field.</param>
/// <returns>Velocity <c>dz/dt</c>, <c>[B, ...S]</c>.</returns>
public delegate Tensor VelocityField(Tensor z, Tensor t, Tensor labels);

/// <summary>
/// An average-velocity field <c>u(z, r, t | c) = 1/(t - r) ∫_r^t v(z_s, s) ds</c> (MeanFlow, Geng et al. 2025, eq. 3).
/// </summary>
/// <param name="z">States at time t, <c>[B, ...S]</c>.</param>
/// <param name="r">End times, <c>[B]</c>, <c>0 ≤ r ≤ t</c>.</param>
/// <param name="t">Start times, <c>[B]</c>, in [0, 1].</param>
/// <param name="labels">Class labels <c>[B]</c> int64.</param>
/// <returns><c>u</c>, <c>[B, ...S]</c>; <c>z_r = z_t - (t - r) u</c>.</returns>
public delegate Tensor AverageVelocityField(Tensor z, Tensor r, Tensor t, Tensor labels);

/// <summary>Describes one tappable block of a network's token features.</summary>
/// <param name="Block">Block index as passed to <see cref="VelocityNetwork.TokenFeatures"/>.</param>
/// <param name="Tokens">Number of tokens N.</param>
/// <param name="Channels">Channels per token C.</param>
public sealed record TokenFeatureSpec(int Block, long Tokens, long Channels);

/// <summary>
/// Base class of velocity networks <c>v_θ(z, t | c)</c> (teachers, fake scores). A plain
/// <see cref="nn.Module"/>: it never computes a loss.
/// </summary>
public abstract class VelocityNetwork : nn.Module
{
    /// <summary>Creates the module with a name used in state dicts.</summary>
    protected VelocityNetwork(string name) : base(name) { }

    /// <summary>Evaluates <c>v_θ(z, t | c)</c>. Shapes as in <see cref="VelocityField"/>.</summary>
    /// <exception cref="ArgumentException">On shape mismatches.</exception>
    public abstract Tensor Velocity(Tensor z, Tensor t, Tensor labels);

    /// <summary>The blocks whose token features can be tapped (empty if none).</summary>
    public virtual IReadOnlyList<TokenFeatureSpec> FeatureBlocks => [];

    /// <summary>
    /// Token features <c>[B, N, C]</c> of the given blocks for the inputs (one forward pass),
    /// differentiable with respect to <paramref name="z"/>. Used by discriminators (method.md §3).
    /// </summary>
    /// <exception cref="NotSupportedException">When the network has no token features.</exception>
    /// <exception cref="ArgumentOutOfRangeException">For a block not in <see cref="FeatureBlocks"/>.</exception>
    public virtual IReadOnlyList<Tensor> TokenFeatures(Tensor z, Tensor t, Tensor labels, IReadOnlyList<int> blocks) =>
        throw new NotSupportedException($"{GetType().Name} exposes no token features.");

    /// <summary>A deep copy (same architecture, copied weights, same device), trainable.</summary>
    public abstract VelocityNetwork Clone();

    /// <summary>
    /// A student <c>u_θ(z, r, t | c)</c> of the same architecture with an extra embedder of
    /// <c>h = t - r</c> initialised to zero and every other weight copied, so that at
    /// initialisation <c>u_θ(z, r, t) = v(z, t)</c> exactly (method.md §1).
    /// </summary>
    public abstract AverageVelocityNetwork CreateStudent();

    /// <summary>This network as a <see cref="VelocityField"/>.</summary>
    public VelocityField AsField() => Velocity;
}

/// <summary>
/// Base class of students <c>u_θ(z, r, t | c)</c> (method.md §1). Sampling with NFE K uses
/// <c>z_{k+1} = z_k - (t_k - t_{k+1}) u_θ(z_k, t_{k+1}, t_k)</c>.
/// </summary>
public abstract class AverageVelocityNetwork : nn.Module
{
    /// <summary>Creates the module with a name used in state dicts.</summary>
    protected AverageVelocityNetwork(string name) : base(name) { }

    /// <summary>Evaluates <c>u_θ(z, r, t | c)</c>. Shapes as in <see cref="AverageVelocityField"/>.</summary>
    /// <exception cref="ArgumentException">On shape mismatches.</exception>
    public abstract Tensor AverageVelocity(Tensor z, Tensor r, Tensor t, Tensor labels);

    /// <summary>A deep copy (same architecture, copied weights, same device), trainable.</summary>
    public abstract AverageVelocityNetwork Clone();

    /// <summary>This network as an <see cref="AverageVelocityField"/>.</summary>
    public AverageVelocityField AsField() => AverageVelocity;
}
