using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Plugins;
using HierDistill.Plugins.Awd;
using HierDistill.Plugins.Baselines;
using HierDistill.Plugins.Data;
using HierDistill.Plugins.Dmd;
using HierDistill.Plugins.MeanFlow;
using HierDistill.Plugins.Teachers;

namespace HierDistill.Tests.Support;

/// <summary>Catalogs built in process from plugin entry points (no assembly loading).</summary>
internal static class Catalogs
{
    /// <summary>The six built-in plugins, registered in process.</summary>
    public static ComponentCatalog BuiltIn(params IHierDistillPlugin[] extra)
    {
        IHierDistillPlugin[] plugins = [new DataPlugin(), new TeachersPlugin(), new MeanFlowPlugin(), new DmdPlugin(), new AwdPlugin(), new BaselinesPlugin(), .. extra];
        var loaded = plugins.Select(p => new LoadedPlugin(p.GetType().Assembly.GetName().Name!, "test", "", "1.0.0",
            PluginDiscovery.Register(p, p.GetType().FullName!))).ToList();
        return ComponentCatalog.Create(loaded, [], ["/test/plugins"]);
    }
}

/// <summary>A config file written for one test.</summary>
internal sealed class ConfigFile : IDisposable
{
    private readonly TempFolder _folder = new();

    public ConfigFile(string json)
    {
        Path = _folder.File("config.json");
        File.WriteAllText(Path, json);
    }

    public string Path { get; }

    public void Dispose() => _folder.Dispose();
}
