using System.IO.Compression;
using HierDistill.Abstractions.Data;
using HierDistill.Plugins.Data;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Plugins.Data;

public class IdxFileTests
{
    private const string Folder = "/usr/share/datasets/fashion-mnist";

    [Fact]
    public void Real_fashion_mnist_files_have_their_documented_shapes()
    {
        var images = IdxFile.Read(Path.Combine(Folder, "t10k-images-idx3-ubyte.gz"));
        var labels = IdxFile.Read(Path.Combine(Folder, "t10k-labels-idx1-ubyte.gz"));
        Assert.Equal([10000, 28, 28], images.Dimensions);
        Assert.Equal([10000], labels.Dimensions);
        Assert.Equal(10000 * 28 * 28, images.Data.Length);
        // 1,000 test images per class (Xiao et al. 2017).
        Assert.All(Enumerable.Range(0, 10), c => Assert.Equal(1000, labels.Data.Count(l => l == c)));
    }

    [Fact]
    public void Raw_and_gzip_files_read_the_same()
    {
        using var folder = TestPaths.NewTempFolder();
        var raw = Decompress(Path.Combine(Folder, "t10k-labels-idx1-ubyte.gz"));
        File.WriteAllBytes(folder.File("labels"), raw);
        Assert.Equal(IdxFile.Read(Path.Combine(Folder, "t10k-labels-idx1-ubyte.gz")).Data, IdxFile.Read(folder.File("labels")).Data);
    }

    [Fact]
    public void A_truncated_file_names_the_file_and_both_sizes()
    {
        using var folder = TestPaths.NewTempFolder();
        var raw = Decompress(Path.Combine(Folder, "t10k-labels-idx1-ubyte.gz"));
        File.WriteAllBytes(folder.File("cut"), raw[..5000]);
        var e = Assert.Throws<IdxFormatException>(() => IdxFile.Read(folder.File("cut")));
        Assert.Equal($"{folder.File("cut")}: the header declares [10000] = 10000 values (10008 bytes with the header), but the file has 5000 bytes (truncated).", e.Message);
    }

    [Fact]
    public void A_truncated_gzip_stream_and_a_bad_magic_number_are_reported()
    {
        using var folder = TestPaths.NewTempFolder();
        var gz = File.ReadAllBytes(Path.Combine(Folder, "t10k-labels-idx1-ubyte.gz"));
        File.WriteAllBytes(folder.File("cut.gz"), gz[..(gz.Length / 2)]);
        var e = Assert.ThrowsAny<IdxFormatException>(() => IdxFile.Read(folder.File("cut.gz")));
        Assert.StartsWith(folder.File("cut.gz") + ":", e.Message);

        File.WriteAllBytes(folder.File("png"), [0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 1, 2]);
        var bad = Assert.Throws<IdxFormatException>(() => IdxFile.Read(folder.File("png")));
        Assert.Equal($"{folder.File("png")}: bad magic number 0x89504e47 (an IDX file starts with 00 00); not an IDX file.", bad.Message);
    }

    private static byte[] Decompress(string path)
    {
        using var input = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var output = new MemoryStream();
        input.CopyTo(output);
        return output.ToArray();
    }
}

public class FashionMnistDataSourceTests
{
    [Fact]
    public void Batches_are_images_in_minus_one_to_one_from_the_right_split()
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        var data = new FashionMnistDataSource(new FashionMnistOptions());
        Assert.Equal(60000, data.TrainSize);
        Assert.Equal(10000, data.EvaluationSize);
        var batch = data.SampleTrain(16, TorchSharp.torch.CPU);
        Assert.Equal(new long[] { 16, 1, 28, 28 }, batch.X.shape);
        Assert.True(batch.X.min().item<float>() >= -1 && batch.X.max().item<float>() <= 1);
        Assert.Equal(-1f, batch.X.min().item<float>()); // background pixels are 0 -> -1
        var test = data.SampleEvaluation(10000, TorchSharp.torch.CPU, new TorchSharp.torch.Generator(1));
        // all 10,000 test images, each once: 1,000 per class
        Assert.All(Enumerable.Range(0, 10), c => Assert.Equal(1000, (test.Labels == c).sum().item<long>()));
    }

    [Fact]
    public void A_missing_folder_says_how_to_get_the_data_when_the_data_is_first_used()
    {
        // Made without the files: the shape is known (a network can be built to sample from its weights).
        using var data = new FashionMnistDataSource(new FashionMnistOptions { Folder = "/nonexistent/fmnist" });
        Assert.Equal(new DataSpec("fashion-mnist", [1, 28, 28], 10), data.Spec);
        var e = Assert.Throws<FileNotFoundException>(() => data.TrainSize);
        Assert.Contains("apt-get install dataset-fashion-mnist", e.Message);
        Assert.Contains("data:options:folder", e.Message);
        Assert.Throws<FileNotFoundException>(() => data.SampleTrain(4, TorchSharp.torch.CPU));
        // The config check reads the counts: a missing folder is a config error before anything runs.
        var writer = new StringWriter();
        var app = new HierDistill.Host.HostApplication(HierDistill.Tests.Host.Pipeline.SampleRunTests.TestConsole(writer));
        Assert.Equal(HierDistill.Host.ExitCodes.InvalidConfig, app.Validate(TestPaths.Sample("fmnist/hd-cpu.json"),
            ["data:options:folder=/nonexistent/fmnist", "stages:teacher:teacher:options:preset=DiT-XT/4"]));
        Assert.Contains("data: 'fashion-mnist' cannot read its data: Fashion-MNIST not found: /nonexistent/fmnist does not exist.", writer.ToString());
    }

    [Fact]
    public void A_corrupt_file_in_the_folder_is_named()
    {
        using var folder = TestPaths.NewTempFolder();
        foreach (var f in Directory.GetFiles("/usr/share/datasets/fashion-mnist")) File.Copy(f, folder.File(Path.GetFileName(f)));
        File.WriteAllBytes(folder.File("train-labels-idx1-ubyte.gz"), [1, 2, 3]);
        using var data = new FashionMnistDataSource(new FashionMnistOptions { Folder = folder.Path });
        var e = Assert.Throws<IdxFormatException>(() => data.EvaluationSize);
        Assert.StartsWith(folder.File("train-labels-idx1-ubyte.gz") + ":", e.Message);
    }
}
