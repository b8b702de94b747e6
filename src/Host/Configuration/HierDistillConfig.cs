using System.ComponentModel.DataAnnotations;
using System.Text.RegularExpressions;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using TorchSharp;

namespace HierDistill.Host.Configuration;

/// <summary>The whole experiment: one JSON file (plus <c>--set</c> overrides).</summary>
public sealed class HierDistillConfig
{
    /// <summary>Run-wide settings.</summary>
    public RunOptions Run { get; set; } = new();

    /// <summary>Where plugins are discovered.</summary>
    public PluginsOptions Plugins { get; set; } = new();

    /// <summary>The data source component.</summary>
    [Required, ComponentOf(typeof(IDataSource))]
    public ComponentConfig? Data { get; set; }

    /// <summary>The pipeline: stages keyed by name; run in <see cref="StageConfig.Order"/> order.</summary>
    public Dictionary<string, StageConfig> Stages { get; set; } = new();
}

/// <summary><c>run</c>: settings of the run as a whole.</summary>
public sealed partial class RunOptions : IValidatableObject
{
    /// <summary>Name of the run (used in reports). <value>Default "run".</value></summary>
    [Required, RegularExpression("^[A-Za-z0-9._-]+$", ErrorMessage = "must be letters, digits, '.', '_' or '-'")]
    public string Name { get; set; } = "run";

    /// <summary>Run folder, relative to the current directory. <value>Default "runs/{name}".</value></summary>
    public string? OutputDir { get; set; }

    /// <summary>Device: <c>auto</c>, <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>. <value>Default "auto".</value></summary>
    public string Device { get; set => field = ConfigValues.Lower(value, v => DeviceRegex().IsMatch(v)); } = "auto";

    /// <summary>Random seed of the run. <value>Default 0.</value></summary>
    [Range(typeof(long), "0", "9223372036854775807")]
    public long Seed { get; set; }

    /// <summary>
    /// The <c>lib</c> folder of an installed PyTorch whose libtorch (CUDA) is used instead of the
    /// bundled one; overrides the environment variable HIERDISTILL_LIBTORCH. <value>Default: unset.</value>
    /// </summary>
    public string? Libtorch { get; set; }

    /// <summary>
    /// Compute precision of the networks' matrix products: <c>float32</c>, or <c>bfloat16</c> (mixed precision by hand, see
    /// <c>Autocast</c> in HierDistill.Abstractions: matmuls in bfloat16; parameters, gradients, optimiser state, normalisation,
    /// softmax, JVP tangents and losses in float32). bfloat16 is meant for CUDA; on a CPU it runs but is usually slower.
    /// <value>Default "float32".</value>
    /// </summary>
    [Required, RegularExpression("^(float32|bfloat16)$", ErrorMessage = "must be float32 or bfloat16")]
    public string Precision { get; set => field = ConfigValues.Lower(value, v => v is "float32" or "bfloat16"); } = "float32";

    /// <summary>The compute dtype for <c>Autocast.Use</c>: null for float32.</summary>
    public torch.ScalarType? ComputeDtype => Precision == "bfloat16" ? torch.ScalarType.BFloat16 : null;

    /// <summary>CPU threads for torch (0: torch's default). <value>Default 0.</value></summary>
    [Range(0, 1024)]
    public int Threads { get; set; }

    /// <summary>Replace an output folder that already holds a finished run. <value>Default false.</value></summary>
    public bool Overwrite { get; set; }

    /// <summary>Log losses every this many steps. <value>Default 50.</value></summary>
    [Range(1, 1_000_000)]
    public int LogEvery { get; set; } = 50;

    /// <summary>
    /// Write a full-state checkpoint (<c>checkpoint.safetensors</c>: every trained module, EMA, optimiser state, RNG state,
    /// step counters) every this many steps of a training stage; 0: only at the end of each stage and on Ctrl-C/SIGTERM.
    /// <value>Default 1000.</value>
    /// </summary>
    [Range(0, int.MaxValue)]
    public int CheckpointEvery { get; set; } = 1000;

    /// <summary>
    /// Consecutive optimiser steps of one module skipped for a non-finite loss or gradient that stop the run (each skip
    /// leaves parameters and optimiser state unchanged and is logged as <c>skipped</c>). <value>Default 20.</value>
    /// </summary>
    [Range(1, 1_000_000)]
    public int MaxSkippedSteps { get; set; } = 20;

