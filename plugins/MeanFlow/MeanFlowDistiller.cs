using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Plugins.MeanFlow;

/// <summary>
/// Stage 1 of HD: MeanFlow (Geng et al. 2025, Alg. 1) with the teacher's classifier-free-guided velocity in
/// place of the data velocity (method.md §2):
/// <code>
/// z = (1 - t) x + t e;  ṽ = v_w(z, t | c);  du/dt = JVP(u_θ, (z, r, t), (ṽ, 0, 1))
/// u_tgt = sg(ṽ - (t - r) du/dt);  L = mean( sg(1/(s + c)^p) s ),  s = Σ (u_θ(z, r, t | c) - u_tgt)²
/// </code>
/// Rows whose label was dropped to ∅ get the teacher's unconditional velocity.
/// </summary>
internal sealed class MeanFlowDistiller(MeanFlowOptions options) : ITrajectoryDistiller
{
    public MeanFlowOptions Options { get; } = options;

    public LossBreakdown Loss(AverageVelocityNetwork student, ITeacher teacher, Batch batch, TrainingProgress progress)
    {
        var x = batch.X;
        Shapes.RequireBatchOf(x, "batch.X", teacher.Spec.SampleShape);
        int nullLabel = teacher.Spec.NullLabel;
        var labels = LabelDropout.Apply(batch.Labels, Options.LabelDropout, nullLabel);
        var (t, r) = TimePairSampler.Sample(batch.Size, Options.TimeMean, Options.TimeStd, Options.RatioRNotEqualT, x.device);
        var e = randn_like(x);
        var z = FlowConventions.Interpolate(x, e, t);

        var v = ClassifierFreeGuidance.TeacherVelocity(teacher, Options.GuidanceScale, z, t, labels);

        var (u, dudt) = JacobianVectorProduct.AverageVelocityAlongFlow(student, z, r, t, v, labels, Options.Jvp, Options.FiniteDifferenceEpsilon);

        var target = MeanFlowTarget.Compute(v, dudt, r, t);
        var loss = AdaptiveWeightedLoss.Compute(u - target, Options.AdaptiveWeightPower, Options.AdaptiveWeightEpsilon);
        var diagnostics = new Dictionary<string, Tensor>(loss.Diagnostics)
        {
            ["r_ne_t_fraction"] = (r != t).to_type(ScalarType.Float32).mean(),
            ["dudt_abs"] = dudt.abs().mean(),
        };
        return new LossBreakdown(loss.Total, loss.Terms, diagnostics);
    }
}
