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
        _jsonl = new StreamWriter(Path.Combine(runFolder, "metrics.jsonl"), append: true) { AutoFlush = false };
        if (tensorboard) _tensorboard = torch.utils.tensorboard.SummaryWriter(Path.Combine(runFolder, "tensorboard"));
    }

    /// <summary>Everything logged so far.</summary>
    public IReadOnlyList<MetricPoint> History => _history;

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
    }

    /// <summary>Flushes buffered lines.</summary>
    public void Flush() => _jsonl.Flush();

    /// <inheritdoc/>
    public void Dispose()
    {
        _jsonl.Dispose();
    }
}
