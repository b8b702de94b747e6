using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Losses;
using HierDistill.Host.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Training;

/// <summary>
/// The device-side Adam(W) of <see cref="ModuleOptimizer"/> against TorchSharp's own <c>optim.Adam</c>/<c>optim.AdamW</c> with
/// <c>nn.utils.clip_grad_norm_</c> (an independent implementation of the same update): same weights after every step.
/// </summary>
public class ModuleOptimizerTests
{
    private static nn.Module<Tensor, Tensor> Network(long seed)
    {
        manual_seed(seed);
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3));
    }

    /// <summary>A second network with the same weights (copied: other tests may use the global generator in parallel).</summary>
    private static nn.Module<Tensor, Tensor> CopyOf(nn.Module<Tensor, Tensor> network)
    {
        var copy = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3));
        using var _ = no_grad();
        foreach (var ((_, target), (_, source)) in copy.named_parameters().Zip(network.named_parameters())) target.copy_(source);
        return copy;
    }

    [Theory]
    [InlineData(0.0, null)]
    [InlineData(0.0, 0.5)]
    [InlineData(0.05, 0.5)]
    public void Matches_TorchSharp_Adam_step_by_step(double weightDecay, double? clip)
    {
        var ours = Network(11);
        var reference = CopyOf(ours);
        var settings = new OptimizerSettings(3e-2, 0.9, 0.99, weightDecay, clip);
        using var optimizer = new ModuleOptimizer("student", ours, settings);
        var parameters = reference.parameters().ToList();
        using var adam = weightDecay > 0
            ? (TorchSharp.Modules.OptimizerHelper)optim.AdamW(parameters, settings.LearningRate, settings.Beta1, settings.Beta2, weight_decay: weightDecay)
            : optim.Adam(parameters, settings.LearningRate, settings.Beta1, settings.Beta2);
        var generator = new Generator(5);
        double largest = 0;
        for (int step = 0; step < 25; step++)
        {
            using var scope = NewDisposeScope();
            var x = randn([32, 5], generator: generator) * 3;
            var y = randn([32, 3], generator: generator);
            var loss = (ours.call(x) - y).square().mean();
            optimizer.Step(new LossBreakdown(loss, new Dictionary<string, Tensor> { ["mse"] = loss }), step, "test");

            adam.zero_grad();
            (reference.call(x) - y).square().mean().backward();
            if (clip is { } c) nn.utils.clip_grad_norm_(parameters, c);
            adam.step();

            foreach (var ((name, a), (_, b)) in ours.named_parameters().Zip(reference.named_parameters()))
            {
                double error = (a - b).abs().max().item<float>() / (b.abs().max().item<float>() + 1e-12);
                largest = Math.Max(largest, error);
                Assert.True(error < 2e-5, $"step {step}, {name}: relative difference {error:g3}");
            }
        }
        Assert.Equal(25, optimizer.Updates);
        Assert.True(largest < 2e-5);
    }

    [Fact]
    public void A_gradient_that_backward_allocated_anew_still_reaches_the_update()
    {
        // A create_graph backward (e.g. a gradient penalty) replaces .grad with a new tensor instead of accumulating into
        // the flat buffer; the step copies it back, so the update equals the one from an ordinary backward.
        var a = Network(7);
        var b = CopyOf(a);
        using var oa = new ModuleOptimizer("a", a, new OptimizerSettings(1e-2));
        using var ob = new ModuleOptimizer("b", b, new OptimizerSettings(1e-2));
        var x = randn(16, 5);
        using (NewDisposeScope())
        {
            var la = a.call(x).square().mean();
            oa.Step(new LossBreakdown(la, new Dictionary<string, Tensor>()), 1, "test");
            ob.ZeroGrad();
            foreach (var p in b.parameters()) p.grad = null;                       // as a fresh module's
            var lb = b.call(x).square().mean();
            lb.backward(create_graph: true);                                     // new .grad tensors
            ob.Apply(new LossBreakdown(lb, new Dictionary<string, Tensor>()), 1, "test");
        }
        foreach (var ((name, pa), (_, pb)) in a.named_parameters().Zip(b.named_parameters()))
            Assert.True((pa - pb).abs().max().item<float>() < 1e-7, name);
        Assert.True(b.parameters().All(p => p.grad is not null));
    }

    [Fact]
    public void A_parameter_replaced_after_the_optimiser_was_created_is_reported_not_silently_left_untrained()
    {
        var net = nn.Sequential(nn.Linear(5, 3));
        using var optimizer = new ModuleOptimizer("student", net, new OptimizerSettings(1e-2)) { CheckEvery = 10 };
        using (NewDisposeScope())
        {
            var first = net.call(randn(4, 5)).square().mean();
            optimizer.Step(new LossBreakdown(first, new Dictionary<string, Tensor>()), 0, "test"); // a first, ordinary step
        }
        var linear = (TorchSharp.Modules.Linear)net[0];
        linear.weight = new TorchSharp.Modules.Parameter(randn(3, 5)); // what module.to(device) does to every parameter
        using var scope = NewDisposeScope();
        var loss = net.call(randn(4, 5)).square().mean();
        var e = Assert.Throws<InvalidOperationException>(() => optimizer.Step(new LossBreakdown(loss, new Dictionary<string, Tensor>()), 1, "test"));
        Assert.StartsWith("student: parameter '0.weight' was replaced after the optimiser was created", e.Message);
    }

    [Fact]
    public void The_ema_warms_up_as_the_running_mean_of_the_weights()
    {
        var net = Network(2);
        using var optimizer = new ModuleOptimizer("student", net, new OptimizerSettings(1e-1), emaDecay: 0.999);
        var seen = new List<Tensor>();
        using (no_grad()) seen.Add(net.parameters().First().detach().clone());
        for (int step = 0; step < 4; step++)
        {
            using var scope = NewDisposeScope();
            var loss = net.call(ones(4, 5)).square().mean();
            optimizer.Step(new LossBreakdown(loss, new Dictionary<string, Tensor>()), step, "test");
            using (no_grad()) seen.Add(net.parameters().First().detach().clone().DetachFromDisposeScope());
        }
        // With decay min(d, n/(n+1)) the EMA after n updates is the plain mean of the initial weights and the n updated ones.
        var mean = stack(seen).mean([0]);
        var ema = optimizer.Ema!.State[net.named_parameters().First().name];
        Assert.True((ema - mean).abs().max().item<float>() < 1e-6);
    }
}
