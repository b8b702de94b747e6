using System.Text;

namespace HierDistill.Host.Storage;

/// <summary>
/// Writes files by writing a temporary file in the same folder and renaming it over the target, so
/// a crash or a full disk never leaves a damaged file where a good one was.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="text"/> (UTF-8) to <paramref name="path"/> atomically.</summary>
    /// <exception cref="IOException">When writing fails; the previous file is untouched, the message names the path.</exception>
    public static void WriteAllText(string path, string text) => Write(path, s =>
    {
        var bytes = new UTF8Encoding(false).GetBytes(text);
        s.Write(bytes);
    });

    /// <summary>Writes through <paramref name="write"/> to a temporary file, flushes it to disk, then renames it to <paramref name="path"/>.</summary>
    /// <exception cref="IOException">When writing fails; the previous file is untouched, the message names the path.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new IOException($"could not write {full}: {e.Message} (any previous version of the file is unchanged).", e);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            if (File.Exists(path)) File.Delete(path);
        }
        catch (IOException)
        {
            // best effort: the temporary file is named so that it is recognisable
        }
    }
}
