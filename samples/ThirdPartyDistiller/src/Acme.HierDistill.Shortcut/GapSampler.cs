using HierDistill.Abstractions.Numerics;
using static TorchSharp.torch;

namespace Acme.HierDistill.Shortcut;

/// <summary>
/// Draws the (r, t) pairs of the self-consistency rows on the dyadic grid of M = 2^K steps: a gap level
/// <c>k</c> uniform in <c>0 .. K-1</c>, the gap <c>h = 2^-k</c> (1, 1/2, …, 2/M), then <c>r</c> uniform on
/// <c>{0, h, …, 1 - h}</c> and <c>t = r + h</c>, so every pair is a cell of the grid the host's K-step sampler
/// walks (NFE 1: [0, 1]; NFE 2: [1/2, 1] and [0, 1/2]). A row is <c>finest</c> when <c>h = 2/M</c>.
/// </summary>
internal static class GapSampler
{
    /// <param name="count">Number of rows (0 allowed).</param>
    /// <param name="levels">K = log2 M, at least 1.</param>
    /// <param name="device">Device of the returned tensors.</param>
    /// <param name="generator">Random generator (null: the device's default one). Drawn through RandomDraw, which works with
    /// TorchSharp's CPU-only generators on a GPU too.</param>
    /// <returns>r and t, float32 <c>[count]</c>, and the bool mask <c>finest</c>.</returns>
    public static (Tensor R, Tensor T, Tensor Finest) Sample(long count, int levels, Device device, Generator? generator = null)
    {
        if (levels < 1) throw new ArgumentOutOfRangeException(nameof(levels), levels, "at least one gap level is needed.");
        var k = RandomDraw.RandInt(levels, [count], device, generator);            // int64
        var cells = exp2(k.to_type(ScalarType.Float32));                       // 2^k cells of width h = 2^-k
        var h = cells.reciprocal();
        var j = minimum((RandomDraw.Rand([count], device, generator) * cells).floor(), cells - 1); // cell index 0 .. 2^k - 1
        var r = j * h;
        return (r, r + h, k == levels - 1);
    }
}
