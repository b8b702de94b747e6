using HierDistill.Host.Evaluation;
using HierDistill.Host.Reporting;
using HierDistill.Host.Training;
using HierDistill.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Evaluation;

public class PlotsTests
{
    [Fact]
    public void Scatter_and_loss_plots_are_written_as_png()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        var sets = Enumerable.Range(0, 5).Select(i => new PlotSamples($"set {i}", randn(200, 2), randint(0, 2, [200]))).ToList();
        var history = Enumerable.Range(0, 20).SelectMany(i => new[]
        {
            new MetricPoint("teacher", i * 10, "loss", 1.0 / (i + 1)),
            new MetricPoint("structure", i * 10, "raw_loss", 2.0 / (i + 1)),
        }).ToList();
        Plots.Write(folder.Path, sets, history, null);
        foreach (var name in new[] { "samples.png", "losses.png" })
        {
            var bytes = File.ReadAllBytes(folder.File(name));
            Assert.True(bytes.Length > 1000);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes.Take(4));
        }
    }

    [Fact]
    public void Comparison_tick_labels_keep_only_what_differs_between_variants()
    {
        Assert.Equal(["16", "64"], HierDistill.Host.Reporting.Plots.ShortLabels(
        [
            "structure.student={\"type\":\"mlp\",\"options\":{\"hidden\":16,\"depth\":2}}",
            "structure.student={\"type\":\"mlp\",\"options\":{\"hidden\":64,\"depth\":2}}",
        ]));
        Assert.Equal(["w16", "w32", "w128-teacher-init"], HierDistill.Host.Reporting.Plots.ShortLabels(["w16", "w32", "w128-teacher-init"]));
        Assert.Equal(["awd", "gap"], HierDistill.Host.Reporting.Plots.ShortLabels(["detail.discriminator.type-awd", "detail.discriminator.type-gap"]));
        // Numbers stay whole; with two varied keys each label is the values that differ.
        Assert.Equal(["0.05", "0.1", "0.15"], HierDistill.Host.Reporting.Plots.ShortLabels(
            ["detail.adversarialWeight=0.05", "detail.adversarialWeight=0.1", "detail.adversarialWeight=0.15"]));
        Assert.Equal(["awd, 0.0001", "awd, 0.001", "gap, 0.0001", "gap, 0.001"], HierDistill.Host.Reporting.Plots.ShortLabels(
        [
            "detail.discriminator.type=awd, detail.training.learningRate=0.0001", "detail.discriminator.type=awd, detail.training.learningRate=0.001",
            "detail.discriminator.type=gap, detail.training.learningRate=0.0001", "detail.discriminator.type=gap, detail.training.learningRate=0.001",
        ]));
        Assert.Equal(["1e-4", "3e-4"], HierDistill.Host.Reporting.Plots.ShortLabels(["lr=1e-4, type=awd", "lr=3e-4, type=awd"]));
        Assert.Equal(["-0.5", "-0.2"], HierDistill.Host.Reporting.Plots.ShortLabels(["detail.timeMean=-0.5", "detail.timeMean=-0.2"]));
    }
}
