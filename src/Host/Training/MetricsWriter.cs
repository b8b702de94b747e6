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
public sealed class MetricsWriter : IDisposable
{
    private readonly StreamWriter _jsonl;
    private readonly SummaryWriter? _tensorboard;
    private readonly List<MetricPoint> _history = [];
    private readonly DateTime _start = DateTime.UtcNow;

    /// <summary>Opens the writers in <paramref name="runFolder"/> (appends to an existing metrics.jsonl).</summary>
    public MetricsWriter(string runFolder, bool tensorboard = true)
    {
        string path = Path.Combine(runFolder, FileName);
        if (File.Exists(path)) _history.AddRange(ReadPoints(path));
        _jsonl = new StreamWriter(path, append: true) { AutoFlush = false };
        if (tensorboard) _tensorboard = torch.utils.tensorboard.SummaryWriter(Path.Combine(runFolder, "tensorboard"));
    }

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

    private static IEnumerable<MetricPoint> ReadPoints(string path)
    {
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
                foreach (var p in root.EnumerateObject())
                {
                    if (p.Name is "stage" or "step" or "elapsed_s") continue;
                    double value = p.Value.ValueKind == JsonValueKind.Number ? p.Value.GetDouble()
                        : double.TryParse(p.Value.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : double.NaN;
                    yield return new MetricPoint(stage.GetString() ?? "", step.GetInt64(), p.Name, value);
                }
            }
        }
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
            json.WriteNumber("elapsed_s", Math.Round((DateTime.UtcNow - _start).TotalSeconds, 3));
            foreach (var (name, value) in values)
            {
                if (double.IsFinite(value)) json.WriteNumber(name, value);
                else json.WriteString(name, value.ToString(CultureInfo.InvariantCulture));
                _history.Add(new MetricPoint(stage, step, name, value));
                _tensorboard?.add_scalar($"{stage}/{name}", (float)value, (int)Math.Min(step, int.MaxValue));
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
