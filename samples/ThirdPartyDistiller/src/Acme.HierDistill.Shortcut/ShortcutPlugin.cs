using HierDistill.Abstractions.Plugins;
using Microsoft.Extensions.DependencyInjection;

namespace Acme.HierDistill.Shortcut;

/// <summary>
/// The plugin's one entry point. The host finds this public class (it implements
/// <see cref="IHierDistillPlugin"/> and has a parameterless constructor), calls <see cref="Register"/>,
/// and from then on knows the trajectory distiller <c>shortcut</c> with its options type.
/// </summary>
public sealed class ShortcutPlugin : IHierDistillPlugin
{
    /// <summary>The name configs use: <c>distiller: { "type": "shortcut" }</c>.</summary>
    public const string Name = "shortcut";

    /// <inheritdoc/>
    public void Register(IServiceCollection services) =>
        services.AddTrajectoryDistiller<ShortcutOptions>(Name,
            "Shortcut-model self-consistency (Frans et al. 2024): a gap is two half-gap steps of the student; flow matching to the teacher's CFG velocity at gap 0.",
            (context, options) => new ShortcutDistiller(options));
}
