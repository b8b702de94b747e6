using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>Mean and covariance of a feature set (float64).</summary>
/// <param name="Mean">μ, <c>[D]</c>.</param>
/// <param name="Covariance">Σ (unbiased), <c>[D, D]</c>.</param>
public sealed record GaussianStatistics(Tensor Mean, Tensor Covariance) : IDisposable
{
    /// <summary>Fits μ and Σ to features <c>[N, D]</c> (N ≥ 2).</summary>
    /// <exception cref="ArgumentException">For fewer than two samples.</exception>
    public static GaussianStatistics Of(Tensor features)
    {
        if (features.ndim != 2 || features.shape[0] < 2)
            throw new ArgumentException($"features must be [N, D] with N ≥ 2, got [{string.Join(", ", features.shape)}].");
        using var scope = NewDisposeScope();
        var f = features.to_type(ScalarType.Float64);
        var mean = f.mean([0]);
        var centred = f - mean;
        var cov = centred.t().mm(centred) / (f.shape[0] - 1);
        return new GaussianStatistics(mean.MoveToOuterDisposeScope(), cov.MoveToOuterDisposeScope());
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Mean.Dispose();
        Covariance.Dispose();
    }
}

/// <summary>
/// Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, the FID formula):
/// <c>‖μ₁ - μ₂‖² + tr(Σ₁ + Σ₂ - 2 (Σ₁^½ Σ₂ Σ₁^½)^½)</c>. The matrix square roots come from symmetric eigendecompositions
/// in float64 (negative eigenvalues from rounding are clamped to zero).
/// </summary>
public static class FrechetDistance
{
    /// <summary>The distance between two fitted Gaussians.</summary>
    public static double Compute(GaussianStatistics a, GaussianStatistics b)
    {
        using var scope = NewDisposeScope();
        var diff = (a.Mean - b.Mean).square().sum();
        var sqrtA = SymmetricSqrt(a.Covariance);
        var m = sqrtA.mm(b.Covariance).mm(sqrtA);
        m = (m + m.t()) / 2;
        var traceSqrt = linalg.eigvalsh(m).clamp_min(0).sqrt().sum();
        return (diff + a.Covariance.trace() + b.Covariance.trace() - 2 * traceSqrt).item<double>();
    }

    /// <summary>The distance between Gaussians fitted to features <c>[N, D]</c> and <c>[M, D]</c>.</summary>
    public static double Compute(Tensor featuresA, Tensor featuresB)
    {
        using var a = GaussianStatistics.Of(featuresA);
        using var b = GaussianStatistics.Of(featuresB);
        return Compute(a, b);
    }

    private static Tensor SymmetricSqrt(Tensor s)
    {
        var (values, vectors) = linalg.eigh((s + s.t()) / 2);
        return vectors.mm(diag(values.clamp_min(0).sqrt())).mm(vectors.t());
    }
}
