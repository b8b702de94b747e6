using static TorchSharp.torch;

namespace HierDistill.Abstractions.Losses;

/// <summary>
/// The result of one loss computation: the scalar to backpropagate, named detached terms for
/// logging, and diagnostics that are never backpropagated (style.md §1; DMD2's loss/log dicts).
/// </summary>
/// <remarks>
/// All tensors belong to the caller's dispose scope. The host reads the terms on logging steps
/// only, so that GPU runs need no host synchronisation in between.
/// </remarks>
public sealed class LossBreakdown
{
    /// <summary>Creates a breakdown.</summary>
    /// <param name="total">Scalar loss (0-dim) to backpropagate.</param>
    /// <param name="terms">Named scalar terms, detached here.</param>
    /// <param name="diagnostics">Named scalar diagnostics, detached here.</param>
    /// <exception cref="ArgumentException">When <paramref name="total"/> is not a scalar.</exception>
    public LossBreakdown(Tensor total, IReadOnlyDictionary<string, Tensor>? terms = null, IReadOnlyDictionary<string, Tensor>? diagnostics = null)
    {
        if (total.numel() != 1)
            throw new ArgumentException($"the total loss must be a scalar, got shape [{string.Join(", ", total.shape)}].", nameof(total));
        Total = total;
        Terms = (terms ?? new Dictionary<string, Tensor>()).ToDictionary(kv => kv.Key, kv => kv.Value.detach());
        Diagnostics = (diagnostics ?? new Dictionary<string, Tensor>()).ToDictionary(kv => kv.Key, kv => kv.Value.detach());
    }

    /// <summary>The scalar to backpropagate.</summary>
    public Tensor Total { get; }

    /// <summary>Named, detached loss terms (logged).</summary>
    public IReadOnlyDictionary<string, Tensor> Terms { get; }

    /// <summary>Named, detached diagnostics (logged, never backpropagated).</summary>
    public IReadOnlyDictionary<string, Tensor> Diagnostics { get; }

    /// <summary>Every logged value: <c>loss</c> (the total), the terms, then the diagnostics.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> All()
    {
        yield return new("loss", Total.detach());
        foreach (var kv in Terms) yield return kv;
        foreach (var kv in Diagnostics) yield return kv;
    }

    /// <summary>Adds <paramref name="weight"/> × <paramref name="other"/>'s total and prefixes its terms with <paramref name="prefix"/>.</summary>
    public LossBreakdown Plus(LossBreakdown other, double weight, string prefix)
    {
        var terms = new Dictionary<string, Tensor>(Terms);
        foreach (var kv in other.Terms) terms[$"{prefix}/{kv.Key}"] = kv.Value;
        terms[$"{prefix}/loss"] = other.Total.detach();
        var diags = new Dictionary<string, Tensor>(Diagnostics);
        foreach (var kv in other.Diagnostics) diags[$"{prefix}/{kv.Key}"] = kv.Value;
        var total = weight == 0 ? Total : Total + weight * other.Total;
        return new LossBreakdown(total, terms, diags);
    }
}
