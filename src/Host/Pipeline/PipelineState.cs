using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Configuration;
using HierDistill.Host.Training;
using Serilog;

namespace HierDistill.Host.Pipeline;

/// <summary>A student a stage produced (its EMA weights, frozen), handed to later stages and to evaluation.</summary>
/// <param name="StageKey">The stage that trained it.</param>
/// <param name="Kind">The stage kind (trajectory or distribution).</param>
/// <param name="Model">The student <c>u_θ(z, r, t | c)</c>, in eval mode.</param>
/// <param name="Description">E.g. "meanflow" or "dmd + awd from structure".</param>
/// <param name="TrainingSeconds">Wall time of the stage.</param>
public sealed record StudentResult(string StageKey, string Kind, AverageVelocityNetwork Model, string Description, double TrainingSeconds)
{
    /// <summary>
    /// Wall time of every student stage this model went through, its own included (for HD: stage 1 + stage 2); the
    /// teacher's preparation is not counted. Defaults to <see cref="TrainingSeconds"/>.
    /// </summary>
    public double DistillationSeconds { get; init; } = TrainingSeconds;
}

/// <summary>How fast a training stage ran.</summary>
/// <param name="Stage">The stage key.</param>
/// <param name="Steps">Optimisation steps (iterations) of the stage.</param>
/// <param name="BatchSize">Samples per step.</param>
/// <param name="Seconds">Wall time of the stage's loop (summed over the parts of a resumed run), in seconds.</param>
/// <param name="PeakDeviceMiB">Largest GPU memory in use during the stage's loop (NVML, the whole device as nvidia-smi shows it,
/// MiB; <see cref="Runtime.DeviceMemoryMonitor"/>); null on a CPU or without NVML, and for the part before a resume.</param>
public sealed record StageThroughput(string Stage, long Steps, int BatchSize, double Seconds, double? PeakDeviceMiB = null)
{
    /// <summary>Milliseconds per step.</summary>
    public double StepMilliseconds => Steps == 0 ? 0 : 1000 * Seconds / Steps;

    /// <summary>Training samples per second.</summary>
    public double SamplesPerSecond => Seconds <= 0 ? 0 : Steps * (double)BatchSize / Seconds;

    /// <summary>E.g. "600 steps × 32 in 241.0 s: 401.7 ms/step, 80 samples/s" (+ ", peak device memory in use 5321 MiB (whole device, NVML)" on a GPU).</summary>
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{Steps} steps × {BatchSize} in {Seconds:0.0} s: {StepMilliseconds:0.00} ms/step, {SamplesPerSecond:0} samples/s") +
        (PeakDeviceMiB is { } peak ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $", peak device memory in use {peak:0} MiB (whole device, NVML)") : "");
}

/// <summary>Everything a stage needs from the run: config, services, device, logging, metrics, progress.</summary>
public sealed class RunContext
{
    /// <summary>The validated config.</summary>
    public required LoadedConfig Config { get; init; }

    /// <summary>The host's services (logger factory, catalog).</summary>
    public required IServiceProvider Services { get; init; }

    /// <summary>Device, seed and run folder.</summary>
    public required RunEnvironment Environment { get; init; }

    /// <summary>The run's logger.</summary>
    public required ILogger Logger { get; init; }

    /// <summary>Training metrics.</summary>
    public required MetricsWriter Metrics { get; init; }

    /// <summary>Progress display.</summary>
    public required IProgressReporter Progress { get; init; }

    /// <summary>Full-state checkpoints of the run (null: none are written, e.g. in tests that build a context by hand).</summary>
    public CheckpointStore? Checkpoints { get; init; }

    /// <summary>GPU memory sampler (CUDA runs with NVML), or null.</summary>
    public Runtime.DeviceMemoryMonitor? DeviceMemory { get; init; }

    /// <summary>Cancelled by Ctrl-C: stages stop at the next step boundary.</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>Where this process resumed the run from (the checkpoint's stage and step, e.g. <c>stage detail, step 200 of
    /// 500</c>), or null for a run started afresh.</summary>
    public string? ResumedFrom { get; init; }

    /// <summary>The run folder.</summary>
    public string OutputDirectory => Environment.OutputDirectory;

    /// <summary>Creates the config's components for this run.</summary>
    public ComponentFactory Components => new(Config, Services, Environment);

    /// <summary>Creates the component configured at <paramref name="path"/> (see <see cref="ComponentFactory.Create{T}"/>).</summary>
    /// <exception cref="InvalidOperationException">When the factory returns something else than <typeparamref name="T"/>.</exception>
    public T Create<T>(string path, IDataSource? data = null, ITeacher? teacher = null) where T : class =>
        Components.Create<T>(path, data, teacher);

    /// <summary>Whether a component is configured at <paramref name="path"/>.</summary>
    public bool Has(string path) => Config.Components.ContainsKey(path);
}

