using TorchSharp;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Configuration;
using HierDistill.Host.Storage;
using HierDistill.Host.Training;
using static TorchSharp.torch;

namespace HierDistill.Host.Pipeline.Stages;

/// <summary>
/// Creates the teacher and, for a network teacher, trains it by conditional flow matching with
/// label dropout and EMA (its EMA weights become the teacher) or loads weights from an earlier run.
/// The frozen teacher's weights are saved as <c>teacher.safetensors</c> in the run folder.
/// </summary>
public sealed class TeacherStage(string key, TeacherStageConfig config, RunContext run) : IPipelineStage
{
    /// <inheritdoc/>
    public string Key => key;

    /// <summary>Name of the teacher weights file in the run folder.</summary>
    public const string WeightsFileName = "teacher.safetensors";

    /// <inheritdoc/>
    public void Run(PipelineState state) => Prepare(state, null);

    /// <inheritdoc/>
    /// <remarks>A network teacher is loaded from the run folder's <c>teacher.safetensors</c>.</remarks>
    public void Restore(PipelineState state, CompletedStage completed)
    {
        Prepare(state, Path.Combine(run.OutputDirectory, WeightsFileName));
        state.TeacherSeconds = completed.Seconds;
        if (config.Training is { } t && string.IsNullOrWhiteSpace(config.LoadFrom) && state.Teacher?.Network is not null)
            state.Throughput.Add(new StageThroughput(key, t.Steps, t.BatchSize, completed.Seconds));
    }

    private void Prepare(PipelineState state, string? restoreFrom)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double? trainedSeconds = null;
        string path = $"stages:{key}:teacher";
        var teacher = run.Create<ITeacher>(path, state.Data);
        CheckSpec(key, teacher, state.Data.Spec);

        var network = teacher.Network;
        if (network is not null)
        {
            network.to(run.Environment.Device);
            run.Logger.Information("Teacher {Type}: {Parameters:N0} parameters", run.Config.Component(path).Descriptor.Name, network.ParameterCount());
            if (restoreFrom is not null)
            {
                WeightsFile.Load(network, restoreFrom);
                run.Logger.Information("Teacher restored from {Path} (stage {Stage} had finished)", restoreFrom, key);
            }
            else if (!string.IsNullOrWhiteSpace(config.LoadFrom))
            {
                WeightsFile.Load(network, config.LoadFrom);
                if (config.Training is null)
                    run.Logger.Information("Teacher weights loaded from {Path}", config.LoadFrom);
                else
                    run.Logger.Information("Teacher weights loaded from {Path}; stages:{Key}:training is not used (loadFrom replaces training)",
                        config.LoadFrom, key);
            }
            else if (config.Training is { } training)
            {
                trainedSeconds = Train(network, state, training);
            }
            else
            {
                throw Untrained(key, run.Config.Component(path).Descriptor.Name);
            }
            network.Freeze();
            if (restoreFrom is null) WeightsFile.Save(network, Path.Combine(run.OutputDirectory, WeightsFileName));
        }
        else if (config.Training is not null || !string.IsNullOrWhiteSpace(config.LoadFrom))
        {
            run.Logger.Warning("stages:{Key}: the teacher is analytic; training and loadFrom are ignored.", key);
        }
        state.Teacher = teacher;
        state.TeacherSeconds = trainedSeconds ?? clock.Elapsed.TotalSeconds;
    }

    /// <summary>A network teacher with neither <c>training</c> nor <c>loadFrom</c>.</summary>
    internal static InvalidOperationException Untrained(string key, string name) => new(
        $"stages:{key}: the teacher '{name}' is a network with untrained weights; " +
        $"set stages:{key}:training to train it, or stages:{key}:loadFrom to load {WeightsFileName} from an earlier run.");

    /// <summary>Checks that the teacher of stage <paramref name="key"/> models the data's samples and classes.</summary>
    /// <exception cref="InvalidOperationException">When it does not.</exception>
    internal static void CheckSpec(string key, ITeacher teacher, HierDistill.Abstractions.Data.DataSpec spec)
    {
        if (!teacher.Spec.SampleShape.SequenceEqual(spec.SampleShape) || teacher.Spec.NumClasses != spec.NumClasses)
            throw new InvalidOperationException(
                $"stages:{key}:teacher: the teacher models {teacher.Spec} but the data is {spec}; configure the teacher for this data.");
    }

    private void Record(PipelineState state, StageThroughput throughput)
    {
        state.Throughput.Add(throughput);
        run.Logger.Information("Stage {Stage}: {Throughput}", key, throughput.ToString());
    }

    private double Train(VelocityNetwork network, PipelineState state, TeacherTrainingOptions training)
    {
        network.train();
        // The velocity's shape checked at every step (shape only), naming the teacher: broadcast in the loss, a wrong shape would
        // train silently here and abort the process in stage 1's backward pass.
        string path = $"stages:{key}:teacher", component = run.Components.Describe(path);
        VelocityField velocity = (z, t, c) => TeacherContract.CheckVelocity(path, component, network.Velocity(z, t, c), z, "Network.Velocity");
        var settings = new OptimizerSettings(training.LearningRate, 0.9, 0.999, 0, training.GradClip > 0 ? training.GradClip : null);
        using var optimizer = new ModuleOptimizer("teacher", network, settings, training.EmaDecay,
            LearningRateSchedules.Cosine(training.Steps, training.FinalLearningRateFraction), run.Config.Config.Run.MaxSkippedSteps);
        optimizer.TermOwner = _ => component; // the flow-matching loss of the teacher network's velocity
        var trained = new TrainingState();
        trained.Optimizers.Add(optimizer);
        var device = run.Environment.Device;
        int nullLabel = state.Data.Spec.NullLabel;
        double seconds = TrainingLoop.Run(run, key, training.Steps, progress =>
        {
            var batch = state.Data.SampleTrain(training.BatchSize, device);
            var labels = LabelDropout.Apply(batch.Labels, training.LabelDropout, nullLabel);
            var noise = randn_like(batch.X);
            var t = training.TimeSampling == TeacherTimeLaw.LogitNormal
                ? TimeSampling.LogitNormal(batch.Size, training.TimeMean, training.TimeStd, device)
                : TimeSampling.Uniform(batch.Size, 0, 1, device);
            var loss = FlowMatchingLoss.Compute(velocity, batch.X, labels, noise, t);
            var log = new StepLog();
            log.Add("", loss);
            log.Add("", optimizer.Step(loss, progress.Step, $"stages:{key} step {progress.Step}"));
            return log;
        }, "loss", trained);
        optimizer.Ema?.CopyTo(network);
        Record(state, new StageThroughput(key, training.Steps, training.BatchSize, seconds, run.DeviceMemory?.PeakMiB));
        return seconds;
    }
}
