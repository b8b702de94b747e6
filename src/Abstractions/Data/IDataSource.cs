using static TorchSharp.torch;

namespace HierDistill.Abstractions.Data;

/// <summary>
/// A labelled data set: the training distribution the teacher was fitted to and the reference
/// the evaluation compares against. Implemented by data plugins ("mixture2d", ...).
/// </summary>
public interface IDataSource
{
    /// <summary>Sample shape and number of classes.</summary>
    DataSpec Spec { get; }

    /// <summary>Draws a training batch.</summary>
    /// <param name="batchSize">Number of samples B, at least 1.</param>
    /// <param name="device">Device of the returned tensors.</param>
    /// <param name="generator">Random generator (null: the device's default generator, the global torch generator on the CPU).
    /// TorchSharp's generators are CPU generators
    /// whatever device they were made for, so draw with it through <see cref="Numerics.RandomDraw"/> (or on the CPU, then
    /// move): <c>randint(…, device: device, generator: generator)</c> fails on a GPU.</param>
    /// <returns><c>X [B, ...S]</c> float32 on <paramref name="device"/> in the data's units (images in <c>[-1, 1]</c>), labels
    /// <c>[B]</c> int64 in <c>0 .. K-1</c> (<c>K</c> = <see cref="DataSpec.NumClasses"/>; <c>K</c> itself is the null label ∅).
    /// Draws use <paramref name="generator"/>, so that the same seed gives the same batches. The host checks trial draws
    /// before a run (its preflight) and names a data source that breaks this.</returns>
    Batch SampleTrain(int batchSize, Device device, Generator? generator = null);

    /// <summary>
    /// Draws evaluation samples, independent of the training batches (a held-out split, or fresh
    /// draws for a synthetic distribution).
    /// </summary>
    /// <param name="count">Number of samples, at least 1.</param>
    /// <param name="device">Device of the returned tensors.</param>
    /// <param name="generator">Random generator (null: the device's default generator); see <see cref="SampleTrain"/>.</param>
    /// <returns>As <see cref="SampleTrain"/>.</returns>
    Batch SampleEvaluation(int count, Device device, Generator? generator = null);

    /// <summary>How many training samples exist, or null when they are drawn fresh without limit.</summary>
    int? TrainSize => null;

    /// <summary>How many evaluation samples exist (the test split's size), or null when they are drawn fresh without limit.</summary>
    int? EvaluationSize => null;
}
