using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host;
using HierDistill.Host.Configuration;
using HierDistill.Host.Evaluation;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Training;
using HierDistill.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Pipeline;

/// <summary>Options of the <c>faulty-data</c> test data source and the <c>detached-matcher</c> test matcher.</summary>
public sealed class FaultyDataOptions
{
    /// <summary>The contract fault (see <see cref="FaultyData"/>); "none" for well-formed data.</summary>
    public string Fault { get; set; } = "none";

    /// <summary>Samples <c>[1, Size, Size]</c> images (in [-1, 1] unless a fault says otherwise) instead of 2-D points; 0: points.</summary>
    public int Size { get; set; }
}

/// <summary>
/// A data source with one contract fault, as a third-party plugin might have: 2-D points from 8 classes, or small images.
/// Every draw uses the generator it is given (the global one when null), except under the fault <c>unseeded</c>.
/// </summary>
internal sealed class FaultyData(string fault, int size = 0, int classes = 8) : IDataSource, IDisposable
{
    private readonly Random _own = new();
    // Drawn from the global stream when built (fixed random class centres, say): the same after the same seed.
    private readonly float _shift = fault == "built-random" ? rand(1).item<float>() : 0;
    private Tensor? _order;
    private long _cursor;
    private Tensor? _kept;

    /// <summary>How often Dispose was called.</summary>
    public int Disposals { get; private set; }

    public void Dispose()
    {
        Disposals++;
        if (fault == "dispose-throws") throw new IOException("the shard cache cannot be released");
    }

    public DataSpec Spec { get; } = new("faulty", size > 0 ? [1, size, size] : [2], classes);

    public Batch SampleTrain(int batchSize, Device device, Generator? generator = null) => Draw(batchSize, device, generator, train: true);

    public Batch SampleEvaluation(int count, Device device, Generator? generator = null) => Draw(count, device, generator, train: false);

    public int? TrainSize => 1000;

    public int? EvaluationSize => 500;

    private Batch Draw(int count, Device device, Generator? generator, bool train)
    {
        if (fault == "ignores-generator") generator = null; // the global stream: the evaluation's seeded sets would differ
        if (fault == "no-detach" && train)
        {
            // A data set built on first use and kept, but left in the caller's dispose scope: freed with the first step's.
            _kept ??= randn(1000, 2);
            return new Batch(_kept.narrow(0, 0, count).clone().to(device), zeros(count, ScalarType.Int64).to(device));
        }
        if (fault == "throws" && train) throw new IOException("shard 3 of /data/x is truncated");
        if (fault == "throws-named" && train) throw new IOException("data:options:folder: shard 3 of /data/x is truncated");
        if (fault == "no-evaluation" && !train) throw new InvalidOperationException("this data set has no held-out split");
        if (fault == "cursor" && train)
        {
            // Without replacement: one shuffled order of the 1000 samples, walked by a cursor (sample i is the point (i, -i)).
            _order ??= randperm(1000, generator: generator).MoveToOuterDisposeScope();
            var index = _order.narrow(0, _cursor % 1000, Math.Min(count, 1000 - _cursor % 1000));
            _cursor += index.shape[0];
            var points = stack([index, -index], 1).to_type(ScalarType.Float32) / 1000;
            return new Batch(points.to(device), (index % 8).to(device));
        }
        var x = size > 0 ? rand([count, 1, size, size], generator: generator, device: device) * 2 - 1 : randn([count, 2], generator: generator, device: device);
        var labels = randint(0, 8, [count], generator: generator, device: device);
        if (fault == "unseeded") x = x + _own.NextDouble();
        if (fault == "built-random") x = x + _shift;
        return fault switch
        {
            "no-channel" => new Batch(x.squeeze(1), labels),
            "float64" => new Batch(x.to_type(ScalarType.Float64), labels),
            "labels-int32" => new Batch(x, labels.to_type(ScalarType.Int32)),
            "labels-one-based" => new Batch(x, labels + 1),
            "nan" => new Batch(x.index_put_(tensor(float.NaN), tensor(new long[] { 3 })), labels),
            "evaluation-shape" when !train => new Batch(x.narrow(1, 0, 1), labels),
            "pixels-255" => new Batch((x + 1) * 127.5, labels),
            "pixels-01" => new Batch((x + 1) / 2, labels),
            _ => new Batch(x, labels),
        };
    }
}

/// <summary>
/// A distribution matcher whose generator loss is made from detached samples: without any gradient (<c>detached</c>), or with
/// a gradient to a tensor of its own but not to the samples (<c>unconnected</c>).
/// </summary>
internal sealed class DetachedMatcher(string fault) : IDistributionMatcher
{
    private readonly Tensor _scale = ones(1).requires_grad_(true);

