using HierDistill.Host.Storage;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Storage;

public class RunFolderTests
{
    private static string FinishedRun(TempFolder folder)
    {
        string run = folder.File("run");
        Directory.CreateDirectory(Path.Combine(run, "tensorboard"));
        File.WriteAllText(Path.Combine(run, "run.json"), """{ "status": "finished" }""");
        File.WriteAllText(Path.Combine(run, "report.md"), "old report");
        File.WriteAllText(Path.Combine(run, "teacher.safetensors"), "weights");
        return run;
    }

    /// <summary>A run stopped by Ctrl-C: one that --resume opens.</summary>
    private static string CancelledRun(TempFolder folder)
    {
        string run = FinishedRun(folder);
        File.WriteAllText(Path.Combine(run, "run.json"), """{ "status": "cancelled" }""");
        File.WriteAllText(Path.Combine(run, "config.resolved.json"), "{}");
        return run;
    }

    /// <summary>The folder's entries by name, less the lock file a run keeps there (A_run_folder_is_written_by_one_run_at_a_time).</summary>
    private static string[] Entries(string folder) => Directory.GetFileSystemEntries(folder).Select(Path.GetFileName)
        .Where(n => n != RunFolder.LockFile).Order(StringComparer.Ordinal).ToArray()!;

    [Fact]
    public void Overwrite_sets_the_run_aside_until_a_run_there_finishes()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        var prepared = RunFolder.Prepare(run, overwrite: true);
        Assert.Equal(run, prepared.Path);
        string replaced = Path.Combine(run, RunFolder.ReplacedFolder);
        Assert.Equal(["replaced-run", "run.json"], Entries(run));
        Assert.Equal(["report.md", "run.json", "teacher.safetensors", "tensorboard"], Entries(replaced));
        Assert.Equal("old report", File.ReadAllText(Path.Combine(replaced, "report.md")));
        Assert.Contains("finished", File.ReadAllText(Path.Combine(replaced, "run.json")));
        Assert.Contains("running", File.ReadAllText(Path.Combine(run, "run.json")));
        Assert.Equal(replaced, prepared.Replaced);

        // The replacement fails; replaced again, its outputs go and the finished run stays aside.
        File.WriteAllText(Path.Combine(run, "report.md"), "failed run's report");
        prepared.SetStatus("failed", "NaN");
        Assert.Null(prepared.DeletedUnfinishedRun);
        prepared.Dispose();
        prepared = RunFolder.Prepare(run, overwrite: true);
        Assert.Equal("failed", prepared.DeletedUnfinishedRun);
        Assert.Equal(["replaced-run", "run.json"], Entries(run));
        Assert.Equal("old report", File.ReadAllText(Path.Combine(replaced, "report.md")));

