using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Extensions.Configuration;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Configuration;
using HierDistill.Host.Evaluation;
using HierDistill.Host.Pipeline.Stages;
using HierDistill.Host.Plugins;
using HierDistill.Host.Runtime;
using HierDistill.Host.Storage;

namespace HierDistill.Host.Pipeline;

/// <summary>Runs the configured stages in order, each reading what the previous ones produced.</summary>
public sealed class PipelineRunner
{
    /// <summary>Creates the host implementation of a stage.</summary>
    public static IPipelineStage CreateStage(string key, StageConfig config, RunContext run) => config switch
    {
        TeacherStageConfig t => new TeacherStage(key, t, run),
        TrajectoryStageConfig t => new TrajectoryStage(key, t, run),
        DistributionStageConfig d => new DistributionStage(key, d, run),
        EvaluationStageConfig e => new EvaluationStage(key, e, run),
        _ => throw new InvalidOperationException($"stages:{key}: no implementation for stage kind '{config.Kind}'."),
    };

    /// <summary>The key of the stage being run or restored, while it runs and after it threw; null between stages and at the end.</summary>
    public string? CurrentStage { get; private set; }

    /// <summary>Creates the data source and runs every enabled stage in order.</summary>
    /// <param name="run">The run context.</param>
    /// <param name="stageFactory">Creates stage implementations (tests substitute it); default <see cref="CreateStage"/>.</param>
    /// <returns>The final state.</returns>
    public PipelineState Run(RunContext run, Func<string, StageConfig, RunContext, IPipelineStage>? stageFactory = null)
    {
        stageFactory ??= CreateStage;
        // run.precision: every forward pass of the run (training, sampling, evaluation) under the same autocast state.
        using var autocast = Autocast.Use(run.Config.Config.Run.ComputeDtype);
        if (run.Config.Config.Run.ComputeDtype is { } dtype)
            run.Logger.Information("Precision: matrix products in {Dtype}; parameters, optimiser state, JVP tangents and losses in float32", dtype);
        var data = run.Create<IDataSource>("data");
        // A source that reads its files on first use reads them here, not inside the first training step.
        _ = (data.TrainSize, data.EvaluationSize);
        run.Logger.Information("Data: {Data}", data.Spec);
        var state = new PipelineState { Data = data };
        var checkpoints = run.Checkpoints;
        var order = run.Config.Stages.Select(s => s.Key).ToList();
        bool rngRestored = false;
        try
        {
            foreach (var (key, stage) in run.Config.Stages)
            {
                run.Cancellation.ThrowIfCancellationRequested();
                CurrentStage = key;
                var implementation = stageFactory(key, stage, run);
                if (checkpoints is not null)
                {
                    // A resumed run: stages that had finished are rebuilt from the run folder, stages before them skipped.
                    if (checkpoints.IsCompleted(key, out var completed))
                    {
                        run.Logger.Information("Stage {Key} ({Kind}): finished before the resume; restoring its result", key, stage.Kind);
                        implementation.Restore(state, completed);
                        continue;
                    }
                    if (checkpoints.HasCompletedAfter(order, key))
                    {
                        run.Logger.Information("Stage {Key} ({Kind}): ran before the resume; skipped", key, stage.Kind);
                        continue;
                    }
                    if (!rngRestored)
                    {
                        checkpoints.RestoreRngAfterCompletedStages(run.Environment.Seed);
                        rngRestored = true;
                    }
                }
                run.Logger.Information("Stage {Key} ({Kind})", key, stage.Kind);
                implementation.Run(state);
                // A stage without step boundaries (evaluation) finishes what it started; a Ctrl-C during it stops the run
                // before the next stage (after the last one the run is complete, and finishes).
                if (key != order[^1]) run.Cancellation.ThrowIfCancellationRequested();
                if (checkpoints is not null && stage is TeacherStageConfig or TrajectoryStageConfig or DistributionStageConfig)
                {
                    double seconds = stage is TeacherStageConfig
                        ? state.TeacherSeconds
                        : state.Students.LastOrDefault(s => s.StageKey == key)?.TrainingSeconds ?? 0;
                    checkpoints.StageCompleted(new Training.CompletedStage(key, seconds));
                }
            }
            CurrentStage = null;
        }
        finally
        {
            checkpoints?.ReleaseResume();
        }
        return state;
    }

