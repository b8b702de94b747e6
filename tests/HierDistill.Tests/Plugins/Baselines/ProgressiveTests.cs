using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Configuration;
using HierDistill.Plugins.Baselines;
using HierDistill.Plugins.Teachers.Exact;
using HierDistill.Plugins.Teachers.Networks;
using HierDistill.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Plugins.Baselines;

public class ProgressiveTargetTests
{
    [Fact]
    public void Two_half_steps_of_v_equal_z_t_land_on_the_hand_computed_point()
    {
        using var scope = NewDisposeScope();
        // v(z, t) = z t, z = (1, 2), t = 1, r = 0.5:
        // z_m = z - 0.25 (z · 1) = 0.75 z;  z_e = z_m - 0.25 (z_m · 0.75) = 0.609375 z;  ū = (z - z_e) / 0.5 = 0.78125 z.
        AverageVelocityField teacher = (z, r, t, c) => z * t.unsqueeze(1);
        var z0 = tensor(new float[] { 1, 2 }, [1, 2]);
        var target = ProgressiveTarget.Compute(teacher, z0, tensor(new float[] { 0.5f }), tensor(new float[] { 1f }), zeros(1, ScalarType.Int64));
        Assert.Equal(new float[] { 0.78125f, 1.5625f }, target.data<float>().ToArray());
        Assert.Equal(new float[] { 0.609375f, 1.21875f }, (z0 - 0.5f * target).data<float>().ToArray()); // one student step = the two-step point
    }

    [Fact]
    public void A_snapshot_teacher_is_asked_for_the_average_velocity_over_each_half_interval()
    {
        using var scope = NewDisposeScope();
        // u_T(z, r, t) = z (t + r): first half [0.75, 1] gives 1.75, z_m = z - 0.25 · 1.75 z = 0.5625 z; second half [0.5, 0.75]
        // gives 1.25, z_e = 0.5625 z (1 - 0.25 · 1.25) = 0.38671875 z; ū = (1 - 0.38671875) / 0.5 z = 1.2265625 z.
        AverageVelocityField teacher = (z, r, t, c) => z * (t + r).unsqueeze(1);
        var target = ProgressiveTarget.Compute(teacher, tensor(new float[] { 1, 2 }, [1, 2]), tensor(new float[] { 0.5f }), tensor(new float[] { 1f }),
            zeros(1, ScalarType.Int64));
        Assert.Equal(new float[] { 1.2265625f, 2.453125f }, target.data<float>().ToArray());
    }

    [Fact]
    public void With_the_exact_mixture_teacher_one_student_step_lands_on_the_teachers_two_step_euler_point_to_1e6()
    {
        using var scope = NewDisposeScope();
        manual_seed(0);
        var mixture = new GaussianMixture([[2.0, 0.0], [-2.0, 0.5], [0.0, -2.0]], [0.2, 0.3, 0.1], [0.5, 0.3, 0.2], [0, 1, 1], 2);
        var exact = new GaussianMixtureVelocity(mixture);
        var e = randn(64, 2);
        var labels = randint(0, 2, [64]);
        // Last round (N = 1): t = 1, r = 0, z_1 = e. The student's one step e - ū must be the teacher's 2-step Euler sample,
        // computed here by the shared sampler (another code path).
        var target = ProgressiveTarget.Compute((z, r, t, c) => exact.Velocity(z, t, c), e, zeros(64), ones(64), labels);
        var euler = Samplers.Euler(exact.Velocity, 2).Sample(e, labels);
        double err = (e - target - euler).abs().max().item<float>();
        Assert.True(err < 1e-6, $"max |(e - ū) - euler-2(e)| = {err} (tolerance 1e-6)");

        // N = 4 at t = 0.75 (r = 0.5): two Euler steps of 0.125 by hand.
        var z = randn(64, 2);
        var t = full(64, 0.75f);
        var zm = z - 0.125f * exact.Velocity(z, t, labels);
        var ze = zm - 0.125f * exact.Velocity(zm, full(64, 0.625f), labels);
        var ubar = ProgressiveTarget.Compute((zz, r, tt, c) => exact.Velocity(zz, tt, c), z, full(64, 0.5f), t, labels);
        double err2 = (z - 0.25f * ubar - ze).abs().max().item<float>();
        Assert.True(err2 < 1e-6, $"max |(z - Δ ū) - z_e| = {err2} (tolerance 1e-6)");
    }
}

