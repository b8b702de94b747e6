using HierDistill.Abstractions.Data;
using HierDistill.Host;
using HierDistill.Host.Evaluation;
using HierDistill.Host.Storage;
using HierDistill.Plugins.Teachers.Networks;
using HierDistill.Tests.Host.Pipeline;
using HierDistill.Tests.Support;
using TorchSharp;
using TorchSharp.PyBridge;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host;

/// <summary><c>hierdistill sample</c> against samplers written out by hand on the same weights.</summary>
public class SampleCommandTests
{
    /// <summary>The toy sample's teacher architecture (samples/toy2d/hd.json: ring8, 2 classes), weights perturbed.</summary>
    private static MlpVelocityNetwork ToyTeacher()
    {
        var net = new MlpVelocityNetwork(new MlpOptions { Hidden = 128, Depth = 3, TokenChannels = 16 }, new DataSpec("ring8", [2], 2));
        using (no_grad()) foreach (var p in net.parameters()) p.add_(randn_like(p) * 0.1);
        return net;
    }

    private static (int Code, string Output) Sample(string weights, string output, int count, int? nfe = null, string? labels = null,
        double? guidance = null, long seed = 0, int? batch = null, string config = "toy2d/hd.json", CancellationToken cancellation = default,
        IReadOnlyList<string>? overrides = null)
    {
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Sample(TestPaths.Sample(config), overrides ?? [],
            new SampleRequest(weights, output, count, nfe, labels, guidance, seed, batch), cancellation);
        return (code, writer.ToString());
    }

    [Fact]
    public void A_students_one_step_samples_are_noise_minus_its_average_velocity_over_the_whole_interval()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        manual_seed(11);
        using var teacher = ToyTeacher();
        using var student = teacher.CreateStudent();
        using (no_grad()) foreach (var p in student.parameters()) p.add_(randn_like(p) * 0.05); // the t - r embedder too
        string weights = folder.File("student-detail.safetensors");
        WeightsFile.Save(student, weights);

        // 10 samples in batches of 4 (a partial last batch).
        var (code, output) = Sample(weights, folder.File("x.safetensors"), 10, seed: 3, batch: 4);
        Assert.True(code == ExitCodes.Ok, output);
        Assert.Contains("10 from the student, mean-1, NFE 1", output);
        var file = Safetensors.LoadStateDict(folder.File("x.safetensors"));
        Assert.Equal([0L, 1, 0, 1, 0, 1, 0, 1, 0, 1], file["labels"].data<long>().ToArray());
        Assert.Equal(randn([10, 2], generator: new Generator(3, CPU)).data<float>().ToArray(), file["noise"].data<float>().ToArray());
        student.eval();
        using (no_grad())
        {
            var e = file["noise"];
            var expected = e - student.AverageVelocity(e, zeros(10), ones(10), file["labels"]); // x = e - u(e, 0, 1)
            Assert.True(allclose(file["x"], expected, rtol: 1e-5, atol: 1e-6));
        }