    /// <summary>The resolved output folder.</summary>
    public string ResolvedOutputDir => string.IsNullOrWhiteSpace(OutputDir) ? Path.Combine("runs", Name) : OutputDir!;

    /// <inheritdoc/>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!DeviceRegex().IsMatch(Device))
            yield return new ValidationResult($"'{Device}' is not a device; use auto, cpu, cuda or cuda:N.", [nameof(Device)]);
    }

    [GeneratedRegex("^(auto|cpu|cuda(:[0-9]+)?)$")]
    private static partial Regex DeviceRegex();
}

/// <summary><c>plugins</c>: plugin discovery.</summary>
public sealed class PluginsOptions
{
    /// <summary>Extra plugin folders (each holds one sub-folder per plugin), relative to the current directory. <value>Default none.</value></summary>
    public List<string> Folders { get; set; } = [];

    /// <summary>Also search the <c>plugins</c> folder beside the host. <value>Default true.</value></summary>
    public bool IncludeDefaultFolder { get; set; } = true;
}

/// <summary>A component reference: <c>{ "type": "name", "options": { ... } }</c>.</summary>
public sealed class ComponentConfig
{
    /// <summary>Registered component name, e.g. <c>meanflow</c>.</summary>
    [Required]
    public string? Type { get; set; }

    // "options" is bound to the component's own options type by the validator, not here.
}

/// <summary>Marks a <see cref="ComponentConfig"/> property with the contract its <c>type</c> must implement.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class ComponentOfAttribute(Type contract) : Attribute
{
    /// <summary>The contract.</summary>
    public Type Contract { get; } = contract;
}

/// <summary>The kinds of stage and their config types.</summary>
public static class StageKinds
{
    /// <summary>Prepares the teacher (train by flow matching, load, or analytic).</summary>
    public const string Teacher = "teacher";
    /// <summary>Stage 1: trajectory distillation.</summary>
    public const string Trajectory = "trajectory";
    /// <summary>Stage 2: distribution matching (+ adversarial).</summary>
    public const string Distribution = "distribution";
    /// <summary>Evaluation and report.</summary>
    public const string Evaluation = "evaluation";

    /// <summary>Config type of each kind.</summary>
    public static readonly IReadOnlyDictionary<string, Type> Types = new Dictionary<string, Type>(StringComparer.OrdinalIgnoreCase)
    {
        [Teacher] = typeof(TeacherStageConfig),
        [Trajectory] = typeof(TrajectoryStageConfig),
        [Distribution] = typeof(DistributionStageConfig),
        [Evaluation] = typeof(EvaluationStageConfig),
    };

    /// <summary>Default order of each kind (stages of equal order run in key order).</summary>
    public static readonly IReadOnlyDictionary<string, int> DefaultOrder = new Dictionary<string, int>
    {
        [Teacher] = 0, [Trajectory] = 100, [Distribution] = 200, [Evaluation] = 1000,
    };
}

/// <summary>Settings every stage has.</summary>
public abstract class StageConfig
{
    /// <summary>teacher | trajectory | distribution | evaluation.</summary>
    [Required]
    public string? Kind { get; set => field = value?.ToLowerInvariant(); }

    /// <summary>Position in the pipeline (lower first). <value>Default by kind: teacher 0, trajectory 100, distribution 200, evaluation 1000.</value></summary>
    public int? Order { get; set; }

    /// <summary>Set false to skip the stage (e.g. <c>--set stages:detail:enabled=false</c>). <value>Default true.</value></summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The effective order.</summary>
    public int EffectiveOrder => Order ?? StageKinds.DefaultOrder[Kind!];
}

/// <summary>Optimiser and loop settings of a training stage.</summary>
public sealed class TrainingOptions
{
    /// <summary>Optimiser steps (for stage 2: iterations). <value>Default 1000.</value></summary>
    [Range(0, 100_000_000)]
    public long Steps { get; set; } = 1000;

    /// <summary>Batch size. <value>Default 256.</value></summary>
    [Range(1, 1_000_000)]
    public int BatchSize { get; set; } = 256;

    /// <summary>Learning rate. <value>Default 1e-4.</value></summary>
    [Range(0.0, 10.0)]
    public double LearningRate { get; set; } = 1e-4;

