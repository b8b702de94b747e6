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
        string file = Path.Combine(run.OutputDirectory, RunFolder.StudentFileName(key));
        bool loaded = !string.IsNullOrWhiteSpace(config.LoadFrom);
        // A resumed run rebuilds a finished stage from the run folder, also a loaded one (its loadFrom file may have changed or
        // gone since); a folder written before loaded students were copied there has none, and reads loadFrom again.
        if (completed is not null && (!loaded || File.Exists(file)))
        {
            WeightsFile.Load(student, file);
            student.Freeze();
            run.Logger.Information("Stage {Stage}: student restored from {Path} (the stage had finished)", key, file);
            string name = run.Config.Component(path).Descriptor.Name;
            state.Students.Add(new StudentResult(key, StageKinds.Trajectory, student, loaded ? $"{name} (loaded)" : name, loaded ? 0 : completed.Seconds));
            if (!loaded) state.Throughput.Add(new StageThroughput(key, config.Training.Steps, config.Training.BatchSize, completed.Seconds));
            return;
        }
        if (loaded)
        {
            if (!File.Exists(config.LoadFrom))
                throw new FileNotFoundException($"stages:{key}:loadFrom: weights file not found: {config.LoadFrom}" +
                                                (completed is null ? "." : $", and the run folder has no copy ({file}) to resume from."), config.LoadFrom);
            WeightsFile.Load(student, config.LoadFrom);
            student.Freeze();
            run.Logger.Information("Stage {Stage}: student weights loaded from {Path}; not trained", key, config.LoadFrom);
            // The run folder holds every stage's weights, as it holds a loaded teacher's: `sample`, later runs and a resume read them there.
            WeightsFile.Save(student, file);
            state.Students.Add(new StudentResult(key, StageKinds.Trajectory, student, $"{run.Config.Component(path).Descriptor.Name} (loaded)", 0));
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

        string distillerName = run.Components.Describe(path);
        optimizer.TermOwner = _ => distillerName;
        double seconds = TrainingLoop.Run(run, key, training.Steps, progress =>
        {
            var batch = state.Data.SampleTrain(training.BatchSize, run.Environment.Device);
            var loss = distiller.Loss(student, teacher, batch, progress);
            LossGradients.Require(loss, path, distillerName, "Loss", "the student it is given");
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
        WeightsFile.Save(student, Path.Combine(run.OutputDirectory, RunFolder.StudentFileName(key)));
        state.Students.Add(new StudentResult(key, StageKinds.Trajectory, student, run.Config.Component(path).Descriptor.Name, seconds));
    }

    /// <summary>
    /// The teacher's own student (its architecture and weights), or, with <c>student</c> configured, a fresh network of
    /// that architecture (random initialisation) for capacity studies.
    /// </summary>
    private AverageVelocityNetwork CreateStudent(PipelineState state, ITeacher teacher)
    {
        var student = CreateStudent(run.Components, key, state.Data, teacher, out bool fresh);
        if (fresh)
            run.Logger.Information("Stage {Stage}: a fresh {Type} student (random initialisation), not a copy of the teacher", key,
                run.Components.NameOf($"stages:{key}:student"));
        return student;
    }

    /// <summary>
    /// The student of stage <paramref name="key"/>: the teacher's own (<see cref="ITeacher.CreateStudent"/>), or, with
    /// <c>stages:KEY:student</c> configured, a fresh network of that architecture (<paramref name="fresh"/> true). Also used by
    /// <see cref="Preflight"/> before anything runs.
    /// </summary>
    /// <exception cref="InvalidOperationException">When the configured student cannot be built for this data, is not a network, or
    /// models other samples or classes than the teacher.</exception>
    internal static AverageVelocityNetwork CreateStudent(ComponentFactory components, string key, HierDistill.Abstractions.Data.IDataSource data,
        ITeacher teacher, out bool fresh)
    {
        string path = $"stages:{key}:student";
        fresh = components.Has(path);
        if (!fresh)
        {
            try
            {
                return teacher.CreateStudent();
            }
            catch (NotSupportedException e)
            {
                // An analytic teacher has no network to copy.
                throw new InvalidOperationException(
                    $"{path}: {e.Message} Or keep the teacher and set {path} to a network for a fresh student (e.g. {{\"type\":\"mlp\"}}).", e);
            }
        }
        string name = components.NameOf(path);
        ITeacher architecture;
        try
        {
            architecture = components.Create<ITeacher>(path, data);
        }
        catch (ArgumentException e)
        {
            throw new InvalidOperationException($"{path}: '{name}' cannot be a student for this data: {e.Message}", e);
        }
        using var network = architecture.Network
            ?? throw new InvalidOperationException($"{path}: '{name}' is not a network; the student must be a network (e.g. mlp, dit).");
        if (!architecture.Spec.SampleShape.SequenceEqual(teacher.Spec.SampleShape) || architecture.Spec.NumClasses != teacher.Spec.NumClasses)
            throw new InvalidOperationException($"{path}: the student models {architecture.Spec} but the teacher {teacher.Spec}.");
        return architecture.CreateStudent();
    }
    /// <summary>
    /// Runs <paramref name="distiller"/> once as stage 1's first step does (<c>Begin</c>, then <c>Loss</c> on 2 training samples
    /// with the student in training mode, then its backward pass), on the untrained networks the preflight built on the CPU:
    /// the loss must carry a gradient to the student's parameters. So a distiller that throws, or whose loss trains nothing,
    /// fails at <c>validate</c>, not after the teacher has trained.
    /// </summary>
    /// <exception cref="InvalidOperationException">When the distiller throws or its loss has no gradient to the student, naming it.</exception>
    internal static void TryDistiller(string path, string component, ITrajectoryDistiller distiller, AverageVelocityNetwork student, ITeacher teacher,
        HierDistill.Abstractions.Data.IDataSource data, long steps, string dataComponent)
    {
        using var scope = torch.NewDisposeScope();
        const string trial = "on a trial batch of 2 training samples";
        student.train();
        ComponentCalls.Run(path, component, "in Begin", () =>
        {
            distiller.Begin(student, teacher);
            return 0;
        });
        var batch = ComponentCalls.Run("data", dataComponent, $"in SampleTrain(2, cpu) (the trial batch of {path})", () => data.SampleTrain(2, torch.CPU));
        var loss = ComponentCalls.Run(path, component, $"in Loss {trial}", () => distiller.Loss(student, teacher, batch, new TrainingProgress(0, Math.Max(1, steps))));
        LossGradients.RequireReaches(loss, path, component, "Loss", "the student it is given", trial, student.parameters(),
            "reaches none of the student's parameters (it is computed from other tensors, or from the student's outputs detached), so it " +
            "cannot train the student.");
    }
}
