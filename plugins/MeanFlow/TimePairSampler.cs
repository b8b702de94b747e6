using HierDistill.Abstractions.Numerics;
using static TorchSharp.torch;

namespace HierDistill.Plugins.MeanFlow;

/// <summary>
/// MeanFlow's (t, r) law (Geng et al. 2025, §4.3): two independent logit-normal draws sorted so that r ≤ t; a
/// fraction <c>1 - ratio</c> of the batch gets r = t.
/// </summary>
internal static class TimePairSampler
{
    /// <returns>t and r, each <c>[B]</c>, with r ≤ t.</returns>
    public static (Tensor T, Tensor R) Sample(long batchSize, double mean, double std, double ratioRNotEqualT, Device device, Generator? generator = null)
    {
        var a = TimeSampling.LogitNormal(batchSize, mean, std, device, generator);
        var b = TimeSampling.LogitNormal(batchSize, mean, std, device, generator);
        var t = maximum(a, b);
        var r = minimum(a, b);
        var keep = RandomDraw.Rand([batchSize], device, generator) < ratioRNotEqualT;
        r = where(keep, r, t);
        return (t, r);
    }
}