    public IReadOnlyList<TrainableModule> AuxiliaryModules => [];

    public int GeneratorUpdateInterval => 1;

    public LossBreakdown AuxiliaryLoss(Tensor samples, Tensor labels, TrainingProgress progress) => new(zeros(1));

    public LossBreakdown GeneratorLoss(Tensor samples, Tensor labels, TrainingProgress progress) =>
        fault == "nan" ? new((samples * double.NaN).mean(), new Dictionary<string, Tensor> { ["dm"] = full(1, double.NaN) }) : new(fault switch
        {
            "unconnected" => (samples.detach().square() * _scale).mean(),
            "zero" => (samples * 0).sum(), // adds nothing on purpose, keeping the graph
            _ => samples.detach().square().mean(),
        });
}

/// <summary>
/// A trajectory distiller whose loss trains nothing (<c>detached</c>: no graph; <c>unconnected</c>: a graph that misses the
/// student) or that fails on its first batch (<c>throws</c>).
/// </summary>
internal sealed class DetachedDistiller(string fault) : ITrajectoryDistiller
{
    public LossBreakdown Loss(AverageVelocityNetwork student, ITeacher teacher, Batch batch, TrainingProgress progress)
    {
        if (fault == "throws") throw new InvalidOperationException("my target broke");
        var t = full([batch.Size], 0.5f);
        var u = student.AverageVelocity(batch.X, zeros_like(t), t, batch.Labels);
        return new(fault switch
        {
            "detached" => u.detach().square().mean(),
            "unconnected" => batch.X.detach().requires_grad_(true).square().mean(), // a graph, but not through the student
            _ => u.square().mean(),
        });
    }
}

internal sealed class FaultyDataPlugin : IHierDistillPlugin
{
    public void Register(IServiceCollection services)
    {
        services.AddDataSource<FaultyDataOptions>("faulty-data", "2-D points or small images with one contract fault (tests).",
            (_, o) => new FaultyData(o.Fault, o.Size));
        services.AddTrajectoryDistiller<FaultyDataOptions>("detached-distiller", "A stage-1 loss without gradient, or one that throws (tests).",
            (_, o) => new DetachedDistiller(o.Fault));
        services.AddDistributionMatcher<FaultyDataOptions>("detached-matcher", "A generator loss without gradient to the samples (tests).",
            (_, o) => new DetachedMatcher(o.Fault));
    }
}

/// <summary>
/// A data source that breaks IDataSource's contract is named with the fix before anything runs (the preflight's trial draws);
/// before, a missing channel was blamed on the teacher's forward, labels counted from 1 trained the last class as unconditional,
/// and pixels in [0, 255] or a source that ignores the seed went unnoticed. Also: a loss without gradient names its component,
/// images the evaluation classifier cannot take are refused before training, and a module none of whose few steps was finite
/// stops its stage. Serial with the other tests of the global random stream: the seed check reseeds it and draws twice, and a
/// test drawing from it in parallel would make well-formed data look unseeded.
/// </summary>
[Collection(nameof(GlobalRngTests))]
public class DataContractTests
{
    private const string Component = "'faulty-data' (HierDistill.Tests)";

    private static List<string> Warnings(string fault, int size = 0, bool evaluation = true)
    {
        var warnings = new List<string>();
        DataContract.Try(Component, new FaultyData(fault, size), () => new FaultyData(fault, size), evaluation, warnings.Add);
        return warnings;
    }

