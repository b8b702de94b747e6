using System.ComponentModel.DataAnnotations;
using HierDistill.Abstractions.Contracts;

namespace HierDistill.Plugins.Dmd;

/// <summary>Options of the <c>dmd</c> distribution matcher (method.md §3).</summary>
public sealed class DmdOptions : IValidatableObject
{
    /// <summary>CFG scale of the real score (the frozen teacher). <value>Default 1.</value></summary>
    [Range(0.0, 100.0)]
    public double RealGuidanceScale { get; set; } = 1.0;

    /// <summary>Smallest diffusion time of the DM gradient. <value>Default 0.02.</value></summary>
    [Range(0.0, 1.0)]
    public double TimeMin { get; set; } = 0.02;

    /// <summary>Largest diffusion time of the DM gradient. <value>Default 0.98.</value></summary>
    [Range(0.0, 1.0)]
    public double TimeMax { get; set; } = 0.98;

    /// <summary>Lower clamp of the per-sample normaliser mean|x - x0_real|. <value>Default 1e-8.</value></summary>
    [Range(1e-30, 1.0)]
    public double DenominatorClamp { get; set; } = 1e-8;

    /// <summary>Two-time-scale rule: the generator steps once every this many iterations (DMD2: 5). <value>Default 5.</value></summary>
    [Range(1, 1000)]
    public int GeneratorUpdateInterval { get; set; } = 5;

    /// <summary>Adam settings of the fake score. <value>Default learning rate 1e-4, betas (0.9, 0.999), clip 1.</value></summary>
    public AdamOptions FakeScore { get; set; } = new();

    /// <inheritdoc/>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (TimeMin >= TimeMax) yield return new ValidationResult($"must be below timeMax ({TimeMax}).", [nameof(TimeMin)]);
    }
}
