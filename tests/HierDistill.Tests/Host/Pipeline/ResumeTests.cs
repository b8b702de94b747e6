using System.Diagnostics;
using System.Text.Json;
using HierDistill.Host;
using HierDistill.Host.Storage;
using HierDistill.Host.Training;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Pipeline;

/// <summary>
/// These tests compare runs bit for bit, so nothing else may draw from torch's global generator while they run: they run
/// alone, after the parallel tests.
/// </summary>
[CollectionDefinition(nameof(GlobalRngTests), DisableParallelization = true)]
public sealed class GlobalRngTests;

/// <summary>
/// Full-state checkpoints: a run stopped at step N of a stage and resumed gives the same weights, metrics and loss curve,
/// bit for bit on CPU, as the run that was never stopped.
/// </summary>
[Collection(nameof(GlobalRngTests))]
public class ResumeTests
{
    /// <summary>The shrunk main job: MLP teacher, MeanFlow (or another distiller), DMD + AWD, evaluation.</summary>
    internal static string[] Shrunk(string output, params string[] extra) =>
    [
        $"run:outputDir={output}", "run:logEvery=1", "run:threads=1",
        "stages:teacher:teacher:options:hidden=32", "stages:teacher:teacher:options:depth=2", "stages:teacher:teacher:options:tokenChannels=8",
        "stages:teacher:training:steps=30", "stages:teacher:training:batchSize=32",
        "stages:structure:training:steps=24", "stages:structure:training:batchSize=16",
        "stages:detail:training:steps=24", "stages:detail:training:batchSize=16",
        "stages:evaluate:samples=128", "stages:evaluate:teacherNfe=[1, 4]", "stages:evaluate:plots=false",
        .. extra,
    ];