    public static TheoryData<string, int, string> Faults => new()
    {
        { "throws", 0, $"data: {Component} failed in SampleTrain(256): shard 3 of /data/x is truncated" },
        { "no-channel", 4, $"data: {Component} SampleTrain(256, cpu) returned x of shape [256, 4, 4]; the contract is [B, ...S] = [256, 1, 4, 4] (IDataSource.SampleTrain; the data's Spec is faulty (sample [1, 4, 4], 8 classes)). The channel dimension (of size 1) is missing: x.unsqueeze(1) makes [B, 1, H, W]." },
        { "float64", 0, $"data: {Component} SampleTrain(256, cpu) returned x as Float64; the networks take float32 samples (IDataSource.SampleTrain; the data's Spec is faulty (sample [2], 8 classes)): return x.to_type(ScalarType.Float32)." },
        { "labels-int32", 0, $"data: {Component} SampleTrain(256, cpu) returned labels as Int32 of shape [256]; the contract is int64 labels of shape [B] = [256] (IDataSource.SampleTrain; the data's Spec is faulty (sample [2], 8 classes)): return labels.to_type(ScalarType.Int64)." },
        { "labels-one-based", 0, $"data: {Component} SampleTrain(256, cpu) returned labels from 1 to 8; labels are 0 .. K-1 = 0 .. 7 (K = Spec.NumClasses = 8; the label K is the null label ∅ of classifier-free guidance) (IDataSource.SampleTrain; the data's Spec is faulty (sample [2], 8 classes)). Labels counted from 1: subtract 1 in the data source." },
        { "nan", 0, $"data: {Component} SampleTrain(256, cpu) returned x with 2 non-finite values (NaN or ±inf)" },
        { "evaluation-shape", 0, $"data: {Component} SampleEvaluation(256, cpu) returned x of shape [256, 1]; the contract is [B, ...S] = [256, 2]" },
        { "no-detach", 0, $"data: {Component} failed on its second draw, once the dispose scope of its first draw (a training step's) was disposed: " },
        { "ignores-generator", 0, $"data: {Component} ignores the generator it is given: SampleEvaluation(256, cpu, generator) gave different samples" },
        { "unseeded", 0, $"data: {Component} ignores the generator it is given" }, // its own stream: the same for the evaluation
    };

