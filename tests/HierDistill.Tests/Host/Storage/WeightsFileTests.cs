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
        Assert.Contains("the file is truncated or damaged", e.Message);
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

    /// <summary>The module's tensors as a dictionary for a hand-made file (names, values and dtypes changed by the caller).</summary>
    private static Dictionary<string, Tensor> Tensors(nn.Module module) =>
        module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    private static void AssertUnchanged(nn.Module module, IReadOnlyList<Tensor> before)
    {
        var after = module.state_dict().Values.ToList();
        for (int i = 0; i < before.Count; i++) Assert.True(before[i].eq(after[i]).all().item<bool>());
    }

    [Fact]
    public void The_header_reader_lists_the_names_shapes_and_dtypes_the_safetensors_writer_wrote()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        var tensors = Tensors(Network(32));
        tensors["half"] = ones(3, 5, dtype: ScalarType.Float16);
        tensors["count"] = zeros(7, dtype: ScalarType.Int64);
        TorchSharp.PyBridge.Safetensors.SaveStateDict(folder.File("w.safetensors"), tensors);
        var entries = SafetensorsHeader.Read(folder.File("w.safetensors")).ToDictionary(e => e.Name);
        Assert.Equal(tensors.Keys.Order(), entries.Keys.Order());
        foreach (var (name, t) in tensors) Assert.Equal(t.shape, entries[name].Shape);
        Assert.Equal("F16", entries["half"].DType);
        Assert.Equal("I64", entries["count"].DType);
        Assert.False(entries["count"].IsFloatingPoint);
        Assert.Equal("F32", entries["net.x_embedder.weight"].DType);
    }

    [Fact]
    public void Float16_weights_load_as_a_cast_like_load_state_dict()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        var source = Network(32);
        var half = Tensors(source).ToDictionary(kv => kv.Key, kv => kv.Value.to_type(ScalarType.Float16));
        TorchSharp.PyBridge.Safetensors.SaveStateDict(folder.File("w.safetensors"), half);
        var target = Network(32);
        WeightsFile.Load(target, folder.File("w.safetensors"));
        foreach (var (name, t) in target.state_dict())
            Assert.True(t.eq(half[name].to_type(ScalarType.Float32)).all().item<bool>(), name);
    }

    [Fact]
    public void An_integer_tensor_where_the_module_has_floats_is_refused_by_name()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        var tensors = Tensors(Network(32));
        tensors["net.x_embedder.weight"] = tensors["net.x_embedder.weight"].to_type(ScalarType.Int64);
        TorchSharp.PyBridge.Safetensors.SaveStateDict(folder.File("w.safetensors"), tensors);
        var target = Network(32);
        var before = target.state_dict().Values.Select(t => t.clone()).ToList();
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(target, folder.File("w.safetensors")));
        Assert.Contains("tensor 'net.x_embedder.weight' is Int64 in the file where the module's is Float32; weights must be floating point", e.Message);
        AssertUnchanged(target, before);
    }

    [Fact]
    public void Non_finite_weights_are_refused_with_the_tensor_and_the_count_and_nothing_is_copied()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        var tensors = Tensors(Network(32));
        var last = tensors.Keys.Last(k => tensors[k].is_floating_point());
        tensors[last].view(-1)[0] = tensor(float.NaN);
        tensors[last].view(-1)[^1] = tensor(float.NegativeInfinity);
        TorchSharp.PyBridge.Safetensors.SaveStateDict(folder.File("w.safetensors"), tensors);
        var target = Network(32);
        var before = target.state_dict().Values.Select(t => t.clone()).ToList();
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(target, folder.File("w.safetensors")));
        Assert.Contains($"tensor '{last}' holds 2 non-finite value(s) (NaN or infinity)", e.Message);
        AssertUnchanged(target, before);
    }

    [Fact]
    public void Names_without_the_modules_prefix_are_named_as_such()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        var tensors = Tensors(Network(32)).ToDictionary(kv => kv.Key["net.".Length..], kv => kv.Value);
        TorchSharp.PyBridge.Safetensors.SaveStateDict(folder.File("w.safetensors"), tensors);
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(Network(32), folder.File("w.safetensors")));
        string first = Network(32).state_dict().Keys.First();
        Assert.Contains($"has no tensor '{first}'", e.Message);
        Assert.Contains($"the file has '{first["net.".Length..]}': its names lack the prefix 'net.' that the module's carry", e.Message);
    }

    [Fact]
    public void One_renamed_tensor_is_matched_to_the_file_tensor_of_its_shape_and_one_missing_tensor_is_no_teacher_student_mix_up()
    {
        using var scope = NewDisposeScope();
        using var folder = TestPaths.NewTempFolder();
        var tensors = Tensors(Network(32));
        string renamed = tensors.Keys.Last();
        var shape = tensors[renamed].shape;
        tensors["net.renamed_by_hand"] = tensors[renamed];
        tensors.Remove(renamed);
        TorchSharp.PyBridge.Safetensors.SaveStateDict(folder.File("renamed.safetensors"), tensors);
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(Network(32), folder.File("renamed.safetensors")));
        Assert.Contains($"has no tensor '{renamed}' (shape [{string.Join(", ", shape)}]) that the module needs; the file has 'net.renamed_by_hand' " +
                        $"of that shape, which the module lacks: the tensor was renamed. Save the state dict of the same module, or rename " +
                        $"'net.renamed_by_hand' to '{renamed}' in the file.", e.Message);
        // One tensor missing (none renamed): another architecture, and not the teacher/student note (a student differs by an
        // embedder's weights and biases).
        tensors.Remove("net.renamed_by_hand");
        TorchSharp.PyBridge.Safetensors.SaveStateDict(folder.File("missing.safetensors"), tensors);
        e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(Network(32), folder.File("missing.safetensors")));
        Assert.Contains($"has no tensor '{renamed}'", e.Message);
        Assert.Contains("it was saved from another architecture.", e.Message);
        Assert.DoesNotContain("not interchangeable", e.Message);
    }

    [Fact]
    public void A_folder_or_a_text_file_given_as_weights_is_named_as_such_with_the_fix()
    {
        using var folder = TestPaths.NewTempFolder();
        using var module = nn.Linear(2, 2);
        var e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(module, folder.Path));
        Assert.Contains("is a folder, not a weights file; name the .safetensors file in it", e.Message);
        File.WriteAllText(folder.File("notes.safetensors"), "these are not weights, just a long enough text");
        e = Assert.Throws<WeightsMismatchException>(() => WeightsFile.Load(module, folder.File("notes.safetensors")));
        Assert.Contains("notes.safetensors is not a safetensors file (its first 8 bytes give a header of", e.Message);
        Assert.Contains("safetensors.torch.save_file(module.state_dict(), path)", e.Message);
    }

    /// <summary>A safetensors file with the given header JSON and <paramref name="dataBytes"/> zero bytes of data.</summary>
    private static string RawFile(TempFolder folder, string name, string header, int dataBytes)
    {
        var json = System.Text.Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (ulong)json.Length);
        json.CopyTo(bytes, 8);
        File.WriteAllBytes(folder.File(name), bytes);
        return folder.File(name);
    }

    [Fact]
    public void Header_damage_is_seen_without_reading_the_tensors()
    {
        using var folder = TestPaths.NewTempFolder();
        var size = Assert.Throws<WeightsMismatchException>(() => SafetensorsHeader.Read(RawFile(folder, "size.safetensors",
            """{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}""", 20)));
        Assert.Contains("tensor 'w' (F32, shape [2, 3]) needs 24 bytes but its data_offsets give 20; the file is damaged", size.Message);
        var negative = Assert.Throws<WeightsMismatchException>(() => SafetensorsHeader.Read(RawFile(folder, "neg.safetensors",
            """{"w":{"dtype":"F32","shape":[-1,3],"data_offsets":[0,12]}}""", 12)));
        Assert.Contains("tensor 'w' has the shape [-1, 3]; the file is damaged", negative.Message);
        var dtype = Assert.Throws<WeightsMismatchException>(() => SafetensorsHeader.Read(RawFile(folder, "u32.safetensors",
            """{"w":{"dtype":"U32","shape":[3],"data_offsets":[0,12]}}""", 12)));
        Assert.Contains("tensor 'w' has dtype U32, which is not read here", dtype.Message);
        // The tensors must index the data section exactly (the format's rule; TorchSharp.PyBridge does not check it).
        var trailing = Assert.Throws<WeightsMismatchException>(() => SafetensorsHeader.Read(RawFile(folder, "trailing.safetensors",
            """{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}""", 16)));
        Assert.Contains("the last 4 byte(s) of the file belong to no tensor (the tensors end at byte 12 of a data section of 16)", trailing.Message);
        var overlap = Assert.Throws<WeightsMismatchException>(() => SafetensorsHeader.Read(RawFile(folder, "overlap.safetensors",
            """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12)));
        Assert.Contains("tensors 'a' and 'b' share bytes [4, 12) of the data section", overlap.Message);
        var hole = Assert.Throws<WeightsMismatchException>(() => SafetensorsHeader.Read(RawFile(folder, "hole.safetensors",
            """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12)));
        Assert.Contains("bytes [4, 8) of the data section belong to no tensor", hole.Message);
        // in any order in the header, empty tensors included
        Assert.Equal(3, SafetensorsHeader.Read(RawFile(folder, "order.safetensors",
            """{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}""", 8)).Count);
        // __metadata__ is not a tensor
        var entries = SafetensorsHeader.Read(RawFile(folder, "meta.safetensors",
            """{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}}""", 6));
        Assert.Equal([new SafetensorsEntry("w", "BF16", [3])], entries.Select(e => e with { Shape = e.Shape }).ToList(), new EntryComparer());
    }

    private sealed class EntryComparer : IEqualityComparer<SafetensorsEntry>
    {
        public bool Equals(SafetensorsEntry? x, SafetensorsEntry? y) => x!.Name == y!.Name && x.DType == y.DType && x.Shape.SequenceEqual(y.Shape);
        public int GetHashCode(SafetensorsEntry e) => e.Name.GetHashCode();
    }
}