    /// <summary>Adam β₁. <value>Default 0.9.</value></summary>
    [Range(0.0, 0.999999)]
    public double Beta1 { get; set; } = 0.9;

    /// <summary>Adam β₂ (MeanFlow's paper trains with 0.95; on the 2-D job's stage 1 it measured the same as 0.999:
    /// docs/benchmarks.md). <value>Default 0.999.</value></summary>
    [Range(0.0, 0.999999)]
    public double Beta2 { get; set; } = 0.999;

    /// <summary>Decoupled weight decay (AdamW). <value>Default 0.</value></summary>
    [Range(0.0, 1.0)]
    public double WeightDecay { get; set; }

    /// <summary>Gradient-norm clip (0: none). <value>Default 1.</value></summary>
    [Range(0.0, 1e6)]
    public double GradClip { get; set; } = 1.0;

    /// <summary>EMA decay of the trained model (0: no EMA). <value>Default 0.999.</value></summary>
    [Range(0.0, 0.999999999)]
    public double EmaDecay { get; set; } = 0.999;

    /// <summary>Linear learning-rate warm-up steps. <value>Default 0.</value></summary>
    [Range(0, 100_000_000)]
    public long WarmupSteps { get; set; }

    /// <summary>Optimiser settings.</summary>
    public OptimizerSettings ToOptimizer() =>
        new(LearningRate, Beta1, Beta2, WeightDecay, GradClip > 0 ? GradClip : null);
}

/// <summary><c>kind: teacher</c>: create the teacher, then train it by flow matching or load its weights.</summary>
public sealed class TeacherStageConfig : StageConfig
{
    /// <summary>The teacher component.</summary>
    [Required, ComponentOf(typeof(ITeacher))]
    public ComponentConfig? Teacher { get; set; }

    /// <summary>Flow-matching training of a network teacher (omit for an analytic or loaded teacher).</summary>
    public TeacherTrainingOptions? Training { get; set; }

    /// <summary>
    /// Weights file (<c>teacher.safetensors</c> of an earlier run) to load; when set, <see cref="Training"/> is skipped,
    /// so that ablations share one teacher (<c>--set stages:teacher:loadFrom=runs/x/teacher.safetensors</c>). <value>Default: unset.</value>
    /// </summary>
    public string? LoadFrom { get; set; }
}

/// <summary>Teacher training settings (flow matching with label dropout).</summary>
public sealed class TeacherTrainingOptions
{
    /// <summary>Optimiser steps. <value>Default 4000.</value></summary>
    [Range(0, 100_000_000)]
    public long Steps { get; set; } = 4000;

    /// <summary>Batch size. <value>Default 512.</value></summary>
    [Range(1, 1_000_000)]
    public int BatchSize { get; set; } = 512;

    /// <summary>Learning rate. <value>Default 1e-3.</value></summary>
    [Range(0.0, 10.0)]
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Gradient-norm clip (0: none). <value>Default 1.</value></summary>
    [Range(0.0, 1e6)]
    public double GradClip { get; set; } = 1.0;

    /// <summary>EMA decay; the EMA weights become the teacher. <value>Default 0.999.</value></summary>
    [Range(0.0, 0.999999999)]
    public double EmaDecay { get; set; } = 0.999;

    /// <summary>Probability of replacing a label by ∅ (classifier-free guidance training). <value>Default 0.1.</value></summary>
    [Range(0.0, 1.0)]
    public double LabelDropout { get; set; } = 0.1;

    /// <summary>Learning rate decays with a cosine to this fraction at the last step. <value>Default 0.1.</value></summary>
    [Range(0.0, 1.0)]
    public double FinalLearningRateFraction { get; set; } = 0.1;

    /// <summary>
    /// Law of the training time t: <c>uniform</c> on [0, 1], or <c>logitNormal</c>, <c>sigmoid(N(timeMean, timeStd²))</c>, which
    /// spends more steps on the middle of the path (Esser et al. 2024, SD3 §3.1). <value>Default uniform.</value>
    /// </summary>
    public TeacherTimeLaw TimeSampling { get; set; } = TeacherTimeLaw.Uniform;

    /// <summary>Mean of the logit-normal time law. <value>Default 0.</value></summary>
    [Range(-10.0, 10.0)]
    public double TimeMean { get; set; }

    /// <summary>Standard deviation of the logit-normal time law. <value>Default 1.</value></summary>
    [Range(0.01, 10.0)]
    public double TimeStd { get; set; } = 1.0;
}

