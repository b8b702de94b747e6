using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Plugins.MeanFlow;
using HierDistill.Plugins.Teachers.Exact;
using HierDistill.Plugins.Teachers.Networks;
using HierDistill.Tests.Support;
using NSubstitute;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Plugins.MeanFlow;

public class MeanFlowTargetTests
{
    [Fact]
    public void With_r_equal_to_t_the_target_is_the_teacher_velocity_bit_for_bit()
    {
        using var scope = NewDisposeScope();
        var v = randn(8, 2);
        var dudt = randn(8, 2) * 100;
        var t = rand(8);
        var target = MeanFlowTarget.Compute(v, dudt, t.clone(), t);
        Assert.Equal(v.data<float>().ToArray(), target.data<float>().ToArray());
    }

    [Fact]
    public void Target_is_v_minus_t_minus_r_times_dudt()
    {
        using var scope = NewDisposeScope();
        var target = MeanFlowTarget.Compute(tensor(new float[] { 1, 2 }, [1, 2]), tensor(new float[] { 4, -2 }, [1, 2]),
            tensor(new float[] { 0.25f }), tensor(new float[] { 0.75f }));
        Assert.Equal(new float[] { -1, 3 }, target.data<float>().ToArray());
    }
}

public class MeanFlowJvpTests
{
    [Theory]
    [InlineData(JvpMode.DoubleBackward)]
    [InlineData(JvpMode.FiniteDifference)]
    public void A_probe_u_equal_2t_minus_3r_has_du_dt_2_not_minus_3(JvpMode mode)
    {
        using var scope = NewDisposeScope();
        // u(z, r, t) = 2t - 3r ignores z: d/dt u along (v, 0, 1) = 2. A swapped time order would give -3.
        var student = new FormulaStudent((z, r, t, c) => (2 * t - 3 * r).unsqueeze(1).expand(z.shape[0], 2) + 0 * z);
        var t = full(4, 0.7f);
        var r = full(4, 0.2f);
        var dudt = mode == JvpMode.DoubleBackward
            ? JacobianVectorProduct.DoubleBackward((zz, tt) => student.AverageVelocity(zz, r, tt, zeros(4, ScalarType.Int64)), randn(4, 2), t, randn(4, 2), ones(4)).Jvp
            : JacobianVectorProduct.FiniteDifference((zz, tt) => student.AverageVelocity(zz, r.to_type(ScalarType.Float64), tt, zeros(4, ScalarType.Int64)),
                randn(4, 2, ScalarType.Float64), t.to_type(ScalarType.Float64), randn(4, 2, ScalarType.Float64), ones(4, ScalarType.Float64), 1e-4,
                r.to_type(ScalarType.Float64));
        var values = dudt.to_type(ScalarType.Float64).data<double>().ToArray();
        Assert.All(values, x => Assert.Equal(2.0, x, 5));
    }

    [Fact]
    public void Double_backward_and_finite_difference_jvps_of_a_random_mlp_student_agree_to_1e4()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var spec = new DataSpec("test", [2], 2);
        var teacher = new MlpVelocityNetwork(new MlpOptions { Hidden = 32, Depth = 2, EmbeddingDim = 16, FrequencyDim = 8, TokenChannels = 8 }, spec);
        var student = teacher.CreateStudent();
        using (no_grad()) foreach (var p in student.parameters()) p.add_(randn_like(p) * 0.2); // r now matters too
        var z = randn(8, 2);
        var t = rand(8) * 0.8 + 0.1;
        var r = t * rand(8);
        var v = randn(8, 2);
        var labels = randint(0, 3, [8]);
        var (_, exact) = JacobianVectorProduct.DoubleBackward((zz, tt) => student.AverageVelocity(zz, r, tt, labels), z, t, v, ones(8));
        using var copy = student.Clone();
        copy.to(ScalarType.Float64);
        var r64 = r.to_type(ScalarType.Float64);
        var fd = JacobianVectorProduct.FiniteDifference((zz, tt) => copy.AverageVelocity(zz, r64, tt, labels),
            z.to_type(ScalarType.Float64), t.to_type(ScalarType.Float64), v.to_type(ScalarType.Float64), ones(8, ScalarType.Float64), 1e-5, r64);
        double err = (exact.to_type(ScalarType.Float64) - fd).abs().max().item<double>();
        double scale = fd.abs().max().item<double>();
        Assert.True(err < 1e-4 * Math.Max(1, scale), $"max |double backward - finite difference| = {err} (scale {scale}, tolerance 1e-4)");
    }
}

public class MeanFlowLossTests
{
    [Fact]
    public void Zero_error_gives_zero_loss_and_no_nan()
    {
        using var scope = NewDisposeScope();
        var loss = AdaptiveWeightedLoss.Compute(zeros(4, 2, requires_grad: true), 1.0, 1e-3);
        Assert.Equal(0f, loss.Total.item<float>());
        loss.Total.backward();
        Assert.False(float.IsNaN(loss.Total.item<float>()));
    }

    [Fact]
    public void Sum_of_squares_one_with_p1_and_c_1e3_gives_0_999001()
    {
        using var scope = NewDisposeScope();
        var loss = AdaptiveWeightedLoss.Compute(tensor(new float[] { 0.6f, 0.8f }, [1, 2]), 1.0, 1e-3);
        Assert.Equal(0.999001, loss.Total.item<float>(), 6);
        Assert.Equal(1.0, loss.Terms["raw_loss"].item<float>(), 6);
    }

