using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using HierDistill.Plugins.Baselines;
using HierDistill.Plugins.Teachers.Exact;
using HierDistill.Plugins.Teachers.Networks;
using HierDistill.Tests.Support;
using NSubstitute;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using MeanFlowTarget = HierDistill.Plugins.MeanFlow.MeanFlowTarget;

namespace HierDistill.Tests.Plugins.Baselines;

public class TangentNormalizationTests
{
    [Fact]
    public void A_vector_of_norm_10_with_c_0_1_gets_norm_0_990099_and_keeps_its_direction()
    {
        using var scope = NewDisposeScope();
        var g = TangentNormalization.Apply(tensor(new float[] { 6, 8 }, [1, 2]), 0.1);
        // 10 / (10 + 0.1) = 0.990099; direction (0.6, 0.8).
        Assert.Equal(0.990099, g.norm().item<float>(), 6);
        Assert.Equal(0.6 * 10 / 10.1, g[0, 0].item<float>(), 6);
        Assert.Equal(0.8 * 10 / 10.1, g[0, 1].item<float>(), 6);
    }

    [Fact]
    public void Norms_are_taken_per_sample_over_all_non_batch_dimensions()
    {
        using var scope = NewDisposeScope();
        // sample 0: four entries of 5 (norm 10) -> 10 / 10.1; sample 1: one entry 0.3 (norm 0.3) -> 0.3 / 0.4 = 0.75; sample 2: zero stays zero.
        var g = stack([full(new long[] { 1, 2, 2 }, 5f), tensor(new float[] { 0.3f, 0, 0, 0 }).reshape(1, 2, 2), zeros(1, 2, 2)]);
        var n = TangentNormalization.Apply(g, 0.1).flatten(1).norm(1).data<float>().ToArray();
        Assert.Equal(0.990099, n[0], 6);
        Assert.Equal(0.75, n[1], 6);
        Assert.Equal(0.0, n[2], 9);
    }
}

public class TangentWarmupTests
{
    [Theory]
    [InlineData(0, 100, 0.0)]
    [InlineData(25, 100, 0.25)]
    [InlineData(100, 100, 1.0)]
    [InlineData(5000, 100, 1.0)]
    [InlineData(0, 0, 1.0)]
    public void The_weight_rises_linearly_from_0_to_1_over_the_warmup(long step, long steps, double expected) =>
        Assert.Equal(expected, TangentWarmup.Weight(step, steps), 12);
}

public class ConsistencyTargetTests
{
    private static readonly DataSpec Spec = new("test", [2], 2);

    /// <summary>A random MLP teacher and a perturbed student (so that r and t both matter), and inputs.</summary>
    private static (ITeacher Teacher, AverageVelocityNetwork Student, Tensor Z, Tensor T, Tensor Labels) Setup()
    {
        manual_seed(5);
        var network = new MlpVelocityNetwork(new MlpOptions { Hidden = 32, Depth = 2, EmbeddingDim = 16, FrequencyDim = 8, TokenChannels = 8 }, Spec);
        var teacher = new NetworkTeacher(Spec, network);
        var student = network.CreateStudent();
        using (no_grad()) foreach (var p in student.parameters()) p.add_(randn_like(p) * 0.2);
        return (teacher, student, randn(8, 2), rand(8) * 0.9 + 0.05, randint(0, 3, [8]));
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(3.0)]
    public void The_target_equals_meanflows_target_with_r_zero_computed_through_meanflows_code_path(double scale)
    {
        using var scope = NewDisposeScope();
        var (teacher, student, z, t, labels) = Setup();
        var distiller = new ConsistencyDistiller(new ConsistencyOptions { GuidanceScale = scale });
        var (_, target, _) = distiller.Target(student, teacher, z, t, labels, new TrainingProgress(0, 1));

        // MeanFlow's path: guided velocity by hand, the JVP of u(z, r = 0, t) along (v, 0, 1), MeanFlowTarget with r = 0.
        var cond = teacher.Velocity(z, t, labels).detach();
        var uncond = teacher.Velocity(z, t, full_like(labels, Spec.NullLabel)).detach();
        var v = uncond + scale * (cond - uncond);
        var r = zeros(8);
        var (_, dudt) = JacobianVectorProduct.DoubleBackward((zz, tt) => student.AverageVelocity(zz, r, tt, labels), z, t, v, ones(8));
        var expected = MeanFlowTarget.Compute(v, dudt, r, t);
        double err = (target - expected).abs().max().item<float>();
        Assert.True(err < 1e-5, $"max |consistency target - MeanFlow target (r = 0)| = {err} (tolerance 1e-5)");
    }

