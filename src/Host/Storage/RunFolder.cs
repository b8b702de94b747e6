using System.Text.Json;
using HierDistill.Host.Pipeline.Stages;
using HierDistill.Host.Training;

namespace HierDistill.Host.Storage;

/// <summary>An output folder that cannot be used; the message says why and what to do.</summary>
public sealed class RunFolderException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The run folder: created (or, with overwrite, cleared) before a run; its <c>run.json</c> records the
/// status (running, finished, failed, cancelled). A folder holding a run is never reused silently, and
/// a folder that does not hold a HierDistill run is never emptied. The run an overwrite replaces is moved into
/// <see cref="ReplacedFolder"/> and deleted only when a run in the folder finishes, so a replacement that fails or is
/// stopped loses nothing.
/// </summary>
public sealed partial class RunFolder : IDisposable
{
    /// <summary>The status file.</summary>
    public const string StatusFile = "run.json";

    /// <summary>The resolved config of the run.</summary>
    public const string ResolvedConfigFile = "config.resolved.json";

    /// <summary>The figure of the 2-D suites' samples (one panel per sampler), beside the data.</summary>
    public const string SamplesFigure = "samples.png";

    /// <summary>The image suite's grid of data images, shown beside the samples' grids.</summary>
    public const string DataFigure = "samples-data.png";

    /// <summary>The training-loss curves of every stage.</summary>
    public const string LossesFigure = "losses.png";

    /// <summary>
    /// The sub-folder that holds the outputs of the run an overwrite replaced, until a run in the folder finishes
    /// (<see cref="DropReplaced"/>).
    /// </summary>
    public const string ReplacedFolder = "replaced-run";

    /// <summary>Where <see cref="DropReplaced"/> renames <see cref="ReplacedFolder"/> before deleting it (a leftover is deleted later).</summary>
    public const string ReplacedDeletingFolder = ".replaced-run.old.tmp";

    private RunFolder(string path) => Path = path;

    /// <summary>Full path.</summary>
    public string Path { get; }

    /// <summary>
    /// The full path of <see cref="ReplacedFolder"/> when it holds a run this one replaced (an overwrite, here or by a
    /// run whose --resume this is), else null.
    /// </summary>
    public string? Replaced => Directory.Exists(System.IO.Path.Combine(Path, ReplacedFolder)) ? System.IO.Path.Combine(Path, ReplacedFolder) : null;

    /// <summary>Deletes <see cref="ReplacedFolder"/>: called once the run in this folder has finished.</summary>
    /// <returns>The folder deleted, or null when there was none.</returns>
    /// <exception cref="IOException">When it cannot be deleted (the run's own outputs are complete either way).</exception>
    public string? DropReplaced()
    {
        string? replaced = Replaced;
        if (replaced is null) return null;
        var foreign = Foreign(replaced);
        if (foreign.Count > 0)
            throw new IOException($"it also holds {Messages.FirstOf(foreign)}, which a run does not write, so it is kept");
        DeleteReplaced(Path);
        return replaced;
    }

    /// <summary>
    /// Deletes <paramref name="full"/>'s <see cref="ReplacedFolder"/>, renamed to <see cref="ReplacedDeletingFolder"/> first (a
    /// leftover of an earlier try is deleted before): a deletion that fails half-way leaves no replaced-run that looks like a
    /// set-aside cut short.
    /// </summary>
    private static void DeleteReplaced(string full)
    {
        string deleting = System.IO.Path.Combine(full, ReplacedDeletingFolder);
        if (Directory.Exists(deleting)) Directory.Delete(deleting, recursive: true);
        Directory.Move(System.IO.Path.Combine(full, ReplacedFolder), deleting);
        Directory.Delete(deleting, recursive: true);
    }

    /// <summary>The names of the entries of <paramref name="folder"/> that the run it holds did not write, sorted.</summary>
    private static List<string> Foreign(string folder)
    {
        var stages = StageKeys(folder);
        return Directory.EnumerateFiles(folder).Where(f => !IsRunOutput(System.IO.Path.GetFileName(f), false, stages))
            .Concat(Directory.EnumerateDirectories(folder).Where(d => !IsRunOutput(System.IO.Path.GetFileName(d), true, stages)))
            .Select(System.IO.Path.GetFileName).Order(StringComparer.Ordinal).ToList()!;
    }

