using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Plugins;

namespace HierDistill.Host.Plugins;

/// <summary>Every component the discovered plugins registered, by contract and name.</summary>
public sealed class ComponentCatalog
{
    private ComponentCatalog(IReadOnlyList<LoadedPlugin> plugins, IReadOnlyList<PluginLoadError> errors, IReadOnlyList<string> folders)
    {
        Plugins = plugins;
        Errors = errors;
        SearchedFolders = folders;
    }

    /// <summary>Plugins that loaded.</summary>
    public IReadOnlyList<LoadedPlugin> Plugins { get; }

    /// <summary>Plugins that failed to load (the others still work).</summary>
    public IReadOnlyList<PluginLoadError> Errors { get; }

    /// <summary>Folders that were searched.</summary>
    public IReadOnlyList<string> SearchedFolders { get; }

    /// <summary>The searched folders as text for messages.</summary>
    public string SearchedFoldersText => SearchedFolders.Count == 0 ? "(none)" : string.Join(", ", SearchedFolders);

    /// <summary>All components.</summary>
    public IEnumerable<ComponentDescriptor> Components => Plugins.SelectMany(p => p.Components);

    /// <summary>The contracts components can implement, with display names.</summary>
    public static readonly IReadOnlyList<(Type Contract, string Display)> Contracts =
    [
        (typeof(IDataSource), "data source"),
        (typeof(ITeacher), "teacher"),
        (typeof(ITrajectoryDistiller), "trajectory distiller"),
        (typeof(IDistributionMatcher), "distribution matcher"),
        (typeof(IDiscriminator), "discriminator"),
    ];

    /// <summary>
    /// Builds a catalog. Names are unique per contract: a plugin that registers one name twice, or a name an earlier plugin
    /// registered (the built-in plugins come first), is not loaded, with a load error.
    /// </summary>
    public static ComponentCatalog Create(IReadOnlyList<LoadedPlugin> plugins, IEnumerable<PluginLoadError> errors, IReadOnlyList<string> folders)
    {
        var errorList = errors.ToList();
        var seen = new Dictionary<(Type, string), LoadedPlugin>();
        var kept = new List<LoadedPlugin>();
        static (Type, string) Key(ComponentDescriptor c) => (c.Contract, c.Name);
        foreach (var plugin in plugins)
        {
            if (plugin.Components.GroupBy(Key).FirstOrDefault(g => g.Count() > 1) is { } twice)
            {
                errorList.Add(new PluginLoadError(plugin.Path,
                    $"registers {Describe(twice.First().Contract)} '{twice.First().Name}' {twice.Count()} times; names are unique per contract: " +
                    "register it once."));
                continue;
            }
            if (plugin.Components.FirstOrDefault(c => seen.ContainsKey(Key(c))) is { } clash)
            {
                var owner = seen[Key(clash)];
                if (owner.Name == plugin.Name)
                {
                    // One plugin in two plugin folders (a copy, or one folder named twice by two paths).
                    errorList.Add(new PluginLoadError(plugin.Path,
                        $"{plugin.Name} was already loaded from {owner.Path}; the first copy found is used. Remove one of the two copies " +
                        "(or one of the two plugin folders that hold them)."));
                    continue;
                }
                // Every clash, so that one rebuild mends them all.
                var clashes = plugin.Components.Where(c => seen.ContainsKey(Key(c)))
                    .Select(c => $"{Describe(c.Contract)} '{c.Name}', which {seen[Key(c)].Name} ({seen[Key(c)].Path}) already registered").ToList();
                errorList.Add(new PluginLoadError(plugin.Path,
                    $"registers {string.Join("; and ", clashes)}; names are unique " +
                    "per contract and the plugin found first keeps its name (the host's own plugins come first): give the " +
                    (clashes.Count == 1 ? "component another name." : $"{clashes.Count} components other names.")));
                continue;
            }
            foreach (var c in plugin.Components) seen[Key(c)] = plugin;
            kept.Add(plugin);
        }
        return new ComponentCatalog(kept, errorList, folders);
    }

    /// <summary>Components of one contract.</summary>
    public IEnumerable<ComponentDescriptor> Of(Type contract) => Components.Where(c => c.Contract == contract).OrderBy(c => c.Name, StringComparer.Ordinal);

    /// <summary>The component of <paramref name="contract"/> named <paramref name="name"/> (case-insensitive), or null.</summary>
    public ComponentDescriptor? Find(Type contract, string name) =>
        Of(contract).FirstOrDefault(c => string.Equals(c.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>The known names of a contract as text.</summary>
    public string KnownNames(Type contract)
    {
        var names = Of(contract).Select(c => c.Name).ToList();
        return names.Count == 0 ? "(none: no plugin registers one)" : string.Join(", ", names);
    }

    /// <summary>Display name of a contract ("trajectory distiller").</summary>
    public static string Describe(Type contract) =>
        Contracts.FirstOrDefault(c => c.Contract == contract).Display ?? contract.Name;
}
