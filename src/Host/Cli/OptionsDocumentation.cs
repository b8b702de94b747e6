using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using System.Xml.Linq;
using HierDistill.Host.Configuration;

namespace HierDistill.Host;

/// <summary>One option of a component, as <c>hierdistill plugins</c> lists it.</summary>
public sealed record OptionDoc(string Name, string Type, string Default, string Allowed, string Summary);

/// <summary>Describes an options type from reflection (names, types, defaults, ranges) and its XML documentation.</summary>
public static class OptionsDocumentation
{
    /// <summary>Every settable option of <paramref name="optionsType"/> with its default.</summary>
    public static IReadOnlyList<OptionDoc> Describe(Type optionsType)
    {
        object? defaults;
        try
        {
            defaults = Activator.CreateInstance(optionsType);
        }
        catch (MissingMethodException)
        {
            defaults = null;
        }
        var result = new List<OptionDoc>();
        Describe(optionsType, defaults, "", result);
        return result;
    }

    /// <summary>Adds the options of <paramref name="type"/> (nested sections as <c>section.key</c>) with the defaults read from <paramref name="defaults"/>.</summary>
    private static void Describe(Type type, object? defaults, string prefix, List<OptionDoc> result)
    {
        var docs = ReadXmlDocs(type.Assembly);
        foreach (var p in ConfigValidator.SettableProperties(type))
        {
            var nested = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            if (nested.IsClass && nested != typeof(string) && !typeof(IEnumerable).IsAssignableFrom(nested))
            {
                Describe(nested, defaults is null ? null : p.GetValue(defaults), prefix + ConfigValidator.CamelCase(p.Name) + ".", result);
                continue;
            }
            string allowed = string.Join("; ", p.GetCustomAttributes<ValidationAttribute>().Select(a => a switch
            {
                RangeAttribute r => $"{r.Minimum} .. {r.Maximum}",
                RegularExpressionAttribute rx => rx.ErrorMessage ?? rx.Pattern,
                RequiredAttribute => "non-empty",
                _ => a.GetType().Name.Replace("Attribute", ""),
            }));
            if (nested.IsEnum) allowed = string.Join(" | ", Enum.GetNames(nested).Select(ConfigValidator.CamelCase));
            var declaring = p.DeclaringType ?? type;
            var declaringDocs = declaring.Assembly == type.Assembly ? docs : ReadXmlDocs(declaring.Assembly);
            string summary = declaringDocs.TryGetValue($"P:{declaring.FullName}.{p.Name}", out var s) ? s : "";
            result.Add(new OptionDoc(prefix + ConfigValidator.CamelCase(p.Name), TypeName(p.PropertyType),
                Format(defaults is null ? null : p.GetValue(defaults)), allowed, summary));
        }
    }

    private static string TypeName(Type t)
    {
        var u = Nullable.GetUnderlyingType(t);
        if (u is not null) return TypeName(u) + "?";
        if (t == typeof(string)) return "string";
        if (t == typeof(int)) return "int";
        if (t == typeof(long)) return "long";
        if (t == typeof(double)) return "number";
        if (t == typeof(float)) return "number";
        if (t == typeof(bool)) return "bool";
        if (t.IsEnum) return "enum";
        if (ConfigValidator.TryGetListElementType(t, out var e)) return $"list of {TypeName(e)}";
        return t.Name;
    }

    private static string Format(object? v) => v switch
    {
        null => "",
        string s => s,
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        Enum e => ConfigValidator.CamelCase(e.ToString()),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        IEnumerable items => "[" + string.Join(", ", items.Cast<object?>().Select(Format)) + "]",
        _ => v.ToString() ?? "",
    };

    private static Dictionary<string, string> ReadXmlDocs(Assembly assembly)
    {
        var result = new Dictionary<string, string>();
        if (string.IsNullOrEmpty(assembly.Location)) return result;
        string xml = Path.ChangeExtension(assembly.Location, ".xml");
        if (!File.Exists(xml)) return result;
        try
        {
            foreach (var member in XDocument.Load(xml).Descendants("member"))
            {
                var name = member.Attribute("name")?.Value;
                var summary = member.Element("summary");
                if (name is null || summary is null) continue;
                // The <value> part states the default, which the table shows from the options object itself.
                foreach (var v in summary.Descendants("value").ToList()) v.Remove();
                string text = string.Join(" ", summary.DescendantNodes().OfType<XText>().Select(t => t.Value.Trim()).Where(s => s.Length > 0));
                result[name] = System.Text.RegularExpressions.Regex.Replace(text, "\\s+", " ").Trim();
            }
        }
        catch (System.Xml.XmlException)
        {
            // documentation is optional
        }
        return result;
    }
}
