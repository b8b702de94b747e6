using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Contracts;

/// <summary>Adam(W) settings for one trained module (the host checks the ranges below before anything runs).</summary>
/// <param name="LearningRate">Learning rate, &gt; 0.</param>
/// <param name="Beta1">Adam β₁ in [0, 1).</param>
/// <param name="Beta2">Adam β₂ in [0, 1).</param>
/// <param name="WeightDecay">Decoupled weight decay (AdamW), ≥ 0.</param>
/// <param name="GradClipNorm">Global gradient-norm clip (null: none).</param>
public sealed record OptimizerSettings(
    double LearningRate, double Beta1 = 0.9, double Beta2 = 0.999, double WeightDecay = 0, double? GradClipNorm = null);

/// <summary>A module a component wants trained by the host's loop, with its optimiser settings.</summary>
/// <param name="Name">Name that keys the module's state in checkpoints and names it in its optimiser's messages (skipped
/// steps), e.g. <c>"fake_score"</c>; a distribution matcher's auxiliary modules also log under it (<c>fake_score/loss</c>), a
/// discriminator's heads log under <c>discriminator/</c>. Unique among the modules one stage trains; <c>"generator"</c> is the
/// host's. The host checks this before anything runs.</param>
/// <param name="Module">The module; its parameters with <c>requires_grad</c> are optimised.</param>
/// <param name="Optimizer">Optimiser settings.</param>
public sealed record TrainableModule(string Name, nn.Module Module, OptimizerSettings Optimizer);

/// <summary>Where a training loop stands.</summary>
/// <param name="Step">Zero-based step index.</param>
/// <param name="TotalSteps">Number of steps of the stage.</param>
public readonly record struct TrainingProgress(long Step, long TotalSteps)
{
    /// <summary>Fraction of the stage done, in [0, 1].</summary>
    public double Fraction => TotalSteps <= 0 ? 1 : Math.Min(1.0, (double)Step / TotalSteps);
}
