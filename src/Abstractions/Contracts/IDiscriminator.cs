using HierDistill.Abstractions.Losses;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Contracts;

/// <summary>Logits of a discriminator with diagnostics (e.g. attention entropy).</summary>
/// <param name="Logits">Logits <c>[B, H]</c>, one row per sample and one column per head (usually one head per tapped block,
/// <c>H = FeatureBlocks.Count</c>), or <c>[B]</c> for a single head; higher means "real".</param>
/// <param name="Diagnostics">Named scalar diagnostics, never backpropagated.</param>
public sealed record DiscriminatorOutput(Tensor Logits, IReadOnlyDictionary<string, Tensor> Diagnostics);

/// <summary>
/// The adversarial half of stage 2: heads over the frozen teacher's token features of noised
/// samples (LADD, Sauer et al. 2024; HD's Adaptive Weighted Discriminator). The host noises real
/// and generated samples to <see cref="SampleTimes"/>, taps the teacher's
/// <see cref="FeatureBlocks"/> and trains <see cref="Heads"/> with <see cref="DiscriminatorLoss"/>.
/// </summary>
public interface IDiscriminator
{
    /// <summary>The trainable heads and their optimiser settings.</summary>
    TrainableModule Heads { get; }

    /// <summary>Teacher blocks whose token features the heads read (one head per block).</summary>
    IReadOnlyList<int> FeatureBlocks { get; }

    /// <summary>Noise levels <c>s_D ∈ [0, 1]</c> for a batch, a floating-point <c>[B]</c> (the host checks the shape at every step, and the range before anything runs).</summary>
    Tensor SampleTimes(long batchSize, Device device);

    /// <summary>Logits from token features <c>[B, N, C]</c> (one per block of <see cref="FeatureBlocks"/>).</summary>
    /// <remarks>
    /// In the discriminator's step the host passes real and generated samples in one batch (<c>B = 2 × batch</c>, the real
    /// half first; features computed without gradient), so batch statistics see both; in the generator's step, generated
    /// samples alone (<c>B = batch</c>; features differentiable in the samples). The host checks that
    /// <see cref="DiscriminatorOutput.Logits"/> is <c>[B, H]</c> (or <c>[B]</c>), and runs this on trial batches of 4 and 6 random
    /// samples before anything trains (<c>validate</c>, <c>run</c>, <c>compare</c>), so a wrong shape is a configuration error.
    /// </remarks>
    /// <param name="features">Token features, in the order of <see cref="FeatureBlocks"/>.</param>
    /// <param name="labels">Class labels <c>[B]</c> (heads may ignore them).</param>
    /// <exception cref="ArgumentException">When the number or shapes of the features do not match the heads.</exception>
    DiscriminatorOutput Forward(IReadOnlyList<Tensor> features, Tensor labels);

    /// <summary>The discriminator's loss for real and fake logits (each <c>[B, H]</c>), averaged over samples and heads.</summary>
    LossBreakdown DiscriminatorLoss(Tensor realLogits, Tensor fakeLogits);

    /// <summary>The generator's adversarial loss for fake logits <c>[B, H]</c>, averaged over samples and heads.</summary>
    LossBreakdown GeneratorLoss(Tensor fakeLogits);
}
