using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Baselines;

/// <summary>
/// Progressive distillation (Salimans &amp; Ho 2022) in the average-velocity frame (method.md §4). In the round with N
/// steps, <c>Δ = 1/N</c>, <c>t = i/N</c> with <c>i ~ U{1..N}</c>, <c>r = t - Δ</c>, <c>z_t = (1 - t) x + t e</c>:
/// <code>
/// ū = ProgressiveTarget(u_T, z_t, r, t);   L = loss of u_θ(z_t, r, t | c) - sg(ū)   (plain squared error by default)
/// </code>
/// Round one's teacher is the teacher's guided velocity, <c>u_T(z, r, t) = v_w(z, t)</c>; every later round's is a
/// frozen snapshot of the student taken at the round's first step (detected from <see cref="TrainingProgress.Step"/>).
/// The student keeps training across rounds (the paper starts each round's student from the previous one).
/// </summary>
/// <remarks>
/// One snapshot module exists per distiller; its weights are overwritten in place at each round boundary, so no
/// tensors are allocated between steps. It is created in <see cref="Begin"/> (outside any step's dispose scope) and
/// released by <see cref="Dispose"/> or when <see cref="Begin"/> starts over with another student.
/// </remarks>
internal sealed class ProgressiveDistiller(ProgressiveOptions options, string configPath = "progressive") : ITrajectoryDistiller, ICheckpointable, IDisposable
{
    private AverageVelocityNetwork? _snapshot;
    private AverageVelocityNetwork? _snapshotOf;
    private int _snapshotRound = -1;
    private bool _checked;

    public ProgressiveOptions Options { get; } = options;

    /// <summary>The round a step of a stage of <paramref name="totalSteps"/> steps belongs to.</summary>
    internal ProgressiveSchedule Schedule(long totalSteps) =>
        new(Options.StartSteps, Options.FinalSteps, Options.StepsPerRound, totalSteps);

    /// <summary>
    /// Checks that a stage of <paramref name="totalSteps"/> training steps reaches the last round (the factory calls it with
    /// <see cref="HierDistill.Abstractions.Plugins.ComponentContext.StageSteps"/>, so the config fails before anything runs;
    /// the first step checks again for hosts that do not say).
    /// </summary>
    /// <exception cref="InvalidOperationException">When the rounds before the last need all of the stage's steps.</exception>
    internal void CheckSteps(long totalSteps)
    {
        var schedule = Schedule(totalSteps);
        if (totalSteps > 0 && schedule.StepsToLastRound >= totalSteps)
            throw new InvalidOperationException(Options.StepsPerRound > 0
                ? $"{configPath}: {schedule.Rounds.Count} rounds ({string.Join(" → ", schedule.Rounds)} steps) of {schedule.StepsPerRound} " +
                  $"training steps need more than {schedule.StepsToLastRound} steps to reach the last round, but the stage has " +
                  $"{totalSteps}; lower stepsPerRound (0 divides the stage's steps equally) or raise the stage's steps."
                : $"{configPath}: {schedule.Rounds.Count} rounds ({string.Join(" → ", schedule.Rounds)} steps) share the stage's steps, one " +
                  $"step at least each, but the stage has {totalSteps}; raise the stage's steps to {schedule.Rounds.Count} or more, or " +
                  "lower startSteps / raise finalSteps for fewer rounds.");
    }

    /// <summary>The frozen snapshot that teaches the current round (null in round one).</summary>
    internal AverageVelocityNetwork? Snapshot => _snapshotRound > 0 ? _snapshot : null;

    public void Begin(AverageVelocityNetwork student, ITeacher teacher)
    {
        ReleaseSnapshot();
        _checked = false;
        if (Schedule(1).Rounds.Count > 1) CreateSnapshot(student);
    }

    public LossBreakdown Loss(AverageVelocityNetwork student, ITeacher teacher, Batch batch, TrainingProgress progress)
    {
        var (z, r, t, labels, target, round) = Prepare(student, teacher, batch, progress);
        var u = student.AverageVelocity(z, r, t, labels);
        var loss = AdaptiveWeightedLoss.Compute(u - target, Options.AdaptiveWeightPower, Options.AdaptiveWeightEpsilon);
        var diagnostics = new Dictionary<string, Tensor>(loss.Diagnostics)
        {
            ["round"] = tensor((double)round.Index),
            ["round_steps"] = tensor((double)round.Steps),
        };
        return new LossBreakdown(loss.Total, loss.Terms, diagnostics);
    }