public class ProgressiveScheduleTests
{
    [Fact]
    public void Rounds_halve_from_start_to_final_steps_and_divide_the_stage_equally()
    {
        var s = new ProgressiveSchedule(64, 1, 0, 700);
        Assert.Equal([64, 32, 16, 8, 4, 2, 1], s.Rounds);
        Assert.Equal(100, s.StepsPerRound);
        Assert.Equal(new ProgressiveRound(0, 64), s.RoundAt(0));
        Assert.Equal(new ProgressiveRound(0, 64), s.RoundAt(99));
        Assert.Equal(new ProgressiveRound(1, 32), s.RoundAt(100));
        Assert.Equal(new ProgressiveRound(6, 1), s.RoundAt(600));
        Assert.Equal(new ProgressiveRound(6, 1), s.RoundAt(699));
        // 10 steps over 7 rounds: one step each, the last round takes the remaining four
        Assert.Equal(new ProgressiveRound(6, 1), new ProgressiveSchedule(64, 1, 0, 10).RoundAt(9));
        Assert.Equal(new ProgressiveRound(5, 2), new ProgressiveSchedule(64, 1, 0, 10).RoundAt(5));
        // explicit rounds of 50 steps; 16 -> 4 is three rounds
        var explicitRounds = new ProgressiveSchedule(16, 4, 50, 1000);
        Assert.Equal([16, 8, 4], explicitRounds.Rounds);
        Assert.Equal(new ProgressiveRound(2, 4), explicitRounds.RoundAt(999));
    }
}

public class ProgressiveDistillerTests
{
    private static readonly DataSpec Spec = new("test", [2], 2);

    private static (ITeacher Teacher, AverageVelocityNetwork Student) Setup()
    {
        manual_seed(7);
        var network = new MlpVelocityNetwork(new MlpOptions { Hidden = 32, Depth = 2, EmbeddingDim = 16, FrequencyDim = 8, TokenChannels = 8 }, Spec);
        var student = network.CreateStudent();
        using (no_grad()) foreach (var p in student.parameters()) p.add_(randn_like(p) * 0.2);
        return (new NetworkTeacher(Spec, network), student);
    }

    /// <summary>Two half-steps written out: z_m = z - (Δ/2) u(z, t - Δ/2, t), z_e = z_m - (Δ/2) u(z_m, r, t - Δ/2), ū = (z - z_e) / Δ.</summary>
    private static Tensor TwoHalfSteps(AverageVelocityField u, Tensor z, Tensor r, Tensor t, Tensor labels)
    {
        using var _ = no_grad();
        var delta = (t - r).unsqueeze(1);
        var mid = t - (t - r) / 2;
        var zm = z - delta / 2 * u(z, mid, t, labels);
        var ze = zm - delta / 2 * u(zm, r, mid, labels);
        return (z - ze) / delta;
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        double err = (expected - actual).abs().max().item<float>();
        Assert.True(err < 1e-6, $"{what}: max error {err} (tolerance 1e-6)");
    }

    [Fact]
    public void Round_one_learns_the_teachers_half_steps_then_each_round_a_frozen_snapshot_of_the_student()
    {
        using var scope = NewDisposeScope();
        var (teacher, student) = Setup();
        using var distiller = new ProgressiveDistiller(new ProgressiveOptions { StartSteps = 4, FinalSteps = 1, StepsPerRound = 1, LabelDropout = 0 });
        distiller.Begin(student, teacher);
        var batch = new Batch(randn(32, 2), randint(0, 2, [32]));

        // Round one (N = 4): grid times t = i/4, r = t - 1/4, target from the teacher's velocity.
        var (z, r, t, labels, target, round) = distiller.Prepare(student, teacher, batch, new TrainingProgress(0, 10));
        Assert.Equal(new ProgressiveRound(0, 4), round);
        Assert.All(t.data<float>().ToArray(), x => Assert.Contains(x, new[] { 0.25f, 0.5f, 0.75f, 1f }));
        AssertClose(t - 0.25f, r, "r = t - Δ");
        AssertClose(TwoHalfSteps((zz, rr, tt, cc) => teacher.Velocity(zz, tt, cc), z, r, t, labels), target, "round one target");
        Assert.Null(distiller.Snapshot);

        // Round two (N = 2): the snapshot is the student as it was at the round's first step.
        var before = student.Clone();
        (z, r, t, labels, target, round) = distiller.Prepare(student, teacher, batch, new TrainingProgress(1, 10));
        Assert.Equal(new ProgressiveRound(1, 2), round);
        AssertClose(TwoHalfSteps(before.AverageVelocity, z, r, t, labels), target, "round two target (snapshot)");
        Assert.All(distiller.Snapshot!.parameters(), p => Assert.False(p.requires_grad));

        // The student trains on; within the round the snapshot does not follow it.
        using (no_grad()) foreach (var p in student.parameters()) p.add_(randn_like(p) * 0.3);
        (z, r, t, labels, target, _) = distiller.Prepare(student, teacher, batch, new TrainingProgress(1, 10));
        AssertClose(TwoHalfSteps(before.AverageVelocity, z, r, t, labels), target, "round two target after a student update");

        // Last round (N = 1): t = 1, r = 0, and the snapshot is the updated student.
        (z, r, t, labels, target, round) = distiller.Prepare(student, teacher, batch, new TrainingProgress(2, 10));
        Assert.Equal(new ProgressiveRound(2, 1), round);
        Assert.All(t.data<float>().ToArray(), x => Assert.Equal(1f, x));
        Assert.All(r.data<float>().ToArray(), x => Assert.Equal(0f, x));
        AssertClose(TwoHalfSteps(student.AverageVelocity, z, r, t, labels), target, "last round target (new snapshot)");
    }

