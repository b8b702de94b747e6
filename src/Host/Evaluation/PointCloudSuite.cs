using HierDistill.Host.Storage;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Configuration;
using HierDistill.Host.Reporting;
using HierDistill.Host.Training;
using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>
/// Low-dimensional data (method.md §6, toy 2-D): sliced W2 and MMD² against fresh data and against reference teacher
/// samples (max NFE, other noise), mode coverage and per-mode mass for a known mixture, scatter plots.
/// </summary>
public sealed class PointCloudSuite(EvaluationStageConfig config, GaussianMixture? mixture) : IEvaluationSuite
{
    private Tensor? _reference;
    private Tensor? _floor;
    private Tensor? _teacherReference;
    private MmdReference? _mmdData;
    private MmdReference? _mmdTeacher;
    private long _seed;
    private readonly List<PlotSamples> _plots = [];

    /// <inheritdoc/>
    public string PrimaryMetric => EvaluationStage.Names.Sw2Data;

    /// <inheritdoc/>
    public IReadOnlyList<string> Notes =>
    [
        "distances: sliced W2 (`sw2`, lower is better) and MMD² with Gaussian kernels (`mmd2`), each against fresh data and against " +
        "reference teacher samples (max NFE, other noise). Models are generated for the labels of `data`, a second fresh data set of the " +
        "same size: its row is what a perfect sampler scores. It is not a strict lower bound: with finite samples, a model that puts a " +
        "little mass between modes can score a lower sliced W2 than data itself.",
    ];

    /// <inheritdoc/>
    public void Prepare(SuiteInputs inputs, Func<Tensor, Tensor, Sampler, Tensor> sample)
    {
        _seed = inputs.Seed;
        _reference = inputs.Reference.X.detach().clone().DetachFromDisposeScope();
        _floor = inputs.Floor.X.detach().clone().DetachFromDisposeScope();
        using var scope = NewDisposeScope();
        var noise = SeededDraws.Noise(inputs.Floor.X.shape, inputs.Seed + 4, inputs.Floor.X.device);
        // The teacher reference uses the reference set's labels and its own noise (the models use the floor set's labels).
        _teacherReference = sample(noise, inputs.Reference.Labels, inputs.TeacherSampler(inputs.MaxTeacherNfe)).DetachFromDisposeScope();
        double median = SampleMetrics.MedianDistance(_reference);
        double[] bandwidths = [0.03 * median, 0.1 * median, 0.3 * median, median];
        _mmdData = new MmdReference(_reference, bandwidths);
        _mmdTeacher = new MmdReference(_teacherReference, bandwidths);
        _plots.Add(new PlotSamples("data", _reference.cpu().DetachFromDisposeScope(), inputs.Reference.Labels.cpu().DetachFromDisposeScope()));
    }

    /// <inheritdoc/>
    public Dictionary<string, double> Metrics(Tensor samples, Tensor labels)
    {
        var m = new Dictionary<string, double>
        {
            [EvaluationStage.Names.Sw2Data] = SampleMetrics.SlicedWasserstein2(samples, _reference!, config.Projections, _seed + 5),
            [EvaluationStage.Names.Sw2Teacher] = SampleMetrics.SlicedWasserstein2(samples, _teacherReference!, config.Projections, _seed + 5),
            [EvaluationStage.Names.Mmd2Data] = _mmdData!.Distance(samples),
            [EvaluationStage.Names.Mmd2Teacher] = _mmdTeacher!.Distance(samples),
        };
        if (mixture is not null && samples.ndim == 2 && samples.shape[1] == mixture.Dimension)
        {
            var modes = SampleMetrics.Modes(samples, mixture);
            m[EvaluationStage.Names.ModesCovered] = modes.Covered;
            m[EvaluationStage.Names.ModesTotal] = modes.Total;
            m[EvaluationStage.Names.HighQuality] = modes.HighQualityFraction;
            m[EvaluationStage.Names.ModeMassTv] = modes.MassTotalVariation;
            for (int k = 0; k < modes.Mass.Count; k++) m[$"{EvaluationStage.Names.ModeMass}_{k}"] = modes.Mass[k];
        }
        return m;
    }

    /// <inheritdoc/>
    public Dictionary<string, double> Floor() => Metrics(_floor!, zeros(_floor!.shape[0], ScalarType.Int64));

    /// <inheritdoc/>
    public void AddPicture(string title, string fileStem, Tensor samples, Tensor labels, Sampler? sampler) =>
        _plots.Add(new PlotSamples(title, samples.cpu().DetachFromDisposeScope(), labels.cpu().DetachFromDisposeScope()));

    /// <inheritdoc/>
    public IReadOnlyList<string> WritePictures(string folder, IReadOnlyList<MetricPoint> history)
    {
        Plots.Write(folder, _plots, history, mixture);
        return File.Exists(Path.Combine(folder, RunFolder.SamplesFigure)) ? [RunFolder.SamplesFigure, RunFolder.LossesFigure] : [RunFolder.LossesFigure];
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _reference?.Dispose();
        _floor?.Dispose();
        _teacherReference?.Dispose();
        _mmdData?.Dispose();
        _mmdTeacher?.Dispose();
        foreach (var p in _plots)
        {
            p.Samples.Dispose();
            p.Labels.Dispose();
        }
        _plots.Clear();
    }
}
