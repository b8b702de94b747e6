using TorchSharp;
using System.Diagnostics;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Training;
using HierDistill.Host.Reporting;
using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>One evaluated model at one NFE (a row of the report and an entry of metrics.json).</summary>
/// <param name="Name">Model name: <c>data</c> (the floor), <c>teacher</c>, or the stage key of a student.</param>
/// <param name="Kind">data, teacher, trajectory or distribution.</param>
/// <param name="Description">What it is (component names, generator source).</param>
/// <param name="Sampler">Sampler name (e.g. <c>euler-32</c>, <c>mean-1</c>).</param>
/// <param name="Nfe">Network evaluations per sample (0 for data).</param>
/// <param name="Metrics">Metric name → value.</param>
/// <param name="SecondsPerSample">Wall-clock sampling time per sample (0 for data).</param>
/// <param name="TrainingSeconds">Wall time of the stage that trained it (0 if none).</param>
public sealed record EvaluationEntry(string Name, string Kind, string Description, string Sampler, int Nfe,
    IReadOnlyDictionary<string, double> Metrics, double SecondsPerSample, double TrainingSeconds)
{
    /// <summary>Scalar parameters of the evaluated network (0 for data and analytic teachers).</summary>
    public long Parameters { get; init; }

    /// <summary>Students: wall time of every student stage the model went through (see <see cref="StudentResult.DistillationSeconds"/>); otherwise 0.</summary>
    public double DistillationSeconds { get; init; }
}

/// <summary>Samples of one entry kept for plots (CPU).</summary>
public sealed record PlotSamples(string Title, Tensor Samples, Tensor Labels);

/// <summary>
/// Samples the teacher over its NFE grid and every student at its NFE grid from the same noise and
/// labels, computes distances to fresh data and to reference teacher samples (and mode statistics
/// for a known mixture), with a data-vs-data floor, and writes metrics.json, report.md and plots.
/// </summary>
public sealed class EvaluationStage(string key, EvaluationStageConfig config, RunContext run) : IPipelineStage
{
    /// <inheritdoc/>
    public string Key => key;

    /// <summary>Metric names.</summary>
    public static class Names
    {
        /// <summary>Sliced W2 to fresh data.</summary>
        public const string Sw2Data = "sw2_data";
        /// <summary>Sliced W2 to reference teacher samples.</summary>
        public const string Sw2Teacher = "sw2_teacher";
        /// <summary>MMD² to fresh data.</summary>
        public const string Mmd2Data = "mmd2_data";
        /// <summary>MMD² to reference teacher samples.</summary>
        public const string Mmd2Teacher = "mmd2_teacher";
        /// <summary>Modes covered.</summary>
        public const string ModesCovered = "modes_covered";
        /// <summary>Number of modes.</summary>
        public const string ModesTotal = "modes_total";
        /// <summary>Fraction of samples within 3σ of a mode.</summary>
        public const string HighQuality = "high_quality_fraction";
        /// <summary>Total variation between per-mode mass and mixture weights.</summary>
        public const string ModeMassTv = "mode_mass_tv";
        /// <summary>Prefix of the per-mode masses (<c>mode_mass_0</c> …), to compare with the mixture weights.</summary>
        public const string ModeMass = "mode_mass";
    }

