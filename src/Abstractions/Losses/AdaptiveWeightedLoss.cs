using static TorchSharp.torch;

namespace HierDistill.Abstractions.Losses;

/// <summary>
/// MeanFlow's adaptively weighted squared error (Geng et al. 2025, "Mean Flows for One-step Generative Modeling",
/// §4.3 and Appendix; method.md §2): <c>s_i = Σ_dims Δ_i²</c> per sample, <c>L = mean_i( sg(1 / (s_i + c)^p) · s_i )</c>;
/// the weight is detached. With p = 1 the loss stays near 1 by design, so the unweighted mean <c>s</c> is logged as
/// <c>raw_loss</c>. Shared by the trajectory distillers (MeanFlow, consistency, progressive) so that a comparison
/// between them changes the target only.
/// </summary>
public static class AdaptiveWeightedLoss
{
    /// <summary>The weighted loss, with <c>raw_loss</c> (mean s) as a term and <c>adaptive_weight</c> (mean weight) as a diagnostic.</summary>
    /// <param name="delta">Error Δ = prediction − target, <c>[B, ...S]</c>, carrying the gradient.</param>
    /// <param name="power">p ≥ 0 (0 gives the plain per-sample sum of squares).</param>
    /// <param name="epsilon">c &gt; 0, keeps the weight finite at zero error.</param>
    /// <exception cref="ArgumentOutOfRangeException">For p &lt; 0 or c ≤ 0.</exception>
    public static LossBreakdown Compute(Tensor delta, double power, double epsilon)
    {
        if (power < 0) throw new ArgumentOutOfRangeException(nameof(power), power, "the adaptive weight power p must be >= 0.");
        if (epsilon <= 0) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "the adaptive weight constant c must be > 0.");
        var s = delta.square().flatten(1).sum(1);                                     // [B] per-sample sum over all non-batch dims
        var weight = power == 0 ? ones_like(s) : (s.detach() + epsilon).pow(-power);  // [B], no gradient
        var loss = (weight * s).mean();
        return new LossBreakdown(loss,
            new Dictionary<string, Tensor> { ["raw_loss"] = s.mean() },
            new Dictionary<string, Tensor> { ["adaptive_weight"] = weight.mean() });
    }
}
