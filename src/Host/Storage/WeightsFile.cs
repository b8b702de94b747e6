using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace HierDistill.Host.Storage;

/// <summary>A weights file that does not fit the module it is loaded into, or cannot be read.</summary>
public sealed class WeightsMismatchException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The message without the file's name that starts it ("the file has no tensor …", "tensor '…' has shape …"), for a
    /// message that names the file once itself (sampling, which tries the file on several networks); null when the message
    /// does not start with the file's name.</summary>
    public string? WithoutSource { get; private init; }

    /// <summary>"<paramref name="source"/> has …": <paramref name="has"/> starts with "has".</summary>
    internal static WeightsMismatchException FileHas(string source, string has) => new($"{source} {has}") { WithoutSource = $"the file {has}" };

    /// <summary>"<paramref name="source"/>: <paramref name="detail"/>".</summary>
    internal static WeightsMismatchException InFile(string source, string detail) => new($"{source}: {detail}") { WithoutSource = detail };
}

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

    /// <summary>
    /// Loads weights saved by <see cref="Save"/> (or by PyTorch's <c>safetensors.torch.save_file</c> with the same names) into
    /// <paramref name="module"/>, checking the header, then every name, shape and dtype kind and that every value is finite
    /// first (nothing is copied when one check fails). Floating-point tensors of another width (float16, bfloat16, float64)
    /// are cast, as PyTorch's <c>load_state_dict</c> does.
    /// </summary>
    /// <exception cref="FileNotFoundException">When the file does not exist.</exception>
    /// <exception cref="WeightsMismatchException">
    /// When the file cannot be read as safetensors, is a run checkpoint, or does not fit the module: the message names the
    /// first mismatched tensor (both shapes, or its dtype, or its count of non-finite values) and the fix.
    /// </exception>
    public static void Load(nn.Module module, string path)
    {
        CheckHeader(path);
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
            CopyInto(module, loaded, path, weightsFile: true);
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }

    /// <summary>
    /// The checks on a weights file that need no module (run by config validation on every <c>loadFrom</c>, before a run
    /// folder is created or overwritten): the file is safetensors, its header fits its length, and it is not a run checkpoint.
    /// </summary>
    /// <exception cref="FileNotFoundException">When the file does not exist.</exception>
    /// <exception cref="WeightsMismatchException">When one check fails; the message names the fix.</exception>
    public static void CheckHeader(string path) => ReadHeader(path);

    /// <summary>The header's entries after the checks of <see cref="CheckHeader"/>.</summary>
    private static IReadOnlyList<SafetensorsEntry> ReadHeader(string path)
    {
        var entries = SafetensorsHeader.Read(path);
        if (entries.Any(e => e.Name == CheckpointManifestKey))
            throw new WeightsMismatchException(
                $"{path} is a run checkpoint (the full training state, for --resume), not a weights file; pass the run folder's " +
                "teacher.safetensors or student-<stage>.safetensors instead.");
        return entries;
    }

    /// <summary>The tensor that marks a run checkpoint (Training.Checkpoints writes it; a weights file never has it).</summary>
    public const string CheckpointManifestKey = "hierdistill/manifest";

    /// <summary>
    /// Copies <paramref name="tensors"/> into <paramref name="module"/>'s parameters and buffers after checking every name,
    /// shape and dtype kind and that every value is finite (nothing is copied when one does not fit).
    /// </summary>
    /// <param name="module">The module.</param>
    /// <param name="tensors">Tensors by state-dict name (any device).</param>
    /// <param name="source">What the tensors come from, for messages (a file, "checkpoint.safetensors (student)").</param>
    /// <exception cref="WeightsMismatchException">When a name is missing or extra, a shape differs, an integer tensor stands where
    /// the module has a floating-point one, or a value is NaN or infinite: the message names the first such tensor.</exception>
    /// <param name="weightsFile">Whether the tensors come from a weights file (the messages then say that teacher and student files differ).</param>
    public static void CopyInto(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors, string source, bool weightsFile = false)
    {
        using var scope = NewDisposeScope();
        CopyInto(module.state_dict(), tensors, source, weightsFile);
    }

    /// <summary>
    /// Copies <paramref name="tensors"/> into the same-named tensors of <paramref name="target"/> (a module's state dict, an
    /// EMA, optimiser moments) after the checks of <see cref="CopyInto(nn.Module, IReadOnlyDictionary{string, Tensor}, string, bool)"/>.
    /// </summary>
    /// <exception cref="WeightsMismatchException">As <see cref="CopyInto(nn.Module, IReadOnlyDictionary{string, Tensor}, string, bool)"/>.</exception>
    public static void CopyInto(IReadOnlyDictionary<string, Tensor> target, IReadOnlyDictionary<string, Tensor> tensors, string source,
        bool weightsFile = false)
    {
        CheckLayout(target.ToDictionary(kv => kv.Key, kv => TensorLayout.Of(kv.Value)),
            tensors.ToDictionary(kv => kv.Key, kv => TensorLayout.Of(kv.Value)), source, weightsFile);
        foreach (var (name, t) in target)
        {
            var s = tensors[name];
            if (!s.is_floating_point()) continue;
            long bad;
            using (var finite = isfinite(s)) bad = finite.numel() - finite.count_nonzero().item<long>();
            if (bad > 0)
                throw WeightsMismatchException.InFile(source,
                    $"tensor '{name}' holds {bad} non-finite value(s) (NaN or infinity): the weights come from a run that " +
                    "diverged or the file is damaged. Use weights saved before the divergence (an earlier run's file), or train again.");
        }
        using (no_grad())
        {
            foreach (var (name, t) in target) t.copy_(tensors[name]);
        }
    }

    /// <summary>
    /// Checks, from the file's header alone (no tensor is read), that <paramref name="path"/> fits <paramref name="module"/>:
    /// the checks of <see cref="CheckHeader"/>, then every name, shape and dtype kind as <see cref="Load"/> checks them. Run
    /// before a run folder is created or overwritten (Pipeline.Preflight), on a module built only for the check.
    /// </summary>
    /// <exception cref="FileNotFoundException">When the file does not exist.</exception>
    /// <exception cref="WeightsMismatchException">As <see cref="Load"/>, except for non-finite values (those need the data).</exception>
    public static void CheckFits(nn.Module module, string path)
    {
        var file = ReadHeader(path).ToDictionary(e => e.Name, e => new TensorLayout(e.Shape, e.IsFloatingPoint, e.TorchName));
        using var scope = NewDisposeScope();
        CheckLayout(module.state_dict().ToDictionary(kv => kv.Key, kv => TensorLayout.Of(kv.Value)), file, path, weightsFile: true);
    }

    /// <summary>What the checks need of a tensor: its shape, whether it is floating point, and its dtype's name for messages.</summary>
    private readonly record struct TensorLayout(long[] Shape, bool FloatingPoint, string DType)
    {
        public static TensorLayout Of(Tensor t) => new(t.shape, t.is_floating_point(), t.dtype.ToString());
    }

    /// <summary>The name, shape and dtype-kind checks shared by <see cref="CopyInto(IReadOnlyDictionary{string, Tensor}, IReadOnlyDictionary{string, Tensor}, string, bool)"/> and <see cref="CheckFits"/>.</summary>
    private static void CheckLayout(IReadOnlyDictionary<string, TensorLayout> target, IReadOnlyDictionary<string, TensorLayout> file, string source,
        bool weightsFile)
    {
        // A student's names are its teacher's plus those of its own inputs: the hint fits when one set holds the other.
        // (Two or more tensors apart: a student's own inputs are an embedder's weights and biases; one tensor missing or extra
        // is another slip.)
        bool targetInFile = target.Keys.All(file.ContainsKey), fileInTarget = file.Keys.All(target.ContainsKey);
        bool teacherAndStudent = targetInFile != fileInTarget && Math.Abs(target.Count - file.Count) >= 2;
        string NotInterchangeable = weightsFile && teacherAndStudent
            ? " (teacher.safetensors and student-<stage>.safetensors are not interchangeable: a student network has inputs of its own.)"
            : "";
        foreach (var (name, t) in target)
        {
            if (!file.TryGetValue(name, out var s))
                throw WeightsMismatchException.FileHas(source,
                    $"has no tensor '{name}' (shape [{string.Join(", ", t.Shape)}]) that the module needs; " +
                    $"{NameHint(name, t.Shape, target, file)}{NotInterchangeable} {Sizes(file)}");
            if (!s.Shape.SequenceEqual(t.Shape))
                throw WeightsMismatchException.InFile(source,
                    $"tensor '{name}' has shape [{string.Join(", ", s.Shape)}] in the file but [{string.Join(", ", t.Shape)}] in " +
                    "the module; it was saved from another architecture or size, or for data of another shape (the data's sample shape " +
                    "sizes the network's input): set the network's options (the teacher's preset or width, or the stage's student) and " +
                    $"the data to those of the run that saved it (its config.resolved.json). {Sizes(file)}");
            if (t.FloatingPoint && !s.FloatingPoint)
                throw WeightsMismatchException.InFile(source,
                    $"tensor '{name}' is {s.DType} in the file where the module's is {t.DType}; weights must be floating point " +
                    "(float32, float16, bfloat16 or float64). Save the module's state_dict() as it is, without converting it.");
        }
        var extra = file.Keys.Except(target.Keys).FirstOrDefault();
        if (extra is not null)
            throw WeightsMismatchException.FileHas(source,
                $"has a tensor '{extra}' that the module lacks ({file.Keys.Except(target.Keys).Count()} such in all); it was " +
                $"saved from another architecture.{NotInterchangeable} {Sizes(file)}");
    }

    /// <summary>
    /// The file's size and first tensor, so that the network it was saved from can be recognised (a 2-D MLP's first layer
    /// takes 2 inputs; a DiT-S/2 has about 33 M parameters). Only the file's: the same file checked against a teacher and
    /// its student gets the same words.
    /// </summary>
    private static string Sizes(IReadOnlyDictionary<string, TensorLayout> file)
    {
        static string Count(IEnumerable<TensorLayout> tensors)
        {
            double n = tensors.Sum(t => t.Shape.Aggregate(1.0, (p, d) => p * d));
            var c = System.Globalization.CultureInfo.InvariantCulture;
            return n >= 1e6 ? (n / 1e6).ToString("0.0 M", c) : n >= 1e3 ? (n / 1e3).ToString("0.0 k", c) : n.ToString("0", c);
        }
        var first = file.FirstOrDefault();
        string example = first.Key is null ? "" : $", the first '{first.Key}' [{string.Join(", ", first.Value.Shape)}]";
        return $"(The file holds {file.Count} tensors, {Count(file.Values)} values{example}.)";
    }

    /// <summary>"it was saved from another architecture", or what the names in the file suggest instead (a prefix added or
    /// missing, or one tensor of the same shape under another name).</summary>
    private static string NameHint(string name, long[] shape, IReadOnlyDictionary<string, TensorLayout> target,
        IReadOnlyDictionary<string, TensorLayout> file)
    {
        foreach (var other in file.Keys)
        {
            if (other.EndsWith("." + name, StringComparison.Ordinal))
                return $"the file has '{other}': its names carry the prefix '{other[..^name.Length]}' that the module's lack; save the " +
                       "state dict of the same module (or strip the prefix).";
            if (name.EndsWith("." + other, StringComparison.Ordinal))
                return $"the file has '{other}': its names lack the prefix '{name[..^other.Length]}' that the module's carry; save the " +
                       "state dict of the same module (or add the prefix).";
        }
        var sameShape = file.Where(kv => !target.ContainsKey(kv.Key) && kv.Value.Shape.SequenceEqual(shape)).Select(kv => kv.Key).ToList();
        if (sameShape.Count == 1 && target.Keys.Count(k => !file.ContainsKey(k)) == 1)
            return $"the file has '{sameShape[0]}' of that shape, which the module lacks: the tensor was renamed. Save the state dict of " +
                   $"the same module, or rename '{sameShape[0]}' to '{name}' in the file.";
        return "it was saved from another architecture.";
    }
}
