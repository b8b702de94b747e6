using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Training;
using HierDistill.Plugins.Teachers.Networks;
using HierDistill.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Pipeline;

/// <summary>Options of the <c>faulty-mlp</c> test teacher.</summary>
public sealed class FaultyTeacherOptions
{
    /// <summary>The contract fault (see <see cref="FaultyTeacher"/>); "none" for the plain mlp teacher.</summary>
    public string Fault { get; set; } = "none";
}

/// <summary>The built-in mlp teacher (width 64, 3 blocks, 16 token channels) with one contract fault, as a third-party plugin might have.</summary>
internal sealed class FaultyTeacher : ITeacher, IDisposable
{
    private readonly VelocityNetwork _network;
    private readonly NetworkTeacher _inner;
    private readonly string _fault;

    public FaultyTeacher(DataSpec spec, string fault)
    {
        _fault = fault;
        _network = new MlpVelocityNetwork(new MlpOptions { Hidden = 64, Depth = 3, TokenChannels = 16 }, spec);
        if (fault is "network-shape" or "network-bfloat16" or "network-dropout") _network = new OutputNetwork(_network, fault);
        if (fault == "float64") _network.to(ScalarType.Float64);
        if (fault == "nan")
            using (no_grad())
                _network.parameters().Skip(2).First().fill_(double.NaN);
        _inner = new NetworkTeacher(spec, _network);
    }

    public DataSpec Spec => _inner.Spec;

    public Tensor Velocity(Tensor z, Tensor t, Tensor labels) => _fault switch
    {
        // A label embedding of K rows, without the null label K: index out of range for ∅.
        "no-null-label" => _inner.Velocity(z, t, labels) + zeros(Spec.NumClasses, z.shape[1]).index_select(0, labels),
        "velocity-shape" => _inner.Velocity(z, t, labels).narrow(1, 0, 1),   // [B, 1] for [B, 2]: broadcast in the loss
        "velocity-scaled" => _inner.Velocity(z, t, labels) * 2,              // computed outside the network
        _ => _inner.Velocity(z, t, labels),
    };

    public IReadOnlyList<TokenFeatureSpec> FeatureBlocks => _inner.FeatureBlocks;

    public IReadOnlyList<Tensor> TokenFeatures(Tensor z, Tensor t, Tensor labels, IReadOnlyList<int> blocks)
    {
        // features-ascending: the blocks in ascending order, not in the order asked for.
        var features = _inner.TokenFeatures(z, t, labels, _fault == "features-ascending" ? blocks.Order().ToList() : blocks);
        return _fault switch
        {
            "features-detached" => features.Select(f => f.detach()).ToList(),
            "features-noisy" => features.Select(f => f + 1e-3 * randn_like(f)).ToList(), // random on purpose: valid, order not checked
            "features-batch" => features.Select(f => f.narrow(0, 0, 1)).ToList(),
            "features-flat" => features.Select(f => f.flatten(1)).ToList(),
            "features-throw" => throw new ArgumentOutOfRangeException(nameof(blocks), "block 7 is not tapped"),
            // A function of the weights only: it requires gradient while the weights do, but not of z.
            "features-constant" => features.Select(f => f.detach() * _network.parameters().First().mean()).ToList(),
            _ => features,
        };
    }

    public VelocityNetwork? Network => _network;

    public VelocityNetwork CreateTrainableCopy() => _fault switch
    {
        "copy-is-network" => _network,
        "copy-renamed" => new RenamedNetwork(_inner.CreateTrainableCopy()),
        _ => _inner.CreateTrainableCopy(),
    };

    public AverageVelocityNetwork CreateStudent() => _fault switch
    {
        "student-shares" => new SharingStudent(_network),
        "student-shape" => new NarrowStudent(_inner.CreateStudent()),
        "student-native" => LibtorchFailure(),
        // A fresh student of the same architecture: random weights, not the teacher's.
        "student-fresh" => new MlpVelocityNetwork(new MlpOptions { Hidden = 64, Depth = 3, TokenChannels = 16 }, Spec).CreateStudent(),
        _ => _inner.CreateStudent(),
    };

    public void Dispose() => _network.Dispose();

