using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Host.Configuration;
using HierDistill.Host.Runtime;
using HierDistill.Host.Storage;
using HierDistill.Host.Training;
using Serilog;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>
/// A small CNN classifier for the evaluation of image generators: three 3×3 convolutions with batch normalisation (the
/// first two followed by max pooling), a 128-unit hidden layer (the feature space of FD) and a linear head. Trained on the data's training
/// split only, with Adam and a cosine learning-rate decay to zero.
/// </summary>
public sealed class ImageClassifier : nn.Module
{
    /// <summary>Bump when the architecture or training changes, so cached weights are not reused.</summary>
    public const string Version = "cnn-v3";

    /// <summary>Width of the penultimate features.</summary>
    public const int FeatureDim = 128;

    private readonly Conv2d conv1;
    private readonly Conv2d conv2;
    private readonly Conv2d conv3;
    private readonly BatchNorm2d bn1;
    private readonly BatchNorm2d bn2;
    private readonly BatchNorm2d bn3;
    private readonly Linear fc1;
    private readonly Linear head;

    /// <summary>Creates the network for images <c>[C, H, W]</c> (H and W divisible by 4) and <paramref name="classes"/> classes.</summary>
    public ImageClassifier(long[] sampleShape, int classes) : base("classifier")
    {
        if (sampleShape.Length != 3 || sampleShape[1] % 4 != 0 || sampleShape[2] % 4 != 0)
            throw new ArgumentException($"the evaluation classifier needs images [C, H, W] with H and W divisible by 4, got [{string.Join(", ", sampleShape)}].");
        conv1 = nn.Conv2d(sampleShape[0], 32, 3, padding: 1);
        conv2 = nn.Conv2d(32, 64, 3, padding: 1);
        conv3 = nn.Conv2d(64, 64, 3, padding: 1);
        bn1 = nn.BatchNorm2d(32);
        bn2 = nn.BatchNorm2d(64);
        bn3 = nn.BatchNorm2d(64);
        fc1 = nn.Linear(64 * (sampleShape[1] / 4) * (sampleShape[2] / 4), FeatureDim);
        head = nn.Linear(FeatureDim, classes);
        RegisterComponents();
    }

    /// <summary>Penultimate features <c>[B, 128]</c> of images <c>[B, C, H, W]</c> in [-1, 1].</summary>
    public Tensor Features(Tensor x)
    {
        var h = nn.functional.max_pool2d(nn.functional.relu(bn1.forward(conv1.forward(x))), 2);  // [B, 32, H/2, W/2]
        h = nn.functional.max_pool2d(nn.functional.relu(bn2.forward(conv2.forward(h))), 2);      // [B, 64, H/4, W/4]
        h = nn.functional.relu(bn3.forward(conv3.forward(h)));                                     // [B, 64, H/4, W/4]
        return nn.functional.relu(fc1.forward(h.flatten(1)));                        // [B, 128]
    }

    /// <summary>Class logits <c>[B, K]</c>.</summary>
    public Tensor Logits(Tensor x) => head.forward(Features(x));

    /// <summary>Applies <paramref name="f"/> in batches without gradients and concatenates the results (eval mode).</summary>
    public Tensor Batched(Tensor x, Func<Tensor, Tensor> f, int batchSize = 1000)
    {
        eval();
        using var _ = no_grad();
        var parts = new List<Tensor>();
        for (long i = 0; i < x.shape[0]; i += batchSize)
            parts.Add(f(x.narrow(0, i, Math.Min(batchSize, x.shape[0] - i))));
        return cat(parts);
    }
}

/// <summary>A trained evaluation classifier with its measured test accuracy.</summary>
/// <param name="Model">The classifier, frozen.</param>
/// <param name="TestAccuracy">Accuracy on the data's test split.</param>
/// <param name="TestSamples">Test images it was measured on.</param>
/// <param name="Path">Where its weights are cached.</param>
/// <param name="FromCache">Whether it was loaded rather than trained.</param>
public sealed record TrainedClassifier(ImageClassifier Model, double TestAccuracy, int TestSamples, string Path, bool FromCache);

