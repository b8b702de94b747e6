using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace HierDistill.Host.Configuration;

/// <summary>
/// Compares resolved configs (config.resolved.json) key by key, ignoring the <c>provenance</c> section (source path,
/// overrides, versions) and the keys that do not change results (<see cref="Ignored"/>), so that <c>run --resume</c>
/// continues only with the config a run was started with.
/// </summary>
public static class ConfigDifferences
{
    /// <summary>Keys (and key prefixes ending in ':') that may differ on resume: where the run is, how often it logs and checkpoints.</summary>
    public static readonly IReadOnlyList<string> Ignored = ["run:outputDir", "run:overwrite", "run:logEvery", "run:checkpointEvery", "Serilog:"];

    /// <summary>
    /// Keys that may change when a run is resumed, with a warning, so that a run stopped by non-finite losses can continue
    /// from its last good checkpoint with a lower learning rate or a gradient clip (the result is then not the
    /// uninterrupted run's): every <c>learningRate</c> and <c>gradClip</c>, and <c>run:maxSkippedSteps</c>; and
    /// <c>run:threads</c>, so that a run continues on a machine with other cores (CPU results may then differ in the last bits).
    /// </summary>
    public static bool MayChangeOnResume(string key) =>
        key.EndsWith(":learningRate", StringComparison.Ordinal) || key.EndsWith(":gradClip", StringComparison.Ordinal) ||
        key is "run:maxSkippedSteps" or "run:threads";

    /// <summary>The keys whose values differ, as <c>key: 'old' → 'new'</c>, sorted.</summary>
    /// <param name="before">The run folder's resolved config (JSON).</param>
    /// <param name="after">The resolved config of the command line now (JSON).</param>
    public static IReadOnlyList<(string Key, string Text)> Between(string before, string after)
    {
        var a = Flatten(before);
        var b = Flatten(after);
        return a.Keys.Union(b.Keys).Order(StringComparer.Ordinal)
            .Where(k => !SameValue(a.GetValueOrDefault(k), b.GetValueOrDefault(k)))
            .Select(k => (k, $"{k}: '{Shown(a.GetValueOrDefault(k))}' → '{Shown(b.GetValueOrDefault(k))}'"))
            .ToList();
    }

    /// <summary>A value as a message shows it: a JSON string without its quotes (<c>'none'</c>, not <c>'"none"'</c>).</summary>
    private static string Shown(string? json)
    {
        if (json is null) return "(unset)";
        if (json.Length < 2 || json[0] != '"') return json;
        try
        {
            return JsonNode.Parse(json) is JsonValue v && v.TryGetValue(out string? s) ? s : json;
        }
        catch (JsonException)
        {
            return json;
        }
    }

