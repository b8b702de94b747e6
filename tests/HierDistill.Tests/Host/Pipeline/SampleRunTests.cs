using System.Text.Json;
using HierDistill.Host;
using HierDistill.Tests.Support;
using Spectre.Console;
using Xunit;

namespace HierDistill.Tests.Host.Pipeline;

/// <summary>The sample pipelines, shrunk (few steps, small sets), run end to end through the CLI's code path with the real plugins.</summary>
public class SampleRunTests
{
    internal static IAnsiConsole TestConsole(StringWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer), Interactive = InteractionSupport.No });
        console.Profile.Width = 400;
        return console;
    }

    private static (int Code, string Output) Run(string config, string outputDir, params string[] extra)
    {
        var writer = new StringWriter();
        var console = TestConsole(writer);
        string[] shrink =
        [
            $"run:outputDir={outputDir}",
            "run:logEvery=5",
            "stages:teacher:teacher:options:hidden=32",
            "stages:teacher:teacher:options:depth=2",
            "stages:teacher:teacher:options:tokenChannels=8",
            "stages:teacher:training:steps=40",
            "stages:teacher:training:batchSize=64",
            "stages:structure:training:steps=10",
            "stages:structure:training:batchSize=32",
            "stages:detail:training:steps=10",
            "stages:detail:training:batchSize=32",
            "stages:evaluate:samples=256",
            "stages:evaluate:teacherNfe:0=1",
            "stages:evaluate:teacherNfe:1=2",
            "stages:evaluate:teacherNfe:2=4",
            .. extra,
        ];
        // Arrays are merged by index: drop the remaining entries of the sample's teacher NFE list.
        var code = new HostApplication(console).Run(config, shrink, overwrite: true, CancellationToken.None);
        return (code, writer.ToString());
    }

    [Fact]
    public void The_main_job_shrunk_runs_end_to_end_and_writes_the_whole_run_folder()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        var (code, console) = Run(TestPaths.Sample("toy2d/hd.json"), output, "stages:evaluate:teacherNfe:3=8", "stages:evaluate:teacherNfe:4=8",
            "stages:evaluate:teacherNfe:5=8", "stages:evaluate:teacherNfe:6=8", "stages:evaluate:teacherNfe:7=8");
        Assert.True(code == 0, console + File.ReadAllText(Path.Combine(output, "log.txt")));
        foreach (var f in new[] { "report.md", "metrics.json", "metrics.jsonl", "samples.png", "losses.png", "config.resolved.json", "log.txt",
                                  "run.json", "teacher.safetensors", "student-structure.safetensors", "student-detail.safetensors" })
            Assert.True(File.Exists(Path.Combine(output, f)), $"{f} missing");
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(output, "tensorboard"), "events.out.tfevents.*", SearchOption.AllDirectories));

        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "metrics.json")));
        var models = metrics.RootElement.GetProperty("models").EnumerateArray()
            .Select(m => (Name: m.GetProperty("name").GetString(), Nfe: m.GetProperty("nfe").GetInt32(), Metrics: m.GetProperty("metrics"))).ToList();
        Assert.Equal(
            [("data", 0), ("teacher", 1), ("teacher", 2), ("teacher", 4), ("teacher", 8), ("teacher", 8), ("teacher", 8), ("teacher", 8), ("teacher", 8),
             ("structure", 1), ("structure", 2), ("detail", 1), ("detail", 2)],
            models.Select(m => (m.Name!, m.Nfe)));
        foreach (var m in models)
            foreach (var key in new[] { "sw2_data", "sw2_teacher", "mmd2_data", "mmd2_teacher", "modes_covered", "mode_mass_tv" })
                Assert.True(m.Metrics.TryGetProperty(key, out _), $"{m.Name} lacks {key}");

        using var status = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "run.json")));
        Assert.Equal("finished", status.RootElement.GetProperty("status").GetString());
        using var resolved = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "config.resolved.json")));
        var versions = resolved.RootElement.GetProperty("versions");
        Assert.Equal("0.107.0", versions.GetProperty("torchsharp").GetString());
        Assert.Contains("libtorch", versions.GetProperty("libtorch").GetString());
        Assert.Equal(5, versions.GetProperty("plugins").EnumerateObject().Count());
        // defaults are filled in: meanflow's adaptive-weight constant was not in the sample
        Assert.Equal(0.01, resolved.RootElement.GetProperty("config").GetProperty("stages").GetProperty("structure")
            .GetProperty("distiller").GetProperty("options").GetProperty("adaptiveWeightEpsilon").GetDouble());
    }

    [Fact]
    public void A_folder_holding_a_finished_run_is_refused_without_overwrite()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "run.json"), "{ \"status\": \"finished\" }");
        File.WriteAllText(Path.Combine(output, "report.md"), "keep me");
        var writer = new StringWriter();
        var console = TestConsole(writer);
        int code = new HostApplication(console).Run(TestPaths.Sample("toy2d/hd.json"), [$"run:outputDir={output}"], overwrite: false, CancellationToken.None);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("already holds a finished run", writer.ToString());
        Assert.Equal("keep me", File.ReadAllText(Path.Combine(output, "report.md")));
    }

    [Fact]
    public void Validate_prints_every_error_and_exits_2()
    {
        var writer = new StringWriter();
        var console = TestConsole(writer);
        int code = new HostApplication(console).Validate(TestPaths.Sample("toy2d/hd.json"), ["run:sed=1", "stages:detail:matcher:type=nope"]);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        string text = writer.ToString();
        Assert.Contains("2 configuration error(s)", text);
        Assert.Contains("run:sed: unknown key. Did you mean 'seed'?", text);
        Assert.Contains("stages:detail:matcher:type: unknown distribution matcher 'nope'.", text);
    }
}