    [Fact]
    public void The_snapshot_allocates_nothing_between_steps_and_is_released_on_dispose()
    {
        var (teacher, student) = Setup();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var distiller = new ProgressiveDistiller(new ProgressiveOptions { StartSteps = 8, FinalSteps = 1, StepsPerRound = 2 });
        distiller.Begin(student, teacher);
        long afterBegin = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Assert.True(afterBegin > before, "Begin creates the snapshot");
        for (long step = 0; step < 10; step++)
        {
            // rounds of 2 steps: snapshots are refreshed at steps 2, 4 and 6 (the last round starts at 6)
            using (var scope = NewDisposeScope())
                distiller.Loss(student, teacher, new Batch(randn(16, 2), randint(0, 2, [16])), new TrainingProgress(step, 10));
            Assert.Equal(afterBegin, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        }
        distiller.Dispose();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void Too_few_stage_steps_for_the_rounds_is_an_error_that_says_what_to_change()
    {
        using var scope = NewDisposeScope();
        var (teacher, student) = Setup();
        using var distiller = new ProgressiveDistiller(new ProgressiveOptions { StepsPerRound = 100 }, "stages:structure:distiller");
        var e = Assert.Throws<InvalidOperationException>(() =>
            distiller.Loss(student, teacher, new Batch(randn(4, 2), randint(0, 2, [4])), new TrainingProgress(0, 500)));
        Assert.Equal("stages:structure:distiller: 7 rounds (64 → 32 → 16 → 8 → 4 → 2 → 1 steps) of 100 training steps need more than 600 steps " +
                     "to reach the last round, but the stage has 500; lower stepsPerRound (0 divides the stage's steps equally) or raise the stage's steps.",
            e.Message);
    }

    [Fact]
    public void Options_have_the_documented_defaults_and_reject_steps_that_do_not_halve()
    {
        var o = new ProgressiveOptions();
        Assert.Equal((1.0, 0.1, 64, 1, 0L, 0.0, 1e-2),
            (o.GuidanceScale, o.LabelDropout, o.StartSteps, o.FinalSteps, o.StepsPerRound, o.AdaptiveWeightPower, o.AdaptiveWeightEpsilon));
        Assert.Equal(["stages:structure:distiller:options:finalSteps: startSteps / finalSteps must be a power of two (each round halves the steps); got 64 / 3."],
            Errors("stages:structure:distiller={\"type\": \"progressive\", \"options\": { \"finalSteps\": 3 }}"));
        Assert.Equal(["stages:structure:distiller:options:finalSteps: must be at most startSteps (8)."],
            Errors("stages:structure:distiller={\"type\": \"progressive\", \"options\": { \"startSteps\": 8, \"finalSteps\": 16 }}"));
        Assert.Empty(Errors("stages:structure:distiller={\"type\": \"progressive\", \"options\": { \"startSteps\": 32, \"finalSteps\": 2 }}"));
        Assert.Empty(Errors("stages:structure:distiller={\"type\": \"consistency\", \"options\": { \"tangentNormalization\": true }}"));
    }

    private static IReadOnlyList<string> Errors(params string[] overrides)
    {
        try
        {
            ConfigLoader.Validate(ConfigLoader.Read(TestPaths.Sample("toy2d/hd.json"), overrides), TestPaths.Sample("toy2d/hd.json"), Catalogs.BuiltIn());
            return [];
        }
        catch (ConfigException e)
        {
            return e.Errors.Select(x => x.ToString()).ToList();
        }
    }
}
