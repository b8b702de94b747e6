using System.ComponentModel.DataAnnotations;

namespace HierDistill.Abstractions.Contracts;

/// <summary>
/// Adam(W) settings as a config section, for components that train their own modules (e.g. DMD's fake score,
/// a discriminator): <c>{ "learningRate": 1e-4, "beta1": 0.9, "beta2": 0.999, "weightDecay": 0, "gradClip": 1 }</c>.
/// </summary>
public sealed class AdamOptions
{
    /// <summary>Learning rate. <value>Default 1e-4.</value></summary>
    [Range(0.0, 10.0)]
    public double LearningRate { get; set; } = 1e-4;

    /// <summary>Adam β₁. <value>Default 0.9.</value></summary>
    [Range(0.0, 0.999999)]
    public double Beta1 { get; set; } = 0.9;

    /// <summary>Adam β₂. <value>Default 0.999.</value></summary>
    [Range(0.0, 0.999999)]
    public double Beta2 { get; set; } = 0.999;

    /// <summary>Decoupled weight decay (AdamW). <value>Default 0.</value></summary>
    [Range(0.0, 1.0)]
    public double WeightDecay { get; set; }

    /// <summary>Global gradient-norm clip (0: none). <value>Default 1.</value></summary>
    [Range(0.0, 1e6)]
    public double GradClip { get; set; } = 1.0;

    /// <summary>The settings the host's optimiser takes.</summary>
    public OptimizerSettings ToSettings() => new(LearningRate, Beta1, Beta2, WeightDecay, GradClip > 0 ? GradClip : null);
}
