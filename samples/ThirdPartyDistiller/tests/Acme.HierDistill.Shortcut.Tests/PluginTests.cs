using System.ComponentModel.DataAnnotations;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Plugins;
using Microsoft.Extensions.DependencyInjection;
using Xunit;
using static TorchSharp.torch;

namespace Acme.HierDistill.Shortcut.Tests;

public class PluginTests
{
    private sealed class NoServices : IServiceProvider
    {
        public object? GetService(Type serviceType) => null;
    }

    [Fact]
    public void The_entry_point_registers_the_shortcut_trajectory_distiller_with_its_options()
    {
        var services = new ServiceCollection();
        new ShortcutPlugin().Register(services);
        var descriptor = Assert.Single(services.Select(s => s.ImplementationInstance).OfType<ComponentDescriptor>());
        Assert.Equal("shortcut", descriptor.Name);
        Assert.Equal(typeof(ITrajectoryDistiller), descriptor.Contract);
        Assert.Equal(typeof(ShortcutOptions), descriptor.OptionsType);
        Assert.Equal("Acme.HierDistill.Shortcut", descriptor.Assembly);

        var context = new ComponentContext(new NoServices(), new RunEnvironment(CPU, 0, Path.GetTempPath()), "stages:structure:distiller");
        var options = new ShortcutOptions { Steps = 16 };
        var created = Assert.IsType<ShortcutDistiller>(descriptor.Create(context, options));
        Assert.Same(options, created.Options);
    }
}

public class ShortcutOptionsTests
{
    private static List<ValidationResult> Validate(ShortcutOptions options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return results;
    }

    [Fact]
    public void The_defaults_are_valid_and_are_the_papers()
    {
        var options = new ShortcutOptions();
        Assert.Empty(Validate(options));
        Assert.Equal(128, options.Steps);
        Assert.Equal(7, options.Levels);
        Assert.Equal(0.25, options.SelfConsistencyFraction);
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(64, 6)]
    [InlineData(4096, 12)]
    public void Levels_are_log2_of_the_steps(int steps, int levels) => Assert.Equal(levels, new ShortcutOptions { Steps = steps }.Levels);

    [Fact]
    public void Steps_that_are_not_a_power_of_two_are_refused_by_name()
    {
        var error = Assert.Single(Validate(new ShortcutOptions { Steps = 100 }));
        Assert.Equal([nameof(ShortcutOptions.Steps)], error.MemberNames);
        Assert.Contains("power of two", error.ErrorMessage);
        Assert.Contains("100", error.ErrorMessage);
    }

    [Fact]
    public void A_batch_of_only_self_consistency_rows_is_refused()
    {
        var error = Assert.Single(Validate(new ShortcutOptions { SelfConsistencyFraction = 1 }));
        Assert.Equal([nameof(ShortcutOptions.SelfConsistencyFraction)], error.MemberNames);
    }

    [Theory]
    [InlineData(nameof(ShortcutOptions.GuidanceScale), -1.0)]
    [InlineData(nameof(ShortcutOptions.LabelDropout), 1.5)]
    [InlineData(nameof(ShortcutOptions.SelfConsistencyWeight), -0.1)]
    public void Out_of_range_values_are_refused_by_name(string property, double value)
    {
        var options = new ShortcutOptions();
        typeof(ShortcutOptions).GetProperty(property)!.SetValue(options, value);
        var error = Assert.Single(Validate(options));
        Assert.Equal([property], error.MemberNames);
    }

    [Fact]
    public void Steps_out_of_range_are_refused()
    {
        Assert.Contains(Validate(new ShortcutOptions { Steps = 1 }), e => e.MemberNames.Contains(nameof(ShortcutOptions.Steps)));
        Assert.Contains(Validate(new ShortcutOptions { Steps = 8192 }), e => e.MemberNames.Contains(nameof(ShortcutOptions.Steps)));
    }
}
