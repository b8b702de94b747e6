using HierDistill.Abstractions.Data;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Data;

/// <summary>
/// Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images, 28×28 grey, 10 classes, read from IDX
/// files. Samples are <c>[B, 1, 28, 28]</c> scaled to [-1, 1]. Training batches come from the training split only and
/// evaluation samples from the test split only. Images stay as bytes (on the device of first use) until a batch is drawn.
/// </summary>
internal sealed class FashionMnistDataSource : IDataSource, IDisposable
{
    public static readonly string[] ClassNames =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private Tensor _trainImages;   // [N, 1, 28, 28] uint8
    private Tensor _trainLabels;   // [N] int64
    private Tensor _testImages;
    private Tensor _testLabels;

    public FashionMnistDataSource(FashionMnistOptions options)
    {
        string folder = Path.GetFullPath(options.Folder);
        if (!Directory.Exists(folder))
            throw new FileNotFoundException(
                $"Fashion-MNIST not found: {folder} does not exist. Install it with `apt-get install dataset-fashion-mnist` " +
                "(Debian/Ubuntu; files in /usr/share/datasets/fashion-mnist) or set data:options:folder to a folder holding the four IDX files.");
        (_trainImages, _trainLabels) = LoadSplit(folder, "train", 60000, options.TrainSubset);
        (_testImages, _testLabels) = LoadSplit(folder, "t10k", 10000, 0);
        Spec = new DataSpec("fashion-mnist", [1, 28, 28], 10) { ClassNames = ClassNames };
    }

    public DataSpec Spec { get; }

    public long TrainCount => _trainImages.shape[0];

    public long TestCount => _testImages.shape[0];

    public int? EvaluationSize => (int)TestCount;

    public int? TrainSize => (int)TrainCount;

    public Batch SampleTrain(int batchSize, Device device, Generator? generator = null)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "the batch size must be ≥ 1.");
        MoveTo(device);
        var index = randint(0, TrainCount, [batchSize], device: device, generator: generator);
        return new Batch(ToFloat(_trainImages.index_select(0, index)), _trainLabels.index_select(0, index));
    }

    public Batch SampleEvaluation(int count, Device device, Generator? generator = null)
    {
        if (count < 1 || count > TestCount)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"the test split has {TestCount} images; ask for 1 to {TestCount}.");
        MoveTo(device);
        var index = randperm(TestCount, device: device, generator: generator).narrow(0, 0, count);
        return new Batch(ToFloat(_testImages.index_select(0, index)), _testLabels.index_select(0, index));
    }

    /// <summary>Frees the images and labels (the host's preflight builds a data source only to check the config).</summary>
    public void Dispose()
    {
        _trainImages.Dispose();
        _trainLabels.Dispose();
        _testImages.Dispose();
        _testLabels.Dispose();
    }

    /// <summary>Pixels 0..255 to [-1, 1].</summary>
    private static Tensor ToFloat(Tensor bytes) => bytes.to_type(ScalarType.Float32) / 127.5 - 1;

    private void MoveTo(Device device)
    {
        // Device has reference equality: compare type and index, or every batch would re-"move" the dataset.
        if (_trainImages.device.type == device.type && _trainImages.device.index == device.index) return;
        _trainImages = Replace(_trainImages, device);
        _trainLabels = Replace(_trainLabels, device);
        _testImages = Replace(_testImages, device);
        _testLabels = Replace(_testLabels, device);
    }

    private static Tensor Replace(Tensor t, Device device)
    {
        var moved = t.to(device).DetachFromDisposeScope();
        t.Dispose();
        return moved;
    }

    private static (Tensor Images, Tensor Labels) LoadSplit(string folder, string prefix, int expected, int subset)
    {
        var images = IdxFile.Read(Find(folder, $"{prefix}-images-idx3-ubyte"));
        var labels = IdxFile.Read(Find(folder, $"{prefix}-labels-idx1-ubyte"));
        string imagesName = $"{prefix}-images-idx3-ubyte", labelsName = $"{prefix}-labels-idx1-ubyte";
        if (images.Dimensions.Length != 3 || images.Dimensions[1] != 28 || images.Dimensions[2] != 28)
            throw new IdxFormatException($"{Path.Combine(folder, imagesName)}: images must be [N, 28, 28], the header says [{string.Join(", ", images.Dimensions)}].");
        if (labels.Dimensions.Length != 1)
            throw new IdxFormatException($"{Path.Combine(folder, labelsName)}: labels must be one-dimensional, the header says [{string.Join(", ", labels.Dimensions)}].");
        if (images.Count != labels.Count)
            throw new IdxFormatException($"{folder}: {images.Count} {prefix} images but {labels.Count} labels.");
        if (images.Count != expected)
            throw new IdxFormatException($"{folder}: {images.Count} {prefix} images; Fashion-MNIST has {expected}.");
        int bad = Array.FindIndex(labels.Data, l => l > 9);
        if (bad >= 0)
            throw new IdxFormatException($"{Path.Combine(folder, labelsName)}: label {labels.Data[bad]} at index {bad}; Fashion-MNIST labels are 0 to 9.");
        int n = subset > 0 ? Math.Min(subset, (int)images.Count) : (int)images.Count;
        var x = tensor(images.Data.AsSpan(0, n * 28 * 28).ToArray(), [n, 1, 28, 28], ScalarType.Byte).DetachFromDisposeScope();
        var y = tensor(labels.Data.AsSpan(0, n).ToArray().Select(b => (long)b).ToArray(), [n]).DetachFromDisposeScope();
        return (x, y);
    }

    private static string Find(string folder, string name)
    {
        foreach (var candidate in new[] { Path.Combine(folder, name), Path.Combine(folder, name + ".gz") })
            if (File.Exists(candidate)) return candidate;
        throw new FileNotFoundException(
            $"Fashion-MNIST file {name} (or {name}.gz) is missing in {folder}. Install the data with `apt-get install dataset-fashion-mnist` " +
            "or set data:options:folder to a folder holding the four IDX files.", Path.Combine(folder, name));
    }
}
