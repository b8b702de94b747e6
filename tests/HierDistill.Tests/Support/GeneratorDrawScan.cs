using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Operations;

namespace HierDistill.Tests.Support;

/// <summary>
/// Finds seeded TorchSharp draws and seedings that work on the CPU and fail, or go unseeded, on a GPU. TorchSharp 0.107
/// makes every <c>torch.Generator</c> a CPU generator whatever device it is given, and libtorch refuses a CPU generator for
/// a draw on CUDA; its <c>torch.manual_seed</c> seeds the CPU generator only. These patterns are flagged, found through the C# compiler's semantic model (named or positional arguments, wrapped
/// calls, target-typed <c>new</c>; comments and strings are not code):
/// <list type="bullet">
/// <item>a TorchSharp call given a generator (not null) that draws on a device it is given (a device argument other than
/// <c>CPU</c>) or on the device of a tensor it is given (<c>randn_like</c>, <c>multinomial</c>, <c>normal_</c>, ...);</item>
/// <item><c>new Generator(seed, device)</c> with a device other than <c>CPU</c> (it would be a CPU generator anyway);</item>
/// <item>a data source's <c>SampleTrain</c>/<c>SampleEvaluation</c> given a generator and a device other than <c>CPU</c> (a
/// third-party source may draw on the device with it; the host asks for seeded draws on the CPU);</item>
/// <item><c>torch.manual_seed</c> / <c>torch.random.manual_seed</c> (the CPU stream only: seed through the host's
/// <c>TorchRuntime.ManualSeed</c>, which seeds CUDA too; <c>torch.cuda.manual_seed_all</c> and a generator's own
/// <c>manual_seed</c> are not flagged).</item>
/// </list>
/// </summary>
internal static class GeneratorDrawScan
{
    /// <summary>A flagged place: file (relative), line (1-based) and the code.</summary>
    public sealed record Finding(string File, int Line, string Code)
    {
        public override string ToString() => $"{File}:{Line}: {Code}";
    }

    /// <summary>What a scan saw.</summary>
    /// <param name="Findings">The flagged places.</param>
    /// <param name="ResolvedCalls">Calls to TorchSharp methods with a generator parameter (a check that the scan saw the code).</param>
    /// <param name="Unbound">Calls the compiler could not bind (a draw among them would go unseen).</param>
    /// <param name="Errors">The compilation's errors.</param>
    public sealed record Result(IReadOnlyList<Finding> Findings, int ResolvedCalls, IReadOnlyList<Finding> Unbound, IReadOnlyList<Diagnostic> Errors);

    /// <summary>Scans <paramref name="sources"/> (path, text) compiled together against the test's references; nothing is
    /// reported in the files whose path is in <paramref name="exempt"/> (they are compiled, so that calls into them bind), and
    /// no <c>manual_seed</c> in those in <paramref name="seeding"/> (the one place that seeds every generator).</summary>
    public static Result Scan(IEnumerable<(string Path, string Text)> sources, string[] exempt, string[]? seeding = null)
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
        var unbound = new List<Finding>();
        int resolvedCalls = 0;
        foreach (var tree in trees.Where(t => t.FilePath.Length > 0 && !exempt.Contains(t.FilePath)))
        {
            var model = compilation.GetSemanticModel(tree);
            foreach (var node in tree.GetRoot().DescendantNodes())
            {
                var operation = model.GetOperation(node);
                if (node is InvocationExpressionSyntax && operation is not (IInvocationOperation or INameOfOperation)) unbound.Add(Found(tree, node));
                switch (operation)
                {
                    case IInvocationOperation sample when node is InvocationExpressionSyntax && IsDataSourceDraw(sample.TargetMethod):
                        var deviceArgument = sample.Arguments.FirstOrDefault(a => IsDevice(a.Parameter?.Type));
                        var generatorArgument = sample.Arguments.FirstOrDefault(a => IsGenerator(a.Parameter?.Type));
                        if (generatorArgument is { ArgumentKind: ArgumentKind.Explicit } && generatorArgument.Value.ConstantValue is not { HasValue: true, Value: null }
                            && deviceArgument is not null && !IsCpu(deviceArgument.Value))
                            findings.Add(Found(tree, node));
                        break;
                    case IInvocationOperation seed when node is InvocationExpressionSyntax && IsTorch(seed.TargetMethod)
                                                        && seed.TargetMethod is { Name: "manual_seed", IsStatic: true }:
                        if (seed.TargetMethod.ContainingType.Name != "cuda" && seeding?.Contains(tree.FilePath) != true) findings.Add(Found(tree, node));
                        break;
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
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        return new Result(findings, resolvedCalls, unbound, errors);
    }

    /// <summary><c>IDataSource.SampleTrain</c>/<c>SampleEvaluation</c>, or a method of that name of a type implementing it.</summary>
    private static bool IsDataSourceDraw(IMethodSymbol method) =>
        method.Name is "SampleTrain" or "SampleEvaluation"
        && (method.ContainingType.Name == "IDataSource" || method.ContainingType.AllInterfaces.Any(i => i.Name == "IDataSource"));

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
