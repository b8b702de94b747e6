using HierDistill.Abstractions.Numerics;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Abstractions.Numerics;

public class SamplersTests
{
    // One-point data x*: the exact velocity is v(z, t) = (z - x*) / t and trajectories are straight lines,
    // so every first- or second-order solver lands exactly on x* (up to rounding), from any noise.
    private static readonly float[] XStar = [1.5f, -2f];

    private static Tensor ExactVelocity(Tensor z, Tensor t, Tensor labels) =>
        (z - tensor(XStar)) / t.unsqueeze(1).clamp_min(1e-6);

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    public void Euler_lands_on_the_point_of_one_point_data(int steps)
    {
        using var scope = NewDisposeScope();
        var sampler = Samplers.Euler(ExactVelocity, steps);
        var x = sampler.Sample(randn(16, 2, generator: new Generator(3)), zeros(16, ScalarType.Int64));
        var err = (x - tensor(XStar)).abs().max().item<float>();
        Assert.True(err < 1e-4, $"error {err} ≥ 1e-4");
        Assert.Equal(steps, sampler.Nfe);
    }

    [Fact]
    public void Heun_is_exact_for_a_velocity_linear_in_time_where_euler_is_not()
    {
        using var scope = NewDisposeScope();
        // dz/dt = t: z(0) = z(1) - ∫0^1 t dt = z(1) - 0.5. Trapezoid (Heun) is exact; one Euler step gives z - 1.
        VelocityFieldLinear field = new();
        var z1 = tensor(new float[] { 3 }, [1, 1]);
        var heun = Samplers.Heun(field.V, 1).Sample(z1, zeros(1, ScalarType.Int64));
        var euler = Samplers.Euler(field.V, 1).Sample(z1, zeros(1, ScalarType.Int64));
        Assert.Equal(2.5f, heun.item<float>(), 6);
        Assert.Equal(2f, euler.item<float>(), 6);
        Assert.Equal(2, Samplers.Heun(field.V, 1).Nfe);
    }

    private sealed class VelocityFieldLinear
    {
        public Tensor V(Tensor z, Tensor t, Tensor labels) => zeros_like(z) + t.unsqueeze(1);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    public void Average_velocity_sampler_calls_the_student_once_per_step_and_lands_on_the_point(int nfe)
    {
        using var scope = NewDisposeScope();
        int calls = 0;
        // The exact average velocity of one-point data: u(z, r, t) = (z - x*) / t, for any r.
        var sampler = Samplers.AverageVelocity((z, r, t, c) => { calls++; return (z - tensor(XStar)) / t.unsqueeze(1); }, nfe);
        var x = sampler.Sample(randn(8, 2, generator: new Generator(5)), zeros(8, ScalarType.Int64));
        Assert.Equal(nfe, calls);
        Assert.True((x - tensor(XStar)).abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public void The_one_step_student_sample_is_noise_minus_u_at_r0_t1()
    {
        using var scope = NewDisposeScope();
        float seenR = -1, seenT = -1;
        var sampler = Samplers.AverageVelocity((z, r, t, c) => { seenR = r.item<float>(); seenT = t.item<float>(); return full_like(z, 0.25f); }, 1);
        var e = tensor(new float[] { 1, 2 }, [1, 2]);
        var x = sampler.Sample(e, zeros(1, ScalarType.Int64));
        Assert.Equal(new float[] { 0.75f, 1.75f }, x.data<float>().ToArray());
        Assert.Equal(0f, seenR);
        Assert.Equal(1f, seenT);
    }
}
