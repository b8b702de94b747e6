using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using Microsoft.Extensions.DependencyInjection;

namespace HierDistill.Abstractions.Plugins;

/// <summary>A named component a plugin registers: the contract it implements, its options type and its factory.</summary>
public sealed class ComponentDescriptor
{
    internal ComponentDescriptor(Type contract, string name, string description, Type optionsType, Func<ComponentContext, object, object> create)
    {
        Contract = contract;
        Name = name;
        Description = description;
        OptionsType = optionsType;
        Create = create;
    }

    /// <summary>The contract, e.g. <see cref="ITrajectoryDistiller"/>.</summary>
    public Type Contract { get; }

    /// <summary>The name configs use, e.g. <c>"meanflow"</c> (lower case, unique per contract).</summary>
    public string Name { get; }

    /// <summary>One sentence on what the component is.</summary>
    public string Description { get; }

    /// <summary>The options class bound from the config's <c>options</c> section.</summary>
    public Type OptionsType { get; }

    /// <summary>Creates the component from validated options.</summary>
    public Func<ComponentContext, object, object> Create { get; }

    /// <summary>The assembly that registered it (set by the registration).</summary>
    public string Assembly { get; init; } = "";
}

/// <summary>
/// Registration of named components into the host's <see cref="IServiceCollection"/>. Options
/// classes need a public parameterless constructor; their defaults are the property initialisers,
/// and they are validated with data annotations (and <see cref="System.ComponentModel.DataAnnotations.IValidatableObject"/>)
/// before anything runs.
/// </summary>
public static class ComponentRegistration
{
    /// <summary>Registers a data source.</summary>
    public static IServiceCollection AddDataSource<TOptions>(this IServiceCollection services, string name, string description,
        Func<ComponentContext, TOptions, IDataSource> factory) where TOptions : class, new() =>
        services.AddComponent(name, description, factory);

    /// <summary>Registers a teacher.</summary>
    public static IServiceCollection AddTeacher<TOptions>(this IServiceCollection services, string name, string description,
        Func<ComponentContext, TOptions, ITeacher> factory) where TOptions : class, new() =>
        services.AddComponent(name, description, factory);

    /// <summary>Registers a stage-1 trajectory distiller.</summary>
    public static IServiceCollection AddTrajectoryDistiller<TOptions>(this IServiceCollection services, string name, string description,
        Func<ComponentContext, TOptions, ITrajectoryDistiller> factory) where TOptions : class, new() =>
        services.AddComponent(name, description, factory);

    /// <summary>Registers a stage-2 distribution matcher.</summary>
    public static IServiceCollection AddDistributionMatcher<TOptions>(this IServiceCollection services, string name, string description,
        Func<ComponentContext, TOptions, IDistributionMatcher> factory) where TOptions : class, new() =>
        services.AddComponent(name, description, factory);

    /// <summary>Registers a discriminator.</summary>
    public static IServiceCollection AddDiscriminator<TOptions>(this IServiceCollection services, string name, string description,
        Func<ComponentContext, TOptions, IDiscriminator> factory) where TOptions : class, new() =>
        services.AddComponent(name, description, factory);

    /// <summary>Registers a component of contract <typeparamref name="TContract"/>.</summary>
    /// <exception cref="ArgumentException">When the name is empty or not lower-case letters, digits and dashes.</exception>
    public static IServiceCollection AddComponent<TContract, TOptions>(this IServiceCollection services, string name, string description,
        Func<ComponentContext, TOptions, TContract> factory)
        where TContract : class where TOptions : class, new()
    {
        if (string.IsNullOrWhiteSpace(name) || !name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-'))
            throw new ArgumentException($"component name '{name}' must be lower-case letters, digits and dashes.", nameof(name));
        services.AddSingleton(new ComponentDescriptor(typeof(TContract), name, description, typeof(TOptions),
            (ctx, options) => factory(ctx, (TOptions)options))
        {
            Assembly = factory.Method.DeclaringType?.Assembly.GetName().Name ?? "",
        });
        return services;
    }
}
