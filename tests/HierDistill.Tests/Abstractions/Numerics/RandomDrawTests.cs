using System.Text.RegularExpressions;
using HierDistill.Abstractions.Numerics;
using HierDistill.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Abstractions.Numerics;

public class RandomDrawTests
{
    [Fact]
    public void TorchSharp_makes_a_generator_asked_for_on_cuda_a_cpu_generator()
    {
        // The fact RandomDraw rests on: a real CUDA generator would refuse a CPU draw; TorchSharp 0.107's draws the same
        // numbers as a CPU generator of that seed. If TorchSharp changes this, RandomDraw's and SeededDraws' docs must too.
        using var scope = NewDisposeScope();
        using var asCuda = new Generator(42, new Device(DeviceType.CUDA, 0));
        using var cpu = new Generator(42, CPU);
        Assert.Equal(randn([16], generator: cpu).data<float>().ToArray(), randn([16], generator: asCuda).data<float>().ToArray());
    }

    [Fact]
    public void A_seeded_draw_is_the_plain_CPU_draw_of_that_seed()
    {
        using var scope = NewDisposeScope();
        static Generator G() => new(7, CPU);
        Assert.Equal(rand([5, 3], generator: G()).data<float>().ToArray(), RandomDraw.Rand([5, 3], CPU, G()).data<float>().ToArray());
        Assert.Equal(randn([5, 3], ScalarType.Float64, generator: G()).data<double>().ToArray(),
            RandomDraw.Randn([5, 3], CPU, G(), ScalarType.Float64).data<double>().ToArray());
        Assert.Equal(randint(0, 9, [20], generator: G()).data<long>().ToArray(), RandomDraw.RandInt(9, [20], CPU, G()).data<long>().ToArray());
        Assert.Equal(randperm(50, generator: G()).data<long>().ToArray(), RandomDraw.RandPerm(50, CPU, G()).data<long>().ToArray());
        var weights = tensor(new[] { 0.1, 0.0, 0.6, 0.3 });
        var drawn = RandomDraw.Multinomial(weights, 200, replacement: true, G());
        Assert.Equal(multinomial(weights, 200, true, generator: G()).data<long>().ToArray(), drawn.data<long>().ToArray());
        Assert.DoesNotContain(1L, drawn.data<long>().ToArray()); // a zero weight is never drawn
        // Another seed gives other numbers; no generator uses the device's default one.
        Assert.NotEqual(RandomDraw.Rand([8], CPU, G()).data<float>().ToArray(), RandomDraw.Rand([8], CPU, new Generator(8, CPU)).data<float>().ToArray());
        manual_seed(3);
        var first = RandomDraw.Randn([8], CPU).data<float>().ToArray();
        manual_seed(3);
        Assert.Equal(first, randn([8]).data<float>().ToArray());
    }

    [Fact]
    public void Out_of_range_sizes_are_refused_by_name_not_left_to_libtorch()
    {
        // randperm(-1) ends the process in libtorch 2.10; the others throw its terse errors.
        Assert.Equal("n", Assert.Throws<ArgumentOutOfRangeException>(() => RandomDraw.RandPerm(-1, CPU)).ParamName);
        Assert.Equal("n", Assert.Throws<ArgumentOutOfRangeException>(() => RandomDraw.RandPerm(-1, CPU, new Generator(1, CPU))).ParamName);
        Assert.Equal("high", Assert.Throws<ArgumentOutOfRangeException>(() => RandomDraw.RandInt(0, [3], CPU)).ParamName);
        Assert.Equal("shape", Assert.Throws<ArgumentOutOfRangeException>(() => RandomDraw.Randn([2, -1], CPU)).ParamName);
        using var weights = tensor(new[] { 0.5, 0.5 });
        Assert.Equal("samples", Assert.Throws<ArgumentOutOfRangeException>(() => RandomDraw.Multinomial(weights, 0, true)).ParamName);
        using var empty = RandomDraw.RandPerm(0, CPU);
        Assert.Equal([0L], empty.shape);
        using var none = RandomDraw.Rand([0, 3], CPU, new Generator(1, CPU));
        Assert.Equal([0L, 3L], none.shape);
    }

    /// <summary>A draw that takes a generator and a device at once breaks on a GPU (TorchSharp's generators are CPU
    /// generators), and so does a generator made for a device other than the CPU. Only RandomDraw may do the former.</summary>
    [Fact]
    public void No_code_draws_on_a_device_with_a_generator_except_RandomDraw()
    {
        var drawCall = new Regex(@"\b(rand|randn|randint|randperm|rand_like|randn_like|randint_like|multinomial|bernoulli|normal|uniform_|normal_|random_)\s*\(",
            RegexOptions.Compiled);
        var newGenerator = new Regex(@"new\s+(torch\.)?Generator\s*\(", RegexOptions.Compiled);
        var offenders = new List<string>();
        string root = TestPaths.RepositoryRoot;
        var files = new[] { "src", "plugins", "samples" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") &&
                        !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}") &&
                        Path.GetFileName(f) != "RandomDraw.cs")
            .ToList();
        Assert.True(files.Count > 50, $"only {files.Count} source files found under {root}");
        foreach (string file in files)
        {
            string[] lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                string line = lines[i].Trim();
                if (line.StartsWith("//")) continue;
                string call = string.Join(" ", lines.Skip(i).Take(3)); // a call may wrap onto the next lines
                foreach (Match m in drawCall.Matches(line))
                {
                    string rest = call[(call.IndexOf(m.Value, StringComparison.Ordinal))..];
                    string args = rest[..Math.Min(rest.Length, ClosingParenthesis(rest))];
                    if (args.Contains("generator:") && args.Contains("device:"))
                        offenders.Add($"{Path.GetRelativePath(root, file)}:{i + 1}: {line}");
                }
                foreach (Match m in newGenerator.Matches(line))
                {
                    // new Generator(seed) or new Generator(seed, CPU): the device argument, where given, must be the CPU.
                    string rest = line[m.Index..];
                    string args = rest[(m.Length)..(ClosingParenthesis(rest) - 1)];
                    int comma = TopLevelComma(args);
                    string device = comma < 0 ? "CPU" : args[(comma + 1)..].Trim();
                    if (device is not ("CPU" or "torch.CPU"))
                        offenders.Add($"{Path.GetRelativePath(root, file)}:{i + 1}: {line}");
                }
            }
        }
        Assert.True(offenders.Count == 0, "Draw with a generator through RandomDraw (or on the CPU, then move):\n" + string.Join("\n", offenders));
    }

    private static int TopLevelComma(string args)
    {
        int depth = 0;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == '(') depth++;
            else if (args[i] == ')') depth--;
            else if (args[i] == ',' && depth == 0) return i;
        }
        return -1;
    }

    private static int ClosingParenthesis(string s)
    {
        int depth = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '(') depth++;
            else if (s[i] == ')' && --depth == 0) return i + 1;
        }
        return s.Length;
    }
}
