namespace HierDistill.Abstractions.Data;

/// <summary>
/// What a data set looks like to the networks: the shape of one sample and the number of classes.
/// </summary>
/// <param name="Name">Human-readable name, e.g. <c>"mixture2d/ring8"</c>.</param>
/// <param name="SampleShape">Shape <c>S</c> of one sample: <c>[2]</c> for 2-D points, <c>[1, 28, 28]</c> for Fashion-MNIST.</param>
/// <param name="NumClasses">Number of class labels <c>K</c>; labels are <c>0 .. K-1</c> and
/// <see cref="NullLabel"/> = <c>K</c> is the null (unconditional) label ∅ used by classifier-free guidance.</param>
public sealed record DataSpec(string Name, long[] SampleShape, int NumClasses)
{
    /// <summary>Human-readable class names (index = label), if the data set has them.</summary>
    public IReadOnlyList<string>? ClassNames { get; init; }

    /// <summary>The reserved null label ∅ (= <see cref="NumClasses"/>) for unconditional evaluation.</summary>
    public int NullLabel => NumClasses;

    /// <summary>Number of scalars in one sample (product of <see cref="SampleShape"/>).</summary>
    public long SampleSize => SampleShape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Shape of a batch of <paramref name="batchSize"/> samples: <c>[B, ...S]</c>.</summary>
    public long[] BatchShape(long batchSize) => [batchSize, .. SampleShape];

    /// <inheritdoc/>
    public bool Equals(DataSpec? other) =>
        other is not null && Name == other.Name && NumClasses == other.NumClasses && SampleShape.SequenceEqual(other.SampleShape);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Name, NumClasses, SampleShape.Length);

    /// <inheritdoc/>
    public override string ToString() => $"{Name} (sample [{string.Join(", ", SampleShape)}], {NumClasses} classes)";
}
