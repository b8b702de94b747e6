using HierDistill.Abstractions.Plugins;
using Microsoft.Extensions.DependencyInjection;

namespace HierDistill.Plugins.Baselines;

/// <summary>
/// Entry point of the Baselines plugin: the <c>consistency</c> and <c>progressive</c> trajectory distillers, the
/// alternatives to MeanFlow that HD compares against (method.md §4). Both train the same student
/// <c>u_θ(z, r, t | c)</c>, so stage 2 uses their students exactly like MeanFlow's.
/// </summary>
public sealed class BaselinesPlugin : IHierDistillPlugin
{
    /// <inheritdoc/>
    public void Register(IServiceCollection services)
    {
        services.AddTrajectoryDistiller<ConsistencyOptions>("consistency",
            "Continuous consistency training in the average-velocity frame (MeanFlow with r = 0): teacher CFG velocity, exact or " +
            "finite-difference JVP, optional sCM tangent normalisation and tangent warm-up.",
            (_, o) => new ConsistencyDistiller(o));
        services.AddTrajectoryDistiller<ProgressiveOptions>("progressive",
            "Progressive distillation in the average-velocity frame: rounds halving the number of steps, two half-steps of the " +
            "round's teacher (the teacher, then a frozen snapshot of the student) as target.",
            (ctx, o) =>
            {
                var distiller = new ProgressiveDistiller(o, ctx.ConfigPath);
                if (ctx.StageSteps is long steps) distiller.CheckSteps(steps);
                return distiller;
            });
    }
}
