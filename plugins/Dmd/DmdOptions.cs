using System.ComponentModel.DataAnnotations;

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

    /// <summary>Learning rate of the fake score. <value>Default 1e-4.</value></summary>
    [Range(0.0, 10.0)]
    public double FakeScoreLearningRate { get; set; } = 1e-4;

    /// <summary>Adam β₁ of the fake score. <value>Default 0.9.</value></summary>
    [Range(0.0, 0.999999)]
    public double FakeScoreBeta1 { get; set; } = 0.9;

    /// <summary>Adam β₂ of the fake score. <value>Default 0.999.</value></summary>
    [Range(0.0, 0.999999)]
    public double FakeScoreBeta2 { get; set; } = 0.999;

    /// <summary>Gradient-norm clip of the fake score (0: none). <value>Default 1.</value></summary>
    [Range(0.0, 1e6)]
    public double FakeScoreGradClip { get; set; } = 1.0;

    /// <inheritdoc/>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (TimeMin >= TimeMax) yield return new ValidationResult($"must be below timeMax ({TimeMax}).", [nameof(TimeMin)]);
    }
}
