using Xunit;
using static TorchSharp.torch;

namespace Acme.HierDistill.Shortcut.Tests;

public class GapSamplerTests
{
    [Fact]
    public void Pairs_are_cells_of_the_dyadic_grid_with_gaps_from_1_down_to_2_over_M()
    {
        using var scope = NewDisposeScope();
        const int levels = 7; // M = 128
        const int n = 20000;
        var (r, t, finest) = GapSampler.Sample(n, levels, CPU, new Generator(5));
        var rs = Values.Of(r);
        var ts = Values.Of(t);
        var fine = finest.data<bool>().ToArray();
        var count = new int[levels];
        int leftHalf = 0, halves = 0;
        for (int i = 0; i < n; i++)
        {
            double h = ts[i] - rs[i];
            Assert.InRange(rs[i], 0.0, 1.0);
            Assert.InRange(ts[i], 0.0, 1.0);
            double k = -Math.Log2(h);
            Assert.Equal(Math.Round(k), k, 9);              // h = 2^-k exactly
            Assert.InRange((int)k, 0, levels - 1);         // 1 ≥ h ≥ 2/128
            Assert.Equal(Math.Round(rs[i] / h), rs[i] / h, 9); // r on the grid of width h
            Assert.Equal(h == 2.0 / 128, fine[i]);
            count[(int)k]++;
            if (k == 1) { halves++; if (rs[i] == 0) leftHalf++; }
        }
        // Levels uniform: each has probability 1/7 (binomial σ ≈ 0.0025; allow 6σ).
        Assert.All(count, c => Assert.InRange(c / (double)n, 1.0 / 7 - 0.015, 1.0 / 7 + 0.015));
        // At h = 1/2 the two cells [0, 1/2] and [1/2, 1] are equally likely (σ ≈ 0.0094; allow 4σ).
        Assert.InRange(leftHalf / (double)halves, 0.46, 0.54);
    }

    [Fact]
    public void One_level_is_the_whole_interval_and_finest()
    {
        using var scope = NewDisposeScope();
        var (r, t, finest) = GapSampler.Sample(50, 1, CPU, new Generator(6));
        Assert.All(Values.Of(r), x => Assert.Equal(0.0, x));
        Assert.All(Values.Of(t), x => Assert.Equal(1.0, x));
        Assert.All(finest.data<bool>().ToArray(), Assert.True);
    }

    [Fact]
    public void Zero_rows_give_empty_tensors()
    {
        using var scope = NewDisposeScope();
        var (r, t, finest) = GapSampler.Sample(0, 7, CPU);
        Assert.Equal(0, r.numel());
        Assert.Equal(0, t.numel());
        Assert.Equal(0, finest.numel());
    }
}
