using System.ComponentModel.DataAnnotations;
using System.Numerics;

namespace HierDistill.Plugins.Baselines;

/// <summary>
/// Options of the <c>progressive</c> trajectory distiller (Salimans &amp; Ho 2022 in the average-velocity frame,
/// method.md §4). Rounds train the student for <c>N = startSteps, startSteps/2, …, finalSteps</c> sampling steps; round one's
/// teacher is the teacher itself (<c>u_T(z, r, t) = v_w(z, t)</c>, i.e. 2·startSteps Euler steps), each later round's a frozen
/// snapshot of the student taken when the round starts.
/// </summary>
public sealed class ProgressiveOptions : IValidatableObject
{
    /// <summary>CFG scale w of the teacher's velocity in round one (1: no guidance). <value>Default 1.</value></summary>
    [Range(0.0, 100.0)]
    public double GuidanceScale { get; set; } = 1.0;

    /// <summary>Probability that a label is replaced by ∅ (student and target then unconditional). <value>Default 0.1.</value></summary>
    [Range(0.0, 1.0)]
    public double LabelDropout { get; set; } = 0.1;

    /// <summary>Sampling steps N₀ of the first round's student (its teacher takes 2·N₀ Euler steps). <value>Default 64.</value></summary>
    [Range(1, 4096)]
    public int StartSteps { get; set; } = 64;

    /// <summary>Sampling steps of the last round's student; startSteps / finalSteps must be a power of two. <value>Default 1.</value></summary>
    [Range(1, 4096)]
    public int FinalSteps { get; set; } = 1;

    /// <summary>
    /// Training steps per round; 0 divides the stage's steps equally over the rounds (the last round also takes the
    /// remainder). <value>Default 0.</value>
    /// </summary>
    [Range(0, 100_000_000)]
    public long StepsPerRound { get; set; }

    /// <summary>Power p of MeanFlow's adaptive weight 1 / (s + c)^p (0: the plain squared error of the paper). <value>Default 0.</value></summary>
    [Range(0.0, 4.0)]
    public double AdaptiveWeightPower { get; set; }

    /// <summary>Constant c of the adaptive weight. <value>Default 0.01.</value></summary>
    [Range(1e-12, 1e6)]
    public double AdaptiveWeightEpsilon { get; set; } = 1e-2;

    /// <inheritdoc/>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (FinalSteps > StartSteps)
            yield return new ValidationResult($"must be at most startSteps ({StartSteps}).", [nameof(FinalSteps)]);
        else if (FinalSteps >= 1 && (StartSteps % FinalSteps != 0 || !BitOperations.IsPow2(StartSteps / FinalSteps)))
            yield return new ValidationResult(
                $"startSteps / finalSteps must be a power of two (each round halves the steps); got {StartSteps} / {FinalSteps}.",
                [nameof(FinalSteps)]);
    }
}
