using System.Text.RegularExpressions;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host;

/// <summary>
/// Every "method.md §N" cited in the sources and docs (src/, plugins/, samples/, docs/, README.md) names a section that
/// docs/method.md has (a heading "## N."), and every file the citations name (docs/method.md, docs/design.md) exists, so a
/// user who follows a citation finds what it points at.
/// </summary>
public partial class DocsCitationTests
{
    /// <summary>One citation: the file (relative to the root, '/'-separated), its line, the cited text, and the section if any.</summary>
    public sealed record Citation(string File, int Line, string Text, string Doc, int? Section)
    {
        public override string ToString() => $"{File}:{Line}: {Text}";
    }

    // "method.md §2", "method.md § 2", or "design.md" / "method.md" alone.
    [GeneratedRegex(@"\b(method|design)\.md(?:\s*§\s*(\d+))?")]
    private static partial Regex CitationPattern();

    /// <summary>Build outputs are not read (a sample plugin's bin/obj/artifacts may hold copies of its sources' docs).</summary>
    private static readonly HashSet<string> SkippedFolders = new(StringComparer.Ordinal) { "bin", "obj", "artifacts" };

    /// <summary>The *.cs and *.md files under src/, plugins/, samples/ and docs/, and README.md.</summary>
    private static IEnumerable<string> ScannedFiles(string root)
    {
        foreach (var folder in new[] { "src", "plugins", "samples", "docs" })
        {
            var dir = Path.Combine(root, folder);
            if (!Directory.Exists(dir)) continue;
            foreach (var file in Walk(dir)) yield return file;
        }

        var readme = Path.Combine(root, "README.md");
        if (File.Exists(readme)) yield return readme;

        static IEnumerable<string> Walk(string dir)
        {
            foreach (var f in Directory.EnumerateFiles(dir).Order(StringComparer.Ordinal))
                if (f.EndsWith(".cs", StringComparison.Ordinal) || f.EndsWith(".md", StringComparison.Ordinal))
                    yield return f;
            foreach (var d in Directory.EnumerateDirectories(dir).Order(StringComparer.Ordinal))
                if (!SkippedFolders.Contains(Path.GetFileName(d)))
                    foreach (var f in Walk(d)) yield return f;
        }
    }

    /// <summary>All citations of method.md and design.md in the scanned files of <paramref name="root"/>.</summary>
    public static List<Citation> FindCitations(string root)
    {
        var citations = new List<Citation>();
        foreach (var file in ScannedFiles(root))
        {
            var relative = Path.GetRelativePath(root, file).Replace(Path.DirectorySeparatorChar, '/');
            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                foreach (Match m in CitationPattern().Matches(lines[i]))
                {
                    int? section = m.Groups[2].Success ? int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) : null;
                    citations.Add(new Citation(relative, i + 1, m.Value, m.Groups[1].Value + ".md", section));
                }
            }
        }

        return citations;
    }

    /// <summary>The citations of <paramref name="root"/> that docs/method.md or docs/design.md do not answer, with the reason.</summary>
    public static List<string> Unresolved(string root)
    {
        var docs = Path.Combine(root, "docs");
        var methodPath = Path.Combine(docs, "method.md");
        var headings = new HashSet<int>();
        if (File.Exists(methodPath))
        {
            foreach (var line in File.ReadAllLines(methodPath))
            {
                var m = Regex.Match(line, @"^##\s+(\d+)\.");
                if (m.Success) headings.Add(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        var problems = new List<string>();
        foreach (var c in FindCitations(root))
        {
            if (!File.Exists(Path.Combine(docs, c.Doc)))
                problems.Add($"{c}  (docs/{c.Doc} does not exist)");
            else if (c.Section is int n && !headings.Contains(n))
                problems.Add($"{c}  (docs/method.md has no heading \"## {n}.\")");
        }

        return problems;
    }

    [Fact]
    public void Every_cited_method_section_and_doc_exists_in_docs()
    {
        var root = TestPaths.RepositoryRoot;
        var citations = FindCitations(root);
        Assert.True(citations.Count > 0, $"No citation of method.md or design.md found under {root}: the scan itself is broken.");

        var problems = Unresolved(root);
        Assert.True(problems.Count == 0,
            $"{problems.Count} citation(s) point at nothing (file:line: citation):\n" + string.Join("\n", problems));
    }

    [Fact]
    public void Missing_heading_or_missing_doc_is_reported_with_file_and_citation()
    {
        using var temp = TestPaths.NewTempFolder();
        Directory.CreateDirectory(Path.Combine(temp.Path, "src", "A"));
        Directory.CreateDirectory(Path.Combine(temp.Path, "src", "A", "obj"));
        Directory.CreateDirectory(Path.Combine(temp.Path, "docs"));
        File.WriteAllText(Path.Combine(temp.Path, "src", "A", "X.cs"),
            "/// <summary>See method.md §1 and method.md §3, and design.md.</summary>\nclass X { }\n");
        File.WriteAllText(Path.Combine(temp.Path, "src", "A", "obj", "Copy.cs"), "// method.md §9 (build output, not scanned)\n");
        File.WriteAllText(Path.Combine(temp.Path, "docs", "method.md"), "# Method\n\n## 1. Conventions\n\n### 3. not a section heading\n");

        var problems = Unresolved(temp.Path);

        Assert.Equal(2, problems.Count);
        Assert.Contains(problems, p => p.StartsWith("src/A/X.cs:1: method.md §3", StringComparison.Ordinal) && p.Contains("## 3.", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("src/A/X.cs:1: design.md", StringComparison.Ordinal) && p.Contains("does not exist", StringComparison.Ordinal));
    }

    /// <summary>
    /// Every test that the docs cite as <c>SomethingTests.Method_name</c> (docs/*.md and README.md: bad-inputs.md names the test
    /// of each row) is a test method of this assembly, so a renamed test does not leave a row pointing at nothing.
    /// </summary>
    [Fact]
    public void Every_test_the_docs_cite_exists()
    {
        string root = TestPaths.RepositoryRoot;
        var methods = typeof(DocsCitationTests).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods().Where(m => m.GetCustomAttributes(typeof(FactAttribute), inherit: true).Length > 0).Select(m => $"{t.Name}.{m.Name}"))
            .ToHashSet(StringComparer.Ordinal);
        var files = Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md").Append(Path.Combine(root, "README.md"));
        var cited = new List<string>();
        var missing = new List<string>();
        foreach (string file in files)
        {
            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
                foreach (Match m in CitedTestPattern().Matches(lines[i]))
                {
                    cited.Add(m.Value);
                    if (!methods.Contains(m.Value)) missing.Add($"{Path.GetRelativePath(root, file)}:{i + 1}: {m.Value}");
                }
        }
        Assert.True(cited.Count > 50, $"only {cited.Count} cited tests found: the pattern no longer matches the docs");
        Assert.True(missing.Count == 0, "cited tests that do not exist:\n" + string.Join("\n", missing));
    }

    // "ResumeTests.A_killed_process_resumes_…": a test class name, a dot, and a method name with an underscore in it.
    [GeneratedRegex(@"\b[A-Z][A-Za-z0-9]*Tests\.[A-Z][A-Za-z0-9]*_[A-Za-z0-9_]+")]
    private static partial Regex CitedTestPattern();
}
