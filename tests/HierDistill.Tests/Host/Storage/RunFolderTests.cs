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

    [Fact]
    public void Overwrite_deletes_only_what_a_run_writes()
    {
        using var folder = TestPaths.NewTempFolder();
        string run = FinishedRun(folder);
        var prepared = RunFolder.Prepare(run, overwrite: true);
        Assert.Equal(["run.json"], Directory.GetFileSystemEntries(run).Select(Path.GetFileName));
        Assert.Equal(run, prepared.Path);
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
    public void A_non_empty_folder_without_a_run_is_never_used()
    {
        using var folder = TestPaths.NewTempFolder();
        File.WriteAllText(folder.File("notes.txt"), "mine");
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Prepare(folder.Path, overwrite: true));
        Assert.Contains("holds no HierDistill run", e.Message);
        Assert.Equal("mine", File.ReadAllText(folder.File("notes.txt")));
    }
}
