using static TorchSharp.torch;

namespace HierDistill.Abstractions.Data;

/// <summary>A batch of samples with their class labels.</summary>
/// <param name="X">Samples <c>[B, ...S]</c>, float.</param>
/// <param name="Labels">Class labels <c>[B]</c>, int64, in <c>0 .. K-1</c> (or the null label <c>K</c>).</param>
/// <remarks>The tensors belong to the dispose scope they were created in (normally one training step).</remarks>
public sealed record Batch(Tensor X, Tensor Labels)
{
    /// <summary>Batch size B.</summary>
    public long Size => X.shape[0];
}