    [Fact]
    public void The_finite_difference_jvp_gives_the_double_backward_target_to_1e4()
    {
        using var scope = NewDisposeScope();
        var (teacher, student, z, t, labels) = Setup();
        var progress = new TrainingProgress(0, 1);
        var (_, exact, _) = new ConsistencyDistiller(new ConsistencyOptions()).Target(student, teacher, z, t, labels, progress);
        var (_, fd, _) = new ConsistencyDistiller(new ConsistencyOptions { Jvp = JvpMode.FiniteDifference }).Target(student, teacher, z, t, labels, progress);
        double err = (exact - fd).abs().max().item<float>();
        Assert.True(err < 1e-4 * Math.Max(1, exact.abs().max().item<float>()), $"max |double backward - finite difference| = {err} (tolerance 1e-4)");
    }

    [Fact]
    public void At_the_start_of_the_warmup_the_target_is_the_teacher_velocity()
    {
        using var scope = NewDisposeScope();
        var (teacher, student, z, t, labels) = Setup();
        var distiller = new ConsistencyDistiller(new ConsistencyOptions { TangentWarmupSteps = 100 });
        var (_, target, dudt) = distiller.Target(student, teacher, z, t, labels, new TrainingProgress(0, 1000));
        Assert.True(dudt.abs().max().item<float>() > 1e-3); // the JVP term is not zero, it is weighted by 0
        Assert.Equal(teacher.Velocity(z, t, labels).data<float>().ToArray(), target.data<float>().ToArray());
        // half-way: v - 0.5 t du/dt
        var (_, half, dudtHalf) = distiller.Target(student, teacher, z, t, labels, new TrainingProgress(50, 1000));
        var expected = teacher.Velocity(z, t, labels) - 0.5 * t.unsqueeze(1) * dudtHalf;
        Assert.True((half - expected).abs().max().item<float>() < 1e-6);
    }

    [Fact]
    public void Tangent_normalisation_moves_the_target_from_the_output_by_g_over_norm_g_plus_c()
    {
        using var scope = NewDisposeScope();
        var (teacher, student, z, t, labels) = Setup();
        var progress = new TrainingProgress(0, 1);
        var (u, plain, _) = new ConsistencyDistiller(new ConsistencyOptions()).Target(student, teacher, z, t, labels, progress);
        var (u2, normalised, _) = new ConsistencyDistiller(new ConsistencyOptions { TangentNormalization = true, TangentNormalizationConstant = 0.1 })
            .Target(student, teacher, z, t, labels, progress);
        var g = (plain - u).detach();                                  // [8, 2]
        var step = (normalised - u2).detach();
        var gNorm = g.norm(1).data<float>().ToArray();
        var stepNorm = step.norm(1).data<float>().ToArray();
        for (int i = 0; i < 8; i++)
        {
            // Within float32 rounding (a 5-decimal-places comparison rounds both sides and fails on a boundary: 0.9137550 vs 0.9137549).
            Assert.Equal(gNorm[i] / (gNorm[i] + 0.1), stepNorm[i], 1e-5);
            // same direction: cosine 1
            double cos = (g[i] * step[i]).sum().item<float>() / (gNorm[i] * stepNorm[i]);
            Assert.Equal(1.0, cos, 1e-5);
        }
    }
}

