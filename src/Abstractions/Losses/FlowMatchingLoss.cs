using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Losses;

/// <summary>
/// Conditional flow matching (Lipman et al. 2022, eq. 9; Liu et al. 2022, eq. 1) in the
/// convention of method.md §1: <c>L = mean_i mean_dims (v_θ(z_t, t | c) - (e - x))²</c> with
/// <c>z_t = (1 - t) x + t e</c>. Trains teachers and the DMD fake score.
/// </summary>
public static class FlowMatchingLoss
{
    /// <summary>Computes the loss for given noise and times.</summary>
    /// <param name="velocity">The network being trained.</param>
    /// <param name="x">Data <c>[B, ...S]</c> (treated as constant).</param>
    /// <param name="labels">Labels <c>[B]</c> (after any label dropout).</param>
    /// <param name="noise">Noise e, same shape as x.</param>
    /// <param name="t">Times <c>[B]</c> in [0, 1].</param>
    /// <returns>Total = the mean squared error; term <c>mse</c>.</returns>
    /// <exception cref="ArgumentException">When the velocity's shape is not z's.</exception>
    public static LossBreakdown Compute(VelocityField velocity, Tensor x, Tensor labels, Tensor noise, Tensor t)
    {
        var xd = x.detach();
        var z = FlowConventions.Interpolate(xd, noise, t);
        var target = FlowConventions.ConditionalVelocity(xd, noise);
        var v = velocity(z, t, labels);
        Shapes.RequireSame(v, z, "the velocity", "z"); // broadcast, [B, 1] against [B, 2] would train on a wrong loss
        var err = (v - target).square();
        var perSample = err.flatten(1).mean([1]); // [B]
        var loss = perSample.mean();
        return new LossBreakdown(loss, new Dictionary<string, Tensor> { ["mse"] = loss });
    }
}
