using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Numerics;

/// <summary>
/// Classifier-free guidance (Ho &amp; Salimans 2022, eq. 6, in velocity form; method.md §1):
/// <c>v_w = v(z, t | ∅) + w (v(z, t | c) - v(z, t | ∅))</c>. <c>w = 1</c> is no guidance and costs
/// one evaluation; otherwise conditional and unconditional run as one batch of 2B.
/// </summary>
public static class ClassifierFreeGuidance
{
    /// <summary>The guided combination <c>uncond + w (cond - uncond)</c>.</summary>
    /// <param name="conditional">v(z, t | c), <c>[B, ...S]</c>.</param>
    /// <param name="unconditional">v(z, t | ∅), same shape.</param>
    /// <param name="scale">Guidance scale w (1: none).</param>
    public static Tensor Combine(Tensor conditional, Tensor unconditional, double scale) =>
        unconditional + scale * (conditional - unconditional);

    /// <summary>Wraps <paramref name="velocity"/> as the guided field <c>v_w</c>.</summary>
    /// <param name="velocity">The unguided field.</param>
    /// <param name="scale">Guidance scale w ≥ 0; exactly 1 returns <paramref name="velocity"/> itself (one call per evaluation).</param>
    /// <param name="nullLabel">The null label ∅.</param>
    /// <exception cref="ArgumentOutOfRangeException">For a negative or non-finite scale.</exception>
    /// <remarks>Rows whose label is already ∅ get <c>v(z, t | ∅)</c> for any w.</remarks>
    public static VelocityField Guide(VelocityField velocity, double scale, int nullLabel)
    {
        if (!double.IsFinite(scale) || scale < 0)
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "the guidance scale must be a finite number ≥ 0.");
        if (scale == 1.0) return velocity;
        return (z, t, labels) =>
        {
            long b = z.shape[0];
            var nulls = full_like(labels, nullLabel);
            var v = velocity(cat([z, z]), cat([t, t]), cat([labels, nulls])); // [2B, ...S]
            var cond = v.narrow(0, 0, b);
            var uncond = v.narrow(0, b, b);
            return Combine(cond, uncond, scale);
        };
    }

    /// <summary>
    /// The frozen teacher's guided velocity <c>v(z, t | c)</c> (<see cref="Guide"/> with the teacher's null label), computed
    /// without a graph and detached: the constant side of a trajectory-distillation target (MeanFlow, consistency).
    /// </summary>
    /// <param name="teacher">The teacher.</param>
    /// <param name="scale">Guidance scale w ≥ 0 (1: the conditional velocity, one network call).</param>
    /// <param name="z">States <c>[B, ...S]</c>.</param>
    /// <param name="t">Times <c>[B]</c>.</param>
    /// <param name="labels">Labels <c>[B]</c> int64 (the null label gives the unconditional velocity).</param>
    /// <returns>The velocity <c>[B, ...S]</c>, detached.</returns>
    /// <exception cref="ArgumentOutOfRangeException">For a negative or non-finite scale.</exception>
    public static Tensor TeacherVelocity(Contracts.ITeacher teacher, double scale, Tensor z, Tensor t, Tensor labels)
    {
        var guided = Guide(teacher.Velocity, scale, teacher.Spec.NullLabel);
        using (no_grad())
            return guided(z, t, labels).detach();
    }
}
