using System.Diagnostics;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Configuration;

/// <summary>
/// The CLI writes results to standard output and errors to standard error (so <c>hierdistill ... &gt; out.txt</c> still shows
/// the error, and a script can parse the output), and does not wrap long lines when its output is redirected.
/// </summary>
public class CliOutputStreamTests
{
    /// <summary>Runs the host in a child process with both streams redirected.</summary>
    private static (int Code, string Stdout, string Stderr) Cli(params string[] arguments)
    {
        var psi = new ProcessStartInfo("dotnet");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hierdistill.dll"));
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        return ChildProcess.Run(psi, TimeSpan.FromMinutes(2));
    }

    [Fact]
    public void A_config_error_goes_to_standard_error_unwrapped_and_nothing_to_standard_output()
    {
        using var folder = TestPaths.NewTempFolder();
        string config = folder.File("bad.json");
        File.WriteAllText(config, File.ReadAllText(TestPaths.Sample("toy2d/hd.json")));
        var (code, stdout, stderr) = Cli("validate", config, "--set", "stages:teacher:training:steps=-5");
        Assert.Equal(2, code);
        Assert.Equal("", stdout.Trim());
        Assert.Contains("configuration error(s)", stderr);
        // The message names the key; unwrapped, the whole error is one line of stderr.
        var line = stderr.Split('\n').Single(l => l.Contains("stages:teacher:training:steps"));
        Assert.Contains("-5", line);
    }

    [Fact]
    public void Piped_help_and_tables_carry_no_trailing_blanks()
    {
        // Spectre pads help and table cells to the console width (240 when piped); a file of `hierdistill plugins` was
        // mostly blanks. The text itself is kept: the commands of the help, the components and option rows of the listing.
        foreach (var (args, expected) in new[] { (new[] { "--help" }, "compare <config>"), (["plugins"], "awd (discriminator)"), (["run", "--help"], "--resume") })
        {
            var (code, stdout, _) = Cli(args);
            Assert.Equal(0, code);
            Assert.Contains(expected, stdout);
            var lines = stdout.Split('\n');
            Assert.DoesNotContain(lines, l => l.TrimEnd('\r').EndsWith(' '));
            Assert.Contains(lines, l => l.Length > 80); // still not wrapped at 80 columns
        }
    }

    [Fact]
    public void An_empty_labels_list_means_every_class()
    {
        // `--labels "$L"` with L unset samples every class in turn, as without --labels: it gets to the weights file.
        var (code, _, stderr) = Cli("sample", TestPaths.Sample("toy2d/hd.json"), "--weights", "/no/such/student.safetensors", "--labels", "", "--out", "x.png");
        Assert.NotEqual(0, code);
        Assert.DoesNotContain("--labels", stderr);
        Assert.Contains("/no/such/student.safetensors", stderr);
    }

    [Fact]
    public void An_unknown_option_is_a_command_line_error_on_standard_error_with_exit_2()
    {
        // Not ignored: a misspelt --set or --resume would otherwise run something else than asked.
        var (code, stdout, stderr) = Cli("validate", TestPaths.Sample("toy2d/hd.json"), "--sett", "run.seed=3");
        Assert.Equal(2, code);
        Assert.Equal("", stdout.Trim());
        Assert.Contains("Unknown option '--sett'", stderr);
        Assert.Contains("hierdistill --help", stderr);
        // A misspelt command gets the one it meant.
        (code, _, stderr) = Cli("rn", TestPaths.Sample("toy2d/hd.json"));
        Assert.Equal(2, code);
        Assert.Contains("Unknown command 'rn'. Did you mean 'run'? Commands: compare, plugins, probe, run, sample, validate.", stderr);
    }