/// <summary>
/// Trains the evaluation classifier once per data set and settings and caches it (weights as safetensors plus a JSON
/// file with the test accuracy) under <c>classifier.cacheDir</c>, so runs and ablations share it.
/// </summary>
public static class ClassifierCache
{
    /// <summary>
    /// Loads the cached classifier for these settings or trains and caches one. The CPU random stream of the run is the
    /// same afterwards either way (training reseeds it; the state is restored), so a cache hit or miss cannot change the
    /// stages that follow (nor a resumed run's). On CUDA, whose generator state TorchSharp 0.107 cannot save, the CUDA
    /// generators are reseeded afterwards from the restored CPU state, the same either way.
    /// </summary>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellation"/> is cancelled during training (nothing is cached).</exception>
    public static TrainedClassifier LoadOrTrain(IDataSource data, ClassifierOptions options, Device device, ILogger logger, IProgressReporter progress,
        CancellationToken cancellation = default)
    {
        using var saved = random.get_rng_state();
        try
        {
            return LoadOrTrainCore(data, options, device, logger, progress, cancellation);
        }
        finally
        {
            random.set_rng_state(saved);
            if (cuda.is_available()) cuda.manual_seed_all(SeedOf(saved));
        }
    }

    /// <summary>A seed (0 .. long.MaxValue) from a generator state: the first 8 bytes of its SHA-256.</summary>
    private static long SeedOf(Tensor state) =>
        BitConverter.ToInt64(SHA256.HashData(state.data<byte>().ToArray()), 0) & long.MaxValue;

    private static TrainedClassifier LoadOrTrainCore(IDataSource data, ClassifierOptions options, Device device, ILogger logger, IProgressReporter progress,
        CancellationToken cancellation)
    {
        var spec = data.Spec;
        string key = $"{ImageClassifier.Version}|{spec.Name}|{string.Join("x", spec.SampleShape)}|{spec.NumClasses}|e{options.Epochs}|b{options.BatchSize}|" +
                     $"lr{options.LearningRate}|s{options.Seed}|data{Fingerprint(data, options.Seed)}";
        string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..12].ToLowerInvariant();
        string stem = Path.Combine(Path.GetFullPath(options.CacheDir), $"classifier-{Sanitize(spec.Name)}-{hash}");
        string weights = stem + ".safetensors", info = stem + ".json";
        var model = new ImageClassifier(spec.SampleShape, spec.NumClasses);
        model.to(device);
        if (File.Exists(weights) && File.Exists(info))
        {
            try
            {
                WeightsFile.Load(model, weights);
                using var doc = JsonDocument.Parse(File.ReadAllText(info));
                double accuracy = doc.RootElement.GetProperty("test_accuracy").GetDouble();
                int samples = doc.RootElement.GetProperty("test_samples").GetInt32();
                logger.Information("Evaluation classifier loaded from {Path} (test accuracy {Accuracy:P2})", weights, accuracy);
                return new TrainedClassifier(model.Freeze(), accuracy, samples, weights, true);
            }
            catch (Exception e) when (e is WeightsMismatchException or JsonException or KeyNotFoundException or IOException)
            {
                logger.Warning("Cached evaluation classifier {Path} is unusable ({Message}); training a new one", weights, e.Message);
            }
        }