        // Guidance is for the teacher (1, no guidance, is accepted); a picture of 2-D points is a scatter plot.
        (code, output) = Sample(weights, folder.File("x2.safetensors"), 4, guidance: 2);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("--guidance: these are a student's weights; a student trained on guided targets is sampled without guidance", output);
        (code, output) = Sample(weights, folder.File("x2.safetensors"), 4, guidance: 1);
        Assert.True(code == ExitCodes.Ok, output);
        // A generator distilled from the teacher directly (dmd-no-td.json: no trajectory stage) has the teacher's own student.
        (code, output) = Sample(weights, folder.File("x3.safetensors"), 4, config: "toy2d/dmd-no-td.json");
        Assert.True(code == ExitCodes.Ok, output);
        Assert.Contains("4 from the student, mean-1", output);
        (code, output) = Sample(weights, folder.File("points.png"), 50);
        Assert.True(code == ExitCodes.Ok, output);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(folder.File("points.png")).Take(4).ToArray());
    }

    [Fact]
    public void Teacher_weights_are_sampled_by_euler_steps_of_the_guided_velocity()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        manual_seed(12);
        using var teacher = ToyTeacher();
        string weights = folder.File("teacher.safetensors");
        WeightsFile.Save(teacher, weights);

        // Labels 1 and ∅ (2) in turn; guidance 2; two Euler steps.
        var (code, output) = Sample(weights, folder.File("x.safetensors"), 6, nfe: 2, labels: "1,2", guidance: 2, seed: 5);
        Assert.True(code == ExitCodes.Ok, output);
        Assert.Contains("6 from the teacher, euler-2, NFE 2, guidance 2", output);
        var file = Safetensors.LoadStateDict(folder.File("x.safetensors"));
        var labels = file["labels"];
        Assert.Equal([1L, 2, 1, 2, 1, 2], labels.data<long>().ToArray());
        teacher.eval();
        using (no_grad())
        {
            var nullLabels = full(6, 2L);
            Tensor Guided(Tensor z, double t)
            {
                var ts = full(6, (float)t);
                var unconditional = teacher.Velocity(z, ts, nullLabels);
                return unconditional + 2 * (teacher.Velocity(z, ts, labels) - unconditional); // v_w = v(∅) + w (v(c) - v(∅))
            }
            var z = file["noise"];
            z = z - 0.5 * Guided(z, 1.0);
            var expected = z - 0.5 * Guided(z, 0.5);
            Assert.True(allclose(file["x"], expected, rtol: 1e-5, atol: 1e-5));
        }
    }

    [Fact]
    public void Weights_are_sampled_where_a_training_components_plugin_is_not_installed()
    {
        // A run made with a third-party discriminator and matcher, sampled on a machine without their plugins: sample builds
        // neither, so it warns and goes on; a teacher it must build still has to be known.
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        using var teacher = ToyTeacher();
        using var student = teacher.CreateStudent();
        WeightsFile.Save(student, folder.File("student-detail.safetensors"));
        string weights = folder.File("student-detail.safetensors");
        var (code, output) = Sample(weights, folder.File("x.safetensors"), 4,
            overrides: ["stages:detail:discriminator:type=maxpool", "stages:detail:matcher:type=my-dmd"]);
        Assert.True(code == ExitCodes.Ok, output);
        Assert.Contains("stages:detail:discriminator:type: no loaded plugin registers the discriminator 'maxpool'; this command does not build it, " +
                        "so it goes on without it.", output);
        Assert.Contains("stages:detail:matcher:type: no loaded plugin registers the distribution matcher 'my-dmd';", output);
        (code, output) = Sample(weights, folder.File("y.safetensors"), 4, overrides: ["stages:teacher:teacher:type=my-mlp"]);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("stages:teacher:teacher:type: unknown teacher 'my-mlp'.", output);
        // validate and run build them: there it is an error.
        var writer = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(SampleRunTests.TestConsole(writer)).Validate(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:discriminator:type=maxpool"]));
        Assert.Contains("unknown discriminator 'maxpool'", writer.ToString());
    }

    [Fact]
    public void Image_weights_are_sampled_where_the_data_is_not_installed()
    {
        // A DiT-XT/4 teacher of the Fashion-MNIST config; the data folder does not exist here: its shape is all sampling needs.
        using var folder = TestPaths.NewTempFolder();
        manual_seed(5);
        using (var teacher = new DiTVelocityNetwork(new DiTOptions { Preset = "DiT-XT/4" }, new DataSpec("fashion-mnist", [1, 28, 28], 10)))
            WeightsFile.Save(teacher, folder.File("teacher.safetensors"));
        var (code, output) = Sample(folder.File("teacher.safetensors"), folder.File("x.safetensors"), 3, nfe: 2, labels: "7", config: "fmnist/hd-cpu.json",
            overrides: ["data:options:folder=/nonexistent/fmnist", "stages:teacher:teacher:options:preset=DiT-XT/4"]);
        Assert.True(code == ExitCodes.Ok, output);
        var x = Safetensors.LoadStateDict(folder.File("x.safetensors"));
        Assert.Equal(new long[] { 3, 1, 28, 28 }, x["x"].shape);
        Assert.Equal(new long[] { 7, 7, 7 }, x["labels"].data<long>().ToArray());
        foreach (var t in x.Values) t.Dispose();
    }

    [Fact]
    public void Requests_that_cannot_be_met_name_the_problem()
    {
        using var folder = TestPaths.NewTempFolder();
        manual_seed(13);
        string weights = folder.File("small.safetensors");
        int tensors;
        double values;
        using (var small = new MlpVelocityNetwork(new MlpOptions { Hidden = 64, Depth = 3, TokenChannels = 16 }, new DataSpec("ring8", [2], 2)))
        {
            WeightsFile.Save(small, weights);
            (tensors, values) = (small.state_dict().Count, small.state_dict().Values.Sum(t => (double)t.numel()));
        }
        var (code, output) = Sample(weights, folder.File("x.png"), 4);
        // What the file holds, to recognise the network it came from.
        Assert.Contains($"(The file holds {tensors} tensors, {(values / 1e3).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)} k values, the first '",
            output.ReplaceLineEndings(""));
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("fits none of the networks of this config; sample with the config (and --set values) of the run that wrote it", output);
        // The teacher and its student fail for the same first tensor: one reason, said once, and the file named once.
        Assert.Contains("(its config.resolved.json). As the teacher and as the student: tensor 'net.x_embedder.weight' has shape [64, 2] in the file " +
                        "but [128, 2] in the module;", output.ReplaceLineEndings(""));
        Assert.DoesNotContain("(1)", output);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(output.ReplaceLineEndings(""), "small.safetensors"));
        Assert.DoesNotContain("not interchangeable", output); // another size: the teacher/student hint does not apply
        // Weights of another kind of network (a student's names): "the file has no tensor …", the file still named once.
        using (var student = new MlpAverageVelocityNetwork(new MlpOptions { Hidden = 64, Depth = 3, TokenChannels = 16 }, new DataSpec("ring8", [2], 2)))
            WeightsFile.Save(student, folder.File("student64.safetensors"));
        (code, output) = Sample(folder.File("student64.safetensors"), folder.File("x.png"), 4);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(output.ReplaceLineEndings(""), "student64.safetensors"));
        Assert.DoesNotContain(". as the", output.ReplaceLineEndings(""));
        // Names the networks lack: "the file has no tensor …" for both, the file named once.
        using (var linear = TorchSharp.torch.nn.Linear(2, 3)) WeightsFile.Save(linear, folder.File("linear.safetensors"));
        (code, output) = Sample(folder.File("linear.safetensors"), folder.File("x.png"), 4);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("As the teacher and as the student: the file has no tensor 'net.x_embedder.weight' (shape [128, 2]) that the module needs;",
            output.ReplaceLineEndings(""));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(output.ReplaceLineEndings(""), "linear.safetensors"));
        // A file that is no safetensors at all fails alike for every network: its own message, not "fits none of the networks".
        File.WriteAllBytes(folder.File("broken.safetensors"), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        (code, output) = Sample(folder.File("broken.safetensors"), folder.File("x.png"), 4);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.DoesNotContain("fits none", output);
        Assert.Contains("broken.safetensors", output);

        using (var teacher = ToyTeacher()) WeightsFile.Save(teacher, folder.File("teacher.safetensors"));
        (code, output) = Sample(folder.File("teacher.safetensors"), folder.File("x.jpg"), 4);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("write .png (a picture) or .safetensors", output);
        (code, output) = Sample(folder.File("teacher.safetensors"), folder.File("x.png"), 4, labels: "0,3");
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("--labels: '3' is not a label of mixture2d/ring8: use 0 to 1, or 2 for ∅ (unconditional).", output);
        (code, output) = Sample(folder.File("teacher.safetensors"), folder.File("teacher.safetensors"), 4);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("is the --weights file; writing the samples there would replace the weights", output);

        // --out is checked before anything is built: a weights file, a folder, a folder that cannot be written.
        (code, output) = Sample(folder.File("teacher.safetensors"), weights, 4);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("exists and holds other tensors than samples (x, labels, noise), e.g. a run's weights; sample replaces only files it wrote", output);
        // A run's figure (beside its run.json) is not written over; another picture in the folder, or the figure's name
        // elsewhere, is.
        string run = Directory.CreateDirectory(folder.File("run")).FullName;
        File.WriteAllText(Path.Combine(run, "run.json"), """{ "status": "finished" }""");
        File.WriteAllText(Path.Combine(run, "samples.png"), "the run's figure");
        (code, output) = Sample(folder.File("teacher.safetensors"), Path.Combine(run, "samples.png"), 4, nfe: 1);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains($"is a figure of the run in {run} (its report shows it); sample does not write over it. Name another file (e.g. " +
                        $"{Path.Combine(run, "sample-samples.png")}).", output.ReplaceLineEndings(""));
        Assert.Equal("the run's figure", File.ReadAllText(Path.Combine(run, "samples.png")));
        File.WriteAllText(Path.Combine(run, "mine.png"), "an earlier sample");
        Assert.Equal(ExitCodes.Ok, Sample(folder.File("teacher.safetensors"), Path.Combine(run, "mine.png"), 4, nfe: 1).Code);
        File.Delete(Path.Combine(run, "run.json"));
        Assert.Equal(ExitCodes.Ok, Sample(folder.File("teacher.safetensors"), Path.Combine(run, "samples.png"), 4, nfe: 1).Code);
        Directory.CreateDirectory(folder.File("pictures.png"));
        (code, output) = Sample(folder.File("teacher.safetensors"), folder.File("pictures.png"), 4);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("is a folder; name a file in it", output);
        (code, output) = Sample(folder.File("teacher.safetensors"), Path.Combine(folder.File("teacher.safetensors"), "x.png"), 4);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("cannot be written", output);
        (code, output) = Sample(folder.File("teacher.safetensors"), folder.File("x.png"), 2_000_000_000);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("--count 2000000000: the samples alone would take", output);
        // A samples file is replaced; Ctrl-C (a cancelled token) writes nothing and exits 130.
        Assert.Equal(ExitCodes.Ok, Sample(folder.File("teacher.safetensors"), folder.File("s.safetensors"), 4, nfe: 1).Code);
        Assert.Equal(ExitCodes.Ok, Sample(folder.File("teacher.safetensors"), folder.File("s.safetensors"), 5, nfe: 1).Code);
        Assert.Equal([5L, 2L], Safetensors.LoadStateDict(folder.File("s.safetensors"))["x"].shape);
        (code, output) = Sample(folder.File("teacher.safetensors"), folder.File("stopped.png"), 4, nfe: 1, cancellation: new CancellationToken(true));
        Assert.Equal(ExitCodes.Cancelled, code);
        Assert.Contains("Stopped; nothing was written.", output);
        Assert.False(File.Exists(folder.File("stopped.png")));
    }

    [Fact]
    public void Image_samples_are_written_as_a_grid_with_one_column_per_label()
    {
        using var folder = TestPaths.NewTempFolder();
        manual_seed(14);
        // The Fashion-MNIST CPU preset's teacher at the tiny DiT-XT/4 size, untrained.
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        string[] tiny = ["stages:teacher:teacher:options:preset=DiT-XT/4"];
        var (loaded, catalog, _) = app.Load(TestPaths.Sample("fmnist/hd-cpu.json"), tiny);
        Assert.NotNull(loaded);
        var (descriptor, options) = loaded!.Component("stages:teacher:teacher");
        using var provider = new ServiceCollection().BuildServiceProvider();
        var (dataDescriptor, dataOptions) = loaded.Component("data");
        var environment = new HierDistill.Abstractions.Plugins.RunEnvironment(CPU, 0, folder.Path);
        var source = (IDataSource)dataDescriptor.Create(new HierDistill.Abstractions.Plugins.ComponentContext(provider, environment, "data", null, null), dataOptions);
        var teacher = (HierDistill.Abstractions.Contracts.ITeacher)descriptor.Create(
            new HierDistill.Abstractions.Plugins.ComponentContext(provider, environment, "stages:teacher:teacher", source, null), options);
        using var network = teacher.Network!;
        WeightsFile.Save(network, folder.File("teacher.safetensors"));

        // 7 samples of labels 0, 7, 9 in turn: rows of 3, 2 and 2 images (the short rows padded blank), one row per label.
        writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Sample(TestPaths.Sample("fmnist/hd-cpu.json"), tiny,
            new SampleRequest(folder.File("teacher.safetensors"), folder.File("grid.png"), 7, 2, "0,7,9", null, 0, null));
        Assert.True(code == ExitCodes.Ok, writer.ToString());
        Assert.Contains("guidance 1.5", writer.ToString()); // the preset's evaluation scale
        using var bitmap = SkiaSharp.SKBitmap.Decode(folder.File("grid.png"));
        // make_grid: 3 columns × 3 rows of 28-pixel images with 2-pixel padding, upscaled 2×.
        Assert.Equal((3 * 30 + 2) * 2, bitmap.Width);
        Assert.Equal((3 * 30 + 2) * 2, bitmap.Height);
        // The padding of the second row's third cell is white (+1), unlike a sample.
        var cell = bitmap.GetPixel((2 + 2 * 30 + 14) * 2, (2 + 1 * 30 + 14) * 2);
        Assert.Equal((byte)255, cell.Red);

        // 70 samples of two labels: 35 per label, wrapped at 32 images a row into two rows each (the second holding 3, the
        // rest blank): 32 columns × 4 rows.
        code = new HostApplication(SampleRunTests.TestConsole(writer)).Sample(TestPaths.Sample("fmnist/hd-cpu.json"), tiny,
            new SampleRequest(folder.File("teacher.safetensors"), folder.File("wide.png"), 70, 1, "0,7", null, 0, null));
        Assert.True(code == ExitCodes.Ok, writer.ToString());
        using var wide = SkiaSharp.SKBitmap.Decode(folder.File("wide.png"));
        Assert.Equal(((32 * 30 + 2) * 2, (4 * 30 + 2) * 2), (wide.Width, wide.Height));
        // Label 0's second row: cell 3 is blank (its 3 samples fill cells 0-2); so is cell 31 of label 7's second row.
        Assert.Equal((byte)255, wide.GetPixel((2 + 3 * 30 + 14) * 2, (2 + 1 * 30 + 14) * 2).Red);
        Assert.Equal((byte)255, wide.GetPixel((2 + 31 * 30 + 14) * 2, (2 + 3 * 30 + 14) * 2).Red);
    }
}
