using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Operations;

namespace HierDistill.Tests.Support;

/// <summary>
/// Finds seeded TorchSharp draws that work on the CPU and fail on a GPU. TorchSharp 0.107 makes every
/// <c>torch.Generator</c> a CPU generator whatever device it is given, and libtorch refuses a CPU generator for a draw on
/// CUDA. Two patterns are flagged, found through the C# compiler's semantic model (named or positional arguments, wrapped
/// calls, target-typed <c>new</c>; comments and strings are not code):
/// <list type="bullet">
/// <item>a TorchSharp call given a generator (not null) that draws on a device it is given (a device argument other than
/// <c>CPU</c>) or on the device of a tensor it is given (<c>randn_like</c>, <c>multinomial</c>, <c>normal_</c>, ...);</item>
/// <item><c>new Generator(seed, device)</c> with a device other than <c>CPU</c> (it would be a CPU generator anyway).</item>
/// </list>
/// </summary>
internal static class GeneratorDrawScan
{
    /// <summary>A flagged place: file (relative), line (1-based) and the code.</summary>
    public sealed record Finding(string File, int Line, string Code)
    {
        public override string ToString() => $"{File}:{Line}: {Code}";
    }

    /// <summary>Scans <paramref name="sources"/> (path, text) compiled together against the test's references; findings in
    /// files whose name is in <paramref name="exempt"/> are not reported (they are compiled, so that calls into them bind).</summary>
    /// <param name="resolvedCalls">How many calls to TorchSharp methods taking a generator were resolved (a check that the scan
    /// saw the code at all).</param>
    public static IReadOnlyList<Finding> Scan(IEnumerable<(string Path, string Text)> sources, out int resolvedCalls, params string[] exempt)
    {
        var options = new CSharpParseOptions(LanguageVersion.Preview);
        var trees = sources.Select(s => CSharpSyntaxTree.ParseText(s.Text, options, s.Path)).ToList();
        // The SDK's implicit usings of the projects.
        trees.Add(CSharpSyntaxTree.ParseText("""
            global using System; global using System.IO; global using System.Linq; global using System.Collections.Generic;
            global using System.Threading; global using System.Threading.Tasks; global using System.Net.Http;
            """, options));
        var compilation = CSharpCompilation.Create("scan", trees, References(),
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var findings = new List<Finding>();
        resolvedCalls = 0;
        foreach (var tree in trees.Where(t => t.FilePath.Length > 0 && !exempt.Contains(Path.GetFileName(t.FilePath))))
        {
            var model = compilation.GetSemanticModel(tree);
            foreach (var node in tree.GetRoot().DescendantNodes())
            {
                switch (model.GetOperation(node))
                {
                    case IInvocationOperation call when node is InvocationExpressionSyntax && IsTorch(call.TargetMethod):
                        if (!call.TargetMethod.Parameters.Any(p => IsGenerator(p.Type))) break;
                        resolvedCalls++;
                        if (DrawsOnADeviceWithAGenerator(call.Arguments, call.TargetMethod)) findings.Add(Found(tree, node));
                        break;
                    case IObjectCreationOperation create when node is BaseObjectCreationExpressionSyntax && create.Constructor is { } ctor
                                                              && IsGenerator(ctor.ContainingType):
                        var device = create.Arguments.FirstOrDefault(a => IsDevice(a.Parameter?.Type));
                        if (device is { ArgumentKind: ArgumentKind.Explicit } && !IsCpu(device.Value)) findings.Add(Found(tree, node));
                        break;
                }
            }
        }
        return findings;
    }

    private static bool DrawsOnADeviceWithAGenerator(ImmutableArray<IArgumentOperation> arguments, IMethodSymbol method)
    {
        var generator = arguments.FirstOrDefault(a => IsGenerator(a.Parameter?.Type));
        if (generator is not { ArgumentKind: ArgumentKind.Explicit } || generator.Value.ConstantValue is { HasValue: true, Value: null })
            return false;
        var device = arguments.FirstOrDefault(a => IsDevice(a.Parameter?.Type));
        // A factory without a device argument draws on the CPU; one with a device other than CPU, or a method that draws on
        // the device of a tensor (an instance method or a tensor argument), may draw on a GPU.
        bool onTensor = !method.IsStatic || method.Parameters.Any(p => p.Type.Name == "Tensor");
        if (device is null) return onTensor;
        return onTensor || (device.ArgumentKind == ArgumentKind.Explicit && !IsCpu(device.Value));
    }

    private static bool IsTorch(IMethodSymbol method) =>
        method.ContainingNamespace?.ToDisplayString().StartsWith("TorchSharp", StringComparison.Ordinal) == true;

    private static bool IsGenerator(ITypeSymbol? type) =>
        type is { Name: "Generator" } && type.ContainingNamespace?.ToDisplayString().StartsWith("TorchSharp", StringComparison.Ordinal) == true;

    private static bool IsDevice(ITypeSymbol? type) =>
        type is { Name: "Device" } && type.ContainingNamespace?.ToDisplayString().StartsWith("TorchSharp", StringComparison.Ordinal) == true;

    /// <summary>The field <c>torch.CPU</c>, or a null/default device (TorchSharp reads it as the CPU).</summary>
    private static bool IsCpu(IOperation value)
    {
        while (value is IConversionOperation conversion) value = conversion.Operand;
        return value switch
        {
            IFieldReferenceOperation { Field.Name: "CPU" } f => IsDevice(f.Field.Type),
            IPropertyReferenceOperation { Property.Name: "CPU" } p => IsDevice(p.Property.Type),
            { ConstantValue: { HasValue: true, Value: null } } => true,
            IDefaultValueOperation => true,
            _ => false,
        };
    }

    private static Finding Found(SyntaxTree tree, SyntaxNode node)
    {
        var line = tree.GetLineSpan(node.Span).StartLinePosition.Line + 1;
        string code = string.Join(" ", node.ToString().Split('\n').Select(l => l.Trim()));
        return new Finding(tree.FilePath, line, code.Length <= 160 ? code : code[..157] + "...");
    }

    /// <summary>The framework's assemblies and the test's own folder, less the assemblies built from the scanned sources.</summary>
    private static IEnumerable<MetadataReference> References()
    {
        var byName = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        // The trusted platform assemblies of a test run include the app's own (hierdistill.dll, HierDistill.*.dll): built
        // from the scanned sources, they would make every call into them ambiguous.
        static bool Scanned(string name) => name.StartsWith("hierdistill", StringComparison.OrdinalIgnoreCase)
                                            || name.StartsWith("Acme.", StringComparison.OrdinalIgnoreCase);
        foreach (string path in ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
                     .Concat(Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll")))
            if (!Scanned(Path.GetFileName(path))) byName.TryAdd(Path.GetFileName(path), path);
        foreach (string path in byName.Values)
        {
            MetadataReference? reference = null;
            try
            {
                using var stream = File.OpenRead(path);
                if (new System.Reflection.PortableExecutable.PEReader(stream).HasMetadata) reference = MetadataReference.CreateFromFile(path);
            }
            catch (Exception e) when (e is IOException or BadImageFormatException or UnauthorizedAccessException)
            {
                // not a managed assembly (a native library named .dll): skipped
            }
            if (reference is not null) yield return reference;
        }
    }
}
