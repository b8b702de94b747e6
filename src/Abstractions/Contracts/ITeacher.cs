using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Contracts;

/// <summary>
/// A frozen velocity field <c>v_T(z, t | c)</c>: the model being distilled (method.md §1, design.md).
/// Classifier-free guidance is applied outside, by <see cref="Numerics.ClassifierFreeGuidance"/>.
/// </summary>
public interface ITeacher
{
    /// <summary>The data the teacher models (sample shape, classes, null label).</summary>
    DataSpec Spec { get; }

    /// <summary>
    /// <c>v_T(z, t | c)</c> without guidance. <paramref name="z"/> <c>[B, ...S]</c>, <paramref name="t"/>
    /// <c>[B]</c> in [0, 1], <paramref name="labels"/> <c>[B]</c> int64 (null label allowed) → <c>[B, ...S]</c>.
    /// </summary>
    /// <exception cref="ArgumentException">On shape mismatches.</exception>
    Tensor Velocity(Tensor z, Tensor t, Tensor labels);

    /// <summary>Blocks whose token features can be tapped for a discriminator (empty if none).</summary>
    IReadOnlyList<TokenFeatureSpec> FeatureBlocks { get; }

    /// <summary>
    /// Token features <c>[B, N, C]</c> of the chosen blocks, differentiable in <paramref name="z"/>: one tensor per entry of
    /// <paramref name="blocks"/>, in that order (a discriminator's heads read them by position; the host checks this before
    /// anything runs by asking for the blocks reversed).
    /// </summary>
    /// <exception cref="NotSupportedException">When the teacher has no token features.</exception>
    IReadOnlyList<Tensor> TokenFeatures(Tensor z, Tensor t, Tensor labels, IReadOnlyList<int> blocks);

    /// <summary>The teacher's network, or null for an analytic teacher. The host trains it in the teacher stage.</summary>
    VelocityNetwork? Network { get; }

    /// <summary>A trainable copy of the teacher's network (the DMD fake score starts as it).</summary>
    /// <exception cref="NotSupportedException">For an analytic teacher.</exception>
    VelocityNetwork CreateTrainableCopy();

    /// <summary>A student <c>u_θ(z, r, t | c)</c> that starts equal to the teacher (zero-initialised <c>t - r</c> embedder).</summary>
    /// <exception cref="NotSupportedException">For an analytic teacher.</exception>
    AverageVelocityNetwork CreateStudent();
}
