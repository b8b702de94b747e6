using System.Text.Json;
using HierDistill.Host;
using HierDistill.Host.Configuration;
using HierDistill.Host.Evaluation;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Training;
using HierDistill.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Pipeline;

/// <summary>Tensor lifetime: every stage's steps run in dispose scopes, so the live-tensor count stays flat.</summary>
public class MemoryTests
{
    [Fact]
    public void Live_tensor_count_does_not_grow_across_300_steps_of_each_training_stage()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Run(TestPaths.Sample("toy2d/hd.json"),
        [
            $"run:outputDir={output}", "run:logEvery=20", "run:checkpointEvery=100",
            "stages:teacher:teacher:options:hidden=32", "stages:teacher:teacher:options:depth=2", "stages:teacher:teacher:options:tokenChannels=8",
            "stages:teacher:training:steps=300", "stages:teacher:training:batchSize=32",
            "stages:structure:training:steps=300", "stages:structure:training:batchSize=16",
            "stages:detail:training:steps=300", "stages:detail:training:batchSize=16",
            "stages:evaluate:enabled=false",
        ], overwrite: true, CancellationToken.None);
        Assert.True(code == 0, writer.ToString());

        var live = File.ReadAllLines(Path.Combine(output, "metrics.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .Select(e => (Stage: e.GetProperty("stage").GetString()!, Step: e.GetProperty("step").GetInt64(), Live: e.GetProperty("live_tensors").GetDouble()))
            .ToList();
        foreach (var stage in new[] { "teacher", "structure", "detail" })
        {
            var counts = live.Where(x => x.Stage == stage && x.Step >= 20).ToList();
            Assert.True(counts.Count >= 10, $"{stage}: {counts.Count} logged steps");
            Assert.True(counts.All(c => c.Live == counts[0].Live),
                $"{stage}: live tensors changed across steps: {string.Join(", ", counts.Select(c => $"{c.Step}:{c.Live}"))}");
        }
    }

    [Fact]
    public void Evaluation_and_sampling_leave_no_tensors_behind()
    {
        using var file = new ConfigFile("""
        {
          "run": { "name": "memory" },
          "data": { "type": "mixture2d" },
          "stages": {
            "teacher": { "kind": "teacher", "teacher": { "type": "gmm-exact" } },
            "evaluate": { "kind": "evaluation", "samples": 128, "teacherNfe": [1, 4], "plots": false }
          }
        }
        """);
        var loaded = ConfigLoader.Validate(ConfigLoader.Read(file.Path), file.Path, Catalogs.BuiltIn());
        using var folder = TestPaths.NewTempFolder();
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        var run = TestRuns.Context(loaded, folder.Path, metrics);
        var state = new PipelineRunner().Run(run); // teacher + one evaluation (warms up lazily created tensors)
        var evaluation = new EvaluationStage("evaluate", (EvaluationStageConfig)loaded.Config.Stages["evaluate"], run);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++) evaluation.Run(state);
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.True(File.Exists(Path.Combine(folder.Path, "report.md")));
    }
}
