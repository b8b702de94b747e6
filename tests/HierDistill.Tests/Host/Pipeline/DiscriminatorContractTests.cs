using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Training;
using HierDistill.Plugins.Awd;
using HierDistill.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Pipeline;

/// <summary>The built-in AWD discriminator with one contract fault, chosen by <see cref="Fault"/> (for the host's checks).</summary>
public sealed class FaultyDiscriminatorOptions : GapOptions
{
    /// <summary>none, flat (logits [B·H]), transposed ([H, B]), single ([B], valid with one block), times ([B, 1] noise levels), times-range (levels
    /// outside [0, 1]), throws (Forward throws), null-ctor (a null dereference in the constructor), missing-dll (a dependency not found), fake-score (heads named as DMD's fake score), negative-lr (a negative learning rate).</summary>
    public string Fault { get; set; } = "none";
}

internal sealed class FaultyDiscriminator(IDiscriminator inner, string fault) : IDiscriminator
{
    // null-ctor: a slip in the constructor (a null dereference), as a plugin's bug would be.
    private readonly int _nameLength = fault == "null-ctor" ? ((string?)null)!.Length : 0;
    // missing-dll: the runtime's message for a dependency left out of the plugin folder.
    private readonly int _dependency = fault == "missing-dll"
        ? throw new FileNotFoundException("Could not load file or assembly 'MathNet.Numerics, Version=5.0.0.0, Culture=neutral, PublicKeyToken=cd8b63ad3d691a37'. The system cannot find the file specified.")
        : 0;

    public TrainableModule Heads => fault switch
    {
        "fake-score" => inner.Heads with { Name = "fake_score" },
        "negative-lr" => inner.Heads with { Optimizer = inner.Heads.Optimizer with { LearningRate = -1e-4 } }, // an options property without [Range]
        _ => inner.Heads,
    };

    public IReadOnlyList<int> FeatureBlocks => inner.FeatureBlocks;

    public Tensor SampleTimes(long batchSize, Device device) => fault switch
    {
        "times" => inner.SampleTimes(batchSize, device).unsqueeze(1),
        "times-range" => inner.SampleTimes(batchSize, device) * 5 + 1, // levels in (1, 6): not s_D in [0, 1]
        "times-bfloat16" => inner.SampleTimes(batchSize, device).to_type(ScalarType.BFloat16), // valid: any floating-point type
        _ => inner.SampleTimes(batchSize, device),
    };

    public DiscriminatorOutput Forward(IReadOnlyList<Tensor> features, Tensor labels)
    {
        if (fault == "throws") throw new InvalidOperationException("my head broke");
        if (fault == "torch") return new DiscriminatorOutput(zeros(2, 3).mm(zeros(2, 3)), new Dictionary<string, Tensor>()); // libtorch throws
        var output = inner.Forward(features, labels);
        return fault switch
        {
            "flat" => output with { Logits = output.Logits.reshape(-1) },
            "transposed" => output with { Logits = output.Logits.t() },
            "single" => output with { Logits = output.Logits.squeeze(1) },
            _ => output,
        };
    }

    public LossBreakdown DiscriminatorLoss(Tensor realLogits, Tensor fakeLogits) => inner.DiscriminatorLoss(realLogits, fakeLogits);

    public LossBreakdown GeneratorLoss(Tensor fakeLogits) => inner.GeneratorLoss(fakeLogits);
}

internal sealed class FaultyDiscriminatorPlugin : IHierDistillPlugin
{
    public void Register(IServiceCollection services) =>
        services.AddDiscriminator<FaultyDiscriminatorOptions>("faulty", "AWD with one contract fault (tests).",
            (ctx, o) => new FaultyDiscriminator(new TokenDiscriminator(o, ctx.RequireTeacher(), attention: true), o.Fault));
}

public class DiscriminatorContractTests
{
    private static readonly string[] Short =
    [
        "stages:teacher:training:steps=5", "stages:structure:training:steps=2", "stages:detail:training:steps=4",
        "stages:detail:training:batchSize=8", "stages:evaluate:enabled=false", "run:logEvery=1", "stages:detail:discriminator:type=faulty",
    ];

