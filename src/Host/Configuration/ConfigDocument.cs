using System.Text.Json;
using System.Text.Json.Nodes;

namespace HierDistill.Host.Configuration;

/// <summary>
/// Builds the one JSON document a run uses from a config file, the configs it <c>extends</c> and the command-line
/// overrides. Objects merge key by key (case-insensitively); a list or a value replaces the inherited one wholesale
/// (no merging of lists by index); <c>null</c> removes the inherited key (e.g. <c>"discriminator": null</c>).
/// </summary>
public static class ConfigDocument
{
    /// <summary>The key with which a config names the config it extends.</summary>
    public const string ExtendsKey = "extends";

    private static readonly JsonDocumentOptions Lenient = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
    private static readonly JsonNodeOptions CaseInsensitive = new() { PropertyNameCaseInsensitive = true };

    /// <summary>Merges <paramref name="path"/>'s extends-chain and applies <paramref name="overrides"/> (<c>key=value</c>).</summary>
    /// <exception cref="ConfigException">For a missing file, malformed JSON (with file, line and column), an extends cycle or a malformed override.</exception>
    public static JsonObject Load(string path, IEnumerable<string>? overrides)
    {
        var chain = new List<(string Path, JsonObject Json)>();
        Collect(path, chain, path);
        var merged = new JsonObject(CaseInsensitive);
        foreach (var (_, json) in chain) Merge(merged, json, path);
        merged.Remove(ExtendsKey);

        var errors = new List<ConfigError>();
        foreach (var o in overrides ?? [])
        {
            if (OverrideKey(o) is not { } key)
            {
                errors.Add(new ConfigError("--set", $"'{o}' is not key=value (e.g. stages:detail:enabled=false)."));
                continue;
            }
            if (key.Equals(ExtendsKey, StringComparison.OrdinalIgnoreCase))
            {
                // The base configs are read before the overrides apply: an override of extends would be ignored, silently.
                errors.Add(new ConfigError(ExtendsKey, "cannot be set with --set (the base configs are read before the overrides); " +
                                                       "write a config file with \"extends\": \"<base>\" and run that."));
                continue;
            }
            int eq = o.IndexOf('=');
            if (Apply(merged, key, o[(eq + 1)..]) is { } problem) errors.Add(new ConfigError(key, problem));
        }
        if (errors.Count > 0) throw new ConfigException(path, errors);
        return merged;
    }

    /// <summary>
    /// Where <paramref name="keyPath"/>'s value comes from: an override (the key or a level above it), else the file nearest
    /// to <paramref name="path"/> in its extends-chain that sets it. For messages about keys a user never wrote, such as a
    /// base config's options left under a swapped component.
    /// </summary>
    /// <returns>The file's full path (<paramref name="path"/>'s own or a base config's), or null when an override sets it,
    /// when no file does, or when the chain cannot be read.</returns>
    public static string? SetBy(string path, IEnumerable<string>? overrides, string keyPath)
    {
        var segments = keyPath.Split(':');
        if (OverrideKeys(overrides).Any(set => set.Length <= segments.Length &&
                                               set.Zip(segments).All(p => p.First.Equals(p.Second, StringComparison.OrdinalIgnoreCase))))
            return null;
        var chain = new List<(string Path, JsonObject Json)>();
        try
        {
            Collect(path, chain, path);
        }
        catch (ConfigException)
        {
            return null;
        }
        for (int i = chain.Count - 1; i >= 0; i--)
            if (Has(chain[i].Json, segments)) return chain[i].Path;
        return null;
    }

    /// <summary>The keys of <c>key=value</c> overrides, split into levels (malformed ones left out).</summary>
    public static IEnumerable<string[]> OverrideKeys(IEnumerable<string>? overrides) =>
        (overrides ?? []).Select(OverrideKey).OfType<string>().Select(k => k.Split(':', StringSplitOptions.TrimEntries));

    /// <summary>The key of a <c>key=value</c> override with <c>.</c> read as <c>:</c>, or null when it is not key=value.</summary>
    private static string? OverrideKey(string o)
    {
        int eq = o.IndexOf('=');
        return eq <= 0 ? null : o[..eq].Trim().Replace('.', ':');
    }

    private static bool Has(JsonNode? node, string[] segments)
    {
        foreach (var segment in segments)
        {
            node = node switch
            {
                JsonObject o => o.TryGetPropertyValue(segment, out var child) ? child ?? JsonValue.Create("null") : null,
                JsonArray a when int.TryParse(segment, out int i) && i >= 0 && i < a.Count => a[i],
                _ => null,
            };
            if (node is null) return false;
        }
        return true;
    }

    /// <summary>
    /// Why <paramref name="full"/> (a config path that is no file) cannot be read: a run folder names its
    /// <c>config.resolved.json</c>, another folder the JSON files it holds.
    /// </summary>
    internal static string NotFound(string full)
    {
        if (!Directory.Exists(full)) return $"config file not found: {full}";
        string resolved = Path.Combine(full, Storage.RunFolder.ResolvedConfigFile);
        if (File.Exists(resolved))
            return $"{full} is a run folder, not a config file; its config is {resolved} (to continue a stopped run: " +
                   $"hierdistill run {resolved} --resume {full}).";
        var json = Directory.EnumerateFiles(full, "*.json").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        return $"{full} is a folder, not a config file" +
               (json.Count > 0 ? $"; name one of its configs: {Messages.FirstOf(json, 6)}." : ".");
    }

