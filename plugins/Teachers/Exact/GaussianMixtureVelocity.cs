using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Teachers.Exact;

/// <summary>
/// The exact velocity of a class-labelled Gaussian mixture under <c>z_t = (1 - t) x + t e</c> (method.md §5):
/// per component <c>m_k = (1 - t) μ_k</c>, <c>S_k = ((1 - t)² s_k² + t²) I</c>,
/// <c>γ_k = softmax_k(log π_k + log N(z; m_k, S_k))</c> over the components of the label's class (all for ∅),
/// <c>v_k = -μ_k + (t - (1 - t) s_k²) / ((1 - t)² s_k² + t²) · (z - (1 - t) μ_k)</c>, <c>v = Σ_k γ_k v_k</c>.
/// Computed in float64; returned in the dtype of z.
/// </summary>
internal sealed class GaussianMixtureVelocity(GaussianMixture mixture)
{
    public GaussianMixture Mixture { get; } = mixture;

    /// <summary>v(z, t | c): z <c>[B, D]</c>, t <c>[B]</c>, labels <c>[B]</c> (class or ∅ = number of classes).</summary>
    public Tensor Velocity(Tensor z, Tensor t, Tensor labels)
    {
        Shapes.Require(z, "z", -1, Mixture.Dimension);
        Shapes.Require(t, "t", z.shape[0]);
        Shapes.Require(labels, "labels", z.shape[0]);
        using var scope = NewDisposeScope();
        var dev = z.device;
        var zz = z.to_type(ScalarType.Float64);                                    // [B, D]
        var tt = t.to_type(ScalarType.Float64).unsqueeze(1);                       // [B, 1]
        var (mu, s2, membership, logWeights) = OnDevice(dev);                      // [K, D], [1, K], [C + 1, K], [1, K]
        var a = 1 - tt;                                                            // [B, 1]
        var variance = a.square() * s2 + tt.square();                              // [B, K]
        var diff = zz.unsqueeze(1) - a.unsqueeze(2) * mu.unsqueeze(0);             // [B, K, D]
        int d = Mixture.Dimension;
        var logN = -0.5 * diff.square().sum(2) / variance - 0.5 * d * (2 * Math.PI * variance).log(); // [B, K]

        var allowed = membership.index_select(0, labels.to_type(ScalarType.Int64));  // [B, K]
        var logits = logWeights + logN;
        logits = logits.masked_fill(allowed == 0, double.NegativeInfinity);
        var gamma = logits.softmax(1);                                              // [B, K]

        var coef = (tt - a * s2) / variance;                                        // [B, K]
        var vk = -mu.unsqueeze(0) + coef.unsqueeze(2) * diff;                       // [B, K, D]
        var v = (gamma.unsqueeze(2) * vk).sum(1);                                   // [B, D]
        return v.to_type(z.dtype).MoveToOuterDisposeScope();
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(TorchSharp.DeviceType, long), (Tensor Mu, Tensor S2, Tensor Membership, Tensor LogWeights)> _onDevice = new();

    /// <summary>
    /// The mixture's float64 parameters on <paramref name="device"/>, made once per device (a copy from the host on every
    /// call would make each call wait for the GPU): means <c>[K, D]</c>, variances <c>[1, K]</c>, the class restriction
    /// <c>[C + 1, K]</c> (row c allows class c's components; the last row, ∅, allows all) and log weights <c>[1, K]</c>.
    /// </summary>
    private (Tensor Mu, Tensor S2, Tensor Membership, Tensor LogWeights) OnDevice(Device device) =>
        _onDevice.GetOrAdd((device.type, device.index), _ =>
        {
            using var scope = NewDisposeScope();
            var membership = cat([Mixture.ClassMembership(ScalarType.Float64, device), ones([1, Mixture.Components], ScalarType.Float64, device)]);
            return (Mixture.MeansTensor(ScalarType.Float64, device).DetachFromDisposeScope(),
                Mixture.StdsTensor(ScalarType.Float64, device).square().unsqueeze(0).DetachFromDisposeScope(),
                membership.DetachFromDisposeScope(),
                Mixture.LogWeightsTensor(ScalarType.Float64, device).unsqueeze(0).DetachFromDisposeScope());
        });
}
