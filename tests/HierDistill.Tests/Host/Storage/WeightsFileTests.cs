using HierDistill.Abstractions.Data;
using HierDistill.Host.Storage;
using HierDistill.Plugins.Teachers.Networks;
using HierDistill.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Storage;

public class WeightsFileTests
{
    private static readonly DataSpec Spec = new("test", [2], 2);

    private static MlpVelocityNetwork Network(int hidden)
    {
        var net = new MlpVelocityNetwork(new MlpOptions { Hidden = hidden, Depth = 2, EmbeddingDim = 16, FrequencyDim = 8, TokenChannels = 8 }, Spec);
        using (no_grad()) foreach (var p in net.parameters()) p.add_(randn_like(p) * 0.1);
        return net;
    }

    [Fact]
    public void Saved_weights_load_back_bit_for_bit_into_a_fresh_module()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        manual_seed(1);
        var a = Network(32);
        WeightsFile.Save(a, folder.File("w.safetensors"));
        manual_seed(2);
        var b = Network(32);
        WeightsFile.Load(b, folder.File("w.safetensors"));
        var z = randn(4, 2);
        var t = rand(4);
        var c = zeros(4, ScalarType.Int64);
        Assert.Equal(a.Velocity(z, t, c).data<float>().ToArray(), b.Velocity(z, t, c).data<float>().ToArray());
        Assert.Empty(Directory.GetFiles(folder.Path, "*.tmp")); // written through a temporary file, renamed
    }

    [Fact]
    public void Weights_of_another_architecture_name_the_first_mismatched_tensor_and_both_shapes()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        WeightsFile.Save(Network(32), folder.File("w.safetensors"));
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(Network(64), folder.File("w.safetensors")));
        Assert.Contains("tensor 'net.x_embedder.weight' has shape [32, 2] in the file but [64, 2] in the module", e.Message);
    }

    [Fact]
    public void A_truncated_file_is_reported_and_the_module_is_untouched()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        WeightsFile.Save(Network(32), folder.File("w.safetensors"));
        var bytes = File.ReadAllBytes(folder.File("w.safetensors"));
        File.WriteAllBytes(folder.File("cut.safetensors"), bytes[..(bytes.Length / 2)]);
        var target = Network(32);
        var before = target.state_dict().Values.Select(t => t.clone()).ToList();
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(target, folder.File("cut.safetensors")));
        Assert.Contains("is not a readable safetensors file", e.Message);
        var after = target.state_dict().Values.ToList();
        for (int i = 0; i < before.Count; i++) Assert.True(before[i].eq(after[i]).all().item<bool>());
    }

    [Fact]
    public void A_run_checkpoint_given_as_weights_is_named_as_such()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        var net = Network(32);
        var tensors = net.state_dict().ToDictionary(kv => $"module/teacher/{kv.Key}", kv => kv.Value);
        tensors["hierdistill/manifest"] = tensor(System.Text.Encoding.UTF8.GetBytes("{}"));
        TorchSharp.PyBridge.Safetensors.SaveStateDict(folder.File("checkpoint.safetensors"), tensors);
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(Network(32), folder.File("checkpoint.safetensors")));
        Assert.EndsWith("checkpoint.safetensors is a run checkpoint (the full training state, for --resume), not a weights file; pass the run " +
                        "folder's teacher.safetensors or student-<stage>.safetensors instead.", e.Message);
    }
}