    /// <summary>
    /// The resolved config written into the run folder: every section with defaults filled in and each component's
    /// options — itself a runnable config — plus a <c>provenance</c> section (ignored when read) with the source, the
    /// overrides and the versions of the host, plugins, TorchSharp, libtorch and the device.
    /// </summary>
    public static string ResolvedConfig(LoadedConfig loaded, IReadOnlyList<string> overrides, ComponentCatalog catalog, TorchInfo torch)
    {
        // Settable properties only (computed ones such as effective defaults are not config keys); enums by name.
        var resolver = new DefaultJsonTypeInfoResolver();
        resolver.Modifiers.Add(info =>
        {
            if (info.Kind != JsonTypeInfoKind.Object) return;
            foreach (var p in info.Properties.Where(p => p.Set is null).ToList()) info.Properties.Remove(p);
        });
        var json = new JsonSerializerOptions
        {
            PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
            WriteIndented = true,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            TypeInfoResolver = resolver,
            Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        };
        JsonNode? Node(object? o) => o is null ? null : JsonSerializer.SerializeToNode(o, o.GetType(), json);
        JsonObject Component(string path)
        {
            var (descriptor, options) = loaded.Component(path);
            return new JsonObject { ["type"] = descriptor.Name, ["options"] = Node(options) };
        }

        var config = loaded.Config;
        var stages = new JsonObject();
        // In the order they run (a configuration lists its keys sorted), disabled ones where they would run.
        foreach (var (key, stage) in config.Stages.OrderBy(s => s.Value.EffectiveOrder).ThenBy(s => s.Key, StringComparer.Ordinal))
        {
            var node = Node(stage)!.AsObject();
            foreach (var p in node.Select(kv => kv.Key).ToList())
            {
                string path = $"stages:{key}:{p}";
                if (loaded.Components.ContainsKey(path)) node[p] = Component(path);
            }
            stages[key] = node;
        }
        var root = new JsonObject
        {
            ["run"] = Node(config.Run),
            ["plugins"] = Node(config.Plugins),
            ["data"] = Component("data"),
            ["stages"] = stages,
            [ConfigLoader.ProvenanceKey] = new JsonObject
            {
                ["source"] = loaded.SourcePath,
                ["overrides"] = new JsonArray(overrides.Select(o => (JsonNode?)JsonValue.Create(o)).ToArray()),
                ["device"] = torch.DeviceDescription,
                ["versions"] = new JsonObject
                {
                    ["hierdistill"] = HostVersion,
                    ["abstractions"] = PluginDiscovery.HostAbstractionsVersion.ToString(3),
                    ["torchsharp"] = torch.TorchSharpVersion,
                    ["libtorch"] = torch.LibTorch,
                    ["dotnet"] = RuntimeInformation.FrameworkDescription,
                    ["os"] = RuntimeInformation.OSDescription,
                    ["plugins"] = new JsonObject(catalog.Plugins.Select(p =>
                        KeyValuePair.Create(p.Name, (JsonNode?)new JsonObject { ["version"] = p.Version, ["path"] = p.Path }))),
                },
            },
        };
        if (loaded.Configuration.GetSection("Serilog").Exists())
            root["Serilog"] = JsonNode.Parse(JsonSerializer.Serialize(SectionToTree(loaded.Configuration.GetSection("Serilog"))));
        return root.ToJsonString(json);
    }

    /// <summary>
    /// The resolved config of a run resumed with changed settings (<paramref name="current"/>), keeping how the run was first made
    /// from <paramref name="started"/> (its <c>source</c> and <c>overrides</c>, which report.md shows) and recording the resume
    /// as <c>provenance.resumedWith</c> (<paramref name="resumeSource"/>, <paramref name="resumeOverrides"/> and the settings it
    /// changed, <paramref name="changes"/>).
    /// </summary>
    public static string KeepProvenance(string started, string current, string resumeSource, IReadOnlyList<string> resumeOverrides,
        IReadOnlyList<string> changes)
    {
        var json = new JsonSerializerOptions { WriteIndented = true };
        var now = JsonNode.Parse(current)!.AsObject();
        if (JsonNode.Parse(started) is JsonObject before && before[ConfigLoader.ProvenanceKey] is JsonObject first
            && now[ConfigLoader.ProvenanceKey] is JsonObject provenance)
        {
            foreach (var key in new[] { "source", "overrides" })
                if (first[key] is { } value) provenance[key] = value.DeepClone();
            var resumes = first["resumedWith"] is JsonArray earlier ? (JsonArray)earlier.DeepClone() : new JsonArray();
            resumes.Add(new JsonObject
            {
                ["source"] = resumeSource,
                ["overrides"] = new JsonArray(resumeOverrides.Select(o => (JsonNode?)JsonValue.Create(o)).ToArray()),
                ["changes"] = new JsonArray(changes.Select(c => (JsonNode?)JsonValue.Create(c)).ToArray()),
            });
            provenance["resumedWith"] = resumes;
        }
        return now.ToJsonString(json);
    }

    /// <summary>A configuration section as nested dictionaries (values as strings), for pass-through sections.</summary>
    private static object? SectionToTree(IConfigurationSection section)
    {
        var children = section.GetChildren().ToList();
        if (children.Count == 0) return section.Value;
        return children.ToDictionary(c => c.Key, SectionToTree);
    }

    /// <summary>The host's version.</summary>
    public static string HostVersion =>
        typeof(PipelineRunner).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "?";
}
