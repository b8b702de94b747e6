using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Training;
using Microsoft.Extensions.DependencyInjection;
using Serilog;
using static TorchSharp.torch;

namespace HierDistill.Tests.Support;

/// <summary>A run context for driving stages and loops in process (CPU, seed 0, a silent logger, no services).</summary>
internal static class TestRuns
{
    /// <summary>The context of a run of <paramref name="loaded"/> writing to <paramref name="folder"/>.</summary>
    public static RunContext Context(LoadedConfig loaded, string folder, MetricsWriter metrics, CheckpointStore? checkpoints = null)
    {
        var logger = new LoggerConfiguration().CreateLogger();
        return new RunContext
        {
            Config = loaded,
            Services = new ServiceCollection().BuildServiceProvider(),
            Environment = new RunEnvironment(CPU, 0, folder),
            Logger = logger,
            Metrics = metrics,
            Progress = new LogProgressReporter(logger, TimeSpan.FromHours(1)),
            Checkpoints = checkpoints,
        };
    }
}
