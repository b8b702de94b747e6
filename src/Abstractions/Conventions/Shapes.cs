using static TorchSharp.torch;

namespace HierDistill.Abstractions.Conventions;

/// <summary>
/// Shape checks at component boundaries. TorchSharp 0.107's <c>Tensor.matmul</c> terminates the
/// process on a shape mismatch instead of throwing, so contracts validate shapes before any math.
/// </summary>
public static class Shapes
{
    /// <summary>Formats a tensor's shape as <c>[2, 3]</c>.</summary>
    public static string Format(Tensor t) => Format(t.shape);

    /// <summary>Formats a shape as <c>[2, 3]</c>.</summary>
    public static string Format(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    /// <summary>Throws unless <paramref name="t"/> has exactly <paramref name="expected"/> (−1 matches any size).</summary>
    /// <exception cref="ArgumentException">On a rank or size mismatch, naming the tensor and both shapes.</exception>
    public static void Require(Tensor t, string name, params long[] expected)
    {
        bool ok = t.ndim == expected.Length;
        for (int i = 0; ok && i < expected.Length; i++) ok = expected[i] < 0 || expected[i] == t.shape[i];
        if (!ok)
            throw new ArgumentException(
                $"{name} must have shape {Format(expected).Replace("-1", "*")}, got {Format(t)}.", name);
    }

    /// <summary>Throws unless both tensors have the same shape.</summary>
    /// <exception cref="ArgumentException">On a mismatch, naming both tensors and shapes.</exception>
    public static void RequireSame(Tensor a, Tensor b, string nameA, string nameB)
    {
        if (!a.shape.SequenceEqual(b.shape))
            throw new ArgumentException($"{nameA} {Format(a)} and {nameB} {Format(b)} must have the same shape.");
    }

    /// <summary>Throws unless <paramref name="samples"/> is <c>[B, ...sampleShape]</c> for some B.</summary>
    /// <exception cref="ArgumentException">On a mismatch.</exception>
    public static void RequireBatchOf(Tensor samples, string name, long[] sampleShape)
    {
        bool ok = samples.ndim == sampleShape.Length + 1;
        for (int i = 0; ok && i < sampleShape.Length; i++) ok = samples.shape[i + 1] == sampleShape[i];
        if (!ok)
            throw new ArgumentException(
                $"{name} must have shape [B, {string.Join(", ", sampleShape)}], got {Format(samples)}.", name);
    }
}
