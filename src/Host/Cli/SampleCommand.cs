using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;
using HierDistill.Host.Evaluation;

namespace HierDistill.Host;

/// <summary>Settings of <c>hierdistill sample</c>.</summary>
public sealed class SampleSettings : ConfigSettings
{
    /// <summary>The weights to sample from.</summary>
    [CommandOption("--weights <FILE>")]
    [Description("Weights of a run: a student (student-<stage>.safetensors: one- or few-step sampling) or the teacher " +
                 "(teacher.safetensors: Euler/Heun with classifier-free guidance); which one is told from the file.")]
    public string? Weights { get; init; }

    /// <summary>Where to write the samples.</summary>
    [CommandOption("--out <FILE>")]
    [Description("Output file: .png (an image grid, one row per label, or a scatter plot for 2-D points) or .safetensors " +
                 "(x, labels, noise; an existing .safetensors is replaced only if sample wrote it). Default samples.png in the current folder.")]
    public string Out { get; init; } = "samples.png";

    /// <summary>Number of samples.</summary>
    [CommandOption("--count <N>")]
    [Description("Number of samples (default 64).")]
    public int Count { get; init; } = 64;

    /// <summary>Sampling steps.</summary>
    [CommandOption("--nfe <N>")]
    [Description("Network evaluations per sample: a student's steps (default 1); for the teacher, its solver's NFE (default: the " +
                 "evaluation stage's largest teacherNfe).")]
    public int? Nfe { get; init; }

    /// <summary>Class labels.</summary>
    [CommandOption("--labels <LIST>")]
    [Description("Comma-separated class labels the samples cycle through (default: every class in turn); the data's class count " +
                 "is the null label ∅ (unconditional).")]
    [EmptyMeansDefault]
    public string? Labels { get; init; }

    /// <summary>Guidance scale for teacher weights.</summary>
    [CommandOption("--guidance <W>")]
    [Description("Classifier-free guidance scale for teacher weights (default: the evaluation stage's teacherGuidanceScale); a " +
                 "student is sampled without guidance (1).")]
    public double? Guidance { get; init; }

    /// <summary>Noise seed.</summary>
    [CommandOption("--seed <N>")]
    [Description("Seed of the noise (default 0): the same seed and labels give the same noise on any device (the samples then agree to " +
                 "float rounding, which depends on the device and --batch).")]
    public long Seed { get; init; }

    /// <summary>Samples per forward pass.</summary>
    [CommandOption("--batch <N>")]
    [Description("Samples per batch (default: the evaluation stage's batchSize, else 256).")]
    public int? Batch { get; init; }

    /// <inheritdoc/>
    /// <remarks>A blank <c>--weights</c> is refused with the other blank values (CheckParsedOptions).</remarks>
    public override ValidationResult Validate() =>
        Weights is null ? ValidationResult.Error("--weights is required: --weights <FILE>, the .safetensors file to read.")
        : Count < 1 ? ValidationResult.Error("--count must be ≥ 1.")
        : Nfe is < 1 ? ValidationResult.Error("--nfe must be ≥ 1.")
        : Batch is < 1 ? ValidationResult.Error("--batch must be ≥ 1.")
        : Guidance is { } w && (!double.IsFinite(w) || w < 0) ? ValidationResult.Error("--guidance must be a number ≥ 0 (1: no guidance).")
        : ValidationResult.Success();
}

/// <summary><c>hierdistill sample</c>: see <see cref="HostApplication.Sample"/>.</summary>
public sealed class SampleCommand : Command<SampleSettings>
{
    /// <inheritdoc/>
    public override int Execute(CommandContext context, SampleSettings settings, CancellationToken cancellationToken) =>
        CliConsoles.Application().Sample(settings.Config, settings.Set, new SampleRequest(settings.Weights!, settings.Out, settings.Count,
            settings.Nfe, settings.Labels, settings.Guidance, settings.Seed, settings.Batch), cancellationToken);
}
