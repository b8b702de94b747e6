using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
using HierDistill.Host.Configuration;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Configuration;

/// <summary>
/// docs/configuration.md stays true to the config classes: every key a config can hold (outside component options) is a row of
/// the table of its section, no row names a key that is gone, and the defaults and ranges the tables give as plain values
/// (<c>`1000`</c>, <c>`0 .. 100000000`</c>) are those of the property initialisers and <see cref="RangeAttribute"/>s.
/// </summary>
public partial class ConfigurationDocTests
{
    private static string DocPath => Path.Combine(TestPaths.RepositoryRoot, "docs", "configuration.md");

    /// <summary>One section of config keys: its key path (for messages), its class, its keys and keys that are no property.</summary>
    private sealed record Section(string Path, Type Type, IReadOnlyList<PropertyInfo> Properties, IReadOnlyList<string> ExtraKeys)
    {
        public IEnumerable<string> Keys => Properties.Select(p => ConfigValidator.CamelCase(p.Name)).Concat(ExtraKeys);
    }

    /// <summary>A table row of the doc: the key (first cell's code span) and the cells.</summary>
    private sealed record Row(string Key, IReadOnlyList<string> Cells);

    /// <summary>
    /// The sections of a config: the top level (with <c>extends</c>, <c>provenance</c> and <c>Serilog</c>, which the loader reads
    /// itself), the keys of every stage, each stage kind's own keys, and every nested options class below them. Component values
    /// (their options are listed by <c>hierdistill plugins</c>), lists and dictionaries are keys, not sections.
    /// </summary>
    private static List<Section> Sections()
    {
        var sections = new List<Section>();
        var seen = new HashSet<Type>();

        void Visit(Type type, string path, bool declaredOnly, IReadOnlyList<string> extra)
        {
            if (!seen.Add(type)) return;
            var flags = BindingFlags.Public | BindingFlags.Instance | (declaredOnly ? BindingFlags.DeclaredOnly : 0);
            var properties = type.GetProperties(flags)
                .Where(p => p.CanWrite && p.SetMethod!.IsPublic && p.GetIndexParameters().Length == 0)
                .ToList();
            sections.Add(new Section(path, type, properties, extra));
            foreach (var p in properties)
            {
                var t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
                bool leaf = t == typeof(ComponentConfig) || t.IsPrimitive || t.IsEnum || t == typeof(string) || t == typeof(decimal)
                            || typeof(IEnumerable).IsAssignableFrom(t);
                if (!leaf && t.IsClass) Visit(t, ConfigValidator.Join(path, ConfigValidator.CamelCase(p.Name)), declaredOnly: false, []);
            }
        }

        Visit(typeof(HierDistillConfig), "", declaredOnly: false, [ConfigLoader.ExtendsKey, ConfigLoader.ProvenanceKey, "Serilog"]);
        Visit(typeof(StageConfig), "stages:<name>", declaredOnly: false, []);
        // Each kind's own keys (the ones of every stage are StageConfig's section).
        foreach (var (kind, type) in StageKinds.Types) Visit(type, $"stages:<{kind} stage>", declaredOnly: true, []);
        return sections;
    }

    /// <summary>The doc's tables: runs of lines starting with '|', header and separator left out, rows keyed by a code span.</summary>
    private static List<List<Row>> Tables(string doc)
    {
        var tables = new List<List<Row>>();
        List<Row>? current = null;
        int line = 0;
        foreach (var raw in doc.Split('\n'))
        {
            string text = raw.Trim();
            if (!text.StartsWith('|'))
            {
                current = null;
                continue;
            }
            if (current is null)
            {
                current = [];
                tables.Add(current);
                line = 0;
            }
            if (line++ < 2) continue; // header, separator
            var cells = text.Trim('|').Split('|').Select(c => c.Trim()).ToList();
            if (SingleCodeSpan(cells[0]) is { } key) current.Add(new Row(key, cells));
        }
        return tables;
    }

    /// <summary>The table that documents <paramref name="section"/>: the one sharing the most keys with it (null: none shares any).</summary>
    private static List<Row>? TableOf(Section section, List<List<Row>> tables)
    {
        var keys = section.Keys.ToHashSet(StringComparer.Ordinal);
        var best = tables.MaxBy(t => t.Count(r => keys.Contains(r.Key)));
        return best is not null && best.Any(r => keys.Contains(r.Key)) ? best : null;
    }