/// <summary>Creates the components a config names, by config path (<c>data</c>, <c>stages:KEY:teacher</c>, …).</summary>
/// <param name="config">The validated config.</param>
/// <param name="services">Services handed to the components (logger factory, catalog).</param>
/// <param name="environment">Device, seed and run folder handed to the components.</param>
public sealed class ComponentFactory(LoadedConfig config, IServiceProvider services, RunEnvironment environment)
{
    /// <summary>Creates the component configured at <paramref name="path"/> with its validated options.</summary>
    /// <param name="path">The component's config path.</param>
    /// <param name="data">The run's data source (null for the data source itself).</param>
    /// <param name="teacher">The teacher, for components built on it (students' distillers, matchers, discriminators).</param>
    /// <exception cref="InvalidOperationException">When the factory returns something else than <typeparamref name="T"/>.</exception>
    public T Create<T>(string path, IDataSource? data = null, ITeacher? teacher = null) where T : class
    {
        var (descriptor, options) = config.Component(path);
        var ctx = new ComponentContext(services, environment, path, data, teacher) { StageSteps = StageSteps(path) };
        return descriptor.Create(ctx, options) as T
               ?? throw new InvalidOperationException($"{path}: component '{descriptor.Name}' did not create a {typeof(T).Name}.");
    }

    /// <summary>Whether a component is configured at <paramref name="path"/>.</summary>
    public bool Has(string path) => config.Components.ContainsKey(path);

    /// <summary>
    /// Training steps of the enabled stage that owns <paramref name="path"/> (<c>stages:KEY:…</c>), or null where that stage
    /// trains nothing: no such stage, an evaluation stage, a teacher without <c>training</c> or with <c>loadFrom</c>, a
    /// trajectory stage with <c>loadFrom</c> (<see cref="ComponentContext.StageSteps"/>).
    /// </summary>
    public long? StageSteps(string path)
    {
        var parts = path.Split(':');
        if (parts.Length < 3 || !parts[0].Equals("stages", StringComparison.OrdinalIgnoreCase)) return null;
        var stage = config.Stages.FirstOrDefault(s => s.Key.Equals(parts[1], StringComparison.OrdinalIgnoreCase)).Stage;
        return stage switch
        {
            // A blank loadFrom trains, as the stages read it.
            TeacherStageConfig t when string.IsNullOrWhiteSpace(t.LoadFrom) => t.Training?.Steps,
            TrajectoryStageConfig t when string.IsNullOrWhiteSpace(t.LoadFrom) => t.Training.Steps,
            DistributionStageConfig d => d.Training.Steps,
            _ => null,
        };
    }

    /// <summary>The configured component's name (e.g. <c>dit</c>, <c>awd</c>).</summary>
    /// <exception cref="KeyNotFoundException">When none is configured at <paramref name="path"/>.</exception>
    public string NameOf(string path) => config.Component(path).Descriptor.Name;

    /// <summary>The configured component for messages: its name and the plugin assembly it comes from, e.g. <c>'awd' (HierDistill.Plugins.Awd)</c>.</summary>
    /// <exception cref="KeyNotFoundException">When none is configured at <paramref name="path"/>.</exception>
    public string Describe(string path)
    {
        var descriptor = config.Component(path).Descriptor;
        return string.IsNullOrEmpty(descriptor.Assembly) ? $"'{descriptor.Name}'" : $"'{descriptor.Name}' ({descriptor.Assembly})";
    }
}

/// <summary>What the stages produced so far; each stage reads its predecessors' results from here.</summary>
public sealed class PipelineState
{
    /// <summary>The run's data source.</summary>
    public required IDataSource Data { get; init; }

    /// <summary>The teacher (set by the teacher stage).</summary>
    public ITeacher? Teacher { get; set; }

    /// <summary>Wall time of teacher preparation.</summary>
    public double TeacherSeconds { get; set; }

    /// <summary>Students in the order they were produced.</summary>
    public List<StudentResult> Students { get; } = [];

    /// <summary>Training throughput of every training stage, in order (for the log, report.md and metrics.json).</summary>
    public List<StageThroughput> Throughput { get; } = [];

    /// <summary>The teacher.</summary>
    /// <exception cref="InvalidOperationException">Before the teacher stage ran.</exception>
    public ITeacher RequireTeacher() => Teacher ?? throw new InvalidOperationException("no teacher: the teacher stage must run first.");
}

/// <summary>One step of the pipeline.</summary>
public interface IPipelineStage
{
    /// <summary>The stage's key in the config.</summary>
    string Key { get; }

    /// <summary>Runs the stage, reading from and writing to <paramref name="state"/>.</summary>
    void Run(PipelineState state);

    /// <summary>
    /// When a resumed run had finished this stage: rebuilds what it produced (teacher, student) from the run folder's
    /// files instead of training again, and writes it to <paramref name="state"/>.
    /// </summary>
    /// <param name="state">The pipeline state.</param>
    /// <param name="completed">What the checkpoint recorded of the stage.</param>
    /// <exception cref="NotSupportedException">For a stage that cannot be restored (the default).</exception>
    void Restore(PipelineState state, CompletedStage completed) =>
        throw new NotSupportedException($"stage {Key} cannot be restored from a checkpoint; start the run again with --overwrite.");
}
