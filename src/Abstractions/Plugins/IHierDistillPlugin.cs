using Microsoft.Extensions.DependencyInjection;

namespace HierDistill.Abstractions.Plugins;

/// <summary>
/// The one public entry point of a plugin assembly. The host creates it with its parameterless
/// constructor and calls <see cref="Register"/>, in which the plugin adds its named components
/// with <see cref="ComponentRegistration"/>'s extension methods.
/// </summary>
/// <example>
/// <code>
/// public sealed class MyPlugin : IHierDistillPlugin
/// {
///     public void Register(IServiceCollection services) =>
///         services.AddTrajectoryDistiller&lt;MyOptions&gt;("my-distiller", "What it does.", (ctx, o) =&gt; new MyDistiller(o));
/// }
/// </code>
/// </example>
public interface IHierDistillPlugin
{
    /// <summary>Registers the plugin's components.</summary>
    void Register(IServiceCollection services);
}
