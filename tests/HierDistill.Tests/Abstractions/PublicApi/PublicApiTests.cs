using HierDistill.Abstractions.Plugins;
using HierDistill.Tests.Support;
using PublicApiGenerator;
using Xunit;

namespace HierDistill.Tests.Abstractions.PublicApi;

/// <summary>
/// Pins the public API of HierDistill.Abstractions, the contract third-party plugins compile against, to
/// the approved listing checked in beside this file, so that changing it is a deliberate act: a changed
/// listing must be approved, with the contract version bumped to match.
/// </summary>
public class PublicApiTests
{
    private const string AcceptVariable = "HIERDISTILL_ACCEPT_API";
    private const string Relative = "tests/HierDistill.Tests/Abstractions/PublicApi/HierDistill.Abstractions.approved.txt";

    /// <summary>The listing: a header with the contract version, then the public API as C# (assembly attributes left out).</summary>
    internal static string CurrentListing()
    {
        var assembly = typeof(IHierDistillPlugin).Assembly;
        string api = assembly.GeneratePublicApi(new ApiGeneratorOptions { IncludeAssemblyAttributes = false });
        return Normalize($"// HierDistill.Abstractions {assembly.GetName().Version!.ToString(3)}\n// Approved public API. Update with {AcceptVariable}=1 (see PublicApiTests).\n{api}\n");
    }

    [Fact]
    public void The_public_api_of_the_abstractions_matches_the_approved_listing()
    {
        string approvedPath = Path.Combine(TestPaths.RepositoryRoot, Relative);
        string receivedPath = Path.ChangeExtension(approvedPath, null).Replace(".approved", "") + ".received.txt";
        string current = CurrentListing();
        if (Environment.GetEnvironmentVariable(AcceptVariable) == "1")
        {
            File.WriteAllText(approvedPath, current);
            if (File.Exists(receivedPath)) File.Delete(receivedPath);
            return;
        }
        string approved = File.Exists(approvedPath) ? Normalize(File.ReadAllText(approvedPath)) : "";
        if (approved == current)
        {
            if (File.Exists(receivedPath)) File.Delete(receivedPath);
            return;
        }
        File.WriteAllText(receivedPath, current);
        Assert.Fail(Explain(approved, current, receivedPath));
    }

    [Fact]
    public void The_explanation_names_the_changed_lines_the_version_rule_and_how_to_accept()
    {
        const string approved = "// HierDistill.Abstractions 1.2.0\nnamespace A\n{\n    void M(int x);\n}\n";
        string removed = Explain(approved, approved.Replace("void M(int x);", "void M(long x);"), "/x/received.txt");
        Assert.Contains("- void M(int x);", removed);
        Assert.Contains("+ void M(long x);", removed);
        Assert.Contains("breaking change: raise the major version to 2.0.0", removed);
        Assert.Contains("HIERDISTILL_ACCEPT_API=1 dotnet test tests/HierDistill.Tests -c Release --filter FullyQualifiedName~PublicApiTests", removed);
        Assert.Contains("/x/received.txt", removed);

        string added = Explain(approved, approved.Replace("void M(int x);", "void M(int x);\n    void N();"), "/x/received.txt");
        Assert.Contains("+ void N();", added);
        Assert.Contains("additions only: raise the minor version to 1.3.0", added);

        string bumped = Explain(approved, approved.Replace("1.2.0", "1.3.0").Replace("void M(int x);", "void M(int x);\n    void N();"), "/x/received.txt");
        Assert.Contains("HierDistillAbstractionsVersion is 1.3.0", bumped);
        Assert.DoesNotContain("raise the", bumped);
    }

    /// <summary>The failure message: what changed, which version the change calls for, and how to approve it.</summary>
    internal static string Explain(string approved, string current, string receivedPath)
    {
        var before = Body(approved);
        var after = Body(current);
        var removed = Minus(before, after);
        var added = Minus(after, before);
        var oldVersion = HeaderVersion(approved);
        var newVersion = HeaderVersion(current);
        string rule;
        if (oldVersion is null)
            rule = "there is no approved listing yet.";
        else if (removed.Count > 0 && newVersion!.Major == oldVersion.Major)
            rule = $"members were removed or changed, a breaking change: raise the major version to {oldVersion.Major + 1}.0.0 (plugins built against {oldVersion.Major}.x will be refused), or keep the old members.";
        else if (added.Count > 0 && removed.Count == 0 && newVersion!.Major == oldVersion.Major && newVersion.Minor == oldVersion.Minor)
            rule = $"additions only: raise the minor version to {oldVersion.Major}.{oldVersion.Minor + 1}.0 (so that hosts older than the change refuse plugins that use it).";
        else
            rule = $"HierDistillAbstractionsVersion is {newVersion?.ToString(3)} (approved: {oldVersion.ToString(3)}).";
        static string Lines(string sign, List<string> lines) =>
            string.Concat(lines.Take(20).Select(l => $"\n  {sign} {l.Trim()}")) + (lines.Count > 20 ? $"\n  {sign} ... ({lines.Count - 20} more)" : "");
        return $"The public API of HierDistill.Abstractions differs from the approved listing {Relative} " +
               $"({removed.Count} lines removed, {added.Count} added):{Lines("-", removed)}{Lines("+", added)}\n" +
               $"If the change is deliberate: {rule} The version is HierDistillAbstractionsVersion in Directory.Build.props. " +
               $"Then approve the new listing (written to {receivedPath}): copy it over the approved file, or run " +
               $"`{AcceptVariable}=1 dotnet test tests/HierDistill.Tests -c Release --filter FullyQualifiedName~PublicApiTests`, " +
               "and commit the listing with the change.";
    }

    /// <summary>The lines of <paramref name="a"/> not matched by a line of <paramref name="b"/> (as multisets; repeated lines count).</summary>
    private static List<string> Minus(List<string> a, List<string> b)
    {
        var left = b.GroupBy(l => l).ToDictionary(g => g.Key, g => g.Count());
        var result = new List<string>();
        foreach (var line in a)
        {
            if (left.TryGetValue(line, out int n) && n > 0) left[line] = n - 1;
            else result.Add(line);
        }
        return result;
    }

    private static List<string> Body(string listing) =>
        listing.Split('\n').Where(l => !l.StartsWith("//", StringComparison.Ordinal) && l.Trim().Length > 1).ToList();

    private static Version? HeaderVersion(string listing)
    {
        const string prefix = "// HierDistill.Abstractions ";
        var first = listing.Split('\n')[0];
        return first.StartsWith(prefix, StringComparison.Ordinal) && Version.TryParse(first[prefix.Length..].Trim(), out var v) ? v : null;
    }

    private static string Normalize(string text) => text.Replace("\r\n", "\n");
}
