using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using System.Runtime.Loader;
using HierDistill.Abstractions.Data;
using HierDistill.Host.Plugins;
using HierDistill.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Plugins;

/// <summary>Loading the real plugin build outputs (the test output's plugins folder, copied by the build).</summary>
public class PluginLoadingTests
{
    private static readonly string[] BuiltIn =
        ["HierDistill.Plugins.Awd", "HierDistill.Plugins.Baselines", "HierDistill.Plugins.Data", "HierDistill.Plugins.Dmd", "HierDistill.Plugins.MeanFlow", "HierDistill.Plugins.Teachers"];

    private static ComponentCatalog Discover(params string[] folders) => new PluginDiscovery(new McMasterPluginLoader()).Discover(folders);

    [Fact]
    public void The_built_plugins_are_discovered_with_their_components()
    {
        var catalog = Discover(TestPaths.PluginsFolder);
        Assert.Empty(catalog.Errors);
        Assert.Equal(BuiltIn, catalog.Plugins.Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.Equal(["awd", "consistency", "dit", "dmd", "fashion-mnist", "gap", "gmm-exact", "meanflow", "mixture2d", "mlp", "progressive"], catalog.Components.Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.All(catalog.Plugins, p => Assert.Equal(PluginDiscovery.HostAbstractionsVersion.ToString(3), p.AbstractionsVersion));
    }

    [Fact]
    public void Components_made_in_a_plugin_have_the_host_types_across_the_load_boundary()
    {
        var catalog = Discover(TestPaths.PluginsFolder);
        var descriptor = catalog.Find(typeof(IDataSource), "mixture2d")!;
        // The plugin lives in its own load context...
        Assert.NotEqual(AssemblyLoadContext.Default, AssemblyLoadContext.GetLoadContext(descriptor.OptionsType.Assembly));
        // ...but what it creates is the host's IDataSource, and its tensors are the host's Tensor type.
        var options = Activator.CreateInstance(descriptor.OptionsType)!;
        var created = descriptor.Create(new HierDistill.Abstractions.Plugins.ComponentContext(
            new ServiceCollection().BuildServiceProvider(),
            new HierDistill.Abstractions.Plugins.RunEnvironment(CPU, 0, Path.GetTempPath()), "data"), options);
        var data = Assert.IsAssignableFrom<IDataSource>(created);
        using var scope = NewDisposeScope();
        var batch = data.SampleTrain(4, CPU);
        Assert.IsType<Tensor>(batch.X);
        Assert.Equal(new long[] { 4, 2 }, batch.X.shape);
    }

    [Fact]
    public void Plugin_outputs_hold_no_torchsharp_skiasharp_or_native_files()
    {
        var roots = new[] { TestPaths.PluginsFolder }
            .Concat(BuiltIn.Select(n => Path.Combine(TestPaths.RepositoryRoot, "artifacts", "bin", n)).Where(Directory.Exists));
        foreach (var root in roots)
        {
            var files = Directory.GetFiles(root, "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
            Assert.NotEmpty(files);
            Assert.DoesNotContain(files, f => f!.StartsWith("TorchSharp", StringComparison.Ordinal) || f.StartsWith("SkiaSharp", StringComparison.Ordinal)
                                              || f.EndsWith(".so", StringComparison.Ordinal) || f.Contains(".so.", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void A_corrupt_assembly_is_reported_by_file_and_the_other_plugins_still_load()
    {
        using var folder = TestPaths.NewTempFolder();
        var dir = Directory.CreateDirectory(Path.Combine(folder.Path, "Broken")).FullName;
        File.WriteAllBytes(Path.Combine(dir, "Broken.dll"), [0x4d, 0x5a, 1, 2, 3, 4, 5, 6, 7, 8]);
        var catalog = Discover(TestPaths.PluginsFolder, folder.Path);
        Assert.Equal(6, catalog.Plugins.Count);
        var error = Assert.Single(catalog.Errors);
        Assert.Equal(Path.Combine(dir, "Broken.dll"), error.Path);
        Assert.StartsWith("not a valid .NET assembly", error.Reason);
    }

    [Fact]
    public void An_assembly_without_an_entry_point_is_reported()
    {
        using var folder = TestPaths.NewTempFolder();
        var dir = Directory.CreateDirectory(Path.Combine(folder.Path, "NoEntry")).FullName;
        // An assembly that references HierDistill.Abstractions (a field of type DataSpec) but has no plugin class.
        var builder = new PersistedAssemblyBuilder(new AssemblyName("NoEntry"), typeof(object).Assembly);
        var type = builder.DefineDynamicModule("NoEntry").DefineType("NoEntry.Holder", TypeAttributes.Public | TypeAttributes.Class);
        type.DefineField("Spec", typeof(DataSpec), FieldAttributes.Public);
        type.CreateType();
        builder.Save(Path.Combine(dir, "NoEntry.dll"));
        var error = Assert.Single(Discover(folder.Path).Errors);
        Assert.Equal("no entry point: the assembly has no public non-abstract class implementing IHierDistillPlugin.", error.Reason);
    }

    [Fact]
    public void A_plugin_whose_constructor_throws_is_reported_and_the_other_plugins_still_load()
    {
        using var folder = TestPaths.NewTempFolder();
        // public class Thrower.Plugin : IHierDistillPlugin { public Plugin() => throw new InvalidOperationException("no licence file"); public void Register(IServiceCollection s) { } }
        string dir = EmitPlugin(folder, "Thrower", il =>
        {
            il.Emit(OpCodes.Ldstr, "no licence file");
            il.Emit(OpCodes.Newobj, typeof(InvalidOperationException).GetConstructor([typeof(string)])!);
            il.Emit(OpCodes.Throw);
        });

        var catalog = Discover(TestPaths.PluginsFolder, folder.Path);
        Assert.Equal(6, catalog.Plugins.Count);
        var error = Assert.Single(catalog.Errors);
        Assert.Equal(Path.Combine(dir, "Thrower.dll"), error.Path);
        Assert.Equal("the constructor of Thrower.Plugin failed: InvalidOperationException: no licence file", error.Reason);
    }

    [Fact]
    public void A_plugin_that_registers_no_component_is_reported_with_the_fix()
    {
        // A forgotten registration: `plugins` listed the plugin with nothing under it, and a config naming its component got
        // only "unknown teacher".
        using var folder = TestPaths.NewTempFolder();
        // public class Forgot.Plugin : IHierDistillPlugin { public void Register(IServiceCollection s) { } }
        string dir = EmitPlugin(folder, "Forgot", null);

        var catalog = Discover(TestPaths.PluginsFolder, folder.Path);
        Assert.Equal(6, catalog.Plugins.Count);
        var error = Assert.Single(catalog.Errors);
        Assert.Equal(Path.Combine(dir, "Forgot.dll"), error.Path);
        Assert.Equal("no components: Forgot.Plugin.Register added none. Register each component with services.AddTeacher, AddTrajectoryDistiller, " +
                     "AddDistributionMatcher, AddDiscriminator or AddDataSource.", error.Reason);
    }

    /// <summary>
    /// Writes <c>&lt;folder&gt;/&lt;name&gt;/&lt;name&gt;.dll</c> holding <c>public class &lt;name&gt;.Plugin : IHierDistillPlugin</c> whose
    /// <c>Register</c> adds nothing and whose constructor runs <paramref name="constructor"/> (null: an empty one); returns its folder.
    /// </summary>
    private static string EmitPlugin(TempFolder folder, string name, Action<ILGenerator>? constructor)
    {
        var dir = Directory.CreateDirectory(Path.Combine(folder.Path, name)).FullName;
        var builder = new PersistedAssemblyBuilder(new AssemblyName(name), typeof(object).Assembly);
        var type = builder.DefineDynamicModule(name).DefineType($"{name}.Plugin", TypeAttributes.Public | TypeAttributes.Class,
            typeof(object), [typeof(HierDistill.Abstractions.Plugins.IHierDistillPlugin)]);
        if (constructor is null) type.DefineDefaultConstructor(MethodAttributes.Public);
        else constructor(type.DefineConstructor(MethodAttributes.Public, CallingConventions.Standard, Type.EmptyTypes).GetILGenerator());
        var register = type.DefineMethod("Register", MethodAttributes.Public | MethodAttributes.Virtual | MethodAttributes.HideBySig | MethodAttributes.NewSlot | MethodAttributes.Final,
            typeof(void), [typeof(IServiceCollection)]);
        register.GetILGenerator().Emit(OpCodes.Ret);
        type.CreateType();
        builder.Save(Path.Combine(dir, $"{name}.dll"));
        return dir;
    }

    private sealed class Registers(params string[] discriminators) : HierDistill.Abstractions.Plugins.IHierDistillPlugin
    {
        public void Register(IServiceCollection services)
        {
            foreach (var name in discriminators)
                HierDistill.Abstractions.Plugins.ComponentRegistration.AddDiscriminator<object>(services, name, "test", (_, _) => throw new NotSupportedException());
        }
    }

    [Fact]
    public void A_name_registered_twice_or_taken_from_a_built_in_plugin_refuses_the_later_plugin_and_built_ins_are_searched_first()
    {
        var builtIn = Discover(TestPaths.PluginsFolder);
        LoadedPlugin Plugin(string name, params string[] discriminators) =>
            new(name, "1.0.0", $"/p/{name}/{name}.dll", "1.5.0", PluginDiscovery.Register(new Registers(discriminators), name));
        var catalog = ComponentCatalog.Create([.. builtIn.Plugins, Plugin("Impostor", "maxpool", "awd", "gap"), Plugin("Twice", "maxpool2", "maxpool2"), Plugin("Good", "maxpool"),
            Plugin("Good", "maxpool") with { Path = "/copy/Good/Good.dll" }], [], []);
        Assert.Equal([.. BuiltIn, "Good"], catalog.Plugins.Select(p => p.Name));
        Assert.Contains("HierDistill.Plugins.Awd", catalog.Find(typeof(HierDistill.Abstractions.Contracts.IDiscriminator), "awd")!.Assembly);
        Assert.Equal(
        [
            // Every clash is named, so that one rebuild mends them all.
            $"/p/Impostor/Impostor.dll: registers discriminator 'awd', which HierDistill.Plugins.Awd ({builtIn.Plugins.Single(p => p.Name == "HierDistill.Plugins.Awd").Path}) " +
            $"already registered; and discriminator 'gap', which HierDistill.Plugins.Awd ({builtIn.Plugins.Single(p => p.Name == "HierDistill.Plugins.Awd").Path}) " +
            "already registered; names are unique per contract and the plugin found first keeps its name (the host's own plugins come first): give the 2 components other names.",
            "/p/Twice/Twice.dll: registers discriminator 'maxpool2' 2 times; names are unique per contract: register it once.",
            "/copy/Good/Good.dll: Good was already loaded from /p/Good/Good.dll; the first copy found is used. Remove one of the two copies " +
            "(or one of the two plugin folders that hold them).",
        ], catalog.Errors.Select(e => e.ToString()));
        // The host's folder is searched first, whatever the order given; each folder once.
        Assert.Equal([PluginDiscovery.DefaultFolder, Path.GetFullPath("extra"), "/abs"],
            PluginDiscovery.Folders(["extra", "/abs", PluginDiscovery.DefaultFolder, "extra"], includeDefault: true));
        Assert.Equal(["/abs"], PluginDiscovery.Folders(["/abs"], includeDefault: false));
    }

    [Fact]
    public void A_plugin_built_against_another_major_version_is_refused_naming_both_versions()
    {
        using var folder = TestPaths.NewTempFolder();
        string dll = CopyPluginWithAbstractionsVersion(folder.Path, major: 2, minor: 0);
        var error = Assert.Single(Discover(folder.Path).Errors);
        Assert.Equal(dll, error.Path);
        Assert.Equal("built against HierDistill.Abstractions 2.0.0, but this host has 1.5.0; major versions must match. " +
                     "Rebuild the plugin against HierDistill.Abstractions 1.x.", error.Reason);
    }

    [Fact]
    public void A_plugin_built_against_a_newer_minor_version_is_refused()
    {
        using var folder = TestPaths.NewTempFolder();
        CopyPluginWithAbstractionsVersion(folder.Path, major: 1, minor: 6);
        var error = Assert.Single(Discover(folder.Path).Errors);
        Assert.StartsWith("built against HierDistill.Abstractions 1.6.0, newer than this host's 1.5.0;", error.Reason);
    }

    [Fact]
    public void A_plugin_folder_without_its_assembly_and_a_missing_folder_are_reported()
    {
        using var folder = TestPaths.NewTempFolder();
        Directory.CreateDirectory(Path.Combine(folder.Path, "Empty"));
        var catalog = Discover(folder.Path, Path.Combine(folder.Path, "missing"));
        Assert.Equal(2, catalog.Errors.Count);
        Assert.EndsWith("no Empty.dll in the plugin folder (a plugin folder holds <Name>/<Name>.dll).", catalog.Errors[0].ToString());
        Assert.EndsWith("missing: plugin folder does not exist (relative folders, in plugins.folders as on the command line, are taken from " +
                        $"the current directory, {Directory.GetCurrentDirectory()}).", catalog.Errors[1].ToString());
        // A folder named other than its assembly: the one plugin-like DLL it holds is named, with the folder it needs.
        string misnamed = Directory.CreateDirectory(Path.Combine(folder.Path, "MyDisc")).FullName;
        foreach (string dll in new[] { "MyLab.Disc.dll", "TorchSharp.dll", "HierDistill.Abstractions.dll", "Microsoft.Extensions.Options.dll" })
            File.WriteAllText(Path.Combine(misnamed, dll), "");
        var error = Assert.Single(Discover(folder.Path).Errors, e => e.Path == misnamed);
        Assert.EndsWith("no MyDisc.dll in the plugin folder (a plugin folder holds <Name>/<Name>.dll). It holds MyLab.Disc.dll: if that is the " +
                        $"plugin, rename the folder to {Path.Combine(folder.Path, "MyLab.Disc")}.", error.ToString());
    }

    [Fact]
    public void The_folder_above_a_plugin_folder_given_as_the_plugin_folder_is_reported_with_the_folder_to_name()
    {
        // The test's output folder holds plugins/ (the built plugins), the default plugin folder, as the host's folder does.
        string above = Path.GetDirectoryName(Path.GetFullPath(TestPaths.PluginsFolder).TrimEnd('/'))!;
        var catalog = Discover(above);
        Assert.Empty(catalog.Plugins);
        var error = Assert.Single(catalog.Errors, e => e.Path == Path.Combine(above, "plugins"));
        Assert.StartsWith("no plugins.dll here, but it holds plugins (HierDistill.Plugins.Awd, HierDistill.Plugins.Baselines, ", error.Reason);
        Assert.EndsWith("): it is itself a plugin folder; it is the host's own plugin folder, searched anyway (unless --no-default or " +
                        $"plugins.includeDefaultFolder = false): drop {above} from the plugin folders.", error.Reason);
        // Another folder of plugins, one level too high: the folder to name.
        using var folder = TestPaths.NewTempFolder();
        TestPaths.CopyDirectory(Path.Combine(TestPaths.PluginsFolder, "HierDistill.Plugins.Data"), Path.Combine(folder.Path, "mine", "HierDistill.Plugins.Data"));
        error = Assert.Single(Discover(folder.Path).Errors);
        Assert.Equal($"no mine.dll here, but it holds plugins (HierDistill.Plugins.Data): it is itself a plugin folder; name it, " +
                     $"{Path.Combine(folder.Path, "mine")}, instead of {Path.GetFullPath(folder.Path).TrimEnd('/')}.", error.Reason);
        // The same folder given twice (a trailing separator) is searched once.
        Assert.Equal([folder.Path.TrimEnd('/')], PluginDiscovery.Folders([folder.Path, folder.Path.TrimEnd('/') + "/"], includeDefault: false));
    }

    [Fact]
    public void A_plugins_own_folder_given_as_the_plugin_folder_is_reported_with_the_folder_to_name()
    {
        const string name = "HierDistill.Plugins.Data";
        string own = Path.Combine(TestPaths.PluginsFolder, name);
        var error = Assert.Single(Discover(own).Errors);
        Assert.Equal(own, error.Path);
        Assert.Equal($"{name}.dll lies directly in this folder, but plugins are found one level down, as <folder>/<Name>/<Name>.dll; " +
                     $"this looks like the plugin's own folder: name the folder above it, {Path.GetFullPath(TestPaths.PluginsFolder).TrimEnd('/')}.",
            error.Reason);
        // A build output folder (named otherwise) gets the layout to make.
        using var folder = TestPaths.NewTempFolder();
        foreach (var f in Directory.GetFiles(own)) File.Copy(f, Path.Combine(folder.Path, Path.GetFileName(f)));
        // A native package's runtimes/ beside it (SkiaSharp's) is no plugin: no "no runtimes.dll" line beside the one that matters.
        Directory.CreateDirectory(Path.Combine(folder.Path, "runtimes", "linux-x64", "native"));
        File.WriteAllText(Path.Combine(folder.Path, "runtimes", "linux-x64", "native", "libSkiaSharp.so"), "");
        error = Assert.Single(Discover(folder.Path).Errors);
        Assert.StartsWith($"{name}.dll lies directly in this folder, but plugins are found one level down, as <folder>/<Name>/<Name>.dll; " +
                          $"put the plugin in a folder of its name ({Path.Combine(Path.GetFullPath(folder.Path), name, name + ".dll")} would do)", error.Reason);
        // The right folder loads it with no error, also with a plugin's files lying beside the plugin folders.
        Assert.Empty(Discover(TestPaths.PluginsFolder).Errors);
        using var mixed = TestPaths.NewTempFolder();
        TestPaths.CopyDirectory(own, Path.Combine(mixed.Path, name));
        File.Copy(Path.Combine(own, name + ".dll"), Path.Combine(mixed.Path, "Stray.dll"));
        File.Copy(Path.Combine(own, name + ".deps.json"), Path.Combine(mixed.Path, "Stray.deps.json"));
        Assert.DoesNotContain(Discover(mixed.Path).Errors, e => e.Reason.Contains("lies directly", StringComparison.Ordinal));
        // An application's folder (the host: hierdistill.dll has an entry point) is no plugin's folder.
        Assert.DoesNotContain(Discover(AppContext.BaseDirectory).Errors, e => e.Reason.Contains("lies directly", StringComparison.Ordinal));
    }

    /// <summary>Copies the Data plugin and rewrites its AssemblyRef to HierDistill.Abstractions to the given version.</summary>
    private static string CopyPluginWithAbstractionsVersion(string root, ushort major, ushort minor)
    {
        const string name = "HierDistill.Plugins.Data";
        var source = Path.Combine(TestPaths.PluginsFolder, name);
        var target = Directory.CreateDirectory(Path.Combine(root, name)).FullName;
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(target, Path.GetFileName(f)));
        string dll = Path.Combine(target, name + ".dll");
        byte[] bytes = File.ReadAllBytes(dll);
        int offset;
        using (var pe = new PEReader(new MemoryStream(bytes)))
        {
            var md = pe.GetMetadataReader();
            var handle = md.AssemblyReferences.Single(h => md.GetString(md.GetAssemblyReference(h).Name) == "HierDistill.Abstractions");
            int row = MetadataTokens.GetRowNumber(handle);
            offset = pe.PEHeaders.MetadataStartOffset + md.GetTableMetadataOffset(TableIndex.AssemblyRef)
                     + (row - 1) * md.GetTableRowSize(TableIndex.AssemblyRef);
        }
        BitConverter.GetBytes(major).CopyTo(bytes, offset);     // MajorVersion
        BitConverter.GetBytes(minor).CopyTo(bytes, offset + 2); // MinorVersion
        File.WriteAllBytes(dll, bytes);
        return dll;
    }
}
