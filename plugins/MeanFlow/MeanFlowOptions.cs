using HierDistill.Abstractions.Numerics;
using System.ComponentModel.DataAnnotations;

namespace HierDistill.Plugins.MeanFlow;

/// <summary>Options of the <c>meanflow</c> trajectory distiller (defaults: MeanFlow's ImageNet settings, method.md §2).</summary>
public sealed class MeanFlowOptions
{
    /// <summary>CFG scale w of the teacher's velocity used as the target (1: no guidance). <value>Default 1.</value></summary>
    [Range(0.0, 100.0)]
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Mean of the logit-normal law of t and r. <value>Default -0.4.</value></summary>
    [Range(-10.0, 10.0)]
    public double TimeMean { get; set; } = -0.4;

    /// <summary>Standard deviation of the logit-normal law of t and r. <value>Default 1.</value></summary>
    [Range(0.01, 10.0)]
    public double TimeStd { get; set; } = 1.0;

    /// <summary>Fraction of the batch with r ≠ t (the rest has r = t). <value>Default 0.25.</value></summary>
    [Range(0.0, 1.0)]
    public double RatioRNotEqualT { get; set; } = 0.25;

    /// <summary>Power p of the adaptive weight 1 / (s + c)^p (0: plain sum of squares). <value>Default 1.</value></summary>
    [Range(0.0, 4.0)]
    public double AdaptiveWeightPower { get; set; } = 1.0;

    /// <summary>Constant c of the adaptive weight. <value>Default 0.01.</value></summary>
    [Range(1e-12, 1e6)]
    public double AdaptiveWeightEpsilon { get; set; } = 1e-2;

    /// <summary>Probability that a label is replaced by ∅ (student and target then unconditional). <value>Default 0.1.</value></summary>
    [Range(0.0, 1.0)]
    public double LabelDropout { get; set; } = 0.1;

    /// <summary>Jacobian-vector product method. <value>Default doubleBackward.</value></summary>
    public JvpMode Jvp { get; set; } = JvpMode.DoubleBackward;

    /// <summary>Step of the finite-difference JVP. <value>Default 1e-4.</value></summary>
    [Range(1e-10, 0.1)]
    public double FiniteDifferenceEpsilon { get; set; } = 1e-4;
}
