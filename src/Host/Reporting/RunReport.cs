using System.Globalization;
using System.Text;
using System.Text.Json;
using HierDistill.Host.Configuration;
using HierDistill.Host.Evaluation;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Storage;

namespace HierDistill.Host.Reporting;

/// <summary>Writes <c>metrics.json</c> (one entry per evaluated model and NFE) and <c>report.md</c> into the run folder.</summary>
public sealed class RunReport(RunContext run, PipelineState state, EvaluationStageConfig config, IReadOnlyList<EvaluationEntry> entries)
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>The entries.</summary>
    public IReadOnlyList<EvaluationEntry> Entries => entries;

    /// <summary>Writes both files atomically.</summary>
    public void Write()
    {
        AtomicFile.WriteAllText(Path.Combine(run.OutputDirectory, "metrics.json"), MetricsJson());
        AtomicFile.WriteAllText(Path.Combine(run.OutputDirectory, "report.md"), Markdown());
    }

    /// <summary>The machine-readable metrics.</summary>
    public string MetricsJson()
    {
        var doc = new Dictionary<string, object?>
        {
            ["run"] = run.Config.Config.Run.Name,
            ["data"] = state.Data.Spec.ToString(),
            ["device"] = run.Environment.Device.ToString(),
            ["samples"] = config.Samples,
            ["teacher_guidance_scale"] = config.TeacherGuidanceScale,
            ["models"] = entries.Select(e => new Dictionary<string, object?>
            {
                ["name"] = e.Name,
                ["kind"] = e.Kind,
                ["description"] = e.Description,
                ["sampler"] = e.Sampler,
                ["nfe"] = e.Nfe,
                ["metrics"] = e.Metrics.ToDictionary(kv => kv.Key, kv => Finite(kv.Value)),
                ["seconds_per_sample"] = e.SecondsPerSample,
                ["training_seconds"] = Math.Round(e.TrainingSeconds, 3),
            }).ToList(),
        };
        return JsonSerializer.Serialize(doc, Json);
    }

    private static object Finite(double v) => double.IsFinite(v) ? v : v.ToString(CultureInfo.InvariantCulture);

    /// <summary>The human-readable report.</summary>
    public string Markdown()
    {
        var cfg = run.Config.Config;
        var sb = new StringBuilder();
        sb.AppendLine($"# HierDistill run `{cfg.Run.Name}`").AppendLine();
        sb.AppendLine($"- config: `{run.Config.SourcePath}` (resolved copy: `config.resolved.json`)");
        sb.AppendLine($"- data: {state.Data.Spec}");
        sb.AppendLine($"- device: {run.Environment.Device}; seed {cfg.Run.Seed}");
        sb.AppendLine($"- evaluation: {config.Samples} samples per model, the same noise and labels for every model; teacher sampled with " +
                      $"{config.TeacherSolver}, CFG scale {Fmt(config.TeacherGuidanceScale)}; students sampled without CFG.");
        sb.AppendLine("- distances: sliced W2 (`sw2`, lower is better) and MMD² with Gaussian kernels (`mmd2`), each against fresh data " +
                      "and against reference teacher samples (max NFE, other noise); `data` is a second fresh data set: the noise floor.");
        sb.AppendLine();

        // Per-mode masses go to metrics.json only; the table keeps the summary columns.
        var metricNames = entries.SelectMany(e => e.Metrics.Keys).Distinct()
            .Where(k => !(k.StartsWith(EvaluationStage.Names.ModeMass + "_", StringComparison.Ordinal) && char.IsAsciiDigit(k[^1]))).ToList();
        sb.Append("| model | kind | sampler | NFE |");
        foreach (var m in metricNames) sb.Append($" {m} |");
        sb.AppendLine(" ms/sample | train s |");
        sb.Append("|---|---|---|---:|");
        foreach (var _ in metricNames) sb.Append("---:|");
        sb.AppendLine("---:|---:|");
        foreach (var e in entries)
        {
            sb.Append($"| {e.Name} | {e.Kind} | {e.Sampler} | {e.Nfe} |");
            foreach (var m in metricNames) sb.Append(e.Metrics.TryGetValue(m, out var v) ? $" {Fmt(v)} |" : " |");
            sb.AppendLine($" {Fmt(e.SecondsPerSample * 1000)} | {(e.TrainingSeconds > 0 ? e.TrainingSeconds.ToString("0.0", CultureInfo.InvariantCulture) : "")} |");
        }
        sb.AppendLine();

        sb.AppendLine("## Summary").AppendLine();
        var teacherRows = entries.Where(e => e.Kind == "teacher" && e.Metrics.ContainsKey(EvaluationStage.Names.Sw2Data)).ToList();
        if (teacherRows.Count > 0)
        {
            var best = teacherRows.MinBy(e => e.Metrics[EvaluationStage.Names.Sw2Data])!;
            sb.AppendLine($"- teacher: best sw2_data {Fmt(best.Metrics[EvaluationStage.Names.Sw2Data])} at NFE {best.Nfe} ({best.Sampler}).");
            foreach (var s in entries.Where(e => e.Kind is "trajectory" or "distribution" && e.Nfe == 1))
            {
                double ratio = s.Metrics[EvaluationStage.Names.Sw2Data] / best.Metrics[EvaluationStage.Names.Sw2Data];
                string modes = s.Metrics.TryGetValue(EvaluationStage.Names.ModesCovered, out var c)
                    ? $", modes {c:0}/{s.Metrics[EvaluationStage.Names.ModesTotal]:0}" : "";
                sb.AppendLine($"- `{s.Name}` ({s.Description}), 1 step: sw2_data {Fmt(s.Metrics[EvaluationStage.Names.Sw2Data])} = " +
                              $"{ratio.ToString("0.00", CultureInfo.InvariantCulture)}× the teacher's best{modes}.");
            }
            var floor = entries.FirstOrDefault(e => e.Kind == "data");
            if (floor is not null) sb.AppendLine($"- noise floor (data vs data): sw2 {Fmt(floor.Metrics[EvaluationStage.Names.Sw2Data])}.");
        }
        sb.AppendLine();
        sb.AppendLine("## Stages").AppendLine();
        sb.AppendLine($"- teacher preparation: {state.TeacherSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s");
        foreach (var s in state.Students)
            sb.AppendLine($"- `{s.StageKey}` ({s.Kind}, {s.Description}): {s.TrainingSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s");
        sb.AppendLine();
        if (config.Plots)
        {
            sb.AppendLine("## Plots").AppendLine();
            sb.AppendLine("![samples](samples.png)").AppendLine();
            sb.AppendLine("![losses](losses.png)").AppendLine();
        }
        sb.AppendLine("Training curves: `metrics.jsonl` and TensorBoard (`tensorboard --logdir tensorboard`).");
        return sb.ToString();
    }

    private static string Fmt(double v)
    {
        if (!double.IsFinite(v)) return v.ToString(CultureInfo.InvariantCulture);
        if (v == Math.Floor(v) && Math.Abs(v) < 1e6) return v.ToString("0", CultureInfo.InvariantCulture);
        double a = Math.Abs(v);
        return a >= 0.01 || a == 0 ? v.ToString("0.0000", CultureInfo.InvariantCulture) : v.ToString("0.00e+0", CultureInfo.InvariantCulture);
    }
}
