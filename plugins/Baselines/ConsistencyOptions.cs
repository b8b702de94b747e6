using HierDistill.Abstractions.Numerics;
using System.ComponentModel.DataAnnotations;

namespace HierDistill.Plugins.Baselines;

/// <summary>The law of the training time t.</summary>
public enum TimeLaw
{
    /// <summary><c>t = sigmoid(N(timeMean, timeStd²))</c> (Esser et al. 2024; MeanFlow uses mean −0.4, std 1).</summary>
    LogitNormal,

    /// <summary><c>t ~ U[timeMin, 1]</c>.</summary>
    Uniform,
}

/// <summary>
/// Options of the <c>consistency</c> trajectory distiller: continuous consistency training in the average-velocity
/// frame (MeanFlow with r = 0; method.md §4), optionally in the sCM form (Lu &amp; Song 2024, Alg. 1): per-sample
/// tangent normalisation and a linear warm-up of the tangent term. Defaults: MeanFlow's, so that swapping the
/// distiller changes the objective only.
/// </summary>
public sealed class ConsistencyOptions
{
    /// <summary>CFG scale w of the teacher velocity used as the target (1: no guidance). <value>Default 1.</value></summary>
    [Range(0.0, 100.0)]
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Probability that a label is replaced by ∅ (student and target then unconditional). <value>Default 0.1.</value></summary>
    [Range(0.0, 1.0)]
    public double LabelDropout { get; set; } = 0.1;

    /// <summary>Law of t. <value>Default logitNormal.</value></summary>
    public TimeLaw TimeLaw { get; set; } = TimeLaw.LogitNormal;

    /// <summary>Mean of the logit-normal law (sCM's law maps to about −1.0 here). <value>Default -0.4.</value></summary>
    [Range(-10.0, 10.0)]
    public double TimeMean { get; set; } = -0.4;

    /// <summary>Standard deviation of the logit-normal law (sCM's: about 1.4). <value>Default 1.</value></summary>
    [Range(0.01, 10.0)]
    public double TimeStd { get; set; } = 1.0;

    /// <summary>Lower end of the uniform law. <value>Default 0.</value></summary>
    [Range(0.0, 0.99)]
    public double TimeMin { get; set; }

    /// <summary>Jacobian-vector product method. <value>Default doubleBackward.</value></summary>
    public JvpMode Jvp { get; set; } = JvpMode.DoubleBackward;

    /// <summary>Step of the finite-difference JVP. <value>Default 1e-4.</value></summary>
    [Range(1e-10, 0.1)]
    public double FiniteDifferenceEpsilon { get; set; } = 1e-4;

    /// <summary>
    /// Normalise the tangent per sample, <c>g / (‖g‖ + c)</c>, with <c>g = u_tgt - sg(u_θ)</c> (sCM, Lu &amp; Song 2024,
    /// §4.2). <value>Default false.</value>
    /// </summary>
    public bool TangentNormalization { get; set; }

    /// <summary>The constant c of the tangent normalisation. <value>Default 0.1.</value></summary>
    [Range(1e-8, 1e3)]
    public double TangentNormalizationConstant { get; set; } = 0.1;

    /// <summary>
    /// Steps over which the weight of the <c>t · du/dt</c> term rises linearly from 0 to 1 (sCM's tangent warm-up;
    /// 0: no warm-up). <value>Default 0.</value>
    /// </summary>
    [Range(0, 100_000_000)]
    public long TangentWarmupSteps { get; set; }

    /// <summary>Power p of MeanFlow's adaptive weight 1 / (s + c)^p (0: plain sum of squares). <value>Default 1.</value></summary>
    [Range(0.0, 4.0)]
    public double AdaptiveWeightPower { get; set; } = 1.0;

    /// <summary>Constant c of the adaptive weight. <value>Default 0.01.</value></summary>
    [Range(1e-12, 1e6)]
    public double AdaptiveWeightEpsilon { get; set; } = 1e-2;
}
