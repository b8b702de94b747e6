using HierDistill.Host;
using HierDistill.Tests.Support;
using TorchSharp;
using Xunit;

namespace HierDistill.Tests.Host.Pipeline;

/// <summary>
/// The preflight draws random weights and trial inputs: it leaves torch's global generator as it found it, so a run's results
/// do not depend on the check. In the serial collection: a test drawing from the generator in parallel would move it too.
/// </summary>
[Collection(nameof(GlobalRngTests))]
public class PreflightRandomStreamTests
{
    [Fact]
    public void Building_the_networks_to_check_them_leaves_the_random_stream_as_it_was()
    {
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        var (loaded, catalog, _) = app.Load(TestPaths.Sample("fmnist/hd-cpu.json"), ["stages:teacher:teacher:options:preset=DiT-XT/4"]);
        Assert.NotNull(loaded);
        torch.manual_seed(7);
        var expected = torch.rand(5).data<float>().ToArray();
        torch.manual_seed(7);
        Assert.True(app.Preflight("hd-cpu.json", loaded!, catalog!), writer.ToString());
        Assert.Equal(expected, torch.rand(5).data<float>().ToArray());
    }
}
