using System.Collections;
using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using HierDistill.Host.Plugins;
using Microsoft.Extensions.Configuration;

namespace HierDistill.Host.Configuration;

/// <summary>One configuration problem: the key path and what is wrong, with what is allowed.</summary>
/// <param name="Path">Key path, <c>:</c>-separated, as written in the config (camelCase).</param>
/// <param name="Message">What is wrong and what is allowed.</param>
public sealed record ConfigError(string Path, string Message)
{
    /// <inheritdoc/>
    public override string ToString() => string.IsNullOrEmpty(Path) ? Message : $"{Path}: {Message}";

    /// <summary>
    /// <paramref name="message"/> as it stands when it names its config path (the host's messages start with <c>stages:</c> or
    /// <c>data:</c>), else prefixed with <c>stages:KEY:</c> of the stage it arose in.
    /// </summary>
    public static string InStage(string key, string message) =>
        message.StartsWith("stages:", StringComparison.Ordinal) || message.StartsWith("data:", StringComparison.Ordinal) ? message : $"stages:{key}: {message}";
}

/// <summary>Thrown when a config has errors; carries all of them.</summary>
public sealed class ConfigException(string source, IReadOnlyList<ConfigError> errors)
    : Exception($"{source}: {errors.Count} configuration error(s):{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", errors))
{
    /// <summary>Every error found.</summary>
    public IReadOnlyList<ConfigError> Errors { get; } = errors;
}

/// <summary>
/// Walks configuration sections against typed options: unknown keys, values of the wrong type,
/// data-annotation and <see cref="IValidatableObject"/> rules, unknown component names (with the
/// known ones and the folders searched), and each component's own options. Collects every error
/// instead of stopping at the first.
/// </summary>
public sealed class ConfigValidator
{
    private readonly ComponentCatalog? _catalog;
    private readonly List<ConfigError> _errors = [];

    /// <summary>Creates a validator; without a catalog, component types and options are not checked.</summary>
    public ConfigValidator(ComponentCatalog? catalog) => _catalog = catalog;

    /// <summary>Errors found so far.</summary>
    public IReadOnlyList<ConfigError> Errors => _errors;

    /// <summary>
    /// Contracts the command at hand does not build (<c>sample</c> and <c>probe</c> build no distiller, matcher or
    /// discriminator): a component of one of them that no loaded plugin registers is a warning, not an error, and its options
    /// are not checked.
    /// </summary>
    public IReadOnlySet<Type> NotBuilt { get; init; } = new HashSet<Type>();

    /// <summary>Warnings found so far (components of <see cref="NotBuilt"/> contracts that are not loaded).</summary>
    public List<string> Warnings { get; } = [];

    /// <summary>Adds an error.</summary>
    public void Add(string path, string message) => _errors.Add(new ConfigError(path, message));

    /// <summary>Validates <paramref name="section"/> against <paramref name="type"/> and returns the bound object (null when it could not be bound).</summary>
    public object? ValidateAndBind(IConfiguration section, Type type, string path, ISet<string>? ignoredKeys = null)
    {
        int before = _errors.Count, componentBefore = _componentErrors;
        CheckStructure(section, type, path, ignoredKeys);
        // Errors inside component options do not stop this section's own checks (every error is reported at once).
        if (_errors.Count - before > _componentErrors - componentBefore)
        {
            CheckReadableValues(section, type, path, before);
            return null;
        }
        object? bound;
        try
        {
            bound = section.Get(type, o => o.BindNonPublicProperties = false) ?? Activator.CreateInstance(type);
        }
        catch (InvalidOperationException e)
        {
            Add(path, e.Message);
            return null;
        }
        if (bound is not null) CheckAnnotations(bound, path);
        return bound;
    }