    private static void Collect(string path, List<(string Path, JsonObject Json)> chain, string source)
    {
        string full = Path.GetFullPath(path);
        if (!File.Exists(full))
            throw new ConfigException(source, [new ConfigError(chain.Count == 0 ? "" : ExtendsKey, NotFound(full))]);
        if (chain.Any(c => c.Path == full))
            throw new ConfigException(source, [new ConfigError(ExtendsKey, $"{full} extends itself through a cycle.")]);
        string where = chain.Count == 0 ? "" : $"{full}: ";
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(full), CaseInsensitive, Lenient);
        }
        catch (JsonException e)
        {
            long line = (e.LineNumber ?? 0) + 1, column = (e.BytePositionInLine ?? 0) + 1;
            string reason = e.Message.Split(" Path:")[0].Split(" LineNumber:")[0];
            throw new ConfigException(source, [new ConfigError("", $"{where}malformed JSON at line {line}, column {column}: {reason}")]);
        }
        if (node is not JsonObject json)
            throw new ConfigException(source, [new ConfigError("", $"{where}the config must be a JSON object {{ ... }}.")]);
        chain.Insert(0, (full, json));
        try
        {
            if (json.TryGetPropertyValue(ExtendsKey, out var extends) && extends is not null)
            {
                if (extends is not JsonValue v || !v.TryGetValue(out string? basePath) || string.IsNullOrWhiteSpace(basePath))
                    throw new ConfigException(source, [new ConfigError(ExtendsKey, "must be the path of a base config (a string).")]);
                Collect(Path.Combine(Path.GetDirectoryName(full)!, basePath), chain, source);
            }
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(source, [new ConfigError("", $"{where}{e.Message.TrimEnd('.')} (a key appears twice).")]);
        }
    }

    /// <summary>Merges <paramref name="source"/> into <paramref name="target"/>: objects recursively, everything else replaced, null removes.</summary>
    private static void Merge(JsonObject target, JsonObject source, string origin)
    {
        List<KeyValuePair<string, JsonNode?>> items;
        try
        {
            items = source.ToList();
        }
        catch (ArgumentException e)
        {
            throw new ConfigException(origin, [new ConfigError("", $"{e.Message.TrimEnd('.')} (a key appears twice).")]);
        }
        foreach (var (key, value) in items)
        {
            if (value is null)
            {
                target.Remove(key);
                continue;
            }
            if (value is JsonObject child && target[key] is JsonObject existing)
            {
                Merge(existing, child, origin);
                continue;
            }
            target.Remove(key);
            target[key] = Clone(value);
        }
    }

    private static JsonNode Clone(JsonNode node) => JsonNode.Parse(node.ToJsonString(), CaseInsensitive, Lenient)!;

    /// <summary>Sets <paramref name="key"/> (levels separated by ':'; a number indexes a list) to <paramref name="text"/>.</summary>
    /// <returns>A problem description, or null when applied.</returns>
    private static string? Apply(JsonObject root, string key, string text)
    {
        var segments = key.Split(':', StringSplitOptions.TrimEntries);
        if (segments.Any(s => s.Length == 0)) return "the key has an empty level.";
        JsonNode? value;
        string trimmed = text.Trim();
        // A JSON list or object, or a JSON string in double quotes ("null" is the text null, not a removal).
        if (trimmed.StartsWith('[') || trimmed.StartsWith('{') || (trimmed.Length >= 2 && trimmed.StartsWith('"') && trimmed.EndsWith('"')))
        {
            try
            {
                value = JsonNode.Parse(trimmed, CaseInsensitive, Lenient);
            }
            catch (JsonException e)
            {
                return $"'{text}' looks like JSON but is not valid: {e.Message.Split(" Path:")[0].Split(" LineNumber:")[0]}";
            }
        }
        else
        {
            value = trimmed == "null" ? null : JsonValue.Create(text);
        }

        JsonNode current = root;
        for (int i = 0; i < segments.Length; i++)
        {
            string segment = segments[i];
            bool last = i == segments.Length - 1;
            if (current is JsonArray array)
            {
                if (!int.TryParse(segment, out int index) || index < 0 || index > array.Count)
                    return $"'{segment}' is not an index of the list at this level (0 to {array.Count}).";
                if (last)
                {
                    if (value is null) return "null cannot remove one list entry; set the whole list, e.g. key=[1, 2].";
                    if (index == array.Count) array.Add(value);
                    else array[index] = value;
                    return null;
                }
                if (index == array.Count) array.Add(new JsonObject(CaseInsensitive));
                current = array[index] ??= new JsonObject(CaseInsensitive);
                continue;
            }
            var obj = (JsonObject)current;
            if (last)
            {
                obj.Remove(segment);
                if (value is not null) obj[segment] = value;
                return null;
            }
            var next = obj[segment];
            if (next is not JsonObject and not JsonArray)
            {
                next = new JsonObject(CaseInsensitive);
                obj.Remove(segment);
                obj[segment] = next;
            }
            current = next;
        }
        return null;
    }
}
