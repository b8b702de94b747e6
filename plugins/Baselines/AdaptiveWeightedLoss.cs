using HierDistill.Abstractions.Losses;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Baselines;

/// <summary>
/// MeanFlow's adaptively weighted squared error (Geng et al. 2025, §4.3; method.md §2), used by the baselines so that
/// a comparison with MeanFlow changes the target only: <c>s_i = Σ_dims Δ_i²</c> per sample,
/// <c>L = mean_i( sg(1 / (s_i + c)^p) · s_i )</c>; p = 0 is the plain per-sample sum of squares.
/// The unweighted mean <c>s</c> is logged as <c>raw_loss</c>.
/// </summary>
/// <remarks>The same formula as the MeanFlow plugin's: plugins never reference each other (design.md).</remarks>
internal static class AdaptiveWeightedLoss
{
    /// <param name="delta">Error Δ <c>[B, ...S]</c>, carrying the gradient.</param>
    /// <param name="power">p ≥ 0.</param>
    /// <param name="epsilon">c &gt; 0.</param>
    public static LossBreakdown Compute(Tensor delta, double power, double epsilon)
    {
        var s = delta.square().flatten(1).sum(1);                                            // [B]
        var weight = power == 0 ? ones_like(s) : (s.detach() + epsilon).pow(-power);         // [B], no gradient
        var loss = (weight * s).mean();
        return new LossBreakdown(loss,
            new Dictionary<string, Tensor> { ["raw_loss"] = s.mean() },
            new Dictionary<string, Tensor> { ["adaptive_weight"] = weight.mean() });
    }
}
