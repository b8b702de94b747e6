using Spectre.Console;

namespace HierDistill.Host;

/// <summary>
/// Error and warning lines as plain text in a colour. Not markup: Spectre.Console replaces <c>:name:</c> in markup by an
/// emoji, and <c>Markup.Escape</c> does not prevent it (spectre.console issue 408), so a config key such as
/// <c>run:zzz:</c> in a message would print as "run💤".
/// </summary>
public static class ConsoleLines
{
    /// <summary>Writes <paramref name="text"/> in red and ends the line.</summary>
    public static void ErrorLine(this IAnsiConsole console, string text) => Line(console, text, Color.Red);

    /// <summary>Writes <paramref name="text"/> in yellow and ends the line.</summary>
    public static void WarningLine(this IAnsiConsole console, string text) => Line(console, text, Color.Yellow);

    private static void Line(IAnsiConsole console, string text, Color colour)
    {
        console.Write(new Text(text, new Style(colour)));
        console.WriteLine();
    }
}
