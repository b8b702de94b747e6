using HierDistill.Abstractions.Conventions;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Baselines;

/// <summary>
/// The continuous consistency target in the average-velocity frame (method.md §4; HD, §3: a consistency model is
/// MeanFlow with r = 0): <c>u_tgt = sg( ṽ - w · t · du/dt )</c>, <c>du/dt</c> the total derivative of
/// <c>u_θ(z, 0, t)</c> along <c>(ṽ, 1)</c> and <c>w</c> the tangent warm-up weight (1 without warm-up). With sCM's
/// tangent normalisation (Lu &amp; Song 2024, Alg. 1) the target becomes <c>sg( u_θ + g / (‖g‖ + c) )</c> with
/// <c>g = u_tgt - u_θ</c>: the same direction, at most unit length per sample.
/// </summary>
internal static class ConsistencyTarget
{
    /// <param name="velocity">Teacher velocity ṽ <c>[B, ...S]</c>.</param>
    /// <param name="dudt">Total derivative of <c>u_θ(z, 0, t)</c> along <c>(ṽ, 1)</c>, same shape.</param>
    /// <param name="t">Times <c>[B]</c>.</param>
    /// <param name="warmup">Weight w in [0, 1] of the <c>t · du/dt</c> term.</param>
    /// <param name="current">The student's output <c>u_θ(z, 0, t)</c> (used only with normalisation), same shape.</param>
    /// <param name="normalization">The constant c of the tangent normalisation, or null for none.</param>
    /// <returns>The target, detached.</returns>
    public static Tensor Compute(Tensor velocity, Tensor dudt, Tensor t, double warmup, Tensor current, double? normalization)
    {
        using var _ = no_grad();
        var target = velocity - warmup * FlowConventions.ExpandTime(t, velocity) * dudt;
        if (normalization is { } c)
        {
            var u = current.detach();
            target = u + TangentNormalization.Apply(target - u, c);
        }
        return target.detach();
    }
}
