using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using Xunit;
using static TorchSharp.torch;

namespace Acme.HierDistill.Shortcut.Tests;

public class ShortcutDistillerTests
{
    private static readonly DataSpec Spec = new("test", [2], 2); // null label ∅ = 2
    private static readonly float[] B = [1, -2];
    private static readonly float[] C = [0.5f, -1];
    private const double MeanSquareOfC = (0.25 + 1) / 2; // mean over the two dimensions of c²

    private static Batch NewBatch(long size) => new(randn(size, 2), zeros(size, ScalarType.Int64));

    private static FormulaTeacher ConstantTeacher() => new(Spec, (z, t, c) => tensor(B).expand(z.shape[0], 2));

    [Fact]
    public void A_constant_offset_is_charged_on_the_flow_matching_rows_only()
    {
        using var scope = NewDisposeScope();
        // Teacher v = b: the exact average velocity is b for every gap, and so are both half-steps of a
        // constant student u = b + c. Flow-matching rows err by c, self-consistency rows by 0.
        var student = new FormulaStudent((z, r, t, c) => tensor(B).add(tensor(C)).expand(z.shape[0], 2));
        var distiller = new ShortcutDistiller(new ShortcutOptions { SelfConsistencyFraction = 0.25 });
        var loss = distiller.Loss(student, ConstantTeacher(), NewBatch(8), new TrainingProgress(0, 1));
        // 8 rows: floor(0.25·8) = 2 self-consistency rows, 6 flow-matching rows.
        Assert.Equal(6.0 / 8 * MeanSquareOfC, Values.Scalar(loss.Total), 6);
        Assert.Equal(MeanSquareOfC, Values.Scalar(loss.Terms["flow_matching"]), 6);
        Assert.Equal(0.0, Values.Scalar(loss.Terms["self_consistency"]), 6);
    }

    [Fact]
    public void With_two_steps_a_gap_proportional_error_is_charged_on_the_weighted_self_consistency_rows_only()
    {
        using var scope = NewDisposeScope();
        // M = 2: every self-consistency row is [0, 1], finest, its target two Euler steps of u(·, s, s) = b.
        // Student u = b + c (t - r): exact at gap 0 (flow matching errs by 0), u(z, 0, 1) = b + c errs by c.
        var student = new FormulaStudent((z, r, t, c) => tensor(B) + tensor(C) * (t - r).unsqueeze(1));
        var options = new ShortcutOptions { Steps = 2, SelfConsistencyFraction = 0.5, SelfConsistencyWeight = 2 };
        var loss = new ShortcutDistiller(options).Loss(student, ConstantTeacher(), NewBatch(8), new TrainingProgress(0, 1));
        Assert.Equal(2 * 4.0 / 8 * MeanSquareOfC, Values.Scalar(loss.Total), 6);
        Assert.Equal(0.0, Values.Scalar(loss.Terms["flow_matching"]), 6);
        Assert.Equal(MeanSquareOfC, Values.Scalar(loss.Terms["self_consistency"]), 6);
        Assert.Equal(1.0, Values.Scalar(loss.Diagnostics["gap_mean"]), 6);
    }

    [Theory]
    [InlineData(3.0, 0.0, 9.0)]  // v_w = v(∅) + 3 (v(c) - v(∅)) = 0 + 3·1; student 0 errs by 3 in each dimension
    [InlineData(1.0, 0.0, 1.0)]  // no guidance: v = v(c) = 1
    [InlineData(3.0, 1.0, 0.0)]  // every label dropped to ∅: the target is v(∅) = 0 whatever w
    public void The_flow_matching_target_is_the_teachers_guided_velocity(double guidance, double labelDropout, double expected)
    {
        using var scope = NewDisposeScope();
        // v(z, t | c) = 1 for a class label, 0 for the null label ∅ = 2.
        var teacher = new FormulaTeacher(Spec, (z, t, c) => (c != Spec.NullLabel).to_type(ScalarType.Float32).unsqueeze(1).expand(-1, 2));
        var student = new FormulaStudent((z, r, t, c) => zeros_like(z));
        var options = new ShortcutOptions { GuidanceScale = guidance, LabelDropout = labelDropout, SelfConsistencyFraction = 0 };
        var loss = new ShortcutDistiller(options).Loss(student, teacher, NewBatch(16), new TrainingProgress(0, 1));
        Assert.Equal(expected, Values.Scalar(loss.Total), 6);
        Assert.False(loss.Terms.ContainsKey("self_consistency"));
    }

    [Fact]
    public void Training_a_constant_student_on_the_loss_reaches_the_teachers_velocity()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var student = new ConstantStudent(2);
        var teacher = ConstantTeacher();
        var distiller = new ShortcutDistiller(new ShortcutOptions());
        using var optimizer = optim.Adam(student.parameters(), 0.05);
        for (int step = 0; step < 300; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            distiller.Loss(student, teacher, NewBatch(32), new TrainingProgress(step, 300)).Total.backward();
            optimizer.step();
        }
        var p = Values.Of(student.P.detach());
        Assert.Equal(1.0, p[0], 1);
        Assert.Equal(-2.0, p[1], 1);
    }

    [Fact]
    public void A_batch_of_the_wrong_sample_shape_is_refused()
    {
        using var scope = NewDisposeScope();
        var student = new FormulaStudent((z, r, t, c) => z);
        var batch = new Batch(randn(4, 3), zeros(4, ScalarType.Int64));
        Assert.Throws<ArgumentException>(() => new ShortcutDistiller(new ShortcutOptions()).Loss(student, ConstantTeacher(), batch, new TrainingProgress(0, 1)));
    }
}
