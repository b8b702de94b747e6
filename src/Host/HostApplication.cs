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
/// <param name="console">Where results and progress go (standard output in the CLI).</param>
/// <param name="loader">Loads plugin assemblies; default: McMaster.NETCore.Plugins.</param>
/// <param name="errors">Where errors and warnings go (standard error in the CLI, so that `hierdistill ... > out.txt` still
/// shows them); default: <paramref name="console"/>.</param>
public sealed class HostApplication(IAnsiConsole console, IPluginAssemblyLoader? loader = null, IAnsiConsole? errors = null)
{
    private readonly IPluginAssemblyLoader _loader = loader ?? new McMasterPluginLoader();
    private readonly IAnsiConsole _errors = errors ?? console;
    private readonly HashSet<string> _warned = [];

    /// <summary>Prints a warning once per process (compare checks every variant's data source, usually the same one).</summary>
    private void Warn(string warning)
    {
        if (_warned.Add(warning)) _errors.WarningLine(warning);
    }

    /// <summary>Reads, discovers plugins for, and validates a config.</summary>
    /// <returns>The validated config and catalog, or the exit code to return.</returns>
    /// <param name="configPath">The config file.</param>
    /// <param name="overrides">--set overrides.</param>
    /// <param name="resuming">For <c>run --resume</c>: no <c>loadFrom</c> is checked (the teacher and loaded students are restored from the run folder).</param>
    /// <param name="samplingOnly">For <c>sample</c> and <c>probe</c>: a distiller, matcher or discriminator no loaded plugin registers is
    /// a warning (they are not built), and no <c>loadFrom</c> is checked (they load the weights they are given).</param>
    public (LoadedConfig? Config, ComponentCatalog? Catalog, int ExitCode) Load(string configPath, IReadOnlyList<string> overrides, bool resuming = false,
        bool samplingOnly = false)
    {
        if (File.Exists(configPath) && Comparison.ComparisonPlan.IsComparisonFile(configPath))
        {
            _errors.ErrorLine($"{configPath} is a comparison file (it has \"variants\"), not a run config; run it with " +
                              $"hierdistill compare {configPath}.");
            return (null, null, ExitCodes.InvalidConfig);
        }
        try
        {
            var root = ConfigLoader.Read(configPath, overrides);
            var plugins = ConfigLoader.ReadPlugins(root, configPath);
            var catalog = new PluginDiscovery(_loader).Discover(ConfigLoader.PluginFolders(plugins));
            ReportPluginErrors(catalog);
            // sample and probe build the data's shape, the teacher and students only: a training component whose plugin is not
            // installed here (weights sampled on another machine) does not stop them.
            var loaded = ConfigLoader.Validate(root, configPath, catalog, resuming, samplingOnly ? TrainingOnlyContracts : null, readsLoadFrom: !samplingOnly);
            foreach (var warning in loaded.Warnings) _errors.WarningLine(warning);
            if (HostLogging.Check(root) is { } serilogProblem)
                throw new ConfigException(configPath, [new ConfigError("Serilog", serilogProblem)]);
            return (loaded, catalog, ExitCodes.Ok);
        }
        catch (ConfigException e)
        {
            _errors.ErrorLine($"{configPath}: {e.Errors.Count} configuration error(s):");
            foreach (var error in e.Errors) _errors.ErrorLine($"  - {error}{InheritedKeyHint(configPath, overrides, error)}");
            return (null, null, ExitCodes.InvalidConfig);
        }
    }

    /// <summary>The contracts that only training builds (not <c>sample</c> or <c>probe</c>).</summary>
    private static readonly IReadOnlySet<Type> TrainingOnlyContracts = new HashSet<Type>
    {
        typeof(Abstractions.Contracts.ITrajectoryDistiller), typeof(Abstractions.Contracts.IDistributionMatcher), typeof(Abstractions.Contracts.IDiscriminator),
    };