    [Fact]
    public void The_gradient_treats_the_weight_as_a_constant()
    {
        using var scope = NewDisposeScope();
        // s = 1; L = w s with w = 1/(1 + 1e-3) detached: dL/dΔ = 2 w Δ = [1.198801, 1.598402].
        var delta = tensor(new float[] { 0.6f, 0.8f }, [1, 2], requires_grad: true);
        AdaptiveWeightedLoss.Compute(delta, 1.0, 1e-3).Total.backward();
        var g = delta.grad!.data<float>().ToArray();
        Assert.Equal(1.198801, g[0], 5);
        Assert.Equal(1.598402, g[1], 5);
    }

    [Fact]
    public void At_zero_error_the_weight_is_one_over_c_and_a_negative_power_or_nonpositive_c_is_refused()
    {
        using var scope = NewDisposeScope();
        var loss = AdaptiveWeightedLoss.Compute(zeros(3, 2), 1.0, 1e-2);
        Assert.Equal(100.0, loss.Diagnostics["adaptive_weight"].item<float>(), 3); // 1 / (0 + 1e-2)
        Assert.Throws<ArgumentOutOfRangeException>(() => AdaptiveWeightedLoss.Compute(zeros(3, 2), -1.0, 1e-2));
        Assert.Throws<ArgumentOutOfRangeException>(() => AdaptiveWeightedLoss.Compute(zeros(3, 2), 1.0, 0.0));
    }

    [Theory]
    [InlineData(JvpMode.DoubleBackward)]
    [InlineData(JvpMode.FiniteDifference)]
    public void One_point_data_with_the_exact_teacher_and_exact_student_has_zero_loss(JvpMode mode)
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        // One-point data x* (a mixture of one component of width 1e-6): the exact average velocity is
        // u(z, r, t) = (z - x*) / t for any r, so the target equals the student and the loss is 0 for any (r, t).
        var xStar = new[] { 1.5, -0.5 };
        var mixture = new GaussianMixture([xStar], [1e-6], [1.0], [0], 1);
        var spec = new DataSpec("one-point", [2], 1);
        var exact = new GaussianMixtureVelocity(mixture);
        var teacher = Substitute.For<ITeacher>();
        teacher.Spec.Returns(spec);
        teacher.Velocity(Arg.Any<Tensor>(), Arg.Any<Tensor>(), Arg.Any<Tensor>())
            .Returns(ci => exact.Velocity(ci.ArgAt<Tensor>(0), ci.ArgAt<Tensor>(1), ci.ArgAt<Tensor>(2)));
        var x = tensor(new float[] { 1.5f, -0.5f }).expand(64, 2).contiguous();
        var student = new FormulaStudent((z, r, t, c) => (z - tensor(new float[] { 1.5f, -0.5f }, dtype: z.dtype)) / t.unsqueeze(1));
        var distiller = new MeanFlowDistiller(new MeanFlowOptions { Jvp = mode, RatioRNotEqualT = 0.75, GuidanceScale = 1.0 });
        var loss = distiller.Loss(student, teacher, new Batch(x, zeros(64, ScalarType.Int64)), new TrainingProgress(0, 1));
        Assert.True(loss.Terms["raw_loss"].item<float>() < 1e-6, $"raw loss {loss.Terms["raw_loss"].item<float>()} ≥ 1e-6");
        Assert.True(loss.Total.item<float>() < 1e-6);
    }

    [Fact]
    public void Guidance_scale_one_costs_one_teacher_call_per_loss()
    {
        using var scope = NewDisposeScope();
        var spec = new DataSpec("test", [2], 2);
        var teacher = Substitute.For<ITeacher>();
        teacher.Spec.Returns(spec);
        teacher.Velocity(Arg.Any<Tensor>(), Arg.Any<Tensor>(), Arg.Any<Tensor>()).Returns(ci => zeros_like(ci.ArgAt<Tensor>(0)));
        var student = new FormulaStudent((z, r, t, c) => z * t.unsqueeze(1));
        new MeanFlowDistiller(new MeanFlowOptions { GuidanceScale = 1.0 })
            .Loss(student, teacher, new Batch(randn(8, 2), zeros(8, ScalarType.Int64)), new TrainingProgress(0, 1));
        teacher.ReceivedWithAnyArgs(1).Velocity(default!, default!, default!);

        teacher.ClearReceivedCalls();
        new MeanFlowDistiller(new MeanFlowOptions { GuidanceScale = 2.0 })
            .Loss(student, teacher, new Batch(randn(8, 2), zeros(8, ScalarType.Int64)), new TrainingProgress(0, 1));
        teacher.ReceivedWithAnyArgs(1).Velocity(default!, default!, default!); // one batched call of 2B rows
    }

    [Fact]
    public void Time_pairs_have_r_at_most_t_and_the_configured_fraction_with_r_not_t()
    {
        using var scope = NewDisposeScope();
        manual_seed(0);
        var (t, r) = TimePairSampler.Sample(20000, -0.4, 1.0, 0.25, CPU);
        Assert.True((r <= t).all().item<bool>());
        double fraction = (r != t).to_type(ScalarType.Float32).mean().item<float>();
        Assert.InRange(fraction, 0.24, 0.26);
    }
}