    /// <summary>A libtorch error (its message carries a C++ backtrace).</summary>
    private static AverageVelocityNetwork LibtorchFailure()
    {
        zeros(3).add(zeros(2));
        throw new System.Diagnostics.UnreachableException();
    }

    /// <summary>A copy under a name drawn per instance: its tensor names differ from the teacher's.</summary>
    private sealed class RenamedNetwork : VelocityNetwork
    {
        private readonly VelocityNetwork _inner;

        public RenamedNetwork(VelocityNetwork inner) : base("renamed")
        {
            _inner = inner;
            register_module($"blk_{Guid.NewGuid():N}"[..10], inner);
        }

        public override Tensor Velocity(Tensor z, Tensor t, Tensor labels) => _inner.Velocity(z, t, labels);

        public override VelocityNetwork Clone() => new RenamedNetwork(_inner.Clone());

        public override AverageVelocityNetwork CreateStudent() => _inner.CreateStudent();
    }

    /// <summary>A network whose velocity has one column for two-dimensional samples (network-shape), is cast to bfloat16 (valid), or
    /// passes through dropout in every mode (not deterministic).</summary>
    private sealed class OutputNetwork : VelocityNetwork
    {
        private readonly VelocityNetwork _inner;
        private readonly string _fault;

        public OutputNetwork(VelocityNetwork inner, string fault) : base("output")
        {
            _inner = inner;
            _fault = fault;
            register_module("inner", inner);
        }

        public override Tensor Velocity(Tensor z, Tensor t, Tensor labels)
        {
            var v = _inner.Velocity(z, t, labels);
            return _fault switch
            {
                "network-shape" => v.narrow(1, 0, 1),
                "network-bfloat16" => v.to_type(ScalarType.BFloat16),
                _ => nn.functional.dropout(v, 0.1),
            };
        }

        public override IReadOnlyList<TokenFeatureSpec> FeatureBlocks => _inner.FeatureBlocks;

        public override IReadOnlyList<Tensor> TokenFeatures(Tensor z, Tensor t, Tensor labels, IReadOnlyList<int> blocks) =>
            _inner.TokenFeatures(z, t, labels, blocks);

        public override VelocityNetwork Clone() => new OutputNetwork(_inner.Clone(), _fault);

        public override AverageVelocityNetwork CreateStudent() => _inner.CreateStudent();
    }

    /// <summary>A student that uses the teacher's own network (its parameters are the teacher's).</summary>
    private sealed class SharingStudent : AverageVelocityNetwork
    {
        private readonly VelocityNetwork _teacher;

        public SharingStudent(VelocityNetwork teacher) : base("sharing")
        {
            _teacher = teacher;
            register_module("net", teacher);
        }

        public override Tensor AverageVelocity(Tensor z, Tensor r, Tensor t, Tensor labels) => _teacher.Velocity(z, t, labels);

        public override AverageVelocityNetwork Clone() => throw new NotSupportedException();
    }

    /// <summary>A student whose output has one column for two-dimensional samples.</summary>
    private sealed class NarrowStudent : AverageVelocityNetwork
    {
        private readonly AverageVelocityNetwork _inner;

        public NarrowStudent(AverageVelocityNetwork inner) : base("narrow")
        {
            _inner = inner;
            register_module("inner", inner);
        }

        public override Tensor AverageVelocity(Tensor z, Tensor r, Tensor t, Tensor labels) => _inner.AverageVelocity(z, r, t, labels).narrow(1, 0, 1);

        public override AverageVelocityNetwork Clone() => new NarrowStudent(_inner.Clone());
    }
}

internal sealed class FaultyTeacherPlugin : IHierDistillPlugin
{
    public void Register(IServiceCollection services) =>
        services.AddTeacher<FaultyTeacherOptions>("faulty-mlp", "The mlp teacher with one contract fault (tests).",
            (ctx, o) => new FaultyTeacher(ctx.RequireData().Spec, o.Fault));
}

