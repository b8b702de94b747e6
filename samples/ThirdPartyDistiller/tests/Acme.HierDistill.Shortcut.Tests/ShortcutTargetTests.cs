using Xunit;
using static TorchSharp.torch;

namespace Acme.HierDistill.Shortcut.Tests;

public class ShortcutTargetTests
{
    // Probe u(z, r, t) = z·t + r: not a flow map, so every term of the target shows.
    private static Tensor Probe(Tensor z, Tensor r, Tensor t, Tensor labels) => z * t.unsqueeze(1) + r.unsqueeze(1);

    [Fact]
    public void Two_half_steps_of_a_probe_give_the_hand_computed_target()
    {
        using var scope = NewDisposeScope();
        var z = tensor(new float[] { 1, 2 }).unsqueeze(1);
        var r = tensor(new float[] { 0, 0.5f });
        var t = tensor(new float[] { 1, 1 });
        var labels = zeros(2, ScalarType.Int64);

        // Row 0: m = 0.5, u1 = u(1, .5, 1) = 1.5, z_m = 1 - .5·1.5 = .25, u2 = u(.25, 0, .5) = .125, target (1.5 + .125)/2 = .8125.
        // Row 1: m = .75, u1 = u(2, .75, 1) = 2.75, z_m = 2 - .25·2.75 = 1.3125, u2 = u(1.3125, .5, .75) = 1.484375, target 2.1171875.
        Assert.Equal(new[] { 0.8125, 2.1171875 }, Values.Of(ShortcutTarget.Compute(Probe, z, r, t, labels)));

        // Row 1 finest (half-steps at gap 0): u1 = u(2, 1, 1) = 3, z_m = 2 - .25·3 = 1.25, u2 = u(1.25, .75, .75) = 1.6875, target 2.34375.
        var finest = tensor(new[] { false, true });
        Assert.Equal(new[] { 0.8125, 2.34375 }, Values.Of(ShortcutTarget.Compute(Probe, z, r, t, labels, finest)));
    }

    [Theory]
    [InlineData(1.3)]
    [InlineData(-0.8)]
    public void The_exact_average_velocity_of_a_linear_field_is_a_fixed_point(double a)
    {
        using var scope = NewDisposeScope();
        // dz/dt = a z has the flow z_r = z_t e^{-a(t - r)}, so u*(z, r, t) = z (1 - e^{-a h}) / h with h = t - r (a z at h = 0).
        static Tensor Exact(double a, Tensor z, Tensor r, Tensor t)
        {
            var h = (t - r).unsqueeze(1);
            var safe = where(h > 0, h, ones_like(h));
            return where(h > 0, z * (1 - exp(-a * safe)) / safe, a * z);
        }

        manual_seed(1);
        var z = randn(64, 2, dtype: ScalarType.Float64);
        var t = rand(64, dtype: ScalarType.Float64) * 0.9 + 0.1;
        var r = t * rand(64, dtype: ScalarType.Float64);
        var target = ShortcutTarget.Compute((zz, rr, tt, _) => Exact(a, zz, rr, tt), z, r, t, zeros(64, ScalarType.Int64));
        var exact = Exact(a, z, r, t);
        Assert.True(Values.Scalar((target - exact).abs().max()) < 1e-12, $"max error {Values.Scalar((target - exact).abs().max())}");
    }

    [Fact]
    public void Finest_rows_take_two_euler_steps_of_the_instantaneous_velocity()
    {
        using var scope = NewDisposeScope();
        const double a = 0.7;
        // Student = the exact flow map of dz/dt = a z, but at gap 0 only a z is used: u1 = a z, z_m = z (1 - a d),
        // u2 = a z (1 - a d), so the target is a z (1 - a d / 2) with d = (t - r) / 2, not the exact average velocity.
        manual_seed(2);
        var z = randn(32, 3, dtype: ScalarType.Float64);
        var t = rand(32, dtype: ScalarType.Float64) * 0.5 + 0.5;
        var r = t - 0.25;
        var target = ShortcutTarget.Compute((zz, rr, tt, _) =>
            {
                var h = (tt - rr).unsqueeze(1);
                return where(h > 0, zz * (1 - exp(-a * h)) / where(h > 0, h, ones_like(h)), a * zz);
            }, z, r, t, zeros(32, ScalarType.Int64), ones(32, ScalarType.Bool));
        var expected = a * z * (1 - a * 0.125 / 2);
        Assert.True(Values.Scalar((target - expected).abs().max()) < 1e-12);
    }

    [Fact]
    public void The_target_carries_no_gradient_even_from_a_trainable_student()
    {
        using var scope = NewDisposeScope();
        var student = new ConstantStudent(2);
        Assert.True(student.P.requires_grad);
        var target = ShortcutTarget.Compute(student.AverageVelocity, randn(4, 2), zeros(4), ones(4), zeros(4, ScalarType.Int64));
        Assert.False(target.requires_grad);
    }
}
