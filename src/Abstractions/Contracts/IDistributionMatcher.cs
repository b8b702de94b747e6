using HierDistill.Abstractions.Losses;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Contracts;

/// <summary>
/// Stage 2 of Hierarchical Distillation: a distribution matcher turns generator samples into a
/// generator loss (e.g. DMD's distribution-matching gradient, Yin et al. 2024, eq. 7) and trains
/// its own auxiliary models (the fake score) online on generator samples, on its own time scale
/// (DMD2, Yin et al. 2024b, §4.2).
/// </summary>
public interface IDistributionMatcher
{
    /// <summary>Modules the host trains with <see cref="AuxiliaryLoss"/> every iteration (e.g. the fake score).</summary>
    IReadOnlyList<TrainableModule> AuxiliaryModules { get; }

    /// <summary>Two-time-scale update rule: the generator steps once every this many iterations (≥ 1; DMD2 uses 5).</summary>
    int GeneratorUpdateInterval { get; }

    /// <summary>Loss of the auxiliary models on detached generator samples.</summary>
    /// <param name="samples">Generator samples <c>[B, ...S]</c>, detached.</param>
    /// <param name="labels">Their labels <c>[B]</c> int64.</param>
    /// <param name="progress">Where the stage stands.</param>
    LossBreakdown AuxiliaryLoss(Tensor samples, Tensor labels, TrainingProgress progress);

    /// <summary>Generator-side loss whose gradient with respect to <paramref name="samples"/> drives the generator.</summary>
    /// <param name="samples">Generator samples <c>[B, ...S]</c> that carry the generator's graph.</param>
    /// <param name="labels">Their labels <c>[B]</c> int64.</param>
    /// <param name="progress">Where the stage stands.</param>
    LossBreakdown GeneratorLoss(Tensor samples, Tensor labels, TrainingProgress progress);
}
