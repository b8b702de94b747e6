namespace HierDistill.Plugins.Baselines;

/// <summary>
/// sCM's tangent warm-up (Lu &amp; Song 2024, Alg. 1, the factor r): the weight of the time-derivative term of the
/// consistency target rises linearly from 0 at the first step to 1 after <c>N</c> steps, <c>w = min(1, step / N)</c>;
/// <c>N = 0</c> means no warm-up (w = 1 from the start).
/// </summary>
internal static class TangentWarmup
{
    /// <param name="step">Zero-based training step.</param>
    /// <param name="steps">Warm-up length N ≥ 0.</param>
    /// <returns>The weight in [0, 1].</returns>
    public static double Weight(long step, long steps) => steps <= 0 ? 1.0 : Math.Clamp((double)step / steps, 0.0, 1.0);
}
