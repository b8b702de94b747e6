using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Plugins;

/// <summary>Facts about the run that components may need.</summary>
/// <param name="Device">The device tensors and modules live on.</param>
/// <param name="Seed">The run's random seed.</param>
/// <param name="OutputDirectory">The run folder (components may write files under it).</param>
public sealed record RunEnvironment(Device Device, long Seed, string OutputDirectory);

/// <summary>What a component factory receives besides its options.</summary>
public sealed class ComponentContext
{
    /// <summary>Creates a context.</summary>
    public ComponentContext(IServiceProvider services, RunEnvironment environment, string configPath,
        IDataSource? data = null, ITeacher? teacher = null)
    {
        Services = services;
        Environment = environment;
        ConfigPath = configPath;
        Data = data;
        Teacher = teacher;
    }

    /// <summary>The host's services (e.g. <see cref="ILoggerFactory"/>).</summary>
    public IServiceProvider Services { get; }

    /// <summary>Device, seed and run folder.</summary>
    public RunEnvironment Environment { get; }

    /// <summary>The config key path of the component (e.g. <c>stages:structure:distiller</c>), for error messages.</summary>
    public string ConfigPath { get; }

    /// <summary>The run's data source, where one exists at this point of the pipeline.</summary>
    public IDataSource? Data { get; }

    /// <summary>The run's teacher, where one exists at this point of the pipeline.</summary>
    public ITeacher? Teacher { get; }

    /// <summary>
    /// Training steps (stage 2: iterations) of the stage the component belongs to, the same number its
    /// <see cref="TrainingProgress.TotalSteps"/> will carry; null where the host does not train the component's stage (the
    /// data source, an analytic or loaded teacher, a trajectory stage with <c>loadFrom</c>) or does not say. A factory can
    /// check a step budget against it before anything runs (e.g. progressive distillation's rounds).
    /// </summary>
    public long? StageSteps { get; init; }

    /// <summary>The data source.</summary>
    /// <exception cref="InvalidOperationException">When the pipeline has none at this point.</exception>
    public IDataSource RequireData() =>
        Data ?? throw new InvalidOperationException($"{ConfigPath}: this component needs the run's data source, and there is none yet.");

    /// <summary>The teacher.</summary>
    /// <exception cref="InvalidOperationException">When the pipeline has none at this point.</exception>
    public ITeacher RequireTeacher() =>
        Teacher ?? throw new InvalidOperationException($"{ConfigPath}: this component needs a teacher; add a teacher stage before it.");

    /// <summary>A logger for the component (a no-op logger when the host registered none).</summary>
    public ILogger CreateLogger(string category) =>
        (Services.GetService(typeof(ILoggerFactory)) as ILoggerFactory)?.CreateLogger(category)
        ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
}
