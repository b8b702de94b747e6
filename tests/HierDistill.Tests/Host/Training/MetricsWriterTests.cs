using System.Text.Json;
using HierDistill.Host.Training;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Training;

/// <summary>metrics.jsonl and the TensorBoard events across a resume: each logged step once, elapsed time continuing.</summary>
public class MetricsWriterTests
{
    private static Dictionary<string, double> Values(double loss) => new() { ["loss"] = loss };

    [Fact]
    public void A_resume_rewrites_tensorboard_from_the_trimmed_metrics_and_continues_elapsed_time()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = folder.File("run");
        Directory.CreateDirectory(run);

        // The first process logs steps 0..9 of stage "a" (loss = step) and is stopped; its checkpoint is at step 5.
        using (var first = new MetricsWriter(run))
            for (int step = 0; step < 10; step++)
            {
                first.Log("a", step, Values(step));
                Thread.Sleep(5);
            }
        var before = TensorBoardEvents.Scalars(Path.Combine(run, MetricsWriter.TensorBoardFolder));
        Assert.Equal(10, before.Count);
        double lastElapsed = File.ReadLines(Path.Combine(run, MetricsWriter.FileName))
            .Max(l => JsonDocument.Parse(l).RootElement.GetProperty("elapsed_s").GetDouble());
        Assert.True(lastElapsed > 0.03, $"elapsed_s {lastElapsed} after ten steps 5 ms apart");

        // The resume drops steps 5..9 and logs them again with other values (loss = 100 + step).
        Assert.Equal(5, MetricsWriter.Trim(run, (_, step) => step < 5));
        using (var second = new MetricsWriter(run))
        {
            // TensorBoard already holds exactly the kept points, before anything new is logged.
            Assert.Equal(Enumerable.Range(0, 5).Select(s => ("a/loss", (long)s, (float)s)),
                TensorBoardEvents.Scalars(Path.Combine(run, MetricsWriter.TensorBoardFolder)).OrderBy(p => p.Step));
            for (int step = 5; step < 10; step++) second.Log("a", step, Values(100 + step));
            Assert.Equal(10, second.History.Count);
        }

        var after = TensorBoardEvents.Scalars(Path.Combine(run, MetricsWriter.TensorBoardFolder)).OrderBy(p => p.Step).ToList();
        Assert.Equal(Enumerable.Range(0, 10).Select(s => ("a/loss", (long)s, (float)(s < 5 ? s : 100 + s))), after);
        Assert.Empty(Directory.GetDirectories(run, ".*"));

        // elapsed_s never goes back: the resumed process continues from the last value kept.
        var elapsed = File.ReadLines(Path.Combine(run, MetricsWriter.FileName))
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("elapsed_s").GetDouble()).ToList();
        Assert.Equal(10, elapsed.Count);
        for (int i = 1; i < elapsed.Count; i++) Assert.True(elapsed[i] >= elapsed[i - 1], $"elapsed_s {string.Join(", ", elapsed)}");
    }

    [Fact]
    public void A_leftover_from_a_crash_during_the_rewrite_is_replaced_and_the_folder_still_counts_as_a_run()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = folder.File("run");
        Directory.CreateDirectory(run);
        using (var first = new MetricsWriter(run))
            for (int step = 0; step < 4; step++) first.Log("a", step, Values(step));
        // A process killed between writing the new folder and swapping it in leaves these behind.
        Directory.CreateDirectory(Path.Combine(run, ".tensorboard.tmp"));
        File.WriteAllText(Path.Combine(run, ".tensorboard.tmp", "events.out.tfevents.partial"), "");
        Directory.Move(Path.Combine(run, MetricsWriter.TensorBoardFolder), Path.Combine(run, ".tensorboard.old.tmp"));
        Assert.True(HierDistill.Host.Storage.RunFolder.IsRunOutput(".tensorboard.tmp", directory: true, new HashSet<string>()));

        using (new MetricsWriter(run)) { }

        Assert.Equal(Enumerable.Range(0, 4).Select(s => ("a/loss", (long)s, (float)s)),
            TensorBoardEvents.Scalars(Path.Combine(run, MetricsWriter.TensorBoardFolder)).OrderBy(p => p.Step));
        Assert.Empty(Directory.GetDirectories(run, ".*"));
    }
}
