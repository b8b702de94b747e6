using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Plugins.Teachers.Networks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Plugins.Teachers;

public class DiTTests
{
    private static readonly DataSpec Spec = new("images", [1, 28, 28], 10);

    private static DiTVelocityNetwork Tiny(int seed)
    {
        manual_seed(seed);
        var net = new DiTVelocityNetwork(new DiTOptions { Preset = "DiT-XT/4", Hidden = 32, Depth = 2, Heads = 2, FrequencyDim = 16 }, Spec);
        // adaLN-Zero makes a fresh DiT output exactly 0; perturb every weight so the tests see a generic network.
        using (no_grad()) foreach (var p in net.parameters()) p.add_(randn_like(p) * 0.05);
        return net;
    }

    [Fact]
    public void Output_and_token_features_have_the_documented_shapes()
    {
        using var scope = NewDisposeScope();
        var net = Tiny(1);
        var v = net.Velocity(randn(3, 1, 28, 28), rand(3), tensor(new long[] { 0, 9, 10 }));
        Assert.Equal(new long[] { 3, 1, 28, 28 }, v.shape);
        Assert.Equal([(0, 49L, 32L), (1, 49L, 32L)], net.FeatureBlocks.Select(b => (b.Block, b.Tokens, b.Channels)));
        var f = net.TokenFeatures(randn(3, 1, 28, 28), rand(3), zeros(3, ScalarType.Int64), [1]);
        Assert.Equal(new long[] { 3, 49, 32 }, f.Single().shape);
    }

    [Fact]
    public void A_fresh_dit_outputs_zero_by_adaln_zero_initialisation()
    {
        using var scope = NewDisposeScope();
        var net = new DiTVelocityNetwork(new DiTOptions { Preset = "DiT-XT/4" }, Spec);
        Assert.Equal(0f, net.Velocity(randn(2, 1, 28, 28), rand(2), zeros(2, ScalarType.Int64)).abs().max().item<float>());
    }

    [Fact]
    public void The_student_starts_equal_to_the_teacher_for_any_r()
    {
        using var scope = NewDisposeScope();
        var teacher = Tiny(2);
        var student = teacher.CreateStudent();
        var z = randn(4, 1, 28, 28);
        var t = rand(4);
        var labels = tensor(new long[] { 1, 4, 7, 10 });
        var v = teacher.Velocity(z, t, labels);
        var u = student.AverageVelocity(z, t * rand(4), t, labels);
        Assert.True(v.abs().sum().item<float>() > 0);
        Assert.Equal(v.data<float>().ToArray(), u.data<float>().ToArray());
    }

    [Fact]
    public void Attention_is_twice_differentiable_double_backward_jvp_matches_finite_differences()
    {
        using var scope = NewDisposeScope();
        var student = Tiny(3).CreateStudent();
        using (no_grad()) foreach (var p in student.parameters()) p.add_(randn_like(p) * 0.05);
        var z = randn(2, 1, 28, 28);
        var t = tensor(new float[] { 0.6f, 0.8f });
        var r = tensor(new float[] { 0.2f, 0.5f });
        var v = randn(2, 1, 28, 28);
        var labels = tensor(new long[] { 3, 10 });
        var (_, exact) = JacobianVectorProduct.DoubleBackward((zz, tt) => student.AverageVelocity(zz, r, tt, labels), z, t, v, ones(2));
        using var copy = student.Clone();
        copy.to(ScalarType.Float64);
        var r64 = r.to_type(ScalarType.Float64);
        var fd = JacobianVectorProduct.FiniteDifference((zz, tt) => copy.AverageVelocity(zz, r64, tt, labels),
            z.to_type(ScalarType.Float64), t.to_type(ScalarType.Float64), v.to_type(ScalarType.Float64), ones(2, ScalarType.Float64), 1e-5, r64);
        double err = (exact.to_type(ScalarType.Float64) - fd).abs().max().item<double>();
        double scale = fd.abs().max().item<double>();
        Assert.True(scale > 0);
        Assert.True(err < 1e-4 * Math.Max(1, scale), $"max |double backward - finite difference| = {err} (scale {scale}, tolerance 1e-4 relative)");
    }

    [Fact]
    public void Position_embedding_matches_the_reference_formula_at_a_point()
    {
        using var scope = NewDisposeScope();
        // DiT's get_2d_sincos_pos_embed: the first half embeds the column w, the second the row h; omega_i = 1/10000^(i/(D/4)).
        var pe = DiTCore.SinCosPositionEmbedding(8, 7);                      // [49, 8]
        int h = 2, w = 5, row = h * 7 + w;
        double o1 = 1.0 / Math.Pow(10000, 0.5);
        var expected = new[] { Math.Sin(w), Math.Sin(w * o1), Math.Cos(w), Math.Cos(w * o1), Math.Sin(h), Math.Sin(h * o1), Math.Cos(h), Math.Cos(h * o1) };
        var actual = pe[row].data<float>().ToArray();
        for (int i = 0; i < 8; i++) Assert.Equal(expected[i], actual[i], 5);
    }

    [Fact]
    public void An_unknown_preset_lists_the_valid_ones()
    {
        var errors = new DiTOptions { Preset = "DiT-XL/2" }.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(new object())).ToList();
        Assert.Equal("'DiT-XL/2' is not a DiT preset; use one of DiT-XT/4, DiT-T/4, DiT-T/2, DiT-S/4, DiT-S/2, DiT-B/4, DiT-B/2.", errors.Single().ErrorMessage);
        // Matched without regard to case, as every name in a config is.
        var slip = new DiTOptions { Preset = "dit-s/2" };
        Assert.Empty(slip.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(new object())));
        Assert.Equal("DiT-S/2", slip.Preset);
        Assert.Equal((384, 12, 6, 2), (slip.Size.Hidden, slip.Size.Depth, slip.Size.Heads, slip.Size.Patch));
    }
}
