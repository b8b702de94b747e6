using TorchSharp;
using System.Diagnostics;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline;
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
    IReadOnlyDictionary<string, double> Metrics, double SecondsPerSample, double TrainingSeconds);

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
        int n = config.Samples;
        long seed = config.Seed;
        using var scope = NewDisposeScope();

        var reference = data.SampleEvaluation(n, device, new Generator((ulong)(seed + 1), device));
        var floorSet = data.SampleEvaluation(n, device, new Generator((ulong)(seed + 2), device));
        var noise = randn(data.Spec.BatchShape(n), device: device, generator: new Generator((ulong)(seed + 3), device));
        var labels = reference.Labels;
        var referenceNoise = randn(data.Spec.BatchShape(n), device: device, generator: new Generator((ulong)(seed + 4), device));

        var guided = ClassifierFreeGuidance.Guide(teacher.Velocity, config.TeacherGuidanceScale, data.Spec.NullLabel);
        Sampler TeacherSampler(int nfe) => config.TeacherSolver == "heun"
            ? Samplers.Heun(guided, Math.Max(1, nfe / 2))
            : Samplers.Euler(guided, nfe);
        int maxNfe = config.EffectiveTeacherNfe.Max();
        var teacherReference = Sample(TeacherSampler(maxNfe), referenceNoise, floorSet.Labels, out _);

        double median = SampleMetrics.MedianDistance(reference.X);
        double[] bandwidths = [0.03 * median, 0.1 * median, 0.3 * median, median];
        var mixture = (data as IMixtureDataSource)?.Mixture;

        var entries = new List<EvaluationEntry>();
        var plots = new List<PlotSamples> { new("data", reference.X.cpu().DetachFromDisposeScope(), labels.cpu().DetachFromDisposeScope()) };
        int total = config.EffectiveTeacherNfe.Count + state.Students.Count * config.EffectiveStudentNfe.Count;
        using var task = run.Progress.Start(key, total);
        int done = 0;

        using var mmdData = new MmdReference(reference.X, bandwidths);
        using var mmdTeacher = new MmdReference(teacherReference, bandwidths);
        Dictionary<string, double> Metrics(Tensor samples)
        {
            var m = new Dictionary<string, double>
            {
                [Names.Sw2Data] = SampleMetrics.SlicedWasserstein2(samples, reference.X, config.Projections, seed + 5),
                [Names.Sw2Teacher] = SampleMetrics.SlicedWasserstein2(samples, teacherReference, config.Projections, seed + 5),
                [Names.Mmd2Data] = mmdData.Distance(samples),
                [Names.Mmd2Teacher] = mmdTeacher.Distance(samples),
            };
            if (mixture is not null && data.Spec.SampleShape.Length == 1 && data.Spec.SampleShape[0] == mixture.Dimension)
            {
                var modes = SampleMetrics.Modes(samples, mixture);
                m[Names.ModesCovered] = modes.Covered;
                m[Names.ModesTotal] = modes.Total;
                m[Names.HighQuality] = modes.HighQualityFraction;
                m[Names.ModeMassTv] = modes.MassTotalVariation;
                for (int k = 0; k < modes.Mass.Count; k++) m[$"{Names.ModeMass}_{k}"] = modes.Mass[k];
            }
            return m;
        }

        entries.Add(new EvaluationEntry("data", "data", "fresh data vs data (noise floor)", "-", 0, Metrics(floorSet.X), 0, 0));

        foreach (int nfe in config.EffectiveTeacherNfe)
        {
            var sampler = TeacherSampler(nfe);
            var samples = Sample(sampler, noise, labels, out double perSample);
            entries.Add(new EvaluationEntry("teacher", "teacher", $"CFG {config.TeacherGuidanceScale}", sampler.Name, sampler.Nfe,
                Metrics(samples), perSample, state.TeacherSeconds));
            if (nfe == 1 || nfe == maxNfe) plots.Add(new PlotSamples($"teacher NFE {sampler.Nfe}", samples.cpu().DetachFromDisposeScope(), labels.cpu().DetachFromDisposeScope()));
            task.Report(++done, $"teacher NFE {sampler.Nfe}");
        }
        foreach (var student in state.Students)
        {
            foreach (int nfe in config.EffectiveStudentNfe)
            {
                var sampler = Samplers.AverageVelocity(student.Model.AverageVelocity, nfe);
                var samples = Sample(sampler, noise, labels, out double perSample);
                entries.Add(new EvaluationEntry(student.StageKey, student.Kind, student.Description, sampler.Name, sampler.Nfe,
                    Metrics(samples), perSample, student.TrainingSeconds));
                if (nfe == config.EffectiveStudentNfe.Min())
                    plots.Add(new PlotSamples($"{student.StageKey} NFE {nfe}", samples.cpu().DetachFromDisposeScope(), labels.cpu().DetachFromDisposeScope()));
                task.Report(++done, $"{student.StageKey} NFE {nfe}");
            }
        }

        try
        {
            var report = new RunReport(run, state, config, entries);
            report.Write();
            if (config.Plots) Plots.Write(run.OutputDirectory, plots, run.Metrics.History, mixture);
            run.Logger.Information("Evaluation written to {Path}", Path.Combine(run.OutputDirectory, "report.md"));
        }
        finally
        {
            foreach (var p in plots)
            {
                p.Samples.Dispose();
                p.Labels.Dispose();
            }
        }
    }

    private Tensor Sample(Sampler sampler, Tensor noise, Tensor labels, out double secondsPerSample)
    {
        // Warm up once (first-call overheads), then time the full set.
        using (var warm = NewDisposeScope()) sampler.Sample(noise.narrow(0, 0, Math.Min(8, noise.shape[0])), labels.narrow(0, 0, Math.Min(8, labels.shape[0])));
        var clock = Stopwatch.StartNew();
        var samples = sampler.Sample(noise, labels);
        if (samples.device.type == DeviceType.CUDA) cuda.synchronize();
        secondsPerSample = clock.Elapsed.TotalSeconds / noise.shape[0];
        return samples;
    }
}
