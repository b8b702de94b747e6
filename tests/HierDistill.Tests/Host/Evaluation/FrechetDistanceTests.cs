using HierDistill.Host.Evaluation;
using HierDistill.Host.Reporting;
using HierDistill.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Evaluation;

public class FrechetDistanceTests
{
    [Fact]
    public void Identical_feature_sets_are_at_distance_zero()
    {
        using var scope = NewDisposeScope();
        var f = randn(500, 6, generator: new Generator(1));
        Assert.True(Math.Abs(FrechetDistance.Compute(f, f.clone())) < 1e-8);
    }

    [Fact]
    public void Diagonal_gaussians_match_the_closed_form()
    {
        using var scope = NewDisposeScope();
        // For commuting (diagonal) covariances: FD = |μ1 - μ2|² + Σ_i (sqrt(a_i) - sqrt(b_i))².
        var a = new GaussianStatistics(tensor(new double[] { 0, 1, 2 }), diag(tensor(new double[] { 1, 4, 9 })));
        var b = new GaussianStatistics(tensor(new double[] { 1, 1, 0 }), diag(tensor(new double[] { 4, 1, 9 })));
        double expected = (1 + 0 + 4) + (1 + 1 + 0);
        Assert.Equal(expected, FrechetDistance.Compute(a, b), 9);
    }

    [Fact]
    public void A_rotated_covariance_needs_the_matrix_square_root()
    {
        using var scope = NewDisposeScope();
        // Σ1 = diag(4, 1), Σ2 = R Σ1 Rᵀ (90° rotation) = diag(1, 4): FD = (2-1)² + (1-2)² = 2 with equal means.
        var s1 = diag(tensor(new double[] { 4, 1 }));
        var rot = tensor(new double[] { 0, -1, 1, 0 }, [2, 2]);
        var s2 = rot.mm(s1).mm(rot.t());
        var zero = zeros(2, ScalarType.Float64);
        Assert.Equal(2.0, FrechetDistance.Compute(new GaussianStatistics(zero, s1), new GaussianStatistics(zero.clone(), s2)), 9);
    }

    [Fact]
    public void Sample_grids_are_written_as_png()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        ImageGrid.Save(rand(20, 1, 28, 28) * 2 - 1, 10, folder.File("grid.png"));
        var bytes = File.ReadAllBytes(folder.File("grid.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes.Take(4));
    }
}