        long steps = (long)Math.Ceiling(options.Epochs * (data.TrainSize ?? 60000) / options.BatchSize);
        logger.Information("Training the evaluation classifier ({Steps} steps of {Batch}); cached as {Path}", steps, options.BatchSize, weights);
        TorchRuntime.ManualSeed(options.Seed);
        model.train();
        using (var optimizer = optim.Adam(model.parameters(), options.LearningRate))
        using (var task = progress.Start("classifier", steps))
        {
            var schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, steps);
            for (long i = 0; i < steps; i++)
            {
                // Ctrl-C stops here too (nothing is cached: the weights are written only when training completes).
                task.StopIfCancelled(i, cancellation);
                using var scope = NewDisposeScope();
                var batch = data.SampleTrain(options.BatchSize, device);
                var loss = nn.functional.cross_entropy(model.Logits(batch.X), batch.Labels);
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                schedule.step();
                if (i % 100 == 0 || i == steps - 1) task.Report(i + 1, $"loss={loss.item<float>():0.0000}");
            }
        }
        model.Freeze();
        int testSamples = data.EvaluationSize ?? 10000;
        double testAccuracy;
        using (var scope = NewDisposeScope())
        {
            var test = SeededDraws.Evaluation(data, testSamples, options.Seed + 1, device);
            var predicted = model.Batched(test.X, model.Logits).argmax(1);
            testAccuracy = (predicted == test.Labels).to_type(ScalarType.Float64).mean().item<double>();
        }
        Directory.CreateDirectory(Path.GetDirectoryName(weights)!);
        WeightsFile.Save(model, weights);
        AtomicFile.WriteAllText(info, JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["key"] = key,
            ["test_accuracy"] = testAccuracy,
            ["test_samples"] = testSamples,
            ["steps"] = steps,
        }, new JsonSerializerOptions { WriteIndented = true }));
        logger.Information("Evaluation classifier: test accuracy {Accuracy:P2} on {Samples} test images", testAccuracy, testSamples);
        return new TrainedClassifier(model, testAccuracy, testSamples, weights, false);
    }

    /// <summary>
    /// SHA-256 (hex, 16 digits) of the data the classifier is trained and measured on, as the data source gives it now: a fixed
    /// draw of up to 4096 training samples and of up to 10,000 evaluation samples (fewer for large samples: about 16 M values
    /// in all), values and labels, drawn on the CPU with their own generators after reseeding the global one (a source that
    /// draws from the global stream instead gives the same draws too; the caller restores the stream). So a cached
    /// classifier is used only for the same data: other files in the same folder, another training subset, or another
    /// scaling of the same files (the data's name, shape and classes alike) train a new one instead of scoring with one that
    /// was measured on other data. Reads about 45 MB for Fashion-MNIST (about 0.1 s); a data source with a random stream of
    /// its own gets a new classifier each run.
    /// </summary>
    internal static string Fingerprint(IDataSource data, long seed)
    {
        using var scope = NewDisposeScope();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long cap = Math.Max(1, (16L << 20) / Math.Max(1, data.Spec.SampleSize));
        void Add(Batch batch)
        {
            hash.AppendData(MemoryMarshal.AsBytes(batch.X.to_type(ScalarType.Float32).cpu().contiguous().data<float>().ToArray().AsSpan()));
            hash.AppendData(MemoryMarshal.AsBytes(batch.Labels.to_type(ScalarType.Int64).cpu().contiguous().data<long>().ToArray().AsSpan()));
        }
        // At least one sample each; the training draw takes up to a third of the cap, the evaluation draw the rest.
        long train = Math.Max(1, Math.Min(Math.Min(4096, cap / 3), data.TrainSize ?? 4096));
        long evaluation = Math.Max(1, Math.Min(Math.Min(10000, cap - train), data.EvaluationSize ?? 10000));
        TorchRuntime.ManualSeed(seed + 11);
        Add(data.SampleTrain((int)train, CPU, SeededDraws.Generator(seed + 11)));
        Add(data.SampleEvaluation((int)evaluation, CPU, SeededDraws.Generator(seed + 12)));
        return Convert.ToHexString(hash.GetHashAndReset())[..16].ToLowerInvariant();
    }

    private static string Sanitize(string name) => new(name.Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray());
}
