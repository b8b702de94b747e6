using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using static TorchSharp.torch;

namespace Acme.HierDistill.Shortcut;

/// <summary>
/// Stage 1 of HD with the shortcut-model objective (Frans et al. 2024) in place of MeanFlow. The student
/// <c>u_θ(z, r, t | c)</c> is the shortcut model with step size <c>t - r</c>. Each batch is split:
/// <list type="bullet">
/// <item>a fraction <c>f</c> of the rows (self-consistency): (r, t) on the dyadic grid (<see cref="GapSampler"/>),
/// target = the mean of two half-gap steps of the student itself (<see cref="ShortcutTarget"/>);</item>
/// <item>the other rows (flow matching at gap 0): <c>r = t ~ U(0, 1)</c>, target = the teacher's CFG velocity
/// <c>v_w(z_t, t | c)</c>, which in HD replaces the data velocity <c>e - x</c> (method.md §2).</item>
/// </list>
/// <code>
/// L = (1/B) [ Σ_FM mean_dims (u_θ - v_w)² + λ Σ_SC mean_dims (u_θ - sg(u_tgt))² ]
/// </code>
/// with <c>z_t = (1 - t) x + t e</c> for every row. Every tensor lives in the host's per-step dispose scope.
/// </summary>
internal sealed class ShortcutDistiller(ShortcutOptions options) : ITrajectoryDistiller
{
    public ShortcutOptions Options { get; } = options;

    public LossBreakdown Loss(AverageVelocityNetwork student, ITeacher teacher, Batch batch, TrainingProgress progress)
    {
        var x = batch.X;
        Shapes.RequireBatchOf(x, "batch.X", teacher.Spec.SampleShape);
        long b = batch.Size;
        long nSc = (long)Math.Floor(Options.SelfConsistencyFraction * b); // rows 0 .. nSc-1: self-consistency
        long nFm = b - nSc;                                                // the rest: flow matching at gap 0
        int nullLabel = teacher.Spec.NullLabel;
        var labels = LabelDropout.Apply(batch.Labels, Options.LabelDropout, nullLabel);

        var (rSc, tSc, finest) = GapSampler.Sample(nSc, Options.Levels, x.device);
        var tFm = TimeSampling.Uniform(nFm, 0, 1, x.device);
        var t = cat([tSc, tFm]);
        var r = cat([rSc, tFm]);
        var z = FlowConventions.Interpolate(x, randn_like(x), t);

        // The prediction being trained: one forward pass over all rows.
        var u = student.AverageVelocity(z, r, t, labels);

        // Targets, without gradient.
        var zFm = z.narrow(0, nSc, nFm);
        var labelsFm = labels.narrow(0, nSc, nFm);
        Tensor velocity;
        using (no_grad())
            velocity = ClassifierFreeGuidance.Guide(teacher.Velocity, Options.GuidanceScale, nullLabel)(zFm, tFm, labelsFm).detach();
        var target = nSc == 0
            ? velocity
            : cat([ShortcutTarget.Compute(student.AverageVelocity, z.narrow(0, 0, nSc), rSc, tSc, labels.narrow(0, 0, nSc), finest), velocity]);

        var perRow = (u - target).square().flatten(1).mean([1]);          // [B]
        var fm = perRow.narrow(0, nSc, nFm);
        var total = fm.sum();
        var terms = new Dictionary<string, Tensor> { ["flow_matching"] = fm.mean() };
        var diagnostics = new Dictionary<string, Tensor>();
        if (nSc > 0)
        {
            var sc = perRow.narrow(0, 0, nSc);
            total = total + Options.SelfConsistencyWeight * sc.sum();
            terms["self_consistency"] = sc.mean();
            diagnostics["gap_mean"] = (tSc - rSc).mean();
        }
        return new LossBreakdown(total / b, terms, diagnostics);
    }
}
