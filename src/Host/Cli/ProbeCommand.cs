using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace HierDistill.Host;

/// <summary>Settings of <c>hierdistill probe</c>.</summary>
public sealed class ProbeSettings : ConfigSettings
{
    /// <summary>The teacher's weights.</summary>
    [CommandOption("--weights <FILE>")]
    [Description("Teacher weights (teacher.safetensors of a run) to load into the config's teacher.")]
    public string? Weights { get; init; }

    /// <summary>Where to write the probe.</summary>
    [CommandOption("--out <FILE>")]
    [Description("The probe file to write (safetensors: z, t, labels, velocity); default probe.safetensors in the current folder.")]
    public string Out { get; init; } = "probe.safetensors";

    /// <summary>Probe batch size.</summary>
    [CommandOption("--batch <N>")]
    [Description("Number of probe inputs (default 8).")]
    public int Batch { get; init; } = 8;

    /// <inheritdoc/>
    /// <remarks>A blank <c>--weights</c> is refused with the other blank values (CheckParsedOptions).</remarks>
    public override ValidationResult Validate() =>
        Weights is null ? ValidationResult.Error("--weights is required: --weights <FILE>, the .safetensors file to read.")
        : Batch < 1 ? ValidationResult.Error("--batch must be ≥ 1.")
        : ValidationResult.Success();
}

/// <summary><c>hierdistill probe</c>: see <see cref="HostApplication.Probe"/>.</summary>
public sealed class ProbeCommand : Command<ProbeSettings>
{
    /// <inheritdoc/>
    public override int Execute(CommandContext context, ProbeSettings settings, CancellationToken cancellationToken) =>
        CliConsoles.Application().Probe(settings.Config, settings.Set, settings.Weights!, settings.Out, settings.Batch, cancellationToken);
}