public class ConsistencyLossTests
{
    [Theory]
    [InlineData(JvpMode.DoubleBackward, false)]
    [InlineData(JvpMode.FiniteDifference, false)]
    [InlineData(JvpMode.DoubleBackward, true)]
    public void One_point_data_with_the_exact_teacher_and_the_exact_student_has_zero_loss(JvpMode mode, bool normalise)
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        // One-point data x*: the exact average velocity is u(z, 0, t) = (z - x*) / t, whose derivative along the
        // trajectory is 0, so the target is v = u and the loss is 0 (with or without normalisation and warm-up).
        var mixture = new GaussianMixture([[1.5, -0.5]], [1e-6], [1.0], [0], 1);
        var spec = new DataSpec("one-point", [2], 1);
        var exact = new GaussianMixtureVelocity(mixture);
        var teacher = Substitute.For<ITeacher>();
        teacher.Spec.Returns(spec);
        teacher.Velocity(Arg.Any<Tensor>(), Arg.Any<Tensor>(), Arg.Any<Tensor>())
            .Returns(ci => exact.Velocity(ci.ArgAt<Tensor>(0), ci.ArgAt<Tensor>(1), ci.ArgAt<Tensor>(2)));
        var x = tensor(new float[] { 1.5f, -0.5f }).expand(64, 2).contiguous();
        var student = new FormulaStudent((z, r, t, c) => (z - tensor(new float[] { 1.5f, -0.5f }, dtype: z.dtype)) / t.unsqueeze(1));
        var distiller = new ConsistencyDistiller(new ConsistencyOptions
            { Jvp = mode, TangentNormalization = normalise, TangentWarmupSteps = normalise ? 10 : 0 });
        var loss = distiller.Loss(student, teacher, new Batch(x, zeros(64, ScalarType.Int64)), new TrainingProgress(3, 100));
        Assert.True(loss.Terms["raw_loss"].item<float>() < 1e-6, $"raw loss {loss.Terms["raw_loss"].item<float>()} ≥ 1e-6");
        Assert.True(loss.Total.item<float>() < 1e-6);
    }

    [Fact]
    public void A_student_off_the_target_has_positive_loss_and_gradients()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var spec = new DataSpec("test", [2], 2);
        var network = new MlpVelocityNetwork(new MlpOptions { Hidden = 16, Depth = 1, EmbeddingDim = 8, FrequencyDim = 4, TokenChannels = 8 }, spec);
        using (no_grad()) foreach (var p in network.parameters()) p.add_(randn_like(p) * 0.2); // an untrained MLP outputs 0 (zero final layer)
        var teacher = new NetworkTeacher(spec, network);
        var student = teacher.CreateStudent();
        var loss = new ConsistencyDistiller(new ConsistencyOptions()).Loss(student, teacher,
            new Batch(randn(16, 2), randint(0, 2, [16])), new TrainingProgress(0, 1));
        loss.Total.backward();
        Assert.True(loss.Terms["raw_loss"].item<float>() > 0);
        Assert.Contains(student.parameters(), p => p.grad is not null && p.grad.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void Defaults_are_meanflows_with_sCM_normalisation_off()
    {
        var o = new ConsistencyOptions();
        Assert.Equal((1.0, 0.1, TimeLaw.LogitNormal, -0.4, 1.0, 0.0), (o.GuidanceScale, o.LabelDropout, o.TimeLaw, o.TimeMean, o.TimeStd, o.TimeMin));
        Assert.Equal((JvpMode.DoubleBackward, 1e-4, false, 0.1, 0L, 1.0, 1e-2),
            (o.Jvp, o.FiniteDifferenceEpsilon, o.TangentNormalization, o.TangentNormalizationConstant, o.TangentWarmupSteps, o.AdaptiveWeightPower, o.AdaptiveWeightEpsilon));
    }
}

public class BaselinesAdaptiveWeightedLossTests
{
    [Fact]
    public void Sum_of_squares_one_with_p1_and_c_1e3_gives_0_999001_and_p0_the_plain_sum()
    {
        using var scope = NewDisposeScope();
        var delta = tensor(new float[] { 0.6f, 0.8f, 0f, 2f }, [2, 2]);   // s = (1, 4)
        // p = 1: mean(1/(1 + 1e-3) · 1, 1/(4 + 1e-3) · 4) = (0.999001 + 0.99975006) / 2
        Assert.Equal((1 / 1.001 + 4 / 4.001) / 2, AdaptiveWeightedLoss.Compute(delta, 1.0, 1e-3).Total.item<float>(), 6);
        var plain = AdaptiveWeightedLoss.Compute(delta, 0.0, 1e-3);
        Assert.Equal(2.5, plain.Total.item<float>(), 6);
        Assert.Equal(2.5, plain.Terms["raw_loss"].item<float>(), 6);
    }
}