    [Fact]
    public void Every_config_key_is_a_row_of_its_section_table_and_every_row_is_a_key()
    {
        string doc = File.ReadAllText(DocPath);
        var tables = Tables(doc);
        var missing = new List<string>();
        var stale = new List<string>();
        foreach (var section in Sections())
        {
            var table = TableOf(section, tables);
            var documented = table?.Select(r => r.Key).ToHashSet(StringComparer.Ordinal) ?? [];
            missing.AddRange(section.Keys.Where(k => !documented.Contains(k)).Select(k => $"{ConfigValidator.Join(section.Path, k)} ({section.Type.Name})"));
            if (table is not null)
                stale.AddRange(documented.Except(section.Keys, StringComparer.Ordinal).Select(k => $"{ConfigValidator.Join(section.Path, k)} ({section.Type.Name})"));
        }
        // Each stage kind has its own part, headed "kind: <kind>".
        missing.AddRange(StageKinds.Types.Keys.Where(k => !doc.Contains($"### kind: {k}", StringComparison.Ordinal))
            .Select(k => $"the section '### kind: {k}'"));

        Assert.True(missing.Count == 0 && stale.Count == 0,
            $"{missing.Count} config key(s) missing from the tables of {DocPath}:\n  " + string.Join("\n  ", missing) +
            $"\n{stale.Count} row(s) of it name no key of their section's class:\n  " + string.Join("\n  ", stale));
    }

    [Fact]
    public void Documented_defaults_ranges_and_enum_values_are_those_of_the_code()
    {
        var tables = Tables(File.ReadAllText(DocPath));
        var wrong = new List<string>();
        foreach (var section in Sections())
        {
            if (TableOf(section, tables) is not { } table) continue; // reported by the other test
            // Defaults of a fresh instance; the keys of every stage are read from a concrete kind.
            var type = section.Type.IsAbstract ? StageKinds.Types.Values.First(t => t.IsSubclassOf(section.Type)) : section.Type;
            object instance = Activator.CreateInstance(type)!;
            foreach (var p in section.Properties)
            {
                string key = ConfigValidator.CamelCase(p.Name);
                if (table.FirstOrDefault(r => r.Key == key) is not { Cells.Count: >= 4 } row) continue;
                string where = ConfigValidator.Join(section.Path, key);

                // Default: checked where the cell is one plain value.
                if (SingleCodeSpan(row.Cells[2]) is { } documented && p.GetValue(instance) is { } value && !SameValue(documented, value))
                    wrong.Add($"{where}: default documented as '{documented}', the code's is '{Show(value)}'");

                // Range: the cell gives `min .. max` (or "≥ min" for an unbounded maximum).
                if (p.GetCustomAttribute<RangeAttribute>() is { } range)
                {
                    double min = Convert.ToDouble(range.Minimum, CultureInfo.InvariantCulture);
                    double max = Convert.ToDouble(range.Maximum, CultureInfo.InvariantCulture);
                    var match = RangeSpan().Match(row.Cells[3]);
                    bool ok = match.Success
                        ? Near(Number(match.Groups[1].Value), min) && Near(Number(match.Groups[2].Value), max)
                        : max >= long.MaxValue && row.Cells[3].Contains($"≥ {Show(range.Minimum)}", StringComparison.Ordinal);
                    if (!ok) wrong.Add($"{where}: allowed documented as '{row.Cells[3]}', the code's range is {Show(range.Minimum)} .. {Show(range.Maximum)}");
                }

                // Enum: every value listed.
                var t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
                if (t.IsEnum)
                    foreach (var name in Enum.GetNames(t).Select(ConfigValidator.CamelCase))
                        if (!row.Cells[3].Contains($"`{name}`", StringComparison.Ordinal))
                            wrong.Add($"{where}: allowed values lack `{name}`");
            }
        }
        Assert.True(wrong.Count == 0, $"{wrong.Count} difference(s) between {DocPath} and the code:\n  " + string.Join("\n  ", wrong));
    }

    /// <summary>The text of a cell that is exactly one code span (<c>`x`</c>), else null.</summary>
    private static string? SingleCodeSpan(string cell)
    {
        var m = CodeSpan().Match(cell);
        return m.Success ? m.Groups[1].Value : null;
    }

    private static bool SameValue(string documented, object value) => value switch
    {
        bool b => documented == (b ? "true" : "false"),
        Enum e => string.Equals(documented, e.ToString(), StringComparison.OrdinalIgnoreCase),
        string s => documented == s,
        IEnumerable list => documented.Replace(" ", "") == "[" + string.Join(",", list.Cast<object>().Select(Show)) + "]",
        IConvertible c when c.GetTypeCode() is >= TypeCode.SByte and <= TypeCode.Decimal =>
            double.TryParse(documented, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && Near(d, c.ToDouble(CultureInfo.InvariantCulture)),
        _ => true, // a section: not a plain value
    };

    private static double Number(string text) => double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);

    private static bool Near(double a, double b) => a == b || Math.Abs(a - b) <= 1e-12 * Math.Max(Math.Abs(a), Math.Abs(b));

    private static string Show(object? value) => value switch
    {
        null => "null",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    [GeneratedRegex(@"^`([^`]+)`$")]
    private static partial Regex CodeSpan();

    [GeneratedRegex(@"`(-?[0-9][0-9.eE+-]*) \.\. (-?[0-9][0-9.eE+-]*)`")]
    private static partial Regex RangeSpan();
}
