using System.IO.Compression;
using System.Text;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Storage;
using HierDistill.Host.Training;
using HierDistill.Tests.Host.Pipeline;
using HierDistill.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Storage;

/// <summary>Bad inputs around checkpoints, resume, weights and the output folder (docs/bad-inputs.md): a clear message, nothing damaged.</summary>
public class BadInputTests
{
    /// <summary>A shrunk toy run stopped (as by Ctrl-C) after step 5 of the structure stage.</summary>
    private static string StoppedRun(TempFolder folder)
    {
        string output = folder.File("stopped");
        var (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), "structure", 5);
        Assert.True(code == ExitCodes.Cancelled, text);
        return output;
    }

    [Fact]
    public void A_resume_that_cannot_rewrite_tensorboard_fails_with_exit_1_and_can_be_resumed_once_the_cause_is_gone()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = StoppedRun(folder);
        string tensorboard = Path.Combine(output, MetricsWriter.TensorBoardFolder), checkpoint = Path.Combine(output, CheckpointStore.FileName);
        byte[] saved = File.ReadAllBytes(checkpoint);
        string metrics = File.ReadAllText(Path.Combine(output, MetricsWriter.FileName));
        // A file where the TensorBoard folder belongs: the swap cannot put the rewritten folder there.
        Directory.Delete(tensorboard, recursive: true);
        File.WriteAllText(tensorboard, "not a folder");

        var (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), resume: output);
        Assert.True(code == ExitCodes.Failed, text);
        string status = File.ReadAllText(Path.Combine(output, "run.json"));
        Assert.Contains("\"failed\"", status);
        Assert.Contains("could not be written", status);
        Assert.Contains("could not be written", File.ReadAllText(Path.Combine(output, "log.txt")));
        Assert.Equal(saved, File.ReadAllBytes(checkpoint));
        Assert.Equal(metrics, File.ReadAllText(Path.Combine(output, MetricsWriter.FileName)));

        File.Delete(tensorboard);
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), resume: output);
        Assert.True(code == ExitCodes.Ok, text + File.ReadAllText(Path.Combine(output, "log.txt")));
        Assert.Empty(Directory.GetDirectories(output, ".*"));
    }

    [Fact]
    public void Resume_refuses_another_config_a_damaged_or_newer_checkpoint_a_finished_run_and_a_non_run_folder()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = StoppedRun(folder);
        string checkpoint = Path.Combine(output, CheckpointStore.FileName);
        byte[] good = File.ReadAllBytes(checkpoint);

        // Another config: every differing key with both values; exit 2; nothing written.
        var (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output, "stages:structure:training:steps=25"), resume: output);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("the config differs from the one the run was started with (1 key(s))", text);
        Assert.Contains("stages:structure:training:steps: '24' → '25'", text);

        // A checkpoint written with another config than the folder's (as if copied from another run).
        string resolvedPath = Path.Combine(output, "config.resolved.json");
        string resolved = File.ReadAllText(resolvedPath);
        File.WriteAllText(resolvedPath, resolved.Replace("\"steps\": 24", "\"steps\": 25"));
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output, "stages:structure:training:steps=25", "stages:detail:training:steps=25"), resume: output);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("was written with another config than this folder's config.resolved.json (it was copied from another run?)", text);
        File.WriteAllText(resolvedPath, resolved);

        // A truncated checkpoint.
        File.WriteAllBytes(checkpoint, good[..(good.Length / 2)]);
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), resume: output);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("cannot be read", text);
        Assert.Contains("it is truncated or not a safetensors file", text);

        // A weights file where the checkpoint should be.
        File.Copy(Path.Combine(output, "teacher.safetensors"), checkpoint, overwrite: true);
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), resume: output);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("is a safetensors file but not a HierDistill checkpoint", text);

        // A checkpoint of a newer format.
        using (var scope = NewDisposeScope())
        {
            var tensors = new Dictionary<string, Tensor>
            {
                ["hierdistill/manifest"] = tensor(Encoding.UTF8.GetBytes("""{"FormatVersion":7,"HostVersion":"9.0.0","Completed":[]}""")),
            };
            Safetensors.SaveStateDict(checkpoint, tensors);
        }
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), resume: output);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("has checkpoint format 7 (written by HierDistill 9.0.0), newer than this host reads (format 2", text);

        // A checkpoint of the older format 1 (TorchSharp's serialised Adam state), from before the device-side optimiser.
        using (var scope = NewDisposeScope())
        {
            var tensors = new Dictionary<string, Tensor>
            {
                ["hierdistill/manifest"] = tensor(Encoding.UTF8.GetBytes("""{"FormatVersion":1,"HostVersion":"0.1.0","Completed":[]}""")),
            };
            Safetensors.SaveStateDict(checkpoint, tensors);
        }
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), resume: output);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("has checkpoint format 1 (written by HierDistill 0.1.0), which holds the optimiser state in TorchSharp's own serialisation; " +
                        "this host (HierDistill 0.2.0) reads format 2 only. Resume it with HierDistill 0.1.0, or run the stage again", text);

        // The good checkpoint back, resumed with a lower learning rate (allowed, with a warning; the config is updated):
        // the run finishes; a second resume finds nothing to do.
        File.WriteAllBytes(checkpoint, good);
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output, "stages:structure:training:learningRate=1e-4", "run:threads=2"), resume: output);
        Assert.True(code == ExitCodes.Ok, text);
        Assert.Contains("Resumed with a changed setting (the result will differ from the uninterrupted run's): stages:structure:training:learningRate: '0.0003' → '0.0001'",
            File.ReadAllText(Path.Combine(output, "log.txt")));
        // Another thread count (a machine with other cores) is allowed too, with the same warning.
        Assert.Contains("Resumed with a changed setting (the result will differ from the uninterrupted run's): run:threads: '1' → '2'",
            File.ReadAllText(Path.Combine(output, "log.txt")));
        Assert.Contains("\"learningRate\": 0.0001", File.ReadAllText(Path.Combine(output, "config.resolved.json")));
        // report.md still says how the run was made (the first start's --set values, not the resume's), and what the resume changed.
        string report = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains($"- config: `{TestPaths.Sample("toy2d/hd.json")}` with `--set run:outputDir={output}`", report);
        Assert.DoesNotContain("--set stages:structure:training:learningRate=1e-4", report);
        Assert.Contains("- resumed with changed settings: `run:threads: '1' → '2'`; `stages:structure:training:learningRate: '0.0003' → '0.0001'`", report);
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), resume: output);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("holds a finished run; nothing to resume", text);

        // Not a run folder; --resume with --overwrite.
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(output), resume: folder.Path);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("not a HierDistill run folder (run.json missing)", text);
        var writer = new StringWriter();
        code = new HostApplication(SampleRunTests.TestConsole(writer)).Run(TestPaths.Sample("toy2d/hd.json"), ResumeTests.Shrunk(output),
            overwrite: true, CancellationToken.None, resume: output);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("--resume continues a run and --overwrite starts it again", writer.ToString());
    }

    [Fact]
    public void A_checkpoint_of_another_architecture_names_the_first_mismatched_tensor_and_both_shapes()
    {
        using var folder = TestPaths.NewTempFolder();
        var store = new CheckpointStore(folder.Path, 0, "digest");
        using (var small = new ModuleOptimizer("student", nn.Linear(4, 2), new OptimizerSettings(1e-3)))
        {
            var state = new TrainingState();
            state.Optimizers.Add(small);
            store.Save("structure", 3, 10, 1.0, state);
        }
        var resumed = new CheckpointStore(folder.Path, 0, "digest", CheckpointStore.Read(store.Path));
        using var wide = new ModuleOptimizer("student", nn.Linear(4, 3), new OptimizerSettings(1e-3));
        var other = new TrainingState();
        other.Optimizers.Add(wide);
        var e = Assert.Throws<CheckpointException>(() => resumed.Resume("structure", 10, other));
        Assert.StartsWith($"{store.Path} (student): tensor 'weight' has shape [2, 4] in the file but [3, 4] in the module", e.Message);
    }

    [Fact]
    public void A_pytorch_pickle_is_refused_as_weights_and_never_executed()
    {
        using var folder = TestPaths.NewTempFolder();
        string marker = folder.File("pwned");
        string pt = folder.File("teacher.pt");
        // A torch.save-style zip whose data.pkl would run `touch <marker>` if it were unpickled.
        using (var zip = ZipFile.Open(pt, ZipArchiveMode.Create))
        using (var entry = zip.CreateEntry("archive/data.pkl").Open())
            entry.Write(Encoding.ASCII.GetBytes($"cos\nsystem\n(S'touch {marker}'\ntR."));
        using var module = nn.Linear(2, 2);
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(module, pt));
        Assert.Contains("teacher.pt is not a safetensors file", e.Message);
        Assert.Contains("a .pt/.pth pickle must be converted that way first", e.Message);
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void A_failed_write_keeps_the_previous_file_intact_and_leaves_no_temporary_file()
    {
        using var folder = TestPaths.NewTempFolder();
        string path = folder.File("checkpoint.safetensors");
        File.WriteAllText(path, "previous");
        var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[1000]);
            throw new IOException("No space left on device");
        }));
        Assert.Contains($"could not write {path}: No space left on device (any previous version of the file is unchanged)", e.Message);
        Assert.Equal("previous", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(folder.Path));
    }

    [Fact]
    public void Resume_refuses_a_run_another_live_process_is_writing()
    {
        using var folder = TestPaths.NewTempFolder();
        File.WriteAllText(folder.File("run.json"), """{ "status": "running", "pid": "1" }""");
        File.WriteAllText(folder.File("config.resolved.json"), "{}");
        var e = Assert.Throws<RunFolderException>(() => RunFolder.Open(folder.Path));
        Assert.Equal($"{folder.Path} is being written by process 1, which is still running; stop it first (Ctrl-C writes a checkpoint), then resume.", e.Message);
    }

    [Fact]
    public void A_non_writable_output_folder_is_refused_before_anything_runs()
    {
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Run(TestPaths.Sample("toy2d/hd.json"),
            ["run:outputDir=/proc/hierdistill-run"], overwrite: false, CancellationToken.None);
        Assert.Equal(ExitCodes.Failed, code);
        Assert.Contains("run.outputDir /proc/hierdistill-run is not writable", writer.ToString());
        Assert.Contains("choose a writable folder", writer.ToString());
    }

    [Fact]
    public void Plugins_load_only_from_the_configured_folders()
    {
        using var folder = TestPaths.NewTempFolder();
        // A real plugin next to the working files but not in a configured folder is not loaded.
        string stray = Path.Combine(folder.Path, "stray");
        TestPaths.CopyDirectory(Path.Combine(TestPaths.PluginsFolder, "HierDistill.Plugins.Baselines"), Path.Combine(stray, "HierDistill.Plugins.Baselines"));
        string empty = Directory.CreateDirectory(folder.File("configured")).FullName;
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).ListPlugins([empty], includeDefault: false);
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains($"Plugin folders searched: {empty}", writer.ToString());
        Assert.DoesNotContain("Baselines", writer.ToString());
        writer = new StringWriter();
        new HostApplication(SampleRunTests.TestConsole(writer)).ListPlugins([stray], includeDefault: false);
        Assert.Contains("HierDistill.Plugins.Baselines", writer.ToString());
    }

    [Fact]
    public void A_loadFrom_that_is_no_weights_file_is_a_config_error_before_an_existing_run_is_overwritten()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("run");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "run.json"), """{ "status": "finished" }""");
        File.WriteAllText(Path.Combine(output, "teacher.safetensors"), "the old run's weights");
        File.WriteAllText(folder.File("teacher.txt"), "not weights but some text that is long enough");
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Run(TestPaths.Sample("toy2d/hd.json"),
            [$"run:outputDir={output}", $"stages:teacher:loadFrom={folder.File("teacher.txt")}"], overwrite: true, CancellationToken.None);
        Assert.True(code == ExitCodes.InvalidConfig, writer.ToString());
        Assert.Contains("stages:teacher:loadFrom", writer.ToString());
        Assert.Contains("teacher.txt is not a safetensors file", writer.ToString());
        Assert.Equal("the old run's weights", File.ReadAllText(Path.Combine(output, "teacher.safetensors")));
        Assert.Equal(2, Directory.GetFiles(output).Length);
    }

    /// <summary>A finished run's folder whose files the tests check are left as they were.</summary>
    private static string FinishedRun(TempFolder folder)
    {
        string output = folder.File("run");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "run.json"), """{ "status": "finished" }""");
        File.WriteAllText(Path.Combine(output, "report.md"), "the old run's report");
        return output;
    }

    [Fact]
    public void Weights_of_another_architecture_are_a_config_error_before_an_existing_run_is_overwritten()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = FinishedRun(folder);
        // The sample's toy teacher (128 hidden units), and the same architecture with 64.
        string Teacher(int hidden)
        {
            string file = folder.File($"teacher-{hidden}.safetensors");
            using var network = new HierDistill.Plugins.Teachers.Networks.MlpVelocityNetwork(
                new HierDistill.Plugins.Teachers.Networks.MlpOptions { Hidden = hidden, Depth = 3, TokenChannels = 16 },
                new HierDistill.Abstractions.Data.DataSpec("ring8", [2], 2));
            WeightsFile.Save(network, file);
            return file;
        }
        string small = Teacher(64), teacher = Teacher(128);
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Run(TestPaths.Sample("toy2d/hd.json"),
            [$"run:outputDir={output}", $"stages:teacher:loadFrom={small}", $"stages:structure:loadFrom={teacher}"], overwrite: true, CancellationToken.None);
        Assert.True(code == ExitCodes.InvalidConfig, writer.ToString());
        string text = writer.ToString();
        Assert.Contains("2 configuration error(s) found by building the networks (nothing was run or written)", text);
        Assert.Contains($"stages:teacher:loadFrom: {small}: tensor 'net.x_embedder.weight' has shape [64, 2] in the file but [128, 2] in the module", text);
        // A teacher's file where the student is loaded: the student's own input (the t - r embedder) is missing.
        Assert.Contains($"stages:structure:loadFrom: {teacher} has no tensor 'net.h_embedder.", text);
        Assert.Contains("teacher.safetensors and student-<stage>.safetensors are not interchangeable", text);
        Assert.Equal("the old run's report", File.ReadAllText(Path.Combine(output, "report.md")));
        Assert.Equal(2, Directory.GetFiles(output).Length);
    }

    [Fact]
    public void A_discriminator_block_the_teacher_lacks_is_a_config_error_before_anything_runs()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = FinishedRun(folder);
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        int code = app.Run(TestPaths.Sample("toy2d/hd.json"), [$"run:outputDir={output}", "stages:detail:discriminator:options:blocks=[0, 99]"],
            overwrite: true, CancellationToken.None);
        Assert.True(code == ExitCodes.InvalidConfig, writer.ToString());
        // The sample's teacher has depth 3: token features of blocks 0, 1, 2.
        Assert.Contains("stages:detail:discriminator: 'awd' cannot be built: block 99 is not a teacher feature block; available: 0, 1, 2.", writer.ToString());
        Assert.Equal("the old run's report", File.ReadAllText(Path.Combine(output, "report.md")));
        // compare finds it in a variant before the shared teacher trains
        string comparison = folder.File("blocks.json");
        File.WriteAllText(comparison, $$"""
            { "config": "{{TestPaths.Sample("toy2d/hd.json")}}",
              "variants": { "ok": { "stages:detail:discriminator:options:blocks": [1] },
                            "typo": { "stages:detail:discriminator:options:blocks": [0, 99] } } }
            """);
        var compare = new StringWriter();
        code = new HostApplication(SampleRunTests.TestConsole(compare)).Compare(comparison, [], [], 1, folder.File("cmp"),
            overwrite: false, resume: false, CancellationToken.None);
        Assert.True(code == ExitCodes.InvalidConfig, compare.ToString());
        Assert.Contains("block 99 is not a teacher feature block", compare.ToString());
        Assert.Contains("variant 'typo' is invalid", compare.ToString());
        Assert.DoesNotContain("variant 'ok' is invalid", compare.ToString());
        Assert.False(Directory.Exists(folder.File("cmp")));
    }

    [Fact]
    public void A_resumed_run_does_not_check_the_teacher_file_it_no_longer_reads()
    {
        using var folder = TestPaths.NewTempFolder();
        // A teacher of the shrunk architecture (hidden 32, depth 2, 8 token channels), loaded by the run.
        string shared = folder.File("teacher.safetensors");
        using (var teacher = new HierDistill.Plugins.Teachers.Networks.MlpVelocityNetwork(
                   new HierDistill.Plugins.Teachers.Networks.MlpOptions { Hidden = 32, Depth = 2, TokenChannels = 8 },
                   new HierDistill.Abstractions.Data.DataSpec("ring8", [2], 2)))
            WeightsFile.Save(teacher, shared);
        string output = folder.File("run");
        string[] overrides = ResumeTests.Shrunk(output, $"stages:teacher:loadFrom={shared}");
        var (code, text) = ResumeTests.Run(overrides, "structure", 5);
        Assert.True(code == ExitCodes.Cancelled, text);
        // The shared file is replaced by another architecture's; the stopped run restores its teacher from its own folder.
        using (var other = new HierDistill.Plugins.Teachers.Networks.MlpVelocityNetwork(
                   new HierDistill.Plugins.Teachers.Networks.MlpOptions { Hidden = 64, Depth = 2, TokenChannels = 8 },
                   new HierDistill.Abstractions.Data.DataSpec("ring8", [2], 2)))
            WeightsFile.Save(other, shared);
        (code, text) = ResumeTests.Run(overrides, resume: output);
        Assert.True(code == ExitCodes.Ok, text);
        Assert.Contains("Teacher restored from", File.ReadAllText(Path.Combine(output, "log.txt")));
        // A new run with it is refused before anything is written.
        (code, text) = ResumeTests.Run(ResumeTests.Shrunk(folder.File("new"), $"stages:teacher:loadFrom={shared}"));
        Assert.True(code == ExitCodes.InvalidConfig, text);
        Assert.Contains("has shape [64, 2] in the file but [32, 2] in the module", text);
        Assert.False(Directory.Exists(folder.File("new")));
        // Deleted, it is not needed either.
        string again = folder.File("again");
        string[] againOverrides = ResumeTests.Shrunk(again, $"stages:teacher:loadFrom={folder.File("teacher2.safetensors")}");
        File.Copy(Path.Combine(output, "teacher.safetensors"), folder.File("teacher2.safetensors"));
        Assert.Equal(ExitCodes.Cancelled, ResumeTests.Run(againOverrides, "structure", 5).Code);
        File.Delete(folder.File("teacher2.safetensors"));
        (code, text) = ResumeTests.Run(againOverrides, resume: again);
        Assert.True(code == ExitCodes.Ok, text);
    }

    /// <summary>
    /// A run whose teacher and stage 1 are loaded (a stage-2 sweep): its folder holds every stage's weights, its
    /// config.resolved.json names the loaded files by full path, so that the resume command it prints and <c>sample</c> work
    /// from any directory, and <c>sample</c> does not need the loaded files at all.
    /// </summary>
    [Fact]
    public void A_run_from_loaded_weights_holds_every_stages_weights_and_its_resolved_config_works_from_anywhere()
    {
        using var folder = TestPaths.NewTempFolder();
        string first = TeacherAndStageOne(folder);
        int code;
        string text;
        File.Copy(Path.Combine(first, "teacher.safetensors"), folder.File("shared-teacher.safetensors"));
        File.Copy(Path.Combine(first, "student-structure.safetensors"), folder.File("shared-structure.safetensors"));
        // Relative to the working directory, as a user types them.
        string Relative(string file) => Path.GetRelativePath(Environment.CurrentDirectory, file);
        string second = folder.File("second");
        string[] overrides = ResumeTests.Shrunk(second, $"stages:teacher:loadFrom={Relative(folder.File("shared-teacher.safetensors"))}",
            $"stages:structure:loadFrom={Relative(folder.File("shared-structure.safetensors"))}", "stages:evaluate:enabled=false");
        (code, text) = ResumeTests.Run(overrides);
        Assert.True(code == ExitCodes.Ok, text);
        // The loaded stage-1 student is in the run folder, tensor for tensor the loaded file's.
        Assert.Equal(File.ReadAllBytes(folder.File("shared-structure.safetensors")), File.ReadAllBytes(Path.Combine(second, "student-structure.safetensors")));
        var resolved = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(second, "config.resolved.json")))!;
        Assert.Equal(folder.File("shared-teacher.safetensors"), (string?)resolved["stages"]!["teacher"]!["loadFrom"]);
        Assert.Equal(folder.File("shared-structure.safetensors"), (string?)resolved["stages"]!["structure"]!["loadFrom"]);

        // A resume rebuilds the loaded stages from the folder's copies, whatever became of the loaded files: one replaced by
        // other weights, one gone.
        string stopped = folder.File("stopped");
        string[] stoppedOverrides = ResumeTests.Shrunk(stopped, $"stages:teacher:loadFrom={Relative(folder.File("shared-teacher.safetensors"))}",
            $"stages:structure:loadFrom={Relative(folder.File("shared-structure.safetensors"))}", "stages:evaluate:enabled=false");
        (code, text) = ResumeTests.Run(stoppedOverrides, "detail", 5);
        Assert.True(code == ExitCodes.Cancelled, text);
        byte[] loadedStudent = File.ReadAllBytes(folder.File("shared-structure.safetensors"));
        File.Copy(Path.Combine(first, "teacher.safetensors"), folder.File("shared-structure.safetensors"), overwrite: true); // not a student
        File.Delete(folder.File("shared-teacher.safetensors"));
        (code, text) = ResumeTests.Run(stoppedOverrides, resume: stopped);
        Assert.True(code == ExitCodes.Ok, text);
        Assert.Contains("Stage structure: student restored from", File.ReadAllText(Path.Combine(stopped, "log.txt")));
        Assert.Equal(loadedStudent, File.ReadAllBytes(Path.Combine(stopped, "student-structure.safetensors")));

        // sample reads the weights it is given, not the loaded files (gone here).
        File.Delete(folder.File("shared-structure.safetensors"));
        var writer = new StringWriter();
        code = new HostApplication(SampleRunTests.TestConsole(writer)).Sample(Path.Combine(second, "config.resolved.json"), [],
            new HierDistill.Host.Evaluation.SampleRequest(Path.Combine(second, "student-structure.safetensors"), folder.File("grid.png"), 8, null, null, null, 0, null));
        Assert.True(code == ExitCodes.Ok, writer.ToString());
        Assert.True(File.Exists(folder.File("grid.png")));
    }

    /// <summary>A shrunk toy run of the teacher and stage 1 only, in <c>first</c> of <paramref name="folder"/>: weights to load.</summary>
    private static string TeacherAndStageOne(TempFolder folder)
    {
        string first = folder.File("first");
        var (code, text) = ResumeTests.Run(ResumeTests.Shrunk(first, "stages:detail:enabled=false", "stages:evaluate:enabled=false"));
        Assert.True(code == ExitCodes.Ok, text);
        return first;
    }

    /// <summary>A resume checks the loadFrom of a stage still to run at once (not when the run gets there), and skips only those
    /// the run folder restores.</summary>
    [Fact]
    public void A_resume_checks_the_loadFrom_of_a_stage_still_to_run()
    {
        using var folder = TestPaths.NewTempFolder();
        string first = TeacherAndStageOne(folder);
        int code;
        string text;
        string student = folder.File("student.safetensors");
        File.Copy(Path.Combine(first, "student-structure.safetensors"), student);
        string run = folder.File("run");
        string[] overrides = ResumeTests.Shrunk(run, $"stages:structure:loadFrom={student}", "stages:evaluate:enabled=false");
        (code, text) = ResumeTests.Run(overrides, "teacher", 5); // stopped in the teacher stage: stage 1 is still to run
        Assert.True(code == ExitCodes.Cancelled, text);
        File.WriteAllText(student, "not weights");
        (code, text) = ResumeTests.Run(overrides, resume: run);
        Assert.True(code == ExitCodes.InvalidConfig, text);
        Assert.Contains("stages:structure:loadFrom", text);
        Assert.DoesNotContain("Stage teacher: resumed", File.ReadAllText(Path.Combine(run, "log.txt")));
    }

    [Fact]
    public void An_untrained_network_teacher_and_too_many_evaluation_samples_are_config_errors()
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        Assert.Equal(ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("toy2d/hd.json"), ["stages:teacher:training=null"]));
        Assert.Contains("stages:teacher: the teacher 'mlp' is a network with untrained weights; set stages:teacher:training to train it", writer.ToString());
        writer.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("fmnist/hd-cpu.json"),
            ["stages:evaluate:samples=20000", "stages:teacher:teacher:options:preset=DiT-XT/4"]));
        Assert.Contains("stages:evaluate:samples = 20000, but the data's evaluation split has 10000 samples; use at most 10000.", writer.ToString());
        // An analytic teacher has no network for a student: the message names the student key and the way out.
        writer.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("toy2d/hd.json"),
            ["stages:teacher:teacher={\"type\":\"gmm-exact\"}", "stages:teacher:training=null", "stages:detail:enabled=false"]));
        Assert.Contains("stages:structure:student: gmm-exact is analytic", writer.ToString());
        Assert.Contains("set stages:structure:student to a network for a fresh student", writer.ToString());
    }

    [Fact]
    public void A_progressive_distiller_whose_rounds_need_more_than_the_stage_has_is_a_config_error()
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        const string progressive = "stages:structure:distiller={\"type\":\"progressive\",\"options\":{\"stepsPerRound\":100}}";
        // 64 → 1 is 7 rounds: the last starts at step 6 · 100 = 600.
        Assert.Equal(ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("toy2d/hd.json"), [progressive, "stages:structure:training:steps=600"]));
        Assert.Contains("stages:structure:distiller: 'progressive' cannot be built: 7 rounds (64 → 32 → 16 → 8 → 4 → 2 → 1 steps) of 100 " +
                        "training steps need more than 600 steps to reach the last round, but the stage has 600;", writer.ToString());
        // A blank loadFrom trains, so it is checked too.
        writer.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("toy2d/hd.json"),
            [progressive, "stages:structure:training:steps=600", "stages:structure:loadFrom="]));
        Assert.Contains("but the stage has 600;", writer.ToString());
        // Rounds sharing the stage's steps (stepsPerRound 0) need one step each.
        writer.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("toy2d/hd.json"),
            ["stages:structure:distiller={\"type\":\"progressive\",\"options\":{\"startSteps\":16,\"finalSteps\":1}}", "stages:structure:training:steps=3"]));
        Assert.Contains("stages:structure:distiller: 'progressive' cannot be built: 5 rounds (16 → 8 → 4 → 2 → 1 steps) share the stage's steps, one " +
                        "step at least each, but the stage has 3; raise the stage's steps to 5 or more", writer.ToString());
        writer.GetStringBuilder().Clear();
        Assert.True(app.Validate(TestPaths.Sample("toy2d/hd.json"), [progressive, "stages:structure:training:steps=601"]) == ExitCodes.Ok,
            writer.ToString());
        // As stage 2's regulariser it is held to stage 2's iterations.
        writer.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:regularizer={\"type\":\"progressive\",\"options\":{\"stepsPerRound\":300}}", "stages:detail:regularizerWeight=1"]));
        Assert.Contains("stages:detail:regularizer: 'progressive' cannot be built: 7 rounds (64 → 32 → 16 → 8 → 4 → 2 → 1 steps) of 300 " +
                        "training steps need more than 1800 steps to reach the last round, but the stage has 1500;", writer.ToString());
    }

    [Fact]
    public void Components_are_told_the_training_steps_of_their_stage_where_it_trains()
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        var (loaded, _, _) = app.Load(TestPaths.Sample("toy2d/hd.json"), []);
        Assert.NotNull(loaded);
        var factory = new ComponentFactory(loaded!, new ServiceCollection().BuildServiceProvider(), new RunEnvironment(torch.CPU, 0, Path.GetTempPath()));
        // The numbers of samples/toy2d/hd.json.
        Assert.Equal(3000, factory.StageSteps("stages:teacher:teacher"));
        Assert.Equal(2000, factory.StageSteps("stages:structure:distiller"));
        Assert.Equal(2000, factory.StageSteps("stages:STRUCTURE:student"));
        Assert.Equal(1500, factory.StageSteps("stages:detail:matcher"));
        Assert.Equal(1500, factory.StageSteps("stages:detail:discriminator"));
        Assert.Null(factory.StageSteps("data"));
        Assert.Null(factory.StageSteps("stages:evaluate:classifier"));
        Assert.Null(factory.StageSteps("stages:nosuchstage:distiller"));
        // A loaded teacher or student trains nothing (the config check reads the files' headers alone).
        using var folder = TestPaths.NewTempFolder();
        using (var any = torch.nn.Linear(2, 2)) WeightsFile.Save(any, folder.File("w.safetensors"));
        var (loadedFrom, _, _) = app.Load(TestPaths.Sample("toy2d/hd.json"),
            [$"stages:teacher:loadFrom={folder.File("w.safetensors")}", $"stages:structure:loadFrom={folder.File("w.safetensors")}"]);
        Assert.True(loadedFrom is not null, writer.ToString());
        var fromFiles = new ComponentFactory(loadedFrom!, new ServiceCollection().BuildServiceProvider(), new RunEnvironment(torch.CPU, 0, Path.GetTempPath()));
        Assert.Null(fromFiles.StageSteps("stages:teacher:teacher"));
        Assert.Null(fromFiles.StageSteps("stages:structure:distiller"));
        Assert.Equal(1500, fromFiles.StageSteps("stages:detail:matcher"));
    }

    [Fact]
    public void Validate_warns_when_this_machine_lacks_the_configured_cuda_device()
    {
        var writer = new StringWriter();
        var console = SampleRunTests.TestConsole(writer);
        console.Profile.Width = 10_000;
        var app = new HostApplication(console);
        Assert.Equal(ExitCodes.Ok, app.Validate(TestPaths.Sample("toy2d/hd.json"), ["run.device=cuda"]));
        if (torch.cuda.is_available())
        {
            Assert.DoesNotContain("would stop at once", writer.ToString());
        }
        else
        {
            Assert.Contains("run.device = cuda, but CUDA is not available: torch.cuda.is_available() is false.", writer.ToString());
            Assert.Contains("The config is valid, but `run` on this machine would stop at once (--set run.device=cpu runs it here).", writer.ToString());
        }
        writer.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.Ok, app.Validate(TestPaths.Sample("toy2d/hd.json"), ["run.device=cpu"]));
        Assert.DoesNotContain("would stop at once", writer.ToString());
    }

    [Fact]
    public void Probe_refuses_to_write_over_the_weights_it_reads()
    {
        using var folder = TestPaths.NewTempFolder();
        string weights = folder.File("teacher.safetensors");
        File.WriteAllText(weights, "stands for a trained teacher");
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        int code = app.Probe(TestPaths.Sample("toy2d/hd.json"), [], weights, Path.Combine(folder.Path, ".", "teacher.safetensors"), 4);
        Assert.True(code == ExitCodes.InvalidConfig, writer.ToString());
        Assert.Contains("is the --weights file; writing the probe there would replace the weights. Name another file with --out.", writer.ToString());
        Assert.Equal("stands for a trained teacher", File.ReadAllText(weights));
        // through a symbolic link to the folder
        string link = folder.File("link");
        Directory.CreateSymbolicLink(link, folder.Path);
        var linked = new StringWriter();
        code = new HostApplication(SampleRunTests.TestConsole(linked)).Probe(TestPaths.Sample("toy2d/hd.json"), [], weights, Path.Combine(link, "teacher.safetensors"), 4);
        Assert.True(code == ExitCodes.InvalidConfig, linked.ToString());
        Assert.Contains("is the --weights file", linked.ToString());
        Assert.Equal("stands for a trained teacher", File.ReadAllText(weights));
    }
}
