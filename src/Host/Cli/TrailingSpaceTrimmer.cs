using System.Text;

namespace HierDistill.Host;

/// <summary>
/// A writer that drops the spaces at the end of every line and passes everything else on unchanged. Spectre.Console pads
/// help and table cells to the console width; piped output (<c>hierdistill plugins &gt; plugins.txt</c>, CI logs) has no
/// terminal to clip them, so without this every line of the help ran to 240 columns of blanks. Spaces are held back only
/// until the next character that is not a space or a line end, so output is never delayed past a line's last word.
/// </summary>
internal sealed class TrailingSpaceTrimmer(TextWriter inner) : TextWriter
{
    private int _pendingSpaces;

    /// <inheritdoc/>
    public override Encoding Encoding => inner.Encoding;

    /// <inheritdoc/>
    public override void Write(char value) => Write(new ReadOnlySpan<char>(in value));

    /// <inheritdoc/>
    public override void Write(string? value) => Write(value.AsSpan());

    /// <inheritdoc/>
    public override void Write(char[] buffer, int index, int count) => Write(buffer.AsSpan(index, count));

    /// <inheritdoc/>
    public override void Write(ReadOnlySpan<char> text)
    {
        var output = new StringBuilder(text.Length + _pendingSpaces);
        foreach (char c in text)
        {
            if (c == ' ')
            {
                _pendingSpaces++;
                continue;
            }
            if (c is not ('\n' or '\r')) output.Append(' ', _pendingSpaces);
            _pendingSpaces = 0;
            output.Append(c);
        }
        if (output.Length > 0) inner.Write(output.ToString());
    }

    /// <inheritdoc/>
    public override void Flush() => inner.Flush();
}