    /// <summary>
    /// For an unknown key the user did not write where the error points: the base config it comes from, or the
    /// <c>--set …:type</c> that left it under another component, and how to remove it. Objects merge key by key along
    /// <c>extends</c> and under overrides, also when a component's <c>type</c> changes (so that <c>awd</c> and <c>gap</c>
    /// share their options), which leaves the old type's options under the new one.
    /// </summary>
    private static string InheritedKeyHint(string configPath, IReadOnlyList<string> overrides, ConfigError error)
    {
        if (!error.Message.StartsWith("unknown key", StringComparison.Ordinal) || error.Path.Length == 0) return "";
        if (ConfigDocument.SetBy(configPath, overrides, error.Path) is not { } file) return "";
        string key = error.Path.Split(':')[^1];
        bool ownFile = string.Equals(file, Path.GetFullPath(configPath), StringComparison.Ordinal);
        string where = ownFile ? "this config" : $"{file}, which this config extends";
        // An override (--set, --vary or a comparison variant) that changed the type of the component holding the key.
        int options = error.Path.LastIndexOf(":options:", StringComparison.OrdinalIgnoreCase);
        string component = options > 0 ? error.Path[..options] : "";
        var typeKey = (component + ":type").Split(':');
        if (options > 0 && ConfigDocument.OverrideKeys(overrides).Any(k => k.SequenceEqual(typeKey, StringComparer.OrdinalIgnoreCase)))
            return $" It is set in {(ownFile ? where : where + ",")} for the type that the override {component}:type=… replaced (options stay when the type " +
                   $"changes); remove it with the override {error.Path}=null beside that one (in a comparison file, in the same variant; " +
                   "--vary gives every variant the same --set), or override the whole component, whose options are then only those given: " +
                   $"{component}={{\"type\": …, \"options\": {{…}}}} (with --vary, one such object per value, separated by commas).";
        if (ownFile) return "";
        return $" It comes from {where} (objects merge key by key, also under a component whose type this config changes); " +
               $"remove it here with \"{key}\": null.";
    }

    /// <summary>
    /// Builds the components of <paramref name="loaded"/> once on the CPU and checks that they fit (<see cref="Pipeline.Preflight"/>),
    /// printing each problem; libtorch must be loaded.
    /// </summary>
    /// <returns>Whether everything fits.</returns>
    internal bool Preflight(string configPath, LoadedConfig loaded, ComponentCatalog catalog, bool resuming = false)
    {
        using var provider = RunServices(catalog, Serilog.Core.Logger.None);
        var problems = Pipeline.Preflight.Check(loaded, provider, resuming, Warn);
        if (problems.Count == 0) return true;
        _errors.ErrorLine($"{configPath}: {problems.Count} configuration error(s) found by building the networks (nothing was run or written):");
        foreach (var p in problems) _errors.ErrorLine($"  - {p}");
        return false;
    }

    /// <summary><c>hierdistill validate</c>.</summary>
    public int Validate(string configPath, IReadOnlyList<string> overrides)
    {
        if (File.Exists(configPath) && Comparison.ComparisonPlan.IsComparisonFile(configPath))
        {
            _errors.ErrorLine($"{configPath} is a comparison file (it has \"variants\"), not a run config. " +
                              $"hierdistill compare {configPath} validates its base config with every variant before " +
                              "anything runs; hierdistill validate <its \"config\"> checks the base config alone.");
            return ExitCodes.InvalidConfig;
        }
        var (loaded, catalog, code) = Load(configPath, overrides);
        if (loaded is null || catalog is null) return code;
        try
        {
            // On the CPU whatever run.device says: the checks build the networks once and need no GPU.
            TorchRuntime.Initialize("cpu", TorchRuntime.ResolveLibTorchFolder(loaded.Config.Run.Libtorch), loaded.Config.Run.Threads);
            if (!Preflight(configPath, loaded, catalog)) return ExitCodes.InvalidConfig;
            WarnIfDeviceMissing(loaded);
        }
        catch (TorchRuntimeException e)
        {
            _errors.WarningLine($"the checks that build the networks (discriminator blocks, students, loadFrom names and shapes) were " +
                                $"skipped: libtorch could not be loaded ({e.Message})");
        }
        console.MarkupLine($"[green]{Markup.Escape(configPath)} is valid.[/] Stages in order:");
        foreach (var (key, stage) in loaded.Stages)
        {
            var components = loaded.Components.Where(c => c.Key.StartsWith($"stages:{key}:", StringComparison.OrdinalIgnoreCase))
                .Select(c => $"{c.Key.Split(':')[^1]}={c.Value.Descriptor.Name}");
            console.MarkupLine($"  {Markup.Escape(key)} ({stage.Kind}) {Markup.Escape(string.Join(", ", components))}");
        }
        return ExitCodes.Ok;
    }