/// <summary>
/// A teacher plugin that breaks ITeacher's contract is named as the cause before anything runs (the preflight's trial), and
/// a wrong velocity shape during a run stops the step that gets it; before, such teachers trained silently, aborted the
/// process in stage 1's backward pass, or had the discriminator blamed.
/// </summary>
public class TeacherContractTests
{
    private static readonly string[] Short =
    [
        "stages:teacher:teacher:type=faulty-mlp", "stages:teacher:teacher:options=null", "stages:teacher:training:steps=4",
        "stages:structure:training:steps=2", "stages:detail:training:steps=2", "stages:detail:training:batchSize=8", "stages:evaluate:enabled=false",
        "run:logEvery=1",
    ];

    private const string Path = "stages:teacher:teacher";
    private const string Component = "'faulty-mlp' (HierDistill.Tests)";

    private static LoadedConfig Load(string fault, params string[] more) =>
        ConfigLoader.Validate(ConfigLoader.Read(TestPaths.Sample("toy2d/hd.json"), [.. Short, $"{Path}:options:fault={fault}", .. more]),
            TestPaths.Sample("toy2d/hd.json"), Catalogs.BuiltIn(new FaultyTeacherPlugin()));

    public static TheoryData<string, string> Faults => new()
    {
        { "network-shape", $"{Path}: {Component} Velocity returned a Float32 tensor of shape [3, 1] for z of shape [3, 2];" },
        { "velocity-shape", $"{Path}: {Component} Velocity returned a Float32 tensor of shape [3, 1] for z of shape [3, 2]; the contract is a floating-point velocity of z's shape [B, ...S] (ITeacher.Velocity)." },
        { "velocity-scaled", $"{Path}: {Component} Velocity differs from its Network.Velocity on a trial batch (largest difference " },
        { "float64", $"{Path}: {Component}: its network (ITeacher.Network) has parameter 'net.x_embedder.weight' of type Float64; HierDistill keeps float32 weights" },
        { "nan", $"{Path}: {Component}: its network (ITeacher.Network) has parameter '" },
        { "copy-is-network", $"{Path}: {Component} CreateTrainableCopy returned the teacher's own network; DMD's fake score trains the copy" },
        { "copy-renamed", $"{Path}: {Component} CreateTrainableCopy returned a network whose tensor names differ from the teacher network's (27 of the teacher's missing, e.g. 'net.x_embedder.weight'; 27 new, e.g. 'blk_" },
        { "student-shares", $"{Path}: {Component} CreateStudent returned a student that shares the parameter 'net.net.x_embedder.weight' with the teacher's network ('net.x_embedder.weight'); stage 1 would train the teacher with it." },
        { "student-shape", $"{Path}: {Component} AverageVelocity returned a Float32 tensor of shape [2, 1] for z of shape [2, 2]; the contract is a floating-point velocity of z's shape [B, ...S] (AverageVelocityNetwork.AverageVelocity)." },
        { "network-dropout", $"{Path}: {Component} Network.Velocity gives different values for the same inputs in evaluation mode (" },
        { "features-constant", $"{Path}: {Component} TokenFeatures returned features of block 0 without gradient with respect to z;" },
        { "student-native", $"{Path}: {Component} failed in CreateStudent: The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 0" },
        { "features-throw", $"{Path}: {Component} failed in TokenFeatures for blocks 0, 1, 2: block 7 is not tapped" },
        { "features-detached", $"{Path}: {Component} TokenFeatures returned features of block 0 without gradient with respect to z;" },
        { "features-batch", $"{Path}: {Component} TokenFeatures returned a Float32 tensor of shape [1, 4, 16] for block 0 and 4 samples; the contract is a floating-point [B, N, C] = [4, 4, 16]" },
        { "features-flat", $"{Path}: {Component} TokenFeatures returned a Float32 tensor of shape [4, 64] for block 0 and 4 samples;" },
        { "no-null-label", $"The trial's labels were 2 (the null label ∅ = NumClasses), 1 and 0, and without ∅ it runs: labels run 0 .. 1 and ∅ = 2 (classifier-free guidance), so a label embedding needs NumClasses + 1 = 3 rows." },
        { "student-fresh", $"{Path}: {Component} CreateStudent returned a student whose u(z, t, t) differs from the teacher's v(z, t) on a trial batch (largest difference " },
        { "features-ascending", $"{Path}: {Component} TokenFeatures does not return the blocks in the order asked: asked for blocks 0, 1, 2 and then 2, 1, 0, block 0's features differ between the two calls." },
    };

