using TorchSharp;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Models;
using HierDistill.Host.Configuration;
using HierDistill.Host.Storage;
using HierDistill.Host.Training;

namespace HierDistill.Host.Pipeline.Stages;

/// <summary>
/// Stage 1: the student starts as the teacher (zero <c>t - r</c> embedder) and is trained with the
/// configured trajectory distiller; its EMA becomes the stage's result.
/// </summary>
public sealed class TrajectoryStage(string key, TrajectoryStageConfig config, RunContext run) : IPipelineStage
{
    /// <inheritdoc/>
    public string Key => key;

    /// <inheritdoc/>
    public void Run(PipelineState state) => Execute(state, null);

    /// <inheritdoc/>
    /// <remarks>The student is loaded from the run folder's <c>student-KEY.safetensors</c>.</remarks>
    public void Restore(PipelineState state, CompletedStage completed) => Execute(state, completed);

    private void Execute(PipelineState state, CompletedStage? completed)
    {
        var teacher = state.RequireTeacher();
        string path = $"stages:{key}:distiller";
        var distiller = run.Create<ITrajectoryDistiller>(path, state.Data, teacher);
        // A distiller may hold modules between steps (progressive distillation's snapshot of the student).
        using var owned = distiller as IDisposable;
        var student = CreateStudent(state, teacher);
        student.to(run.Environment.Device);
        if (!string.IsNullOrWhiteSpace(config.LoadFrom))
        {
            WeightsFile.Load(student, config.LoadFrom);
            student.Freeze();
            run.Logger.Information("Stage {Stage}: student weights loaded from {Path}; not trained", key, Path.GetFullPath(config.LoadFrom));
            state.Students.Add(new StudentResult(key, StageKinds.Trajectory, student, $"{run.Config.Component(path).Descriptor.Name} (loaded)", 0));
            return;
        }
        if (completed is not null)
        {
            string file = Path.Combine(run.OutputDirectory, $"student-{key}.safetensors");
            WeightsFile.Load(student, file);
            student.Freeze();
            run.Logger.Information("Stage {Stage}: student restored from {Path} (the stage had finished)", key, file);
            state.Students.Add(new StudentResult(key, StageKinds.Trajectory, student, run.Config.Component(path).Descriptor.Name, completed.Seconds));
            state.Throughput.Add(new StageThroughput(key, config.Training.Steps, config.Training.BatchSize, completed.Seconds));
            return;
        }
        student.train();
        var training = config.Training;
        using var optimizer = new ModuleOptimizer("student", student, training.ToOptimizer(), training.EmaDecay,
            LearningRateSchedules.Warmup(training.WarmupSteps), run.Config.Config.Run.MaxSkippedSteps);
        distiller.Begin(student, teacher);
        var trained = new TrainingState().With("distiller", distiller);
        trained.Optimizers.Add(optimizer);
        run.Logger.Information("Stage {Stage}: {Distiller}, student of {Parameters:N0} parameters, {Steps} steps",
            key, run.Config.Component(path).Descriptor.Name, student.ParameterCount(), training.Steps);

        double seconds = TrainingLoop.Run(run, key, training.Steps, progress =>
        {
            var batch = state.Data.SampleTrain(training.BatchSize, run.Environment.Device);
            var loss = distiller.Loss(student, teacher, batch, progress);
            var log = new StepLog();
            log.Add("", loss);
            log.Add("", optimizer.Step(loss, progress.Step, $"stages:{key} step {progress.Step}"));
            return log;
        }, "loss", trained);
        var throughput = new StageThroughput(key, training.Steps, training.BatchSize, seconds, run.DeviceMemory?.PeakMiB);
        state.Throughput.Add(throughput);
        run.Logger.Information("Stage {Stage}: {Throughput}", key, throughput.ToString());

        optimizer.Ema?.CopyTo(student);
        student.Freeze();
        WeightsFile.Save(student, Path.Combine(run.OutputDirectory, $"student-{key}.safetensors"));
        state.Students.Add(new StudentResult(key, StageKinds.Trajectory, student, run.Config.Component(path).Descriptor.Name, seconds));
    }

    /// <summary>
    /// Before any stage runs: when <c>student</c> is configured, builds it once and checks that it is a network for this
    /// data, so that a student that cannot work fails the run at once instead of after the teacher's training.
    /// </summary>
    /// <exception cref="InvalidOperationException">When the configured student is not a network or does not fit the data.</exception>
    public static void CheckStudent(RunContext run, string key, HierDistill.Abstractions.Data.IDataSource data)
    {
        string path = $"stages:{key}:student";
        if (!run.Has(path)) return;
        string name = run.Config.Component(path).Descriptor.Name;
        ITeacher architecture;
        // Building it draws random initial weights: the run's random stream must be as if it had not been built.
        using var rng = torch.random.get_rng_state();
        try
        {
            architecture = run.Create<ITeacher>(path, data);
        }
        catch (ArgumentException e)
        {
            throw new InvalidOperationException($"{path}: '{name}' cannot be a student for this data: {e.Message}", e);
        }
        finally
        {
            torch.random.set_rng_state(rng);
        }
        using var network = architecture.Network;
        if (network is null)
            throw new InvalidOperationException($"{path}: '{name}' is not a network; the student must be a network (e.g. mlp, dit).");
        if (!architecture.Spec.SampleShape.SequenceEqual(data.Spec.SampleShape) || architecture.Spec.NumClasses != data.Spec.NumClasses)
            throw new InvalidOperationException($"{path}: the student models {architecture.Spec} but the data is {data.Spec}.");
    }

    /// <summary>
    /// The teacher's own student (its architecture and weights), or, with <c>student</c> configured, a fresh network of
    /// that architecture (random initialisation) for capacity studies.
    /// </summary>
    /// <exception cref="InvalidOperationException">When the configured student is not a network or models other data.</exception>
    private AverageVelocityNetwork CreateStudent(PipelineState state, ITeacher teacher)
    {
        string path = $"stages:{key}:student";
        if (!run.Has(path)) return teacher.CreateStudent();
        var architecture = run.Create<ITeacher>(path, state.Data);
        if (architecture.Network is null)
            throw new InvalidOperationException($"{path}: '{run.Config.Component(path).Descriptor.Name}' is not a network; the student must be a network (e.g. mlp, dit).");
        if (!architecture.Spec.SampleShape.SequenceEqual(teacher.Spec.SampleShape) || architecture.Spec.NumClasses != teacher.Spec.NumClasses)
            throw new InvalidOperationException($"{path}: the student models {architecture.Spec} but the teacher {teacher.Spec}.");
        using var network = architecture.Network;
        var student = architecture.CreateStudent();
        run.Logger.Information("Stage {Stage}: a fresh {Type} student (random initialisation), not a copy of the teacher", key, run.Config.Component(path).Descriptor.Name);
        return student;
    }
}
