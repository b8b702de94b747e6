using HierDistill.Abstractions.Plugins;
using Microsoft.Extensions.DependencyInjection;

namespace HierDistill.Plugins.Dmd;

/// <summary>Entry point of the DMD plugin: the <c>dmd</c> distribution matcher.</summary>
public sealed class DmdPlugin : IHierDistillPlugin
{
    /// <inheritdoc/>
    public void Register(IServiceCollection services) =>
        services.AddDistributionMatcher<DmdOptions>("dmd",
            "Distribution Matching Distillation: real score = frozen teacher (CFG), fake score = trainable teacher copy trained on generator samples, normalised DM gradient, two time scales.",
            (ctx, o) => new DmdMatcher(o, ctx.RequireTeacher()));
}
