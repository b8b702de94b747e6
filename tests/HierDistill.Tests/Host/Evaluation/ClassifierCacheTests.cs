using HierDistill.Abstractions.Data;
using HierDistill.Host.Configuration;
using HierDistill.Host.Evaluation;
using HierDistill.Host.Training;
using HierDistill.Tests.Support;
using Serilog;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Evaluation;

public class ClassifierCacheTests
{
    /// <summary>
    /// 8×8 images in [-1, 1] whose class is the bright quadrant (0..3) plus noise of std 0.3: separable by construction,
    /// so a trained classifier must be nearly perfect on fresh draws. <c>brightness</c> scales the bright quadrant (other data
    /// under the same name, shape and classes).
    /// </summary>
    private sealed class QuadrantImages(float brightness = 1) : IDataSource
    {
        public DataSpec Spec { get; } = new("quadrants", [1, 8, 8], 4);

        public Batch SampleTrain(int batchSize, Device device, Generator? generator = null) => Draw(batchSize, device, generator);

        public Batch SampleEvaluation(int count, Device device, Generator? generator = null) => Draw(count, device, generator);

        public int? TrainSize => 2048;

        public int? EvaluationSize => 512;

        private Batch Draw(int n, Device device, Generator? generator)
        {
            var labels = randint(0, 4, [n], dtype: ScalarType.Int64, device: device, generator: generator);
            var x = full([n, 1, 8, 8], -1.0f, device: device);
            var rows = (labels / 2).to_type(ScalarType.Int64);
            var cols = (labels % 2).to_type(ScalarType.Int64);
            var r = arange(8, device: device).view(1, 1, 8, 1);
            var c = arange(8, device: device).view(1, 1, 1, 8);
            var inRow = (r / 4).to_type(ScalarType.Int64) == rows.view(-1, 1, 1, 1);
            var inCol = (c / 4).to_type(ScalarType.Int64) == cols.view(-1, 1, 1, 1);
            x = where(inRow & inCol, full_like(x, brightness), x);
            return new Batch(x + 0.3f * randn(x.shape, device: device, generator: generator), labels);
        }
    }

    [Fact]
    public void A_signal_during_the_classifiers_last_step_caches_the_classifier_and_stops_before_the_reference_statistics()
    {
        // The signal arrives once the last training step has begun, after the loop's last stop check: the classifier
        // completes and is cached (a resumed run loads it), and nothing after it runs (no samples-data.png).
        using var folder = TestPaths.NewTempFolder();
        using var scope = NewDisposeScope();
        var data = new QuadrantImages();
        var options = new ClassifierOptions { CacheDir = folder.File("cache"), Epochs = 0.1, BatchSize = 64 };
        using var signal = new CancellationTokenSource();
        var progress = new RecordingProgress((name, done, total) => { if (name == "classifier" && done == total) signal.Cancel(); });
        var config = new EvaluationStageConfig { Samples = 64, Classifier = options };
        using var suite = new ImageSuite(config, data, CPU, new LoggerConfiguration().CreateLogger(), progress, folder.Path, signal.Token);
        var inputs = new SuiteInputs(data.SampleEvaluation(64, CPU), data.SampleEvaluation(64, CPU), _ => throw new InvalidOperationException(), 1, 0);

        Assert.Throws<OperationCanceledException>(() => suite.Prepare(inputs, (_, _, _) => throw new InvalidOperationException()));
        Assert.True(signal.IsCancellationRequested);
        Assert.Single(Directory.GetFiles(options.CacheDir, "classifier-quadrants-*.safetensors"));
        Assert.False(File.Exists(Path.Combine(folder.Path, "samples-data.png")));
    }

    [Fact]
    public void A_trained_classifier_is_accurate_and_its_cached_copy_reproduces_it_bit_for_bit()
    {
        using var folder = TestPaths.NewTempFolder();
        using var scope = NewDisposeScope();
        var data = new QuadrantImages();
        var options = new ClassifierOptions { CacheDir = folder.File("cache"), Epochs = 2, BatchSize = 64, LearningRate = 3e-3 };
        var logger = new LoggerConfiguration().CreateLogger();

        var trained = ClassifierCache.LoadOrTrain(data, options, CPU, logger, new RecordingProgress());
        Assert.False(trained.FromCache);
        Assert.Equal(512, trained.TestSamples);
        Assert.True(trained.TestAccuracy > 0.97, $"test accuracy {trained.TestAccuracy}");

        var loaded = ClassifierCache.LoadOrTrain(data, options, CPU, logger, new RecordingProgress());
        Assert.True(loaded.FromCache);
        Assert.Equal(trained.TestAccuracy, loaded.TestAccuracy);

        // Eval-mode features use batch-norm running statistics: they must have been saved and loaded too.
        var probe = data.SampleEvaluation(100, CPU, new Generator(7)).X;
        var a = trained.Model.Batched(probe, trained.Model.Features);
        var b = loaded.Model.Batched(probe, loaded.Model.Features);
        Assert.True((a == b).all().item<bool>(), "features of the cached classifier differ from the trained one");

        // Other settings are another cache entry, not a silent reuse.
        var other = ClassifierCache.LoadOrTrain(data, new ClassifierOptions { CacheDir = options.CacheDir, Epochs = 0.05, BatchSize = 64 }, CPU, logger, new RecordingProgress());
        Assert.False(other.FromCache);
        Assert.Equal(2, Directory.GetFiles(options.CacheDir, "classifier-quadrants-*.safetensors").Length);
    }

    [Fact]
    public void Other_data_under_the_same_name_shape_and_classes_is_another_cache_entry_not_the_old_classifier()
    {
        // The key was the data's name, shape and classes and the settings: a data set regenerated in the same folder, another
        // training subset or another scaling loaded the old classifier and its old test accuracy, and scored with it silently.
        using var folder = TestPaths.NewTempFolder();
        using var scope = NewDisposeScope();
        var options = new ClassifierOptions { CacheDir = folder.File("cache"), Epochs = 0.05, BatchSize = 64 };
        var logger = new LoggerConfiguration().CreateLogger();
        Assert.False(ClassifierCache.LoadOrTrain(new QuadrantImages(), options, CPU, logger, new RecordingProgress()).FromCache);
        Assert.False(ClassifierCache.LoadOrTrain(new QuadrantImages(brightness: 0.5f), options, CPU, logger, new RecordingProgress()).FromCache);
        Assert.Equal(2, Directory.GetFiles(options.CacheDir, "classifier-quadrants-*.safetensors").Length);
        Assert.True(ClassifierCache.LoadOrTrain(new QuadrantImages(), options, CPU, logger, new RecordingProgress()).FromCache);
        Assert.Equal(ClassifierCache.Fingerprint(new QuadrantImages(), 0), ClassifierCache.Fingerprint(new QuadrantImages(), 0));
        Assert.NotEqual(ClassifierCache.Fingerprint(new QuadrantImages(), 0), ClassifierCache.Fingerprint(new QuadrantImages(0.999f), 0));
    }
}
