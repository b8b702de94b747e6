using HierDistill.Host.Configuration;
using Xunit;

namespace HierDistill.Tests.Host.Configuration;

public class ConfigDifferencesTests
{
    private static string Resolved(string loadFrom, double learningRate = 1e-4, string outputDir = "runs/a") => $$"""
        { "run": { "outputDir": "{{outputDir}}", "seed": 0 },
          "stages": { "teacher": { "kind": "teacher", "loadFrom": "{{loadFrom}}" },
                      "structure": { "kind": "trajectory", "training": { "learningRate": {{learningRate}} } } },
          "provenance": { "source": "x.json" } }
        """;

    [Fact]
    public void A_relative_loadFrom_of_an_older_run_folder_equals_its_full_path_from_the_same_directory()
    {
        string relative = Path.Combine("runs", "x", "teacher.safetensors");
        Assert.Empty(ConfigDifferences.Between(Resolved(relative), Resolved(Path.GetFullPath(relative))));
        Assert.Equal(ConfigDifferences.Digest(Resolved(relative)), ConfigDifferences.Digest(Resolved(Path.GetFullPath(relative))));
        // Another file differs, by name.
        var other = ConfigDifferences.Between(Resolved(relative), Resolved("/elsewhere/teacher.safetensors"));
        Assert.Equal(["stages:teacher:loadFrom"], other.Select(d => d.Key));
        Assert.Contains($"'\"{Path.GetFullPath(relative)}\"' → '\"/elsewhere/teacher.safetensors\"'", other[0].Text);
    }

    [Fact]
    public void Only_the_keys_that_change_results_differ()
    {
        var differences = ConfigDifferences.Between(Resolved("/t.safetensors", 1e-4, "runs/a"), Resolved("/t.safetensors", 3e-4, "runs/b"));
        Assert.Equal(["stages:structure:training:learningRate"], differences.Select(d => d.Key));
        Assert.True(ConfigDifferences.MayChangeOnResume(differences[0].Key));
    }
}
