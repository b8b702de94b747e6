using System.Diagnostics;
using HierDistill.Host.Training;
using HierDistill.Tests.Host.Pipeline;
using HierDistill.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Training;

public class PhaseTimingTests
{
    [Fact]
    public void Each_phase_gets_the_time_since_the_previous_mark_and_nothing_is_timed_outside_a_step()
    {
        var timing = new PhaseTiming(CPU);
        PhaseTiming.Mark("forward"); // no step being timed: ignored
        for (int step = 0; step < 2; step++)
        {
            timing.Begin();
            Thread.Sleep(40);
            PhaseTiming.Mark("forward");
            Thread.Sleep(10);
            // Another thread's training loop (compare, parallel tests) marks only its own steps.
            var other = new Thread(() => PhaseTiming.Mark("discriminator"));
            other.Start();
            other.Join();
            Thread.Sleep(10);
            PhaseTiming.Mark("backward");
            PhaseTiming.Mark("optimizer");
            timing.End();
        }
        PhaseTiming.Mark("backward"); // after the step: ignored
        Assert.Equal(2, timing.Steps);
        var means = System.Text.RegularExpressions.Regex.Matches(timing.Describe(), @"([\w-]+) ([0-9.]+) ms")
            .ToDictionary(m => m.Groups[1].Value, m => double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(["forward", "backward", "optimizer", "rest", "sum"], means.Keys);
        Assert.InRange(means["forward"], 40, 40 + 200);  // Sleep waits at least its time; the upper end allows a loaded machine
        Assert.InRange(means["backward"], 20, 20 + 200);
        Assert.InRange(means["sum"], means["forward"] + means["backward"] - 0.02, means["forward"] + means["backward"] + means["optimizer"] + means["rest"] + 0.02);

        // A step that failed is not counted, nor are the phases it had timed.
        string before = timing.Describe();
        timing.Begin();
        Thread.Sleep(30);
        PhaseTiming.Mark("forward");
        PhaseTiming.Mark("discriminator");
        timing.Abandon();
        PhaseTiming.Mark("backward");
        Assert.Equal(2, timing.Steps);
        Assert.Equal(before, timing.Describe());
    }

    /// <summary>HIERDISTILL_PHASE_TIMING=N in a real run: every training stage logs its last N steps' phases; unset, none does.</summary>
    [Fact]
    public void A_run_with_the_variable_logs_every_stages_phases()
    {
        using var folder = TestPaths.NewTempFolder();
        var psi = new ProcessStartInfo("dotnet");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hierdistill.dll"));
        psi.ArgumentList.Add("run");
        psi.ArgumentList.Add(TestPaths.Sample("toy2d/hd.json"));
        foreach (var o in ResumeTests.Shrunk(folder.File("timed"), "stages:evaluate:enabled=false"))
        {
            psi.ArgumentList.Add("--set");
            psi.ArgumentList.Add(o);
        }
        psi.Environment[PhaseTiming.Variable] = "7";
        var (code, stdout, stderr) = ChildProcess.Run(psi, TimeSpan.FromMinutes(3));
        Assert.True(code == 0, stdout + stderr);
        var lines = File.ReadAllLines(Path.Combine(folder.File("timed"), "log.txt")).Where(l => l.Contains("phase times")).ToList();
        Assert.Equal(3, lines.Count);
        foreach (var (line, stage) in lines.Zip(new[] { "teacher", "structure", "detail" }))
        {
            Assert.Contains($"Stage {stage}: phase times over its last 7 steps", line);
            Assert.Matches(@": forward [0-9.]+ ms, backward [0-9.]+ ms, optimizer [0-9.]+ ms, .*rest [0-9.]+ ms \(sum [0-9.]+ ms\)$", line);
        }
        var (untimed, text) = ResumeTests.Run(ResumeTests.Shrunk(folder.File("untimed"), "stages:evaluate:enabled=false"));
        Assert.True(untimed == 0, text);
        Assert.DoesNotContain("phase times", File.ReadAllText(Path.Combine(folder.File("untimed"), "log.txt")));
    }
}