    private const string Path = "stages:detail:discriminator";
    private const string Component = "'faulty' (HierDistill.Tests)";

    public static TheoryData<string, string> Faults => new()
    {
        { "flat", $"{Path}: {Component} Forward returned logits of shape [12] for 4 samples; the contract is [B, H] = [4, H], one row per sample and one column per head, or [4] for one head (IDiscriminator.Forward, DiscriminatorOutput.Logits)." },
        { "transposed", $"{Path}: {Component} Forward returned logits of shape [3, 4] for 4 samples;" },
        { "times", $"{Path}: {Component} SampleTimes(4) returned a Float32 tensor of shape [4, 1]; the contract is one noise level s_D in [0, 1] per sample, a floating-point [4] (IDiscriminator.SampleTimes)." },
        { "throws", $"{Path}: {Component} failed on a trial batch of 4 random samples: my head broke" },
        { "times-range", $"{Path}: {Component} SampleTimes(4) returned noise levels from " },
        { "negative-lr", $"{Path}: {Component} trains 'discriminator' with learning rate -0.0001 (must be > 0 and finite) (OptimizerSettings); give the option that sets it a range ([Range] on the options property) so that a config cannot set it so." },
        { "null-ctor", $"{Path}: 'faulty' cannot be built: Object reference not set to an instance of an object. (NullReferenceException thrown by " +
                       "HierDistill.Tests.Host.Pipeline.FaultyDiscriminator..ctor in the plugin HierDistill.Tests)" },
        { "missing-dll", $"{Path}: 'faulty' cannot be built: Could not load file or assembly 'MathNet.Numerics, Version=5.0.0.0, Culture=neutral, " +
                          "PublicKeyToken=cd8b63ad3d691a37'. The system cannot find the file specified. (a library the plugin HierDistill.Tests uses is not in " +
                          "its plugin folder: publish the plugin into that folder (dotnet publish -o …), or copy the missing DLL beside it)" },
        { "fake-score", $"stages:detail: the matcher 'dmd' (HierDistill.Plugins.Dmd) and the discriminator {Component} both train a module named 'fake_score'; the names of a stage's trained modules key its checkpoint and must differ ('generator' is the host's): give the discriminator {Component} another TrainableModule.Name." },
    };

    private static LoadedConfig Load(string fault, params string[] more) =>
        ConfigLoader.Validate(ConfigLoader.Read(TestPaths.Sample("toy2d/hd.json"), [.. Short, $"{Path}:options:fault={fault}", .. more]),
            TestPaths.Sample("toy2d/hd.json"), Catalogs.BuiltIn(new FaultyDiscriminatorPlugin()));

