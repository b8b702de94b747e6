using System.Text.Json;

namespace HierDistill.Host.Storage;

/// <summary>An output folder that cannot be used; the message says why and what to do.</summary>
public sealed class RunFolderException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The run folder: created (or, with overwrite, emptied) before a run; its <c>run.json</c> records the
/// status (running, finished, failed, cancelled). A folder holding a run is never reused silently, and
/// a folder that does not hold a HierDistill run is never emptied.
/// </summary>
public sealed class RunFolder
{
    /// <summary>The status file.</summary>
    public const string StatusFile = "run.json";

    private RunFolder(string path) => Path = path;

    /// <summary>Full path.</summary>
    public string Path { get; }

    /// <summary>Prepares <paramref name="outputDir"/> for a new run.</summary>
    /// <exception cref="RunFolderException">When the folder holds a run and <paramref name="overwrite"/> is false, holds other files, or is not writable.</exception>
    public static RunFolder Prepare(string outputDir, bool overwrite)
    {
        string full = System.IO.Path.GetFullPath(outputDir);
        if (File.Exists(full)) throw new RunFolderException($"run.outputDir {full} is a file; choose a folder path.");
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
        {
            string status = System.IO.Path.Combine(full, StatusFile);
            if (!File.Exists(status))
                throw new RunFolderException(
                    $"run.outputDir {full} is not empty and holds no HierDistill run ({StatusFile} missing); choose another folder (--set run.outputDir=...).");
            string state = ReadStatus(status);
            if (!overwrite)
                throw new RunFolderException(
                    $"run.outputDir {full} already holds a {state} run; choose another folder (--set run.outputDir=...) " +
                    "or pass --overwrite (or --set run.overwrite=true) to replace it.");
            foreach (var f in Directory.EnumerateFiles(full)) File.Delete(f);
            foreach (var d in Directory.EnumerateDirectories(full)) Directory.Delete(d, recursive: true);
        }
        try
        {
            Directory.CreateDirectory(full);
            string probe = System.IO.Path.Combine(full, ".write-test");
            File.WriteAllText(probe, "ok");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RunFolderException($"run.outputDir {full} is not writable ({e.Message}); choose a writable folder.", e);
        }
        var folder = new RunFolder(full);
        folder.SetStatus("running");
        return folder;
    }

    /// <summary>Records the run's status (running, finished, failed, cancelled) with an optional message.</summary>
    public void SetStatus(string status, string? message = null) =>
        AtomicFile.WriteAllText(System.IO.Path.Combine(Path, StatusFile), JsonSerializer.Serialize(new Dictionary<string, string?>
        {
            ["status"] = status,
            ["updated"] = DateTime.UtcNow.ToString("O"),
            ["message"] = message,
        }, new JsonSerializerOptions { WriteIndented = true }));

    private static string ReadStatus(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return doc.RootElement.TryGetProperty("status", out var s) ? s.GetString() ?? "unknown" : "unknown";
        }
        catch (JsonException)
        {
            return "unknown";
        }
    }
}
