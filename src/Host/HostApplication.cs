using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Comparison;
using HierDistill.Host.Configuration;
using HierDistill.Host.Logging;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Plugins;
using HierDistill.Host.Runtime;
using HierDistill.Host.Storage;
using HierDistill.Host.Training;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Serilog;
using Spectre.Console;
using TorchSharp;

namespace HierDistill.Host;

/// <summary>Exit codes of the CLI.</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;
    /// <summary>The run failed (runtime error, device, data, numerics).</summary>
    public const int Failed = 1;
    /// <summary>The config has errors.</summary>
    public const int InvalidConfig = 2;
    /// <summary>A plugin could not be loaded.</summary>
    public const int PluginErrors = 3;
    /// <summary>Stopped by Ctrl-C / SIGTERM.</summary>
    public const int Cancelled = 130;
}

/// <summary>What the CLI commands do, independent of argument parsing (tests call it directly).</summary>
public sealed class HostApplication(IAnsiConsole console, IPluginAssemblyLoader? loader = null)
{
    private readonly IPluginAssemblyLoader _loader = loader ?? new McMasterPluginLoader();

    /// <summary>Reads, discovers plugins for, and validates a config.</summary>
    /// <returns>The validated config and catalog, or the exit code to return.</returns>
    public (LoadedConfig? Config, ComponentCatalog? Catalog, int ExitCode) Load(string configPath, IReadOnlyList<string> overrides)
    {
        try
        {
            var root = ConfigLoader.Read(configPath, overrides);
            var plugins = ConfigLoader.ReadPlugins(root, configPath);
            var catalog = new PluginDiscovery(_loader).Discover(ConfigLoader.PluginFolders(plugins));
            ReportPluginErrors(catalog);
            var loaded = ConfigLoader.Validate(root, configPath, catalog);
            if (HostLogging.Check(root) is { } serilogProblem)
                throw new ConfigException(configPath, [new ConfigError("Serilog", serilogProblem)]);
            return (loaded, catalog, ExitCodes.Ok);
        }
        catch (ConfigException e)
        {
            console.MarkupLine($"[red]{Markup.Escape(configPath)}: {e.Errors.Count} configuration error(s):[/]");
            foreach (var error in e.Errors) console.MarkupLine($"  [red]-[/] {Markup.Escape(error.ToString())}");
            return (null, null, ExitCodes.InvalidConfig);
        }
    }

    /// <summary><c>hierdistill validate</c>.</summary>
    public int Validate(string configPath, IReadOnlyList<string> overrides)
    {
        if (File.Exists(configPath) && Comparison.ComparisonPlan.IsComparisonFile(configPath))
        {
            console.MarkupLine($"[red]{Markup.Escape(configPath)} is a comparison file[/] (it has \"variants\"), not a run config. " +
                               $"[bold]hierdistill compare {Markup.Escape(configPath)}[/] validates its base config with every variant before " +
                               "anything runs; [bold]hierdistill validate <its \"config\">[/] checks the base config alone.");
            return ExitCodes.InvalidConfig;
        }
        var (loaded, catalog, code) = Load(configPath, overrides);
        if (loaded is null || catalog is null) return code;
        console.MarkupLine($"[green]{Markup.Escape(configPath)} is valid.[/] Stages in order:");
        foreach (var (key, stage) in loaded.Stages)
        {
            var components = loaded.Components.Where(c => c.Key.StartsWith($"stages:{key}:", StringComparison.OrdinalIgnoreCase))
                .Select(c => $"{c.Key.Split(':')[^1]}={c.Value.Descriptor.Name}");
            console.MarkupLine($"  {Markup.Escape(key)} ({stage.Kind}) {Markup.Escape(string.Join(", ", components))}");
        }
        return ExitCodes.Ok;
    }

