using static TorchSharp.torch;

namespace HierDistill.Plugins.Baselines;

/// <summary>
/// sCM's tangent normalisation (Lu &amp; Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency
/// Models", §4.2 and Alg. 1): <c>g ← g / (‖g‖ + c)</c> per sample, with <c>‖g‖</c> the Euclidean norm over all
/// non-batch dimensions (not <c>‖g‖²</c>). The result has norm <c>‖g‖ / (‖g‖ + c) &lt; 1</c>; a zero tangent stays zero.
/// </summary>
internal static class TangentNormalization
{
    /// <param name="g">Tangents <c>[B, ...S]</c>.</param>
    /// <param name="c">c &gt; 0 (sCM: 0.1).</param>
    /// <returns>The normalised tangents, same shape.</returns>
    /// <exception cref="ArgumentOutOfRangeException">For c ≤ 0.</exception>
    public static Tensor Apply(Tensor g, double c)
    {
        if (!(c > 0)) throw new ArgumentOutOfRangeException(nameof(c), c, "the tangent normalisation constant must be > 0.");
        var shape = new long[g.ndim];
        shape[0] = g.shape[0];
        for (int i = 1; i < shape.Length; i++) shape[i] = 1;
        var norm = g.flatten(1).norm(1).reshape(shape); // [B] -> [B, 1, ..., 1]
        return g / (norm + c);
    }
}
