using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using HierDistill.Abstractions.Contracts;
using HierDistill.Host;
using HierDistill.Host.Plugins;
using HierDistill.Tests.Host.Pipeline;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Plugins;

/// <summary>Runs alone: it starts two dotnet builds, which should not compete with the other tests for the cores.</summary>
[CollectionDefinition(nameof(OutOfSolutionBuilds), DisableParallelization = true)]
public sealed class OutOfSolutionBuilds;

/// <summary>
/// The third-party route end to end, as docs/writing-a-plugin.md describes it: HierDistill.Abstractions is packed,
/// the sample plugin samples/ThirdPartyDistiller (not in the solution) is built against that package alone, and the
/// host discovers it, lists it and runs the 2-D pipeline with it in the structure stage.
/// </summary>
/// <remarks>
/// The package gets a unique prerelease version and the sample restores into a private packages folder (with the
/// machine's global packages folder as a read-only fallback for TorchSharp and the Microsoft.Extensions packages), so
/// no cached copy of an earlier pack can stand in for this one and nothing is added to the global folder. The
/// assembly version, which the host checks, stays the contract version. Incompatible versions are refused by
/// PluginLoadingTests (A_plugin_built_against_another_major_version_is_refused_naming_both_versions).
/// </remarks>
[Collection(nameof(OutOfSolutionBuilds))]
public class ThirdPartyPluginTests
{
    private const string PluginName = "Acme.HierDistill.Shortcut";

