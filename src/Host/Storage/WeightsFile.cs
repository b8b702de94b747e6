using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace HierDistill.Host.Storage;

/// <summary>A weights file that does not fit the module it is loaded into, or cannot be read.</summary>
public sealed class WeightsMismatchException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Module weights as safetensors (state-dict names as keys), via TorchSharp.PyBridge: readable by
/// PyTorch's <c>safetensors.torch.load_file</c>, and never executing pickled code on load.
/// </summary>
public static class WeightsFile
{
    /// <summary>Saves every parameter and buffer of <paramref name="module"/> atomically.</summary>
    /// <exception cref="IOException">When writing fails (the previous file stays intact).</exception>
    public static void Save(nn.Module module, string path)
    {
        var dict = new Dictionary<string, Tensor>();
        using var scope = NewDisposeScope();
        foreach (var (name, t) in module.state_dict()) dict[name] = t.detach().cpu().contiguous();
        AtomicFile.Write(path, stream => Safetensors.SaveStateDict(stream, dict, leaveOpen: true));
    }

    /// <summary>Loads weights saved by <see cref="Save"/> into <paramref name="module"/>, checking every name and shape first.</summary>
    /// <exception cref="FileNotFoundException">When the file does not exist.</exception>
    /// <exception cref="WeightsMismatchException">
    /// When the file cannot be read as safetensors, or does not match the module: the message names the first
    /// mismatched tensor and both shapes.
    /// </exception>
    public static void Load(nn.Module module, string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {Path.GetFullPath(path)}", path);
        Dictionary<string, Tensor> loaded;
        try
        {
            loaded = Safetensors.LoadStateDict(path);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new WeightsMismatchException(
                $"{path} is not a readable safetensors file ({e.Message}); it may be truncated or of another format.", e);
        }
        try
        {
            if (loaded.ContainsKey("hierdistill/manifest"))
                throw new WeightsMismatchException(
                    $"{path} is a run checkpoint (the full training state, for --resume), not a weights file; pass the run folder's " +
                    "teacher.safetensors or student-<stage>.safetensors instead.");
            CopyInto(module, loaded, path);
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Copies <paramref name="tensors"/> into <paramref name="module"/>'s parameters and buffers after checking every name and
    /// shape first (nothing is copied when one does not fit).
    /// </summary>
    /// <param name="module">The module.</param>
    /// <param name="tensors">Tensors by state-dict name (any device).</param>
    /// <param name="source">What the tensors come from, for messages (a file, "checkpoint.safetensors (student)").</param>
    /// <exception cref="WeightsMismatchException">When a name is missing or extra, or a shape differs: the message names the first
    /// mismatched tensor and both shapes.</exception>
    public static void CopyInto(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        using var scope = NewDisposeScope();
        CopyInto(module.state_dict(), tensors, source);
    }

    /// <summary>
    /// Copies <paramref name="tensors"/> into the same-named tensors of <paramref name="target"/> (a module's state dict, an
    /// EMA, optimiser moments) after checking every name and shape first (nothing is copied when one does not fit).
    /// </summary>
    /// <exception cref="WeightsMismatchException">As <see cref="CopyInto(nn.Module, IReadOnlyDictionary{string, Tensor}, string)"/>.</exception>
    public static void CopyInto(IReadOnlyDictionary<string, Tensor> target, IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        foreach (var (name, t) in target)
        {
            if (!tensors.TryGetValue(name, out var s))
                throw new WeightsMismatchException($"{source} has no tensor '{name}' (shape [{string.Join(", ", t.shape)}]) that the module needs; it was saved from another architecture.");
            if (!s.shape.SequenceEqual(t.shape))
                throw new WeightsMismatchException(
                    $"{source}: tensor '{name}' has shape [{string.Join(", ", s.shape)}] in the file but [{string.Join(", ", t.shape)}] in the module; it was saved from another architecture or size.");
        }
        var extra = tensors.Keys.Except(target.Keys).FirstOrDefault();
        if (extra is not null)
            throw new WeightsMismatchException($"{source} has a tensor '{extra}' that the module lacks; it was saved from another architecture.");
        using (no_grad())
        {
            foreach (var (name, t) in target) t.copy_(tensors[name]);
        }
    }
}
