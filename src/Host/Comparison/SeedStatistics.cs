namespace HierDistill.Host.Comparison;

/// <summary>
/// Mean and sample standard deviation of one value over the runs (seeds) of a variant:
/// <c>mean = Σ x_i / n</c>, <c>std = sqrt( Σ (x_i - mean)² / (n - 1) )</c> (Bessel's correction; undefined for n = 1;
/// exactly 0, with the mean exactly the value, when all values are equal).
/// </summary>
/// <param name="Mean">The mean (NaN when any value is NaN or there are none).</param>
/// <param name="Std">The sample standard deviation, or null for fewer than two values.</param>
/// <param name="Count">Number of values n.</param>
public readonly record struct SeedStatistics(double Mean, double? Std, int Count)
{
    /// <summary>The statistics of <paramref name="values"/>.</summary>
    public static SeedStatistics Of(IReadOnlyCollection<double> values)
    {
        int n = values.Count;
        if (n == 0) return new SeedStatistics(double.NaN, null, 0);
        double mean = values.Sum() / n;
        if (n == 1) return new SeedStatistics(mean, null, 1);
        // Equal values have no spread; summing them can leave the mean one rounding step away (std ~1e-16).
        double first = values.First();
        if (values.All(x => x == first)) return new SeedStatistics(first, 0, n);
        double variance = values.Sum(x => (x - mean) * (x - mean)) / (n - 1);
        return new SeedStatistics(mean, Math.Sqrt(variance), n);
    }
}