    [Fact]
    public void The_sample_plugin_built_against_the_packed_abstractions_is_loaded_listed_and_run_by_the_host()
    {
        using var folder = TestPaths.NewTempFolder();
        string root = TestPaths.RepositoryRoot;
        string hostVersion = PluginDiscovery.HostAbstractionsVersion.ToString(3);
        string packageVersion = $"{hostVersion}-test.{Guid.NewGuid():N}"[..(hostVersion.Length + 14)];
        string feed = Directory.CreateDirectory(folder.File("feed")).FullName;
        string plugins = folder.File("plugins");

        // 1. Pack the Abstractions these tests were built with (no rebuild) into a private feed.
        var (artifacts, configuration) = BuildArtifacts();
        Dotnet(root, "pack", "src/Abstractions/HierDistill.Abstractions.csproj", "-c", configuration, "--no-build", "--artifacts-path", artifacts,
            "-o", feed, $"-p:PackageVersion={packageVersion}", "-p:HierDistillEvictCachedPackage=false");
        Assert.True(File.Exists(Path.Combine(feed, $"HierDistill.Abstractions.{packageVersion}.nupkg")));

        // 2. Build the sample plugin against that package only.
        string config = WriteNuGetConfig(folder, feed);
        Dotnet(Path.Combine(root, "samples", "ThirdPartyDistiller"), "build", $"src/{PluginName}/{PluginName}.csproj", "-c", "Release",
            "--artifacts-path", folder.File("sample-artifacts"), $"-p:RestoreConfigFile={config}",
            $"-p:HierDistillAbstractionsVersion={packageVersion}", $"-p:HierDistillPluginFolder={plugins}/");
        string pluginDir = Path.Combine(plugins, PluginName);
        var shipped = Directory.GetFiles(pluginDir).Select(Path.GetFileName).ToList();
        Assert.Contains($"{PluginName}.dll", shipped);
        Assert.DoesNotContain(shipped, f => f!.StartsWith("HierDistill.Abstractions", StringComparison.Ordinal) || f.StartsWith("TorchSharp", StringComparison.Ordinal));

        // 3. The host discovers it: built against the host's contract version, one trajectory distiller "shortcut".
        var catalog = new PluginDiscovery(new McMasterPluginLoader()).Discover([plugins]);
        Assert.Empty(catalog.Errors);
        var plugin = Assert.Single(catalog.Plugins);
        Assert.Equal(PluginName, plugin.Name);
        Assert.Equal(hostVersion, plugin.AbstractionsVersion);
        var component = Assert.Single(plugin.Components);
        Assert.Equal(("shortcut", typeof(ITrajectoryDistiller)), (component.Name, component.Contract));

        // 4. `hierdistill plugins --folder <plugins>` lists it beside the built-in plugins, with its options.
        var listing = new StringWriter();
        Assert.Equal(ExitCodes.Ok, new HostApplication(SampleRunTests.TestConsole(listing)).ListPlugins([plugins], includeDefault: true));
        string text = Regex.Replace(listing.ToString(), @"\e\[[0-9;]*m", ""); // without the console's colours
        foreach (var expected in new[] { $"{PluginName} 0.1.0 (Abstractions {hostVersion})", "shortcut (trajectory distiller)", "selfConsistencyFraction" })
            Assert.True(text.Contains(expected, StringComparison.Ordinal), $"'{expected}' not in the listing:\n{text}");

        // 5. The sample config runs the 2-D pipeline with it in the structure stage (shrunk), and the report names it.
        string output = folder.File("run");
        var console = new StringWriter();
        string[] overrides =
        [
            $"plugins:folders={JsonSerializer.Serialize(new[] { plugins })}",
            $"run:outputDir={output}",
            "run:logEvery=5",
            "stages:teacher:teacher:options:hidden=32",
            "stages:teacher:teacher:options:depth=2",
            "stages:teacher:teacher:options:tokenChannels=8",
            "stages:teacher:training:steps=40",
            "stages:teacher:training:batchSize=64",
            "stages:structure:training:steps=10",
            "stages:structure:training:batchSize=32",
            "stages:detail:enabled=false",
            "stages:evaluate:samples=256",
            "stages:evaluate:teacherNfe=[1, 2]",
        ];
        int code = new HostApplication(SampleRunTests.TestConsole(console))
            .Run(TestPaths.Sample("ThirdPartyDistiller/toy2d-shortcut.json"), overrides, overwrite: true, CancellationToken.None);
        Assert.True(code == ExitCodes.Ok, console.ToString());
        Assert.Contains("`structure` (trajectory, shortcut)", File.ReadAllText(Path.Combine(output, "report.md")));
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "metrics.json")));
        Assert.Equal([1, 2], metrics.RootElement.GetProperty("models").EnumerateArray()
            .Where(m => m.GetProperty("name").GetString() == "structure").Select(m => m.GetProperty("nfe").GetInt32()));
        var lossKeys = File.ReadLines(Path.Combine(output, "metrics.jsonl")).Where(l => l.Contains("\"structure\"")).ToList();
        Assert.Contains(lossKeys, l => l.Contains("self_consistency") && l.Contains("flow_matching"));
    }

    /// <summary>The artifacts folder and configuration this test assembly was built into (…/bin/HierDistill.Tests/&lt;pivot&gt;/).</summary>
    private static (string Artifacts, string Configuration) BuildArtifacts()
    {
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var bin = output.Parent?.Parent;
        string artifacts = bin?.Parent?.FullName ?? throw new InvalidOperationException($"unexpected test output folder {output.FullName}");
        Assert.True(bin!.Name == "bin" && File.Exists(Path.Combine(bin.FullName, "HierDistill.Abstractions", output.Name, "HierDistill.Abstractions.dll")),
            $"the test output {output.FullName} is not <artifacts>/bin/HierDistill.Tests/<configuration>/ beside a built HierDistill.Abstractions.");
        return (artifacts, output.Name.StartsWith("release", StringComparison.OrdinalIgnoreCase) ? "Release" : "Debug");
    }

    /// <summary>
    /// A NuGet config for the sample: HierDistill.* only from the private feed, everything else from nuget.org; packages
    /// extracted into a private folder, with the global packages folder as a fallback (no download when already there).
    /// </summary>
    private static string WriteNuGetConfig(TempFolder folder, string feed)
    {
        string globalPackages = Dotnet(folder.Path, "nuget", "locals", "global-packages", "--list")
            .Split('\n').Select(l => l.Trim()).First(l => l.StartsWith("global-packages:", StringComparison.Ordinal))["global-packages:".Length..].Trim();
        string path = folder.File("nuget.config");
        File.WriteAllText(path, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config><add key="globalPackagesFolder" value="{folder.File("packages")}" /></config>
              <packageSources>
                <clear />
                <add key="test-feed" value="{feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" protocolVersion="3" />
              </packageSources>
              <fallbackPackageFolders>
                <clear />
                <add key="global" value="{globalPackages}" />
              </fallbackPackageFolders>
              <packageSourceMapping>
                <packageSource key="test-feed"><package pattern="HierDistill.*" /></packageSource>
                <packageSource key="nuget.org"><package pattern="*" /></packageSource>
              </packageSourceMapping>
            </configuration>
            """);
        return path;
    }

    /// <summary>Runs the dotnet CLI in <paramref name="directory"/>; fails the test with its output when it fails.</summary>
    private static string Dotnet(string directory, params string[] arguments)
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (string.IsNullOrEmpty(host) || !File.Exists(host))
            host = Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";
        var psi = new ProcessStartInfo(host) { WorkingDirectory = directory };
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        if (arguments[0] is "build" or "pack")
            foreach (var a in new[] { "-nodeReuse:false", "-p:UseSharedCompilation=false", "-clp:ErrorsOnly;Summary" }) psi.ArgumentList.Add(a);
        // The test host may carry the outer build's MSBuild locations; the child finds its own.
        foreach (var name in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "MSBuildLoadMicrosoftTargetsReadOnly" })
            psi.Environment.Remove(name);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        var (code, stdout, stderr) = ChildProcess.Run(psi, TimeSpan.FromMinutes(5));
        string output = stdout + stderr;
        Assert.True(code == 0, $"dotnet {string.Join(' ', psi.ArgumentList)} (in {directory}) exited with {code}:\n{output}");
        return output;
    }
}