    /// <summary><c>hierdistill plugins</c>: discovered plugins, their components, option types and defaults.</summary>
    public int ListPlugins(IReadOnlyList<string> folders, bool includeDefault)
    {
        var all = folders.Select(Path.GetFullPath).ToList();
        if (includeDefault) all.Add(PluginDiscovery.DefaultFolder);
        var catalog = new PluginDiscovery(_loader).Discover(all.Distinct().ToList());
        console.MarkupLine($"Plugin folders searched: {Markup.Escape(catalog.SearchedFoldersText)}");
        foreach (var plugin in catalog.Plugins)
        {
            console.WriteLine();
            console.MarkupLine($"[bold]{Markup.Escape(plugin.Name)}[/] {Markup.Escape(plugin.Version)} " +
                               $"(Abstractions {Markup.Escape(plugin.AbstractionsVersion)}) [grey]{Markup.Escape(plugin.Path)}[/]");
            foreach (var c in plugin.Components.OrderBy(c => ComponentCatalog.Describe(c.Contract)).ThenBy(c => c.Name))
            {
                console.MarkupLine($"  [green]{Markup.Escape(c.Name)}[/] ({Markup.Escape(ComponentCatalog.Describe(c.Contract))}): {Markup.Escape(c.Description)}");
                var table = new Table().Border(TableBorder.Simple).AddColumns("option", "type", "default", "allowed", "description");
                foreach (var o in OptionsDocumentation.Describe(c.OptionsType))
                    table.AddRow(Markup.Escape(o.Name), Markup.Escape(o.Type), Markup.Escape(o.Default), Markup.Escape(o.Allowed), Markup.Escape(o.Summary));
                if (table.Rows.Count > 0) console.Write(new Padder(table).PadLeft(4).PadTop(0).PadBottom(0));
                console.MarkupLine($"    options type: [grey]{Markup.Escape(c.OptionsType.FullName ?? c.OptionsType.Name)}[/]");
            }
        }
        ReportPluginErrors(catalog);
        return catalog.Errors.Count == 0 ? ExitCodes.Ok : ExitCodes.PluginErrors;
    }

