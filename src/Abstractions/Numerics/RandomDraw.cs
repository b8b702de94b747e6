using static TorchSharp.torch;

namespace HierDistill.Abstractions.Numerics;

/// <summary>
/// Random draws that take an optional <see cref="Generator"/> and work on every device. Use these, not
/// <c>randn(…, device: device, generator: generator)</c>, wherever a generator may be given.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 makes every <see cref="Generator"/> a CPU generator: its native <c>THSGenerator_new</c> calls
/// <c>at::detail::createCPUGenerator</c> whatever device it is given, although <see cref="Generator.device"/> reports the
/// device asked for. libtorch refuses a CPU generator for a draw on CUDA ("Expected a 'cuda' device type for generator but
/// found 'cpu'"). So with a generator these helpers draw on the CPU and move the result to <c>device</c> (the same numbers on
/// every device for a seed); without one they draw on <c>device</c> with its default generator, with no copy from the host
/// (the path a training step takes). On the CPU both paths are exactly <c>torch.rand*</c>.
/// </remarks>
public static class RandomDraw
{
    /// <summary>Uniform on [0, 1): <c>torch.rand</c>.</summary>
    /// <param name="shape">The shape of the result.</param>
    /// <param name="device">Device of the result.</param>
    /// <param name="generator">Random generator (null: <paramref name="device"/>'s default generator).</param>
    /// <param name="dtype">A floating dtype (default float32).</param>
    /// <exception cref="ArgumentOutOfRangeException">For a negative size in <paramref name="shape"/>.</exception>
    /// <exception cref="ArgumentException">For a dtype that is not floating (TorchSharp's).</exception>
    public static Tensor Rand(long[] shape, Device device, Generator? generator = null, ScalarType dtype = ScalarType.Float32) =>
        generator is null ? rand(Checked(shape), dtype, device) : Moved(rand(Checked(shape), dtype, generator: generator), device);

    /// <summary>Standard normal: <c>torch.randn</c>.</summary>
    /// <param name="shape">The shape of the result.</param>
    /// <param name="device">Device of the result.</param>
    /// <param name="generator">Random generator (null: <paramref name="device"/>'s default generator).</param>
    /// <param name="dtype">A floating dtype (default float32).</param>
    /// <exception cref="ArgumentOutOfRangeException">For a negative size in <paramref name="shape"/>.</exception>
    /// <exception cref="ArgumentException">For a dtype that is not floating (TorchSharp's).</exception>
    public static Tensor Randn(long[] shape, Device device, Generator? generator = null, ScalarType dtype = ScalarType.Float32) =>
        generator is null ? randn(Checked(shape), dtype, device) : Moved(randn(Checked(shape), dtype, generator: generator), device);

    /// <summary>Integers uniform on [0, <paramref name="high"/>): <c>torch.randint</c>, int64.</summary>
    /// <param name="high">One more than the largest value, at least 1.</param>
    /// <param name="shape">The shape of the result.</param>
    /// <param name="device">Device of the result.</param>
    /// <param name="generator">Random generator (null: <paramref name="device"/>'s default generator).</param>
    /// <exception cref="ArgumentOutOfRangeException">For <paramref name="high"/> &lt; 1 or a negative size in <paramref name="shape"/>.</exception>
    public static Tensor RandInt(long high, long[] shape, Device device, Generator? generator = null)
    {
        if (high < 1) throw new ArgumentOutOfRangeException(nameof(high), high, "draws from [0, high) need high ≥ 1.");
        return generator is null ? randint(0, high, Checked(shape), device: device) : Moved(randint(0, high, Checked(shape), generator: generator), device);
    }

    /// <summary>A random permutation of <c>0 .. n-1</c>: <c>torch.randperm</c>, int64 <c>[n]</c>.</summary>
    /// <param name="n">The number of elements, at least 0.</param>
    /// <param name="device">Device of the result.</param>
    /// <param name="generator">Random generator (null: <paramref name="device"/>'s default generator).</param>
    /// <exception cref="ArgumentOutOfRangeException">For a negative <paramref name="n"/> (libtorch would end the process).</exception>
    public static Tensor RandPerm(long n, Device device, Generator? generator = null)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), n, "a permutation of n elements needs n ≥ 0.");
        return generator is null ? randperm(n, device: device) : Moved(randperm(n, generator: generator), device);
    }

    /// <summary>Indices drawn from the rows of <paramref name="probabilities"/>: <c>torch.multinomial</c>, int64, on the
    /// device of <paramref name="probabilities"/>.</summary>
    /// <param name="probabilities">Non-negative weights <c>[K]</c> or <c>[N, K]</c> (need not sum to 1).</param>
    /// <param name="samples">How many indices per row, at least 1 (without replacement at most K).</param>
    /// <param name="replacement">Whether an index may be drawn again.</param>
    /// <param name="generator">Random generator (null: the device's default generator).</param>
    /// <exception cref="ArgumentOutOfRangeException">For <paramref name="samples"/> &lt; 1.</exception>
    /// <exception cref="System.Runtime.InteropServices.ExternalException">From libtorch, for more samples than K without
    /// replacement, or weights that are negative, infinite or NaN.</exception>
    public static Tensor Multinomial(Tensor probabilities, long samples, bool replacement, Generator? generator = null)
    {
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), samples, "draw at least one index per row.");
        if (generator is null || probabilities.device_type == TorchSharp.DeviceType.CPU)
            return multinomial(probabilities, samples, replacement, generator: generator);
        using var onCpu = probabilities.cpu();
        return Moved(multinomial(onCpu, samples, replacement, generator: generator), probabilities.device);
    }

    /// <summary>A CPU draw on <paramref name="device"/>: the CPU tensor itself, or its copy there (the CPU one freed at once,
    /// so that plugin code without a dispose scope leaves nothing behind).</summary>
    private static Tensor Moved(Tensor drawn, Device device) =>
        device.type == TorchSharp.DeviceType.CPU ? drawn : drawn.to(device, disposeAfter: true);

    private static long[] Checked(long[] shape) =>
        shape.Any(d => d < 0) ? throw new ArgumentOutOfRangeException(nameof(shape), $"[{string.Join(", ", shape)}]", "sizes must be ≥ 0.") : shape;
}
