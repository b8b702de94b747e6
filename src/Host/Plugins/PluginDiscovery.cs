using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using HierDistill.Abstractions.Plugins;
using McMaster.NETCore.Plugins;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TorchSharp;

namespace HierDistill.Host.Plugins;

/// <summary>A plugin assembly that loaded, with the components it registered.</summary>
/// <param name="Name">Assembly name.</param>
/// <param name="Version">Assembly informational version.</param>
/// <param name="Path">Full path of the assembly (empty for in-process plugins).</param>
/// <param name="AbstractionsVersion">The HierDistill.Abstractions version it was built against.</param>
/// <param name="Components">What it registered.</param>
public sealed record LoadedPlugin(string Name, string Version, string Path, string AbstractionsVersion, IReadOnlyList<ComponentDescriptor> Components);

/// <summary>A plugin that could not be loaded: the file and the reason.</summary>
public sealed record PluginLoadError(string Path, string Reason)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Path}: {Reason}";
}

/// <summary>Loads one plugin assembly into its own load context and returns its entry points.</summary>
public interface IPluginAssemblyLoader
{
    /// <summary>Loads the assembly at <paramref name="assemblyPath"/>.</summary>
    /// <exception cref="PluginLoadException">When the file cannot be loaded, with the reason.</exception>
    Assembly Load(string assemblyPath);
}

