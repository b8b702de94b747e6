using HierDistill.Abstractions.Models;
using HierDistill.Plugins.Awd;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Plugins.Awd;

public class SpectralNormLinearTests
{
    private static Tensor WeightWithLargestSingularValue(double sigma)
    {
        // W = U diag(σ, 10, 5, 1) Vᵀ with orthonormal U, V from QR of fixed random matrices.
        var (u, _) = linalg.qr(randn(6, 4, generator: new Generator(1)));
        var (v, _) = linalg.qr(randn(5, 4, generator: new Generator(2)));
        var s = tensor(new float[] { (float)sigma, 10, 5, 1 });
        return u.mm(diag(s)).mm(v.t()); // [6, 5]
    }

    [Fact]
    public void First_eval_use_normalises_a_weight_with_largest_singular_value_50_to_1_within_5_percent()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var layer = new SpectralNormLinear("sn", 5, 6);
        using (no_grad()) layer.Weight.copy_(WeightWithLargestSingularValue(50));
        layer.eval();
        var w = layer.NormalizedWeight(update: false);
        double top = linalg.svdvals(w).max().item<float>();
        Assert.InRange(top, 0.95, 1.05);
    }

    [Fact]
    public void Without_spectral_norm_the_layer_is_the_plain_linear_map_of_its_raw_weight()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var layer = new SpectralNormLinear("plain", 5, 6, normalize: false);
        using (no_grad()) layer.Weight.copy_(WeightWithLargestSingularValue(50));
        layer.train();
        var x = randn(3, 5);
        // x Wᵀ + b by hand (mm, not linear): the raw weight, its largest singular value 50 kept.
        var expected = x.mm(layer.Weight.t()) + layer.get_parameter("bias")!;
        Assert.True(layer.forward(x).allclose(expected, rtol: 1e-5, atol: 1e-5));
        Assert.Equal(layer.named_buffers().Select(b => b.name), new SpectralNormLinear("sn", 5, 6).named_buffers().Select(b => b.name));
    }

    [Fact]
    public void Eval_calls_are_bitwise_equal()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var layer = new SpectralNormLinear("sn", 5, 6);
        layer.train();
        var x = randn(3, 5);
        for (int i = 0; i < 3; i++) layer.forward(x);   // some training iterations
        layer.eval();
        var a = layer.forward(x).data<float>().ToArray();
        var b = layer.forward(x).data<float>().ToArray();
        var c = layer.forward(x).data<float>().ToArray();
        Assert.Equal(a, b);
        Assert.Equal(a, c);
    }

    [Fact]
    public void Saving_and_loading_into_a_differently_seeded_module_reproduces_eval_output_bit_for_bit()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var a = new SpectralNormLinear("sn", 5, 6);
        a.train();
        var x = randn(3, 5);
        for (int i = 0; i < 4; i++) a.forward(x);
        a.eval();
        var expected = a.forward(x).data<float>().ToArray();

        using var folder = HierDistill.Tests.Support.TestPaths.NewTempFolder();
        a.save(folder.File("sn.bin"));
        manual_seed(99);
        var b = new SpectralNormLinear("sn", 5, 6);
        b.load(folder.File("sn.bin"));
        b.eval();
        Assert.Equal(expected, b.forward(x).data<float>().ToArray());
        Assert.Contains("u", b.state_dict().Keys);
        Assert.Contains("v", b.state_dict().Keys);
    }

    [Fact]
    public void Training_continues_after_a_load_with_one_power_iteration_per_forward_as_without_the_load()
    {
        // Regression: the first training forward after loading u and v skipped its power iteration, so a resumed run's
        // discriminator drifted from the uninterrupted one.
        using var scope = NewDisposeScope();
        manual_seed(6);
        var a = new SpectralNormLinear("sn", 5, 6);
        a.train();
        var x = randn(3, 5);
        for (int i = 0; i < 3; i++) a.forward(x);
        using var folder = HierDistill.Tests.Support.TestPaths.NewTempFolder();
        a.save(folder.File("sn.bin"));
        var b = new SpectralNormLinear("sn", 5, 6);
        b.load(folder.File("sn.bin"));
        b.train();
        for (int i = 0; i < 2; i++)
            Assert.Equal(a.forward(x).data<float>().ToArray(), b.forward(x).data<float>().ToArray());
    }
}

public class TokenHeadTests
{
    [Fact]
    public void Awd_with_uniform_attention_equals_gap_exactly()
    {
        using var scope = NewDisposeScope();
        manual_seed(8);
        var awd = new TokenHead("h", 8, 16, queries: 2, attention: true);
        var gap = new TokenHead("h", 8, 16, queries: 1, attention: false);
        // Same trunk, norm and logit layer; queries set to zero so every token gets weight 1/N.
        gap.CopyWeightsFrom(awd, strict: false);
        using (no_grad()) awd.Query!.zero_();
        awd.eval();
        gap.eval();
        var features = randn(4, 5, 8);
        var (a, attention) = awd.Forward(features);
        var (g, _) = gap.Forward(features);
        Assert.Equal(g.data<float>().ToArray(), a.data<float>().ToArray());
        Assert.True((attention - 0.2f).abs().max().item<float>() == 0);
    }

    [Fact]
    public void Attention_weights_are_a_distribution_over_tokens()
    {
        using var scope = NewDisposeScope();
        manual_seed(9);
        var awd = new TokenHead("h", 8, 16, queries: 3, attention: true);
        var (_, attention) = awd.Forward(randn(2, 7, 8));
        Assert.Equal(new long[] { 2, 3, 7 }, attention.shape);
        Assert.True((attention.sum(-1) - 1).abs().max().item<float>() < 1e-6);
    }

    [Fact]
    public void Features_with_the_wrong_channel_count_are_refused()
    {
        using var scope = NewDisposeScope();
        var head = new TokenHead("h", 8, 16, 1, true);
        var e = Assert.Throws<ArgumentException>(() => head.Forward(randn(2, 5, 9)));
        Assert.StartsWith("features must have shape [*, *, 8], got [2, 5, 9].", e.Message);
    }
}

public class AdversarialLossTests
{
    [Fact]
    public void Non_saturating_and_hinge_losses_have_their_closed_forms()
    {
        using var scope = NewDisposeScope();
        var real = tensor(new float[] { 2, 0 }, [2, 1]);
        var fake = tensor(new float[] { -1, 0.5f }, [2, 1]);
        // NS: D = mean softplus(-real) + mean softplus(fake); G = mean softplus(-fake)
        double sp(double v) => Math.Log(1 + Math.Exp(v));
        Assert.Equal((sp(-2) + sp(0)) / 2 + (sp(-1) + sp(0.5)) / 2, AdversarialLoss.Discriminator(AdversarialLossForm.NonSaturating, real, fake).Total.item<float>(), 5);
        Assert.Equal((sp(1) + sp(-0.5)) / 2, AdversarialLoss.Generator(AdversarialLossForm.NonSaturating, fake).Total.item<float>(), 5);
        // Hinge: D = mean relu(1 - real) + mean relu(1 + fake) = (0 + 1)/2 + (0 + 1.5)/2; G = -mean fake = -(-1 + 0.5)/2
        Assert.Equal(1.25, AdversarialLoss.Discriminator(AdversarialLossForm.Hinge, real, fake).Total.item<float>(), 6);
        Assert.Equal(0.25, AdversarialLoss.Generator(AdversarialLossForm.Hinge, fake).Total.item<float>(), 6);
    }
}
