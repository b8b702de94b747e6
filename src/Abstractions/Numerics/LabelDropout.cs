using static TorchSharp.torch;

namespace HierDistill.Abstractions.Numerics;

/// <summary>
/// Label dropout for classifier-free guidance training (Ho &amp; Salimans 2022, Alg. 1): each
/// label is replaced by the null label ∅ with probability p, so one network learns both
/// <c>v(z, t | c)</c> and <c>v(z, t | ∅)</c>.
/// </summary>
public static class LabelDropout
{
    /// <summary>Returns labels with each entry replaced by <paramref name="nullLabel"/> with probability <paramref name="probability"/>.</summary>
    /// <param name="labels">Labels <c>[B]</c> int64.</param>
    /// <param name="probability">Dropout probability in [0, 1].</param>
    /// <param name="nullLabel">The null label ∅.</param>
    /// <param name="generator">Random generator (null: global).</param>
    /// <exception cref="ArgumentOutOfRangeException">For a probability outside [0, 1].</exception>
    public static Tensor Apply(Tensor labels, double probability, int nullLabel, Generator? generator = null)
    {
        if (!(probability >= 0 && probability <= 1))
            throw new ArgumentOutOfRangeException(nameof(probability), probability, "label dropout must be in [0, 1].");
        if (probability == 0) return labels;
        var drop = RandomDraw.Rand(labels.shape, labels.device, generator) < probability;
        return where(drop, full_like(labels, nullLabel), labels);
    }
}
