using System.Globalization;
using System.Text;
using System.Text.Json;
using CsvHelper;
using HierDistill.Host.Evaluation;

namespace HierDistill.Host.Comparison;

/// <summary>One model at one NFE as one run's <c>metrics.json</c> records it.</summary>
/// <param name="Name">Model name (<c>data</c>, <c>teacher</c>, or a stage key).</param>
/// <param name="Kind">data, teacher, trajectory or distribution.</param>
/// <param name="Description">What it is.</param>
/// <param name="Sampler">Sampler name.</param>
/// <param name="Nfe">Network evaluations per sample.</param>
/// <param name="Metrics">Metric name → value (NaN for non-finite values written as text).</param>
/// <param name="SecondsPerSample">Sampling time per sample.</param>
/// <param name="TrainingSeconds">Wall time of the model's own stage.</param>
/// <param name="DistillationSeconds">Wall time of every student stage the model went through (0 when absent).</param>
/// <param name="Parameters">Parameter count (0 when absent).</param>
public sealed record ModelMetrics(string Name, string Kind, string Description, string Sampler, int Nfe,
    IReadOnlyDictionary<string, double> Metrics, double SecondsPerSample, double TrainingSeconds, double DistillationSeconds, long Parameters)
{
    /// <summary>Reads the <c>models</c> of a run's <c>metrics.json</c>.</summary>
    /// <returns>The models and the run's primary metric.</returns>
    /// <exception cref="InvalidDataException">When the file is not a metrics.json (the message names the file).</exception>
    public static (IReadOnlyList<ModelMetrics> Models, string PrimaryMetric) Read(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            string primary = root.TryGetProperty("primary_metric", out var p) ? p.GetString() ?? "" : "";
            var models = root.GetProperty("models").EnumerateArray().Select(m => new ModelMetrics(
                m.GetProperty("name").GetString()!,
                m.GetProperty("kind").GetString()!,
                m.TryGetProperty("description", out var d) ? d.GetString() ?? "" : "",
                m.GetProperty("sampler").GetString()!,
                m.GetProperty("nfe").GetInt32(),
                m.GetProperty("metrics").EnumerateObject().ToDictionary(x => x.Name, x => Number(x.Value)),
                Number(m.GetProperty("seconds_per_sample")),
                Number(m.GetProperty("training_seconds")),
                m.TryGetProperty("distillation_seconds", out var ds) ? Number(ds) : 0,
                m.TryGetProperty("parameters", out var pc) ? pc.GetInt64() : 0)).ToList();
            return (models, primary);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path} is not a readable metrics.json: {e.Message}", e);
        }
    }

    private static double Number(JsonElement e) => e.ValueKind == JsonValueKind.String
        ? double.Parse(e.GetString()!, CultureInfo.InvariantCulture) // non-finite values are written as text ("NaN", "Infinity")
        : e.GetDouble();
}

/// <summary>A row of the comparison: one variant's model at one NFE, aggregated over the variant's runs.</summary>
/// <param name="Variant">Variant name (<c>shared</c> for the teacher and the data floor when every variant shares them).</param>
/// <param name="Model">Model name.</param>
/// <param name="Kind">data, teacher, trajectory or distribution.</param>
/// <param name="Description">What the model is.</param>
/// <param name="Sampler">Sampler name.</param>
/// <param name="Nfe">NFE.</param>
/// <param name="Runs">Number of runs aggregated.</param>
/// <param name="Metrics">Each metric over the runs.</param>
/// <param name="SecondsPerSample">Sampling time per sample over the runs.</param>
/// <param name="TrainingSeconds">The model's own stage's wall time over the runs.</param>
/// <param name="DistillationSeconds">Wall time of all its student stages over the runs.</param>
/// <param name="Parameters">Parameter count (the largest seen; runs of one variant share the architecture).</param>
public sealed record ComparisonRow(string Variant, string Model, string Kind, string Description, string Sampler, int Nfe, int Runs,
    IReadOnlyDictionary<string, SeedStatistics> Metrics, SeedStatistics SecondsPerSample, SeedStatistics TrainingSeconds,
    SeedStatistics DistillationSeconds, long Parameters);

