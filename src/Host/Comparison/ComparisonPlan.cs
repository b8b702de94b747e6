using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace HierDistill.Host.Comparison;

/// <summary>A comparison's command line or file cannot be used; every problem is listed (exit code 2).</summary>
public sealed class ComparisonException(IReadOnlyList<string> errors)
    : Exception(string.Join(Environment.NewLine, errors))
{
    /// <summary>The problems, each naming the argument or key at fault.</summary>
    public IReadOnlyList<string> Errors { get; } = errors;
}

/// <summary>One variant of a comparison: a set of overrides applied to the base config.</summary>
/// <param name="Name">Human-readable label, e.g. <c>hd-gap</c> or <c>detail.discriminator.type=gap</c>.</param>
/// <param name="Folder">Its sub-folder of the comparison folder (letters, digits, '.', '_', '-').</param>
/// <param name="Overrides">Its own <c>key=value</c> overrides, applied after the comparison's common ones.</param>
public sealed record ComparisonVariant(string Name, string Folder, IReadOnlyList<string> Overrides);

/// <summary>
/// What <c>hierdistill compare</c> runs: the base config, the variants (the cartesian product of named variants from a
/// comparison file and the <c>--vary</c> values), the seeds and the output folder.
/// </summary>
/// <remarks>
/// A <b>comparison file</b> is a JSON object (comments allowed) with a top-level <c>variants</c> section:
/// <code>
/// {
///   "config": "hd.json",                  // the base run config, relative to this file (required)
///   "outputDir": "runs/toy2d-compare",    // default runs/&lt;file name&gt;
///   "seeds": 3,                           // runs per variant, run.seed = base seed + 0 .. seeds-1 (default 1)
///   "set": { "run:threads": 2 },          // overrides for every run
///   "vary": { "stages:detail:adversarialWeight": [0.1, 0.2] },   // like --vary
///   "variants": {                         // name -> overrides (key path -> JSON value)
///     "hd-gap": { "stages:detail:discriminator:type": "gap" },
///     "consistency": { "stages:structure:distiller": { "type": "consistency" }, "stages:detail:enabled": false }
///   }
/// }
/// </code>
/// Each <c>key: value</c> is one <c>--set key=value</c>: an object or list replaces the whole entry, <c>null</c> removes it.
/// </remarks>
public sealed class ComparisonPlan
{
    private static readonly JsonDocumentOptions Lenient = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
    /// <summary>Whether <paramref name="path"/> is a comparison file (a JSON object with <c>variants</c>), not a run config.</summary>
    public static bool IsComparisonFile(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path), documentOptions: Lenient) is JsonObject o && o.ContainsKey("variants");
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static readonly string[] FileKeys = ["config", "outputDir", "seeds", "set", "vary", "variants"];

    /// <summary>The base run config (full path).</summary>
    public required string BaseConfig { get; init; }

    /// <summary>The comparison file, or null when the command line named a run config.</summary>
    public string? ComparisonFile { get; init; }

    /// <summary>The comparison folder, or null for the default (decided once the base config is read).</summary>
    public string? OutputDir { get; init; }

    /// <summary>Runs per variant.</summary>
    public required int Seeds { get; init; }

    /// <summary>Overrides of every run from the comparison file's <c>set</c> (applied first, before the variant's own).</summary>
    public required IReadOnlyList<string> CommonOverrides { get; init; }

    /// <summary>
    /// The command line's <c>--set</c>: applied to every run after the file's <c>set</c> and the variant's overrides, so that
    /// the command line wins (e.g. shrinking every variant's step count).
    /// </summary>
    public IReadOnlyList<string> CommandLineOverrides { get; init; } = [];

    /// <summary>The overrides of one variant's run, in the order they apply: file <c>set</c>, variant, command-line <c>--set</c>.</summary>
    public IReadOnlyList<string> OverridesOf(ComparisonVariant variant) => [.. CommonOverrides, .. variant.Overrides, .. CommandLineOverrides];

    /// <summary>
    /// The command-line <c>--set</c> values (applied after a variant's overrides) that replace what
    /// <paramref name="variantOverride"/> sets (<paramref name="variantOverride"/>'s key; the last one wins) or change part of
    /// it (a key inside it, <c>...:discriminator:type</c> for <c>...:discriminator</c>, or a section holding it).
    /// </summary>
    public (IReadOnlyList<string> Replacing, IReadOnlyList<string> Changing) OverriddenBy(string variantOverride)
    {
        string key = KeyOf(variantOverride);
        var touching = CommandLineOverrides.Where(o => Touches(KeyOf(o), key)).ToList();
        var replacing = touching.Where(o => NormalizeKey(KeyOf(o)) == NormalizeKey(key)).ToList();
        return (replacing, touching.Except(replacing).ToList());
    }

    /// <summary>The overrides every run shares: file <c>set</c>, then command-line <c>--set</c>.</summary>
    public IReadOnlyList<string> SharedOverrides => [.. CommonOverrides, .. CommandLineOverrides];

    /// <summary>The variants, in run order.</summary>
    public required IReadOnlyList<ComparisonVariant> Variants { get; init; }

    /// <summary>What was varied, for the report (e.g. <c>stages:detail:discriminator:type = awd, gap</c>).</summary>
    public required IReadOnlyList<string> Varied { get; init; }

    /// <summary>Builds the plan from the command line.</summary>
    /// <param name="config">A run config or a comparison file.</param>
    /// <param name="vary"><c>--vary key=a,b,c</c> arguments (values split at top-level commas; JSON lists and objects stay whole).</param>
    /// <param name="set"><c>--set key=value</c> arguments.</param>
    /// <param name="seeds"><c>--seeds</c>, or null for the file's value (default 1).</param>
    /// <param name="output"><c>--output</c>, or null for the file's value or the default.</param>
    /// <exception cref="ComparisonException">With every problem found.</exception>
    public static ComparisonPlan Create(string config, IReadOnlyList<string> vary, IReadOnlyList<string> set, int? seeds, string? output)
    {
        var errors = new List<string>();
        string full = Path.GetFullPath(config);
        if (!File.Exists(full)) throw new ComparisonException([Configuration.ConfigDocument.NotFound(full)]);

        JsonObject? file = null;
        try
        {
            file = JsonNode.Parse(File.ReadAllText(full), documentOptions: Lenient) as JsonObject;
        }
        catch (JsonException e)
        {
            throw new ComparisonException([$"{full}: malformed JSON at line {(e.LineNumber ?? 0) + 1}: {e.Message.Split(" Path:")[0].Split(" LineNumber:")[0]}"]);
        }
        bool isComparisonFile = file is not null && file.ContainsKey("variants");

        string baseConfig = full;
        string? outputDir = output;
        int seedCount = seeds ?? 1;
        var common = new List<string>();
        var named = new List<(string Name, List<string> Overrides)>();
        var varyEntries = new List<(string Key, List<string> Values, string Source)>();
        if (isComparisonFile)
        {
            foreach (var (key, _) in file!)
                if (!FileKeys.Contains(key))
                    errors.Add($"{key}: unknown key of a comparison file; allowed: {string.Join(", ", FileKeys)}.");
            if (file["config"] is JsonValue c && c.TryGetValue(out string? basePath) && !string.IsNullOrWhiteSpace(basePath))
            {
                baseConfig = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(full)!, basePath));
                if (!File.Exists(baseConfig)) errors.Add($"config: base config not found: {baseConfig}");
            }
            else
            {
                errors.Add("config: is required: the path of the base run config, relative to the comparison file (e.g. \"hd.json\").");
            }
            if (outputDir is null && file["outputDir"] is { } o)
            {
                if (o is JsonValue ov && ov.TryGetValue(out string? dir) && !string.IsNullOrWhiteSpace(dir)) outputDir = dir;
                else errors.Add("outputDir: must be a folder path (a string).");
            }
            outputDir ??= Path.Combine("runs", Path.GetFileNameWithoutExtension(full));
            if (seeds is null && file["seeds"] is { } s)
            {
                if (s is JsonValue sv && sv.TryGetValue(out int n)) seedCount = n;
                else errors.Add("seeds: must be a whole number ≥ 1.");
            }
            if (file["set"] is { } commonSet)
            {
                if (commonSet is JsonObject so) common.AddRange(so.Select(kv => ToOverride(kv.Key, kv.Value)));
                else errors.Add("set: must be an object of key paths and values, e.g. { \"run:threads\": 2 }.");
            }
            if (file["vary"] is { } fileVary)
            {
                if (fileVary is JsonObject vo)
                {
                    foreach (var (key, values) in vo)
                    {
                        if (values is JsonArray list && list.Count > 0)
                            varyEntries.Add((key, list.Select(ValueText).ToList(), $"vary:{key}"));
                        else
                            errors.Add($"vary:{key}: must be a non-empty list of values.");
                    }
                }
                else
                {
                    errors.Add("vary: must be an object of key paths and lists of values, e.g. { \"stages:detail:adversarialWeight\": [0.1, 0.2] }.");
                }
            }
            if (file["variants"] is JsonObject variants && variants.Count > 0)
            {
                foreach (var (name, body) in variants)
                {
                    if (!name.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-'))
                        errors.Add($"variants:{name}: variant names must be letters, digits, '.', '_' or '-'.");
                    else if (name.Equals(ComparisonTable.SharedVariant, StringComparison.OrdinalIgnoreCase))
                        errors.Add($"variants:{name}: the name is reserved for the rows every variant shares (the teacher and the data floor); choose another.");
                    else if (body is JsonObject overrides)
                        named.Add((name, overrides.Select(kv => ToOverride(kv.Key, kv.Value)).ToList()));
                    else
                        errors.Add($"variants:{name}: must be an object of key paths and values ({{}} for the base config as it is).");
                }
            }
            else
            {
                errors.Add("variants: must be an object of named variants, e.g. { \"hd-gap\": { \"stages:detail:discriminator:type\": \"gap\" } }.");
            }
        }
        foreach (var v in vary)
        {
            int eq = v.IndexOf('=');
            if (eq <= 0)
            {
                errors.Add($"--vary '{v}' is not key=value1,value2,... (e.g. stages:detail:discriminator:type=awd,gap).");
                continue;
            }
            var values = SplitValues(v[(eq + 1)..]);
            if (values.Count == 0 || values.Any(x => x.Length == 0))
                errors.Add($"--vary '{v}': every value must be non-empty; separate values with commas.");
            else
                varyEntries.Add((v[..eq].Trim(), values.ToList(), $"--vary {v[..eq].Trim()}"));
        }
        foreach (var group in varyEntries.GroupBy(e => NormalizeKey(e.Key)).Where(g => g.Count() > 1))
            errors.Add($"{group.First().Source}: the key is varied more than once; give all its values in one list.");
        if (seedCount < 1 || seedCount > 1000) errors.Add($"seeds: {seedCount} is out of range; allowed 1 .. 1000.");
        // compare sets these per run itself, after every override: varying them would change nothing but the labels.
        var perRun = new Dictionary<string, string>
        {
            ["run:seed"] = "compare sets each run's seed from --seeds (seeds 0, 1, … after the base config's run.seed); vary seeds with --seeds, or set the first one with --set run.seed=N",
            ["run:name"] = "compare names each run after its variant and seed",
            ["run:outputdir"] = "compare puts each run in <output>/<variant>/seed-<seed>; choose the comparison folder with --output",
        };
        foreach (var (key, _, source) in varyEntries)
            if (perRun.TryGetValue(NormalizeKey(key), out var why)) errors.Add($"{source}: {why}.");
        foreach (var (name, overrides) in named)
            foreach (var key in overrides.Select(KeyOf))
                if (perRun.TryGetValue(NormalizeKey(key), out var why)) errors.Add($"variants:{name}:{key}: {why}.");
        // A command-line --set of a varied key would give every variant the same value.
        foreach (var key in set.Select(KeyOf))
            if (varyEntries.FirstOrDefault(e => NormalizeKey(e.Key) == NormalizeKey(key)) is { Key: not null } e)
                errors.Add($"--set {key}: the key is varied ({e.Source}); a --set of it would give every variant the same value. Drop one of the two.");
        if (errors.Count > 0) throw new ComparisonException(errors);

        // The cartesian product: named variants (slowest), then each varied key in order.
        var combos = new List<(List<string> Names, List<string> Folders, List<string> Overrides)>();
        if (named.Count > 0) combos.AddRange(named.Select(n => (new List<string> { n.Name }, new List<string> { n.Name }, n.Overrides)));
        else combos.Add(([], [], []));
        foreach (var (key, values, _) in varyEntries)
        {
            string shortKey = ShortKey(key);
            combos = combos.SelectMany(c => values.Select(value =>
                (new List<string>(c.Names) { $"{shortKey}={Label(value)}" },
                 new List<string>(c.Folders) { Sanitize($"{shortKey}-{value}") },
                 new List<string>(c.Overrides) { $"{key}={value}" }))).ToList();
        }
        var used = new HashSet<string>(StringComparer.OrdinalIgnoreCase) { "teacher" };
        var result = new List<ComparisonVariant>();
        foreach (var (names, folders, overrides) in combos)
        {
            string name = names.Count == 0 ? "base" : string.Join(", ", names);
            string folder = folders.Count == 0 ? "base" : string.Join("_", folders);
            if (folder.Length > 80) folder = folder[..72] + "-" + Hash(folder);
            string unique = folder;
            for (int i = 2; !used.Add(unique); i++) unique = $"{folder}-{i}";
            result.Add(new ComparisonVariant(name, unique, overrides));
        }
        return new ComparisonPlan
        {
            BaseConfig = baseConfig,
            ComparisonFile = isComparisonFile ? full : null,
            OutputDir = outputDir,
            Seeds = seedCount,
            CommonOverrides = common,
            CommandLineOverrides = set.ToList(),
            Variants = result,
            Varied = varyEntries.Select(e => $"{e.Key} = {string.Join(", ", e.Values)}").ToList(),
        };
    }

    /// <summary>
    /// Splits <c>a,b,c</c> at commas outside brackets, braces and double quotes, so that JSON values stay whole:
    /// <c>[1,2],[4,8]</c> is two lists and <c>{"type":"awd"},{"type":"gap"}</c> two objects. Values are trimmed.
    /// </summary>
    public static IReadOnlyList<string> SplitValues(string text)
    {
        var values = new List<string>();
        var current = new StringBuilder();
        int depth = 0;
        bool quoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char ch = text[i];
            if (quoted)
            {
                if (ch == '\\' && i + 1 < text.Length) current.Append(ch).Append(text[++i]);
                else
                {
                    if (ch == '"') quoted = false;
                    current.Append(ch);
                }
                continue;
            }
            switch (ch)
            {
                case '"': quoted = true; break;
                case '[' or '{': depth++; break;
                case ']' or '}': depth = Math.Max(0, depth - 1); break;
                case ',' when depth == 0:
                    values.Add(current.ToString().Trim());
                    current.Clear();
                    continue;
            }
            current.Append(ch);
        }
        values.Add(current.ToString().Trim());
        return values;
    }

    /// <summary>A key path in the form configs compare by: levels separated by ':', lower case.</summary>
    public static string NormalizeKey(string key) => key.Trim().Replace('.', ':').ToLowerInvariant();

    /// <summary>
    /// Whether an override of <paramref name="key"/> changes something at or below <paramref name="path"/> (or replaces a
    /// section holding it): <c>stages:teacher:training:steps</c> and <c>stages</c> both touch <c>stages:teacher</c>.
    /// </summary>
    public static bool Touches(string key, string path)
    {
        string k = NormalizeKey(key), p = NormalizeKey(path);
        return k == p || k.StartsWith(p + ":", StringComparison.Ordinal) || p.StartsWith(k + ":", StringComparison.Ordinal);
    }

    /// <summary>The key of a <c>key=value</c> override.</summary>
    public static string KeyOf(string assignment) => assignment[..Math.Max(0, assignment.IndexOf('='))];

    private static string ToOverride(string key, JsonNode? value) => $"{key}={ValueText(value)}";

    /// <summary>An override's value text: strings as they are, null as <c>null</c>, anything else as JSON.</summary>
    private static string ValueText(JsonNode? value) => value switch
    {
        null => "null",
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => value.ToJsonString(),
    };

    private static string ShortKey(string key)
    {
        string k = key.Trim().Replace(':', '.');
        return k.StartsWith("stages.", StringComparison.OrdinalIgnoreCase) ? k["stages.".Length..] : k;
    }

    /// <summary>A varied value as it appears in a variant's name: a JSON string literal (<c>"awd"</c>, the quoted form
    /// <c>--vary</c> also accepts) without its quotes, anything else as given.</summary>
    private static string Label(string value)
    {
        string v = value.Trim();
        if (v.Length < 2 || v[0] != '"' || v[^1] != '"') return value;
        try
        {
            return JsonSerializer.Deserialize<string>(v) ?? value;
        }
        catch (JsonException)
        {
            return value;
        }
    }

    /// <summary>A folder name: letters, digits, '.', '_' and '-'; anything else becomes '-'.</summary>
    private static string Sanitize(string text)
    {
        var sb = new StringBuilder();
        foreach (char ch in text)
        {
            char c = char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-' ? ch : '-';
            if (c == '-' && sb.Length > 0 && sb[^1] == '-') continue;
            sb.Append(c);
        }
        string s = sb.ToString().Trim('-', '.');
        return s.Length == 0 ? "v" : s;
    }

    private static string Hash(string text) =>
        Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..7].ToLowerInvariant();
}
