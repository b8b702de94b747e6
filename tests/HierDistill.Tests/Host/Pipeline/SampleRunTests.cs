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
            "stages:evaluate:teacherNfe=[1, 2, 4, 8]",
            .. extra,
        ];
        var code = new HostApplication(console).Run(config, shrink, overwrite: true, CancellationToken.None);
        return (code, writer.ToString());
    }

    [Fact]
    public void The_main_job_shrunk_runs_end_to_end_and_writes_the_whole_run_folder()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        var (code, console) = Run(TestPaths.Sample("toy2d/hd.json"), output);
        Assert.True(code == 0, console + File.ReadAllText(Path.Combine(output, "log.txt")));
        foreach (var f in new[] { "report.md", "metrics.json", "metrics.jsonl", "samples.png", "losses.png", "config.resolved.json", "log.txt",
                                  "run.json", "teacher.safetensors", "student-structure.safetensors", "student-detail.safetensors" })
            Assert.True(File.Exists(Path.Combine(output, f)), $"{f} missing");
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(output, "tensorboard"), "events.out.tfevents.*", SearchOption.AllDirectories));
        // config.resolved.json lists the stages in the order they ran (not sorted by name: detail, evaluate, structure, teacher).
        using (var ordered = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "config.resolved.json"))))
            Assert.Equal(["teacher", "structure", "detail", "evaluate"], ordered.RootElement.GetProperty("stages").EnumerateObject().Select(p => p.Name));

        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "metrics.json")));
        // Throughput of every training stage: steps and batch as configured, samples/s = steps × batch / seconds.
        var stages = metrics.RootElement.GetProperty("stages").EnumerateArray().ToList();
        Assert.Equal([("teacher", 40L, 64), ("structure", 10L, 32), ("detail", 10L, 32)],
            stages.Select(x => (x.GetProperty("stage").GetString()!, x.GetProperty("steps").GetInt64(), x.GetProperty("batch_size").GetInt32())));
        foreach (var x in stages)
        {
            // seconds is written to 0.001 s and samples_per_s to 0.1: the exact seconds lie within ±0.0005 of the written ones
            // (a stage of 10 steps takes ~0.02 s here, so the rounding alone moves samples/s by up to ~2.5 %).
            double samples = x.GetProperty("steps").GetInt64() * x.GetProperty("batch_size").GetInt32(), seconds = x.GetProperty("seconds").GetDouble();
            Assert.InRange(x.GetProperty("samples_per_s").GetDouble(), samples / (seconds + 0.0005) - 0.05, samples / Math.Max(1e-9, seconds - 0.0005) + 0.05);
        }
        string report = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains("ms/step", report);
        // How the run was made: the config and every --set, as given.
        Assert.Contains($"- config: `{TestPaths.Sample("toy2d/hd.json")}` with `--set run:outputDir={output}` `--set run:logEvery=5` " +
                        "`--set stages:teacher:teacher:options:hidden=32`", report);
        // The data row samples nothing: no NFE, no time.
        Assert.Matches(@"\| data \| data \| [^|]+ \| - \|[^\n]*\| - \|", report);
        var models = metrics.RootElement.GetProperty("models").EnumerateArray()
            .Select(m => (Name: m.GetProperty("name").GetString(), Nfe: m.GetProperty("nfe").GetInt32(), Metrics: m.GetProperty("metrics"))).ToList();
        Assert.Equal(
            [("data", 0), ("teacher", 1), ("teacher", 2), ("teacher", 4), ("teacher", 8), ("structure", 1), ("structure", 2), ("detail", 1), ("detail", 2)],
            models.Select(m => (m.Name!, m.Nfe)));
        foreach (var m in models)
            foreach (var key in new[] { "sw2_data", "sw2_teacher", "mmd2_data", "mmd2_teacher", "modes_covered", "mode_mass_tv" })
                Assert.True(m.Metrics.TryGetProperty(key, out _), $"{m.Name} lacks {key}");

        using var status = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "run.json")));
        Assert.Equal("finished", status.RootElement.GetProperty("status").GetString());
        string resolvedPath = Path.Combine(output, "config.resolved.json");
        using var resolved = JsonDocument.Parse(File.ReadAllText(resolvedPath));
        var versions = resolved.RootElement.GetProperty("provenance").GetProperty("versions");
        Assert.Equal("0.107.0", versions.GetProperty("torchsharp").GetString());
        Assert.Contains("libtorch", versions.GetProperty("libtorch").GetString());
        Assert.Equal(6, versions.GetProperty("plugins").EnumerateObject().Count());
        // defaults are filled in: meanflow's adaptive-weight constant was not in the sample
        Assert.Equal(0.01, resolved.RootElement.GetProperty("stages").GetProperty("structure")
            .GetProperty("distiller").GetProperty("options").GetProperty("adaptiveWeightEpsilon").GetDouble());
        // and the resolved config is itself a valid config that reproduces the run
        var writer = new StringWriter();
        Assert.Equal(ExitCodes.Ok, new HostApplication(TestConsole(writer)).Validate(resolvedPath, []));
    }

    [Theory]
    [InlineData("consistency", "{ \"type\": \"consistency\", \"options\": { \"tangentNormalization\": true, \"tangentWarmupSteps\": 5 } }")]
    [InlineData("progressive", "{ \"type\": \"progressive\", \"options\": { \"startSteps\": 8 } }")]
    public void Stage_two_runs_unchanged_on_a_consistency_or_progressive_student(string name, string distiller)
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        var (code, console) = Run(TestPaths.Sample("toy2d/hd.json"), output, $"stages:structure:distiller={distiller}");
        Assert.True(code == 0, console + File.ReadAllText(Path.Combine(output, "log.txt")));
        foreach (var f in new[] { "student-structure.safetensors", "student-detail.safetensors", "report.md" })
            Assert.True(File.Exists(Path.Combine(output, f)), $"{f} missing");
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "metrics.json")));
        var models = metrics.RootElement.GetProperty("models").EnumerateArray().ToList();
        var structure = models.Where(m => m.GetProperty("name").GetString() == "structure").ToList();
        var detail = models.Where(m => m.GetProperty("name").GetString() == "detail").ToList();
        Assert.Equal([1, 2], structure.Select(m => m.GetProperty("nfe").GetInt32()));
        Assert.Equal([1, 2], detail.Select(m => m.GetProperty("nfe").GetInt32()));
        Assert.All(structure, m => Assert.Equal(name, m.GetProperty("description").GetString()));
        Assert.All(detail, m => Assert.Equal("dmd + awd from structure", m.GetProperty("description").GetString()));
        Assert.All(structure.Concat(detail), m => Assert.True(double.IsFinite(m.GetProperty("metrics").GetProperty("sw2_data").GetDouble())));
    }

    [Fact]
    public void A_student_of_another_width_starts_from_random_weights_instead_of_the_teacher()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        var (code, console) = Run(TestPaths.Sample("toy2d/hd.json"), output,
            "stages:structure:student={\"type\":\"mlp\",\"options\":{\"hidden\":16,\"depth\":2,\"tokenChannels\":8}}");
        Assert.True(code == 0, console + File.ReadAllText(Path.Combine(output, "log.txt")));
        var student = TorchSharp.PyBridge.Safetensors.LoadStateDict(Path.Combine(output, "student-structure.safetensors"));
        var teacher = TorchSharp.PyBridge.Safetensors.LoadStateDict(Path.Combine(output, "teacher.safetensors"));
        // The teacher has hidden 32 (the shrunk preset), the student 16; the detail stage fine-tunes the 16-wide student.
        Assert.Contains(teacher.Values, t => t.shape.Contains(32));
        Assert.DoesNotContain(student.Values, t => t.shape.Contains(32));
        Assert.Contains(student.Values, t => t.shape.Contains(16));
        var detail = TorchSharp.PyBridge.Safetensors.LoadStateDict(Path.Combine(output, "student-detail.safetensors"));
        Assert.Equal(student.Keys.Order(), detail.Keys.Order());
        Assert.Contains("a fresh mlp student (random initialisation)", File.ReadAllText(Path.Combine(output, "log.txt")));
    }

    [Fact]
    public void Probe_writes_the_teachers_velocity_on_fixed_inputs_that_the_same_network_reproduces()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        var (code, console) = Run(TestPaths.Sample("toy2d/hd.json"), output, "stages:structure:enabled=false", "stages:detail:enabled=false", "stages:evaluate:enabled=false");
        Assert.True(code == 0, console);
        string[] shrink = ["stages:teacher:teacher:options:hidden=32", "stages:teacher:teacher:options:depth=2", "stages:teacher:teacher:options:tokenChannels=8"];
        var writer = new StringWriter();
        string probePath = folder.File("probe.safetensors");
        Assert.Equal(0, new HostApplication(TestConsole(writer)).Probe(TestPaths.Sample("toy2d/hd.json"), shrink,
            Path.Combine(output, "teacher.safetensors"), probePath, 6));
        Assert.Contains("probe written", writer.ToString());

        var probe = TorchSharp.PyBridge.Safetensors.LoadStateDict(probePath);
        Assert.Equal([6L, 2L], probe["z"].shape);
        Assert.Equal([0L, 1, 2, 0, 1, 2], probe["labels"].data<long>().ToArray()); // two classes and the null label, cycling
        // The same weights in a network built here give the same velocity.
        var spec = new HierDistill.Abstractions.Data.DataSpec("ring8", [2], 2);
        using var network = new HierDistill.Plugins.Teachers.Networks.MlpVelocityNetwork(
            new HierDistill.Plugins.Teachers.Networks.MlpOptions { Hidden = 32, Depth = 2, TokenChannels = 8 }, spec);
        HierDistill.Host.Storage.WeightsFile.Load(network, Path.Combine(output, "teacher.safetensors"));
        network.eval();
        using (TorchSharp.torch.no_grad())
            Assert.Equal(probe["velocity"].data<float>().ToArray(), network.Velocity(probe["z"], probe["t"], probe["labels"]).data<float>().ToArray());

        writer = new StringWriter();
        Assert.Equal(ExitCodes.Failed, new HostApplication(TestConsole(writer)).Probe(TestPaths.Sample("toy2d/hd.json"), [], Path.Combine(output, "teacher.safetensors"), probePath, 6));
        Assert.Contains("in the file but", writer.ToString()); // the sample's full-size teacher does not fit the shrunk weights

        writer = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(TestConsole(writer)).Probe(TestPaths.Sample("toy2d/hd.json"), [], folder.File("none.safetensors"), probePath, 6));
        Assert.Contains("--weights: weights file not found:", writer.ToString());
        // The run folder given as --weights names its weights files; a run's weights as --out are not written over.
        writer = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(TestConsole(writer)).Probe(TestPaths.Sample("toy2d/hd.json"), shrink, output, probePath, 6));
        Assert.Contains($"--weights {output} is a folder; name a weights file in it: teacher.safetensors.", writer.ToString().ReplaceLineEndings(""));
        string teacherWeights = Path.Combine(output, "teacher.safetensors");
        byte[] before = File.ReadAllBytes(teacherWeights);
        writer = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(TestConsole(writer)).Probe(TestPaths.Sample("toy2d/hd.json"), shrink, probePath, teacherWeights, 6));
        Assert.Contains($"--out {teacherWeights} exists and holds other tensors than a probe's (z, t, labels, velocity), e.g. a run's weights; probe " +
                        "replaces only files it wrote. Name another file.", writer.ToString().ReplaceLineEndings(""));
        Assert.Equal(before, File.ReadAllBytes(teacherWeights));
        // Not a safetensors file, or a picture: refused.
        File.WriteAllText(folder.File("notes.txt"), "mine");
        writer = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(TestConsole(writer)).Probe(TestPaths.Sample("toy2d/hd.json"), shrink, teacherWeights, folder.File("notes.txt"), 6));
        Assert.Contains($"--out {folder.File("notes.txt")}: probe writes safetensors; name a .safetensors file.", writer.ToString().ReplaceLineEndings(""));
        File.WriteAllText(folder.File("notes.safetensors"), "mine");
        writer = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(TestConsole(writer)).Probe(TestPaths.Sample("toy2d/hd.json"), shrink, teacherWeights, folder.File("notes.safetensors"), 6));
        Assert.Contains("exists and is not a safetensors file probe wrote; probe replaces only files it wrote.", writer.ToString().ReplaceLineEndings(""));
        Assert.Equal("mine", File.ReadAllText(folder.File("notes.safetensors")));
        // A probe file is replaced.
        Assert.Equal(0, new HostApplication(TestConsole(writer)).Probe(TestPaths.Sample("toy2d/hd.json"), shrink, teacherWeights, probePath, 4));
        Assert.Equal([4L, 2L], TorchSharp.PyBridge.Safetensors.LoadStateDict(probePath)["z"].shape);
    }

    [Theory]
    [InlineData("{\"type\":\"dit\"}", "stages:structure:student: 'dit' cannot be a student for this data: the dit teacher needs images [C, H, W]")]
    [InlineData("{\"type\":\"gmm-exact\"}", "stages:structure:student: 'gmm-exact' is not a network")]
    public void A_student_that_cannot_work_is_a_config_error_before_anything_runs(string student, string message)
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        var (code, console) = Run(TestPaths.Sample("toy2d/hd.json"), output, $"stages:structure:student={student}");
        Assert.True(code == ExitCodes.InvalidConfig, console);
        Assert.Contains("configuration error(s) found by building the networks (nothing was run or written):", console);
        Assert.Contains(message, console);
        Assert.False(Directory.Exists(output));
        // validate finds it too
        var writer = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(TestConsole(writer)).Validate(TestPaths.Sample("toy2d/hd.json"), [$"stages:structure:student={student}"]));
        Assert.Contains(message, writer.ToString());
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
    public void A_bad_serilog_setting_is_a_validation_error_and_no_run_folder_is_created()
    {
        using var folder = TestPaths.NewTempFolder();
        var writer = new StringWriter();
        var app = new HostApplication(TestConsole(writer));
        Assert.Equal(ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("toy2d/hd.json"), ["Serilog:MinimumLevel=Verbos"]));
        Assert.Contains("Serilog: ", writer.ToString());
        Assert.Equal(ExitCodes.InvalidConfig, app.Run(TestPaths.Sample("toy2d/hd.json"), ["Serilog:MinimumLevel=Verbos", $"run:outputDir={folder.File("run")}"],
            overwrite: false, CancellationToken.None));
        Assert.False(Directory.Exists(folder.File("run")));
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

    [Fact]
    public void The_fashion_mnist_preset_shrunk_runs_end_to_end_with_fd_fmnist_and_sample_grids()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        var writer = new StringWriter();
        int code = new HostApplication(TestConsole(writer)).Run(TestPaths.Sample("fmnist/hd-cpu.json"),
        [
            $"run:outputDir={output}", "run:logEvery=2",
            "stages:teacher:teacher:options:preset=DiT-XT/4", "stages:teacher:teacher:options:hidden=32", "stages:teacher:teacher:options:depth=2",
            "stages:teacher:teacher:options:heads=2", "stages:teacher:teacher:options:frequencyDim=16",
            "stages:teacher:training:steps=4", "stages:teacher:training:batchSize=8",
            "stages:structure:training:steps=2", "stages:structure:training:batchSize=4",
            "stages:detail:training:steps=3", "stages:detail:training:batchSize=4", "stages:detail:discriminator:options:blocks:1=0",
            "stages:evaluate:samples=64", "stages:evaluate:batchSize=32", "stages:evaluate:gridColumns=2",
            "stages:evaluate:teacherNfe=[1, 2]",
            $"stages:evaluate:classifier:cacheDir={folder.File("cache")}", "stages:evaluate:classifier:epochs=0.01",
        ], overwrite: true, CancellationToken.None);
        Assert.True(code == 0, writer + File.ReadAllText(Path.Combine(output, "log.txt")));
        foreach (var f in new[] { "report.md", "metrics.json", "samples-data.png", "samples-teacher-nfe1.png", "samples-teacher-nfe2.png",
                                  "samples-structure-nfe1.png", "samples-detail-nfe1.png", "samples-detail-nfe2.png", "losses.png" })
            Assert.True(File.Exists(Path.Combine(output, f)), $"{f} missing");
        string report = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains("FD-FMNIST", report);
        Assert.Contains("not Inception FID", report);
        Assert.Contains("warning", report); // a 0.01-epoch classifier is below 90% test accuracy, and the report says so
        // The grids' caption names the rows; each grid has one row of gridColumns = 2 images per class: 10 rows and 2 columns of
        // 28-pixel images with 2-pixel padding (make_grid), upscaled 2×.
        Assert.Contains("one row per class, top to bottom 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, " +
                        "9 Ankle boot; 2 images per row.", report);
        using (var grid = SkiaSharp.SKBitmap.Decode(Path.Combine(output, "samples-detail-nfe1.png")))
            Assert.Equal((2 * (2 + 2 * 30), 2 * (2 + 10 * 30)), (grid.Width, grid.Height));
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "metrics.json")));
        var models = metrics.RootElement.GetProperty("models").EnumerateArray().ToList();
        Assert.Equal("fd_fmnist", metrics.RootElement.GetProperty("primary_metric").GetString());
        Assert.All(models, m =>
        {
            Assert.True(m.GetProperty("metrics").TryGetProperty("fd_fmnist", out var fd) && fd.GetDouble() >= 0);
            Assert.True(m.GetProperty("metrics").TryGetProperty("class_accuracy", out _));
        });
        Assert.Single(Directory.GetFiles(folder.File("cache"), "classifier-fashion-mnist-*.safetensors"));
    }
}
