using System.ComponentModel.DataAnnotations;
using System.Numerics;

namespace Acme.HierDistill.Shortcut;

/// <summary>
/// Options of the <c>shortcut</c> trajectory distiller, bound from the config's
/// <c>stages:&lt;key&gt;:distiller:options</c>. The host validates them before anything runs: the
/// <see cref="RangeAttribute"/>s property by property, then <see cref="Validate"/> for the rules that
/// span properties or need more than a range. Defaults are the property initialisers (Frans et al.
/// 2024: 128 steps, a quarter of each batch for self-consistency).
/// </summary>
public sealed class ShortcutOptions : IValidatableObject
{
    /// <summary>CFG scale w of the teacher's velocity, the flow-matching target at gap 0 (1: no guidance). <value>Default 1.</value></summary>
    [Range(0.0, 100.0)]
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Probability that a label is replaced by ∅ (student and target then unconditional). <value>Default 0.1.</value></summary>
    [Range(0.0, 1.0)]
    public double LabelDropout { get; set; } = 0.1;

    /// <summary>
    /// The finest step count M, a power of two: self-consistency trains the gaps 2/M, 4/M, …, 1, each from two
    /// half-gap steps of the student; a half-gap of 1/M is taken with the instantaneous velocity (gap 0), which
    /// the flow-matching rows train. <value>Default 128.</value>
    /// </summary>
    [Range(2, 4096)]
    public int Steps { get; set; } = 128;

    /// <summary>Fraction of each batch trained by self-consistency (the rest by flow matching at gap 0); below 1. <value>Default 0.25.</value></summary>
    [Range(0.0, 1.0)]
    public double SelfConsistencyFraction { get; set; } = 0.25;

    /// <summary>Weight of the self-consistency rows relative to the flow-matching rows. <value>Default 1.</value></summary>
    [Range(0.0, 100.0)]
    public double SelfConsistencyWeight { get; set; } = 1.0;

    /// <summary>log2 of <see cref="Steps"/>: the number of trained gap levels.</summary>
    internal int Levels => BitOperations.Log2((uint)Steps);

    /// <inheritdoc/>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Steps > 0 && !BitOperations.IsPow2(Steps))
            yield return new ValidationResult(
                $"must be a power of two (2, 4, …, 4096) so that every gap splits into two half-gaps on the grid; got {Steps}.",
                [nameof(Steps)]);
        if (SelfConsistencyFraction >= 1.0)
            yield return new ValidationResult(
                "must be below 1: the flow-matching rows train the gap-0 velocity that the self-consistency targets are built from.",
                [nameof(SelfConsistencyFraction)]);
    }
}