/// <summary>The rows of a comparison and their two renderings, <c>comparison.csv</c> and the table of <c>comparison.md</c>.</summary>
public sealed class ComparisonTable
{
    private ComparisonTable(IReadOnlyList<ComparisonRow> rows, IReadOnlyList<string> metricNames, string primaryMetric)
    {
        Rows = rows;
        MetricNames = metricNames;
        PrimaryMetric = primaryMetric;
    }

    /// <summary>The variant name of the rows every variant shares (the teacher and the data floor).</summary>
    public const string SharedVariant = "shared";

    /// <summary>The rows: the shared teacher and data floor first, then each variant's models in evaluation order.</summary>
    public IReadOnlyList<ComparisonRow> Rows { get; }

    /// <summary>Every metric name, in order of first appearance.</summary>
    public IReadOnlyList<string> MetricNames { get; }

    /// <summary>The metric models are ranked by (lower is better), from the runs' metrics.json.</summary>
    public string PrimaryMetric { get; }

    /// <summary>Aggregates runs into rows.</summary>
    /// <param name="groups">Per row group (a variant, or the shared teacher): its name, each run's models, and which models it contributes.</param>
    /// <param name="primaryMetric">The primary metric.</param>
    public static ComparisonTable Build(IReadOnlyList<(string Variant, IReadOnlyList<IReadOnlyList<ModelMetrics>> Runs, Func<ModelMetrics, bool> Include)> groups,
        string primaryMetric)
    {
        var rows = new List<ComparisonRow>();
        var metricNames = new List<string>();
        foreach (var (variant, runs, include) in groups)
        {
            var entries = runs.SelectMany(r => r.Where(include)).ToList();
            foreach (var name in entries.SelectMany(e => e.Metrics.Keys)) if (!metricNames.Contains(name)) metricNames.Add(name);
            foreach (var same in entries.GroupBy(e => (e.Name, e.Sampler, e.Nfe)))
            {
                var list = same.ToList();
                var first = list[0];
                var metrics = list.SelectMany(e => e.Metrics.Keys).Distinct()
                    .ToDictionary(k => k, k => SeedStatistics.Of(list.Where(e => e.Metrics.ContainsKey(k)).Select(e => e.Metrics[k]).ToList()));
                rows.Add(new ComparisonRow(variant, first.Name, first.Kind, first.Description, first.Sampler, first.Nfe, list.Count, metrics,
                    SeedStatistics.Of(list.Select(e => e.SecondsPerSample).ToList()),
                    SeedStatistics.Of(list.Select(e => e.TrainingSeconds).ToList()),
                    SeedStatistics.Of(list.Select(e => e.DistillationSeconds).ToList()),
                    list.Max(e => e.Parameters)));
            }
        }
        return new ComparisonTable(rows, metricNames, primaryMetric);
    }

