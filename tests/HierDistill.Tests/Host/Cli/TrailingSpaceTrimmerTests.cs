using System.Text.RegularExpressions;
using HierDistill.Host;
using Xunit;

namespace HierDistill.Tests.Host.Cli;

/// <summary>The writer behind piped standard output drops the spaces that end a line and nothing else, however the text is cut into writes.</summary>
public class TrailingSpaceTrimmerTests
{
    [Fact]
    public void Only_the_spaces_before_a_line_end_or_the_end_of_output_are_dropped_whatever_the_write_boundaries()
    {
        string text = "  usage:   hierdistill <command>      \n\n   a  b   \r\n   \ncell │ cell   │    \n  indented tail  ";
        // Reference, computed another way: a regular expression over the whole text.
        string expected = Regex.Replace(text, " +(?=\r|\n|$)", "");
        var random = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            var sink = new StringWriter();
            var writer = new TrailingSpaceTrimmer(sink);
            for (int at = 0; at < text.Length;)
            {
                int length = Math.Min(text.Length - at, random.Next(1, 9));
                switch (trial % 3)
                {
                    case 0: writer.Write(text.Substring(at, length)); break;
                    case 1: writer.Write(text.ToCharArray(), at, length); break;
                    default: foreach (char c in text.AsSpan(at, length)) writer.Write(c); break;
                }
                at += length;
            }
            writer.Flush();
            Assert.Equal(expected, sink.ToString());
        }
    }
}