    /// <summary>
    /// The stage keys of the run in <paramref name="folder"/>, from its config.resolved.json and that of its
    /// <see cref="ReplacedFolder"/> (a set-aside cut short moves the config before the weights); null when neither can be
    /// read, and then any stage name counts (<see cref="IsRunOutput"/>).
    /// </summary>
    public static IReadOnlySet<string>? StageKeys(string folder)
    {
        HashSet<string>? keys = null;
        foreach (string config in new[] { System.IO.Path.Combine(folder, ResolvedConfigFile), System.IO.Path.Combine(folder, ReplacedFolder, ResolvedConfigFile) })
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(config), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("stages", out var stages) || stages.ValueKind != JsonValueKind.Object)
                    continue;
                keys ??= new HashSet<string>(StringComparer.Ordinal);
                keys.UnionWith(stages.EnumerateObject().Select(p => p.Name));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
            {
                // not there or not readable: the other, or any stage name
            }
        }
        return keys;
    }

    /// <summary>
    /// Why <paramref name="full"/> cannot be run in: it is the <see cref="ReplacedFolder"/> of a run folder, which a run there
    /// deletes when it finishes; null when it is not.
    /// </summary>
    private static string? SetAsideRefusal(string full)
    {
        string? parent = System.IO.Path.GetDirectoryName(full);
        if (System.IO.Path.GetFileName(full) != ReplacedFolder || parent is null || !File.Exists(System.IO.Path.Combine(parent, StatusFile))) return null;
        return $"{full} is the run an --overwrite set aside in {parent}, which a run there deletes when it finishes; to run or resume it, " +
               $"move it out first (e.g. mv {full} {parent}-previous) and use that folder.";
    }

    /// <summary>Whether <paramref name="folder"/> exists and holds anything but a <see cref="LockFile"/> (which a run started
    /// there and stopped before writing its run.json can leave alone).</summary>
    public static bool HasContent(string folder) =>
        Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any(e => System.IO.Path.GetFileName(e) != LockFile);

    /// <summary>The weights file of the student a stage produces, <c>student-STAGE.safetensors</c> (beside the teacher's
    /// <c>teacher.safetensors</c>).</summary>
    public static string StudentFileName(string stage) => $"student-{stage}.safetensors";

    /// <summary>
    /// Whether a file or folder name is something a run writes (only such entries are ever deleted): its records, weights
    /// (<c>teacher.safetensors</c>, <c>student-STAGE.safetensors</c>, <c>checkpoint.safetensors</c>), figures
    /// (<c>samples.png</c>, <c>samples-data.png</c>, <c>samples-teacher-nfeN.png</c>, <c>samples-STAGE-nfeN.png</c>,
    /// <c>losses.png</c>) and the partial file <c>.NAME.PID.tmp</c> of one of them, STAGE a key of <paramref name="stages"/>
    /// (the run's stages, <see cref="StageKeys"/>; null: any name, for a folder whose config cannot be read). Other pictures
    /// and weights (a <c>sample --out</c> into the folder, a backup such as <c>student-structure-old.safetensors</c>) are the
    /// user's.
    /// </summary>
    public static bool IsRunOutput(string name, bool directory, IReadOnlySet<string>? stages)
    {
        if (directory)
            return name is "tensorboard" or "checkpoints" or ReplacedFolder or ReplacedDeletingFolder or MetricsWriter.TensorBoardRewriteFolder
                or MetricsWriter.TensorBoardOldFolder;
        if (name is StatusFile or ResolvedConfigFile or LockFile or "log.txt" or "metrics.json" or "metrics.jsonl" or "report.md"
            or TeacherStage.WeightsFileName or CheckpointStore.FileName or SamplesFigure or DataFigure or LossesFigure)
            return true;
        var stageOutput = StageOutputPattern().Match(name);
        if (stageOutput.Success)
            return stageOutput.Groups[1].Success ? stages?.Contains(stageOutput.Groups[1].Value) != false
                : stageOutput.Groups[2].Value == "teacher" || stages?.Contains(stageOutput.Groups[2].Value) != false;
        var partial = PartialFilePattern().Match(name);
        return partial.Success && !partial.Groups[1].Value.EndsWith(".tmp", StringComparison.Ordinal) && IsRunOutput(partial.Groups[1].Value, false, stages);
    }

    /// <summary><c>student-STAGE.safetensors</c> (group 1: STAGE) and <c>samples-STAGE-nfeN.png</c> (group 2: STAGE).</summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"^(?:student-(.+)\.safetensors|samples-(.+)-nfe[0-9]+\.png)$")]
    private static partial System.Text.RegularExpressions.Regex StageOutputPattern();

    /// <summary>The partial file <c>.NAME.PID.tmp</c> an atomic write leaves when its process is killed (AtomicFile).</summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"^\.(.+)\.([0-9]+)\.tmp$")]
    private static partial System.Text.RegularExpressions.Regex PartialFilePattern();

    /// <summary>
    /// Prepares <paramref name="outputDir"/> for a new run. With <paramref name="overwrite"/>, the run the folder holds is
    /// moved into <see cref="ReplacedFolder"/> (a rename: no copy, no extra disk space). When that sub-folder already holds
    /// a run (the run being replaced never finished), the unfinished run is deleted and the older one kept; a finished run
    /// always takes its place.
    /// </summary>
    /// <param name="outputDir">The run folder.</param>
    /// <param name="overwrite">Replace a run the folder already holds.</param>
    /// <param name="inputs">Files and folders the run reads, by config key (loadFrom, the config file, ...): never deleted.</param>
    /// <exception cref="RunFolderException">
    /// When the folder holds a run and <paramref name="overwrite"/> is false; holds files a run does not write; holds an
    /// input of this run; is not writable; or another process holds its <see cref="LockFile"/>.
    /// </exception>
    public static RunFolder Prepare(string outputDir, bool overwrite, IReadOnlyDictionary<string, string>? inputs = null)
    {
        string full = CheckPreparable(outputDir, overwrite, inputs);
        string? deleted = null;
        FileStream? held = null;
        try
        {
            Directory.CreateDirectory(full);
            held = Lock(full);
            // Checked again under the lock: another process may have started a run here since.
            CheckPreparable(outputDir, overwrite, inputs, locked: true);
            if (HasContent(full)) deleted = SetAside(full);
            if (!IsWritable(full, out string? why))
                throw new RunFolderException($"run.outputDir {full} is not writable ({why}); choose a writable folder.");
            var folder = new RunFolder(full) { DeletedUnfinishedRun = deleted, _lock = held };
            folder.SetStatus("running");
            return folder;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            held?.Dispose();
            throw new RunFolderException($"run.outputDir {full} is not writable ({e.Message}); choose a writable folder.", e);
        }
        catch
        {
            held?.Dispose();
            throw;
        }
    }

    /// <summary>The status (cancelled, failed, running) of the unfinished run that <see cref="Prepare"/> deleted because it
    /// replaced the run kept in <see cref="ReplacedFolder"/>, or null when it deleted none.</summary>
    public string? DeletedUnfinishedRun { get; private init; }

    /// <summary>Tests: called before each entry is moved aside (a failure there stands for one of the file system's).</summary>
    internal static Action<string>? BeforeMove;

    /// <summary>
    /// Moves (or, see <see cref="Prepare"/>, deletes) the outputs of the run <paramref name="full"/> holds; a move that fails
    /// puts back what was moved.
    /// </summary>
    /// <returns>The status of the unfinished run it deleted (see <see cref="DeletedUnfinishedRun"/>), or null.</returns>
    /// <exception cref="RunFolderException">When a move fails, saying whether everything was put back.</exception>
    private static string? SetAside(string full)
    {
        string replaced = System.IO.Path.Combine(full, ReplacedFolder), deleting = System.IO.Path.Combine(full, ReplacedDeletingFolder);
        try
        {
            if (Directory.Exists(deleting)) Directory.Delete(deleting, recursive: true); // what a failed DropReplaced left
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left where it is (a run output by name); the next overwrite tries again.
        }
        // A complete set-aside has its run.json, which is moved last; one without it was interrupted and is completed.
        bool complete = File.Exists(System.IO.Path.Combine(replaced, StatusFile));
        if (complete && ReadStatus(System.IO.Path.Combine(full, StatusFile)) == "finished")
        {
            DeleteReplaced(full);
            complete = false;
        }
        bool created = !Directory.Exists(replaced);
        Directory.CreateDirectory(replaced);
        string lockFile = System.IO.Path.Combine(full, LockFile);
        var entries = Directory.EnumerateFileSystemEntries(full).Where(e => e != replaced && e != deleting && e != lockFile)
            .OrderBy(e => System.IO.Path.GetFileName(e) == StatusFile).ThenBy(e => e, StringComparer.Ordinal).ToList();
        if (complete)
        {
            // The run being replaced never finished: its outputs go, the older run stays aside.
            string status = ReadStatus(System.IO.Path.Combine(full, StatusFile));
            foreach (var entry in entries)
            {
                if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true);
                else File.Delete(entry);
            }
            return status;
        }
        var moved = new List<(string From, string To, bool Directory)>();
        try
        {
            foreach (var entry in entries)
            {
                string target = System.IO.Path.Combine(replaced, System.IO.Path.GetFileName(entry));
                bool directory = Directory.Exists(entry);
                BeforeMove?.Invoke(entry);
                if (directory)
                {
                    if (Directory.Exists(target)) Directory.Delete(target, recursive: true); // from a set-aside cut short: the newer copy wins
                    Directory.Move(entry, target);
                }
                else File.Move(entry, target, overwrite: true);
                moved.Add((entry, target, directory));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Put back what was moved, so that the folder holds its run as before.
            var stuck = new List<string>();
            foreach (var (from, to, directory) in Enumerable.Reverse(moved))
            {
                try
                {
                    if (directory) Directory.Move(to, from);
                    else File.Move(to, from);
                }
                catch (Exception back) when (back is IOException or UnauthorizedAccessException)
                {
                    stuck.Add(to);
                }
            }
            if (created && stuck.Count == 0 && !Directory.EnumerateFileSystemEntries(replaced).Any()) Directory.Delete(replaced);
            throw new RunFolderException(
                $"--overwrite could not set aside the run in {full}: moving it into {ReplacedFolder}/ failed ({e.Message}). " +
                (stuck.Count == 0
                    ? "What had been moved was put back, so the folder holds its run as before"
                    : $"{string.Join(", ", stuck.Take(5))} could not be put back; move {(stuck.Count == 1 ? "it" : "them")} up into {full}") +
                "; fix the cause (permissions, a file in use) and run again, or choose another folder.", e);
        }
        return null;
    }

    /// <summary>
    /// The refusals of <see cref="Prepare"/>, without changing anything: run before the slower checks of a run (the preflight),
    /// so that a folder that cannot be used is reported at once.
    /// </summary>
    /// <returns>The folder's full path.</returns>
    /// <exception cref="RunFolderException">As <see cref="Prepare"/>, except for a folder that turns out not to be writable.</exception>
    public static string CheckPreparable(string outputDir, bool overwrite, IReadOnlyDictionary<string, string>? inputs = null) =>
        CheckPreparable(outputDir, overwrite, inputs, locked: false);

    /// <param name="outputDir">The run folder.</param>
    /// <param name="overwrite">Replace a run the folder already holds.</param>
    /// <param name="inputs">Files and folders the run reads.</param>
    /// <param name="locked">This process holds the folder's lock (else a lock held by another process is reported first: what
    /// the folder holds may be half-way through another run's set-aside).</param>
    private static string CheckPreparable(string outputDir, bool overwrite, IReadOnlyDictionary<string, string>? inputs, bool locked)
    {
        string full = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(outputDir));
        if (File.Exists(full)) throw new RunFolderException($"run.outputDir {full} is a file; choose a folder path.");
        if (SetAsideRefusal(full) is { } setAside) throw new RunFolderException($"run.outputDir {setAside}");
        // A live run first (its message names the process), then a lock another process holds: what the folder holds may be
        // half-way through another run's set-aside.
        if (LiveWriter(full) is { } running)
            throw new RunFolderException(
                $"run.outputDir {full} is being written by process {running}, which is still running; stop it first or choose another folder.");
        if (!locked && HeldByAnother(full)) throw new RunFolderException(HeldMessage(full));
        if (HasContent(full))
        {
            string status = System.IO.Path.Combine(full, StatusFile);
            if (!File.Exists(status) && File.Exists(System.IO.Path.Combine(full, ReplacedFolder, StatusFile)))
                throw new RunFolderException(
                    $"run.outputDir {full} holds no run of its own ({StatusFile} missing: the run that replaced it stopped before writing one), " +
                    $"only the run an --overwrite set aside in {System.IO.Path.Combine(full, ReplacedFolder)}; move that folder's contents up into " +
                    $"{full} to put it back, or choose another folder (--set run.outputDir=...).");
            if (!File.Exists(status))
                throw new RunFolderException(
                    $"run.outputDir {full} is not empty and holds no HierDistill run ({StatusFile} missing); choose another folder (--set run.outputDir=...).");
            string state = ReadStatus(status); // a live run was refused above
            // "running" with no live process: the process died without a word (killed, out of memory, a native abort).
            string held = state == "running"
                ? $"run whose process{(ReadPid(status) is { } dead ? $" ({dead})" : "")} ended while it was running (killed, or a crash: its log.txt ends where it stopped)"
                : $"{state} run";
            // Inputs of this run inside the folder (a loadFrom of the run it holds): --overwrite would delete them.
            var inside = (inputs ?? new Dictionary<string, string>())
                .Select(kv => (kv.Key, Full: System.IO.Path.GetFullPath(kv.Value)))
                .Where(i => i.Full.StartsWith(full + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal) || i.Full == full)
                .ToList();
            if (!overwrite && inside.Count > 0)
                throw new RunFolderException(
                    $"run.outputDir {full} already holds a {held}, and this run reads {inside[0].Full} ({inside[0].Key}) from it; " +
                    (state is "cancelled" or "running" ? $"continue that run with --resume {full}, or " : "") +
                    "choose another folder for this run's output (--set run.outputDir=...).");
            if (!overwrite)
                throw new RunFolderException(
                    $"run.outputDir {full} already holds a {held}; " +
                    (state is "cancelled" or "running" ? $"continue it with --resume {full}, " : "") +
                    "choose another folder (--set run.outputDir=...) or pass --overwrite (or --set run.overwrite=true) to replace it.");
            var foreign = Foreign(full);
            string replaced = System.IO.Path.Combine(full, ReplacedFolder);
            if (Directory.Exists(replaced))
            {
                if (new DirectoryInfo(replaced).LinkTarget is { } link)
                    throw new RunFolderException(
                        $"{replaced} is a link (to {link}); --overwrite moves the run it replaces there, so remove the link (rm {replaced}) or choose another folder.");
                foreign.AddRange(Foreign(replaced).Select(f => $"{ReplacedFolder}/{f}"));
            }
            if (foreign.Count > 0)
                throw new RunFolderException(
                    $"run.outputDir {full} holds a run and also {Messages.FirstOf(foreign)}, which a run " +
                    "does not write; --overwrite deletes only run outputs, so move those away or choose another folder.");
            if (inside.Count > 0)
                throw new RunFolderException(
                    $"--overwrite would delete {inside[0].Full}, which this run reads ({inside[0].Key}); copy it out of run.outputDir {full} or choose another folder.");
        }
        return full;
    }

    /// <summary>Opens a run folder to resume the run it holds.</summary>
    /// <exception cref="RunFolderException">When the folder holds no run or a finished run, is not writable, or another
    /// process holds its <see cref="LockFile"/>.</exception>
    public static RunFolder Open(string outputDir)
    {
        string full = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(outputDir));
        if (SetAsideRefusal(full) is { } setAside) throw new RunFolderException(setAside);
        string status = System.IO.Path.Combine(full, StatusFile);
        if (!File.Exists(status) || !File.Exists(System.IO.Path.Combine(full, ResolvedConfigFile)))
            throw new RunFolderException($"{full} holds no HierDistill run ({StatusFile} or {ResolvedConfigFile} missing); nothing to resume.");
        // The live-process check first (its message names the process), then the lock, then the status under it.
        if (LiveWriter(full) is { } pid)
            throw new RunFolderException(
                $"{full} is being written by process {pid}, which is still running; stop it first (Ctrl-C writes a checkpoint), then resume.");
        FileStream held = Lock(full);
        try
        {
            if (ReadStatus(status) == "finished")
                throw new RunFolderException($"{full} holds a finished run; nothing to resume. To run it again pass --overwrite instead of --resume.");
            if (!IsWritable(full, out string? why))
                throw new RunFolderException($"{full} is not writable ({why}); a resumed run writes into its folder.");
            return new RunFolder(full) { _lock = held, _earlierSeconds = Seconds(full) ?? 0 };
        }
        catch
        {
            held.Dispose();
            throw;
        }
    }

    /// <summary>The process another run of <paramref name="full"/> is being written by: its run.json says running, with the id
    /// of a live process other than this one (its start time checked, so a reused id does not count); else null.</summary>
    private static int? LiveWriter(string full)
    {
        string status = System.IO.Path.Combine(full, StatusFile);
        return File.Exists(status) && ReadStatus(status) == "running" && ReadPid(status) is { } pid && pid != Environment.ProcessId
               && IsAlive(pid, ReadValue(status, "pidStarted"))
            ? pid
            : null;
    }

    private static bool IsWritable(string full, out string? why)
    {
        try
        {
            string probe = System.IO.Path.Combine(full, ".write-test");
            File.WriteAllText(probe, "ok");
            File.Delete(probe);
            why = null;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            why = e.Message;
            return false;
        }
    }

    /// <summary>
    /// Deletes the partial files that a process stopped mid-write left: <see cref="AtomicFile"/>'s <c>.NAME.PID.tmp</c> where
    /// NAME is a file a run writes (<see cref="IsRunOutput"/>) and process PID is not running. Called by a resume once its
    /// checks have passed (this process holds the folder's lock, so no other run writes it).
    /// </summary>
    /// <returns>The names deleted.</returns>
    public IReadOnlyList<string> DeletePartialFiles()
    {
        var stages = StageKeys(Path);
        var deleted = new List<string>();
        foreach (string file in Directory.EnumerateFiles(Path, ".*.tmp"))
        {
            var match = PartialFilePattern().Match(System.IO.Path.GetFileName(file));
            if (!match.Success || !IsRunOutput(System.IO.Path.GetFileName(file), directory: false, stages)
                || !int.TryParse(match.Groups[2].Value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)
                || pid == Environment.ProcessId || IsAlive(pid, null))
                continue;
            try
            {
                File.Delete(file);
                deleted.Add(System.IO.Path.GetFileName(file));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // left as it was: a later resume tries again, and it never takes the place of a good file
            }
        }
        return deleted;
    }

    /// <summary>The status recorded in <paramref name="folder"/>'s run.json (running, finished, failed, cancelled), or null without one.</summary>
    public static string? Status(string folder)
    {
        string path = System.IO.Path.Combine(folder, StatusFile);
        return File.Exists(path) ? ReadStatus(path) : null;
    }

    /// <summary>The file a run holds open, exclusively, while it writes its folder (kept afterwards: deleting it would let two
    /// processes lock two files of one name).</summary>
    public const string LockFile = ".hierdistill.lock";

    private FileStream? _lock;

    /// <summary>
    /// Opens <see cref="LockFile"/> exclusively. On Linux and macOS .NET takes an advisory <c>flock</c> that other .NET
    /// processes honour; where the file system has no <c>flock</c> (or with <c>DOTNET_SYSTEM_IO_DISABLEFILELOCKING=1</c>)
    /// the open succeeds without a lock, and only the live-process check of run.json guards the folder.
    /// </summary>
    /// <exception cref="RunFolderException">When another process holds it, or the folder is not writable.</exception>
    internal static FileStream Lock(string full)
    {
        string path = System.IO.Path.Combine(full, LockFile);
        if (new FileInfo(path).LinkTarget is { } link)
            throw new RunFolderException($"{path} is a link (to {link}), not HierDistill's lock file; remove it (rm {path}) and run again.");
        if (Directory.Exists(path))
            throw new RunFolderException($"{path} is a folder, not HierDistill's lock file; remove it and run again.");
        try
        {
            // Read access is enough for the lock (and for a lock file another user created).
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.Read, FileShare.None);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!IsWritable(full, out string? why))
                throw new RunFolderException($"{full} is not writable ({why ?? e.Message}); a run writes into its folder, so choose a writable one.", e);
            throw new RunFolderException(e is UnauthorizedAccessException
                ? $"{path} cannot be opened ({e.Message}): the lock file is another user's or not readable; remove it (rm {path}) and run again."
                : HeldMessage(full), e);
        }
    }

    private static string HeldMessage(string full) =>
        $"{full} is being written by another process (it holds {LockFile}); stop it first (Ctrl-C writes a checkpoint), then " +
        "resume, or choose another folder.";

    /// <summary>Whether another process holds <paramref name="full"/>'s lock file now (tried without waiting; nothing is
    /// created).</summary>
    internal static bool HeldByAnother(string full)
    {
        string path = System.IO.Path.Combine(full, LockFile);
        if (!File.Exists(path) || new FileInfo(path).LinkTarget is not null) return false;
        try
        {
            using var probe = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None);
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false; // not ours to open: Lock says so
        }
        catch (IOException)
        {
            return File.Exists(path);
        }
    }

    /// <summary>Releases the folder's lock (<see cref="LockFile"/>); the run is done with the folder.</summary>
    public void Dispose()
    {
        _lock?.Dispose();
        _lock = null;
    }

    /// <summary>Wall time since this process prepared or opened the folder.</summary>
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    /// <summary>The wall seconds the run's earlier processes recorded (a resumed run's), 0 for a new run.</summary>
    private double _earlierSeconds;

    /// <summary>
    /// Records the run's status (running, finished, failed, cancelled) with an optional message, and its wall time so far
    /// (<c>seconds</c>: every process of the run, summed over resumes).
    /// </summary>
    public void SetStatus(string status, string? message = null) =>
        AtomicFile.WriteAllText(System.IO.Path.Combine(Path, StatusFile), JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["status"] = status,
            ["updated"] = DateTime.UtcNow.ToString("O"),
            ["message"] = message,
            ["pid"] = Environment.ProcessId,
            ["pidStarted"] = ProcessStart(Environment.ProcessId),
            ["seconds"] = Math.Round(_earlierSeconds + _clock.Elapsed.TotalSeconds, 1),
        }, new JsonSerializerOptions { WriteIndented = true }));

    /// <summary>The wall seconds recorded in <paramref name="folder"/>'s run.json (all the run's processes), or null.</summary>
    public static double? Seconds(string folder)
    {
        string path = System.IO.Path.Combine(folder, StatusFile);
        return File.Exists(path) && double.TryParse(ReadValue(path, "seconds"), System.Globalization.NumberStyles.Float,
            System.Globalization.CultureInfo.InvariantCulture, out double s) ? s : null;
    }

    private static int? ReadPid(string path) => int.TryParse(ReadValue(path, "pid"), out int pid) ? pid : null;

    private static string? ReadValue(string path, string key)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            // Numbers as their JSON text (older run folders hold pid and seconds as strings).
            return !doc.RootElement.TryGetProperty(key, out var p) ? null
                : p.ValueKind == JsonValueKind.String ? p.GetString() : p.ValueKind == JsonValueKind.Number ? p.GetRawText() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>When process <paramref name="pid"/> started (UTC, ISO 8601), or null.</summary>
    private static string? ProcessStart(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return process.StartTime.ToUniversalTime().ToString("O");
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>
    /// Whether <paramref name="pid"/> runs and (when recorded) is the same process, not a later one given its number: the
    /// start times agree within a second (.NET derives them from the boot time, so they differ by a few ms between processes).
    /// </summary>
    private static bool IsAlive(int pid, string? started)
    {
        string? now = ProcessStart(pid);
        if (now is null) return false;
        if (started is null || !DateTime.TryParse(started, null, System.Globalization.DateTimeStyles.RoundtripKind, out var then)) return true;
        return Math.Abs((DateTime.Parse(now, null, System.Globalization.DateTimeStyles.RoundtripKind) - then).TotalSeconds) < 1.0;
    }

    private static string ReadStatus(string path) => ReadValue(path, "status") ?? "unknown";
}