    [Theory]
    [MemberData(nameof(Faults))]
    public void A_teacher_that_breaks_its_contract_is_a_config_error_naming_the_teacher_before_anything_runs(string fault, string expected)
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.False(app.Preflight("hd.json", Load(fault), Catalogs.BuiltIn(new FaultyTeacherPlugin())), writer.ToString());
        string output = writer.ToString().ReplaceLineEndings("");
        Assert.Contains(expected, output);
        Assert.Contains("1 configuration error(s) found by building the networks", output);
        Assert.DoesNotContain("frame #", output);
        Assert.DoesNotContain("'awd'", output); // the discriminator is not blamed for the teacher's features
    }

    [Fact]
    public void The_same_teacher_without_a_fault_and_the_built_in_teachers_pass_the_check()
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.True(app.Preflight("hd.json", Load("none"), Catalogs.BuiltIn(new FaultyTeacherPlugin())), writer.ToString());
        // A velocity in another floating-point type (bfloat16) keeps the contract.
        Assert.True(app.Preflight("hd.json", Load("network-bfloat16"), Catalogs.BuiltIn(new FaultyTeacherPlugin())), writer.ToString());
        // Token features with noise on purpose keep the contract (their order cannot be checked, and is not).
        Assert.True(app.Preflight("hd.json", Load("features-noisy"), Catalogs.BuiltIn(new FaultyTeacherPlugin())), writer.ToString());
        foreach (var sample in new[] { "toy2d/hd.json", "fmnist/hd-cpu.json", "fmnist/hd-gpu.json" })
        {
            var loaded = ConfigLoader.Validate(ConfigLoader.Read(TestPaths.Sample(sample), ["run:device=cpu"]), TestPaths.Sample(sample), Catalogs.BuiltIn());
            Assert.True(app.Preflight(sample, loaded, Catalogs.BuiltIn()), writer.ToString());
        }
    }

    /// <summary>The shrunk pipeline with the teacher fault <paramref name="fault"/>, run in <paramref name="folder"/> without the preflight.</summary>
    private static void RunWithoutPreflight(string fault, TempFolder folder)
    {
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        new PipelineRunner().Run(TestRuns.Context(Load(fault), folder.Path, metrics));
    }

    [Fact]
    public void Without_the_preflight_a_velocity_of_the_wrong_shape_is_an_exception_in_stage_one_not_a_process_abort()
    {
        // The fault is in ITeacher.Velocity (the teacher stage trains Network.Velocity, so it finishes). Stage 1's MeanFlow
        // takes the teacher's velocity [B, 1] as the JVP's tangent for z [B, 2]; libtorch's double backward terminated the
        // process on it (no handler saw it, run.json stayed "running"). JacobianVectorProduct now refuses the tangent.
        using var folder = TestPaths.NewTempFolder();
        var e = Assert.Throws<ArgumentException>(() => RunWithoutPreflight("velocity-shape", folder));
        Assert.Equal("the tangent ż [128, 1] and the point z [128, 2] must have the same shape.", e.Message);
    }

    [Fact]
    public void A_network_velocity_of_the_wrong_shape_stops_the_teacher_stages_first_step()
    {
        // Unchecked, the flow-matching loss broadcast [B, 1] against [B, 2] and the teacher trained to its end on that.
        using var folder = TestPaths.NewTempFolder();
        var e = Assert.Throws<InvalidOperationException>(() => RunWithoutPreflight("network-shape", folder));
        Assert.StartsWith($"{Path}: {Component} Network.Velocity returned a Float32 tensor of shape [256, 1] for z of shape [256, 2];", e.Message);
        Assert.False(File.Exists(System.IO.Path.Combine(folder.Path, "teacher.safetensors")));
    }

    [Fact]
    public void Libtorchs_cpp_backtrace_is_left_out_of_messages()
    {
        var e = Assert.ThrowsAny<Exception>(() => zeros(2, 3).mm(zeros(2, 3)));
        string message = NativeErrors.WithoutBacktrace(e.Message);
        Assert.StartsWith("mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)", message);
        Assert.DoesNotContain("frame #", message);
        Assert.DoesNotContain("Exception raised from", message);
        Assert.Equal("a\nb", NativeErrors.WithoutBacktrace("a\nb\n"));
    }
}
