using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Data;

/// <summary>
/// Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images, 28×28 grey, 10 classes, read from IDX
/// files. Samples are <c>[B, 1, 28, 28]</c> scaled to [-1, 1]. Training batches come from the training split only and
/// evaluation samples from the test split only. Images stay as bytes until a batch is drawn, one copy on each device drawn on (55 MB each): a GPU run draws its
/// training batches on the GPU and its seeded evaluation draws on the CPU, and neither moves the data back and forth.
/// The files are read on first use (a count or a batch), not when the source is made: <see cref="Spec"/> is fixed, so a
/// network can be built (to sample from its weights) where the data is not installed. The host's config check touches the
/// counts, so missing or damaged files are still reported before a run starts.
/// </summary>
internal sealed class FashionMnistDataSource : IDataSource, IDisposable
{
    public static readonly string[] ClassNames =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private readonly FashionMnistOptions _options;
    private Tensor? _trainImages;   // [N, 1, 28, 28] uint8
    private Tensor? _trainLabels;   // [N] int64
    private Tensor? _testImages;
    private Tensor? _testLabels;
    /// <summary>The copies on devices other than the CPU, by device type and index.</summary>
    private readonly Dictionary<(DeviceType, int), (Tensor TrainImages, Tensor TrainLabels, Tensor TestImages, Tensor TestLabels)> _onDevice = [];

    public FashionMnistDataSource(FashionMnistOptions options) => _options = options;

    public DataSpec Spec { get; } = new("fashion-mnist", [1, 28, 28], 10) { ClassNames = ClassNames };

    public long TrainCount => Loaded().TrainImages.shape[0];

    public long TestCount => Loaded().TestImages.shape[0];

    /// <summary>The tensors, read from the folder on first use.</summary>
    /// <exception cref="FileNotFoundException">When the folder or one of its files is missing (the message says how to get the data).</exception>
    /// <exception cref="IdxFormatException">When a file is not the Fashion-MNIST IDX file it should be.</exception>
    private (Tensor TrainImages, Tensor TrainLabels, Tensor TestImages, Tensor TestLabels) Loaded()
    {
        if (_trainImages is null || _trainLabels is null || _testImages is null || _testLabels is null)
        {
            string folder = Path.GetFullPath(_options.Folder);
            if (!Directory.Exists(folder))
                throw new FileNotFoundException(
                    $"Fashion-MNIST not found: {folder} does not exist. Install it with `apt-get install dataset-fashion-mnist` " +
                    "(Debian/Ubuntu; files in /usr/share/datasets/fashion-mnist) or set data:options:folder to a folder holding the four IDX files.");
            var (trainImages, trainLabels) = LoadSplit(folder, "train", 60000, _options.TrainSubset);
            try
            {
                (_testImages, _testLabels) = LoadSplit(folder, "t10k", 10000, 0);
            }
            catch
            {
                trainImages.Dispose();
                trainLabels.Dispose();
                throw;
            }
            (_trainImages, _trainLabels) = (trainImages, trainLabels);
        }
        return (_trainImages, _trainLabels!, _testImages!, _testLabels!);
    }

    public int? EvaluationSize => (int)TestCount;

    public int? TrainSize => (int)TrainCount;

    public Batch SampleTrain(int batchSize, Device device, Generator? generator = null)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "the batch size must be ≥ 1.");
        var (images, labels, _, _) = On(device);
        var index = RandomDraw.RandInt(images.shape[0], [batchSize], device, generator);
        return new Batch(ToFloat(images.index_select(0, index)), labels.index_select(0, index));
    }

    public Batch SampleEvaluation(int count, Device device, Generator? generator = null)
    {
        if (count < 1 || count > TestCount)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"the test split has {TestCount} images; ask for 1 to {TestCount}.");
        var (_, _, images, labels) = On(device);
        var index = RandomDraw.RandPerm(TestCount, device, generator).narrow(0, 0, count);
        return new Batch(ToFloat(images.index_select(0, index)), labels.index_select(0, index));
    }

    /// <summary>Frees the images and labels (the host's preflight builds a data source only to check the config).</summary>
    public void Dispose()
    {
        _trainImages?.Dispose();
        _trainLabels?.Dispose();
        _testImages?.Dispose();
        _testLabels?.Dispose();
        _trainImages = _trainLabels = _testImages = _testLabels = null;
        foreach (var copy in _onDevice.Values)
        {
            copy.TrainImages.Dispose();
            copy.TrainLabels.Dispose();
            copy.TestImages.Dispose();
            copy.TestLabels.Dispose();
        }
        _onDevice.Clear();
    }

    /// <summary>Pixels 0..255 to [-1, 1].</summary>
    private static Tensor ToFloat(Tensor bytes) => bytes.to_type(ScalarType.Float32) / 127.5 - 1;

    private (Tensor TrainImages, Tensor TrainLabels, Tensor TestImages, Tensor TestLabels) On(Device device)
    {
        var loaded = Loaded();
        // Device has reference equality: key by type and index, or every batch would copy the dataset again.
        if (device.type == DeviceType.CPU) return loaded;
        var key = (device.type, device.index);
        if (!_onDevice.TryGetValue(key, out var copy))
        {
            copy = (Copy(loaded.TrainImages, device), Copy(loaded.TrainLabels, device), Copy(loaded.TestImages, device), Copy(loaded.TestLabels, device));
            _onDevice[key] = copy;
        }
        return copy;
    }

    private static Tensor Copy(Tensor t, Device device) => t.to(device).DetachFromDisposeScope();

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