/// <summary>Time laws of teacher training.</summary>
public enum TeacherTimeLaw
{
    /// <summary>t ~ U[0, 1] (rectified flow, Liu et al. 2023).</summary>
    Uniform,

    /// <summary>t ~ sigmoid(N(mean, std²)) (Esser et al. 2024, SD3 §3.1).</summary>
    LogitNormal,
}

/// <summary><c>kind: trajectory</c>: stage 1, the student learns the teacher's average velocity.</summary>
public sealed class TrajectoryStageConfig : StageConfig
{
    /// <summary>The trajectory distiller component (e.g. meanflow).</summary>
    [Required, ComponentOf(typeof(ITrajectoryDistiller))]
    public ComponentConfig? Distiller { get; set; }

    /// <summary>
    /// The student's architecture, given as a teacher component (e.g. <c>{ "type": "mlp", "options": { "hidden": 32 } }</c>),
    /// trained from that network's random initialisation: for capacity studies (the student narrower or wider than the
    /// teacher). Unset: the student starts as the teacher (same architecture and weights, zero <c>t - r</c> embedder).
    /// <value>Default: unset.</value>
    /// </summary>
    [ComponentOf(typeof(ITeacher))]
    public ComponentConfig? Student { get; set; }

    /// <summary>Loop and optimiser settings.</summary>
    public TrainingOptions Training { get; set; } = new();

    /// <summary>
    /// Student weights (<c>student-&lt;stage&gt;.safetensors</c> of an earlier run) to use instead of training this stage,
    /// e.g. to vary stage 2 on one stage-1 student. <value>Default: unset.</value>
    /// </summary>
    public string? LoadFrom { get; set; }
}

/// <summary><c>kind: distribution</c>: stage 2, distribution matching with an optional adversarial term.</summary>
public sealed class DistributionStageConfig : StageConfig
{
    /// <summary>
    /// Where the generator starts: <c>previous</c> (the latest earlier stage's student),
    /// <c>teacher</c> (the teacher with a zero <c>t - r</c> embedder: DMD without TD initialisation)
    /// or the key of an earlier stage. <value>Default "previous".</value>
    /// </summary>
    [Required]
    public string Generator { get; set; } = "previous";

    /// <summary>Sampling steps of the generator during training (1: one-step generator). <value>Default 1.</value></summary>
    [Range(1, 64)]
    public int GeneratorNfe { get; set; } = 1;

    /// <summary>The distribution matcher (e.g. dmd).</summary>
    [Required, ComponentOf(typeof(IDistributionMatcher))]
    public ComponentConfig? Matcher { get; set; }

    /// <summary>The discriminator (e.g. awd, gap); omit for DMD alone.</summary>
    [ComponentOf(typeof(IDiscriminator))]
    public ComponentConfig? Discriminator { get; set; }

    /// <summary>Weight of the generator's adversarial loss. <value>Default 0.01.</value></summary>
    [Range(0.0, 1e6)]
    public double AdversarialWeight { get; set; } = 0.01;

    /// <summary>Trajectory loss kept as a regulariser (weight <see cref="RegularizerWeight"/>); omit for none.</summary>
    [ComponentOf(typeof(ITrajectoryDistiller))]
    public ComponentConfig? Regularizer { get; set; }

    /// <summary>Weight of the regulariser. <value>Default 0.</value></summary>
    [Range(0.0, 1e6)]
    public double RegularizerWeight { get; set; }

    /// <summary>Generator loop and optimiser settings (steps are iterations).</summary>
    public TrainingOptions Training { get; set; } = new();
}

/// <summary><c>kind: evaluation</c>: sample every model, compute metrics, write the report.</summary>
public sealed class EvaluationStageConfig : StageConfig, IValidatableObject
{
    /// <summary>Samples per evaluated model (and per reference set). <value>Default 5000.</value></summary>
    [Range(16, 10_000_000)]
    public int Samples { get; set; } = 5000;

    /// <summary>Teacher NFE grid. <value>Default 1, 2, 4, 8, 16, 32, 64, 128.</value></summary>
    public List<int> TeacherNfe { get; set; } = [];

    /// <summary>Student NFE grid. <value>Default 1, 2.</value></summary>
    public List<int> StudentNfe { get; set; } = [];

