using HierDistill.Abstractions.Numerics;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Abstractions.Numerics;

public class JacobianVectorProductTests
{
    [Fact]
    public void Double_backward_matches_float64_finite_differences_on_a_random_mlp_to_1e4()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var l1 = nn.Linear(3, 32).to(ScalarType.Float64);
        var l2 = nn.Linear(32, 2).to(ScalarType.Float64);
        Tensor F(Tensor z, Tensor t) => l2.forward(nn.functional.tanh(l1.forward(cat([z, t.unsqueeze(1)], 1))));
        var z = randn(6, 2, ScalarType.Float64);
        var t = rand(6, ScalarType.Float64) * 0.8 + 0.1;
        var dz = randn(6, 2, ScalarType.Float64);
        var dt = ones(6, ScalarType.Float64);
        var (_, exact) = JacobianVectorProduct.DoubleBackward(F, z, t, dz, dt);
        var fd = JacobianVectorProduct.FiniteDifference(F, z, t, dz, dt, 1e-5);
        double err = (exact - fd).abs().max().item<double>();
        Assert.True(err < 1e-4, $"max |double backward - finite difference| = {err} (tolerance 1e-4)");
    }

    [Fact]
    public void A_tangent_of_another_shape_than_the_point_is_refused_not_a_process_abort()
    {
        // A teacher velocity [B, 1] for z [B, 2] as the tangent: libtorch's double backward terminated the process on it.
        using var scope = NewDisposeScope();
        var l = nn.Linear(2, 2);
        Tensor F(Tensor z, Tensor t) => l.forward(z) * t.unsqueeze(1);
        var z = randn(4, 2);
        var t = rand(4);
        var e = Assert.Throws<ArgumentException>(() => JacobianVectorProduct.DoubleBackward(F, z, t, randn(4, 1), ones(4)));
        Assert.Equal("the tangent ż [4, 1] and the point z [4, 2] must have the same shape.", e.Message);
        Assert.Throws<ArgumentException>(() => JacobianVectorProduct.FiniteDifference(F, z, t, randn(4, 1), ones(4), 1e-3));
        // A ṫ that broadcasts against t keeps working in the finite difference (as before the check).
        var dz = randn(4, 2);
        var broadcast = JacobianVectorProduct.FiniteDifference(F, z, t, dz, ones(1), 1e-3);
        Assert.True(broadcast.allclose(JacobianVectorProduct.FiniteDifference(F, z, t, dz, ones(4), 1e-3)));
    }

    [Fact]
    public void Linear_function_gives_its_exact_directional_derivative()
    {
        using var scope = NewDisposeScope();
        // f(z, t) = 3 z + 2 t: JVP along (dz, dt) = 3 dz + 2 dt.
        Tensor F(Tensor z, Tensor t) => 3 * z + 2 * t.unsqueeze(1);
        var dz = tensor(new float[] { 1, -1, 0.5f, 2 }, [2, 2]);
        var (_, jvp) = JacobianVectorProduct.DoubleBackward(F, zeros(2, 2), zeros(2), dz, ones(2));
        Assert.Equal(new float[] { 5, -1, 3.5f, 8 }, jvp.data<float>().ToArray());
    }

    [Fact]
    public void Finite_differences_are_one_sided_where_the_step_would_leave_the_interval()
    {
        using var scope = NewDisposeScope();
        // f = t²: derivative 2t. At t = 1 (upper edge) a central step would leave [.., 1]: backward difference
        // gives (1 - (1 - e)²)/e = 2 - e; at t = r = 0.3 (lower edge): forward difference 0.6 + e.
        Tensor F(Tensor z, Tensor t) => (t * t).unsqueeze(1).to_type(ScalarType.Float64);
        var t = tensor(new double[] { 1.0, 0.3 });
        var r = tensor(new double[] { 0.0, 0.3 });
        double e = 1e-3;
        var jvp = JacobianVectorProduct.FiniteDifference(F, zeros(2, 1, ScalarType.Float64), t, zeros(2, 1, ScalarType.Float64), ones(2, ScalarType.Float64), e, r, 1.0);
        var v = jvp.data<double>().ToArray();
        Assert.Equal(2 - e, v[0], 9);
        Assert.Equal(0.6 + e, v[1], 9);
    }

    [Fact]
    public void The_average_velocity_derivative_along_the_flow_has_its_closed_form_in_both_modes()
    {
        using var scope = NewDisposeScope();
        // u(z, r, t) = z² t - 3 r: du/dt along (v, 1) = 2 z t v + z², for both the exact and the finite-difference JVP.
        var student = new HierDistill.Tests.Support.FormulaStudent((z, r, t, c) => z * z * t.unsqueeze(1) - 3 * r.unsqueeze(1));
        var z = tensor(new float[] { 1, -2, 0.5f, 3 }, [2, 2]);
        var r = tensor(new float[] { 0.1f, 0.0f });
        var t = tensor(new float[] { 0.5f, 0.9f });
        var v = tensor(new float[] { 2, 1, -1, 0.5f }, [2, 2]);
        var labels = zeros(2, ScalarType.Int64);
        var expected = (2 * z * t.unsqueeze(1) * v + z * z).data<float>().ToArray(); // [3, 2, -0.65, 11.7]
        foreach (var mode in new[] { JvpMode.DoubleBackward, JvpMode.FiniteDifference })
        {
            var (u, dudt) = JacobianVectorProduct.AverageVelocityAlongFlow(student, z, r, t, v, labels, mode, 1e-4);
            Assert.Equal((z * z * t.unsqueeze(1) - 3 * r.unsqueeze(1)).data<float>().ToArray(), u.data<float>().ToArray());
            var got = dudt.data<float>().ToArray();
            for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], got[i], 3);
        }
    }
}
