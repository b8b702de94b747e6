using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Plugins.Teachers.Networks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Plugins.Teachers;

/// <summary>
/// run.precision = bfloat16 (<see cref="Autocast"/>): the DiT and MLP networks compute their matrix products in bfloat16 while
/// parameters, gradients, outputs and JVPs stay float32, and agree with the float32 network to bfloat16's precision.
/// </summary>
public class AutocastTests
{
    private static readonly DataSpec Images = new("images", [1, 28, 28], 10);

    private static DiTAverageVelocityNetwork Student(int seed)
    {
        manual_seed(seed);
        var teacher = new DiTVelocityNetwork(new DiTOptions { Preset = "DiT-XT/4", Hidden = 64, Depth = 2, Heads = 2, FrequencyDim = 32 }, Images);
        var student = (DiTAverageVelocityNetwork)teacher.CreateStudent();
        // adaLN-Zero makes a fresh DiT output exactly 0; perturb every weight so the tests see a generic network.
        using (no_grad()) foreach (var p in student.parameters()) p.add_(randn_like(p) * 0.05);
        return student;
    }

    private static double RelativeError(Tensor a, Tensor b) =>
        ((a - b).norm() / b.norm()).to_type(ScalarType.Float64).item<double>();

    [Fact]
    public void Bfloat16_output_is_float32_and_within_bfloat16_precision_of_the_float32_network()
    {
        using var scope = NewDisposeScope();
        var net = Student(1);
        var z = randn(4, 1, 28, 28);
        var t = rand(4);
        var r = t * rand(4);
        var labels = tensor(new long[] { 0, 3, 9, 10 });
        var full = net.AverageVelocity(z, r, t, labels);
        Tensor mixed;
        using (Autocast.Use(ScalarType.BFloat16)) mixed = net.AverageVelocity(z, r, t, labels);
        Assert.Equal(ScalarType.Float32, mixed.dtype);
        double error = RelativeError(mixed, full);
        // bfloat16 keeps 8 significant bits (relative rounding 2^-9 ≈ 2e-3 per operation); a few layers stay within 3e-2.
        Assert.InRange(error, 1e-5, 3e-2); // > 1e-5: the products really ran in bfloat16
        Assert.Null(Autocast.Dtype);       // the scope restored the previous state
    }

    [Fact]
    public void Gradients_reach_the_float32_parameters_and_the_double_backward_jvp_stays_float32()
    {
        using var scope = NewDisposeScope();
        var net = Student(2);
        var z = randn(3, 1, 28, 28);
        var t = rand(3) * 0.8 + 0.1;
        var r = t * 0.5;
        var v = randn(3, 1, 28, 28);
        var labels = tensor(new long[] { 1, 5, 10 });
        var (_, reference) = JacobianVectorProduct.AverageVelocityAlongFlow(net, z, r, t, v, labels, JvpMode.DoubleBackward, 0);
        using (Autocast.Use(ScalarType.BFloat16))
        {
            var (u, dudt) = JacobianVectorProduct.AverageVelocityAlongFlow(net, z, r, t, v, labels, JvpMode.DoubleBackward, 0);
            Assert.Equal(ScalarType.Float32, dudt.dtype);
            Assert.InRange(RelativeError(dudt, reference), 1e-5, 5e-2);
            (u - (v - (t - r).view(-1, 1, 1, 1) * dudt)).square().mean().backward();
        }
        foreach (var (name, p) in net.named_parameters())
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            Assert.True(p.grad is not null && p.grad.dtype == ScalarType.Float32, $"{name}: no float32 gradient");
        }
        Assert.True(net.parameters().Sum(p => p.grad!.abs().sum().item<float>()) > 0);
    }

    [Fact]
    public void The_mlp_network_follows_autocast_too()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var net = new MlpVelocityNetwork(new MlpOptions(), new DataSpec("points", [2], 8));
        using (no_grad()) foreach (var p in net.parameters()) p.add_(randn_like(p) * 0.05);
        var z = randn(64, 2);
        var t = rand(64);
        var labels = randint(0, 9, [64]);
        var full = net.Velocity(z, t, labels);
        Tensor mixed;
        using (Autocast.Use(ScalarType.BFloat16)) mixed = net.Velocity(z, t, labels);
        Assert.Equal(ScalarType.Float32, mixed.dtype);
        Assert.InRange(RelativeError(mixed, full), 1e-5, 3e-2);
    }

    [Fact]
    public void Only_16_bit_float_types_are_compute_dtypes()
    {
        Assert.Throws<ArgumentException>(() => Autocast.Use(ScalarType.Float64));
        using (Autocast.Use(ScalarType.Float32)) Assert.Null(Autocast.Dtype);
    }
}
