using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Conventions;

/// <summary>
/// The interpolation and time conventions every plugin shares (rectified flow; method.md §1).
/// </summary>
/// <remarks>
/// <para><c>z_t = (1 - t) x + t e</c> with <c>e ~ N(0, I)</c> and <c>t ∈ [0, 1]</c>:
/// <b>t = 0 is data, t = 1 is noise</b>. The conditional velocity is <c>v = e - x</c>
/// (Liu et al. 2022, "Flow Straight and Fast", eq. 1; Lipman et al. 2022, flow matching).</para>
/// <para>The average velocity over <c>[r, t]</c>, <c>0 ≤ r ≤ t ≤ 1</c>, is
/// <c>u(z_t, r, t) = 1/(t - r) ∫_r^t v(z_s, s) ds</c>, so <c>z_r = z_t - (t - r) u(z_t, r, t)</c>
/// (Geng et al. 2025, MeanFlow, eq. 3).</para>
/// <para>Shapes: samples <c>[B, ...S]</c>, times <c>[B]</c>, labels <c>[B]</c> int64.</para>
/// </remarks>
public static class FlowConventions
{
    /// <summary>Reshapes per-sample times <c>[B]</c> to <c>[B, 1, ..., 1]</c> so they broadcast against <paramref name="like"/>.</summary>
    /// <param name="t">Times, shape <c>[B]</c>.</param>
    /// <param name="like">A sample batch <c>[B, ...S]</c>.</param>
    /// <exception cref="ArgumentException">When <paramref name="t"/> is not <c>[B]</c> with the batch size of <paramref name="like"/>.</exception>
    public static Tensor ExpandTime(Tensor t, Tensor like)
    {
        if (t.ndim != 1 || t.shape[0] != like.shape[0])
            throw new ArgumentException(
                $"times must have shape [B] = [{like.shape[0]}] to match samples {Shapes.Format(like)}, got {Shapes.Format(t)}.", nameof(t));
        var shape = new long[like.ndim];
        shape[0] = t.shape[0];
        for (int i = 1; i < shape.Length; i++) shape[i] = 1;
        return t.reshape(shape); // [B] -> [B, 1, ..., 1]
    }

    /// <summary>The interpolant <c>z_t = (1 - t) x + t e</c>.</summary>
    /// <param name="x">Data, <c>[B, ...S]</c>.</param>
    /// <param name="e">Noise, same shape as <paramref name="x"/>.</param>
    /// <param name="t">Times in [0, 1], <c>[B]</c>.</param>
    /// <returns><c>z_t</c>, <c>[B, ...S]</c>.</returns>
    public static Tensor Interpolate(Tensor x, Tensor e, Tensor t)
    {
        Shapes.RequireSame(x, e, "x", "e");
        var tb = ExpandTime(t, x);
        return (1 - tb) * x + tb * e;
    }

    /// <summary>The conditional (data) velocity <c>v = e - x = d z_t / dt</c>.</summary>
    /// <param name="x">Data, <c>[B, ...S]</c>.</param>
    /// <param name="e">Noise, same shape.</param>
    public static Tensor ConditionalVelocity(Tensor x, Tensor e)
    {
        Shapes.RequireSame(x, e, "x", "e");
        return e - x;
    }

    /// <summary>One step of the average-velocity map: <c>z_r = z_t - (t - r) u(z_t, r, t)</c>.</summary>
    /// <param name="z">State at time t, <c>[B, ...S]</c>.</param>
    /// <param name="u">Average velocity over [r, t], same shape.</param>
    /// <param name="r">End time, <c>[B]</c>.</param>
    /// <param name="t">Start time, <c>[B]</c>.</param>
    public static Tensor Step(Tensor z, Tensor u, Tensor r, Tensor t) => z - ExpandTime(t - r, z) * u;
}