    /// <summary>
    /// Everything but the student's forward pass: the round of <paramref name="progress"/> (taking the snapshot at a
    /// round boundary), the grid times, the states and the target.
    /// </summary>
    /// <returns>States <c>[B, ...S]</c>, times r and t <c>[B]</c>, the (dropped-out) labels, the target ū detached, and the round.</returns>
    /// <exception cref="InvalidOperationException">When the stage has too few steps to reach the last round.</exception>
    internal (Tensor Z, Tensor R, Tensor T, Tensor Labels, Tensor Target, ProgressiveRound Round) Prepare(
        AverageVelocityNetwork student, ITeacher teacher, Batch batch, TrainingProgress progress)
    {
        var x = batch.X;
        Shapes.RequireBatchOf(x, "batch.X", teacher.Spec.SampleShape);
        var schedule = Schedule(progress.TotalSteps);
        if (!_checked)
        {
            CheckSteps(progress.TotalSteps);
            _checked = true;
        }
        var round = schedule.RoundAt(progress.Step);
        if (round.Index > 0 && _snapshotRound != round.Index)
        {
            if (_snapshot is null || !ReferenceEquals(_snapshotOf, student)) CreateSnapshot(student);
            using (no_grad()) _snapshot!.CopyWeightsFrom(student);
            _snapshotRound = round.Index;
        }
        else if (round.Index == 0)
        {
            _snapshotRound = 0;
        }

        var labels = LabelDropout.Apply(batch.Labels, Options.LabelDropout, teacher.Spec.NullLabel);
        long b = batch.Size;
        // t = i / N on the round's grid, i ~ U{1..N}; r = (i - 1) / N. Powers of two: exact in float32.
        var i = randint(1, round.Steps + 1, [b], dtype: ScalarType.Int64, device: x.device);
        var t = (i.to_type(x.dtype) / round.Steps);
        var r = ((i - 1).to_type(x.dtype) / round.Steps);
        var z = FlowConventions.Interpolate(x, randn_like(x), t);

        AverageVelocityField teacherField;
        if (round.Index == 0)
        {
            var guided = ClassifierFreeGuidance.Guide(teacher.Velocity, Options.GuidanceScale, teacher.Spec.NullLabel);
            teacherField = (zz, rr, tt, cc) => guided(zz, tt, cc);
        }
        else
        {
            teacherField = _snapshot!.AverageVelocity; // sampled unguided: it learned guided targets
        }
        var target = ProgressiveTarget.Compute(teacherField, z, r, t, labels);
        return (z, r, t, labels, target, round);
    }

    public void Dispose() => ReleaseSnapshot();

    /// <summary>The round the snapshot teaches (<c>round</c>, -1 before the first step) and, from round two on, its weights (<c>snapshot.*</c>).</summary>
    public IReadOnlyDictionary<string, Tensor> CheckpointState()
    {
        var state = new Dictionary<string, Tensor> { ["round"] = tensor(new long[] { _snapshotRound }) };
        if (_snapshotRound > 0 && _snapshot is not null)
            foreach (var (name, t) in _snapshot.state_dict()) state[$"snapshot.{name}"] = t;
        return state;
    }

    /// <summary>Restores the round and the snapshot's weights after <see cref="Begin"/>.</summary>
    /// <exception cref="ArgumentException">When the state lacks the round or a snapshot tensor, or a shape differs.</exception>
    public void RestoreCheckpointState(IReadOnlyDictionary<string, Tensor> state)
    {
        if (!state.TryGetValue("round", out var round)) throw new ArgumentException($"{configPath}: the checkpoint holds no progressive round.", nameof(state));
        int index = (int)round.data<long>()[0];
        if (index > 0)
        {
            if (_snapshot is null || _snapshotOf is null)
                throw new ArgumentException($"{configPath}: the checkpoint is in round {index} but this schedule has a single round.", nameof(state));
            using var scope = NewDisposeScope();
            using (no_grad())
            {
                foreach (var (name, t) in _snapshot.state_dict())
                {
                    if (!state.TryGetValue($"snapshot.{name}", out var s) || !s.shape.SequenceEqual(t.shape))
                        throw new ArgumentException(
                            $"{configPath}: the checkpoint's round snapshot has no tensor '{name}' of shape [{string.Join(", ", t.shape)}].", nameof(state));
                    t.copy_(s);
                }
            }
        }
        _snapshotRound = index;
    }

    private void CreateSnapshot(AverageVelocityNetwork student)
    {
        ReleaseSnapshot();
        AverageVelocityNetwork copy;
        // The snapshot outlives the step that may create it: its weights leave every dispose scope, while the
        // temporaries of cloning are released with this scope.
        using (NewDisposeScope())
        {
            copy = student.Clone();
            foreach (var (_, tensor) in copy.state_dict()) tensor.DetachFromDisposeScope();
        }
        copy.Freeze();
        _snapshot = copy;
        _snapshotOf = student;
        _snapshotRound = -1;
    }

    private void ReleaseSnapshot()
    {
        _snapshot?.Dispose();
        _snapshot = null;
        _snapshotOf = null;
        _snapshotRound = -1;
    }
}
