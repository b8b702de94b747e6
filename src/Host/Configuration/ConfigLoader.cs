using System.Text.Json;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Plugins;
using HierDistill.Host.Storage;
using Microsoft.Extensions.Configuration;

namespace HierDistill.Host.Configuration;

/// <summary>A validated config with everything the pipeline needs to be composed.</summary>
public sealed class LoadedConfig
{
    /// <summary>Full path of the config file.</summary>
    public required string SourcePath { get; init; }

    /// <summary>The layered configuration (file + overrides).</summary>
    public required IConfigurationRoot Configuration { get; init; }

    /// <summary>The bound config.</summary>
    public required HierDistillConfig Config { get; init; }

    /// <summary>Enabled stages in run order.</summary>
    public required IReadOnlyList<(string Key, StageConfig Stage)> Stages { get; init; }

    /// <summary>Every component reference with its descriptor and bound options, by key path (e.g. <c>stages:structure:distiller</c>).</summary>
    public required IReadOnlyDictionary<string, (ComponentDescriptor Descriptor, object Options)> Components { get; init; }

    /// <summary>Warnings of the validation (components the command does not build and no plugin registers).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>The component at <paramref name="path"/>.</summary>
    /// <exception cref="KeyNotFoundException">When the path holds no component.</exception>
    public (ComponentDescriptor Descriptor, object Options) Component(string path) =>
        Components.TryGetValue(path, out var c) ? c : throw new KeyNotFoundException($"no component configured at {path}.");

    /// <summary>The config path of the teacher component, e.g. <c>stages:teacher:teacher</c> (a validated config has one teacher stage).</summary>
    public string TeacherPath => $"stages:{Stages.First(s => s.Stage is TeacherStageConfig).Key}:teacher";
}

/// <summary>Reads JSON configs with command-line overrides and validates them completely.</summary>
public static class ConfigLoader
{
    private static readonly HashSet<string> PassThroughSections = new(StringComparer.OrdinalIgnoreCase) { "Serilog" };

    /// <summary>
    /// Reads <paramref name="path"/> (with the configs it extends) and applies overrides <c>key=value</c> (<c>:</c> or
    /// <c>.</c> separate key levels: <c>stages:detail:enabled=false</c>, <c>run.device=cpu</c>; a JSON list or object as
    /// value replaces the whole entry: <c>stages:evaluate:teacherNfe=[1,4,16]</c>; <c>null</c> removes it). See
    /// <see cref="ConfigDocument"/> for the merge rules.
    /// </summary>
    /// <exception cref="ConfigException">For a missing file, malformed JSON (with line and column) or a malformed override.</exception>
    public static IConfigurationRoot Read(string path, IEnumerable<string>? overrides = null)
    {
        var document = ConfigDocument.Load(path, overrides);
        try
        {
            var stream = new MemoryStream(JsonSerializer.SerializeToUtf8Bytes(document));
            return new ConfigurationBuilder().AddJsonStream(stream).Build();
        }
        catch (Exception e) when (e is FormatException or InvalidDataException)
        {
            throw new ConfigException(path, [new ConfigError("", (e.InnerException?.Message ?? e.Message).TrimEnd('.') + ".")]);
        }
    }

    /// <summary>The key with which a config names the config it extends.</summary>
    public const string ExtendsKey = ConfigDocument.ExtendsKey;

    /// <summary>Top-level section the host writes into <c>config.resolved.json</c> (source, overrides, versions); ignored when read.</summary>
    public const string ProvenanceKey = "provenance";

    /// <summary>Reads and validates the <c>plugins</c> section alone (needed before plugins can be discovered).</summary>
    /// <exception cref="ConfigException">When the section is invalid.</exception>
    public static PluginsOptions ReadPlugins(IConfigurationRoot root, string source)
    {
        var v = new ConfigValidator(null);
        var plugins = (PluginsOptions?)v.ValidateAndBind(root.GetSection("plugins"), typeof(PluginsOptions), "plugins") ?? new PluginsOptions();
        if (v.Errors.Count > 0) throw new ConfigException(source, v.Errors);
        return plugins;
    }

