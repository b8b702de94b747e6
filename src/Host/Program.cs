using System.ComponentModel;
using System.Runtime.InteropServices;
using HierDistill.Host;
using Spectre.Console;
using Spectre.Console.Cli;

// Ctrl-C / SIGTERM: stop at the next step boundary (a second Ctrl-C terminates at once).
using var cancellation = new CancellationTokenSource();
void StopRequested(string signal)
{
    if (cancellation.IsCancellationRequested) return;
    CliConsoles.Errors.WriteLine($"{signal}: stopping at the next step or batch (a run writes a checkpoint there and continues with " +
                                 "--resume). Ctrl-C again stops at once.");
    cancellation.Cancel();
}
Console.CancelKeyPress += (_, e) =>
{
    if (cancellation.IsCancellationRequested) return;
    e.Cancel = true;
    StopRequested("Ctrl-C");
};
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx =>
{
    ctx.Cancel = true;
    StopRequested("SIGTERM");
});

// Piped output (CI logs, `| less`): do not wrap tables and messages at 80 columns.
if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 240;

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("hierdistill");
    config.SetApplicationVersion(HierDistill.Host.Pipeline.PipelineRunner.HostVersion);
    // An unknown option (a typo such as --sett or --resum) is an error, not silently ignored. (Not Spectre's
    // UseStrictParsing: in 0.57 it turns an option given without its value into the value "__default_command".)
    config.SetInterceptor(new CheckParsedOptions());
    // Usage errors (unknown command or option, missing value) exit 2 like configuration errors.
    config.SetExceptionHandler((e, _) =>
    {
        CliConsoles.Errors.ErrorLine(UsageErrors.Explain(e.Message, args));
        CliConsoles.Errors.MarkupLine("Run [bold]hierdistill --help[/] (or [bold]hierdistill <command> --help[/]) for usage.");
        return ExitCodes.InvalidConfig;
    });
    config.AddCommand<RunCommand>("run")
        .WithDescription("Run a pipeline (teacher, trajectory distillation, distribution matching, evaluation) from a JSON config.")
        .WithExample("run", "samples/toy2d/hd.json")
        .WithExample("run", "samples/toy2d/hd.json", "--set", "stages:detail:enabled=false", "--set", "run.outputDir=runs/td-only")
        .WithExample("run", "samples/toy2d/hd.json", "--resume", "runs/toy2d-hd");
    config.AddCommand<ValidateCommand>("validate")
        .WithDescription("Validate a config (keys, types, ranges, component names and options; then its networks, built once on the CPU: " +
                         "discriminator blocks, students, loadFrom names and shapes) without running it; prints every error.")
        .WithExample("validate", "samples/toy2d/hd.json");
    config.AddCommand<CompareCommand>("compare")
        .WithDescription("Run variants of a config (--vary values, or the named variants of a comparison file) for several seeds, sharing one " +
                         "trained teacher, and write comparison.md and comparison.csv (mean ± std over seeds) and comparison.png.")
        .WithExample("compare", "samples/toy2d/compare.json")
        .WithExample("compare", "samples/toy2d/hd.json", "--vary", "stages:detail:discriminator:type=awd,gap", "--seeds", "3");
    config.AddCommand<ProbeCommand>("probe")
        .WithDescription("Evaluate a teacher's velocity on fixed inputs and save inputs and outputs as safetensors, to check another " +
                         "implementation of the network (e.g. a PyTorch port) against HierDistill.")
        .WithExample("probe", "samples/fmnist/hd-cpu.json", "--weights", "runs/fmnist-hd-cpu/teacher.safetensors", "--out", "probe.safetensors");
    config.AddCommand<SampleCommand>("sample")
        .WithDescription("Sample from a run's weights: a distilled student (one or a few steps) or the teacher (ODE solver with " +
                         "classifier-free guidance), written as a picture (.png) or as tensors (.safetensors).")
        .WithExample("sample", "samples/toy2d/hd.json", "--weights", "runs/toy2d-hd/student-detail.safetensors", "--out", "hd-1step.png")
        .WithExample("sample", "samples/fmnist/hd-cpu.json", "--weights", "runs/fmnist-hd-cpu/teacher.safetensors", "--nfe", "16", "--labels", "0,7", "--count", "16");
    config.AddCommand<PluginsCommand>("plugins")
        .WithDescription("List discovered plugins, their components, option types and defaults.")
        .WithExample("plugins")
        .WithExample("plugins", "--folder", "my-plugins");
});
return app.Run(args, cancellation.Token);

namespace HierDistill.Host
{
    /// <summary>Refuses options no command defines (Spectre.Console.Cli collects them in <c>Remaining</c> otherwise) and options given an empty value.</summary>
    internal sealed class CheckParsedOptions : ICommandInterceptor
    {
        /// <inheritdoc/>
        public void Intercept(CommandContext context, CommandSettings settings)
        {
            var unknown = context.Remaining.Parsed.Select(g => g.Key).FirstOrDefault();
            if (unknown is not null) throw new CommandLineException($"Unknown option '--{unknown.TrimStart('-')}'.");
            // `--resume ''` or `--weights ""` (an unset shell variable): the option's value is empty.
            foreach (var property in settings.GetType().GetProperties())
            {
                if (property.PropertyType != typeof(string) || property.GetValue(settings) is not "") continue;
                var option = property.GetCustomAttributes(typeof(CommandOptionAttribute), true).OfType<CommandOptionAttribute>().FirstOrDefault();
                if (option?.LongNames.FirstOrDefault() is { } name)
                    throw new CommandLineException($"{UsageErrors.NeedsValue("--" + name)} It was given an empty one ('').");
            }
        }
    }

