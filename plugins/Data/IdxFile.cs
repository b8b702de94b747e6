using System.IO.Compression;

namespace HierDistill.Plugins.Data;

/// <summary>An IDX file's content: its dimensions and its unsigned bytes (row-major).</summary>
/// <param name="Dimensions">Sizes of each dimension, e.g. <c>[60000, 28, 28]</c>.</param>
/// <param name="Data">The values, <c>prod(Dimensions)</c> bytes.</param>
internal sealed record IdxArray(int[] Dimensions, byte[] Data)
{
    public long Count => Dimensions[0];
}

/// <summary>A malformed IDX file; the message names the file and the problem.</summary>
public sealed class IdxFormatException(string message) : Exception(message);

/// <summary>
/// Reader of the IDX format of MNIST and Fashion-MNIST (LeCun et al.): a 4-byte magic <c>00 00 tt nn</c> (tt the value
/// type, 0x08 for unsigned bytes; nn the number of dimensions), nn big-endian 32-bit sizes, then the values. The file
/// may be gzip-compressed. Magic, type, dimensions and the data length are checked against the header.
/// </summary>
internal static class IdxFile
{
    private const byte UnsignedByte = 0x08;

    /// <exception cref="FileNotFoundException">When the file does not exist.</exception>
    /// <exception cref="IdxFormatException">For a corrupt, truncated or unsupported file.</exception>
    public static IdxArray Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"IDX file not found: {path}", path);
        byte[] raw = File.ReadAllBytes(path);
        byte[] bytes = raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b ? Gunzip(raw, path) : raw;
        return Parse(bytes, path);
    }

    /// <summary>Parses decompressed IDX bytes.</summary>
    /// <exception cref="IdxFormatException">For a corrupt, truncated or unsupported file.</exception>
    public static IdxArray Parse(byte[] bytes, string path)
    {
        if (bytes.Length < 4)
            throw new IdxFormatException($"{path}: only {bytes.Length} bytes, too short for an IDX header.");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new IdxFormatException($"{path}: bad magic number 0x{bytes[0]:x2}{bytes[1]:x2}{bytes[2]:x2}{bytes[3]:x2} (an IDX file starts with 00 00); not an IDX file.");
        if (bytes[2] != UnsignedByte)
            throw new IdxFormatException($"{path}: value type 0x{bytes[2]:x2} is not supported (only unsigned bytes, 0x08).");
        int rank = bytes[3];
        if (rank < 1 || rank > 4)
            throw new IdxFormatException($"{path}: {rank} dimensions in the header; expected 1 to 4.");
        int header = 4 + 4 * rank;
        if (bytes.Length < header)
            throw new IdxFormatException($"{path}: truncated header ({bytes.Length} bytes, {header} needed for {rank} dimensions).");
        var dims = new int[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            int o = 4 + 4 * i;
            dims[i] = (bytes[o] << 24) | (bytes[o + 1] << 16) | (bytes[o + 2] << 8) | bytes[o + 3];
            if (dims[i] <= 0) throw new IdxFormatException($"{path}: dimension {i} has size {dims[i]}; sizes must be positive.");
            count *= dims[i];
        }
        long expected = header + count;
        if (bytes.Length != expected)
            throw new IdxFormatException(
                $"{path}: the header declares [{string.Join(", ", dims)}] = {count} values ({expected} bytes with the header), but the file has {bytes.Length} bytes" +
                (bytes.Length < expected ? " (truncated)." : " (trailing data)."));
        return new IdxArray(dims, bytes[header..]);
    }

    private static byte[] Gunzip(byte[] raw, string path)
    {
        try
        {
            using var input = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream();
            input.CopyTo(output);
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new IdxFormatException($"{path}: corrupt gzip stream ({e.Message.TrimEnd('.')}).");
        }
    }
}
