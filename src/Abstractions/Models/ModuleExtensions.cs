using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Models;

/// <summary>Helpers for modules that the host and plugins share.</summary>
public static class ModuleExtensions
{
    /// <summary>Copies every parameter and buffer of <paramref name="source"/> into <paramref name="target"/> (same names and shapes).</summary>
    /// <exception cref="ArgumentException">When a name is missing or a shape differs, naming the tensor and both shapes.</exception>
    public static void CopyWeightsFrom(this nn.Module target, nn.Module source, bool strict = true)
    {
        var src = source.state_dict();
        var dst = target.state_dict();
        using var _ = no_grad();
        foreach (var (name, t) in dst)
        {
            if (!src.TryGetValue(name, out var s))
            {
                if (strict) throw new ArgumentException($"source module has no tensor '{name}'.");
                continue;
            }
            if (!s.shape.SequenceEqual(t.shape))
                throw new ArgumentException(
                    $"tensor '{name}' has shape [{string.Join(", ", s.shape)}] in the source and [{string.Join(", ", t.shape)}] in the target.");
            t.copy_(s);
        }
        if (strict)
        {
            var extra = src.Keys.Except(dst.Keys).ToList();
            if (extra.Count > 0) throw new ArgumentException($"target module has no tensor '{extra[0]}'.");
        }
    }

    /// <summary>Sets <c>requires_grad</c> on every parameter and switches to eval mode when freezing.</summary>
    public static T Freeze<T>(this T module, bool frozen = true) where T : nn.Module
    {
        foreach (var p in module.parameters()) p.requires_grad = !frozen;
        if (frozen) module.eval(); else module.train();
        return module;
    }

    /// <summary>Number of scalar parameters.</summary>
    public static long ParameterCount(this nn.Module module) => module.parameters().Sum(p => p.numel());

    /// <summary>The device of the first parameter (CPU for a module without parameters).</summary>
    public static Device DeviceOf(this nn.Module module) => module.parameters().FirstOrDefault()?.device ?? CPU;
}
