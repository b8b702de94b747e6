using System.ComponentModel;
using System.Reflection;
using System.Runtime.InteropServices;
using HierDistill.Host;
using Spectre.Console;
using Spectre.Console.Cli;

// Ctrl-C / SIGTERM: stop at the next step boundary (a second Ctrl-C terminates at once).
// Neither the source nor the SIGTERM registration is disposed: a SIGTERM that arrives while the process exits must still be
// ignored (with the default handler back, it would end the process with 143 instead of its exit code).
var cancellation = new CancellationTokenSource();
void StopRequested(string signal)
{
    if (cancellation.IsCancellationRequested) return;
    // A second SIGTERM is ignored (the first one's stop is under way); a second Ctrl-C (SIGINT) ends the process at once.
    CliConsoles.Errors.WriteLine($"{signal}: stopping at the next step or batch (a run writes a checkpoint there and continues with " +
                                 $"--resume). {(signal == "Ctrl-C" ? "Ctrl-C again" : "Ctrl-C (SIGINT)")} stops at once, without that checkpoint " +
                                 "(--resume then continues from the last periodic one).");
    cancellation.Cancel();
}
Console.CancelKeyPress += (_, e) =>
{
    if (cancellation.IsCancellationRequested) return;
    e.Cancel = true;
    StopRequested("Ctrl-C");
};
var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx =>
{
    ctx.Cancel = true;
    StopRequested("SIGTERM");
});

