using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;

namespace HierDistill.Abstractions.Contracts;

/// <summary>
/// Stage 1 of Hierarchical Distillation: a trajectory distiller teaches the student
/// <c>u_θ(z, r, t | c)</c> the teacher's average velocity (MeanFlow; or consistency or progressive
/// distillation, which HD shows estimate the same quantity). The host owns the loop, optimiser,
/// EMA and logging; the distiller only computes losses.
/// </summary>
public interface ITrajectoryDistiller
{
    /// <summary>Called once before the first step (e.g. to snapshot a round's teacher). Default: nothing.</summary>
    /// <param name="student">The student being trained.</param>
    /// <param name="teacher">The frozen teacher.</param>
    void Begin(AverageVelocityNetwork student, ITeacher teacher) { }

    /// <summary>
    /// The distillation loss for one batch. <see cref="LossBreakdown.Total"/> is backpropagated
    /// into the student's parameters; the teacher is never differentiated.
    /// </summary>
    /// <param name="student">The student, in training mode.</param>
    /// <param name="teacher">The frozen teacher.</param>
    /// <param name="batch">A training batch: data <c>[B, ...S]</c> and labels <c>[B]</c>.</param>
    /// <param name="progress">Where the stage stands (for schedules).</param>
    /// <exception cref="ArgumentException">On shape mismatches.</exception>
    LossBreakdown Loss(AverageVelocityNetwork student, ITeacher teacher, Batch batch, TrainingProgress progress);
}
