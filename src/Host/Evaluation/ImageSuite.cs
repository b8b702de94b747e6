using HierDistill.Host.Storage;
using System.Globalization;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Configuration;
using HierDistill.Host.Reporting;
using HierDistill.Host.Training;
using Serilog;
using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>
/// Image data (method.md §6): Fréchet distance to the test images in the feature space of a classifier trained on
/// the training split (FD-FMNIST for Fashion-MNIST; not Inception FID), class-conditional accuracy of generated
/// samples (the analogue of the paper's CLIP score), and sample grids with one row per class.
/// </summary>
public sealed class ImageSuite(EvaluationStageConfig config, IDataSource data, Device device, ILogger logger, IProgressReporter progress, string folder,
    CancellationToken cancellation = default)
    : IEvaluationSuite
{
    /// <summary>Class-conditional accuracy of generated samples.</summary>
    public const string ClassAccuracy = "class_accuracy";

    private TrainedClassifier? _classifier;
    private GaussianStatistics? _reference;
    private Tensor? _floorX;
    private Tensor? _floorLabels;
    private long _seed;
    private readonly List<string> _pictures = [];

    /// <summary>The FD metric's name: <c>fd_fmnist</c> for Fashion-MNIST, <c>fd_classifier</c> otherwise.</summary>
    public string FdName => data.Spec.Name == "fashion-mnist" ? "fd_fmnist" : "fd_classifier";

    /// <inheritdoc/>
    public string PrimaryMetric => FdName;

    /// <inheritdoc/>
    public IReadOnlyList<string> Notes
    {
        get
        {
            var c = _classifier;
            string label = FdName == "fd_fmnist" ? "FD-FMNIST (`fd_fmnist`)" : "FD (`fd_classifier`)";
            var notes = new List<string>
            {
                $"{label}: Fréchet distance between generated images and {config.Samples} test images in the {ImageClassifier.FeatureDim}-d penultimate " +
                "features of a small CNN classifier trained on the training split. It is **not Inception FID** and not comparable to published FIDs; " +
                "lower is better, and `data` (training images vs test images) is the floor.",
                $"`{ClassAccuracy}`: the classifier's accuracy on generated samples with respect to the labels they were generated for " +
                "(the analogue of the paper's CLIP score); for `data` it is the classifier's accuracy on those images.",
            };
            if (c is not null)
            {
                notes.Add($"classifier: test accuracy {c.TestAccuracy.ToString("P2", CultureInfo.InvariantCulture)} on {c.TestSamples} test images " +
                          $"({(c.FromCache ? "cached" : "trained in this run")}: `{c.Path}`).");
                if (c.TestAccuracy < config.Classifier.MinAccuracy)
                    notes.Add($"**warning**: the classifier's test accuracy is below {config.Classifier.MinAccuracy.ToString("P0", CultureInfo.InvariantCulture)}; " +
                              "FD and class accuracy are unreliable (train it longer: stages:<evaluation>:classifier:epochs).");
            }
            if (_pictures.Count > 0)
            {
                var names = data.Spec.ClassNames;
                string rows = string.Join(", ", Enumerable.Range(0, data.Spec.NumClasses)
                    .Select(k => names is not null && k < names.Count ? $"{k} {names[k]}" : $"{k}"));
                notes.Add($"sample grids (`samples-*.png`): one row per class, top to bottom {rows}; {config.GridColumns} images per row. " +
                          "Every model's grid starts from the same noise, so a column shows the models on the same noise (`samples-data.png`: " +
                          "test images).");
            }
            return notes;
        }
    }

    /// <inheritdoc/>
    public void Prepare(SuiteInputs inputs, Func<Tensor, Tensor, Sampler, Tensor> sample)
    {
        _seed = inputs.Seed;
        _classifier = ClassifierCache.LoadOrTrain(data, config.Classifier, device, logger, progress, cancellation);
        // A signal during the classifier's last steps or its test pass: the classifier is cached, the rest is not started.
        cancellation.ThrowIfCancellationRequested();
        if (_classifier.TestAccuracy < config.Classifier.MinAccuracy)
            logger.Warning("The evaluation classifier's test accuracy {Accuracy:P2} is below {Min:P0}; FD and class accuracy are unreliable",
                _classifier.TestAccuracy, config.Classifier.MinAccuracy);
        using var scope = NewDisposeScope();
        var model = _classifier.Model;
        _reference = GaussianStatistics.Of(model.Batched(inputs.Reference.X, model.Features));
        _reference = new GaussianStatistics(_reference.Mean.DetachFromDisposeScope(), _reference.Covariance.DetachFromDisposeScope());
        _floorX = inputs.Floor.X.detach().clone().DetachFromDisposeScope();
        _floorLabels = inputs.Floor.Labels.detach().clone().DetachFromDisposeScope();
        var grid = Path.Combine(folder, RunFolder.DataFigure);
        ImageGrid.Save(ClassRows(inputs.Reference.X, inputs.Reference.Labels), config.GridColumns, grid);
        _pictures.Add(Path.GetFileName(grid));
    }

    /// <inheritdoc/>
    public Dictionary<string, double> Metrics(Tensor samples, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var model = _classifier!.Model;
        var features = model.Batched(samples, model.Features);
        using var stats = GaussianStatistics.Of(features);
        var predicted = model.Batched(samples, model.Logits).argmax(1);
        double accuracy = (predicted == labels.to(predicted.device)).to_type(ScalarType.Float64).mean().item<double>();
        return new Dictionary<string, double> { [FdName] = FrechetDistance.Compute(stats, _reference!), [ClassAccuracy] = accuracy };
    }

    /// <inheritdoc/>
    public Dictionary<string, double> Floor() => Metrics(_floorX!, _floorLabels!);

    /// <inheritdoc/>
    public void AddPicture(string title, string fileStem, Tensor samples, Tensor labels, Sampler? sampler)
    {
        if (sampler is null) return;
        using var scope = NewDisposeScope();
        int columns = config.GridColumns, classes = data.Spec.NumClasses;
        var gridLabels = arange(classes, dtype: ScalarType.Int64, device: device).repeat_interleave(columns);        // [K columns]
        var noise = SeededDraws.Noise(data.Spec.BatchShape(gridLabels.shape[0]), _seed + 7, device);
        var images = sampler.Sample(noise, gridLabels);
        string path = Path.Combine(folder, $"{fileStem}.png");
        ImageGrid.Save(images, columns, path);
        _pictures.Add(Path.GetFileName(path));
    }

    /// <inheritdoc/>
    public IReadOnlyList<string> WritePictures(string folder, IReadOnlyList<MetricPoint> history)
    {
        Plots.Losses(Path.Combine(folder, RunFolder.LossesFigure), history);
        return [.. _pictures, RunFolder.LossesFigure];
    }

    /// <summary>The first <c>GridColumns</c> images of each class, class by class (rows of the grid).</summary>
    private Tensor ClassRows(Tensor x, Tensor labels)
    {
        var rows = new List<Tensor>();
        for (int c = 0; c < data.Spec.NumClasses; c++)
        {
            var index = (labels == c).nonzero().flatten();
            var take = index.narrow(0, 0, Math.Min(config.GridColumns, index.shape[0]));
            var images = x.index_select(0, take);
            if (images.shape[0] < config.GridColumns)
                images = cat([images, ones(new long[] { config.GridColumns - images.shape[0] }.Concat(data.Spec.SampleShape).ToArray(), device: x.device)]);
            rows.Add(images);
        }
        return cat(rows);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _reference?.Dispose();
        _floorX?.Dispose();
        _floorLabels?.Dispose();
        _classifier?.Model.Dispose();
    }
}