/// <summary>A plugin failed to load.</summary>
public sealed class PluginLoadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Loads plugins with McMaster.NETCore.Plugins. The contract assemblies (Abstractions, TorchSharp,
/// Microsoft.Extensions abstractions, Serilog) are shared with the host, so a tensor or module made
/// in a plugin has the host's type.
/// </summary>
public sealed class McMasterPluginLoader : IPluginAssemblyLoader
{
    /// <summary>Types whose assemblies are shared between host and plugins.</summary>
    public static readonly Type[] SharedTypes =
    [
        typeof(IHierDistillPlugin), typeof(torch), typeof(IServiceCollection), typeof(ILogger), typeof(Serilog.ILogger),
    ];

    private readonly List<PluginLoader> _loaders = [];

    /// <inheritdoc/>
    public Assembly Load(string assemblyPath)
    {
        try
        {
            var loader = PluginLoader.CreateFromAssemblyFile(assemblyPath, SharedTypes, c => c.PreferSharedTypes = true);
            _loaders.Add(loader);
            return loader.LoadDefaultAssembly();
        }
        catch (BadImageFormatException e)
        {
            throw new PluginLoadException($"not a valid .NET assembly ({e.Message.TrimEnd('.')}).", e);
        }
        catch (FileLoadException e)
        {
            throw new PluginLoadException($"cannot be loaded ({e.Message.TrimEnd('.')}).", e);
        }
    }
}

/// <summary>
/// Finds plugins: every folder searched holds one sub-folder per plugin, <c>&lt;Name&gt;/&lt;Name&gt;.dll</c>
/// (the layout a plain build produces beside the host). Only these folders are searched.
/// </summary>
public sealed class PluginDiscovery(IPluginAssemblyLoader loader)
{
    /// <summary>The <c>plugins</c> folder beside the host.</summary>
    public static string DefaultFolder => Path.Combine(AppContext.BaseDirectory, "plugins");

    /// <summary>
    /// The folders to search, in order: the default folder first (when included), so that the built-in plugins keep their
    /// names, then <paramref name="folders"/> as full paths (relative ones from the current directory), each once.
    /// </summary>
    public static IReadOnlyList<string> Folders(IEnumerable<string> folders, bool includeDefault) =>
        (includeDefault ? [DefaultFolder] : Array.Empty<string>()).Concat(folders).Select(Normal).Distinct().ToList();

    /// <summary>A folder as a full path without a trailing separator (relative ones from the current directory).</summary>
    internal static string Normal(string folder) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));

    /// <summary>The Abstractions version of this host.</summary>
    public static Version HostAbstractionsVersion => typeof(IHierDistillPlugin).Assembly.GetName().Version!;

    /// <summary>Discovers and loads the plugins in <paramref name="folders"/>; failures are collected, not thrown.</summary>
    public ComponentCatalog Discover(IReadOnlyList<string> folders)
    {
        var plugins = new List<LoadedPlugin>();
        var errors = new List<PluginLoadError>();
        foreach (var folder in folders)
        {
            if (!Directory.Exists(folder))
            {
                if (folder != DefaultFolder)
                    errors.Add(new PluginLoadError(folder, "plugin folder does not exist (relative folders, in plugins.folders as on the " +
                                                           $"command line, are taken from the current directory, {Directory.GetCurrentDirectory()})."));
                continue;
            }
            int pluginsBefore = plugins.Count;
            // Sub-folders without their <Name>.dll: reported unless the folder turns out to be a plugin's own folder, whose
            // sub-folders (runtimes/ of a native package, a culture folder) are no plugins and would only add noise.
            var withoutDll = new List<PluginLoadError>();
            string[] dirs;
            try
            {
                dirs = Directory.GetDirectories(folder);
            }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException)
            {
                errors.Add(new PluginLoadError(folder, $"the plugin folder cannot be read ({e.Message.TrimEnd('.')})."));
                continue;
            }
            // A folder named other than its assembly (MyDisc/ holding MyLab.Disc.dll): say which name the folder needs.
            static string OtherDlls(string dir, string name)
            {
                string[] dlls;
                try
                {
                    dlls = Directory.GetFiles(dir, "*.dll").Select(System.IO.Path.GetFileNameWithoutExtension).OfType<string>()
                        .Where(d => !d.StartsWith("System.", StringComparison.Ordinal) && !d.StartsWith("Microsoft.", StringComparison.Ordinal)
                                    && d is not ("TorchSharp" or "HierDistill.Abstractions"))
                        .Order(StringComparer.Ordinal).ToArray();
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    return "";
                }
                string parent = System.IO.Path.GetDirectoryName(dir)!;
                return dlls.Length switch
                {
                    0 => "",
                    1 => $" It holds {dlls[0]}.dll: if that is the plugin, rename the folder to {System.IO.Path.Combine(parent, dlls[0])}.",
                    _ => $" It holds {string.Join(", ", dlls.Take(5).Select(d => d + ".dll"))}{(dlls.Length > 5 ? ", …" : "")}: rename the folder " +
                         "after the plugin's assembly.",
                };
            }
            foreach (var dir in dirs.Order(StringComparer.Ordinal))
            {
                string name = System.IO.Path.GetFileName(dir);
                string dll = System.IO.Path.Combine(dir, name + ".dll");
                if (!File.Exists(dll))
                {
                    withoutDll.Add(new PluginLoadError(dir, PluginsInside(dir) is { Count: > 0 } inside
                        // The folder above the plugin folder (e.g. the host's own folder, which holds plugins/ and runtimes/).
                        ? $"no {name}.dll here, but it holds plugins ({string.Join(", ", inside)}): it is itself a plugin folder; " +
                          (Normal(dir) == Normal(DefaultFolder)
                              ? "it is the host's own plugin folder, searched anyway (unless --no-default or plugins.includeDefaultFolder = false): " +
                                $"drop {Normal(folder)} from the plugin folders."
                              : $"name it, {Normal(dir)}, instead of {Normal(folder)}.")
                        : $"no {name}.dll in the plugin folder (a plugin folder holds <Name>/<Name>.dll)." + OtherDlls(dir, name)));
                    continue;
                }
                try
                {
                    plugins.Add(LoadOne(dll));
                }
                catch (PluginLoadException e)
                {
                    errors.Add(new PluginLoadError(dll, e.Message));
                }
            }
            // A folder that gave no plugin but holds one directly was meant one level up (or is a build output).
            if (plugins.Count == pluginsBefore && MisplacedPlugin(folder) is { } misplaced) errors.Add(new PluginLoadError(folder, misplaced));
            else errors.AddRange(withoutDll);
        }
        return ComponentCatalog.Create(plugins, errors, folders);
    }

    /// <summary>The sub-folders of <paramref name="dir"/> that hold a plugin (<c>&lt;Name&gt;/&lt;Name&gt;.dll</c>); none when it cannot be read.</summary>
    private static List<string> PluginsInside(string dir)
    {
        try
        {
            return Directory.GetDirectories(dir).Select(d => System.IO.Path.GetFileName(d)!)
                .Where(sub => File.Exists(System.IO.Path.Combine(dir, sub, sub + ".dll"))).Order(StringComparer.Ordinal).ToList();
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            return []; // an unreadable folder (lost+found on a mounted volume) is reported as holding no plugin
        }
    }

    /// <summary>
    /// A plugin's own folder (or its build output) given as a plugin folder: a plugin assembly (<c>X.dll</c> with its
    /// <c>X.deps.json</c>, a class library referencing HierDistill.Abstractions) lies directly in it, and no subfolder is named
    /// after it. Asked only of a folder that gave no plugin.
    /// </summary>
    /// <returns>The problem and the fix, or null.</returns>
    private static string? MisplacedPlugin(string folder)
    {
        // A plugin: a library (no entry point, which an application such as the host has) built against Abstractions.
        bool IsPlugin(string name)
        {
            string dll = System.IO.Path.Combine(folder, name + ".dll");
            if (!File.Exists(dll)) return false;
            try
            {
                using (var stream = File.OpenRead(dll))
                using (var pe = new PEReader(stream))
                    if (pe.PEHeaders.CorHeader is not { } cor || cor.EntryPointTokenOrRelativeVirtualAddress != 0) return false;
                CheckAbstractionsReference(dll);
                return true;
            }
            catch (BadImageFormatException)
            {
                return false;
            }
            catch (PluginLoadException e)
            {
                return e.Message.StartsWith("built against", StringComparison.Ordinal); // a plugin, of another contract version
            }
        }
        var names = Directory.GetFiles(folder, "*.deps.json")
            .Select(f => System.IO.Path.GetFileName(f)[..^".deps.json".Length])
            .Where(n => !Directory.Exists(System.IO.Path.Combine(folder, n)) && IsPlugin(n))
            .Order(StringComparer.Ordinal).ToList();
        if (names.Count == 0) return null;
        string full = System.IO.Path.GetFullPath(folder).TrimEnd(System.IO.Path.DirectorySeparatorChar);
        string own = System.IO.Path.GetFileName(full);
        string fix = names.Contains(own, StringComparer.Ordinal)
            ? $"this looks like the plugin's own folder: name the folder above it, {System.IO.Path.GetDirectoryName(full)}"
            : $"put the plugin in a folder of its name ({System.IO.Path.Combine(full, names[0])}{System.IO.Path.DirectorySeparatorChar}{names[0]}.dll would do), " +
              "or name the folder its build publishes to (docs/writing-a-plugin.md)";
        return $"{string.Join(", ", names.Select(n => n + ".dll"))} lies directly in this folder, but plugins are found one level down, as " +
               $"<folder>/<Name>/<Name>.dll; {fix}.";
    }

    private LoadedPlugin LoadOne(string dll)
    {
        string built = CheckAbstractionsReference(dll);
        var assembly = loader.Load(dll);
        Type[] types;
        try
        {
            types = assembly.GetExportedTypes();
        }
        catch (Exception e) when (e is ReflectionTypeLoadException or FileNotFoundException or FileLoadException or TypeLoadException)
        {
            var inner = e is ReflectionTypeLoadException r ? r.LoaderExceptions.FirstOrDefault(x => x is not null)?.Message : e.Message;
            throw new PluginLoadException($"its types cannot be loaded: {inner}", e);
        }
        var entryPoints = types
            .Where(t => typeof(IHierDistillPlugin).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
            .ToList();
        if (entryPoints.Count == 0)
            throw new PluginLoadException(
                $"no entry point: the assembly has no public non-abstract class implementing {nameof(IHierDistillPlugin)}.");
        var components = new List<ComponentDescriptor>();
        foreach (var entry in entryPoints)
        {
            if (entry.GetConstructor(Type.EmptyTypes) is null)
                throw new PluginLoadException($"entry point {entry.FullName} has no public parameterless constructor.");
            IHierDistillPlugin plugin;
            try
            {
                plugin = (IHierDistillPlugin)Activator.CreateInstance(entry)!;
            }
            catch (TargetInvocationException e) when (e.InnerException is { } inner)
            {
                throw new PluginLoadException($"the constructor of {entry.FullName} failed: {inner.GetType().Name}: {inner.Message}", inner);
            }
            components.AddRange(Register(plugin, entry.FullName!));
        }
        if (components.Count == 0)
            throw new PluginLoadException(
                $"no components: {string.Join(" and ", entryPoints.Select(e => e.FullName))}.Register added none. Register each component " +
                "with services.AddTeacher, AddTrajectoryDistiller, AddDistributionMatcher, AddDiscriminator or AddDataSource.");
        var name = assembly.GetName();
        string version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
                         ?? name.Version?.ToString() ?? "?";
        return new LoadedPlugin(name.Name!, version, dll, built, components);
    }

    /// <summary>Runs a plugin's registration and returns what it registered.</summary>
    /// <exception cref="PluginLoadException">When the registration throws.</exception>
    public static IReadOnlyList<ComponentDescriptor> Register(IHierDistillPlugin plugin, string entryName)
    {
        var services = new ServiceCollection();
        try
        {
            plugin.Register(services);
        }
        catch (Exception e)
        {
            throw new PluginLoadException($"{entryName}.Register failed: {e.Message}", e);
        }
        return services.Where(s => s.ServiceType == typeof(ComponentDescriptor) && s.ImplementationInstance is ComponentDescriptor)
            .Select(s => (ComponentDescriptor)s.ImplementationInstance!)
            .ToList();
    }

    /// <summary>
    /// Reads the plugin's reference to HierDistill.Abstractions from its metadata, without loading it,
    /// and refuses another major version.
    /// </summary>
    /// <returns>The referenced version.</returns>
    /// <exception cref="PluginLoadException">For a file that is not an assembly, no reference, or an incompatible major version.</exception>
    public static string CheckAbstractionsReference(string dll)
    {
        Version? referenced = null;
        try
        {
            using var stream = File.OpenRead(dll);
            using var pe = new PEReader(stream);
            if (!pe.HasMetadata) throw new PluginLoadException("not a .NET assembly (no metadata).");
            var md = pe.GetMetadataReader();
            foreach (var handle in md.AssemblyReferences)
            {
                var r = md.GetAssemblyReference(handle);
                if (md.GetString(r.Name) == "HierDistill.Abstractions") referenced = r.Version;
            }
        }
        catch (BadImageFormatException e)
        {
            throw new PluginLoadException($"not a valid .NET assembly ({e.Message.TrimEnd('.')}).", e);
        }
        catch (InvalidOperationException e)
        {
            throw new PluginLoadException($"not a valid .NET assembly ({e.Message.TrimEnd('.')}).", e);
        }
        if (referenced is null)
            throw new PluginLoadException("not a HierDistill plugin: it does not reference HierDistill.Abstractions.");
        var host = HostAbstractionsVersion;
        if (referenced.Major != host.Major)
            throw new PluginLoadException(
                $"built against HierDistill.Abstractions {referenced.ToString(3)}, but this host has {host.ToString(3)}; " +
                $"major versions must match. Rebuild the plugin against HierDistill.Abstractions {host.Major}.x.");
        if (referenced.Minor > host.Minor)
            throw new PluginLoadException(
                $"built against HierDistill.Abstractions {referenced.ToString(3)}, newer than this host's {host.ToString(3)}; " +
                "it may use contract members this host lacks. Update the host or rebuild the plugin against " +
                $"HierDistill.Abstractions {host.ToString(2)}.");
        return referenced.ToString(3);
    }
}
