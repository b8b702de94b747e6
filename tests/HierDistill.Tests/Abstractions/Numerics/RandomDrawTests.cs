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
    /// generators), and so does a generator made for a device other than the CPU. Only RandomDraw may draw with a
    /// generator on a device (it draws on the CPU and moves). torch.manual_seed seeds the CPU stream only: only
    /// TorchRuntime.ManualSeed may call it (it seeds the CUDA generators too).</summary>
    [Fact]
    public void No_code_draws_on_a_device_with_a_generator_except_RandomDraw()
    {
        string root = TestPaths.RepositoryRoot;
        string sep = Path.DirectorySeparatorChar.ToString();
        var files = new[] { "src", "plugins", Path.Combine("samples", "ThirdPartyDistiller", "src") }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{sep}obj{sep}") && !f.Contains($"{sep}bin{sep}"))
            .Select(f => (Path.GetRelativePath(root, f), File.ReadAllText(f)))
            .ToList();
        Assert.True(files.Count > 100, $"only {files.Count} source files found under {root}");
        var scan = GeneratorDrawScan.Scan(files, exempt: [Path.Combine("src", "Abstractions", "Numerics", "RandomDraw.cs")],
            seeding: [Path.Combine("src", "Host", "Runtime", "TorchRuntime.cs")]);
        // The compilation of every project as one sees all the code: its only errors are the source generators' partial
        // methods (CS8795) and the host's top-level statements in a library (CS8805), and every call binds.
        var errors = scan.Errors.Where(d => d.Id is not ("CS8795" or "CS8805")).ToList();
        Assert.True(errors.Count == 0, "the scan's compilation failed:\n" + string.Join("\n", errors.Take(20)));
        Assert.True(scan.Unbound.Count == 0, "calls the scan could not bind:\n" + string.Join("\n", scan.Unbound.Take(20)));
        // 16 when this test was written (rand, randn, randint, nn.init.normal_ ... outside RandomDraw).
        Assert.True(scan.ResolvedCalls >= 12, $"only {scan.ResolvedCalls} TorchSharp calls with a generator parameter were resolved");
        Assert.True(scan.Findings.Count == 0, "Draw with a generator through RandomDraw (or on the CPU, then move), make generators with CPU, " +
                                              "and seed through TorchRuntime.ManualSeed:\n" +
                                              string.Join("\n", scan.Findings));
    }

    [Fact]
    public void The_scan_finds_seeded_device_draws_however_they_are_written()
    {
        // Each line marked "flagged" holds one finding (two for "flagged x2"); nothing else is flagged.
        const string probe = """
            using TorchSharp;
            using static TorchSharp.torch;
            namespace Probe;
            public interface IDataSource { void SampleEvaluation(int count, Device device, Generator? generator = null); }
            public static class P
            {
                public static void Bad(Device device, Generator g, Tensor onDevice, Tensor w, IDataSource data)
                {
                    data.SampleEvaluation(5, device, g);                                               // flagged: a source may draw on the device
                    var a = randn(new long[] { 2 }, ScalarType.Float32, device, false, g);            // flagged: positional
                    var d = bernoulli(onDevice, generator: g);                                         // flagged
                    var e = empty(new long[] { 3 }, device: device).normal_(0, 1, generator: g);       // flagged: in place
                    var f = multinomial(w, 4, true, generator: g);                                     // flagged: w's device
                    Generator h = new(42, device);                                                     // flagged: target-typed new
                    var i = rand(new long[] { 1 }, device: device, generator: g); var j = randn(new long[] { 1 }, device: device, generator: g); // flagged x2
                    var k = randint(0,                                                                 // flagged: wrapped
                        10,
                        new long[] { 4 },
                        device: device,
                        generator: g);
                    var l = new Generator(7, device: device);                                          // flagged
                    manual_seed(1);                                                                    // flagged: CPU stream only
                    torch.manual_seed(2);                                                              // flagged
                    torch.random.manual_seed(3);                                                       // flagged
                }

                public static void Good(Generator g, Device device, Tensor onDevice, IDataSource data)
                {
                    data.SampleEvaluation(5, CPU, g);
                    data.SampleEvaluation(5, device);
                    // var x = randn(new long[] { 2 }, device: device, generator: g);
                    /* var y = rand(new long[] { 2 }, device: device, generator: g); */
                    string s = "randn(shape, device: device, generator: g)";
                    var a = new Generator(42, device: CPU);
                    var b = new Generator(42);
                    var c = randn(new long[] { 2 }, generator: g);
                    var d = randn(new long[] { 2 }, device: device);
                    var e = randn(new long[] { 2 }, device: CPU, generator: g);
                    var f = randn(new long[] { 2 }, device: device, generator: null);
                    var h = randn_like(onDevice);
                    var i = randn(new long[] { 2 }, generator: g).to(device);
                    torch.cuda.manual_seed_all(4);
                    g.manual_seed(5);
                }
            }
            """;
        var scan = GeneratorDrawScan.Scan([("Probe.cs", probe)], exempt: []);
        var findings = scan.Findings;
        string[] lines = probe.Split('\n');
        var expected = Enumerable.Range(1, lines.Length)
            .SelectMany(n => lines[n - 1].Contains("// flagged x2") ? [n, n] : lines[n - 1].Contains("// flagged") ? new[] { n } : [])
            .ToList();
        Assert.Empty(scan.Errors);
        Assert.True(expected.Count == 13 && expected.SequenceEqual(findings.Select(f => f.Line)),
            $"expected lines {string.Join(", ", expected)}; found:\n{string.Join("\n", findings)}");
        Assert.Equal(12, scan.ResolvedCalls); // the calls above to TorchSharp methods with a generator parameter, flagged or not
    }
}
