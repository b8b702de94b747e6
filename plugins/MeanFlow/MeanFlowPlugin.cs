using HierDistill.Abstractions.Plugins;
using Microsoft.Extensions.DependencyInjection;

namespace HierDistill.Plugins.MeanFlow;

/// <summary>Entry point of the MeanFlow plugin: the <c>meanflow</c> trajectory distiller.</summary>
public sealed class MeanFlowPlugin : IHierDistillPlugin
{
    /// <inheritdoc/>
    public void Register(IServiceCollection services) =>
        services.AddTrajectoryDistiller<MeanFlowOptions>("meanflow",
            "MeanFlow objective with the teacher's CFG velocity as target (HD stage 1): adaptive weight, (t, r) law, exact or finite-difference JVP.",
            (_, o) => new MeanFlowDistiller(o));
}