    /// <summary>Runs <paramref name="overrides"/>; when <paramref name="stopStage"/> is set, stops (as Ctrl-C does) after that stage's step <paramref name="stopAfter"/>.</summary>
    internal static (int Code, string Output) Run(string[] overrides, string? stopStage = null, long stopAfter = 0, string? resume = null)
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer))
        {
            ProgressDecorator = stopStage is null ? null : (inner, stop) => new StopAt(inner, stop, stopStage, stopAfter),
        };
        int code = app.Run(TestPaths.Sample("toy2d/hd.json"), overrides, overwrite: resume is null, CancellationToken.None, resume);
        return (code, writer.ToString());
    }

    internal sealed class StopAt(IProgressReporter inner, CancellationTokenSource stop, string stage, long after) : IProgressReporter
    {
        public IProgressTask Start(string name, long total) => new Task(inner.Start(name, total), name == stage ? () => stop.Cancel() : null, after);

        private sealed class Task(IProgressTask inner, Action? stop, long after) : IProgressTask
        {
            public void Report(long done, string status)
            {
                inner.Report(done, status);
                if (done == after) stop?.Invoke();
            }

            public void Dispose() => inner.Dispose();
        }
    }

    private static Dictionary<string, double> LossCurve(string folder, string stage) =>
        File.ReadAllLines(Path.Combine(folder, "metrics.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.GetProperty("stage").GetString() == stage)
            .SelectMany(e => e.EnumerateObject()
                .Where(p => p.Value.ValueKind == JsonValueKind.Number && (p.Name.EndsWith("loss", StringComparison.Ordinal) || p.Name.Contains("grad_norm")))
                .Select(p => ($"{e.GetProperty("step").GetInt64()}:{p.Name}", p.Value.GetDouble())))
            .ToDictionary(x => x.Item1, x => x.Item2);

    private static Dictionary<string, double> Metrics(string folder)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "metrics.json")));
        return doc.RootElement.GetProperty("models").EnumerateArray()
            .SelectMany(m => m.GetProperty("metrics").EnumerateObject()
                .Where(p => p.Value.ValueKind == JsonValueKind.Number && !p.Name.Contains("seconds") && !p.Name.Contains("_ms") && !p.Name.Contains("per_s"))
                .Select(p => ($"{m.GetProperty("name").GetString()}@{m.GetProperty("nfe").GetInt32()}:{p.Name}", p.Value.GetDouble())))
            .ToDictionary(x => x.Item1, x => x.Item2);
    }

    [Theory]
    [InlineData("teacher", 13, "meanflow")]
    [InlineData("structure", 11, "progressive")]
    [InlineData("detail", 10, "meanflow")]
    public void A_run_stopped_and_resumed_equals_the_run_never_stopped_bit_for_bit(string stopStage, long stopAfter, string distiller)
    {
        using var folder = TestPaths.NewTempFolder();
        string[] variant = distiller == "progressive"
            ? ["stages:structure:distiller={\"type\":\"progressive\",\"options\":{\"startSteps\":4,\"finalSteps\":1}}"]
            : [];
        string straight = folder.File("straight"), stopped = folder.File("stopped");

        var (code, output) = Run(Shrunk(straight, variant));
        Assert.True(code == 0, output);

        (code, output) = Run(Shrunk(stopped, variant), stopStage, stopAfter);
        Assert.True(code == ExitCodes.Cancelled, output);
        Assert.Contains("\"cancelled\"", File.ReadAllText(Path.Combine(stopped, "run.json")));
        Assert.Contains($"stage {stopStage}, step {stopAfter} of", File.ReadAllText(Path.Combine(stopped, "run.json")));
        Assert.False(File.Exists(Path.Combine(stopped, "metrics.json")), "the stopped run must not have evaluated");

        (code, output) = Run(Shrunk(stopped, variant), resume: stopped);
        Assert.True(code == 0, output + File.ReadAllText(Path.Combine(stopped, "log.txt")));

        // The loss curve of the interrupted stage continues without a jump: every logged step once, with the same values.
        foreach (var stage in new[] { "teacher", "structure", "detail" })
        {
            var (a, b) = (LossCurve(straight, stage), LossCurve(stopped, stage));
            Assert.Equal(a.Keys.Order(), b.Keys.Order());
            var first = a.Keys.OrderBy(k => long.Parse(k.Split(':')[0])).FirstOrDefault(k => a[k] != b[k]);
            Assert.True(first is null, $"{stage}: {first} is {(first is null ? 0 : a[first])} without the stop but {(first is null ? 0 : b[first])} after the resume\n" +
                string.Join("\n", File.ReadAllLines(Path.Combine(straight, "metrics.jsonl")).Where(l => l.Contains($"\"stage\":\"{stage}\",\"step\":{first?.Split(':')[0]},"))) + "\n" +
                string.Join("\n", File.ReadAllLines(Path.Combine(stopped, "metrics.jsonl")).Where(l => l.Contains($"\"stage\":\"{stage}\",\"step\":{first?.Split(':')[0]},"))));
        }
        foreach (var file in new[] { "teacher.safetensors", "student-structure.safetensors", "student-detail.safetensors" })
            Assert.True(File.ReadAllBytes(Path.Combine(straight, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(stopped, file))),
                $"{file} differs after the resume at {stopStage} step {stopAfter}");
        Assert.Equal(Metrics(straight), Metrics(stopped));
    }

    [Fact]
    public void A_run_stopped_during_its_evaluation_evaluates_again_on_resume_with_the_same_metrics()
    {
        using var folder = TestPaths.NewTempFolder();
        string straight = folder.File("straight"), stopped = folder.File("stopped");
        var (code, output) = Run(Shrunk(straight));
        Assert.True(code == 0, output);

        // The stopped run replaces (--overwrite) a copy of the finished one, which is kept aside until a run there finishes.
        TestPaths.CopyDirectory(straight, stopped);
        File.WriteAllText(Path.Combine(stopped, "report.md"), "the replaced run's report");

        // Stopped after the first evaluated model (the teacher at NFE 1): exit 130, no metrics.json, nothing else evaluated.
        (code, output) = Run(Shrunk(stopped), "evaluate", 1);
        Assert.True(code == ExitCodes.Cancelled, output);
        Assert.Contains("\"cancelled\"", File.ReadAllText(Path.Combine(stopped, "run.json")));
        Assert.False(File.Exists(Path.Combine(stopped, "metrics.json")));
        Assert.DoesNotContain("evaluate: done", File.ReadAllText(Path.Combine(stopped, "log.txt")));
        string replaced = Path.Combine(stopped, RunFolder.ReplacedFolder);
        Assert.Equal("the replaced run's report", File.ReadAllText(Path.Combine(replaced, "report.md")));
        Assert.Contains("\"finished\"", File.ReadAllText(Path.Combine(replaced, "run.json")));
        Assert.Equal(Metrics(straight), Metrics(replaced));
        Assert.Contains($"The run this one replaced is kept in {replaced}", File.ReadAllText(Path.Combine(stopped, "log.txt")));

        (code, output) = Run(Shrunk(stopped), resume: stopped);
        Assert.True(code == 0, output + File.ReadAllText(Path.Combine(stopped, "log.txt")));
        Assert.Equal(Metrics(straight), Metrics(stopped));
        Assert.False(Directory.Exists(replaced), "a finished run deletes the run it replaced");
        Assert.Contains($"Deleted the run this one replaced ({replaced})", File.ReadAllText(Path.Combine(stopped, "log.txt")));
    }

    /// <summary>Starts the host in a child process; returns it with its output collected.</summary>
    private static (Process Process, System.Text.StringBuilder Output) Start(string[] overrides)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hierdistill.dll"));
        psi.ArgumentList.Add("run");
        psi.ArgumentList.Add(TestPaths.Sample("toy2d/hd.json"));
        foreach (var o in overrides)
        {
            psi.ArgumentList.Add("--set");
            psi.ArgumentList.Add(o);
        }
        var output = new System.Text.StringBuilder();
        var process = Process.Start(psi)!;
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, output);
    }

    /// <summary>Waits until the run folder holds a checkpoint of the teacher stage (the first periodic one).</summary>
    private static void WaitForCheckpoint(string folder, Process process, System.Text.StringBuilder output)
    {
        var clock = Stopwatch.StartNew();
        while (!File.Exists(Path.Combine(folder, CheckpointStore.FileName)))
        {
            Assert.False(process.HasExited, $"the run ended before its first checkpoint:\n{output}");
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(2), $"no checkpoint after 2 minutes:\n{output}");
            Thread.Sleep(20);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    /// <summary>
    /// A scheduler or <c>docker stop</c> may send SIGTERM more than once: every SIGTERM after the first is ignored, also those
    /// that arrive while the stopped process exits, so it still exits 130 (not 143, the shell's code for a death by SIGTERM).
    /// </summary>
    [Fact]
    public void Repeated_sigterms_stop_a_run_once_and_it_exits_130()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = folder.File("run");
        var (process, output) = Start(Shrunk(run, "stages:teacher:training:steps=3000", "run:checkpointEvery=100"));
        WaitForCheckpoint(run, process, output);
        // SIGTERM (15) every 0.2 ms until the process is gone.
        int sent = 0;
        var clock = Stopwatch.StartNew();
        while (!process.HasExited && clock.Elapsed < TimeSpan.FromMinutes(1))
        {
            if (SendSignal(process.Id, 15) == 0) sent++;
            Thread.SpinWait(2000);
        }
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(1)), "the run did not stop within a minute of SIGTERM");
        process.WaitForExit();
        Assert.True(sent > 1, $"{sent} SIGTERM sent");
        Assert.True(process.ExitCode == ExitCodes.Cancelled, $"exit {process.ExitCode} after {sent} SIGTERM:\n{output}");
        Assert.Contains("\"cancelled\"", File.ReadAllText(Path.Combine(run, "run.json")));
    }

    [Fact]
    public void A_killed_process_resumes_from_its_last_periodic_checkpoint_and_sigint_writes_one_and_exits_130()
    {
        using var folder = TestPaths.NewTempFolder();
        string straight = folder.File("straight"), killed = folder.File("killed"), interrupted = folder.File("interrupted");
        string[] longer = ["stages:teacher:training:steps=3000", "run:checkpointEvery=100", "run:logEvery=10"];

        // SIGKILL: nothing can be written at the kill; the resume starts from the last periodic checkpoint, and the steps
        // logged after it are dropped from metrics.jsonl and run again.
        var (process, output) = Start(Shrunk(killed, longer));
        WaitForCheckpoint(killed, process, output);
        // While the child writes the folder, neither --resume nor --overwrite may touch it (its PID and start time, as the
        // child's .NET recorded them, identify it from this process).
        var busy = Assert.Throws<RunFolderException>(() => RunFolder.Open(killed));
        Assert.Contains($"is being written by process {process.Id}, which is still running", busy.Message);
        busy = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(killed, overwrite: true));
        Assert.Contains($"is being written by process {process.Id}, which is still running", busy.Message);
        process.Kill();
        process.WaitForExit();
        Assert.Contains("\"running\"", File.ReadAllText(Path.Combine(killed, "run.json")));
        var checkpoint = CheckpointStore.Read(Path.Combine(killed, CheckpointStore.FileName));
        Assert.Equal("teacher", checkpoint.Manifest.Stage);
        Assert.Equal(0, checkpoint.Manifest.NextStep % 100);
        long checkpointStep = checkpoint.Manifest.NextStep;
        foreach (var t in checkpoint.Tensors.Values) t.Dispose();
        // A kill in the middle of a checkpoint's write leaves its partial file (AtomicFile's .NAME.PID.tmp); the resume deletes it.
        string partial = Path.Combine(killed, $".{CheckpointStore.FileName}.{process.Id}.tmp");
        File.WriteAllBytes(partial, new byte[1000]);

        var (code, text) = Run(Shrunk(killed, longer), resume: killed);
        Assert.True(code == 0, text + File.ReadAllText(Path.Combine(killed, "log.txt")));
        Assert.False(File.Exists(partial));
        Assert.Contains($"- resumed from a checkpoint (stage teacher, step {checkpointStep} of", File.ReadAllText(Path.Combine(killed, "report.md")));
        Assert.Contains($"Deleted {Path.GetFileName(partial)}: partial files the stopped run left mid-write", File.ReadAllText(Path.Combine(killed, "log.txt")));
        (code, text) = Run(Shrunk(straight, longer));
        Assert.True(code == 0, text);
        foreach (var file in new[] { "teacher.safetensors", "student-detail.safetensors" })
            Assert.True(File.ReadAllBytes(Path.Combine(straight, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(killed, file))),
                $"{file} differs after the resume from step {checkpoint.Manifest.NextStep}");
        Assert.Equal(LossCurve(straight, "teacher"), LossCurve(killed, "teacher"));
        Assert.Equal(Metrics(straight), Metrics(killed));
        // TensorBoard: the points the killed process logged after its checkpoint are not shown twice (every tag and step
        // once, as in the straight run; losses equal; timings and memory differ between processes).
        var (tbStraight, tbKilled) = (TensorBoardEvents.Scalars(Path.Combine(straight, MetricsWriter.TensorBoardFolder)),
            TensorBoardEvents.Scalars(Path.Combine(killed, MetricsWriter.TensorBoardFolder)));
        Assert.Equal(tbStraight.Select(p => (p.Tag, p.Step)).Order(), tbKilled.Select(p => (p.Tag, p.Step)).Order());
        Assert.Equal(tbStraight.Where(p => p.Tag.EndsWith("loss", StringComparison.Ordinal)).Order(),
            tbKilled.Where(p => p.Tag.EndsWith("loss", StringComparison.Ordinal)).Order());

        // SIGINT (Ctrl-C): the run stops at the next step boundary, writes a checkpoint there and exits 130.
        (process, output) = Start(Shrunk(interrupted, longer));
        WaitForCheckpoint(interrupted, process, output);
        using (var kill = Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(1)), "the run did not stop within a minute of SIGINT");
        process.WaitForExit(); // the timed wait does not wait for the redirected streams' last lines; this one does
        Assert.True(process.ExitCode == ExitCodes.Cancelled, $"exit {process.ExitCode}:\n{output}");
        Assert.Contains("Ctrl-C: stopping at the next step or batch", output.ToString());
        string status = File.ReadAllText(Path.Combine(interrupted, "run.json"));
        Assert.Contains("\"cancelled\"", status);
        var atSignal = CheckpointStore.Read(Path.Combine(interrupted, CheckpointStore.FileName));
        Assert.Contains($"stage {atSignal.Manifest.Stage}, step {atSignal.Manifest.NextStep} of", status);
        Assert.NotNull(atSignal.Manifest.Stage);
        foreach (var t in atSignal.Tensors.Values) t.Dispose();
        Assert.Contains($"continue it with: hierdistill run {Path.Combine(interrupted, "config.resolved.json")} --resume {interrupted}",
            File.ReadAllText(Path.Combine(interrupted, "log.txt")));
    }
}
