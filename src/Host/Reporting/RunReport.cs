using System.Globalization;
using System.Text;
using System.Text.Json;
using HierDistill.Host.Configuration;
using HierDistill.Host.Evaluation;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Storage;

namespace HierDistill.Host.Reporting;

/// <summary>Writes <c>metrics.json</c> (one entry per evaluated model and NFE) and <c>report.md</c> into the run folder.</summary>
public sealed class RunReport(RunContext run, PipelineState state, EvaluationStageConfig config, IReadOnlyList<EvaluationEntry> entries,
    string primaryMetric, IReadOnlyList<string> notes, IReadOnlyList<string> pictures)
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
            ["primary_metric"] = primaryMetric,
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
                ["distillation_seconds"] = Math.Round(e.DistillationSeconds, 3),
                ["parameters"] = e.Parameters,
            }).ToList(),
            ["stages"] = state.Throughput.Select(t => new Dictionary<string, object?>
            {
                ["stage"] = t.Stage,
                ["steps"] = t.Steps,
                ["batch_size"] = t.BatchSize,
                ["seconds"] = Math.Round(t.Seconds, 3),
                ["step_ms"] = Math.Round(t.StepMilliseconds, 3),
                ["samples_per_s"] = Math.Round(t.SamplesPerSecond, 1),
                ["peak_device_mib"] = t.PeakDeviceMiB is { } peak ? Math.Round(peak) : null,
            }).ToList(),
        };
        return JsonSerializer.Serialize(doc, Json);
    }

    private static object Finite(double v) => double.IsFinite(v) ? v : v.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// How the run was made, from its <c>config.resolved.json</c>: the config the user gave (a resumed run's too, not the
    /// resolved copy it was resumed with) and the <c>--set</c> overrides; none when the file cannot be read.
    /// </summary>
    private (string? Source, IReadOnlyList<string> Overrides, IReadOnlyList<IReadOnlyList<string>> Resumes) Provenance()
    {
        static List<string> Strings(JsonElement parent, string name) =>
            parent.TryGetProperty(name, out var o) && o.ValueKind == JsonValueKind.Array
                ? o.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString() ?? "" : "").Where(x => x.Length > 0).ToList()
                : [];
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(run.OutputDirectory, RunFolder.ResolvedConfigFile)));
            if (!doc.RootElement.TryGetProperty(ConfigLoader.ProvenanceKey, out var p)) return (null, [], []);
            string? source = p.TryGetProperty("source", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null;
            // The settings each resume changed (a learning rate, gradClip, maxSkippedSteps).
            var resumes = p.TryGetProperty("resumedWith", out var r) && r.ValueKind == JsonValueKind.Array
                ? r.EnumerateArray().Select(x => (IReadOnlyList<string>)Strings(x, "changes")).ToList()
                : [];
            return (source, Strings(p, "overrides"), resumes);
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException or InvalidOperationException)
        {
            return (null, [], []);
        }
    }

    /// <summary><paramref name="text"/> as Markdown inline code, fenced with more backticks than it holds in a row.</summary>
    private static string Code(string text)
    {
        int run = 0, longest = 0;
        foreach (char c in text)
        {
            run = c == '`' ? run + 1 : 0;
            longest = Math.Max(longest, run);
        }
        string fence = new('`', longest + 1);
        string pad = longest > 0 ? " " : "";
        return $"{fence}{pad}{text}{pad}{fence}";
    }

    /// <summary>The human-readable report.</summary>
    public string Markdown()
    {
        var cfg = run.Config.Config;
        var sb = new StringBuilder();
        sb.AppendLine($"# HierDistill run `{cfg.Run.Name}`").AppendLine();
        var (source, overrides, resumes) = Provenance();
        sb.AppendLine($"- config: {Code(source ?? run.Config.SourcePath)}" +
                      (overrides.Count > 0 ? $" with {string.Join(" ", overrides.Select(o => Code($"--set {o}")))}" : "") +
                      " (resolved copy, every default included: `config.resolved.json`)");
        if (run.ResumedFrom is { } resumedFrom)
            sb.AppendLine($"- resumed from a checkpoint ({resumedFrom}); without changed settings, on the CPU, the result is bit-identical to " +
                          "an uninterrupted run's (`log.txt` has every start)");
        foreach (var r in resumes.Where(r => r.Count > 0))
            sb.AppendLine($"- resumed with changed settings: {string.Join("; ", r.Select(Code))}");
        sb.AppendLine($"- data: {state.Data.Spec}");
        sb.AppendLine($"- device: {run.Environment.Device}; seed {cfg.Run.Seed}");
        sb.AppendLine($"- evaluation: {config.Samples} samples per model, the same noise and labels for every model; teacher sampled with " +
                      $"{config.TeacherSolver}, CFG scale {Fmt(config.TeacherGuidanceScale)}; students sampled without CFG.");
        foreach (var note in notes) sb.AppendLine($"- {note}");
        sb.AppendLine($"- `ms/sample`: wall-clock sampling time per sample on {run.Environment.Device}; `train s`: wall time of the stage that trained the model.");
        sb.AppendLine();

        sb.Append(MarkdownTable.Render(
            [("model", false), ("kind", false), ("sampler", false), ("NFE", true)],
            MarkdownTable.ShownMetrics(entries.SelectMany(e => e.Metrics.Keys).Distinct()),
            ["ms/sample", "train s"],
            // The data row is no sampler: no NFE and no sampling time.
            entries.Select(e => ((IReadOnlyList<string>)[e.Name, e.Kind, e.Sampler, e.Kind == "data" ? "-" : e.Nfe.ToString(CultureInfo.InvariantCulture)],
                (Func<string, string?>)(m => e.Metrics.TryGetValue(m, out var v) ? Fmt(v) : null),
                (IReadOnlyList<string>)[e.Kind == "data" ? "-" : Fmt(e.SecondsPerSample * 1000),
                    e.TrainingSeconds > 0 ? e.TrainingSeconds.ToString("0.0", CultureInfo.InvariantCulture) : ""]))));
        sb.AppendLine();

        sb.AppendLine("## Summary").AppendLine();
        var teacherRows = entries.Where(e => e.Kind == "teacher" && e.Metrics.ContainsKey(primaryMetric)).ToList();
        if (teacherRows.Count > 0)
        {
            var best = teacherRows.MinBy(e => e.Metrics[primaryMetric])!;
            sb.AppendLine($"- teacher: best {primaryMetric} {Fmt(best.Metrics[primaryMetric])} at NFE {best.Nfe} ({best.Sampler}, " +
                          $"{Fmt(best.SecondsPerSample * 1000)} ms/sample){Extra(best)}.");
            foreach (var s in entries.Where(e => e.Kind is "trajectory" or "distribution" && e.Nfe == 1))
            {
                double ratio = s.Metrics[primaryMetric] / best.Metrics[primaryMetric];
                double speedup = s.SecondsPerSample > 0 ? best.SecondsPerSample / s.SecondsPerSample : double.NaN;
                sb.AppendLine($"- `{s.Name}` ({s.Description}), 1 step: {primaryMetric} {Fmt(s.Metrics[primaryMetric])} = " +
                              $"{ratio.ToString("0.00", CultureInfo.InvariantCulture)}× the teacher's best{Extra(s)}; " +
                              $"{speedup.ToString("0.0", CultureInfo.InvariantCulture)}× faster per sample than the teacher at NFE {best.Nfe}.");
            }
            var floor = entries.FirstOrDefault(e => e.Kind == "data");
            if (floor is not null) sb.AppendLine($"- data vs data (a perfect sampler's score): {primaryMetric} {Fmt(floor.Metrics[primaryMetric])}{Extra(floor)}.");
        }
        sb.AppendLine();
        sb.AppendLine("## Stages").AppendLine();
        sb.AppendLine($"- teacher preparation: {state.TeacherSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s{Throughput("teacher")}");
        foreach (var s in state.Students)
            sb.AppendLine($"- `{s.StageKey}` ({s.Kind}, {s.Description}): {s.TrainingSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s{Throughput(s.StageKey)}");
        sb.AppendLine();
        if (pictures.Count > 0)
        {
            sb.AppendLine("## Pictures").AppendLine();
            foreach (var p in pictures) sb.AppendLine($"![{Path.GetFileNameWithoutExtension(p)}]({p})").AppendLine();
        }
        sb.AppendLine("Training curves: `metrics.jsonl` and TensorBoard (`tensorboard --logdir tensorboard`).");
        return sb.ToString();
    }

    private string Throughput(string stage) =>
        (stage == "teacher" ? state.Throughput.FirstOrDefault(t => run.Config.Config.Stages.TryGetValue(t.Stage, out var c) && c is TeacherStageConfig)
                            : state.Throughput.FirstOrDefault(t => t.Stage == stage)) is { } t ? $" ({t})" : "";

    private static string Extra(EvaluationEntry e)
    {
        var parts = new List<string>();
        if (e.Metrics.TryGetValue(EvaluationStage.Names.ModesCovered, out var c))
            parts.Add($"modes {c:0}/{e.Metrics[EvaluationStage.Names.ModesTotal]:0}");
        if (e.Metrics.TryGetValue(Evaluation.ImageSuite.ClassAccuracy, out var a))
            parts.Add($"class accuracy {a.ToString("P1", CultureInfo.InvariantCulture)}");
        return parts.Count == 0 ? "" : ", " + string.Join(", ", parts);
    }

    private static string Fmt(double v)
    {
        if (!double.IsFinite(v)) return v.ToString(CultureInfo.InvariantCulture);
        if (v == Math.Floor(v) && Math.Abs(v) < 1e6) return v.ToString("0", CultureInfo.InvariantCulture);
        double a = Math.Abs(v);
        return a >= 0.01 || a == 0 ? v.ToString("0.0000", CultureInfo.InvariantCulture) : v.ToString("0.00e+0", CultureInfo.InvariantCulture);
    }
}