    /// <summary>Usage errors of Spectre.Console.Cli in the user's terms.</summary>
    internal static partial class UsageErrors
    {
        /// <summary>
        /// "Failed to convert 'abc' to Nullable`1." (a value that is not a number for a numeric option) becomes
        /// "--seeds: 'abc' is not a whole number from 1 to 2147483647." (the option found before that value in <paramref name="args"/>); any
        /// other message is returned as it is.
        /// </summary>
        public static string Explain(string message, IReadOnlyList<string> args)
        {
            var missing = MissingValue().Match(message);
            if (missing.Success) return NeedsValue("--" + missing.Groups["name"].Value);
            // `--resume=`: an option with '=' and nothing after it.
            if (message == "Expected an option value." && args.FirstOrDefault(a => a.StartsWith("--") && a.EndsWith('=')) is { } empty)
                return NeedsValue(empty[..^1]);
            // `--overwrite=yes`: a flag given a value.
            if (message == "Flags cannot be assigned a value." && args.FirstOrDefault(a => a.StartsWith("--") && a.Contains('=')) is { } assigned)
                return $"{assigned[..assigned.IndexOf('=')]} is a flag and takes no value: write {assigned[..assigned.IndexOf('=')]} alone.";
            var extra = ExtraArgument().Match(message);
            if (extra.Success)
            {
                // `compare x.json --resume runs/x` (compare's --resume is a flag) or a second config file.
                string leftover = extra.Groups["value"].Value;
                int at = Enumerable.Range(1, Math.Max(0, args.Count - 1)).FirstOrDefault(i => args[i] == leftover, -1);
                string command = args.Count > 0 ? args[0] : "the command";
                if (at > 0 && Flags.Contains(args[at - 1]))
                    return $"{args[at - 1]} is a flag of {command} and takes no value; '{leftover}' is left over.";
                return $"Unexpected argument '{leftover}': {command} takes one config file; every other value belongs to an option (--set, --weights, …).";
            }
            var m = ConversionFailure().Match(message);
            if (!m.Success) return message;
            string value = m.Groups["value"].Value;
            // Options given this value (`--batch 1.5` or `--batch=1.5`), the numeric ones first: another option may carry the same
            // text, e.g. --weights 7x --batch 7x.
            var given = Enumerable.Range(1, Math.Max(0, args.Count - 1)).Where(i => args[i] == value && args[i - 1].StartsWith('-')).Select(i => args[i - 1])
                .Concat(args.Where(a => a.StartsWith('-') && a.EndsWith("=" + value, StringComparison.Ordinal)).Select(a => a[..a.IndexOf('=')]));
            string option = given.OrderBy(o => NumericOptions.ContainsKey(o) ? 0 : 1).FirstOrDefault("an option");
            string expected = NumericOptions.TryGetValue(option, out var type)
                ? type == typeof(int) ? "a whole number from 1 to 2147483647" : type == typeof(long) ? "a whole number" : "a number"
                : $"a {m.Groups["type"].Value} value";
            return $"{option}: '{value}' is not {expected}.";
        }

        /// <summary>"--resume needs a value: --resume &lt;RUN_FOLDER&gt;." for an option given without its value (or an empty one).</summary>
        public static string NeedsValue(string name) =>
            OptionValueNames.TryGetValue(name, out var valueName) ? $"{name} needs a value: {name} {valueName}." : $"{name} needs a value.";