    [Fact]
    public void An_option_without_its_value_or_a_value_without_its_option_is_a_command_line_error()
    {
        // Not taken as the value "__default_command" (what Spectre's strict parsing does in 0.57).
        foreach (var (args, expected) in new[]
                 {
                     (new[] { "run", TestPaths.Sample("toy2d/hd.json"), "--resume" }, "--resume needs a value: --resume <RUN_FOLDER>."),
                     (["validate", TestPaths.Sample("toy2d/hd.json"), "--set"], "--set needs a value: --set <KEY=VALUE>."),
                     (["sample", TestPaths.Sample("toy2d/hd.json"), "--weights"], "--weights needs a value: --weights <FILE>."),
                     // '=' with nothing after it; an empty value (an unset shell variable).
                     (["run", TestPaths.Sample("toy2d/hd.json"), "--resume="], "--resume needs a value: --resume <RUN_FOLDER>."),
                     (["run", TestPaths.Sample("toy2d/hd.json"), "--resume", ""],
                         "--resume needs a value: --resume <RUN_FOLDER>. It was given an empty one ('')."),
                     (["sample", TestPaths.Sample("toy2d/hd.json"), "--weights", "", "--out", "x.png"],
                         "--weights needs a value: --weights <FILE>. It was given an empty one ('')."),
                     (["probe", TestPaths.Sample("toy2d/hd.json"), "--out", "x.safetensors"], "--weights is required: --weights <FILE>, the .safetensors file to read."),
                     // A value after a flag, a flag given a value, a second config file.
                     (["compare", TestPaths.Sample("toy2d/compare.json"), "--resume", "runs/x"],
                         "--resume is a flag of compare and takes no value; 'runs/x' is left over."),
                     (["run", TestPaths.Sample("toy2d/hd.json"), "--overwrite=yes"], "--overwrite is a flag and takes no value: write --overwrite alone."),
                     (["validate", TestPaths.Sample("toy2d/hd.json"), "other.json"],
                         "Unexpected argument 'other.json': validate takes one config file; every other value belongs to an option"),
                     // Per command: compare's --resume is a flag, run's takes a folder; the flag named is the one given a value.
                     (["compare", TestPaths.Sample("toy2d/compare.json"), "--resume="], "--resume is a flag and takes no value: write --resume alone."),
                     (["run", TestPaths.Sample("toy2d/hd.json"), "--set=run.seed=3", "--overwrite=yes"], "--overwrite is a flag and takes no value: write --overwrite alone."),
                     (["compare", TestPaths.Sample("toy2d/compare.json"), "--resume", TestPaths.Sample("toy2d/compare.json")],
                         $"--resume is a flag of compare and takes no value; '{TestPaths.Sample("toy2d/compare.json")}' is left over."),
                     // Blank values, the config argument and list options too.
                     (["compare", TestPaths.Sample("toy2d/compare.json"), "--output", " "], "--output needs a value: --output <DIR>. It was given an empty one (' ')."),
                     (["plugins", "--folder", ""], "--folder needs a value: --folder <DIR>. It was given an empty one ('')."),
                     (["run", ""], "The config argument is empty (''): name the file, e.g. hierdistill run samples/toy2d/hd.json."),
                 })
        {
            var (code, stdout, stderr) = Cli(args);
            Assert.True(code == 2, $"{string.Join(' ', args)}: exit {code}\n{stdout}{stderr}");
            Assert.Contains(expected, stderr);
            Assert.DoesNotContain("__default_command", stdout + stderr);
        }
    }

    [Fact]
    public void Errors_and_warnings_are_not_wrapped_so_commands_in_them_copy_as_one_line()
    {
        // An unknown key whose message (the allowed keys) is longer than any console width.
        string key = "run." + new string('z', 300);
        var (code, _, stderr) = Cli("validate", TestPaths.Sample("toy2d/hd.json"), "--set", $"{key}=1");
        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n'), l => l.Contains("unknown key", StringComparison.Ordinal));
        Assert.Contains($"run:{new string('z', 300)}: unknown key. Allowed here: name, outputDir, device, seed,", line);
        Assert.EndsWith("maxSkippedSteps.", line.TrimEnd('\r'));
    }

    [Fact]
    public void A_value_that_is_not_a_number_names_the_option()
    {
        foreach (var (args, expected) in new[]
                 {
                     (new[] { "compare", TestPaths.Sample("toy2d/hd.json"), "--seeds", "abc" }, "--seeds: 'abc' is not a whole number from 1 to 2147483647."),
                     (["probe", TestPaths.Sample("toy2d/hd.json"), "--weights", "w.safetensors", "--batch=1.5"], "--batch: '1.5' is not a whole number from 1 to 2147483647."),
                     (["probe", TestPaths.Sample("toy2d/hd.json"), "--weights", "7x", "--batch", "7x"], "--batch: '7x' is not a whole number from 1 to 2147483647."),
                     (["sample", TestPaths.Sample("toy2d/hd.json"), "--weights", "x", "--batch=x"], "--batch: 'x' is not a whole number from 1 to 2147483647."),
                     (["sample", TestPaths.Sample("toy2d/hd.json"), "--weights", "w", "--guidance", "abc"], "--guidance: 'abc' is not a number."),
                     (["sample", TestPaths.Sample("toy2d/hd.json"), "--weights", "w", "--seed", "1.5"], "--seed: '1.5' is not a whole number."),
                 })
        {
            var (code, stdout, stderr) = Cli(args);
            Assert.True(code == 2, $"{string.Join(' ', args)}: exit {code}\n{stdout}{stderr}");
            Assert.Contains(expected, stderr);
            Assert.DoesNotContain("Nullable", stderr);
        }
    }

    [Fact]
    public void A_key_that_looks_like_an_emoji_code_is_printed_as_typed()
    {
        // Spectre markup turns ':zzz:' into an emoji; errors are written as plain text.
        var (code, _, stderr) = Cli("validate", TestPaths.Sample("toy2d/hd.json"), "--set", "run.zzz=1");
        Assert.Equal(2, code);
        Assert.Contains("run:zzz: unknown key", stderr);
    }

    [Fact]
    public void A_valid_config_is_reported_on_standard_output_with_nothing_on_standard_error()
    {
        var (code, stdout, stderr) = Cli("validate", TestPaths.Sample("toy2d/hd.json"));
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("is valid.", stdout);
        Assert.Equal("", stderr.Trim());
    }
}
