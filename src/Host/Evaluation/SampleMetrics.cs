using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>Mode statistics of samples against a known Gaussian mixture.</summary>
/// <param name="Covered">Modes that received at least <c>coverageFraction</c> of their expected share of samples.</param>
/// <param name="Total">Number of modes.</param>
/// <param name="HighQualityFraction">Fraction of samples within 3 standard deviations of their nearest mode.</param>
/// <param name="MassTotalVariation">Total variation <c>½ Σ |m_k - π_k|</c> between the per-mode mass of high-quality samples and the mixture weights.</param>
/// <param name="Mass">Per-mode mass m_k of high-quality samples (sums to 1, or all 0 when none).</param>
public sealed record ModeStatistics(int Covered, int Total, double HighQualityFraction, double MassTotalVariation, IReadOnlyList<double> Mass);

/// <summary>Distances between sample sets (method.md §6). All inputs are <c>[N, ...]</c> and are flattened to <c>[N, D]</c>.</summary>
public static class SampleMetrics
{
    /// <summary>
    /// Sliced Wasserstein-2 distance (Rabin et al. 2011; Bonneel et al. 2015):
    /// <c>SW2 = sqrt( E_θ W2²(θᵀa, θᵀb) )</c> over <paramref name="projections"/> random unit directions θ,
    /// each 1-D W2² computed exactly by sorting (equal sample counts).
    /// </summary>
    /// <exception cref="ArgumentException">When the sets differ in size or dimension.</exception>
    public static double SlicedWasserstein2(Tensor a, Tensor b, int projections, long seed)
    {
        using var scope = NewDisposeScope();
        var (x, y) = Flatten(a, b);
        if (x.shape[0] != y.shape[0]) throw new ArgumentException($"sliced W2 needs equal sample counts, got {x.shape[0]} and {y.shape[0]}.");
        var theta = SeededDraws.Noise([x.shape[1], projections], seed, x.device, ScalarType.Float64);
        theta = theta / theta.square().sum(0, keepdim: true).sqrt();                    // [D, P] unit columns
        var px = x.mm(theta).sort(0).Values;                                              // [N, P]
        var py = y.mm(theta).sort(0).Values;
        return Math.Sqrt((px - py).square().mean().item<double>());
    }

    /// <summary>
    /// Unbiased MMD² (Gretton et al. 2012, eq. 3) with a sum of Gaussian kernels
    /// <c>k(x, y) = Σ_σ exp(-‖x - y‖² / (2σ²))</c> over bandwidths <paramref name="bandwidths"/>.
    /// At most <paramref name="maxSamples"/> samples of each set are used.
    /// </summary>
    public static double MmdSquared(Tensor a, Tensor b, IReadOnlyList<double> bandwidths, int maxSamples = 2000)
    {
        using var reference = new MmdReference(b, bandwidths, maxSamples);
        return reference.Distance(a);
    }

    /// <summary>
    /// Assigns each sample to its nearest mixture mean; a sample within 3 s_k of mean k is "high quality".
    /// A mode is covered when it receives at least <paramref name="coverageFraction"/> of its expected
    /// share <c>π_k N</c> of high-quality samples.
    /// </summary>
    public static ModeStatistics Modes(Tensor samples, GaussianMixture mixture, double coverageFraction = 0.1)
    {
        using var scope = NewDisposeScope();
        var x = samples.to_type(ScalarType.Float64).cpu().flatten(1);                         // [N, D]
        Shapes.Require(x, "samples", -1, mixture.Dimension);
        var mu = mixture.MeansTensor(ScalarType.Float64, CPU);                                 // [K, D]
        var d2 = (x.unsqueeze(1) - mu.unsqueeze(0)).square().sum(2);                           // [N, K]
        var (minD2, nearest) = d2.min(1);
        var sd = mixture.StdsTensor(ScalarType.Float64, CPU).index_select(0, nearest);
        var good = minD2 <= (3 * sd).square();                                                 // [N]
        long n = x.shape[0];
        var counts = new double[mixture.Components];
        var nearestArr = nearest.data<long>().ToArray();
        var goodArr = good.data<bool>().ToArray();
        for (int i = 0; i < n; i++) if (goodArr[i]) counts[nearestArr[i]]++;
        double totalGood = counts.Sum();
        int covered = 0;
        for (int k = 0; k < mixture.Components; k++)
            if (counts[k] >= coverageFraction * mixture.Weights[k] * n && counts[k] > 0) covered++;
        var mass = counts.Select(c => totalGood > 0 ? c / totalGood : 0).ToArray();
        double tv = 0.5 * mass.Select((m, k) => Math.Abs(m - mixture.Weights[k])).Sum();
        return new ModeStatistics(covered, mixture.Components, totalGood / n, tv, mass);
    }

