using HierDistill.Plugins.Dmd;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Plugins.Dmd;

public class DmdLossTests
{
    [Fact]
    public void Worked_example_gives_loss_0_1388889_and_the_normalised_gradient_over_N()
    {
        using var scope = NewDisposeScope();
        // x = [1, -1, 2, -2], x0_real = 0, x0_fake = x / 2: mean|x - x0_real| = 1.5, grad = x0_fake / 1.5,
        // L = 0.5 mean(grad²) = 0.5 (10/9) / 4, dL/dx = grad / 4.
        var x = tensor(new float[] { 1, -1, 2, -2 }, [1, 4], requires_grad: true);
        var loss = DmdLoss.Compute(x, zeros(1, 4), tensor(new float[] { 0.5f, -0.5f, 1, -1 }, [1, 4]), 1e-8);
        Assert.Equal(0.1388889, loss.Total.item<float>(), 6);
        loss.Total.backward();
        var g = x.grad!.data<float>().ToArray();
        double[] expected = [0.0833333, -0.0833333, 0.1666667, -0.1666667];
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], g[i], 6);
    }

    [Fact]
    public void Equal_real_and_fake_scores_give_zero_loss_and_zero_gradient()
    {
        using var scope = NewDisposeScope();
        var x = randn(3, 2, requires_grad: true);
        var x0 = randn(3, 2);
        var loss = DmdLoss.Compute(x, x0, x0.clone(), 1e-8);
        loss.Total.backward();
        Assert.Equal(0f, loss.Total.item<float>());
        Assert.Equal(0f, x.grad!.abs().max().item<float>());
    }

    [Fact]
    public void A_degenerate_denominator_stays_finite()
    {
        using var scope = NewDisposeScope();
        var x = ones(2, 2, requires_grad: true);
        var loss = DmdLoss.Compute(x, ones(2, 2), zeros(2, 2), 1e-8); // x == x0_real: |x - x0_real| = 0, clamped
        loss.Total.backward();
        Assert.True(float.IsFinite(loss.Total.item<float>()));
        Assert.True(x.grad!.isfinite().all().item<bool>());
    }

    [Fact]
    public void A_descent_step_moves_x_toward_the_real_estimate_and_away_from_the_fake()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 0.5f, 0.5f }, [1, 2], requires_grad: true);
        var real = tensor(new float[] { 1, 1 }, [1, 2]);
        var fake = tensor(new float[] { 0, 0 }, [1, 2]);
        DmdLoss.Compute(x, real, fake, 1e-8).Total.backward();
        var stepped = (x - 0.1 * x.grad!).detach();
        Assert.True((stepped - real).abs().sum().item<float>() < (x - real).abs().sum().item<float>());
        Assert.True((stepped - fake).abs().sum().item<float>() > (x - fake).abs().sum().item<float>());
    }
}
