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
        // A checkpoint written before loadFrom was recorded as a full path holds the digest of the relative text: it is the
        // folder's config's still (the digest now is the full path's).
        string legacy = LegacyDigest(Resolved(relative));
        Assert.NotEqual(legacy, ConfigDifferences.Digest(Resolved(relative)));
        Assert.True(ConfigDifferences.IsDigestOf(legacy, Resolved(relative)));
        Assert.True(ConfigDifferences.IsDigestOf(ConfigDifferences.Digest(Resolved(relative)), Resolved(relative)));
        Assert.False(ConfigDifferences.IsDigestOf(legacy, Resolved(relative, learningRate: 3e-4)));
        // Another file differs, by name.
        var other = ConfigDifferences.Between(Resolved(relative), Resolved("/elsewhere/teacher.safetensors"));
        Assert.Equal(["stages:teacher:loadFrom"], other.Select(d => d.Key));
        Assert.Contains($"'{Path.GetFullPath(relative)}' → '/elsewhere/teacher.safetensors'", other[0].Text); // strings without their JSON quotes
    }

    /// <summary>The digest as eecd3ec computed it (ConfigDifferences.Digest then): the flattened keys but loadFrom's, and the
    /// keys that may differ, written key=value sorted, SHA-256; here for the shape of <see cref="Resolved"/>.</summary>
    private static string LegacyDigest(string resolved)
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(resolved)!.AsObject();
        var lines = new List<string>
        {
            $"run:seed={root["run"]!["seed"]!.ToJsonString()}",
            $"stages:structure:kind={root["stages"]!["structure"]!["kind"]!.ToJsonString()}",
            $"stages:structure:training:learningRate={root["stages"]!["structure"]!["training"]!["learningRate"]!.ToJsonString()}",
            $"stages:teacher:kind={root["stages"]!["teacher"]!["kind"]!.ToJsonString()}",
            $"stages:teacher:loadFrom={root["stages"]!["teacher"]!["loadFrom"]!.ToJsonString()}",
        };
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join('\n', lines.Order(StringComparer.Ordinal)))));
    }

    [Fact]
    public void Only_the_keys_that_change_results_differ()
    {
        var differences = ConfigDifferences.Between(Resolved("/t.safetensors", 1e-4, "runs/a"), Resolved("/t.safetensors", 3e-4, "runs/b"));
        Assert.Equal(["stages:structure:training:learningRate"], differences.Select(d => d.Key));
        Assert.True(ConfigDifferences.MayChangeOnResume(differences[0].Key));
        // One number written two ways (a config.resolved.json edited by hand) is the same value; a string is compared as text.
        Assert.Empty(ConfigDifferences.Between(Resolved("/t.safetensors").Replace("1E-04", "1e-04").Replace("0.0001", "1e-4"),
            Resolved("/t.safetensors")));
        Assert.Single(ConfigDifferences.Between(Resolved("/t.safetensors").Replace("\"kind\": \"teacher\"", "\"kind\": \"Teacher\""), Resolved("/t.safetensors")));
    }

    [Fact]
    public void A_resume_with_other_code_lists_each_version_that_changed()
    {
        static string Config(string host, string disc, string? extra) => $$"""
            { "run": { "seed": 0 }, "provenance": { "source": "x.json", "versions": { "hierdistill": "{{host}}", "torchsharp": "0.107.0",
              "libtorch": "libtorch-cpu-linux-x64 2.10.0 (bundled)", "dotnet": ".NET 10.0.0",
              "plugins": { "MyLab.Disc": { "version": "{{disc}}", "path": "/p/MyLab.Disc" }{{(extra is null ? "" : $", \"{extra}\": {{ \"version\": \"1.0.0\" }}")}} } } } }
            """;
        Assert.Empty(ConfigDifferences.VersionsBetween(Config("1.2.0", "0.1.0", null), Config("1.2.0", "0.1.0", null)));
        Assert.Equal(["HierDistill 1.2.0 → 1.3.0", "plugin MyLab.Disc 0.1.0 → 0.1.1", "plugin MyLab.New (none) → 1.0.0"],
            ConfigDifferences.VersionsBetween(Config("1.2.0", "0.1.0", null), Config("1.3.0", "0.1.1", "MyLab.New")));
        // The settings themselves are the same: the key-by-key comparison (which skips provenance) finds nothing.
        Assert.Empty(ConfigDifferences.Between(Config("1.2.0", "0.1.0", null), Config("1.3.0", "0.1.1", "MyLab.New")));
        // Only the plugins the run uses count: one added to the plugin folders, or another's version, changes nothing.
        Assert.Equal(["HierDistill 1.2.0 → 1.3.0"], ConfigDifferences.VersionsBetween(Config("1.2.0", "0.1.0", null), Config("1.3.0", "0.1.1", "MyLab.New"),
            new HashSet<string> { "HierDistill.Plugins.Awd" }));
        Assert.Equal(["plugin MyLab.Disc 0.1.0 → 0.1.1"], ConfigDifferences.VersionsBetween(Config("1.2.0", "0.1.0", null), Config("1.2.0", "0.1.1", "MyLab.New"),
            new HashSet<string> { "MyLab.Disc" }));
        // libtorch by its version: the same PyTorch from another folder is no change, another version is one.
        string Torch(string text) => Config("1.2.0", "0.1.0", null).Replace("libtorch-cpu-linux-x64 2.10.0 (bundled)", text);
        Assert.Empty(ConfigDifferences.VersionsBetween(Torch("PyTorch 2.11.0 from /venv1/torch/lib"), Torch("PyTorch 2.11.0 from /venv2/torch/lib (preloaded libnvrtc.so.13)")));
        Assert.Equal(["libtorch PyTorch 2.11.0 → PyTorch 2.12.0"],
            ConfigDifferences.VersionsBetween(Torch("PyTorch 2.11.0 from /venv1/torch/lib"), Torch("PyTorch 2.12.0 from /venv1/torch/lib")));
        // A folder written before versions were recorded compares as no change.
        Assert.Empty(ConfigDifferences.VersionsBetween("""{ "run": { "seed": 0 } }""", Config("1.3.0", "0.1.1", null)));
    }
}
