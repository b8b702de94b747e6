using System.Runtime.InteropServices;

namespace HierDistill.Host.Runtime;

/// <summary>
/// Peak GPU memory in use, sampled by a background thread through NVML (<c>libnvidia-ml.so.1</c>, installed with every NVIDIA
/// driver; the library nvidia-smi reads): <c>nvmlDeviceGetMemoryInfo</c>'s <c>used</c> every 20 ms, in MiB. TorchSharp 0.107
/// has no <c>torch.cuda.max_memory_allocated</c>, so this is the memory of the whole device as nvidia-smi reports it: the CUDA
/// context and what PyTorch's caching allocator holds (reserved, not just allocated), plus other processes on the same GPU.
/// Sampling reads no tensor and never synchronises a CUDA stream.
/// </summary>
public sealed class DeviceMemoryMonitor : IDisposable
{
    private const string Library = "libnvidia-ml.so.1";
    private readonly IntPtr _device;
    private readonly Thread _thread;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _gate = new();
    private long _peakBytes;
    private long _lastBytes;

    private DeviceMemoryMonitor(IntPtr device)
    {
        _device = device;
        _lastBytes = _peakBytes = Used();
        _thread = new Thread(Sample) { IsBackground = true, Name = "nvml-memory" };
        _thread.Start();
    }

    /// <summary>
    /// Starts monitoring CUDA device <paramref name="index"/> (the NVML index; equal to the CUDA index unless
    /// CUDA_VISIBLE_DEVICES reorders devices). Returns null, with the reason, when NVML is not there (no NVIDIA driver) or fails.
    /// </summary>
    public static DeviceMemoryMonitor? TryStart(int index, out string? reason)
    {
        try
        {
            int rc = NativeMethods.nvmlInit_v2();
            if (rc != 0) { reason = $"nvmlInit failed (NVML error {rc})"; return null; }
            rc = NativeMethods.nvmlDeviceGetHandleByIndex_v2((uint)index, out var device);
            if (rc != 0)
            {
                NativeMethods.nvmlShutdown();
                reason = $"NVML has no device {index} (NVML error {rc})";
                return null;
            }
            reason = null;
            return new DeviceMemoryMonitor(device);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            reason = $"{Library} not found ({e.GetType().Name}): no NVIDIA driver";
            return null;
        }
    }

    /// <summary>Device memory in use at the last sample, MiB.</summary>
    public double CurrentMiB => Interlocked.Read(ref _lastBytes) / (1024.0 * 1024.0);

    /// <summary>Largest device memory in use since the start or the last <see cref="ResetPeak"/>, MiB.</summary>
    public double PeakMiB => Interlocked.Read(ref _peakBytes) / (1024.0 * 1024.0);

    /// <summary>Starts a new peak from the memory in use now (e.g. at the start of a stage).</summary>
    public void ResetPeak()
    {
        lock (_gate)
        {
            long now = Used();
            _lastBytes = now;
            _peakBytes = now;
        }
    }

    private long Used() =>
        NativeMethods.nvmlDeviceGetMemoryInfo(_device, out var memory) == 0 ? (long)memory.Used : Interlocked.Read(ref _lastBytes);

    private void Sample()
    {
        while (!_stop.Token.WaitHandle.WaitOne(20))
        {
            lock (_gate)
            {
                long used = Used();
                _lastBytes = used;
                if (used > _peakBytes) _peakBytes = used;
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
        NativeMethods.nvmlShutdown();
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct NvmlMemory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    private static class NativeMethods
    {
        [DllImport(Library)] public static extern int nvmlInit_v2();
        [DllImport(Library)] public static extern int nvmlShutdown();
        [DllImport(Library)] public static extern int nvmlDeviceGetHandleByIndex_v2(uint index, out IntPtr device);
        [DllImport(Library)] public static extern int nvmlDeviceGetMemoryInfo(IntPtr device, out NvmlMemory memory);
    }
}
