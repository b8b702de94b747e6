using HierDistill.Abstractions.Plugins;
using Microsoft.Extensions.DependencyInjection;

namespace HierDistill.Plugins.Awd;

/// <summary>Entry point of the AWD plugin: the <c>awd</c> and <c>gap</c> discriminators.</summary>
public sealed class AwdPlugin : IHierDistillPlugin
{
    /// <inheritdoc/>
    public void Register(IServiceCollection services)
    {
        services.AddDiscriminator<AwdOptions>("awd",
            "Adaptive Weighted Discriminator (HD): per-block heads with learnable-query attention over teacher tokens, spectral norm, layer norm.",
            (ctx, o) => new TokenDiscriminator(o, ctx.RequireTeacher(), attention: true));
        services.AddDiscriminator<GapOptions>("gap",
            "Baseline discriminator: the same heads with global average pooling over tokens instead of attention.",
            (ctx, o) => new TokenDiscriminator(o, ctx.RequireTeacher(), attention: false));
    }
}