    /// <summary><c>hierdistill run</c>.</summary>
    public int Run(string configPath, IReadOnlyList<string> overrides, bool overwrite, CancellationToken cancellation)
    {
        var (loaded, catalog, code) = Load(configPath, overrides);
        if (loaded is null || catalog is null) return code;
        var runOptions = loaded.Config.Run;

        TorchInfo torchInfo;
        try
        {
            torchInfo = TorchRuntime.Initialize(runOptions.Device, TorchRuntime.ResolveLibTorchFolder(runOptions.Libtorch), runOptions.Threads);
        }
        catch (TorchRuntimeException e)
        {
            console.MarkupLine($"[red]{Markup.Escape(e.Message)}[/]");
            return ExitCodes.Failed;
        }

        RunFolder folder;
        try
        {
            folder = RunFolder.Prepare(runOptions.ResolvedOutputDir, overwrite || runOptions.Overwrite, RunInputs(loaded));
        }
        catch (RunFolderException e)
        {
            console.MarkupLine($"[red]{Markup.Escape(e.Message)}[/]");
            return ExitCodes.Failed;
        }

        bool live = HostLogging.Interactive;
        using var logger = HostLogging.Create(loaded.Configuration, Path.Combine(folder.Path, "log.txt"), live);
        AtomicFile.WriteAllText(Path.Combine(folder.Path, "config.resolved.json"),
            PipelineRunner.ResolvedConfig(loaded, overrides, catalog, torchInfo));
        logger.Information("HierDistill {Version}: {Config} -> {Folder}", PipelineRunner.HostVersion, loaded.SourcePath, folder.Path);
        logger.Information("Device {Device}; TorchSharp {TorchSharp}; libtorch {LibTorch}", torchInfo.DeviceDescription, torchInfo.TorchSharpVersion, torchInfo.LibTorch);
        foreach (var p in catalog.Plugins) logger.Debug("Plugin {Name} {Version} from {Path}", p.Name, p.Version, p.Path);
        foreach (var e in catalog.Errors) logger.Warning("Plugin not loaded: {Path}: {Reason}", e.Path, e.Reason);

        torch.manual_seed(runOptions.Seed);
        var services = new ServiceCollection()
            .AddLogging(b => b.ClearProviders().AddSerilog(logger, dispose: false))
            .AddSingleton(catalog)
            .AddSingleton<Serilog.ILogger>(logger);
        foreach (var c in catalog.Components) services.AddSingleton(c);
        using var provider = services.BuildServiceProvider();
        using var metrics = new MetricsWriter(folder.Path);

        int Execute(IProgressReporter progress)
        {
            var context = new RunContext
            {
                Config = loaded,
                Services = provider,
                Environment = new RunEnvironment(torchInfo.Device, runOptions.Seed, folder.Path),
                Logger = logger,
                Metrics = metrics,
                Progress = progress,
                Cancellation = cancellation,
            };
            try
            {
                new PipelineRunner().Run(context);
                folder.SetStatus("finished");
                logger.Information("Run finished: {Folder}", folder.Path);
                return ExitCodes.Ok;
            }
            catch (OperationCanceledException)
            {
                folder.SetStatus("cancelled", "stopped by a signal");
                logger.Warning("Run cancelled; the run folder keeps what was written so far: {Folder}", folder.Path);
                return ExitCodes.Cancelled;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                folder.SetStatus("failed", e.Message);
                logger.Error("Run failed: {Message}", e.Message);
                logger.Debug(e, "Where it failed (stack trace)");
                return ExitCodes.Failed;
            }
            finally
            {
                metrics.Flush();
            }
        }

        if (!live) return Execute(new LogProgressReporter(logger, TimeSpan.FromSeconds(10)));
        int result = ExitCodes.Failed;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx => result = Execute(new SpectreProgressReporter(ctx)));
        return result;
    }

    /// <summary><c>hierdistill compare</c>: see <see cref="ComparisonPlan"/> and <see cref="ComparisonRunner"/>.</summary>
    /// <returns>0 when every run finished; 1 when a run failed; 2 for an invalid command line, comparison file or variant; 130 when cancelled.</returns>
    public int Compare(string config, IReadOnlyList<string> vary, IReadOnlyList<string> set, int? seeds, string? output,
        bool overwrite, bool resume, CancellationToken cancellation)
    {
        ComparisonPlan plan;
        try
        {
            plan = ComparisonPlan.Create(config, vary, set, seeds, output);
        }
        catch (ComparisonException e)
        {
            console.MarkupLine($"[red]{Markup.Escape(config)}: {e.Errors.Count} error(s) in the comparison:[/]");
            foreach (var error in e.Errors) console.MarkupLine($"  [red]-[/] {Markup.Escape(error)}");
            return ExitCodes.InvalidConfig;
        }
        return new ComparisonRunner(this, console).Run(plan, overwrite, resume, cancellation);
    }

    /// <summary>Files and folders a run reads, by config key (protected from --overwrite).</summary>
    private static Dictionary<string, string> RunInputs(LoadedConfig loaded)
    {
        var inputs = new Dictionary<string, string> { ["the config file"] = loaded.SourcePath };
        foreach (var (key, stage) in loaded.Config.Stages)
        {
            switch (stage)
            {
                case TeacherStageConfig { LoadFrom: { Length: > 0 } t }:
                    inputs[$"stages:{key}:loadFrom"] = t;
                    break;
                case TrajectoryStageConfig { LoadFrom: { Length: > 0 } s }:
                    inputs[$"stages:{key}:loadFrom"] = s;
                    break;
                case EvaluationStageConfig e:
                    inputs[$"stages:{key}:classifier:cacheDir"] = e.Classifier.CacheDir;
                    break;
            }
        }
        for (int i = 0; i < loaded.Config.Plugins.Folders.Count; i++) inputs[$"plugins:folders:{i}"] = loaded.Config.Plugins.Folders[i];
        return inputs;
    }

    private void ReportPluginErrors(ComponentCatalog catalog)
    {
        foreach (var e in catalog.Errors)
            console.MarkupLine($"[yellow]plugin not loaded:[/] {Markup.Escape(e.Path)}: {Markup.Escape(e.Reason)}");
    }
}
