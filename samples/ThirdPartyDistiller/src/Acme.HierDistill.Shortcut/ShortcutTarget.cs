using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace Acme.HierDistill.Shortcut;

/// <summary>
/// The self-consistency target of shortcut models (Frans et al. 2024, "One Step Diffusion via Shortcut
/// Models", eq. 5) in HierDistill's conventions (t = 1 noise, t = 0 data, <c>z_r = z_t - (t - r) u(z_t, r, t)</c>):
/// one step over the gap <c>[r, t]</c> should land where two steps over its halves land, so with
/// <c>m = (r + t) / 2</c>
/// <code>
/// u₁ = u(z_t, m, t);   z_m = z_t - (t - m) u₁;   u₂ = u(z_m, r, m);   u_tgt = sg((u₁ + u₂) / 2)
/// </code>
/// For an exact average velocity this is an identity (the flow map composes), so the exact field is a
/// fixed point. Rows marked <c>finest</c> take both half-steps with the instantaneous velocity
/// (<c>u(z, t, t)</c> and <c>u(z_m, m, m)</c>: two Euler steps), which grounds the recursion in the
/// flow-matching rows.
/// </summary>
internal static class ShortcutTarget
{
    /// <param name="student">The student's average-velocity field (evaluated without gradient).</param>
    /// <param name="z">States at t, <c>[B, ...S]</c>.</param>
    /// <param name="r">End times <c>[B]</c>, r &lt; t.</param>
    /// <param name="t">Start times <c>[B]</c>.</param>
    /// <param name="labels">Labels <c>[B]</c> int64.</param>
    /// <param name="finest">Bool <c>[B]</c>: rows whose half-steps use the instantaneous velocity; null: none.</param>
    /// <returns>The detached target, <c>[B, ...S]</c>.</returns>
    public static Tensor Compute(AverageVelocityField student, Tensor z, Tensor r, Tensor t, Tensor labels, Tensor? finest = null)
    {
        using var _ = no_grad();
        var m = (r + t) / 2;
        var end1 = finest is null ? m : where(finest, t, m);
        var u1 = student(z, end1, t, labels);
        var zm = FlowConventions.Step(z, u1, m, t);
        var end2 = finest is null ? r : where(finest, m, r);
        var u2 = student(zm, end2, m, labels);
        return ((u1 + u2) / 2).detach();
    }
}