    /// <summary>
    /// <c>comparison.csv</c> (RFC 4180, written by CsvHelper): one row per variant, model and NFE; every metric as
    /// <c>&lt;metric&gt;_mean</c> and <c>&lt;metric&gt;_std</c> (empty for one run), sampling seconds per sample, the model's
    /// stage seconds, its distillation seconds and its parameter count. Numbers in invariant culture, round-trip precision.
    /// </summary>
    public string Csv()
    {
        var header = new List<string> { "variant", "model", "kind", "description", "sampler", "nfe", "runs" };
        foreach (var m in MetricNames) header.AddRange([$"{m}_mean", $"{m}_std"]);
        foreach (var h in new[] { "seconds_per_sample", "training_seconds", "distillation_seconds" }) header.AddRange([$"{h}_mean", $"{h}_std"]);
        header.Add("parameters");

        using var text = new StringWriter(CultureInfo.InvariantCulture);
        using (var csv = CsvWriter.Create(text, CsvWriterOptions.Default, true))
        {
            csv.WriteHeader(header.ToArray());
            foreach (var r in Rows)
            {
                var fields = new List<string>
                {
                    r.Variant, r.Model, r.Kind, r.Description, r.Sampler,
                    r.Nfe.ToString(CultureInfo.InvariantCulture), r.Runs.ToString(CultureInfo.InvariantCulture),
                };
                foreach (var m in MetricNames)
                {
                    var s = r.Metrics.TryGetValue(m, out var v) ? v : new SeedStatistics(double.NaN, null, 0);
                    fields.Add(s.Count == 0 ? "" : Exact(s.Mean));
                    fields.Add(s.Std is { } sd ? Exact(sd) : "");
                }
                foreach (var s in new[] { r.SecondsPerSample, r.TrainingSeconds, r.DistillationSeconds })
                {
                    fields.Add(Exact(s.Mean));
                    fields.Add(s.Std is { } sd ? Exact(sd) : "");
                }
                fields.Add(r.Parameters.ToString(CultureInfo.InvariantCulture));
                csv.WriteRecord(fields.ToArray());
            }
        }
        return text.ToString();
    }

    /// <summary>The markdown table (per-mode masses left to the CSV): <c>mean ± std</c> per metric, NFE, timings and parameters.</summary>
    public string MarkdownTable() =>
        Reporting.MarkdownTable.Render(
            [("variant", false), ("model", false), ("sampler", false), ("NFE", true), ("runs", true)],
            Reporting.MarkdownTable.ShownMetrics(MetricNames),
            ["ms/sample", "train s", "distill s", "params"],
            // The data row is no sampler: no NFE and no sampling time (as in report.md).
            Rows.Select(r => ((IReadOnlyList<string>)[Cell(r.Variant), Cell(r.Model), r.Sampler,
                    r.Kind == "data" ? "-" : r.Nfe.ToString(CultureInfo.InvariantCulture), r.Runs.ToString(CultureInfo.InvariantCulture)],
                (Func<string, string?>)(m => r.Metrics.TryGetValue(m, out var s) ? Format(s) : null),
                (IReadOnlyList<string>)[r.Kind == "data" ? "-" : Format(Scale(r.SecondsPerSample, 1000)),
                    r.TrainingSeconds.Mean > 0 ? Format(r.TrainingSeconds, "0.0") : "",
                    r.DistillationSeconds.Mean > 0 ? Format(r.DistillationSeconds, "0.0") : "",
                    r.Parameters > 0 ? r.Parameters.ToString("N0", CultureInfo.InvariantCulture) : ""])));

