using System.Globalization;
using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;

namespace HierDistill.Host.Training;

/// <summary>One logged point of a scalar series.</summary>
/// <param name="Stage">Stage key.</param>
/// <param name="Step">Step within the stage.</param>
/// <param name="Name">Series name, e.g. <c>loss</c> or <c>fake_score/loss</c>.</param>
/// <param name="Value">The value.</param>
public readonly record struct MetricPoint(string Stage, long Step, string Name, double Value);

/// <summary>
/// Training metrics: one JSON object per logged step in <c>metrics.jsonl</c>, TensorBoard event files
/// under <c>tensorboard/</c>, and an in-memory copy for the loss-curve plots.
/// </summary>
/// <remarks>
/// <c>metrics.jsonl</c> is the record; the TensorBoard events hold the same points. On a resume (an existing
/// metrics.jsonl, already trimmed to the checkpoint by <see cref="Trim"/>) the TensorBoard folder is rewritten from
/// metrics.jsonl, so the steps the stopped process logged after its checkpoint, which the resumed one logs again, are not
/// shown twice; and <c>elapsed_s</c> continues from the last value in the file (seconds of the run's processes, summed
/// over resumes, not wall-clock time since the start).
/// </remarks>
public sealed class MetricsWriter : IDisposable
{
    private readonly StreamWriter _jsonl;
    private readonly SummaryWriter? _tensorboard;
    private readonly List<MetricPoint> _history = [];
    private readonly DateTime _start = DateTime.UtcNow;
    private readonly double _elapsedBefore;

    /// <summary>The TensorBoard folder in the run folder.</summary>
    public const string TensorBoardFolder = "tensorboard";

    /// <summary>Where a resume writes the new TensorBoard folder before swapping it in (a leftover is replaced).</summary>
    public const string TensorBoardRewriteFolder = ".tensorboard.tmp";

    /// <summary>Where the old TensorBoard folder goes during the swap (a leftover is deleted).</summary>
    public const string TensorBoardOldFolder = ".tensorboard.old.tmp";

    /// <summary>Opens the writers in <paramref name="runFolder"/> (appends to an existing metrics.jsonl, and then rewrites
    /// the TensorBoard folder from it).</summary>
    /// <exception cref="IOException">The folder cannot be written.</exception>
    public MetricsWriter(string runFolder, bool tensorboard = true)
    {
        string path = Path.Combine(runFolder, FileName);
        bool resumed = File.Exists(path);
        if (resumed) _elapsedBefore = ReadPoints(path, _history);
        _jsonl = new StreamWriter(path, append: true) { AutoFlush = false };
        if (!tensorboard) return;
        if (resumed) RewriteTensorBoard(runFolder, _history);
        _tensorboard = torch.utils.tensorboard.SummaryWriter(Path.Combine(runFolder, TensorBoardFolder));
    }

    /// <summary>
    /// Replaces <c>tensorboard/</c> with event files holding exactly <paramref name="points"/>: written to a temporary
    /// folder first, then swapped in (a crash in between leaves metrics.jsonl, the record, untouched; the next resume
    /// writes the folder again).
    /// </summary>
    private static void RewriteTensorBoard(string runFolder, IReadOnlyList<MetricPoint> points)
    {
        string folder = Path.Combine(runFolder, TensorBoardFolder);
        string fresh = Path.Combine(runFolder, TensorBoardRewriteFolder), old = Path.Combine(runFolder, TensorBoardOldFolder);
        foreach (var leftover in new[] { fresh, old })
        {
            if (Directory.Exists(leftover)) Directory.Delete(leftover, recursive: true);
            else if (File.Exists(leftover)) File.Delete(leftover);
        }
        var writer = torch.utils.tensorboard.SummaryWriter(fresh);
        foreach (var p in points) AddScalar(writer, p);
        if (Directory.Exists(folder)) Directory.Move(folder, old);
        Directory.Move(fresh, folder);
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
    }