    /// <summary>
    /// Plugin folders of a config: the host's default first (so a built-in component's name cannot be taken over by another
    /// plugin), then the configured ones (relative to the current directory).
    /// </summary>
    public static IReadOnlyList<string> PluginFolders(PluginsOptions plugins) =>
        PluginDiscovery.Folders(plugins.Folders, plugins.IncludeDefaultFolder);

    /// <summary>Validates the whole config against the catalog and binds it.</summary>
    /// <param name="root">The config.</param>
    /// <param name="source">Its file, for messages.</param>
    /// <param name="catalog">The discovered components.</param>
    /// <param name="resuming">For <c>run --resume</c>: the teacher's <c>loadFrom</c> is not checked (the teacher is restored from the run
    /// folder), nor a trajectory stage's whose copy the run folder holds (<see cref="HasLoadedCopy"/>).</param>
    /// <param name="notBuilt">Contracts the command does not build (<see cref="ConfigValidator.NotBuilt"/>): an unknown name of one is
    /// a warning in <see cref="LoadedConfig.Warnings"/>.</param>
    /// <param name="readsLoadFrom">False for commands that load weights of their own (<c>sample</c>, <c>probe</c>): no
    /// <c>loadFrom</c> is checked.</param>
    /// <remarks>A <c>loadFrom</c> is bound as a full path (relative to the working directory), so that the run's
    /// config.resolved.json names the file wherever it is used from.</remarks>
    /// <exception cref="ConfigException">With every error found.</exception>
    public static LoadedConfig Validate(IConfigurationRoot root, string source, ComponentCatalog catalog, bool resuming = false,
        IReadOnlySet<Type>? notBuilt = null, bool readsLoadFrom = true)
    {
        var v = new ConfigValidator(catalog) { NotBuilt = notBuilt ?? new HashSet<Type>() };
        string[] sections = ["run", "plugins", "data", "stages"];
        foreach (var child in root.GetChildren())
        {
            if (sections.Contains(child.Key, StringComparer.OrdinalIgnoreCase) || PassThroughSections.Contains(child.Key) ||
                child.Key.Equals(ExtendsKey, StringComparison.OrdinalIgnoreCase) || child.Key.Equals(ProvenanceKey, StringComparison.OrdinalIgnoreCase)) continue;
            string? guess = ConfigValidator.Suggest(child.Key, sections);
            v.Add(child.Key, "unknown key." + (guess is null ? "" : $" Did you mean '{guess}'?") +
                             $" Allowed here: {string.Join(", ", sections)}, {ExtendsKey}, Serilog, {ProvenanceKey} (written by the host).");
        }
        var run = (RunOptions?)v.ValidateAndBind(root.GetSection("run"), typeof(RunOptions), "run");
        var plugins = (PluginsOptions?)v.ValidateAndBind(root.GetSection("plugins"), typeof(PluginsOptions), "plugins");
        var data = root.GetSection("data");
        if (!data.Exists())
            v.Add("data", $"is required: the data source, e.g. {{ \"type\": \"mixture2d\" }}. Known: {catalog.KnownNames(typeof(Abstractions.Data.IDataSource))}.");
        else
            v.CheckComponent(data, typeof(Abstractions.Data.IDataSource), "data");
        var config = run is null || plugins is null ? null : new HierDistillConfig
        {
            Run = run,
            Plugins = plugins,
            Data = new ComponentConfig { Type = data["type"] },
        };

        var stages = new List<(string Key, StageConfig Stage)>();
        foreach (var stage in root.GetSection("stages").GetChildren())
        {
            string path = $"stages:{stage.Key}";
            if (!stage.Key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            {
                v.Add(path, "stage names must be letters, digits, '-' or '_'.");
                continue;
            }
            if (stage.Value is not null && !stage.GetChildren().Any())
            {
                v.Add(path, $"expected a stage section {{ \"kind\": ... }}, got the value '{stage.Value}'.");
                continue;
            }
            string? kind = stage["kind"];
            if (string.IsNullOrWhiteSpace(kind) &&
                ConfigValidator.Suggest(stage.Key, root.GetSection("stages").GetChildren().Where(x => !string.IsNullOrWhiteSpace(x["kind"])).Select(x => x.Key).ToList())
                    is { } meant)
            {
                // A misspelt stage name in --set or a variant makes a new stage without a kind.
                v.Add(path, $"not a stage of this config (it has no kind). Did you mean '{meant}'? A new stage needs \"kind\": one of " +
                            $"{string.Join(", ", StageKinds.Types.Keys)}.");
                continue;
            }
            if (string.IsNullOrWhiteSpace(kind) || !StageKinds.Types.TryGetValue(kind, out var type))
            {
                v.Add($"{path}:kind", (string.IsNullOrWhiteSpace(kind) ? "is required" : $"'{kind}' is not a stage kind") +
                                      $"; use one of {string.Join(", ", StageKinds.Types.Keys)}.");
                continue;
            }
            if (v.ValidateAndBind(stage, type, path) is StageConfig bound)
            {
                stages.Add((stage.Key, bound));
                string? loadFrom = null;
                if (bound is TeacherStageConfig { LoadFrom: { } teacherFile } teacherStage && !string.IsNullOrWhiteSpace(teacherFile))
                    loadFrom = teacherStage.LoadFrom = FullPath(teacherFile);
                else if (bound is TrajectoryStageConfig { LoadFrom: { } studentFile } trajectoryStage && !string.IsNullOrWhiteSpace(studentFile))
                    loadFrom = trajectoryStage.LoadFrom = FullPath(studentFile);
                // A resumed run restores its teacher, and a loaded stage it finished, from the run folder: their loadFrom is not
                // read again. A stage still to run reads it: it is checked now, not when the run gets there.
                bool restored = resuming && (bound is TeacherStageConfig || HasLoadedCopy(run?.ResolvedOutputDir, stage.Key));
                if (bound.Enabled && readsLoadFrom && loadFrom is not null && !restored)
                {
                    // The header alone (not the tensors): a file that is no weights file is refused before a run folder is
                    // created or overwritten. Names and shapes need the module and are checked when it is loaded.
                    try
                    {
                        WeightsFile.CheckHeader(loadFrom);
                    }
                    catch (FileNotFoundException)
                    {
                        v.Add($"{path}:loadFrom", $"weights file not found: {loadFrom}.");
                    }
                    catch (Exception e) when (e is WeightsMismatchException or IOException or UnauthorizedAccessException)
                    {
                        v.Add($"{path}:loadFrom", e.Message);
                    }
                }
            }
            else
            {
                // The stage has errors of its own; keep what the pipeline checks need (kind, enabled, order, generator),
                // read leniently, so that pipeline errors are reported in the same pass.
                var skeleton = (StageConfig)Activator.CreateInstance(type)!;
                skeleton.Kind = kind;
                if (bool.TryParse(stage["enabled"], out bool enabled)) skeleton.Enabled = enabled;
                if (int.TryParse(stage["order"], out int order)) skeleton.Order = order;
                if (skeleton is DistributionStageConfig d && !string.IsNullOrWhiteSpace(stage["generator"])) d.Generator = stage["generator"]!;
                stages.Add((stage.Key, skeleton));
            }
        }

        var ordered = stages.Where(s => s.Stage.Enabled)
            .OrderBy(s => s.Stage.EffectiveOrder).ThenBy(s => s.Key, StringComparer.Ordinal).ToList();
        // The pipeline's shape is checked whenever every stage has a known kind, even if stages or other sections have errors.
        if (stages.Count == root.GetSection("stages").GetChildren().Count()) CheckPipeline(ordered, v);
        if (v.Errors.Count > 0 || config is null) throw new ConfigException(source, v.Errors);

        config.Stages = stages.ToDictionary(s => s.Key, s => s.Stage);
        return new LoadedConfig
        {
            SourcePath = Path.GetFullPath(source),
            Configuration = root,
            Config = config,
            Stages = ordered,
            Components = v.Components,
            Warnings = v.Warnings,
        };
    }

    private static void CheckPipeline(IReadOnlyList<(string Key, StageConfig Stage)> stages, ConfigValidator v)
    {
        if (stages.Count == 0)
        {
            v.Add("stages", "no enabled stage; a pipeline needs at least a teacher stage.");
            return;
        }
        var teachers = stages.Where(s => s.Stage is TeacherStageConfig).ToList();
        if (teachers.Count != 1)
            v.Add("stages", teachers.Count == 0
                ? "no enabled teacher stage; add one ({ \"kind\": \"teacher\", ... })."
                : $"{teachers.Count} enabled teacher stages ({string.Join(", ", teachers.Select(t => t.Key))}); a pipeline has exactly one.");
        else if (stages[0].Stage is not TeacherStageConfig)
            v.Add($"stages:{teachers[0].Key}:order", $"the teacher stage must run first, but '{stages[0].Key}' comes before it.");

        var evaluations = stages.Where(s => s.Stage is EvaluationStageConfig).ToList();
        if (evaluations.Count > 1)
            v.Add("stages", $"{evaluations.Count} enabled evaluation stages ({string.Join(", ", evaluations.Select(e => e.Key))}); they would " +
                            "write the same report.md and metrics.json, so a pipeline has at most one. Disable all but one " +
                            "(stages:<name>:enabled=false) or merge their NFE lists.");
        else if (evaluations.Count == 1 && stages[^1].Stage is not EvaluationStageConfig)
            v.Add($"stages:{evaluations[0].Key}:order", $"the evaluation stage must run last, but '{stages[^1].Key}' comes after it " +
                                                      "(its students would not be evaluated).");

        var producers = new List<string>();
        string Canonical(string generator) =>
            generator.Equals("previous", StringComparison.OrdinalIgnoreCase) || generator.Equals("teacher", StringComparison.OrdinalIgnoreCase)
                ? generator.ToLowerInvariant()
                : producers.FirstOrDefault(p => p.Equals(generator, StringComparison.OrdinalIgnoreCase)) ?? generator;
        foreach (var (key, stage) in stages)
        {
            if (stage is DistributionStageConfig d)
            {
                // Stored as the stage is named (or in lower case), so that a resume or compare --resume given another case
                // sees the same config.
                string g = d.Generator = Canonical(d.Generator);
                if (g.Equals("previous", StringComparison.Ordinal))
                {
                    if (producers.Count == 0)
                        v.Add($"stages:{key}:generator",
                            "'previous' needs an earlier enabled trajectory or distribution stage, and there is none; " +
                            "use 'teacher' to start the generator from the teacher (DMD without TD initialisation).");
                }
                else if (g != "teacher" && !producers.Contains(g, StringComparer.Ordinal))
                {
                    v.Add($"stages:{key}:generator",
                        $"'{g}' is not an earlier enabled trajectory or distribution stage; use previous, teacher" +
                        (producers.Count > 0 ? ", " + string.Join(", ", producers) : "") + ".");
                }
            }
            if (stage is TrajectoryStageConfig or DistributionStageConfig) producers.Add(key);
        }
    }

    /// <summary>Whether the run folder <paramref name="outputDir"/> holds the copy a loaded trajectory stage <paramref name="key"/>
    /// wrote (<c>student-KEY.safetensors</c>), which a resume restores it from.</summary>
    internal static bool HasLoadedCopy(string? outputDir, string key) =>
        outputDir is not null && File.Exists(Path.Combine(outputDir, Storage.RunFolder.StudentFileName(key)));

    /// <summary><paramref name="path"/> as a full path (relative to the working directory); unchanged when it is no valid path
    /// (the weights check then names it).</summary>
    private static string FullPath(string path)
    {
        try
        {
            return Path.GetFullPath(path);
        }
        catch (ArgumentException)
        {
            return path;
        }
    }
}