    /// <summary>Median pairwise distance of (at most 1000 of) the samples: the scale for MMD bandwidths (median heuristic).</summary>
    public static double MedianDistance(Tensor samples)
    {
        using var scope = NewDisposeScope();
        var x = samples.to_type(ScalarType.Float64).flatten(1);
        x = x.narrow(0, 0, Math.Min(x.shape[0], 1000));
        var d2 = (x.square().sum(1, keepdim: true) + x.square().sum(1).unsqueeze(0) - 2 * x.mm(x.t())).clamp_min(0);
        var upper = d2.triu(1);
        var values = upper.masked_select(upper > 0).sqrt();
        return values.numel() == 0 ? 1.0 : values.median().item<double>();
    }

    private static (Tensor X, Tensor Y) Flatten(Tensor a, Tensor b)
    {
        var x = a.to_type(ScalarType.Float64).flatten(1);
        var y = b.to_type(ScalarType.Float64).flatten(1);
        if (x.shape[1] != y.shape[1]) throw new ArgumentException($"sample dimensions differ: {x.shape[1]} and {y.shape[1]}.");
        return (x, y.to(x.device));
    }
}

/// <summary>
/// MMD² against a fixed reference set: the reference's own kernel sum is computed once, so each compared set
/// costs two kernel matrices instead of three. Float32; at most <c>maxSamples</c> samples of each set.
/// </summary>
public sealed class MmdReference : IDisposable
{
    private readonly Tensor _y;
    private readonly double[] _bandwidths;
    private readonly int _maxSamples;
    private readonly double _syy;

    /// <summary>Prepares the reference set <c>[M, ...]</c>.</summary>
    public MmdReference(Tensor reference, IReadOnlyList<double> bandwidths, int maxSamples = 2000)
    {
        _bandwidths = bandwidths.ToArray();
        _maxSamples = maxSamples;
        var y = reference.to_type(ScalarType.Float32).flatten(1);
        _y = y.narrow(0, 0, Math.Min(y.shape[0], maxSamples)).contiguous().DetachFromDisposeScope();
        long m = _y.shape[0];
        using var scope = NewDisposeScope();
        _syy = OffDiagonalSum(Kernel(_y, _y)) / (m * (m - 1));
    }

    /// <summary>Unbiased MMD² between <paramref name="samples"/> and the reference.</summary>
    /// <exception cref="ArgumentException">When the dimensions differ.</exception>
    public double Distance(Tensor samples)
    {
        using var scope = NewDisposeScope();
        var x = samples.to_type(ScalarType.Float32).flatten(1).to(_y.device);
        if (x.shape[1] != _y.shape[1]) throw new ArgumentException($"sample dimensions differ: {x.shape[1]} and {_y.shape[1]}.");
        x = x.narrow(0, 0, Math.Min(x.shape[0], _maxSamples));
        long n = x.shape[0];
        double sxx = OffDiagonalSum(Kernel(x, x)) / (n * (n - 1));
        double sxy = Kernel(x, _y).mean().item<float>();
        return sxx + _syy - 2 * sxy;
    }

    private Tensor Kernel(Tensor p, Tensor q)
    {
        var d2 = (p.square().sum(1, keepdim: true) + q.square().sum(1).unsqueeze(0) - 2 * p.mm(q.t())).clamp_min_(0); // [N, M]
        Tensor? k = null;
        foreach (var s in _bandwidths)
        {
            var term = (d2 * (-1.0 / (2 * s * s))).exp_();
            k = k is null ? term : k.add_(term);
        }
        return k!;
    }

    private static double OffDiagonalSum(Tensor k) => (k.sum() - k.diagonal().sum()).to_type(ScalarType.Float64).item<double>();

    /// <inheritdoc/>
    public void Dispose() => _y.Dispose();
}