    /// <inheritdoc/>
    public void Run(PipelineState state)
    {
        var teacher = state.RequireTeacher();
        var data = state.Data;
        var device = run.Environment.Device;
        long seed = config.Seed;
        int n = config.Samples;
        CheckData(key, config, data);
        bool images = data.Spec.SampleShape.Length == 3;
        using var scope = NewDisposeScope();

        // Seeded draws are made on the CPU and moved (SeededDraws: TorchSharp's generators are CPU generators).
        var reference = SeededDraws.Evaluation(data, n, seed + 1, device);
        // The floor: other data of the same size. Images: training images vs the test reference; mixtures: fresh draws.
        var floorSet = images
            ? SeededDraws.Train(data, n, seed + 2, device)
            : SeededDraws.Evaluation(data, n, seed + 2, device);
        var noise = SeededDraws.Noise(data.Spec.BatchShape(n), seed + 3, device);
        // Models are generated for the floor set's labels, so that the `data` row (the floor set against the reference)
        // and the models face the same class proportions: the floor is what a perfect sampler scores.
        var labels = floorSet.Labels;

        Sampler TeacherSampler(int nfe) => GuidedTeacherSampler(teacher, config.TeacherGuidanceScale, data.Spec.NullLabel, config.TeacherSolver, nfe);
        int maxNfe = config.EffectiveTeacherNfe.Max();

        using IEvaluationSuite suite = images
            ? new ImageSuite(config, data, device, run.Logger, run.Progress, run.OutputDirectory, run.Cancellation)
            : new PointCloudSuite(config, (data as IMixtureDataSource)?.Mixture);
        suite.Prepare(new SuiteInputs(reference, floorSet, TeacherSampler, maxNfe, seed), (z, c, sampler) => Sample(sampler, z, c, out _));
        run.Cancellation.ThrowIfCancellationRequested();

        var entries = new List<EvaluationEntry>
        {
            new("data", "data", images ? "training images vs test images (floor)" : "fresh data vs data (noise floor)", "-", 0, suite.Floor(), 0, 0),
        };
        int total = config.EffectiveTeacherNfe.Count + state.Students.Count * config.EffectiveStudentNfe.Count;
        using var task = run.Progress.Start(key, total);
        int done = 0;

        // Ctrl-C stops the evaluation between batches (a resumed run evaluates again from the start).
        foreach (int nfe in config.EffectiveTeacherNfe)
        {
            task.StopIfCancelled(done, run.Cancellation);
            using var step = NewDisposeScope();
            var sampler = TeacherSampler(nfe);
            var samples = Sample(sampler, noise, labels, out double perSample);
            entries.Add(new EvaluationEntry("teacher", "teacher", $"CFG {config.TeacherGuidanceScale}", sampler.Name, sampler.Nfe,
                suite.Metrics(samples, labels), perSample, state.TeacherSeconds) { Parameters = teacher.Network?.ParameterCount() ?? 0 });
            if (nfe == config.EffectiveTeacherNfe.Min() || nfe == maxNfe)
                suite.AddPicture($"teacher NFE {sampler.Nfe}", $"samples-teacher-nfe{sampler.Nfe}", samples, labels, sampler);
            task.Report(++done, $"teacher NFE {sampler.Nfe}");
        }
        foreach (var student in state.Students)
        {
            foreach (int nfe in config.EffectiveStudentNfe)
            {
                task.StopIfCancelled(done, run.Cancellation);
                using var step = NewDisposeScope();
                var sampler = Samplers.AverageVelocity(student.Model.AverageVelocity, nfe);
                var samples = Sample(sampler, noise, labels, out double perSample);
                entries.Add(new EvaluationEntry(student.StageKey, student.Kind, student.Description, sampler.Name, sampler.Nfe,
                    suite.Metrics(samples, labels), perSample, student.TrainingSeconds)
                {
                    Parameters = student.Model.ParameterCount(),
                    DistillationSeconds = student.DistillationSeconds,
                });
                suite.AddPicture($"{student.StageKey} NFE {nfe}", $"samples-{student.StageKey}-nfe{nfe}", samples, labels, sampler);
                task.Report(++done, $"{student.StageKey} NFE {nfe}");
            }
        }

        var pictures = config.Plots ? suite.WritePictures(run.OutputDirectory, run.Metrics.History) : [];
        new RunReport(run, state, config, entries, suite.PrimaryMetric, suite.Notes, pictures).Write();
        run.Logger.Information("Evaluation written to {Path}", Path.Combine(run.OutputDirectory, "report.md"));
    }

    /// <summary>
    /// The teacher's sampler at <paramref name="nfe"/>: its velocity under classifier-free guidance
    /// <c>v_w = v(∅) + w (v(c) - v(∅))</c>, solved by Euler (NFE steps) or Heun (NFE / 2 steps, at least 1).
    /// </summary>
    internal static Sampler GuidedTeacherSampler(HierDistill.Abstractions.Contracts.ITeacher teacher, double guidanceScale, int nullLabel, string solver, int nfe)
    {
        var guided = ClassifierFreeGuidance.Guide(teacher.Velocity, guidanceScale, nullLabel);
        return solver == "heun" ? Samplers.Heun(guided, Math.Max(1, nfe / 2)) : Samplers.Euler(guided, nfe);
    }