    /// <summary>Teacher ODE solver: euler or heun (Heun's NFE is twice its steps). <value>Default "euler".</value></summary>
    [RegularExpression("^(euler|heun)$", ErrorMessage = "must be euler or heun")]
    public string TeacherSolver { get; set => field = ConfigValues.Lower(value, v => v is "euler" or "heun"); } = "euler";

    /// <summary>CFG scale of teacher sampling (match the distillation target's). <value>Default 1.</value></summary>
    [Range(0.0, 100.0)]
    public double TeacherGuidanceScale { get; set; } = 1.0;

    /// <summary>Random projections of the sliced Wasserstein distance. <value>Default 256.</value></summary>
    [Range(1, 100_000)]
    public int Projections { get; set; } = 256;

    /// <summary>Write scatter plots and loss curves. <value>Default true.</value></summary>
    public bool Plots { get; set; } = true;

    /// <summary>Seed of the evaluation noise (shared by every model). <value>Default 1234.</value></summary>
    public long Seed { get; set; } = 1234;

    /// <summary>Samples generated per forward batch (bounds memory). <value>Default 500.</value></summary>
    [Range(1, 1_000_000)]
    public int BatchSize { get; set; } = 500;

    /// <summary>Images per class row in the sample grids (image data). <value>Default 10.</value></summary>
    [Range(1, 64)]
    public int GridColumns { get; set; } = 10;

    /// <summary>The classifier behind FD and class accuracy (image data).</summary>
    public ClassifierOptions Classifier { get; set; } = new();

    /// <summary>The teacher NFE grid with defaults applied.</summary>
    public IReadOnlyList<int> EffectiveTeacherNfe => TeacherNfe.Count > 0 ? TeacherNfe : [1, 2, 4, 8, 16, 32, 64, 128];

    /// <summary>The student NFE grid with defaults applied.</summary>
    public IReadOnlyList<int> EffectiveStudentNfe => StudentNfe.Count > 0 ? StudentNfe : [1, 2];

    /// <inheritdoc/>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (TeacherNfe.Any(n => n < 1 || n > 4096))
            yield return new ValidationResult("every entry must be in 1..4096.", [nameof(TeacherNfe)]);
        if (StudentNfe.Any(n => n < 1 || n > 64))
            yield return new ValidationResult("every entry must be in 1..64.", [nameof(StudentNfe)]);
        // A repeated NFE would be evaluated twice and counted as two runs in a comparison's mean and spread.
        foreach (var (list, name) in new[] { (TeacherNfe, nameof(TeacherNfe)), (StudentNfe, nameof(StudentNfe)) })
            if (list.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1) is { } repeated)
                yield return new ValidationResult($"NFE {repeated.Key} is listed {repeated.Count()} times; list each NFE once.", [name]);
    }
}

/// <summary>The evaluation classifier of image data (trained once per data set and settings, then cached).</summary>
public sealed class ClassifierOptions
{
    /// <summary>Folder of cached classifiers, relative to the current directory. <value>Default "runs/.cache".</value></summary>
    [Required]
    public string CacheDir { get; set; } = "runs/.cache";

    /// <summary>Training epochs over the training split. <value>Default 3.</value></summary>
    [Range(0.001, 1000.0)]
    public double Epochs { get; set; } = 3;

    /// <summary>Batch size. <value>Default 128.</value></summary>
    [Range(1, 100_000)]
    public int BatchSize { get; set; } = 128;

    /// <summary>Adam learning rate. <value>Default 1e-3.</value></summary>
    [Range(1e-8, 1.0)]
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Seed of its training. <value>Default 0.</value></summary>
    public long Seed { get; set; }

    /// <summary>Test accuracy below which the report warns that FD and class accuracy are unreliable. <value>Default 0.9.</value></summary>
    [Range(0.0, 1.0)]
    public double MinAccuracy { get; set; } = 0.9;
}

/// <summary>Values from a fixed list, matched without regard to case.</summary>
internal static class ConfigValues
{
    /// <summary>
    /// <paramref name="value"/> in lower case when that is allowed; otherwise as written, so that the validation error quotes
    /// what the user typed.
    /// </summary>
    internal static string Lower(string? value, Func<string, bool> allowed)
    {
        if (value is null) return null!;
        string lower = value.ToLowerInvariant();
        return allowed(lower) ? lower : value;
    }
}