    /// <summary>
    /// Summary lines in markdown: the teacher's best score, every one-step model ranked by the primary metric with its ratio
    /// to the best of <em>its own</em> teacher (the variant's when the variant trained or evaluated one of its own, else the
    /// shared one), the noise floor. Variants with teachers of their own get one teacher and floor line each. A rank whose mean
    /// lies within the sum of its and the previous rank's standard deviations over seeds says so.
    /// </summary>
    public IReadOnlyList<string> Summary()
    {
        var lines = new List<string>();
        if (PrimaryMetric.Length == 0) return lines;
        double Score(ComparisonRow r) => r.Metrics.TryGetValue(PrimaryMetric, out var s) ? s.Mean : double.NaN;
        var teachers = Rows.Where(r => r.Kind == "teacher" && !double.IsNaN(Score(r))).GroupBy(r => r.Variant)
            .ToDictionary(g => g.Key, g => g.MinBy(Score)!);
        var floors = Rows.Where(r => r.Kind == "data" && !double.IsNaN(Score(r))).GroupBy(r => r.Variant).ToDictionary(g => g.Key, g => g.First());
        ComparisonRow? Own(IReadOnlyDictionary<string, ComparisonRow> by, string variant) =>
            by.TryGetValue(variant, out var own) ? own : by.GetValueOrDefault(SharedVariant);
        bool several = teachers.Count > 1;
        foreach (var (variant, teacher) in teachers)
            lines.Add($"- teacher (`{variant}`): best {PrimaryMetric} {Format(teacher.Metrics[PrimaryMetric])} at NFE {teacher.Nfe}.");
        var oneStep = Rows.Where(r => r.Kind is "trajectory" or "distribution" && r.Nfe == 1 && !double.IsNaN(Score(r))).OrderBy(Score).ToList();
        for (int i = 0; i < oneStep.Count; i++)
        {
            var r = oneStep[i];
            var teacher = Own(teachers, r.Variant);
            string ratio = teacher is null ? ""
                : $" = {(Score(r) / Score(teacher)).ToString("0.00", CultureInfo.InvariantCulture)}× {(several ? $"its teacher's (`{teacher.Variant}`)" : "the teacher's")} best";
            // Two ranks whose means lie within the sum of their seeds' standard deviations are not told apart by these seeds.
            string overlap = "";
            if (i > 0 && r.Metrics[PrimaryMetric] is { Std: { } sd } && oneStep[i - 1].Metrics[PrimaryMetric] is { Std: { } previous }
                && Math.Abs(Score(r) - Score(oneStep[i - 1])) <= sd + previous)
                overlap = $" Within the spread of rank {i} (the means differ by no more than their standard deviations added): these seeds do not tell the two apart.";
            // The ranking is by the primary metric alone; mode coverage (2-D mixtures), which it can hide, stands beside it.
            string modes = r.Metrics.TryGetValue("modes_covered", out var covered) && r.Metrics.TryGetValue("modes_total", out var total)
                ? $", modes {Format(covered)} of {Number(total.Mean)}" : "";
            // A model the varied keys do not reach (stage 1 when only stage 2 varies) scores the same in every variant.
            int same = oneStep.FindIndex(0, i, o => o.Model == r.Model && o.Description == r.Description && o.Metrics.Count == r.Metrics.Count
                                                     && o.Metrics.All(m => r.Metrics.TryGetValue(m.Key, out var s) && s == m.Value));
            if (same >= 0) overlap = $" The same scores as rank {same + 1}: what is varied does not reach this model.";
            lines.Add($"{i + 1}. `{r.Variant}` / {r.Model} ({r.Description}), 1 step: {PrimaryMetric} {Format(r.Metrics[PrimaryMetric])}{ratio}{modes}.{overlap}");
        }
        foreach (var (variant, floor) in floors)
            lines.Add($"- data vs data (the noise floor{(floors.Count > 1 ? $", `{variant}`" : "")}): {PrimaryMetric} {Format(floor.Metrics[PrimaryMetric])}: " +
                      "what a perfect sampler scores with this many samples, not a strict lower bound (a model can score below it).");
        return lines;
    }

    private static SeedStatistics Scale(SeedStatistics s, double factor) => new(s.Mean * factor, s.Std * factor, s.Count);

    private static string Cell(string text) => text.Replace("|", "\\|");

    /// <summary><c>mean ± std</c> (just the mean for one run).</summary>
    public static string Format(SeedStatistics s, string? format = null) =>
        s.Std is { } sd ? $"{Number(s.Mean, format)} ± {Number(sd, format)}" : Number(s.Mean, format);

    private static string Number(double v, string? format = null)
    {
        if (format is not null) return v.ToString(format, CultureInfo.InvariantCulture);
        if (!double.IsFinite(v)) return v.ToString(CultureInfo.InvariantCulture);
        if (v == Math.Floor(v) && Math.Abs(v) < 1e6) return v.ToString("0", CultureInfo.InvariantCulture);
        double a = Math.Abs(v);
        return a >= 0.01 || a == 0 ? v.ToString("0.0000", CultureInfo.InvariantCulture) : v.ToString("0.00e+0", CultureInfo.InvariantCulture);
    }

    private static string Exact(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