    [Theory]
    [MemberData(nameof(Faults))]
    public void A_data_source_that_breaks_its_contract_is_named_with_the_fix(string fault, int size, string expected)
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<InvalidOperationException>(() => Warnings(fault, size));
        Assert.True(e.Message.StartsWith(expected, StringComparison.Ordinal), e.Message);
    }

    [Fact]
    public void Raw_pixels_and_a_source_that_ignores_the_seed_are_warnings_and_well_formed_data_has_none()
    {
        using var scope = NewDisposeScope();
        Assert.Empty(Warnings("none"));
        Assert.Empty(Warnings("none", size: 8));
        Assert.Empty(Warnings("pixels-255")); // 2-D points: not images, not checked
        var pixels = Assert.Single(Warnings("pixels-255", size: 8));
        Assert.Matches(@"^data: 'faulty-data' \(HierDistill.Tests\) gives image samples in \[0\.0\d*, 254\.\d+\] \(SampleTrain\); HierDistill's images are in \[-1, 1\]", pixels);
        Assert.Contains("(x / 127.5 - 1 for pixels in [0, 255])", pixels);
        Assert.Contains("(x * 2 - 1 for pixels in [0, 1])", Assert.Single(Warnings("pixels-01", size: 8)));
        Assert.StartsWith($"data: {Component} gave two different first training batches in two instances built from the same config after the same " +
                          "torch.manual_seed", Assert.Single(Warnings("unseeded", evaluation: false)));
        // Without an evaluation stage, drawing from the global stream whatever the generator harms nothing: no warning.
        Assert.Empty(Warnings("ignores-generator", evaluation: false));
        // A source without replacement (a shuffled order walked by a cursor) is seeded: its second draw differs from its first.
        Assert.Empty(Warnings("cursor", evaluation: false));
    }

    [Fact]
    public void The_seed_check_is_only_a_warning_and_leaves_the_preflights_instance_alone()
    {
        using var scope = NewDisposeScope();
        List<string> Check(FaultyData data, Func<IDataSource> another)
        {
            var warnings = new List<string>();
            manual_seed(DataContract.BuildSeed); // as the preflight builds its instance
            DataContract.Try(Component, data, another, evaluation: false, warnings.Add);
            return warnings;
        }
        FaultyData Built(string fault)
        {
            manual_seed(DataContract.BuildSeed);
            return new FaultyData(fault);
        }
        // A source that draws from the global stream when built is the same after the same seed: no warning.
        Assert.Empty(Check(Built("built-random"), () => new FaultyData("built-random")));
        // A second instance that cannot be built (a lock, a singleton) or disposed skips the check: neither error nor warning.
        Assert.Empty(Check(new FaultyData("none"), () => throw new IOException("the shard cache is locked by another process")));
        Assert.Empty(Check(new FaultyData("dispose-throws"), () => new FaultyData("dispose-throws")));
        // A factory handing out one shared instance: nothing to compare, and the preflight's instance is not disposed here.
        var shared = new FaultyData("none");
        Assert.Empty(Check(shared, () => shared));
        Assert.Equal(0, shared.Disposals);
        var second = new FaultyData("none");
        Assert.Empty(Check(new FaultyData("none"), () => second));
        Assert.Equal(1, second.Disposals);
    }

    [Fact]
    public void A_data_source_without_an_evaluation_split_is_checked_only_when_an_evaluation_stage_will_draw_from_it()
    {
        using var scope = NewDisposeScope();
        Assert.Empty(Warnings("no-evaluation", evaluation: false));
        var e = Assert.Throws<InvalidOperationException>(() => Warnings("no-evaluation", evaluation: true));
        Assert.Equal($"data: {Component} failed in SampleEvaluation(256): this data set has no held-out split", e.Message);
    }

    private static LoadedConfig Load(params string[] overrides) =>
        ConfigLoader.Validate(ConfigLoader.Read(TestPaths.Sample("toy2d/hd.json"),
            ["data:type=faulty-data", "data:options=null", "stages:teacher:training:steps=4", "stages:structure:training:steps=2",
             "stages:detail:training:steps=2", "stages:detail:training:batchSize=8", "stages:evaluate:enabled=false", .. overrides]),
            TestPaths.Sample("toy2d/hd.json"), Catalogs.BuiltIn(new FaultyDataPlugin()));

    /// <summary>The preflight of the shrunk 2-D job with <paramref name="overrides"/> and the test plugins; whether it passed.</summary>
    private static bool Validate(HostApplication app, params string[] overrides) =>
        app.Preflight("hd.json", Load(overrides), Catalogs.BuiltIn(new FaultyDataPlugin()));

    /// <summary>The overrides that put a test component with <paramref name="fault"/> at <paramref name="path"/> (2-D data).</summary>
    private static string[] With(string path, string type, string fault) =>
        ["data:type=mixture2d", $"{path}:type={type}", $"{path}:options={{\"fault\": \"{fault}\"}}"];

    /// <summary>The shrunk 2-D job with <paramref name="overrides"/>, run without the preflight; the exception it stops with.</summary>
    private static T RunWithoutPreflight<T>(params string[] overrides) where T : Exception
    {
        using var folder = TestPaths.NewTempFolder();
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        return Assert.Throws<T>(() => new PipelineRunner().Run(TestRuns.Context(Load(overrides), folder.Path, metrics)));
    }

    [Fact]
    public void Validate_names_the_data_source_before_the_teacher_and_prints_warnings_once()
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.False(Validate(app, "data:options:fault=labels-one-based"));
        string output = writer.ToString().ReplaceLineEndings("");
        Assert.Contains("1 configuration error(s) found by building the networks", output);
        Assert.Contains($"data: {Component} SampleTrain(256, cpu) returned labels from 1 to 8;", output);

        // A plugin's own message that names its config path stays as it is, as a configuration error.
        writer.GetStringBuilder().Clear();
        Assert.False(Validate(app, "data:options:fault=throws-named"));
        Assert.Contains("  - data:options:folder: shard 3 of /data/x is truncated", writer.ToString());
        Assert.Contains("1 configuration error(s) found by building the networks", writer.ToString());

        writer.GetStringBuilder().Clear();
        Assert.True(Validate(app, "data:options:fault=unseeded"));
        Assert.True(Validate(app, "data:options:fault=unseeded"));
        string warnings = writer.ToString();
        Assert.Single(warnings.Split('\n'), l => l.Contains("gave two different first training batches"));
    }

    [Fact]
    public void Images_the_evaluation_classifier_cannot_take_are_refused_before_training_with_the_ways_out()
    {
        var config = new EvaluationStageConfig { Kind = "evaluation", Samples = 100 };
        var e = Assert.Throws<InvalidOperationException>(() => EvaluationStage.CheckData("evaluate", config, new FaultyData("none", 30)));
        Assert.Equal("stages:evaluate: the evaluation measures images with a classifier that needs H and W multiples of 4, and the data's images " +
                     "are 30×30 (faulty (sample [1, 30, 30], 8 classes)). Pad or crop them to a multiple of 4 in the data source, or leave the " +
                     "evaluation out (--set stages:evaluate:enabled=false) and sample the weights with `hierdistill sample … --out samples.safetensors`.",
            e.Message);
        EvaluationStage.CheckData("evaluate", config, new FaultyData("none", 28)); // 28×28 fits
        // Unlabelled images: the classifier has no labels to learn (it failed with libtorch's "Target 0 is out of bounds").
        var unlabelled = Assert.Throws<InvalidOperationException>(() => EvaluationStage.CheckData("evaluate", config, new FaultyData("none", 28, classes: 0)));
        Assert.StartsWith("stages:evaluate: the evaluation measures images with a classifier trained on their labels, and the data has 0 classes", unlabelled.Message);
        EvaluationStage.CheckData("evaluate", config, new FaultyData("none"));     // points: no classifier
    }

    [Theory]
    [InlineData("detached", "GeneratorLoss returned a loss with no gradient (requires_grad is false), so it trains nothing: compute it from the " +
                            "generated samples x it is given, without detach(), no_grad() or item(). To add nothing on purpose (an ablation), " +
                            "return a zero made from its input, e.g. (x * 0).sum(), which keeps the graph.")]
    [InlineData("unconnected", "GeneratorLoss returned a loss whose gradient does not reach the generated samples x it is given (it is computed " +
                               "from other tensors, or from x.detach()), so it cannot train the generator. To add nothing on purpose " +
                               "(an adversarial-only ablation), return a zero made from x, e.g. (x * 0).sum().")]
    public void Validate_names_a_matcher_whose_generator_loss_has_no_gradient_to_the_samples(string fault, string expected)
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.False(Validate(app, With("stages:detail:matcher", "detached-matcher", fault)));
        Assert.Contains($"stages:detail:matcher: 'detached-matcher' (HierDistill.Tests) {expected}", writer.ToString().ReplaceLineEndings(""));
        // A zero made from x (an adversarial-only ablation) keeps the graph and passes.
        Assert.True(Validate(app, With("stages:detail:matcher", "detached-matcher", "zero")), writer.ToString());
    }

    [Theory]
    [InlineData("stages:structure:distiller", "detached", "Loss returned a loss with no gradient (requires_grad is false), so it trains nothing: compute it from the student it is given")]
    [InlineData("stages:structure:distiller", "throws", "failed in Loss on a trial batch of 2 training samples: my target broke")]
    // Stage 2's regularizer (a trajectory distiller) is tried on the generator stage 1 hands on.
    [InlineData("stages:detail:regularizer", "detached", "Loss returned a loss with no gradient (requires_grad is false), so it trains nothing: compute it from the student it is given")]
    [InlineData("stages:detail:regularizer", "unconnected", "Loss returned a loss whose gradient reaches none of the student's parameters")]
    public void Validate_runs_a_trajectory_distiller_once_so_that_its_faults_show_before_the_teacher_trains(string path, string fault, string expected)
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        string[] weight = ["stages:detail:regularizerWeight=0.5"];
        Assert.False(Validate(app, [.. With(path, "detached-distiller", fault), .. weight]));
        Assert.Contains($"{path}: 'detached-distiller' (HierDistill.Tests) {expected}", writer.ToString().ReplaceLineEndings(""));
        // The same distiller with a loss that has its gradient passes.
        Assert.True(Validate(app, [.. With(path, "detached-distiller", "none"), .. weight]), writer.ToString());
        if (!path.Contains("regularizer", StringComparison.Ordinal)) return;
        // A stage 2 that starts from the teacher's student is tried on that.
        writer.GetStringBuilder().Clear();
        Assert.False(Validate(app, [.. With(path, "detached-distiller", fault), .. weight, "stages:detail:generator=teacher", "stages:structure:enabled=false"]));
        Assert.Contains($"{path}: 'detached-distiller' (HierDistill.Tests) {expected}", writer.ToString().ReplaceLineEndings(""));
    }

    [Fact]
    public void A_non_finite_stop_names_the_component_the_loss_term_comes_from()
    {
        var e = RunWithoutPreflight<NonFiniteLossException>(With("stages:detail:matcher", "detached-matcher", "nan"));
        Assert.Contains("(loss term 'dm' = NaN, from 'detached-matcher' (HierDistill.Tests))", e.Message);
        Assert.True(e.NeverFinite);
    }

    [Fact]
    public void A_matcher_loss_without_gradient_stops_the_stage_naming_the_matcher_even_beside_the_adversarial_term()
    {
        // Without the preflight (which refuses it, above). toy2d's stage 2 has the AWD term (weight > 0), whose gradient reached
        // the generator: the matcher trained nothing, silently.
        var e = RunWithoutPreflight<InvalidOperationException>(With("stages:detail:matcher", "detached-matcher", "detached"));
        Assert.Equal("stages:detail:matcher: 'detached-matcher' (HierDistill.Tests) GeneratorLoss returned a loss with no gradient (requires_grad is " +
                     "false), so it trains nothing: compute it from the generated samples x it is given, without detach(), no_grad() or item(). " +
                     "To add nothing on purpose (an ablation), return a zero made from its input, e.g. (x * 0).sum(), which keeps the graph.", e.Message);
    }
}
