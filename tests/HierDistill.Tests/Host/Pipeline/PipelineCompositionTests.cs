using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Training;
using HierDistill.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using NSubstitute;
using Serilog;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Pipeline;

/// <summary>A tiny real student: u = W z (so optimisers and clones have something to work on).</summary>
internal sealed class LinearStudent : AverageVelocityNetwork
{
    private readonly Linear layer;

    public LinearStudent() : base("linear_student")
    {
        layer = nn.Linear(2, 2);
        RegisterComponents();
    }

    public override Tensor AverageVelocity(Tensor z, Tensor r, Tensor t, Tensor labels) => layer.forward(z);

    public override AverageVelocityNetwork Clone()
    {
        var copy = new LinearStudent();
        copy.CopyWeightsFrom(this);
        return copy;
    }
}

/// <summary>Registers NSubstitute substitutes for the contracts as named components.</summary>
internal sealed class SubstitutePlugin : IHierDistillPlugin
{
    public readonly DataSpec Spec = new("fake", [2], 2);
    public readonly IDataSource Data = Substitute.For<IDataSource>();
    public readonly ITeacher Teacher = Substitute.For<ITeacher>();
    public readonly ITrajectoryDistiller Distiller = Substitute.For<ITrajectoryDistiller>();
    public readonly IDistributionMatcher Matcher = Substitute.For<IDistributionMatcher>();
    public readonly LinearStudent Student = new();

    public SubstitutePlugin()
    {
        Data.Spec.Returns(Spec);
        Data.SampleTrain(Arg.Any<int>(), Arg.Any<Device>(), Arg.Any<Generator?>())
            .Returns(ci => new Batch(randn(ci.ArgAt<int>(0), 2), zeros(ci.ArgAt<int>(0), ScalarType.Int64)));
        Teacher.Spec.Returns(Spec);
        Teacher.Network.Returns((VelocityNetwork?)null);
        Teacher.CreateStudent().Returns(Student);
        Distiller.Loss(Arg.Any<AverageVelocityNetwork>(), Arg.Any<ITeacher>(), Arg.Any<Batch>(), Arg.Any<TrainingProgress>())
            .Returns(ci =>
            {
                var batch = ci.ArgAt<Batch>(2);
                var u = ci.ArgAt<AverageVelocityNetwork>(0).AverageVelocity(batch.X, zeros(batch.Size), ones(batch.Size), batch.Labels);
                return new LossBreakdown(u.square().mean());
            });
        Matcher.AuxiliaryModules.Returns([]);
        Matcher.GeneratorUpdateInterval.Returns(1);
        Matcher.GeneratorLoss(Arg.Any<Tensor>(), Arg.Any<Tensor>(), Arg.Any<TrainingProgress>())
            .Returns(ci => new LossBreakdown(ci.ArgAt<Tensor>(0).square().mean()));
    }

    public void Register(IServiceCollection services)
    {
        services.AddDataSource<GapOptionsStub>("fake-data", "substitute", (_, _) => Data);
        services.AddTeacher<GapOptionsStub>("fake-teacher", "substitute", (ctx, _) =>
        {
            Assert.Same(Data, ctx.Data); // the teacher factory sees the data source the pipeline created
            return Teacher;
        });
        services.AddTrajectoryDistiller<GapOptionsStub>("fake-distiller", "substitute", (_, _) => Distiller);
        services.AddDistributionMatcher<GapOptionsStub>("fake-matcher", "substitute", (ctx, _) =>
        {
            Assert.Same(Teacher, ctx.Teacher); // stage 2 is composed with the teacher of the teacher stage
            return Matcher;
        });
    }
}

/// <summary>An options type without options.</summary>
public sealed class GapOptionsStub;

public class PipelineCompositionTests
{
    [Fact]
    public void A_json_config_composes_the_pipeline_and_each_stage_gets_what_the_previous_produced()
    {
        var plugin = new SubstitutePlugin();
        using var file = new ConfigFile("""
        {
          "run": { "name": "composed", "logEvery": 1 },
          "data": { "type": "fake-data" },
          "stages": {
            "last": { "kind": "distribution", "matcher": { "type": "fake-matcher" }, "training": { "steps": 3, "batchSize": 4, "emaDecay": 0 } },
            "first": { "kind": "trajectory", "distiller": { "type": "fake-distiller" }, "training": { "steps": 2, "batchSize": 4, "emaDecay": 0 } },
            "teacher": { "kind": "teacher", "teacher": { "type": "fake-teacher" } }
          }
        }
        """);
        var loaded = ConfigLoader.Validate(ConfigLoader.Read(file.Path), file.Path, Catalogs.BuiltIn(plugin));
        Assert.Equal(["teacher", "first", "last"], loaded.Stages.Select(s => s.Key)); // order by kind, not by key order

        using var folder = TestPaths.NewTempFolder();
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        var run = TestRuns.Context(loaded, folder.Path, metrics);
        var state = new PipelineRunner().Run(run);

        Assert.Same(plugin.Teacher, state.Teacher);
        Assert.Equal(["first", "last"], state.Students.Select(s => s.StageKey));
        Assert.Same(plugin.Student, state.Students[0].Model);             // stage 1 trained the teacher's student
        Assert.NotSame(plugin.Student, state.Students[1].Model);          // stage 2 started from a copy of it
        plugin.Distiller.Received(2).Loss(plugin.Student, plugin.Teacher, Arg.Any<Batch>(), Arg.Any<TrainingProgress>());
        plugin.Matcher.ReceivedWithAnyArgs(3).GeneratorLoss(default!, default!, default);
        Received.InOrder(() =>
        {
            plugin.Teacher.CreateStudent();
            plugin.Distiller.Loss(plugin.Student, plugin.Teacher, Arg.Any<Batch>(), Arg.Is<TrainingProgress>(p => p.Step == 0));
            plugin.Distiller.Loss(plugin.Student, plugin.Teacher, Arg.Any<Batch>(), Arg.Is<TrainingProgress>(p => p.Step == 1));
            plugin.Matcher.GeneratorLoss(Arg.Any<Tensor>(), Arg.Any<Tensor>(), Arg.Is<TrainingProgress>(p => p.Step == 0));
        });
        // The stage-2 generator started as the stage-1 student: before its first update the samples were e - u(e, 0, 1).
        var lines = File.ReadAllLines(Path.Combine(folder.Path, "metrics.jsonl"));
        Assert.Equal(5, lines.Length); // 2 + 3 logged steps
    }
}
