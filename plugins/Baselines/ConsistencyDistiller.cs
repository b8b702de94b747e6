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
/// Continuous consistency training (Song et al. 2023; Lu &amp; Song 2024) in the average-velocity frame, the HD
/// paper's reading of it as MeanFlow with r = 0 fixed (method.md §4), with the teacher's guided velocity as the
/// data velocity:
/// <code>
/// z = (1 - t) x + t e;  ṽ = v_w(z, t | c);  du/dt = JVP(u_θ, (z, 0, t), (ṽ, 0, 1))
/// u_tgt = sg(ṽ - w t du/dt)  [sCM: sg(u_θ + g / (‖g‖ + c)), g = u_tgt - u_θ];  L = MeanFlow's adaptive loss of u_θ(z, 0, t) - u_tgt
/// </code>
/// The student learns <c>u(z, 0, t)</c> only: its one-step sample is <c>e - u_θ(e, 0, 1)</c>; few-step sampling with
/// <c>r &gt; 0</c> uses what the network does at <c>t - r</c> it was never trained on.
/// </summary>
internal sealed class ConsistencyDistiller(ConsistencyOptions options) : ITrajectoryDistiller
{
    public ConsistencyOptions Options { get; } = options;

    public LossBreakdown Loss(AverageVelocityNetwork student, ITeacher teacher, Batch batch, TrainingProgress progress)
    {
        var x = batch.X;
        Shapes.RequireBatchOf(x, "batch.X", teacher.Spec.SampleShape);
        var labels = LabelDropout.Apply(batch.Labels, Options.LabelDropout, teacher.Spec.NullLabel);
        var t = SampleTimes(batch.Size, x.device);
        var z = FlowConventions.Interpolate(x, randn_like(x), t);
        var (u, target, dudt) = Target(student, teacher, z, t, labels, progress);
        var loss = AdaptiveWeightedLoss.Compute(u - target, Options.AdaptiveWeightPower, Options.AdaptiveWeightEpsilon);
        var diagnostics = new Dictionary<string, Tensor>(loss.Diagnostics)
        {
            ["dudt_abs"] = dudt.abs().mean(),
            ["tangent_weight"] = tensor(TangentWarmup.Weight(progress.Step, Options.TangentWarmupSteps)),
        };
        return new LossBreakdown(loss.Total, loss.Terms, diagnostics);
    }

    /// <summary>
    /// The student's output (with its graph) and the target for given states: the teacher's guided velocity, the JVP
    /// of <c>u_θ(·, 0, ·)</c> along <c>(ṽ, 1)</c> and <see cref="ConsistencyTarget"/>.
    /// </summary>
    /// <returns><c>U</c> = u_θ(z, 0, t | c) with gradient, <c>Target</c> and <c>Dudt</c> detached; all <c>[B, ...S]</c>.</returns>
    internal (Tensor U, Tensor Target, Tensor Dudt) Target(AverageVelocityNetwork student, ITeacher teacher, Tensor z, Tensor t, Tensor labels,
        TrainingProgress progress)
    {
        var v = ClassifierFreeGuidance.TeacherVelocity(teacher, Options.GuidanceScale, z, t, labels);
        var r = zeros_like(t);

        var (u, dudt) = JacobianVectorProduct.AverageVelocityAlongFlow(student, z, r, t, v, labels, Options.Jvp, Options.FiniteDifferenceEpsilon);
        double warmup = TangentWarmup.Weight(progress.Step, Options.TangentWarmupSteps);
        var target = ConsistencyTarget.Compute(v, dudt, t, warmup, u, Options.TangentNormalization ? Options.TangentNormalizationConstant : null);
        return (u, target, dudt);
    }

    private Tensor SampleTimes(long batchSize, Device device) => Options.TimeLaw == TimeLaw.Uniform
        ? TimeSampling.Uniform(batchSize, Options.TimeMin, 1.0, device)
        : TimeSampling.LogitNormal(batchSize, Options.TimeMean, Options.TimeStd, device);
}
