using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Training;
using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>What a suite needs to prepare: the reference data, a floor set, and the teacher's sampler.</summary>
/// <param name="Reference">Evaluation data (test split or fresh draws), the reference of every distance.</param>
/// <param name="Floor">A second data set of the same size, compared with <paramref name="Reference"/> for the noise floor.</param>
/// <param name="TeacherSampler">Creates the (guided) teacher sampler at a given NFE.</param>
/// <param name="MaxTeacherNfe">The largest NFE of the teacher grid.</param>
/// <param name="Seed">Evaluation seed.</param>
public sealed record SuiteInputs(Batch Reference, Batch Floor, Func<int, Sampler> TeacherSampler, int MaxTeacherNfe, long Seed);

/// <summary>
/// The metrics and pictures of one kind of data. <see cref="PointCloudSuite"/>: sliced W2, MMD², mode statistics and
/// scatter plots for low-dimensional data; <see cref="ImageSuite"/>: FD-FMNIST, class-conditional accuracy and sample grids.
/// </summary>
public interface IEvaluationSuite : IDisposable
{
    /// <summary>Computes what is shared by all models (reference statistics, teacher reference samples, a classifier).</summary>
    void Prepare(SuiteInputs inputs, Func<Tensor, Tensor, Sampler, Tensor> sample);

    /// <summary>Metrics of generated samples <c>[N, ...S]</c> made for <paramref name="labels"/> <c>[N]</c>.</summary>
    Dictionary<string, double> Metrics(Tensor samples, Tensor labels);

    /// <summary>The data-vs-data floor (the floor set against the reference).</summary>
    Dictionary<string, double> Floor();

    /// <summary>Records a model's pictures (scatter points, or a sample grid drawn with <paramref name="sampler"/>).</summary>
    void AddPicture(string title, string fileStem, Tensor samples, Tensor labels, Sampler? sampler);

    /// <summary>Writes the pictures and the loss curves into <paramref name="folder"/>; returns the files written (relative names).</summary>
    IReadOnlyList<string> WritePictures(string folder, IReadOnlyList<MetricPoint> history);

    /// <summary>The metric used to rank models in the summary (lower is better).</summary>
    string PrimaryMetric { get; }

    /// <summary>Lines for the report explaining the metrics (e.g. that FD-FMNIST is not Inception FID).</summary>
    IReadOnlyList<string> Notes { get; }
}
