using static TorchSharp.torch;

namespace HierDistill.Abstractions.Numerics;

/// <summary>Time distributions used by the objectives (all return <c>[B]</c> in [0, 1], float32).</summary>
public static class TimeSampling
{
    /// <summary>Logit-normal: <c>sigmoid(N(mean, std²))</c> (Esser et al. 2024, SD3 §3.1; MeanFlow uses mean −0.4, std 1).</summary>
    public static Tensor LogitNormal(long batchSize, double mean, double std, Device device, Generator? generator = null) =>
        sigmoid(RandomDraw.Randn([batchSize], device, generator) * std + mean);

    /// <summary>Uniform on [<paramref name="low"/>, <paramref name="high"/>].</summary>
    public static Tensor Uniform(long batchSize, double low, double high, Device device, Generator? generator = null) =>
        RandomDraw.Rand([batchSize], device, generator) * (high - low) + low;
}
