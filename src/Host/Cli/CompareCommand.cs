using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace HierDistill.Host;

/// <summary><c>compare</c> settings.</summary>
public sealed class CompareSettings : ConfigSettings
{
    /// <summary>Varied keys.</summary>
    [CommandOption("--vary <KEY=VALUES>")]
    [Description("Vary a config key over comma-separated values (repeatable; the variants are the cartesian product), e.g. " +
                 "stages:detail:discriminator:type=awd,gap. JSON lists and objects stay whole: 'stages:structure:distiller={\"type\":\"meanflow\"},{\"type\":\"consistency\"}' " +
                 "replaces the whole entry per variant.")]
    public string[] Vary { get; init; } = [];

    /// <summary>Runs per variant.</summary>
    [CommandOption("--seeds <N>")]
    [Description("Runs per variant, with run.seed = the base seed + 0 .. N-1 (default 1, or the comparison file's seeds).")]
    public int? Seeds { get; init; }

    /// <summary>The comparison folder.</summary>
    [CommandOption("--output <DIR>")]
    [Description("The comparison folder (default: the comparison file's outputDir, else runs/<comparison file name>; for a run config, runs/<run.name>-compare).")]
    public string? Output { get; init; }

    /// <summary>Replace runs the folder holds.</summary>
    [CommandOption("--overwrite")]
    [Description("Run every variant again, replacing runs the comparison folder already holds.")]
    public bool Overwrite { get; init; }

    /// <summary>Keep finished runs.</summary>
    [CommandOption("--resume")]
    [Description("Keep the finished runs the comparison folder already holds, continue stopped ones from their checkpoint and run the others (e.g. after Ctrl-C).")]
    public bool Resume { get; init; }

    /// <inheritdoc/>
    public override ValidationResult Validate()
    {
        if (Seeds is < 1) return ValidationResult.Error("--seeds must be ≥ 1.");
        if (Overwrite && Resume) return ValidationResult.Error("--overwrite and --resume exclude each other.");
        return ValidationResult.Success();
    }
}

/// <summary><c>compare</c>.</summary>
public sealed class CompareCommand : Command<CompareSettings>
{
    /// <inheritdoc/>
    public override int Execute(CommandContext context, CompareSettings settings, CancellationToken cancellationToken) =>
        CliConsoles.Application().Compare(settings.Config, settings.Vary, settings.Set, settings.Seeds, settings.Output,
            settings.Overwrite, settings.Resume, cancellationToken);
}