    /// <summary>
    /// Checks that the data's evaluation split holds the stage's <c>samples</c> and that image data (samples <c>[C, H, W]</c>)
    /// fits the evaluation classifier (at least 2 classes; H and W multiples of 4), so that none of it surfaces only after the
    /// training stages.
    /// </summary>
    /// <exception cref="InvalidOperationException">When it does not.</exception>
    internal static void CheckData(string key, EvaluationStageConfig config, IDataSource data)
    {
        string withoutIt = $"leave the evaluation out (--set stages:{key}:enabled=false) and sample the weights with " +
                           "`hierdistill sample … --out samples.safetensors`.";
        if (data.EvaluationSize is { } available && config.Samples > available)
            throw new InvalidOperationException(
                $"stages:{key}:samples = {config.Samples}, but the data's evaluation split has {available} samples; use at most {available}.");
        if (data.Spec.SampleShape.Length == 3 && data.Spec.NumClasses < 2)
            throw new InvalidOperationException(
                $"stages:{key}: the evaluation measures images with a classifier trained on their labels, and the data has " +
                $"{data.Spec.NumClasses} class{(data.Spec.NumClasses == 1 ? "" : "es")} ({data.Spec}); it needs at least 2. " +
                char.ToUpperInvariant(withoutIt[0]) + withoutIt[1..]);
        if (data.Spec.SampleShape is [_, var h, var w] && (h % 4 != 0 || w % 4 != 0))
            throw new InvalidOperationException(
                $"stages:{key}: the evaluation measures images with a classifier that needs H and W multiples of 4, and the data's images are " +
                $"{h}×{w} ({data.Spec}). Pad or crop them to a multiple of 4 in the data source, or {withoutIt}");
    }

    /// <summary><see cref="TimedSample"/> in batches of the stage's <c>batchSize</c>.</summary>
    private Tensor Sample(Sampler sampler, Tensor noise, Tensor labels, out double secondsPerSample) =>
        TimedSample(sampler, noise, labels, config.BatchSize, out secondsPerSample, run.Cancellation);

    /// <summary>
    /// Samples <paramref name="noise"/> in batches of <paramref name="batchSize"/>; reports wall-clock seconds per sample after a
    /// warm-up call: 8 samples on the CPU, a whole batch on CUDA (the first call at a new batch shape pays for cuBLAS/cuDNN
    /// algorithm selection and the caching allocator's first allocations, which would weigh on a one-step sampler far more than
    /// on a 32-step one), and on CUDA also the last, partial batch's shape when the count is not a multiple of the batch size.
    /// </summary>
    /// <returns>The samples <c>[N, ...S]</c>, on the noise's device.</returns>
    /// <param name="sampler">The sampler.</param>
    /// <param name="noise">Noise <c>[N, ...S]</c> on the sampling device.</param>
    /// <param name="labels">Labels <c>[N]</c> on the sampling device.</param>
    /// <param name="batchSize">Samples per pass.</param>
    /// <param name="secondsPerSample">Wall time per sample of the timed passes, seconds.</param>
    /// <param name="cancellation">Checked between batches (Ctrl-C in <c>hierdistill sample</c>).</param>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellation"/> is cancelled.</exception>
    internal static Tensor TimedSample(Sampler sampler, Tensor noise, Tensor labels, int batchSize, out double secondsPerSample,
        CancellationToken cancellation = default)
    {
        bool onCuda = noise.device.type == DeviceType.CUDA;
        long count = noise.shape[0];
        var warmSizes = new List<long> { Math.Min(onCuda ? batchSize : 8, count) };
        if (onCuda && count > batchSize && count % batchSize != 0) warmSizes.Add(count % batchSize);
        foreach (long warmSize in warmSizes)
        {
            using var warm = NewDisposeScope();
            sampler.Sample(noise.narrow(0, 0, warmSize), labels.narrow(0, 0, warmSize));
        }
        if (onCuda) cuda.synchronize();
        var clock = Stopwatch.StartNew();
        var parts = new List<Tensor>();
        for (long i = 0; i < noise.shape[0]; i += batchSize)
        {
            cancellation.ThrowIfCancellationRequested();
            long size = Math.Min(batchSize, noise.shape[0] - i);
            parts.Add(sampler.Sample(noise.narrow(0, i, size), labels.narrow(0, i, size)));
        }
        var samples = parts.Count == 1 ? parts[0] : cat(parts);
        if (samples.device.type == DeviceType.CUDA) cuda.synchronize();
        secondsPerSample = clock.Elapsed.TotalSeconds / noise.shape[0];
        return samples;
    }
}
