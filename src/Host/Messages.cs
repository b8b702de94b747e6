namespace HierDistill.Host;

/// <summary>Pieces of the host's messages.</summary>
internal static class Messages
{
    /// <summary>The first <paramref name="most"/> of <paramref name="items"/>, comma-separated, with ", ..." when there are more.</summary>
    internal static string FirstOf(IReadOnlyCollection<string?> items, int most = 5) =>
        string.Join(", ", items.Take(most)) + (items.Count > most ? ", ..." : "");
}