    /// <summary>
    /// After errors in some keys of <paramref name="section"/> (an unknown key, a value of the wrong type): binds the keys that
    /// read and checks their own rules (ranges, patterns, nested sections), so that one pass reports those errors too. Rules
    /// across fields (<see cref="IValidatableObject"/>) are left for the next pass: they would see defaults in place of the
    /// values in error.
    /// </summary>
    private void CheckReadableValues(IConfiguration section, Type type, string path, int firstError)
    {
        string prefix = path + ":";
        // The keys in error (relative to the section, e.g. training:foo), left out with everything below them.
        var bad = _errors.Skip(firstError).Select(e => e.Path).Where(p => p.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            .Select(p => p[prefix.Length..]).ToList();
        bool Kept(string key) => !bad.Any(b => key.Equals(b, StringComparison.OrdinalIgnoreCase) || key.StartsWith(b + ":", StringComparison.OrdinalIgnoreCase));
        var values = section.AsEnumerable(makePathsRelative: true).Where(kv => kv.Value is not null && Kept(kv.Key)).ToList();
        if (values.Count == 0) return;
        object? partial;
        try
        {
            partial = new ConfigurationBuilder().AddInMemoryCollection(values).Build().Get(type, o => o.BindNonPublicProperties = false)
                      ?? Activator.CreateInstance(type);
        }
        catch (InvalidOperationException)
        {
            return;
        }
        // Only what the section sets (a default is not the user's), and no rule across fields.
        bool Present(string key) => values.Any(kv => kv.Key.Equals(key, StringComparison.OrdinalIgnoreCase) || kv.Key.StartsWith(key + ":", StringComparison.OrdinalIgnoreCase));
        if (partial is not null) CheckAnnotations(partial, path, crossField: false, present: Present);
    }

    /// <summary>Binds a component's <c>options</c> section to its options type and validates it.</summary>
    public object? ValidateComponentOptions(IConfigurationSection component, Type optionsType, string path)
    {
        var options = component.GetSection("options");
        return ValidateAndBind(options, optionsType, $"{path}:options");
    }

    /// <summary>
    /// For an options author: when <paramref name="type"/> has a public field or a public property without a public setter named
    /// <paramref name="key"/>, why it is no key (only public properties with a public setter are bound); else empty.
    /// </summary>
    private static string NotBindable(Type type, string key)
    {
        const System.Reflection.BindingFlags flags = System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.IgnoreCase;
        if (type.GetField(key, flags) is { } field)
            return $" ({type.Name}.{field.Name} is a field, so it is not an option: the keys are the type's public properties with {{ get; set; }}.)";
        if (type.GetProperty(key, flags) is { } property && property.SetMethod is not { IsPublic: true })
            return $" ({type.Name}.{property.Name} has no public setter, so it is not an option: the keys are the type's public properties with {{ get; set; }}.)";
        return "";
    }

    /// <summary>Checks keys and value types of <paramref name="section"/> against <paramref name="type"/>.</summary>
    private void CheckStructure(IConfiguration section, Type type, string path, ISet<string>? ignoredKeys)
    {
        var props = SettableProperties(type);
        foreach (var child in section.GetChildren())
        {
            if (ignoredKeys?.Contains(child.Key) == true) continue;
            string childPath = Join(path, child.Key);
            var prop = props.FirstOrDefault(p => string.Equals(p.Name, child.Key, StringComparison.OrdinalIgnoreCase));
            if (prop is null)
            {
                var names = props.Select(p => CamelCase(p.Name)).ToList();
                // An option of a component of this section, written a level too high (stages:detail:generatorUpdateInterval).
                string? option = props.Where(p => p.GetCustomAttribute<ComponentOfAttribute>() is not null)
                    .Select(p => OptionOf(section.GetSection(p.Name), p.GetCustomAttribute<ComponentOfAttribute>()!.Contract, Join(path, CamelCase(p.Name)), child.Key))
                    .FirstOrDefault(h => h is not null);
                string? guess = option is null ? Suggest(child.Key, names) : null;
                Add(childPath, "unknown key." + (guess is null ? "" : $" Did you mean '{guess}'?") + (option ?? "") +
                               (names.Count == 0 ? " This section takes no keys." : $" Allowed here: {string.Join(", ", names)}.") +
                               NotBindable(type, child.Key));
                continue;
            }
            CheckValue(child, prop.PropertyType, childPath, prop);
        }
    }

    private void CheckValue(IConfigurationSection child, Type type, string path, PropertyInfo? prop)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        bool hasChildren = child.GetChildren().Any();

        if (underlying == typeof(ComponentConfig))
        {
            CheckComponent(child, prop?.GetCustomAttribute<ComponentOfAttribute>()?.Contract, path);
            return;
        }

        if (IsScalar(underlying))
        {
            if (hasChildren)
            {
                Add(path, $"expected {Describe(underlying)}, got a section.");
                return;
            }
            if (child.Value is null) return; // JSON null: keep the default
            if (!TryConvert(child.Value, underlying, out _))
                Add(path, underlying == typeof(int) && long.TryParse(child.Value, System.Globalization.NumberStyles.Integer, CultureInfo.InvariantCulture, out _)
                    ? $"{child.Value} is too large; the largest allowed integer here is {int.MaxValue}."
                    : $"'{child.Value}' is not {Describe(underlying)}.");
            return;
        }

        if (child.Value is not null && !hasChildren)
        {
            if (child.Value.Length == 0) return; // empty JSON array or object
            // A single value where a list is expected: show the list it probably meant.
            string hint = TryGetListElementType(underlying, out var element)
                ? $" Write it as a list: [{(element == typeof(string) ? System.Text.Json.JsonSerializer.Serialize(child.Value, ReadableJson) : child.Value)}]."
                : "";
            Add(path, $"expected {Describe(underlying)}, got the value '{child.Value}'.{hint}");
            return;
        }

        if (TryGetDictionaryValueType(underlying, out var valueType))
        {
            if (valueType == typeof(StageConfig)) return; // handled by the loader (polymorphic by kind)
            foreach (var entry in child.GetChildren()) CheckValue(entry, valueType, Join(path, entry.Key), null);
            return;
        }

        if (TryGetListElementType(underlying, out var elementType))
        {
            foreach (var entry in child.GetChildren())
            {
                if (!int.TryParse(entry.Key, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                {
                    Add(Join(path, entry.Key), $"expected a list (JSON array), got the key '{entry.Key}'.");
                    continue;
                }
                CheckValue(entry, elementType, Join(path, entry.Key), null);
            }
            return;
        }

        CheckStructure(child, underlying, path, null);
    }

    /// <summary>Runs data annotations and IValidatableObject on <paramref name="obj"/> and its nested option objects.</summary>
    /// <param name="obj">The bound object.</param>
    /// <param name="path">Its config path, for messages.</param>
    /// <param name="crossField">Whether to run <see cref="IValidatableObject.Validate"/> (rules across fields).</param>
    /// <param name="present">Only the properties whose key (relative to <paramref name="obj"/>'s section, e.g. <c>training:steps</c>)
    /// this returns true for; null: all.</param>
    /// <param name="relative">The key of <paramref name="obj"/> relative to the section <paramref name="present"/> reads (for recursion).</param>
    public void CheckAnnotations(object obj, string path, bool crossField = true, Func<string, bool>? present = null, string relative = "")
    {
        var type = obj.GetType();
        foreach (var prop in SettableProperties(type))
        {
            string key = relative.Length == 0 ? prop.Name : $"{relative}:{prop.Name}";
            if (present is not null && !present(key)) continue;
            var value = prop.GetValue(obj);
            var ctx = new ValidationContext(obj) { MemberName = prop.Name, DisplayName = CamelCase(prop.Name) };
            foreach (var attr in prop.GetCustomAttributes<ValidationAttribute>())
            {
                if (attr.GetValidationResult(value, ctx) is { } failure && failure != ValidationResult.Success)
                {
                    Add(Join(path, CamelCase(prop.Name)), DescribeFailure(attr, value, failure));
                }
            }
            if (value is not null && IsNestedOptions(prop.PropertyType) && prop.PropertyType != typeof(ComponentConfig))
                CheckAnnotations(value, Join(path, CamelCase(prop.Name)), crossField, present, key);
        }
        if (crossField && obj is IValidatableObject validatable)
        {
            foreach (var result in validatable.Validate(new ValidationContext(obj)))
            {
                var members = result.MemberNames.ToList();
                if (members.Count == 0) Add(path, result.ErrorMessage ?? "invalid.");
                foreach (var m in members) Add(Join(path, CamelCase(m)), result.ErrorMessage ?? "invalid.");
            }
        }
    }

    /// <summary>Bound options of every component reference validated so far, by key path.</summary>
    public Dictionary<string, (Abstractions.Plugins.ComponentDescriptor Descriptor, object Options)> Components { get; } =
        new(StringComparer.OrdinalIgnoreCase);

    private int _componentErrors;

    internal void CheckComponent(IConfigurationSection section, Type? contract, string path)
    {
        int before = _errors.Count;
        try
        {
            CheckComponentCore(section, contract, path);
        }
        finally
        {
            _componentErrors += _errors.Count - before;
        }
    }

    private void CheckComponentCore(IConfigurationSection section, Type? contract, string path)
    {
        if (section.Value is not null && !section.GetChildren().Any())
        {
            Add(path, $"expected a component section {{ \"type\": ..., \"options\": {{ ... }} }}, got the value '{section.Value}'.");
            return;
        }
        bool ok = true;
        foreach (var key in section.GetChildren().Select(c => c.Key))
        {
            if (key.Equals("type", StringComparison.OrdinalIgnoreCase) || key.Equals("options", StringComparison.OrdinalIgnoreCase)) continue;
            string? option = contract is null ? null : OptionOf(section, contract, path, key);
            Add(Join(path, key), "unknown key." + (option ?? (Suggest(key, ["type", "options"]) is { } g ? $" Did you mean '{g}'?" : "")) +
                                 " Allowed here: type, options.");
            ok = false;
        }
        if (!ok || contract is null) return;
        if (ValidateComponent(section, contract, path) is { } binding) Components[path] = binding;
    }

    /// <summary>
    /// When <paramref name="key"/> is an option of the component <paramref name="component"/> names (its <c>type</c>), the hint
    /// " It is an option of the CONTRACT 'NAME': PATH:options:KEY."; otherwise null.
    /// </summary>
    private string? OptionOf(IConfigurationSection component, Type contract, string path, string key)
    {
        if (_catalog is null || component["type"] is not { Length: > 0 } name || _catalog.Find(contract, name) is not { } descriptor) return null;
        var option = SettableProperties(descriptor.OptionsType).FirstOrDefault(p => string.Equals(p.Name, key, StringComparison.OrdinalIgnoreCase));
        return option is null ? null
            : $" It is an option of the {ComponentCatalog.Describe(contract)} '{descriptor.Name}': {Join(Join(path, "options"), CamelCase(option.Name))}.";
    }

    /// <summary>Checks a component reference: its type is a registered name of the contract; then its options.</summary>
    /// <returns>The descriptor and bound options, or null on errors.</returns>
    public (Abstractions.Plugins.ComponentDescriptor Descriptor, object Options)? ValidateComponent(IConfigurationSection section, Type contract, string path)
    {
        if (_catalog is null) return null;
        string? name = section["type"];
        if (string.IsNullOrWhiteSpace(name))
        {
            Add(Join(path, "type"), $"is required: the name of a {ComponentCatalog.Describe(contract)}. Known: {_catalog.KnownNames(contract)}.");
            return null;
        }
        var descriptor = _catalog.Find(contract, name);
        if (descriptor is null && NotBuilt.Contains(contract))
        {
            Warnings.Add($"{Join(path, "type")}: no loaded plugin registers the {ComponentCatalog.Describe(contract)} '{name}'; this command does " +
                         "not build it, so it goes on without it.");
            return null;
        }
        if (descriptor is null)
        {
            var known = _catalog.Of(contract).Select(d => d.Name).ToList();
            string? guess = Suggest(name, known);
            Add(Join(path, "type"),
                $"unknown {ComponentCatalog.Describe(contract)} '{name}'." + (guess is null ? "" : $" Did you mean '{guess}'?") +
                $" Known: {_catalog.KnownNames(contract)}. Plugin folders searched: {_catalog.SearchedFoldersText}" +
                // No near miss and only the host's own folder searched: the plugin's folder was probably never named.
                (guess is null && _catalog.SearchedFolders.All(f => Plugins.PluginDiscovery.Normal(f) == Plugins.PluginDiscovery.Normal(Plugins.PluginDiscovery.DefaultFolder))
                    ? "; a plugin of your own is found when its folder is listed in the config's \"plugins\": { \"folders\": [\"DIR\"] }." : ".") +
                // It may belong to a plugin that failed to load.
                (_catalog.Errors.Count == 0 ? "" : $" Not loaded ({_catalog.Errors.Count}): {string.Join("; ", _catalog.Errors)}"));
            return null;
        }
        var options = ValidateComponentOptions(section, descriptor.OptionsType, path);
        return options is null ? null : (descriptor, options);
    }

    /// <summary>JSON as a user writes it in a config file (quotes as \", not \u0022).</summary>
    private static readonly System.Text.Json.JsonSerializerOptions ReadableJson =
        new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string DescribeFailure(ValidationAttribute attr, object? value, ValidationResult failure) => attr switch
    {
        RequiredAttribute => "is required.",
        RangeAttribute r => $"{Format(value)} is out of range; allowed {r.Minimum} .. {r.Maximum}.",
        RegularExpressionAttribute rx => $"'{value}' is not allowed: {rx.ErrorMessage ?? "must match " + rx.Pattern}.",
        _ => failure.ErrorMessage ?? "is invalid.",
    };

    private static string Format(object? value) => value switch
    {
        null => "null",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    internal static List<PropertyInfo> SettableProperties(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.SetMethod!.IsPublic && p.GetIndexParameters().Length == 0)
            .ToList();

    internal static bool IsScalar(Type t) =>
        t.IsPrimitive || t.IsEnum || t == typeof(string) || t == typeof(decimal) || t == typeof(TimeSpan);

    private static bool IsNestedOptions(Type t) =>
        t.IsClass && t != typeof(string) && !typeof(IEnumerable).IsAssignableFrom(t);

    internal static bool TryGetDictionaryValueType(Type t, out Type valueType)
    {
        var dict = t.IsGenericType && t.GetGenericTypeDefinition() == typeof(Dictionary<,>) ? t
            : t.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IDictionary<,>));
        if (dict is not null && dict.GetGenericArguments()[0] == typeof(string))
        {
            valueType = dict.GetGenericArguments()[1];
            return true;
        }
        valueType = typeof(object);
        return false;
    }

    internal static bool TryGetListElementType(Type t, out Type elementType)
    {
        if (t.IsArray)
        {
            elementType = t.GetElementType()!;
            return true;
        }
        if (t.IsGenericType && (t.GetGenericTypeDefinition() == typeof(List<>) || t.GetGenericTypeDefinition() == typeof(IReadOnlyList<>)
                                || t.GetGenericTypeDefinition() == typeof(IList<>)))
        {
            elementType = t.GetGenericArguments()[0];
            return true;
        }
        elementType = typeof(object);
        return false;
    }

    internal static bool TryConvert(string value, Type type, out object? result)
    {
        result = null;
        try
        {
            if (type == typeof(bool))
            {
                if (!bool.TryParse(value, out var b)) return false;
                result = b;
                return true;
            }
            if (type.IsEnum)
            {
                var match = Enum.GetNames(type).FirstOrDefault(n => string.Equals(n, value, StringComparison.OrdinalIgnoreCase));
                if (match is null) return false;
                result = Enum.Parse(type, match);
                return true;
            }
            result = TypeDescriptor.GetConverter(type).ConvertFromInvariantString(value);
            if (result is double d && !double.IsFinite(d)) return false;
            return true;
        }
        catch (Exception e) when (e is FormatException or NotSupportedException or ArgumentException or OverflowException)
        {
            return false;
        }
    }

    internal static string Describe(Type t)
    {
        t = Nullable.GetUnderlyingType(t) ?? t;
        if (t == typeof(string)) return "a string";
        if (t == typeof(bool)) return "true or false";
        if (t == typeof(int) || t == typeof(long) || t == typeof(short)) return "an integer";
        if (t == typeof(double) || t == typeof(float) || t == typeof(decimal)) return "a number";
        if (t.IsEnum) return "one of " + string.Join(", ", Enum.GetNames(t).Select(CamelCase));
        if (TryGetListElementType(t, out var e)) return $"a list of {Plural(e)}";
        if (TryGetDictionaryValueType(t, out _)) return "a section (JSON object)";
        return "a section (JSON object)";
    }

    private static string Plural(Type t)
    {
        t = Nullable.GetUnderlyingType(t) ?? t;
        if (t == typeof(string)) return "strings";
        if (t == typeof(int) || t == typeof(long)) return "integers";
        if (t == typeof(double) || t == typeof(float)) return "numbers";
        return "sections";
    }

    /// <summary><c>LearningRate</c> → <c>learningRate</c>.</summary>
    public static string CamelCase(string name) => name.Length == 0 ? name : char.ToLowerInvariant(name[0]) + name[1..];

    /// <summary>Joins key paths with <c>:</c>.</summary>
    public static string Join(string path, string key) => string.IsNullOrEmpty(path) ? key : $"{path}:{key}";

    /// <summary>The closest candidate by edit distance (case-insensitive), if close enough to be a likely typo.</summary>
    public static string? Suggest(string key, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var c in candidates)
        {
            int d = Levenshtein(key.ToLowerInvariant(), c.ToLowerInvariant());
            if (d < bestDistance)
            {
                bestDistance = d;
                best = c;
            }
        }
        if (best is not null && bestDistance <= Math.Max(2, key.Length / 3)) return best;
        // A shortened name (guidance for guidanceScale; guidanceScale for teacherGuidanceScale): the one candidate it begins,
        // else the one it ends.
        if (key.Length < 4) return null;
        var begun = candidates.Where(c => c.StartsWith(key, StringComparison.OrdinalIgnoreCase)).Take(2).ToList();
        if (begun.Count == 1) return begun[0];
        var ended = candidates.Where(c => c.EndsWith(key, StringComparison.OrdinalIgnoreCase)).Take(2).ToList();
        return begun.Count == 0 && ended.Count == 1 ? ended[0] : null;
    }

    private static int Levenshtein(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