        // A run that finishes deletes it; a finished run replaced later is set aside in turn.
        Assert.Equal(replaced, prepared.DropReplaced());
        Assert.Null(prepared.Replaced);
        Assert.Null(prepared.DropReplaced());
        File.WriteAllText(Path.Combine(run, "report.md"), "second report");
        prepared.SetStatus("finished");
        prepared.Dispose();
        RunFolder.Prepare(run, overwrite: true).Dispose();
        Assert.Equal("second report", File.ReadAllText(Path.Combine(replaced, "report.md")));
    }

    [Fact]
    public void A_resume_deletes_the_partial_files_a_stopped_process_left_and_nothing_else()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = CancelledRun(folder);
        int dead = DeadProcessId();
        using var alive = System.Diagnostics.Process.Start("sleep", "60");
        File.WriteAllText(Path.Combine(run, $".checkpoint.safetensors.{dead}.tmp"), "partial");
        File.WriteAllText(Path.Combine(run, $".metrics.json.{dead}.tmp"), "partial");
        File.WriteAllText(Path.Combine(run, $".checkpoint.safetensors.{alive.Id}.tmp"), "a live process's"); // kept
        File.WriteAllText(Path.Combine(run, $".notes.{dead}.tmp"), "yours: notes is no run output");         // kept
        File.WriteAllText(Path.Combine(run, ".notes.tmp"), "not AtomicFile's");                              // kept
        Directory.CreateDirectory(Path.Combine(run, $".report.md.{dead}.tmp"));                               // a folder: kept
        try
        {
            using var opened = RunFolder.Open(run);
            Assert.Equal([$".checkpoint.safetensors.{dead}.tmp", $".metrics.json.{dead}.tmp"], opened.DeletePartialFiles().Order(StringComparer.Ordinal));
            Assert.Equal([$".checkpoint.safetensors.{alive.Id}.tmp", $".notes.{dead}.tmp", ".notes.tmp", $".report.md.{dead}.tmp",
                          "config.resolved.json", "report.md", "run.json", "teacher.safetensors", "tensorboard"], Entries(run));
            Assert.Empty(opened.DeletePartialFiles());
        }
        finally
        {
            alive.Kill();
        }
    }

    /// <summary>The id of a process that has exited (and, for the length of a test, not been reused).</summary>
    private static int DeadProcessId()
    {
        using var exited = System.Diagnostics.Process.Start("true");
        exited.WaitForExit();
        return exited.Id;
    }

    [Fact]
    public void Run_json_records_the_wall_seconds_of_every_process_of_the_run()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = CancelledRun(folder);
        File.WriteAllText(Path.Combine(run, "run.json"), """{ "status": "cancelled", "seconds": "100.0" }"""); // an earlier process's
        using (var resumed = RunFolder.Open(run))
        {
            Thread.Sleep(120);
            resumed.SetStatus("finished");
        }
        double seconds = RunFolder.Seconds(run)!.Value;
        Assert.InRange(seconds, 100.1, 160); // 100 s earlier + this process's (at least the 0.12 s slept)
        // Written as JSON numbers (a run folder of an earlier version holds strings, read above).
        using (var status = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "run.json"))))
        {
            Assert.Equal(seconds, status.RootElement.GetProperty("seconds").GetDouble());
            Assert.Equal(Environment.ProcessId, status.RootElement.GetProperty("pid").GetInt32());
        }
        Assert.Null(RunFolder.Seconds(folder.File("none")));
        using var fresh = RunFolder.Prepare(folder.File("new"), overwrite: false);
        Assert.InRange(RunFolder.Seconds(fresh.Path)!.Value, 0, 60); // a new run starts from 0
    }

    [Fact]
    public void A_run_folder_is_written_by_one_run_at_a_time()
    {
        // Two resumes (or an --overwrite and a resume) of one folder started together: the second is refused while the
        // first holds the folder's lock, and gets it once the first is done.
        using var folder = TestPaths.NewTempFolder();
        string run = CancelledRun(folder);
        var first = RunFolder.Open(run);
        var refused = Assert.Throws<RunFolderException>(() => RunFolder.Open(run));
        Assert.Equal($"{run} is being written by another process (it holds {RunFolder.LockFile}); stop it first (Ctrl-C writes a checkpoint), " +
                     "then resume, or choose another folder.", refused.Message);
        Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true));
        Assert.Equal(["config.resolved.json", "report.md", "run.json", "teacher.safetensors", "tensorboard"], Entries(run)); // nothing moved
        first.Dispose();
        using var second = RunFolder.Prepare(run, overwrite: true);
        Assert.Equal([RunFolder.LockFile, "replaced-run", "run.json"],
            Directory.GetFileSystemEntries(run).Select(Path.GetFileName).Order(StringComparer.Ordinal)); // the lock file stays in place
    }

    [Fact]
    public void A_folder_whose_lock_is_held_is_refused_as_such_before_what_it_holds_is_judged()
    {
        // Another process is half-way through setting a run aside: run.json has moved into replaced-run/ already. The folder
        // looks like one holding only a set-aside run, whose message would advise moving files under a live run.
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        using (var other = RunFolder.Lock(run))
        {
            Directory.CreateDirectory(Path.Combine(run, RunFolder.ReplacedFolder));
            File.Move(Path.Combine(run, "run.json"), Path.Combine(run, RunFolder.ReplacedFolder, "run.json"));
            string held = $"{run} is being written by another process (it holds {RunFolder.LockFile}); stop it first (Ctrl-C writes a " +
                          "checkpoint), then resume, or choose another folder.";
            Assert.Equal(held, Assert.Throws<RunFolderException>(() => RunFolder.CheckPreparable(run, overwrite: true)).Message);
            Assert.Equal(held, Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true)).Message);
        }
        Assert.StartsWith($"run.outputDir {run} holds no run of its own", Assert.Throws<RunFolderException>(() => RunFolder.CheckPreparable(run, overwrite: true)).Message);
    }

    [Fact]
    public void A_lock_file_that_is_a_folder_or_a_link_is_named()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = CancelledRun(folder);
        string lockPath = Path.Combine(run, RunFolder.LockFile);
        Directory.CreateDirectory(lockPath);
        Assert.Equal($"{lockPath} is a folder, not HierDistill's lock file; remove it and run again.",
            Assert.Throws<RunFolderException>(() => RunFolder.Open(run)).Message);
        Directory.Delete(lockPath);
        string outside = folder.File("outside.lock");
        File.CreateSymbolicLink(lockPath, outside); // dangling: opening it would create a file outside the run folder
        Assert.Equal($"{lockPath} is a link (to {outside}), not HierDistill's lock file; remove it (rm {lockPath}) and run again.",
            Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true)).Message);
        Assert.False(File.Exists(outside));
    }

    [Fact]
    public void A_finished_run_takes_the_place_of_an_older_replaced_run()
    {
        // The replaced run's deletion failed when its successor finished: the successor, now replaced, is the one kept.
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        string replaced = Directory.CreateDirectory(Path.Combine(run, RunFolder.ReplacedFolder)).FullName;
        File.WriteAllText(Path.Combine(replaced, "run.json"), """{ "status": "finished" }""");
        File.WriteAllText(Path.Combine(replaced, "report.md"), "oldest report");
        RunFolder.Prepare(run, overwrite: true).Dispose();
        Assert.Equal("old report", File.ReadAllText(Path.Combine(replaced, "report.md")));
    }

    [Fact]
    public void An_interrupted_set_aside_is_completed_not_deleted()
    {
        // Killed while moving: some outputs are aside already, run.json (moved last) is not.
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        string replaced = Directory.CreateDirectory(Path.Combine(run, RunFolder.ReplacedFolder)).FullName;
        File.Move(Path.Combine(run, "teacher.safetensors"), Path.Combine(replaced, "teacher.safetensors"));
        RunFolder.Prepare(run, overwrite: true).Dispose();
        Assert.Equal(["report.md", "run.json", "teacher.safetensors", "tensorboard"], Entries(replaced));
        Assert.Equal("weights", File.ReadAllText(Path.Combine(replaced, "teacher.safetensors")));
    }

    [Fact]
    public void Overwrite_refuses_to_delete_files_a_run_does_not_write()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        Directory.CreateDirectory(Path.Combine(run, "src"));
        File.WriteAllText(Path.Combine(run, "my.json"), "{}");
        // A dot-folder ending in .tmp is the user's too: only the TensorBoard rewrite's two temporary folders are a run's.
        Directory.CreateDirectory(Path.Combine(run, ".my-notes.tmp"));
        Directory.CreateDirectory(Path.Combine(run, ".tensorboard.tmp"));
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true));
        Assert.Contains("also .my-notes.tmp, my.json, src, which a run does not write", e.Message);
        Assert.True(File.Exists(Path.Combine(run, "report.md")));
    }

    /// <summary>A picture or weights file the user put in the run folder (a <c>sample --out</c>, a backup) is not a run
    /// output because of its extension: only the names a run writes are, for the stages its config.resolved.json names.</summary>
    [Fact]
    public void Overwrite_keeps_pictures_and_weights_a_run_does_not_write_and_replaces_those_it_does()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        File.WriteAllText(Path.Combine(run, "config.resolved.json"),
            """{ "stages": { "base": { "kind": "teacher" }, "structure": {}, "my_stage": {}, "detail": {}, "evaluate": {} } }""");
        string[] mine = ["my-1step.png", "samples-mine-nfe1.png", "student-structure-old.safetensors", ".notes.12.tmp", "teacher-backup.safetensors"];
        string[] written = ["samples.png", "samples-data.png", "samples-teacher-nfe16.png", "samples-detail-nfe1.png", "losses.png",
                            "student-structure.safetensors", "student-my_stage.safetensors", "checkpoint.safetensors", ".losses.png.4242.tmp",
                            ".student-detail.safetensors.77.tmp"];
        foreach (string f in mine.Concat(written)) File.WriteAllText(Path.Combine(run, f), f);
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true));
        Assert.Contains($"also {string.Join(", ", mine.Order(StringComparer.Ordinal))}, which a run does not write", e.Message);
        Assert.All(mine.Concat(written), f => Assert.Equal(f, File.ReadAllText(Path.Combine(run, f))));

        foreach (string f in mine) File.Delete(Path.Combine(run, f));
        RunFolder.Prepare(run, overwrite: true).Dispose();
        Assert.Equal([.. written.Concat(["config.resolved.json", "report.md", "run.json", "teacher.safetensors", "tensorboard"]).Order(StringComparer.Ordinal)],
            Entries(Path.Combine(run, RunFolder.ReplacedFolder)));
    }

    /// <summary>The stage keys come from the set-aside's config when a set-aside cut short moved it already (entries move in
    /// name order, run.json last), and from a config with comments; with no config readable, any stage name counts.</summary>
    [Fact]
    public void The_runs_stage_outputs_are_known_after_an_interrupted_set_aside_and_from_a_config_with_comments()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        File.WriteAllText(Path.Combine(run, "config.resolved.json"), "{ \"run\": { \"seed\": 0 }, // a comment\n \"stages\": { \"structure\": {}, \"detail\": {}, }, }");
        File.WriteAllText(Path.Combine(run, "student-structure.safetensors"), "s");
        File.WriteAllText(Path.Combine(run, "student-detail.safetensors"), "d");
        Assert.Equal(["detail", "structure"], RunFolder.StageKeys(run)!.Order(StringComparer.Ordinal));
        // A set-aside cut short after config.resolved.json and report.md (before the students and run.json).
        string replaced = Directory.CreateDirectory(Path.Combine(run, RunFolder.ReplacedFolder)).FullName;
        File.Move(Path.Combine(run, "config.resolved.json"), Path.Combine(replaced, "config.resolved.json"));
        File.Move(Path.Combine(run, "report.md"), Path.Combine(replaced, "report.md"));
        Assert.Equal(["detail", "structure"], RunFolder.StageKeys(run)!.Order(StringComparer.Ordinal));
        RunFolder.Prepare(run, overwrite: true).Dispose();
        Assert.Equal(["config.resolved.json", "report.md", "run.json", "student-detail.safetensors", "student-structure.safetensors", "teacher.safetensors", "tensorboard"],
            Entries(replaced));
        // No readable config: any stage name is a run's.
        File.WriteAllText(Path.Combine(replaced, "config.resolved.json"), "{ not json");
        Assert.Null(RunFolder.StageKeys(replaced));
        Assert.True(RunFolder.IsRunOutput("student-anything.safetensors", false, null));
        Assert.False(RunFolder.IsRunOutput("student-anything.safetensors", false, new HashSet<string> { "structure" }));
    }

    [Fact]
    public void Overwrite_refuses_to_delete_an_input_of_the_run()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        var inputs = new Dictionary<string, string> { ["stages:teacher:loadFrom"] = Path.Combine(run, "teacher.safetensors") };
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true, inputs));
        Assert.Contains("which this run reads (stages:teacher:loadFrom)", e.Message);
        Assert.Equal("weights", File.ReadAllText(Path.Combine(run, "teacher.safetensors")));
        // Without --overwrite the refusal does not suggest it: it could not work.
        e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: false, inputs));
        Assert.Equal($"run.outputDir {run} already holds a finished run, and this run reads {Path.Combine(run, "teacher.safetensors")} " +
                     "(stages:teacher:loadFrom) from it; choose another folder for this run's output (--set run.outputDir=...).", e.Message);
    }

    [Fact]
    public void A_run_whose_process_died_is_named_as_such_and_can_be_resumed()
    {
        // A process that aborted (a native crash, kill -9) leaves run.json saying "running" with its pid.
        using var folder = TestPaths.NewTempFolder();
        using var gone = System.Diagnostics.Process.Start("true")!;
        gone.WaitForExit();
        string run = Directory.CreateDirectory(folder.File("run")).FullName;
        File.WriteAllText(Path.Combine(run, "run.json"), $$"""{ "status": "running", "pid": {{gone.Id}} }""");
        File.WriteAllText(Path.Combine(run, "config.resolved.json"), "{}");
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: false));
        Assert.Equal($"run.outputDir {run} already holds a run whose process ({gone.Id}) ended while it was running (killed, or a crash: its " +
                     $"log.txt ends where it stopped); continue it with --resume {run}, choose another folder (--set run.outputDir=...) or pass " +
                     "--overwrite (or --set run.overwrite=true) to replace it.", e.Message);
        using var resumed = RunFolder.Open(run); // no live writer: it can be resumed
    }

    [Fact]
    public void The_set_aside_run_is_not_run_in_and_what_it_holds_of_the_users_is_not_deleted()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        string replaced = Path.Combine(run, RunFolder.ReplacedFolder);
        var prepared = RunFolder.Prepare(run, overwrite: true);
        prepared.Dispose(); // its lock; the run's status and set-aside folder are used below as a later run's

        // Resumed or run in place, it would be deleted under the run by the next run there that finishes.
        File.WriteAllText(Path.Combine(replaced, "config.resolved.json"), "{}");
        string expected = $"{replaced} is the run an --overwrite set aside in {run}, which a run there deletes when it finishes; to run or " +
                          $"resume it, move it out first (e.g. mv {replaced} {run}-previous) and use that folder.";
        Assert.Equal(expected, Assert.Throws<RunFolderException>(() => RunFolder.Open(replaced)).Message);
        Assert.Equal(expected, Assert.Throws<RunFolderException>(() => RunFolder.Open(replaced + "/")).Message); // as tab completion writes it
        Assert.Equal("run.outputDir " + expected, Assert.Throws<RunFolderException>(() => RunFolder.Prepare(replaced + "/", overwrite: true)).Message);

        // The user's own files in it: --overwrite refuses (as for the folder itself), and a finished run keeps it.
        File.WriteAllText(Path.Combine(replaced, "NOTES.txt"), "mine");
        prepared.SetStatus("failed");
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true));
        Assert.Contains("holds a run and also replaced-run/NOTES.txt, which a run does not write", e.Message);
        Assert.Contains("NOTES.txt, which a run does not write, so it is kept", Assert.Throws<IOException>(() => prepared.DropReplaced()).Message);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(replaced, "NOTES.txt")));
        File.Delete(Path.Combine(replaced, "NOTES.txt"));
        Assert.Equal(replaced, prepared.DropReplaced());
        Assert.Equal(["run.json"], Entries(run));

        // A link as replaced-run would move the run out of the folder.
        using var elsewhere = TestPaths.NewTempFolder();
        prepared.SetStatus("finished");
        Directory.CreateSymbolicLink(replaced, elsewhere.Path);
        e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true));
        Assert.Equal($"{replaced} is a link (to {elsewhere.Path}); --overwrite moves the run it replaces there, so remove the link (rm {replaced}) " +
                     "or choose another folder.", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(elsewhere.Path));
    }

    [Fact]
    public void A_folder_holding_only_the_set_aside_run_says_so()
    {
        // The replacement stopped between setting the run aside and writing its own run.json (a full disk, a kill).
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        RunFolder.Prepare(run, overwrite: true).Dispose();
        File.Delete(Path.Combine(run, "run.json"));
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true));
        Assert.Equal($"run.outputDir {run} holds no run of its own (run.json missing: the run that replaced it stopped before writing one), only the " +
                     $"run an --overwrite set aside in {Path.Combine(run, "replaced-run")}; move that folder's contents up into {run} to put it back, or " +
                     "choose another folder (--set run.outputDir=...).", e.Message);
        Assert.Equal("old report", File.ReadAllText(Path.Combine(run, "replaced-run", "report.md")));
    }

    [Fact]
    public void A_set_aside_that_fails_half_way_puts_back_what_it_moved()
    {
        // Entries move in name order, run.json last: report.md goes, then the move of teacher.safetensors fails (as one of a
        // file the user cannot move would).
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        var before = Entries(run);
        RunFolderException e;
        var tried = new List<string>();
        RunFolder.BeforeMove = entry =>
        {
            // This folder's only: tests running beside this one may set runs aside meanwhile.
            if (!entry.StartsWith(run + Path.DirectorySeparatorChar, StringComparison.Ordinal)) return;
            tried.Add(Path.GetFileName(entry));
            if (entry == Path.Combine(run, "teacher.safetensors")) throw new IOException("Operation not permitted");
        };
        try
        {
            e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(run, overwrite: true));
        }
        finally
        {
            RunFolder.BeforeMove = null;
        }
        Assert.StartsWith($"--overwrite could not set aside the run in {run}: moving it into replaced-run/ failed (", e.Message);
        Assert.EndsWith("What had been moved was put back, so the folder holds its run as before; fix the cause (permissions, a file in use) and run " +
                        "again, or choose another folder.", e.Message);
        Assert.Equal(["report.md", "teacher.safetensors"], tried); // one entry had moved, and was put back
        Assert.Contains("failed (Operation not permitted). What had been moved was put back", e.Message);
        Assert.Equal(before, Entries(run));
        Assert.Equal("old report", File.ReadAllText(Path.Combine(run, "report.md")));
        Assert.Contains("finished", File.ReadAllText(Path.Combine(run, "run.json")));
    }

    [Fact]
    public void A_non_empty_folder_without_a_run_is_never_used()
    {
        using var folder = TestPaths.NewTempFolder();
        File.WriteAllText(folder.File("notes.txt"), "mine");
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(folder.Path, overwrite: true));
        Assert.Contains("holds no HierDistill run", e.Message);
        Assert.Equal("mine", File.ReadAllText(folder.File("notes.txt")));
    }
}
