using HierDistill.Abstractions.Conventions;
using static TorchSharp.torch;

namespace HierDistill.Plugins.MeanFlow;

/// <summary>
/// The MeanFlow identity as a regression target (Geng et al. 2025, eq. 6 and 10):
/// <c>u_tgt = sg( v - (t - r) · du/dt )</c>, with <c>du/dt = v ∂_z u + ∂_t u</c> the total derivative along the
/// trajectory. HD uses the teacher's guided velocity as <c>v</c>. For <c>r = t</c> it is exactly <c>v</c>.
/// </summary>
internal static class MeanFlowTarget
{
    /// <param name="velocity">Teacher velocity ṽ <c>[B, ...S]</c>.</param>
    /// <param name="dudt">Total derivative of the student along (ṽ, 0, 1), same shape.</param>
    /// <param name="r">End times <c>[B]</c>.</param>
    /// <param name="t">Start times <c>[B]</c>.</param>
    public static Tensor Compute(Tensor velocity, Tensor dudt, Tensor r, Tensor t) =>
        (velocity - FlowConventions.ExpandTime(t - r, velocity) * dudt).detach();
}
