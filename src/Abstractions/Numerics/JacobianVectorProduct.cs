using HierDistill.Abstractions.Conventions;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Numerics;

/// <summary>
/// Jacobian-vector products of a function <c>f(z, t)</c> (z <c>[B, ...S]</c>, t <c>[B]</c>,
/// output <c>[B, ...S]</c>) along a tangent <c>(ż, ṫ)</c>: <c>J_z f · ż + ∂_t f · ṫ</c>.
/// TorchSharp has no forward-mode AD; these are the two ways method.md §2 offers.
/// </summary>
public static class JacobianVectorProduct
{
    /// <summary>
    /// Exact JVP by double backward: with a dummy cotangent <c>w</c> (zeros, requiring grad),
    /// <c>g = ∂(w·f)/∂(z, t) = (J_zᵀ w, J_tᵀ w)</c> is linear in <c>w</c>, so
    /// <c>∂(g · (ż, ṫ))/∂w = J_z ż + J_t ṫ</c>. Every operation of <paramref name="f"/> must be
    /// twice differentiable (no fused attention kernels).
    /// </summary>
    /// <param name="f">The function; it may close over parameters (their gradients are not computed here).</param>
    /// <param name="z">Point <c>[B, ...S]</c>.</param>
    /// <param name="t">Time <c>[B]</c>.</param>
    /// <param name="tangentZ">Tangent for z, same shape as z.</param>
    /// <param name="tangentT">Tangent for t, <c>[B]</c>.</param>
    /// <returns>
    /// <c>Output</c>: f(z, t) with its graph kept (it can be reused as the primal output of a loss);
    /// <c>Jvp</c>: the product, detached, same shape as the output.
    /// </returns>
    /// <exception cref="ArgumentException">When <paramref name="tangentZ"/> is not z's shape or <paramref name="tangentT"/> not t's
    /// (libtorch's backward pass would terminate the process on such a tangent instead of throwing).</exception>
    public static (Tensor Output, Tensor Jvp) DoubleBackward(Func<Tensor, Tensor, Tensor> f, Tensor z, Tensor t, Tensor tangentZ, Tensor tangentT)
    {
        RequireTangents(z, t, tangentZ, tangentT);
        using var grad = enable_grad();
        var zz = z.detach().requires_grad_(true);
        var tt = t.detach().requires_grad_(true);
        var y = f(zz, tt);
        var w = zeros_like(y).requires_grad_(true);
        var g = autograd.grad([y], [zz, tt], [w], retain_graph: true, create_graph: true, allow_unused: true);
        var terms = new List<Tensor>();
        var tangents = new List<Tensor>();
        if (IsDefined(g[0]) && g[0].requires_grad) { terms.Add(g[0]); tangents.Add(tangentZ.detach()); }
        if (IsDefined(g[1]) && g[1].requires_grad) { terms.Add(g[1]); tangents.Add(tangentT.detach()); }
        if (terms.Count == 0) return (y, zeros_like(y));
        var jvp = autograd.grad(terms, [w], tangents, retain_graph: true, create_graph: false, allow_unused: true)[0];
        return (y, IsDefined(jvp) ? jvp.detach() : zeros_like(y));
    }

    /// <summary>
    /// JVP by finite differences along the tangent: central <c>(f(p + εd) - f(p - εd)) / 2ε</c>,
    /// one-sided per sample where <c>t ± ε</c> would leave <c>[tMin, tMax]</c>. Evaluate
    /// <paramref name="f"/> in float64 for accuracy (cast inputs and the network).
    /// </summary>
    /// <param name="f">The function, evaluated without gradients.</param>
    /// <param name="z">Point <c>[B, ...S]</c>.</param>
    /// <param name="t">Time <c>[B]</c>.</param>
    /// <param name="tangentZ">Tangent for z.</param>
    /// <param name="tangentT">Tangent for t, <c>[B]</c>.</param>
    /// <param name="epsilon">Step ε &gt; 0 (1e-4 suits float64).</param>
    /// <param name="tMin">Per-sample lower bound for t (e.g. r), <c>[B]</c>, or null for none.</param>
    /// <param name="tMax">Upper bound for t (1).</param>
    /// <exception cref="ArgumentOutOfRangeException">For a non-positive epsilon.</exception>
    /// <exception cref="ArgumentException">When <paramref name="tangentZ"/> is not z's shape (it would be broadcast).</exception>
    public static Tensor FiniteDifference(Func<Tensor, Tensor, Tensor> f, Tensor z, Tensor t, Tensor tangentZ, Tensor tangentT,
        double epsilon, Tensor? tMin = null, double tMax = 1.0)
    {
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "epsilon must be > 0.");
        Shapes.RequireSame(tangentZ, z, "the tangent ż", "the point z"); // ṫ may broadcast against t here (e.g. ones(1))
        using var _ = no_grad();
        var tPlus = t + epsilon * tangentT;
        var tMinus = t - epsilon * tangentT;
        var fPlus = f(z + epsilon * tangentZ, tPlus);
        var fMinus = f(z - epsilon * tangentZ, tMinus);
        var central = (fPlus - fMinus) / (2 * epsilon);