    [Theory]
    [MemberData(nameof(Faults))]
    public void A_discriminator_that_breaks_its_contract_is_a_config_error_before_anything_runs(string fault, string expected)
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.False(app.Preflight("hd.json", Load(fault), Catalogs.BuiltIn(new FaultyDiscriminatorPlugin())), writer.ToString());
        Assert.Contains(expected, writer.ToString());
        Assert.Contains("1 configuration error(s) found by building the networks", writer.ToString());
    }

    [Fact]
    public void The_same_discriminator_without_a_fault_passes_the_check_and_one_head_may_return_logits_of_shape_B()
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.True(app.Preflight("hd.json", Load("none"), Catalogs.BuiltIn(new FaultyDiscriminatorPlugin())), writer.ToString());
        Assert.True(app.Preflight("hd.json", Load("single", $"{Path}:options:blocks=[0]"), Catalogs.BuiltIn(new FaultyDiscriminatorPlugin())), writer.ToString());
        Assert.True(app.Preflight("hd.json", Load("times-bfloat16"), Catalogs.BuiltIn(new FaultyDiscriminatorPlugin())), writer.ToString());
    }

    [Fact]
    public void A_learning_rate_of_0_set_in_the_config_names_its_key()
    {
        // AdamOptions allows 0 (a frozen module for a diagnostic is a stage's learning rate 0), heads must move: the config
        // key that set it is named, not the plugin's [Range] (helper-46 found the plugin blamed).
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.False(app.Preflight("hd.json", Load("none", $"{Path}:options:optimizer:learningRate=0"), Catalogs.BuiltIn(new FaultyDiscriminatorPlugin())));
        Assert.Contains($"{Path}: {Component} trains 'discriminator' with learning rate 0 (must be > 0 and finite), set by " +
                        $"{Path}:options:optimizer:learningRate; give it a value in that range.", writer.ToString().ReplaceLineEndings(""));
        writer = new StringWriter();
        app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.False(app.Preflight("hd.json", Load("none", "stages:detail:matcher:options:fakeScore:learningRate=0"), Catalogs.BuiltIn(new FaultyDiscriminatorPlugin())));
        Assert.Contains("stages:detail:matcher: 'dmd' (HierDistill.Plugins.Dmd) trains 'fake_score' with learning rate 0 (must be > 0 and finite), set by " +
                        "stages:detail:matcher:options:fakeScore:learningRate; give it a value in that range.", writer.ToString().ReplaceLineEndings(""));
    }

    [Fact]
    public void Transposed_logits_are_caught_also_when_the_heads_number_the_first_trial_batch()
    {
        // Four heads: [H, B] = [4, 4] passes for [B, H] on a trial batch of 4; the second trial batch, of 6, tells them apart.
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.False(app.Preflight("hd.json", Load("transposed", $"{Path}:options:blocks=[0, 1, 2, 2]"), Catalogs.BuiltIn(new FaultyDiscriminatorPlugin())));
        Assert.Contains($"{Path}: {Component} Forward returned logits of shape [4, 6] for 6 samples;", writer.ToString());
    }

    [Theory]
    [InlineData("flat", "Forward returned logits of shape [24] for 8 samples; the contract is [B, H] = [8, H]")]
    [InlineData("times", "SampleTimes(8) returned a Float32 tensor of shape [8, 1]")]
    public void Logits_or_times_of_the_wrong_shape_stop_the_training_step_that_gets_them(string fault, string expected)
    {
        // Three heads (the sample teacher's three blocks); the generator's step comes first (8 generated samples).
        // Without the check, flat logits [2B·H] were cut into a "real" and a "fake" half that both came from the real samples,
        // and the run trained to its end on that. Here the pipeline runs without the preflight.
        using var folder = TestPaths.NewTempFolder();
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        var run = TestRuns.Context(Load(fault), folder.Path, metrics);
        var e = Assert.Throws<InvalidOperationException>(() => new PipelineRunner().Run(run));
        Assert.StartsWith($"{Path}: {Component} ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_run_that_fails_in_a_plugins_code_names_the_stage_the_plugin_and_the_method()
    {
        var catalog = Catalogs.BuiltIn(new FaultyDiscriminatorPlugin());
        var e = Assert.Throws<InvalidOperationException>(() => new FaultyDiscriminator(null!, "throws").Forward([], zeros(1)));
        Assert.Equal("stages:detail: my head broke (InvalidOperationException thrown by HierDistill.Tests.Host.Pipeline.FaultyDiscriminator.Forward " +
                     "in the plugin HierDistill.Tests test)", HostApplication.FailureMessage(e, "detail", catalog));
        // A message that names its config path keeps it; an exception the host made names no plugin.
        Assert.Equal("stages:detail:matcher: y", HostApplication.FailureMessage(new InvalidOperationException("stages:detail:matcher: y"), "detail", catalog));
        Assert.Equal("z", HostApplication.FailureMessage(new InvalidOperationException("z"), null, catalog));
        // A library call in the plugin's code that throws (a TorchSharp shape error): the plugin's method is named too.
        var torch = Assert.ThrowsAny<Exception>(() => new FaultyDiscriminator(null!, "torch").Forward([], zeros(1)));
        string message = HostApplication.FailureMessage(torch, "detail", catalog);
        Assert.StartsWith("stages:detail: mat1 and mat2 shapes cannot be multiplied", message);
        Assert.EndsWith($" raised under HierDistill.Tests.Host.Pipeline.FaultyDiscriminator.Forward in the plugin HierDistill.Tests test)", message);
    }
}