// Piped output (CI logs, `| less`, `> file`): do not wrap tables and messages at 80 columns, and drop the blanks Spectre pads
// every help and table line with to that width. No colours or live display, as before.
if (Console.IsOutputRedirected)
{
    AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(new TrailingSpaceTrimmer(Console.Out)),
        Ansi = AnsiSupport.No,
        ColorSystem = ColorSystemSupport.NoColors,
        Interactive = InteractionSupport.No,
    });
    AnsiConsole.Profile.Width = 240;
}

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
        .WithDescription("Validate a config (keys, types, ranges, component names and options; then its networks, built once on the CPU and " +
                         "tried on random inputs: the teacher's and discriminator's contracts, students, discriminator blocks, loadFrom names and " +
                         "shapes) without running it; prints every error.")
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
int exitCode = app.Run(args, cancellation.Token);
GC.KeepAlive(sigterm);
return exitCode;

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
            // `--resume ''` or `--weights "$W"` with W unset: an option's (or the config argument's) value is empty or blank.
            foreach (var property in settings.GetType().GetProperties())
            {
                if (property.GetCustomAttribute<EmptyMeansDefaultAttribute>() is not null) continue;
                string? blank = property.GetValue(settings) switch
                {
                    string text when string.IsNullOrWhiteSpace(text) => text,
                    string[] list => list.FirstOrDefault(string.IsNullOrWhiteSpace),
                    _ => null,
                };
                if (blank is null) continue;
                if (property.GetCustomAttribute<CommandOptionAttribute>()?.LongNames.FirstOrDefault() is { } name)
                    throw new CommandLineException($"{UsageErrors.NeedsValue("--" + name, context.Name)} It was given an empty one ('{blank}').");
                if (property.GetCustomAttribute<CommandArgumentAttribute>() is { } argument)
                    throw new CommandLineException($"The {argument.ValueName} argument is empty ('{blank}'): name the file, e.g. hierdistill {context.Name} samples/toy2d/hd.json.");
            }
        }
    }

    /// <summary>An option for which an empty value means its default (<c>sample --labels ''</c>: every class), not a usage error.</summary>
    [AttributeUsage(AttributeTargets.Property)]
    internal sealed class EmptyMeansDefaultAttribute : Attribute;

    /// <summary>Usage errors of Spectre.Console.Cli in the user's terms.</summary>
    internal static partial class UsageErrors
    {
        /// <summary>
        /// Spectre's usage errors for the command <c>args[0]</c> in the user's terms: an option without its value
        /// (<c>--resume</c> at the end, <c>--resume=</c>), a flag given a value (<c>--overwrite=yes</c>), a value nothing takes
        /// (after a flag, or a second config file), and "Failed to convert 'abc' to Nullable`1." (a value that is not a number
        /// for a numeric option) as "--seeds: 'abc' is not a whole number from 1 to 2147483647."; any other message is returned
        /// as it is.
        /// </summary>
        public static string Explain(string message, IReadOnlyList<string> args)
        {
            string command = args.Count > 0 ? args[0] : "";
            var options = OptionsOf(command);
            bool IsFlag(string name) => options.TryGetValue(name, out var o) && o.Type == typeof(bool);
            // `--name=…` arguments of this command's options.
            var assigned = args.Skip(1).Where(a => a.StartsWith("--", StringComparison.Ordinal) && a.Contains('='))
                .Select(a => (Name: a[..a.IndexOf('=')], Value: a[(a.IndexOf('=') + 1)..])).Where(a => options.ContainsKey(a.Name)).ToList();
            var unknown = UnknownCommand().Match(message);
            if (unknown.Success &&
                HierDistill.Host.Configuration.ConfigValidator.Suggest(unknown.Groups["name"].Value, Commands.Keys) is { } meant)
                return $"{message} Did you mean '{meant}'? Commands: {string.Join(", ", Commands.Keys.Order(StringComparer.Ordinal))}.";
            var missing = MissingValue().Match(message);
            if (missing.Success) return NeedsValue("--" + missing.Groups["name"].Value, command);
            if (message == "Expected an option value." && assigned.FirstOrDefault(a => a.Value.Length == 0) is { Name: not null } empty)
                return IsFlag(empty.Name) ? FlagTakesNoValue(empty.Name) : NeedsValue(empty.Name, command);
            if (message == "Flags cannot be assigned a value." && assigned.FirstOrDefault(a => IsFlag(a.Name)) is { Name: not null } flag)
                return FlagTakesNoValue(flag.Name);
            var extra = ExtraArgument().Match(message);
            if (extra.Success)
            {
                // `compare x.json --resume runs/x` (compare's --resume is a flag) or a second config file; the leftover is the last
                // argument with that text (the first may be the config itself).
                string leftover = extra.Groups["value"].Value;
                int at = Enumerable.Range(1, Math.Max(0, args.Count - 1)).LastOrDefault(i => args[i] == leftover, -1);
                if (at > 1 && IsFlag(args[at - 1]))
                    return $"{args[at - 1]} is a flag of {command} and takes no value; '{leftover}' is left over.";
                return $"Unexpected argument '{leftover}': {(command.Length == 0 ? "the command" : command)} takes one config file; every other " +
                       "value belongs to an option (--set, --weights, …).";
            }
            var m = ConversionFailure().Match(message);
            if (!m.Success) return message;
            string value = m.Groups["value"].Value;
            // Options given this value (`--batch 1.5` or `--batch=1.5`), the numeric ones first: another option may carry the same
            // text, e.g. --weights 7x --batch 7x.
            static bool Numeric(Type t) => t == typeof(int) || t == typeof(long) || t == typeof(double);
            var given = Enumerable.Range(1, Math.Max(0, args.Count - 1)).Where(i => args[i] == value && args[i - 1].StartsWith('-')).Select(i => args[i - 1])
                .Concat(assigned.Where(a => a.Value == value).Select(a => a.Name));
            string option = given.OrderBy(o => options.TryGetValue(o, out var t) && Numeric(t.Type) ? 0 : 1).FirstOrDefault("an option");
            string expected = options.TryGetValue(option, out var type) && Numeric(type.Type)
                ? type.Type == typeof(int) ? "a whole number from 1 to 2147483647" : type.Type == typeof(long) ? "a whole number" : "a number"
                : $"a {m.Groups["type"].Value} value";
            return $"{option}: '{value}' is not {expected}.";
        }

        private static string FlagTakesNoValue(string name) => $"{name} is a flag and takes no value: write {name} alone.";

        /// <summary>"--resume needs a value: --resume &lt;RUN_FOLDER&gt;." for an option of <paramref name="command"/> given without its value (or an empty one).</summary>
        public static string NeedsValue(string name, string command) =>
            OptionsOf(command).TryGetValue(name, out var o) && o.ValueName is { } valueName ? $"{name} needs a value: {name} <{valueName}>." : $"{name} needs a value.";

        /// <summary>The options of <paramref name="command"/> (<c>run</c>, <c>sample</c>, …) by long name (<c>--seeds</c>), with value type and value name; empty for an unknown command.</summary>
        private static IReadOnlyDictionary<string, (Type Type, string? ValueName)> OptionsOf(string command) =>
            Commands.TryGetValue(command, out var options) ? options : new Dictionary<string, (Type, string?)>();

        /// <summary>Every command's options, read from its settings class (<c>RunCommand : Command&lt;RunSettings&gt;</c> is <c>run</c>).</summary>
        private static readonly Dictionary<string, Dictionary<string, (Type Type, string? ValueName)>> Commands = typeof(ConfigSettings).Assembly.GetTypes()
            .Where(t => t is { IsAbstract: false, BaseType.IsGenericType: true } && t.BaseType.GetGenericTypeDefinition() == typeof(Command<>) && t.Name.EndsWith("Command"))
            .ToDictionary(t => t.Name[..^"Command".Length].ToLowerInvariant(), t => t.BaseType!.GetGenericArguments()[0].GetProperties()
                .Select(p => (Attribute: p.GetCustomAttribute<CommandOptionAttribute>(), Type: Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType))
                .Where(o => o.Attribute is not null)
                .SelectMany(o => o.Attribute!.LongNames.Select(n => (Name: "--" + n, o.Type, o.Attribute!.ValueName)))
                .ToDictionary(o => o.Name, o => (o.Type, o.ValueName)));

        [System.Text.RegularExpressions.GeneratedRegex(@"^Unknown command '(?<name>[^']*)'\.$")]
        private static partial System.Text.RegularExpressions.Regex UnknownCommand();

        [System.Text.RegularExpressions.GeneratedRegex(@"^Option '(?<name>[^']+)' is defined but no value has been provided\.$")]
        private static partial System.Text.RegularExpressions.Regex MissingValue();

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
        [Description("Replace run.outputDir if it already holds a run (kept in RUN_FOLDER/replaced-run/ until the new run finishes).")]
        public bool Overwrite { get; init; }

        [CommandOption("--resume <RUN_FOLDER>")]
        [Description("Continue a stopped run from its checkpoint.safetensors: the same config and --set values (easiest: RUN_FOLDER/config.resolved.json as the config); learning rates, gradClip, run.maxSkippedSteps and run.threads may change. Bit-identical on CPU.")]
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