        /// <summary>Every option of the commands by long name (<c>--seeds</c>), with its attribute and value type, read from the settings classes.</summary>
        private static readonly (string Name, CommandOptionAttribute Attribute, Type Type)[] Options = typeof(ConfigSettings).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(CommandSettings)))
            .SelectMany(t => t.GetProperties())
            .Select(p => (Attribute: p.GetCustomAttributes(typeof(CommandOptionAttribute), true).OfType<CommandOptionAttribute>().FirstOrDefault(),
                Type: Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType))
            .Where(o => o.Attribute is not null)
            .SelectMany(o => o.Attribute!.LongNames.Select(n => (Name: "--" + n, o.Attribute!, o.Type)))
            .ToArray();

        /// <summary>Every numeric option (<c>--seeds</c>, <c>--batch</c>, …) with its type.</summary>
        private static readonly Dictionary<string, Type> NumericOptions = Options
            .Where(o => o.Type == typeof(int) || o.Type == typeof(long) || o.Type == typeof(double))
            .DistinctBy(o => o.Name)
            .ToDictionary(o => o.Name, o => o.Type);

        /// <summary>The value placeholder of every option that takes one (<c>--resume</c>: <c>&lt;RUN_FOLDER&gt;</c>).</summary>
        private static readonly Dictionary<string, string> OptionValueNames = Options
            .Where(o => o.Attribute.ValueName is not null)
            .DistinctBy(o => o.Name)
            .ToDictionary(o => o.Name, o => $"<{o.Attribute.ValueName}>");

        [System.Text.RegularExpressions.GeneratedRegex(@"^Option '(?<name>[^']+)' is defined but no value has been provided\.$")]
        private static partial System.Text.RegularExpressions.Regex MissingValue();

        /// <summary>The options that take no value (<c>--overwrite</c>, compare's <c>--resume</c>).</summary>
        private static readonly HashSet<string> Flags = Options.Where(o => o.Type == typeof(bool)).Select(o => o.Name).ToHashSet();

        [System.Text.RegularExpressions.GeneratedRegex(@"^Could not match '(?<value>.*)' with an argument\.$")]
        private static partial System.Text.RegularExpressions.Regex ExtraArgument();

        [System.Text.RegularExpressions.GeneratedRegex(@"^Failed to convert '(?<value>.*)' to (?<type>[^.]+)\.$")]
        private static partial System.Text.RegularExpressions.Regex ConversionFailure();
    }

    /// <summary>A usage error found once the command line is parsed: an option no command defines, or an option given an empty value (exit 2, like other usage errors).</summary>
    internal sealed class CommandLineException(string message) : Exception(message);

    /// <summary>The consoles the CLI commands write to.</summary>
    internal static class CliConsoles
    {
        /// <summary>Standard error, for errors and warnings, so that `hierdistill run ... &gt; out.txt` still shows them.
        /// Never wrapped (a terminal wraps long lines itself): a command or path in a message stays one line to copy.</summary>
        public static IAnsiConsole Errors { get; } = StandardError();

        private static IAnsiConsole StandardError()
        {
            var errors = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            errors.Profile.Width = 100_000; // plain text lines only (ConsoleLines): nothing is padded to this width
            return errors;
        }

        /// <summary>A <see cref="HostApplication"/> writing results to standard output and errors to <see cref="Errors"/>.</summary>
        public static HostApplication Application() => new(AnsiConsole.Console, errors: Errors);
    }

    /// <summary>Settings shared by commands that read a config.</summary>
    public class ConfigSettings : CommandSettings
    {
        /// <summary>The JSON config.</summary>
        [CommandArgument(0, "<config>")]
        [Description("Path of the JSON config.")]
        public string Config { get; init; } = "";

        /// <summary>Overrides.</summary>
        [CommandOption("--set <KEY=VALUE>")]
        [Description("Override a config key (repeatable); levels separated by ':' or '.', e.g. stages:detail:training:steps=2000 or run.device=cpu.")]
        public string[] Set { get; init; } = [];
    }

    /// <summary><c>run</c> settings.</summary>
    public sealed class RunSettings : ConfigSettings
    {
        /// <summary>Replace an existing run folder.</summary>
        [CommandOption("--overwrite")]
        [Description("Replace run.outputDir if it already holds a run.")]
        public bool Overwrite { get; init; }

        [CommandOption("--resume <RUN_FOLDER>")]
        [Description("Continue a stopped run from its checkpoint.safetensors: the same config and --set values (easiest: RUN_FOLDER/config.resolved.json as the config); learning rates, gradClip and run.maxSkippedSteps may change. Bit-identical on CPU.")]
        public string? Resume { get; init; }
    }

    /// <summary><c>run</c>.</summary>
    public sealed class RunCommand : Command<RunSettings>
    {
        /// <inheritdoc/>
        public override int Execute(CommandContext context, RunSettings settings, CancellationToken cancellationToken) =>
            CliConsoles.Application().Run(settings.Config, settings.Set, settings.Overwrite, cancellationToken, settings.Resume);
    }

    /// <summary><c>validate</c>.</summary>
    public sealed class ValidateCommand : Command<ConfigSettings>
    {
        /// <inheritdoc/>
        public override int Execute(CommandContext context, ConfigSettings settings, CancellationToken cancellationToken) =>
            CliConsoles.Application().Validate(settings.Config, settings.Set);
    }

    /// <summary><c>plugins</c> settings.</summary>
    public sealed class PluginsSettings : CommandSettings
    {
        /// <summary>Extra plugin folders.</summary>
        [CommandOption("--folder <DIR>")]
        [Description("An extra plugin folder to search (repeatable).")]
        public string[] Folders { get; init; } = [];

        /// <summary>Skip the default folder.</summary>
        [CommandOption("--no-default")]
        [Description("Do not search the plugins folder beside the host.")]
        public bool NoDefault { get; init; }
    }

    /// <summary><c>plugins</c>.</summary>
    public sealed class PluginsCommand : Command<PluginsSettings>
    {
        /// <inheritdoc/>
        public override int Execute(CommandContext context, PluginsSettings settings, CancellationToken cancellationToken) =>
            CliConsoles.Application().ListPlugins(settings.Folders, !settings.NoDefault);
    }
}
