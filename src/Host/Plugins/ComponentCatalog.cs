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

    /// <summary>Builds a catalog; a name registered twice for one contract becomes a load error of the second plugin.</summary>
    public static ComponentCatalog Create(IReadOnlyList<LoadedPlugin> plugins, IEnumerable<PluginLoadError> errors, IReadOnlyList<string> folders)
    {
        var errorList = errors.ToList();
        var seen = new Dictionary<(Type, string), LoadedPlugin>();
        var kept = new List<LoadedPlugin>();
        foreach (var plugin in plugins)
        {
            var clash = plugin.Components.Select(c => (c.Contract, c.Name)).FirstOrDefault(k => seen.ContainsKey(k));
            if (clash != default)
            {
                errorList.Add(new PluginLoadError(plugin.Path,
                    $"registers {Describe(clash.Contract)} '{clash.Name}', which {seen[clash].Name} ({seen[clash].Path}) already registered."));
                continue;
            }
            foreach (var c in plugin.Components) seen[(c.Contract, c.Name)] = plugin;
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
