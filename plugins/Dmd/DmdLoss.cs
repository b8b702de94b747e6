using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Losses;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Dmd;

/// <summary>
/// The distribution-matching loss of DMD (Yin et al. 2024, eq. 7–8; DMD2's normalisation, method.md §3):
/// <code>
/// grad = (x0_fake - x0_real) / max(mean_dims |x - x0_real|, clamp)        per sample
/// L    = 0.5 · mean( (x - sg(x - grad))² )                                 so dL/dx = grad / N
/// </code>
/// One descent step on x moves it toward x0_real and away from x0_fake.
/// </summary>
internal static class DmdLoss
{
    /// <param name="x">Generator samples <c>[B, ...S]</c> carrying the generator's graph.</param>
    /// <param name="x0Real">Real score's denoised estimate, same shape (no gradient).</param>
    /// <param name="x0Fake">Fake score's denoised estimate, same shape (no gradient).</param>
    /// <param name="clamp">Lower bound of the normaliser.</param>
    public static LossBreakdown Compute(Tensor x, Tensor x0Real, Tensor x0Fake, double clamp)
    {
        Shapes.RequireSame(x, x0Real, "x", "x0_real");
        Shapes.RequireSame(x, x0Fake, "x", "x0_fake");
        Tensor grad, denominator;
        using (no_grad())
        {
            denominator = (x - x0Real).abs().flatten(1).mean([1]).clamp_min(clamp);   // [B]
            grad = (x0Fake - x0Real) / FlowConventions.ExpandTime(denominator, x);      // [B, ...S]
            grad = grad.nan_to_num();
        }
        var target = (x - grad).detach();
        var loss = 0.5 * (x - target).square().mean();
        return new LossBreakdown(loss,
            new Dictionary<string, Tensor> { ["dm"] = loss },
            new Dictionary<string, Tensor> { ["dm_grad_abs"] = grad.abs().mean(), ["dm_denominator"] = denominator.mean() });
    }
}
