using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Plugins.Teachers.Exact;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Plugins.Teachers;

public class GaussianMixtureVelocityTests
{
    // Three components in 2-D, two classes, unequal weights and widths.
    private static readonly GaussianMixture Mixture = new(
        [[2.0, 0.0], [-1.0, 1.5], [0.5, -2.0]], [0.3, 0.5, 0.2], [0.5, 0.3, 0.2], [0, 1, 0], 2);

    private static readonly GaussianMixtureVelocity Exact = new(Mixture);

    [Fact]
    public void At_t1_each_component_contributes_z_minus_its_mean_so_v_is_z_minus_the_weighted_mean()
    {
        using var scope = NewDisposeScope();
        var z = tensor(new double[] { 0.3, -0.7, 1.2, 2.0 }, [2, 2]);
        var v = Exact.Velocity(z, ones(2, ScalarType.Float64), full(2, 2L)); // ∅: all components
        // At t = 1 every component has the same marginal N(0, I), so γ_k = π_k and v = z - Σ π_k μ_k.
        double mx = 0.5 * 2.0 + 0.3 * -1.0 + 0.2 * 0.5, my = 0.5 * 0 + 0.3 * 1.5 + 0.2 * -2.0;
        Assert.Equal(new[] { 0.3 - mx, -0.7 - my, 1.2 - mx, 2.0 - my }, v.data<double>().ToArray(), new ToleranceComparer(1e-12));
    }

    [Fact]
    public void At_t0_the_velocity_is_minus_z_for_every_component()
    {
        using var scope = NewDisposeScope();
        var z = tensor(new double[] { 0.3, -0.7, 1.2, 2.0 }, [2, 2]);
        var v = Exact.Velocity(z, zeros(2, ScalarType.Float64), tensor(new long[] { 0, 1 }));
        Assert.Equal(new[] { -0.3, 0.7, -1.2, -2.0 }, v.data<double>().ToArray(), new ToleranceComparer(1e-12));
    }

    /// <summary>
    /// Independent check through the score: with z = (1 - t) x + t e, E[e|z] = -t ∇log p_t(z), so
    /// v = E[e - x | z] = (-t ∇log p_t(z) - z) / (1 - t). The log-density is the mixture of N((1 - t) μ_k, S_k),
    /// differentiated by central differences here.
    /// </summary>
    [Theory]
    [InlineData(0.2, 2)]   // unconditional
    [InlineData(0.5, 0)]   // class 0: components 0 and 2
    [InlineData(0.8, 1)]   // class 1: component 1
    public void Velocity_agrees_with_a_finite_difference_of_the_log_density(double t, long label)
    {
        using var scope = NewDisposeScope();
        var points = new[] { new[] { 0.4, -0.3 }, new[] { -1.1, 0.9 }, new[] { 1.7, -1.4 } };
        var z = tensor(points.SelectMany(p => p).ToArray(), [3, 2]);
        var v = Exact.Velocity(z, full(3, t, ScalarType.Float64), full(3, label)).data<double>().ToArray();
        double h = 1e-5;
        for (int i = 0; i < points.Length; i++)
        {
            for (int d = 0; d < 2; d++)
            {
                var plus = (double[])points[i].Clone();
                var minus = (double[])points[i].Clone();
                plus[d] += h;
                minus[d] -= h;
                double score = (LogDensity(plus, t, label) - LogDensity(minus, t, label)) / (2 * h);
                double expected = (-t * score - points[i][d]) / (1 - t);
                Assert.True(Math.Abs(v[2 * i + d] - expected) < 1e-6, $"point {i}, dim {d}: {v[2 * i + d]} vs {expected}");
            }
        }
    }

    [Fact]
    public void Guided_exact_velocity_is_the_cfg_combination_of_conditional_and_unconditional()
    {
        using var scope = NewDisposeScope();
        var z = tensor(new double[] { 0.4, -0.3, -1.1, 0.9 }, [2, 2]);
        var t = full(2, 0.4, ScalarType.Float64);
        var labels = tensor(new long[] { 0, 1 });
        var cond = Exact.Velocity(z, t, labels);
        var uncond = Exact.Velocity(z, t, full(2, 2L));
        var guided = ClassifierFreeGuidance.Guide(Exact.Velocity, 2.5, 2)(z, t, labels);
        var expected = uncond + 2.5 * (cond - uncond);
        Assert.True((guided - expected).abs().max().item<double>() < 1e-12);
    }

    private static double LogDensity(double[] z, double t, long label)
    {
        double total = 0;
        double weightSum = 0;
        for (int k = 0; k < Mixture.Components; k++)
        {
            if (label < Mixture.NumClasses && Mixture.Classes[k] != label) continue;
            weightSum += Mixture.Weights[k];
        }
        for (int k = 0; k < Mixture.Components; k++)
        {
            if (label < Mixture.NumClasses && Mixture.Classes[k] != label) continue;
            double var = Math.Pow(1 - t, 2) * Math.Pow(Mixture.Stds[k], 2) + t * t;
            double d2 = 0;
            for (int d = 0; d < 2; d++) d2 += Math.Pow(z[d] - (1 - t) * Mixture.Means[k][d], 2);
            total += Mixture.Weights[k] / weightSum * Math.Exp(-d2 / (2 * var)) / (2 * Math.PI * var);
        }
        return Math.Log(total);
    }
}

internal sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
{
    public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;

    public int GetHashCode(double obj) => 0;
}