    /// <summary>
    /// The code that differs between the run's start and now, from <c>provenance.versions</c>: HierDistill, TorchSharp,
    /// libtorch and each plugin's version (<c>plugin MyLab.Disc 0.1.0 → 0.1.1</c>; a plugin added or gone as <c>(none)</c>).
    /// A resume with other code runs the rest of the run with it, so its result is not the uninterrupted run's.
    /// </summary>
    /// <param name="before">The run folder's resolved config (JSON).</param>
    /// <param name="after">The resolved config of the command line now (JSON).</param>
    /// <param name="plugins">The plugins (assembly names) whose components the run uses: only their versions count (a plugin
    /// in the plugin folders that the config does not use changes nothing); null: every plugin recorded.</param>
    /// <returns>One text per difference, in a fixed order; empty when the same code runs (or a config records no versions).</returns>
    /// <remarks>Versions are the assemblies' informational versions: a plugin rebuilt without a new version is not seen. libtorch
    /// is compared by its version, not the folder it was loaded from (<c>PyTorch 2.11.0 from /venv/…</c>).</remarks>
    public static IReadOnlyList<string> VersionsBetween(string before, string after, IReadOnlySet<string>? plugins = null)
    {
        static JsonObject? Versions(string text)
        {
            try
            {
                return JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true })
                    ?[ConfigLoader.ProvenanceKey]?["versions"] as JsonObject;
            }
            catch (JsonException)
            {
                return null;
            }
        }
        static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue(out string? s) ? s : node?.ToJsonString();
        if (Versions(before) is not { } a || Versions(after) is not { } b) return [];
        var changes = new List<string>();
        // "PyTorch 2.11.0 from /path (preloaded …)": the version, not where it was found.
        static string? Library(string? text) => text is null ? null : text.Split(" from ")[0];
        foreach (var (key, name) in new[] { ("hierdistill", "HierDistill"), ("torchsharp", "TorchSharp"), ("libtorch", "libtorch") })
            if (Text(a[key]) is { } x && Text(b[key]) is { } y && (key == "libtorch" ? Library(x) != Library(y) : x != y))
                changes.Add($"{name} {(key == "libtorch" ? Library(x) : x)} → {(key == "libtorch" ? Library(y) : y)}");
        var pa = a["plugins"] as JsonObject ?? [];
        var pb = b["plugins"] as JsonObject ?? [];
        foreach (string plugin in pa.Select(kv => kv.Key).Union(pb.Select(kv => kv.Key)).Where(p => plugins?.Contains(p) != false).Order(StringComparer.Ordinal))
        {
            string va = Text(pa[plugin]?["version"]) ?? "(none)", vb = Text(pb[plugin]?["version"]) ?? "(none)";
            if (va != vb) changes.Add($"plugin {plugin} {va} → {vb}");
        }
        return changes;
    }

    /// <summary>Equal JSON texts, or two JSON numbers of one value written differently (1e-08 and 1E-08, 0.5 and 5e-1: a
    /// config.resolved.json edited by hand).</summary>
    private static bool SameValue(string? a, string? b) =>
        a == b || (a is { Length: > 0 } && b is { Length: > 0 } && a[0] != '"' && b[0] != '"'
                   && double.TryParse(a, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double x)
                   && double.TryParse(b, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double y)
                   && x.Equals(y));

    /// <summary>SHA-256 (hex) of the resolved config without its provenance: equal digests mean the same run settings.</summary>
    public static string Digest(string resolved) => Digest(resolved, fullLoadFrom: true);

    /// <summary>
    /// Whether <paramref name="digest"/> (a checkpoint's) is <paramref name="resolved"/>'s: its <see cref="Digest(string)"/>, or
    /// the digest an earlier version computed, with a relative <c>loadFrom</c> as written (a run stopped before loadFrom
    /// was recorded as a full path still resumes).
    /// </summary>
    public static bool IsDigestOf(string digest, string resolved) =>
        digest == Digest(resolved) || digest == Digest(resolved, fullLoadFrom: false);

    private static string Digest(string resolved, bool fullLoadFrom)
    {
        var text = string.Join('\n', Flatten(resolved, fullLoadFrom).OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
    }

    private static Dictionary<string, string?> Flatten(string json, bool fullLoadFrom = true)
    {
        var result = new Dictionary<string, string?>(StringComparer.Ordinal);
        var root = JsonNode.Parse(json, documentOptions: new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip });
        if (root is JsonObject o) o.Remove(ConfigLoader.ProvenanceKey);
        Walk(root, "", result);
        foreach (var k in result.Keys.Where(k => Ignored.Any(i => i.EndsWith(':') ? k.StartsWith(i, StringComparison.Ordinal) : k == i)).ToList())
            result.Remove(k);
        // loadFrom is written as a full path; a run folder written before that holds it as given, relative to the working
        // directory of its run, which a resume from the same directory reads as the same file.
        foreach (var k in result.Keys.Where(k => fullLoadFrom && k.EndsWith(":loadFrom", StringComparison.Ordinal)).ToList())
            if (result[k] is { } text && JsonNode.Parse(text) is JsonValue v && v.TryGetValue(out string? file) && !string.IsNullOrWhiteSpace(file) && !Path.IsPathFullyQualified(file))
                result[k] = JsonValue.Create(Path.GetFullPath(file)).ToJsonString();
        return result;
    }

    private static void Walk(JsonNode? node, string path, Dictionary<string, string?> into)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o) Walk(v, path.Length == 0 ? k : $"{path}:{k}", into);
                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++) Walk(a[i], $"{path}:{i}", into);
                if (a.Count == 0) into[path] = "[]";
                break;
            default:
                into[path] = node?.ToJsonString();
                break;
        }
    }
}