        var plusOut = tPlus > tMax;
        var minusOut = tMin is null ? zeros_like(plusOut) : tMinus < tMin;
        var oneSided = plusOut.logical_xor(minusOut);
        if (!oneSided.any().item<bool>()) return central;

        var f0 = f(z, t);
        var forward = (fPlus - f0) / epsilon;
        var backward = (f0 - fMinus) / epsilon;
        var shape = new long[z.ndim];
        shape[0] = z.shape[0];
        for (int i = 1; i < shape.Length; i++) shape[i] = 1;
        var useForward = minusOut.logical_and(plusOut.logical_not()).reshape(shape);  // [B] -> [B, 1, ..., 1]
        var useBackward = plusOut.logical_and(minusOut.logical_not()).reshape(shape);
        return where(useForward, forward, where(useBackward, backward, central));
    }

    /// <summary>
    /// The student's average velocity <c>u = u_θ(z, r, t | c)</c> and its total derivative along the flow,
    /// <c>du/dt = ∂u/∂z · v + ∂u/∂t</c> (MeanFlow, Geng et al. 2025, eq. 8; the consistency objective is the case r = 0),
    /// the JVP that every average-velocity objective needs. <see cref="JvpMode.DoubleBackward"/>: exact, by
    /// <see cref="DoubleBackward"/>; <see cref="JvpMode.FiniteDifference"/>: central differences (one-sided at the ends of
    /// [r, 1]) on a float64 copy of the student in eval mode (with <see cref="Autocast"/> off), for networks whose kernels have no
    /// double backward.
    /// </summary>
    /// <param name="student">The student.</param>
    /// <param name="z">States <c>[B, ...S]</c>.</param>
    /// <param name="r">Start times <c>[B]</c>.</param>
    /// <param name="t">End times <c>[B]</c>, r ≤ t.</param>
    /// <param name="v">The velocity along which to differentiate, <c>[B, ...S]</c> (e.g. the teacher's guided velocity), constant.</param>
    /// <param name="labels">Class labels <c>[B]</c>.</param>
    /// <param name="mode">How to take the JVP.</param>
    /// <param name="finiteDifferenceEpsilon">Step of the finite differences (used by <see cref="JvpMode.FiniteDifference"/>).</param>
    /// <returns><c>U</c> with its graph (the loss's primal output) and <c>Dudt</c> detached, both <c>[B, ...S]</c>.</returns>
    public static (Tensor U, Tensor Dudt) AverageVelocityAlongFlow(Models.AverageVelocityNetwork student, Tensor z, Tensor r, Tensor t, Tensor v,
        Tensor labels, JvpMode mode, double finiteDifferenceEpsilon)
    {
        if (mode == JvpMode.DoubleBackward)
            return DoubleBackward((zz, tt) => student.AverageVelocity(zz, r, tt, labels), z, t, v, ones_like(t));

        Tensor dudt;
        using (Autocast.Use(null))
        using (var copy = student.Clone())
        {
            copy.to(ScalarType.Float64);
            copy.eval();
            var r64 = r.to_type(ScalarType.Float64);
            dudt = FiniteDifference((zz, tt) => copy.AverageVelocity(zz, r64, tt, labels),
                z.to_type(ScalarType.Float64), t.to_type(ScalarType.Float64), v.to_type(ScalarType.Float64), ones_like(r64),
                finiteDifferenceEpsilon, tMin: r64, tMax: 1.0).to_type(z.dtype);
        }
        return (student.AverageVelocity(z, r, t, labels), dudt);
    }

    private static bool IsDefined(Tensor? t) => t is not null && t.Handle != IntPtr.Zero;

    /// <summary>The tangent has the point's shape: ż like z (e.g. a teacher's velocity <c>[B, ...S]</c>), ṫ like t <c>[B]</c>.</summary>
    /// <exception cref="ArgumentException">Otherwise, naming both shapes.</exception>
    private static void RequireTangents(Tensor z, Tensor t, Tensor tangentZ, Tensor tangentT)
    {
        Shapes.RequireSame(tangentZ, z, "the tangent ż", "the point z");
        Shapes.RequireSame(tangentT, t, "the tangent ṫ", "the time t");
    }
}
