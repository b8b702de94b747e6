using System.Buffers.Binary;
using System.Text.Json;

namespace HierDistill.Host.Storage;

/// <summary>One tensor entry of a safetensors header.</summary>
/// <param name="Name">State-dict name.</param>
/// <param name="DType">The file's dtype code: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, …</param>
/// <param name="Shape">Dimensions.</param>
public sealed record SafetensorsEntry(string Name, string DType, long[] Shape)
{
    /// <summary>Whether the dtype is a floating-point one that network weights may have (F64, F32, F16, BF16).</summary>
    public bool IsFloatingPoint => DType is "F64" or "F32" or "F16" or "BF16";

    /// <summary>The dtype as TorchSharp names it (Float32, BFloat16, Int64, …), for messages that also name a module's dtype.</summary>
    public string TorchName => DType switch
    {
        "F64" => "Float64", "F32" => "Float32", "F16" => "Float16", "BF16" => "BFloat16", "I64" => "Int64", "I32" => "Int32",
        "I16" => "Int16", "I8" => "Int8", "U8" => "Byte", "BOOL" => "Bool", _ => DType,
    };
}

/// <summary>
/// Reads only the header of a safetensors file (8-byte little-endian length, then a JSON table of
/// <c>name → {dtype, shape, data_offsets}</c>; https://github.com/huggingface/safetensors, "Format"), without loading the
/// tensors: the cheap check that <c>validate</c> runs on every <c>loadFrom</c> before anything is written or deleted.
/// </summary>
public static class SafetensorsHeader
{
    /// <summary>Bytes per element of the dtypes TorchSharp.PyBridge reads.</summary>
    private static readonly Dictionary<string, int> ElementBytes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1,
    };

    /// <summary>Headers larger than this are refused (the format's own limit is 100 MB).</summary>
    private const long MaxHeaderBytes = 100_000_000;

    /// <summary>Reads the tensor table of <paramref name="path"/>.</summary>
    /// <returns>The entries (without <c>__metadata__</c>), in file order.</returns>
    /// <exception cref="FileNotFoundException">When the file does not exist.</exception>
    /// <exception cref="WeightsMismatchException">When the file is not safetensors or is cut short: the message says which and how to convert.</exception>
    public static IReadOnlyList<SafetensorsEntry> Read(string path)
    {
        if (Directory.Exists(path))
            throw new WeightsMismatchException($"{path} is a folder, not a weights file; name the .safetensors file in it (a run folder holds teacher.safetensors and student-<stage>.safetensors).");
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {Path.GetFullPath(path)}", path);
        using var stream = File.OpenRead(path);
        long length = stream.Length;
        Span<byte> prefix = stackalloc byte[8];
        if (length < 8 || stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
            throw NotSafetensors(path, $"{length} bytes, shorter than the 8-byte header length");
        ulong headerBytes = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerBytes > MaxHeaderBytes || (long)headerBytes > length - 8)
            throw NotSafetensors(path, $"its first 8 bytes give a header of {headerBytes} bytes in a file of {length}");
        var json = new byte[headerBytes];
        stream.ReadExactly(json);
        long dataBytes = length - 8 - (long)headerBytes;
        var entries = new List<SafetensorsEntry>();
        var spans = new List<(string Name, long Begin, long End)>();
        try
        {
            using var document = JsonDocument.Parse(json);
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw NotSafetensors(path, "its header is not a JSON object");
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__") continue;
                var e = property.Value;
                string dtype = e.GetProperty("dtype").GetString() ?? "";
                long[] shape = e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                long[] offsets = e.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                if (!ElementBytes.TryGetValue(dtype, out int size))
                    throw new WeightsMismatchException(
                        $"{path}: tensor '{property.Name}' has dtype {dtype}, which is not read here ({string.Join(", ", ElementBytes.Keys)}); " +
                        "network weights are F32, F16, BF16 or F64. Save the module's state_dict() as it is.");
                if (shape.Any(d => d < 0))
                    throw new WeightsMismatchException($"{path}: tensor '{property.Name}' has the shape [{string.Join(", ", shape)}]; the file is damaged. Save or copy it again.");
                if (offsets.Length == 2 && offsets[1] - offsets[0] != shape.Aggregate(1L, (p, d) => p * d) * size)
                    throw new WeightsMismatchException(
                        $"{path}: tensor '{property.Name}' ({dtype}, shape [{string.Join(", ", shape)}]) needs {shape.Aggregate(1L, (p, d) => p * d) * size} " +
                        $"bytes but its data_offsets give {offsets[1] - offsets[0]}; the file is damaged. Save or copy it again.");
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataBytes)
                    throw new WeightsMismatchException(
                        $"{path}: tensor '{property.Name}' lies at bytes [{string.Join(", ", offsets)}] of a data section of {dataBytes} bytes; " +
                        "the file is truncated or damaged. Save or copy it again.");
                entries.Add(new SafetensorsEntry(property.Name, dtype, shape));
                spans.Add((property.Name, offsets[0], offsets[1]));
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw NotSafetensors(path, $"its header does not parse: {e.Message}");
        }
        CheckCoverage(path, spans, dataBytes);
        return entries;
    }

    /// <summary>
    /// The format's rule that the tensors index the whole data section, without holes or overlaps ("the byte buffer needs to be
    /// entirely indexed, and cannot contain holes", which the reference loader enforces): TorchSharp.PyBridge does not check it.
    /// </summary>
    private static void CheckCoverage(string path, List<(string Name, long Begin, long End)> spans, long dataBytes)
    {
        long end = 0;
        string? previous = null;
        foreach (var (name, begin, stop) in spans.OrderBy(s => s.Begin).ThenBy(s => s.End))
        {
            if (begin < end)
                throw new WeightsMismatchException(
                    $"{path}: tensors '{previous}' and '{name}' share bytes [{begin}, {Math.Min(end, stop)}) of the data section; the file is " +
                    "damaged or was not written by a safetensors writer. Save it again (safetensors.torch.save_file).");
            if (begin > end)
                throw new WeightsMismatchException(
                    $"{path}: bytes [{end}, {begin}) of the data section belong to no tensor; the file is damaged or was not written by a " +
                    "safetensors writer. Save it again (safetensors.torch.save_file).");
            end = stop;
            previous = name;
        }
        if (end != dataBytes)
            throw new WeightsMismatchException(
                $"{path}: the last {dataBytes - end} byte(s) of the file belong to no tensor (the tensors end at byte {end} of a data " +
                $"section of {dataBytes}); the file is damaged or was not written by a safetensors writer. Save it again (safetensors.torch.save_file).");
    }

    private static WeightsMismatchException NotSafetensors(string path, string why) => new(
        $"{path} is not a safetensors file ({why}). Weights are exchanged as safetensors: from PyTorch, " +
        "safetensors.torch.save_file(module.state_dict(), path) (or save_safetensors in bench/gpu/reference.py); a .pt/.pth pickle " +
        "must be converted that way first.");
}
