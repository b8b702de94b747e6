using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Baselines;

/// <summary>
/// The progressive-distillation target (Salimans &amp; Ho 2022, Alg. 2) in the average-velocity frame (method.md §4):
/// two half-steps of the round's teacher from <c>z_t</c> over <c>[r, t]</c>, <c>Δ = t - r</c>,
/// <code>
/// z_m = z_t - (Δ/2) u_T(z_t, t - Δ/2, t);   z_e = z_m - (Δ/2) u_T(z_m, r, t - Δ/2);   ū = (z_t - z_e) / Δ
/// </code>
/// so that one student step <c>z_t - Δ ū</c> lands exactly on the teacher's two-step point <c>z_e</c>.
/// </summary>
internal static class ProgressiveTarget
{
    /// <param name="teacher">The round's teacher <c>u_T(z, r, t | c)</c> (round one: the guided velocity, ignoring r).</param>
    /// <param name="z">States <c>z_t</c> <c>[B, ...S]</c>.</param>
    /// <param name="r">End times <c>[B]</c>, r &lt; t.</param>
    /// <param name="t">Start times <c>[B]</c>.</param>
    /// <param name="labels">Labels <c>[B]</c>.</param>
    /// <returns>ū <c>[B, ...S]</c>, detached.</returns>
    public static Tensor Compute(AverageVelocityField teacher, Tensor z, Tensor r, Tensor t, Tensor labels)
    {
        using var _ = no_grad();
        var mid = t - (t - r) / 2;
        var zm = FlowConventions.Step(z, teacher(z, mid, t, labels), mid, t);
        var ze = FlowConventions.Step(zm, teacher(zm, r, mid, labels), r, mid);
        return ((z - ze) / FlowConventions.ExpandTime(t - r, z)).detach();
    }
}