    /// <summary>One point as a TensorBoard scalar: tag <c>stage/name</c>, the step within the stage.</summary>
    private static void AddScalar(SummaryWriter writer, MetricPoint p) =>
        writer.add_scalar($"{p.Stage}/{p.Name}", (float)p.Value, (int)Math.Min(p.Step, int.MaxValue));

    /// <summary>Everything logged so far.</summary>
    public IReadOnlyList<MetricPoint> History => _history;

    /// <summary>The training-metrics file in the run folder.</summary>
    public const string FileName = "metrics.jsonl";

    /// <summary>
    /// Before a resume: keeps only the lines of <paramref name="runFolder"/>'s metrics.jsonl that <paramref name="keep"/>
    /// accepts (by stage and step), so the steps after the checkpoint, logged before the run stopped, are not there twice.
    /// The file is rewritten atomically.
    /// </summary>
    /// <returns>The number of lines dropped.</returns>
    public static int Trim(string runFolder, Func<string, long, bool> keep)
    {
        string path = Path.Combine(runFolder, FileName);
        if (!File.Exists(path)) return 0;
        var lines = File.ReadAllLines(path);
        var kept = lines.Where(l =>
        {
            if (string.IsNullOrWhiteSpace(l)) return false;
            try
            {
                using var doc = JsonDocument.Parse(l);
                return keep(doc.RootElement.GetProperty("stage").GetString() ?? "", doc.RootElement.GetProperty("step").GetInt64());
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return false; // a line cut short when the process was killed
            }
        }).ToList();
        Storage.AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join('\n', kept) + "\n");
        return lines.Length - kept.Count;
    }

    /// <summary>Adds the points of a metrics.jsonl to <paramref name="points"/>; returns its largest <c>elapsed_s</c> (0 if none).</summary>
    private static double ReadPoints(string path, List<MetricPoint> points)
    {
        double elapsed = 0;
        foreach (var line in File.ReadLines(path))
        {
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(line);
            }
            catch (JsonException)
            {
                continue;
            }
            using (doc)
            {
                var root = doc.RootElement;
                if (!root.TryGetProperty("stage", out var stage) || !root.TryGetProperty("step", out var step)) continue;
                if (root.TryGetProperty("elapsed_s", out var e) && e.ValueKind == JsonValueKind.Number) elapsed = Math.Max(elapsed, e.GetDouble());
                foreach (var p in root.EnumerateObject())
                {
                    if (p.Name is "stage" or "step" or "elapsed_s") continue;
                    double value = p.Value.ValueKind == JsonValueKind.Number ? p.Value.GetDouble()
                        : double.TryParse(p.Value.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : double.NaN;
                    points.Add(new MetricPoint(stage.GetString() ?? "", step.GetInt64(), p.Name, value));
                }
            }
        }
        return elapsed;
    }

    /// <summary>Logs the values of one step.</summary>
    public void Log(string stage, long step, IReadOnlyDictionary<string, double> values)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("stage", stage);
            json.WriteNumber("step", step);
            json.WriteNumber("elapsed_s", Math.Round(_elapsedBefore + (DateTime.UtcNow - _start).TotalSeconds, 3));
            foreach (var (name, value) in values)
            {
                if (double.IsFinite(value)) json.WriteNumber(name, value);
                else json.WriteString(name, value.ToString(CultureInfo.InvariantCulture));
                var point = new MetricPoint(stage, step, name, value);
                _history.Add(point);
                if (_tensorboard is not null) AddScalar(_tensorboard, point);
            }
            json.WriteEndObject();
        }
        _jsonl.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
        _jsonl.Flush(); // one line every run.logEvery steps: cheap, and `tail -f metrics.jsonl` shows the run as it goes
    }

    /// <summary>Flushes buffered lines.</summary>
    public void Flush() => _jsonl.Flush();

    /// <inheritdoc/>
    public void Dispose()
    {
        _jsonl.Dispose();
    }
}
