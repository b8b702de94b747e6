namespace HierDistill.Tests.Support;

/// <summary>Paths of the test run: the plugin folder the build copies, the samples, scratch folders.</summary>
internal static class TestPaths
{
    /// <summary>The plugins folder of the test output (real plugin build outputs).</summary>
    public static string PluginsFolder => Path.Combine(AppContext.BaseDirectory, "plugins");

    /// <summary>A sample config copied next to the tests.</summary>
    public static string Sample(string relative) => Path.Combine(AppContext.BaseDirectory, "samples", relative);

    /// <summary>The repository root (walks up to HierDistill.sln).</summary>
    public static string RepositoryRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "HierDistill.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("HierDistill.sln not found above the test output.");
        }
    }

    /// <summary>A fresh empty folder under the temp directory, deleted by the caller's using.</summary>
    public static TempFolder NewTempFolder() => new();

    /// <summary>Copies folder <paramref name="from"/> with its sub-folders to <paramref name="to"/> (created).</summary>
    public static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from)) CopyDirectory(d, Path.Combine(to, Path.GetFileName(d)));
    }
}

/// <summary>A temporary folder deleted on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "hierdistill-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
