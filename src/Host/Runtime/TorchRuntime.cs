using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Host.Runtime;

/// <summary>The torch runtime a run uses: device and versions (written into the run folder).</summary>
/// <param name="Device">The selected device.</param>
/// <param name="DeviceDescription">E.g. "cpu (2 threads)" or "cuda:0 (NVIDIA H200)".</param>
/// <param name="TorchSharpVersion">TorchSharp's version.</param>
/// <param name="LibTorch">Where libtorch came from and its version.</param>
public sealed record TorchInfo(Device Device, string DeviceDescription, string TorchSharpVersion, string LibTorch);

/// <summary>A device request that cannot be met, or a libtorch that cannot be loaded; the message says why and what to do.</summary>
public sealed class TorchRuntimeException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Loads libtorch and selects the device, before anything else touches TorchSharp.
/// </summary>
/// <remarks>
/// <para>By default the libtorch natives the build carries are used (HierDistillTorchNatives=cpu:
/// libtorch-cpu-linux-x64; =cuda: TorchSharp-cuda-linux).</para>
/// <para>With <c>run.libtorch</c> or the environment variable <c>HIERDISTILL_LIBTORCH</c> naming the
/// <c>lib</c> folder of an installed PyTorch, its libc10/libtorch_cpu/libtorch_cuda/libtorch are loaded by
/// full path first; TorchSharp's own loader then finds them already loaded by their sonames. Such a build
/// must not carry its own libtorch (-p:HierDistillTorchNatives=none), or two copies would be loaded.</para>
/// <para>A CUDA request that cannot be met throws with the reason; it never falls back to CPU.</para>
/// </remarks>
public static partial class TorchRuntime
{
    /// <summary>The environment variable naming a PyTorch <c>lib</c> folder.</summary>
    public const string LibTorchVariable = "HIERDISTILL_LIBTORCH";

    private static readonly object Gate = new();
    private static string? _loadedFrom;

    /// <summary>The PyTorch lib folder to use: the config value, else the environment variable, else null.</summary>
    public static string? ResolveLibTorchFolder(string? configured)
    {
        if (!string.IsNullOrWhiteSpace(configured)) return configured;
        string? env = Environment.GetEnvironmentVariable(LibTorchVariable);
        return string.IsNullOrWhiteSpace(env) ? null : env;
    }

    /// <summary>Loads libtorch (from <paramref name="libTorchFolder"/> if given), sets threads and resolves <paramref name="device"/>.</summary>
    /// <param name="device"><c>auto</c>, <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</param>
    /// <param name="libTorchFolder">A PyTorch <c>lib</c> folder, or null for the bundled natives.</param>
    /// <param name="threads">Intra-op CPU threads (0: torch's default).</param>
    /// <exception cref="TorchRuntimeException">When libtorch cannot be loaded or the device request cannot be met.</exception>
    public static TorchInfo Initialize(string device, string? libTorchFolder, int threads = 0)
    {
        var match = DeviceRegex().Match(device);
        if (!match.Success)
            throw new TorchRuntimeException($"run.device '{device}' is not a device; use auto, cpu, cuda or cuda:N.");

        string libtorch = LoadLibTorch(libTorchFolder);
        try
        {
            if (threads > 0) torch.set_num_threads(threads);
            // The first use of torch loads the native libraries: a failure is reported here, with the fix.
            _ = torch.get_num_threads();
        }
        catch (Exception e) when (e is TypeInitializationException or NotSupportedException or DllNotFoundException)
        {
            throw new TorchRuntimeException(DescribeLoadFailure(e), e);
        }

        string kind = match.Groups[1].Value;
        bool wantsCuda = kind == "cuda";
        bool cudaAvailable = CudaAvailable(out string cudaProblem);
        Device selected;
        if (kind == "cpu" || (kind == "auto" && !cudaAvailable))
        {
            selected = CPU;
            return new TorchInfo(selected, $"cpu ({torch.get_num_threads()} threads)", TorchSharpVersion, libtorch);
        }
        if (!cudaAvailable)
        {
            string fix = libTorchFolder is null
                ? $"This build carries {BundledNatives} libtorch. To use a GPU, point {LibTorchVariable} (or run.libtorch) at the lib " +
                  "folder of a CUDA PyTorch (python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+\"/lib\")') " +
                  "with a build made with -p:HierDistillTorchNatives=none, or build with -p:HierDistillTorchNatives=cuda " +
                  "where TorchSharp-cuda-linux can be restored."
                : $"The libtorch loaded from {libTorchFolder} reports no usable CUDA device.";
            throw new TorchRuntimeException($"run.device = {device}, but CUDA is not available: {cudaProblem} {fix}");
        }
        int index = match.Groups[3].Success ? int.Parse(match.Groups[3].Value) : 0;
        int count = (int)torch.cuda.device_count();
        if (wantsCuda && index >= count)
            throw new TorchRuntimeException($"run.device = {device}, but only {count} CUDA device(s) exist (cuda:0 .. cuda:{count - 1}).");
        selected = torch.device(DeviceType.CUDA, index);
        return new TorchInfo(selected, $"cuda:{index} ({count} device(s))", TorchSharpVersion, libtorch);
    }