    /// <summary>
    /// <c>validate</c> checks on the CPU; a <c>run.device</c> of <c>cuda</c> this machine cannot give is a warning (the config
    /// is valid, but <c>run</c> here would stop at once).
    /// </summary>
    private void WarnIfDeviceMissing(LoadedConfig loaded)
    {
        var run = loaded.Config.Run;
        if (!run.Device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase)) return;
        try
        {
            TorchRuntime.Initialize(run.Device, TorchRuntime.ResolveLibTorchFolder(run.Libtorch), run.Threads);
        }
        catch (TorchRuntimeException e)
        {
            _errors.WarningLine($"{e.Message.TrimEnd('.')}. The config is valid, but `run` on this machine would stop at once " +
                                "(--set run.device=cpu runs it here).");
        }
    }

    /// <summary>
    /// What a failed run reports: the exception's message, prefixed with <c>stages:KEY:</c> of the stage that was running when the
    /// message does not name a config path itself; and, when a plugin's code is on the exception's stack (it threw, or it called
    /// the library that did), the plugin, its innermost method there and the exception's type, so that a third-party bug is
    /// told from a host one.
    /// </summary>
    internal static string FailureMessage(Exception e, string? stage, ComponentCatalog catalog)
    {
        string text = HierDistill.Host.Pipeline.NativeErrors.WithoutBacktrace(e.Message);
        string message = stage is null ? text : ConfigError.InStage(stage, text);
        // The innermost frame in a plugin's code: the method that threw, or the one that called the library that did (a
        // TorchSharp shape error in a plugin's Forward).
        var plugins = catalog.Plugins.ToDictionary(p => p.Name, StringComparer.Ordinal);
        foreach (var frame in new System.Diagnostics.StackTrace(e, fNeedFileInfo: false).GetFrames())
        {
            if (frame.GetMethod() is not { DeclaringType: { } type } method) continue;
            if (type.Assembly.GetName().Name is not { } assembly || !plugins.TryGetValue(assembly, out var plugin)) continue;
            string where = type.FullName?.Split('+')[0] ?? type.Name; // a lambda's or iterator's compiler-made class: its outer class
            return $"{message} ({e.GetType().Name} {(ReferenceEquals(method, e.TargetSite) ? "thrown by" : "raised under")} {where}.{method.Name} " +
                   $"in the plugin {plugin.Name} {plugin.Version})";
        }
        return message;
    }

    /// <summary><c>hierdistill plugins</c>: discovered plugins, their components, option types and defaults.</summary>
    public int ListPlugins(IReadOnlyList<string> folders, bool includeDefault)
    {
        var catalog = new PluginDiscovery(_loader).Discover(PluginDiscovery.Folders(folders, includeDefault));
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

    /// <summary>Wraps the progress reporter of a run (tests stop a run at a chosen step through it); null: none.</summary>
    public Func<IProgressReporter, CancellationTokenSource, IProgressReporter>? ProgressDecorator { get; init; }

    /// <summary><c>hierdistill run</c>, or with <paramref name="resume"/> <c>hierdistill run --resume</c>.</summary>
    /// <param name="configPath">The config file.</param>
    /// <param name="overrides">--set overrides.</param>
    /// <param name="overwrite">Replace a run the output folder holds.</param>
    /// <param name="cancellation">Ctrl-C/SIGTERM: the run writes a checkpoint at the next step boundary and exits 130.</param>
    /// <param name="resume">A run folder to continue from its checkpoint (the config must resolve to the one the folder
    /// was started with; run.outputDir is set to the folder).</param>
    /// <returns>An <see cref="ExitCodes"/> value.</returns>
    /// <param name="preflight">Build the components once to check them before the run folder is touched (false: the caller did, as
    /// <c>compare</c> does for every variant before anything runs).</param>
    public int Run(string configPath, IReadOnlyList<string> overrides, bool overwrite, CancellationToken cancellation, string? resume = null,
        bool preflight = true)
    {
        if (resume is not null)
        {
            if (overwrite)
            {
                _errors.ErrorLine("--resume continues a run and --overwrite starts it again; pass one of them.");
                return ExitCodes.InvalidConfig;
            }
            string folderPath = Path.GetFullPath(resume);
            if (!File.Exists(Path.Combine(folderPath, RunFolder.StatusFile)))
            {
                _errors.ErrorLine($"--resume {folderPath}: not a HierDistill run folder ({RunFolder.StatusFile} missing); " +
                                  "pass the run.outputDir of the run to continue.");
                return ExitCodes.Failed;
            }
            overrides = [.. overrides, $"run:outputDir={folderPath}"];
        }
        var (loaded, catalog, code) = Load(configPath, overrides, resuming: resume is not null);
        if (loaded is null || catalog is null) return code;
        var runOptions = loaded.Config.Run;

        TorchInfo torchInfo;
        try
        {
            torchInfo = TorchRuntime.Initialize(runOptions.Device, TorchRuntime.ResolveLibTorchFolder(runOptions.Libtorch), runOptions.Threads);
        }
        catch (TorchRuntimeException e)
        {
            _errors.ErrorLine(e.Message);
            return ExitCodes.Failed;
        }

        try
        {
            // Refusals of the folder first (they are cheap), then the components built once and checked, both before the run
            // folder is created or overwritten.
            if (resume is null) RunFolder.CheckPreparable(runOptions.ResolvedOutputDir, overwrite || runOptions.Overwrite, RunInputs(loaded));
        }
        catch (RunFolderException e)
        {
            _errors.ErrorLine(e.Message);
            return ExitCodes.Failed;
        }
        if (preflight && !Preflight(configPath, loaded, catalog, resuming: resume is not null)) return ExitCodes.InvalidConfig;
        if (cancellation.IsCancellationRequested)
        {
            _errors.WarningLine("Stopped before the run started; nothing was written.");
            return ExitCodes.Cancelled;
        }
        string resolved = PipelineRunner.ResolvedConfig(loaded, overrides, catalog, torchInfo);
        RunFolder? folder = null;
        (CheckpointManifest Manifest, Dictionary<string, torch.Tensor> Tensors)? checkpoint = null;
        List<string> changedOnResume = [];
        IReadOnlyList<string> deletedPartial = [];
        try
        {
            if (resume is null)
            {
                folder = RunFolder.Prepare(runOptions.ResolvedOutputDir, overwrite || runOptions.Overwrite, RunInputs(loaded));
            }
            else
            {
                folder = RunFolder.Open(runOptions.ResolvedOutputDir);
                var all = ConfigDifferences.Between(File.ReadAllText(Path.Combine(folder.Path, RunFolder.ResolvedConfigFile)), resolved);
                var differences = all.Where(d => !ConfigDifferences.MayChangeOnResume(d.Key)).ToList();
                if (differences.Count > 0)
                {
                    _errors.ErrorLine($"--resume {folder.Path}: the config differs from the one the run was started with " +
                                      $"({differences.Count} key(s)); resume with the same config and --set values:");
                    foreach (var d in differences) _errors.ErrorLine($"  - {d.Text}");
                    _errors.ErrorLine($"(The run's own settings, every --set included, are in {Path.Combine(folder.Path, RunFolder.ResolvedConfigFile)}: " +
                                      $"hierdistill run {Path.Combine(folder.Path, RunFolder.ResolvedConfigFile)} --resume {folder.Path})");
                    folder.Dispose();
                    return ExitCodes.InvalidConfig;
                }
                changedOnResume = all.Select(d => d.Text).ToList();
                // Other code (a rebuilt plugin, another HierDistill or libtorch) is a change too: recorded and reported as one.
                changedOnResume.AddRange(ConfigDifferences.VersionsBetween(File.ReadAllText(Path.Combine(folder.Path, RunFolder.ResolvedConfigFile)), resolved,
                    loaded.Components.Values.Select(c => c.Descriptor.Assembly).OfType<string>().ToHashSet(StringComparer.Ordinal)));
                checkpoint = CheckpointStore.Read(Path.Combine(folder.Path, CheckpointStore.FileName));
                var m = checkpoint.Value.Manifest;
                if (!ConfigDifferences.IsDigestOf(m.ConfigDigest, File.ReadAllText(Path.Combine(folder.Path, RunFolder.ResolvedConfigFile))))
                {
                    foreach (var t in checkpoint.Value.Tensors.Values) t.Dispose();
                    throw new CheckpointException(
                        $"{Path.Combine(folder.Path, CheckpointStore.FileName)} was written with another config than this folder's {RunFolder.ResolvedConfigFile} " +
                        "(it was copied from another run?); put back the run's own checkpoint, or start again with --overwrite.");
                }
                var completed = m.Completed.Select(c => c.Key).ToHashSet();
                MetricsWriter.Trim(folder.Path, (stage, step) => completed.Contains(stage) || (stage == m.Stage && step < m.NextStep));
                deletedPartial = folder.DeletePartialFiles();
                folder.SetStatus("running", $"resumed from {CheckpointStore.FileName} ({m.Describe()})");
            }
        }
        catch (Exception e) when (e is RunFolderException or CheckpointException or IOException)
        {
            folder?.Dispose();
            _errors.ErrorLine(e.Message);
            return ExitCodes.Failed;
        }
        catch
        {
            folder?.Dispose();
            throw;
        }
        // The folder's lock (RunFolder.LockFile) is held until the run returns.
        using var heldFolder = folder;

        bool live = HostLogging.Interactive;
        using var logger = HostLogging.Create(loaded.Configuration, Path.Combine(folder.Path, "log.txt"), live);
        // A resume keeps the run's config.resolved.json unless a learning rate, gradClip or maxSkippedSteps was changed.
        if (resume is null)
            AtomicFile.WriteAllText(Path.Combine(folder.Path, RunFolder.ResolvedConfigFile), resolved);
        else if (changedOnResume.Count > 0)
            AtomicFile.WriteAllText(Path.Combine(folder.Path, RunFolder.ResolvedConfigFile),
                PipelineRunner.KeepProvenance(File.ReadAllText(Path.Combine(folder.Path, RunFolder.ResolvedConfigFile)), resolved,
                    loaded.SourcePath, overrides.Take(overrides.Count - 1).ToList(), changedOnResume)); // less the run:outputDir --resume added
        foreach (var change in changedOnResume)
            logger.Warning("Resumed with a changed setting (the result will differ from the uninterrupted run's): {Change}", change);
        logger.Information("HierDistill {Version}: {Config} -> {Folder}", PipelineRunner.HostVersion, loaded.SourcePath, folder.Path);
        if (folder.DeletedUnfinishedRun is { } unfinished)
            logger.Information("Deleted the unfinished run (status {Status}) that this folder held: it had replaced the run kept in {Replaced}",
                unfinished, folder.Replaced);
        if (folder.Replaced is { } replaced)
            logger.Information("The run this one replaces is kept in {Replaced} until this one finishes", replaced);
        if (checkpoint is { } resumed)
            logger.Information("Resuming from {Checkpoint} ({Where})", Path.Combine(folder.Path, CheckpointStore.FileName), resumed.Manifest.Describe());
        if (deletedPartial.Count > 0)
            logger.Information("Deleted {Files}: partial files the stopped run left mid-write (the files they were to replace are intact)",
                string.Join(", ", deletedPartial));
        logger.Information("Device {Device}; TorchSharp {TorchSharp}; libtorch {LibTorch}", torchInfo.DeviceDescription, torchInfo.TorchSharpVersion, torchInfo.LibTorch);
        foreach (var p in catalog.Plugins) logger.Debug("Plugin {Name} {Version} from {Path}", p.Name, p.Version, p.Path);
        foreach (var e in catalog.Errors) logger.Warning("Plugin not loaded: {Path}: {Reason}", e.Path, e.Reason);

        TorchRuntime.ManualSeed(runOptions.Seed);
        using var provider = RunServices(catalog, logger);
        MetricsWriter metricsWriter;
        try
        {
            metricsWriter = new MetricsWriter(folder.Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A resume rewrites tensorboard/ here; metrics.jsonl (already trimmed to the checkpoint) and the checkpoint are
            // untouched, so the same --resume works once the cause is removed.
            string message = $"{Path.Combine(folder.Path, MetricsWriter.TensorBoardFolder)} or {MetricsWriter.FileName} could not be written: {e.Message}";
            folder.SetStatus("failed", message);
            logger.Error("Run failed: {Message}", message);
            return ExitCodes.Failed;
        }
        using var metrics = metricsWriter;

        var checkpoints = new CheckpointStore(folder.Path, runOptions.CheckpointEvery, ConfigDifferences.Digest(resolved), checkpoint, runOptions.Seed);
        DeviceMemoryMonitor? gpuMemory = null;
        if (torchInfo.Device.type == DeviceType.CUDA)
        {
            gpuMemory = DeviceMemoryMonitor.TryStart(torchInfo.Device.index < 0 ? 0 : (int)torchInfo.Device.index, out var why);
            if (gpuMemory is null) logger.Warning("Peak device memory is not reported: {Reason}", why);
        }
        using var deviceMemory = gpuMemory;
        using var stopper = CancellationTokenSource.CreateLinkedTokenSource(cancellation);

        int Execute(IProgressReporter progress)
        {
            if (ProgressDecorator is not null) progress = ProgressDecorator(progress, stopper);
            var context = new RunContext
            {
                Checkpoints = checkpoints,
                Config = loaded,
                Services = provider,
                Environment = new RunEnvironment(torchInfo.Device, runOptions.Seed, folder.Path),
                Logger = logger,
                Metrics = metrics,
                Progress = progress,
                Cancellation = stopper.Token,
                DeviceMemory = deviceMemory,
                ResumedFrom = checkpoint?.Manifest.Describe(),
            };
            var runner = new PipelineRunner();
            try
            {
                runner.Run(context);
                folder.SetStatus("finished");
                logger.Information("Run finished: {Folder}", folder.Path);
                DropReplaced(folder, logger);
                return ExitCodes.Ok;
            }
            catch (OperationCanceledException)
            {
                string where = checkpoints.Last is null ? "no checkpoint was written" : $"checkpoint: {checkpoints.Last}";
                folder.SetStatus("cancelled", $"stopped by a signal; {where}");
                // The run's own resolved config carries every --set it was started with, so this command always fits.
                logger.Warning("Run cancelled ({Where}); continue it with: hierdistill run {Config} --resume {Folder}", where,
                    Path.Combine(folder.Path, RunFolder.ResolvedConfigFile), folder.Path);
                KeptReplaced(folder, logger);
                return ExitCodes.Cancelled;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                string message = FailureMessage(e, runner.CurrentStage, catalog);
                folder.SetStatus("failed", message);
                logger.Error("Run failed: {Message} (stack trace in {Log})", message, Path.Combine(folder.Path, "log.txt"));
                logger.Debug(e, "Where it failed (stack trace)");
                KeptReplaced(folder, logger);
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

    /// <summary>Deletes the run a finished run replaced (--overwrite); a failure to is a warning: the run itself is complete.</summary>
    private static void DropReplaced(RunFolder folder, Serilog.ILogger logger)
    {
        try
        {
            if (folder.DropReplaced() is { } dropped) logger.Information("Deleted the run this one replaced ({Replaced})", dropped);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.Warning("The run this one replaced was not deleted ({Reason}): {Replaced}", e.Message, folder.Replaced);
        }
    }

    /// <summary>After a failed or stopped run: says where the run it replaced is kept and how to put it back.</summary>
    private static void KeptReplaced(RunFolder folder, Serilog.ILogger logger)
    {
        if (folder.Replaced is { } replaced)
            logger.Warning("The run this one replaced is kept in {Replaced} (deleted when a run in this folder finishes); to put it back, " +
                           "delete the other entries of {Folder} and move the contents of {Replaced} up into it", replaced, folder.Path, replaced);
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
            _errors.ErrorLine($"{config}: {e.Errors.Count} error(s) in the comparison:");
            foreach (var error in e.Errors) _errors.ErrorLine($"  - {error}");
            return ExitCodes.InvalidConfig;
        }
        return new ComparisonRunner(this, console, _errors).Run(plan, overwrite, resume, cancellation);
    }

    /// <summary>
    /// The config keys in which the run in <paramref name="folder"/> differs from what <paramref name="configPath"/> with
    /// <paramref name="overrides"/> resolves to now, as <c>key: 'old' → 'new'</c> (empty: the same run settings; where the run
    /// is and how often it logs or checkpoints do not count); null when that cannot be told (the config does not load, the
    /// folder has no resolved config, or libtorch cannot be loaded).
    /// </summary>
    public IReadOnlyList<string>? DifferencesFromRun(string configPath, IReadOnlyList<string> overrides, string folder)
    {
        string file = Path.Combine(folder, RunFolder.ResolvedConfigFile);
        if (!File.Exists(file)) return null;
        var (loaded, catalog, _) = Load(configPath, overrides);
        if (loaded is null || catalog is null) return null;
        try
        {
            var run = loaded.Config.Run;
            var torchInfo = TorchRuntime.Initialize(run.Device, TorchRuntime.ResolveLibTorchFolder(run.Libtorch), run.Threads);
            string resolved = PipelineRunner.ResolvedConfig(loaded, overrides, catalog, torchInfo);
            return ConfigDifferences.Between(File.ReadAllText(file), resolved).Select(d => d.Text).ToList();
        }
        catch (Exception e) when (e is TorchRuntimeException or IOException or System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// Whether two paths name the same existing file: both resolved by the C library's <c>realpath</c> (every symbolic link
    /// and <c>..</c> on the way, folders included); where that is unavailable, full paths with the last link resolved.
    /// </summary>
    private static bool SameFile(string a, string b)
    {
        if (!File.Exists(a) || !File.Exists(b)) return false;
        static string Resolve(string p)
        {
            try
            {
                if (RealPath(Path.GetFullPath(p), IntPtr.Zero) is var resolved && resolved != IntPtr.Zero)
                {
                    try { return System.Runtime.InteropServices.Marshal.PtrToStringUTF8(resolved)!; }
                    finally { Free(resolved); }
                }
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
            }
            var info = new FileInfo(Path.GetFullPath(p));
            return info.ResolveLinkTarget(returnFinalTarget: true) is { } target ? target.FullName : info.FullName;
        }
        return string.Equals(Resolve(a), Resolve(b), StringComparison.Ordinal);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "realpath", CharSet = System.Runtime.InteropServices.CharSet.Ansi)]
    private static extern IntPtr RealPath(string path, IntPtr resolved);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "free")]
    private static extern void Free(IntPtr pointer);

    /// <summary>
    /// <c>hierdistill probe</c>: creates the config's teacher on its device, loads <paramref name="weights"/>, and evaluates its
    /// velocity <c>v(z, t | c)</c> in float32 on fixed inputs (seed 1234: z ~ N(0, I) of the data's sample shape, t uniform in
    /// [0, 1], labels cycling through the classes and the null label), and writes <c>z</c>, <c>t</c>, <c>labels</c> and
    /// <c>velocity</c> as safetensors: a check that another implementation of the network (e.g. a PyTorch port loading the
    /// same safetensors weights, bench/gpu/reference.py) computes the same function.
    /// </summary>
    /// <returns>0, 1 when the weights or the device cannot be used, 2 for an invalid config.</returns>
    public int Probe(string configPath, IReadOnlyList<string> overrides, string weights, string output, int batch, CancellationToken cancellation = default)
    {
        if (CheckWeightsAndOutput(weights, output, "the probe") is { } refused) return refused;
        try
        {
            if (!output.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
                throw new Evaluation.SampleRequestException($"--out {output}: probe writes safetensors; name a .safetensors file.");
            Evaluation.WeightsSampling.RequireOwnTensors(output, ["z", "t", "labels", "velocity"], "a probe's", "probe");
        }
        catch (Evaluation.SampleRequestException e)
        {
            _errors.ErrorLine(e.Message);
            return ExitCodes.InvalidConfig;
        }
        var (loaded, catalog, code) = Load(configPath, overrides, samplingOnly: true);
        if (loaded is null || catalog is null) return code;
        var teacherStage = loaded.Stages.FirstOrDefault(s => s.Stage is TeacherStageConfig);
        if (teacherStage.Key is null)
        {
            _errors.ErrorLine($"{configPath} has no teacher stage to probe.");
            return ExitCodes.InvalidConfig;
        }
        try
        {
            var runOptions = loaded.Config.Run;
            var torchInfo = TorchRuntime.Initialize(runOptions.Device, TorchRuntime.ResolveLibTorchFolder(runOptions.Libtorch), runOptions.Threads);
            using var provider = RunServices(catalog, Serilog.Core.Logger.None);
            var components = new ComponentFactory(loaded, provider, new RunEnvironment(torchInfo.Device, runOptions.Seed, Path.GetTempPath()));
            var data = components.Create<HierDistill.Abstractions.Data.IDataSource>("data");
            string path = $"stages:{teacherStage.Key}:teacher";
            var teacher = components.Create<HierDistill.Abstractions.Contracts.ITeacher>(path, data);
            string name = components.NameOf(path);
            var network = teacher.Network ?? throw new InvalidOperationException($"{path}: '{name}' is analytic; only a network teacher can be probed.");
            network.to(torchInfo.Device);
            WeightsFile.Load(network, weights);
            network.eval();
            using var scope = torch.NewDisposeScope();
            var generator = new torch.Generator(1234, torch.CPU);
            var shape = new long[] { batch }.Concat(data.Spec.SampleShape).ToArray();
            var z = torch.randn(shape, generator: generator);
            var t = torch.rand([batch], generator: generator);
            var labels = torch.arange(batch, dtype: torch.ScalarType.Int64) % (data.Spec.NumClasses + 1);
            torch.Tensor v;
            using (torch.no_grad())
                v = network.Velocity(z.to(torchInfo.Device), t.to(torchInfo.Device), labels.to(torchInfo.Device)).to_type(torch.ScalarType.Float32).cpu();
            if (cancellation.IsCancellationRequested)
            {
                _errors.WarningLine("Stopped; nothing was written.");
                return ExitCodes.Cancelled;
            }
            var tensors = new Dictionary<string, torch.Tensor> { ["z"] = z, ["t"] = t, ["labels"] = labels, ["velocity"] = v.contiguous() };
            AtomicFile.Write(output, s => TorchSharp.PyBridge.Safetensors.SaveStateDict(s, tensors, leaveOpen: true));
            console.MarkupLine("[green]probe written:[/] " + Markup.Escape(
                $"{Path.GetFullPath(output)} ({name}, {batch} inputs of [{string.Join(", ", data.Spec.SampleShape)}], device {torchInfo.DeviceDescription})"));
            return ExitCodes.Ok;
        }
        catch (Exception e) when (e is TorchRuntimeException or WeightsMismatchException or FileNotFoundException or InvalidOperationException or IOException)
        {
            _errors.ErrorLine(e.Message);
            return ExitCodes.Failed;
        }
    }

    /// <summary>
    /// The services components get through <c>ComponentContext.Services</c>: logging into <paramref name="logger"/> (the run's log;
    /// <see cref="Serilog.Core.Logger.None"/> where nothing is logged: the preflight, <c>probe</c>, <c>sample</c>), the catalog and
    /// every component descriptor.
    /// </summary>
    private static ServiceProvider RunServices(ComponentCatalog catalog, Serilog.ILogger logger)
    {
        var services = new ServiceCollection()
            .AddLogging(b => b.ClearProviders().AddSerilog(logger, dispose: false))
            .AddSingleton(catalog)
            .AddSingleton(logger);
        foreach (var c in catalog.Components) services.AddSingleton(c);
        return services.BuildServiceProvider();
    }

    /// <summary>The checks of <c>--weights</c> and <c>--out</c> that <c>probe</c> and <c>sample</c> share.</summary>
    /// <returns>The exit code when one fails (2: a command-line error, like a loadFrom that does not exist in a config), else null.</returns>
    private int? CheckWeightsAndOutput(string weights, string output, string what)
    {
        if (Directory.Exists(weights))
        {
            var files = Directory.EnumerateFiles(weights, "*.safetensors").Select(Path.GetFileName).Where(f => f != CheckpointStore.FileName)
                .Order(StringComparer.Ordinal).ToList();
            _errors.ErrorLine($"--weights {weights} is a folder; name a weights file in it" +
                              (files.Count > 0 ? $": {Messages.FirstOf(files, 6)}." : " (it holds no .safetensors file)."));
            return ExitCodes.InvalidConfig;
        }
        if (!File.Exists(weights))
        {
            _errors.ErrorLine($"--weights: weights file not found: {Path.GetFullPath(weights)}");
            return ExitCodes.InvalidConfig;
        }
        if (SameFile(weights, output))
        {
            _errors.ErrorLine($"--out {output} is the --weights file; writing {what} there would replace the weights. Name another file with --out.");
            return ExitCodes.InvalidConfig;
        }
        return null;
    }

    /// <summary>
    /// <c>hierdistill sample</c>: loads a run's weights (a student's or the teacher's, told from the file) into the config's
    /// network on its device and writes samples as a picture or as safetensors (<see cref="Evaluation.WeightsSampling"/>).
    /// </summary>
    /// <returns>0; 1 when the weights fit no network of the config or the device cannot be used; 2 for an invalid config or request.</returns>
    public int Sample(string configPath, IReadOnlyList<string> overrides, Evaluation.SampleRequest request, CancellationToken cancellation = default)
    {
        if (CheckWeightsAndOutput(request.Weights, request.Out, "the samples") is { } refused) return refused;
        try
        {
            Evaluation.WeightsSampling.CheckOutput(request.Out);
        }
        catch (Evaluation.SampleRequestException e)
        {
            _errors.ErrorLine(e.Message);
            return ExitCodes.InvalidConfig;
        }
        catch (IOException e)
        {
            _errors.ErrorLine(e.Message);
            return ExitCodes.Failed;
        }
        var (loaded, catalog, code) = Load(configPath, overrides, samplingOnly: true);
        if (loaded is null || catalog is null) return code;
        try
        {
            var runOptions = loaded.Config.Run;
            var torchInfo = TorchRuntime.Initialize(runOptions.Device, TorchRuntime.ResolveLibTorchFolder(runOptions.Libtorch), runOptions.Threads);
            using var provider = RunServices(catalog, Serilog.Core.Logger.None);
            var outcome = Evaluation.WeightsSampling.Run(loaded, provider, torchInfo.Device, request, cancellation);
            if (request.Nfe is { } asked && asked != outcome.Nfe)
                _errors.WarningLine($"--nfe {asked}: the teacher's solver ({outcome.Sampler}) takes 2 evaluations per step; sampled with NFE {outcome.Nfe}.");
            string guidance = outcome.Guidance is { } w ? $", guidance {w.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "";
            console.MarkupLine("[green]samples written:[/] " + Markup.Escape(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{Path.GetFullPath(request.Out)} ({request.Count} from the {outcome.Model}, {outcome.Sampler}, NFE {outcome.Nfe}{guidance}; " +
                $"{1000 * outcome.SecondsPerSample:0.000} ms/sample on {torchInfo.DeviceDescription}, after a warm-up pass)")));
            return ExitCodes.Ok;
        }
        catch (Evaluation.SampleRequestException e)
        {
            _errors.ErrorLine(e.Message);
            return ExitCodes.InvalidConfig;
        }
        catch (OperationCanceledException)
        {
            _errors.WarningLine("Stopped; nothing was written.");
            return ExitCodes.Cancelled;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Also libtorch's own failures (an allocation beyond the device's memory), whose messages carry a native stack trace.
            _errors.ErrorLine(e is TorchRuntimeException or WeightsMismatchException or FileNotFoundException or InvalidOperationException or IOException
                ? e.Message
                : $"Sampling failed: {e.Message.Split('\n')[0].Trim()}");
            return ExitCodes.Failed;
        }
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
            _errors.WarningLine($"plugin not loaded: {e.Path}: {e.Reason}");
    }
}