    /// <summary>TorchSharp's version.</summary>
    public static string TorchSharpVersion =>
        typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(torch).Assembly.GetName().Version?.ToString() ?? "?";

    /// <summary>Which natives this build carries (cpu, cuda or none), from the build.</summary>
    public static string BundledNatives => Metadata("HierDistillTorchNatives") ?? "cpu";

    private static string? Metadata(string key) =>
        typeof(TorchRuntime).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == key)?.Value;

    private static bool CudaAvailable(out string problem)
    {
        problem = "";
        try
        {
            if (torch.cuda.is_available()) return true;
            problem = "torch.cuda.is_available() is false.";
            return false;
        }
        catch (Exception e) when (e is NotSupportedException or DllNotFoundException or TypeInitializationException or ExternalException)
        {
            problem = e.Message.Split('\n')[0];
            return false;
        }
    }

    private static string LoadLibTorch(string? folder)
    {
        lock (Gate)
        {
            if (folder is null)
            {
                if (_loadedFrom is not null) return _loadedFrom;
                if (BundledNatives == "none" && !BundledLibTorchPresent())
                    throw new TorchRuntimeException(
                        $"this build carries no libtorch (HierDistillTorchNatives=none); set {LibTorchVariable} or run.libtorch " +
                        "to the lib folder of an installed PyTorch.");
                return _loadedFrom = BundledNatives == "cuda"
                    ? "TorchSharp-cuda-linux (bundled)"
                    : $"libtorch-cpu-linux-x64 {Metadata("LibTorchPackageVersion")} (bundled)";
            }

            string full = Path.GetFullPath(folder);
            if (!Directory.Exists(full))
                throw new TorchRuntimeException($"{Source(folder)} names {full}, which does not exist.");
            if (_loadedFrom is not null)
            {
                if (_loadedFrom.Contains(full)) return _loadedFrom;
                throw new TorchRuntimeException($"libtorch was already loaded ({_loadedFrom}); it cannot be switched to {full} in the same process.");
            }
            if (!File.Exists(Path.Combine(full, "libtorch_cpu.so")))
                throw new TorchRuntimeException($"{full} holds no libtorch_cpu.so; {Source(folder)} must name PyTorch's torch/lib folder.");
            if (BundledLibTorchPresent())
                throw new TorchRuntimeException(
                    $"{LibTorchVariable}/run.libtorch is set, but this build also carries its own libtorch in {AppContext.BaseDirectory}; " +
                    "loading both would put two libtorch copies in one process. Build with -p:HierDistillTorchNatives=none, " +
                    $"or unset {LibTorchVariable} to use the bundled libtorch.");

            // Order matters: each library's dependencies must already be loaded (or be found via its own RUNPATH).
            foreach (var lib in new[] { "libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so" })
            {
                string path = Path.Combine(full, lib);
                if (!File.Exists(path)) continue;
                try
                {
                    NativeLibrary.Load(path);
                }
                catch (DllNotFoundException e)
                {
                    throw new TorchRuntimeException($"cannot load {path}: {e.Message}", e);
                }
            }
            string version = ReadPyTorchVersion(full) ?? "unknown version";
            var preloaded = File.Exists(Path.Combine(full, "libtorch_cuda.so")) ? PreloadCudaCompanions(full) : [];
            return _loadedFrom = $"PyTorch {version} from {full}" +
                                 (preloaded.Count > 0 ? $" (preloaded {string.Join(", ", preloaded.Select(Path.GetFileName))})" : "");
        }
    }

    /// <summary>
    /// The libraries that cuDNN and NVRTC open by bare name at run time (NVRTC for cuDNN's runtime-compiled engines, its
    /// builtins, nvJitLink) that a pip PyTorch keeps in <c>site-packages/nvidia/*/lib</c> (<c>nvidia/cu13/lib</c> for CUDA 13)
    /// beside <paramref name="torchLib"/> (<c>site-packages/torch/lib</c>): every file of those names (each version present;
    /// links to one file load it once), in folder order; none when there is no such folder.
    /// </summary>
    /// <remarks>
    /// A bare-name <c>dlopen</c> searches <c>LD_LIBRARY_PATH</c> and the system folders, not the folder of the library that
    /// asks, so outside Python (whose <c>import torch</c> preloads them: pytorch/pytorch#145580) the first convolution that
    /// picks such an engine fails with "Could not load library … libnvrtc". A library already loaded is found by its soname.
    /// </remarks>
    internal static IReadOnlyList<string> CudaCompanions(string torchLib)
    {
        string nvidia = Path.GetFullPath(Path.Combine(torchLib, "..", "..", "nvidia"));
        if (!Directory.Exists(nvidia)) return [];
        var found = new List<string>();
        foreach (string lib in Directory.EnumerateDirectories(nvidia).Select(d => Path.Combine(d, "lib")).Where(Directory.Exists).Order(StringComparer.Ordinal))
            foreach (string stem in (string[])["libnvJitLink.so", "libnvrtc-builtins.so", "libnvrtc.so"])
                found.AddRange(Directory.EnumerateFiles(lib, stem + ".*").Order(StringComparer.Ordinal));
        return found;
    }

    /// <summary>Loads <see cref="CudaCompanions"/> of <paramref name="torchLib"/>; one that does not load is skipped (the
    /// libraries that need it then report it).</summary>
    private static IReadOnlyList<string> PreloadCudaCompanions(string torchLib)
    {
        var loaded = new List<string>();
        foreach (string path in CudaCompanions(torchLib))
            if (NativeLibrary.TryLoad(path, out _)) loaded.Add(path);
        return loaded;
    }

    /// <summary>
    /// Seeds libtorch's default CPU generator and, where CUDA is available, the default generator of every CUDA device:
    /// TorchSharp 0.107's <c>torch.manual_seed</c> seeds the CPU generator only (its native <c>THSGenerator_manual_seed</c>
    /// calls <c>getDefaultCPUGenerator</c>), so draws made on a GPU without a generator would follow an unseeded stream.
    /// Every seeding of the global streams in HierDistill goes through here (RandomDrawTests checks that).
    /// </summary>
    /// <param name="seed">The seed.</param>
    public static void ManualSeed(long seed)
    {
        torch.manual_seed(seed);
        if (torch.cuda.is_available()) torch.cuda.manual_seed_all(seed);
    }

    private static string Source(string folder) =>
        Environment.GetEnvironmentVariable(LibTorchVariable) == folder ? $"the environment variable {LibTorchVariable}" : "run.libtorch";

    private static bool BundledLibTorchPresent() =>
        File.Exists(Path.Combine(AppContext.BaseDirectory, "libtorch_cpu.so")) ||
        File.Exists(Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libtorch_cpu.so"));

    private static string? ReadPyTorchVersion(string libFolder)
    {
        string versionPy = Path.Combine(Path.GetDirectoryName(libFolder.TrimEnd('/'))!, "version.py");
        if (!File.Exists(versionPy)) return null;
        var m = Regex.Match(File.ReadAllText(versionPy), "__version__\\s*=\\s*['\"]([^'\"]+)['\"]");
        return m.Success ? m.Groups[1].Value : null;
    }

    private static string DescribeLoadFailure(Exception e)
    {
        var inner = e;
        while (inner.InnerException is not null) inner = inner.InnerException;
        return "TorchSharp could not load libtorch: " + inner.Message.Split('\n')[0] +
               " If the message names GLIBCXX_3.4.32, the build did not patch libLibTorchSharp.so (see build/LibTorchSharpCompat.targets; it needs g++).";
    }

    [GeneratedRegex("^(auto|cpu|cuda)(:([0-9]+))?$")]
    private static partial Regex DeviceRegex();
}
