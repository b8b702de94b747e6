using HierDistill.Abstractions.Data;
using HierDistill.Host.Evaluation;
using HierDistill.Host.Training;
using ScottPlot;
using static TorchSharp.torch;

namespace HierDistill.Host.Reporting;

/// <summary>PNG plots of a run (ScottPlot): sample scatter plots and loss curves.</summary>
public static class Plots
{
    /// <summary>Writes <c>samples.png</c> (2-D data only) and <c>losses.png</c> into <paramref name="folder"/>.</summary>
    public static void Write(string folder, IReadOnlyList<PlotSamples> samples, IReadOnlyList<MetricPoint> history, GaussianMixture? mixture)
    {
        if (samples.Count > 0 && samples[0].Samples.ndim == 2 && samples[0].Samples.shape[1] == 2)
            Scatter(Path.Combine(folder, "samples.png"), samples);
        Losses(Path.Combine(folder, "losses.png"), history);
    }

    /// <summary>One scatter panel per sample set, coloured by class, on shared axes.</summary>
    public static void Scatter(string path, IReadOnlyList<PlotSamples> sets)
    {
        int cols = Math.Min(3, sets.Count), rows = (sets.Count + cols - 1) / cols;
        var multiplot = NewMultiplot(rows, cols);
        var all = sets.Select(s => s.Samples.to_type(ScalarType.Float64)).ToList();
        double lim = all.Max(t => t.abs().max().item<double>()) * 1.05;
        var palette = new ScottPlot.Palettes.Category10();
        foreach (var set in sets)
        {
            var plot = multiplot.AddPlot();
            var xy = set.Samples.to_type(ScalarType.Float64);
            var x = xy[.., 0].data<double>().ToArray();
            var y = xy[.., 1].data<double>().ToArray();
            var labels = set.Labels.data<long>().ToArray();
            foreach (var c in labels.Distinct().Order())
            {
                var idx = Enumerable.Range(0, labels.Length).Where(i => labels[i] == c).ToArray();
                var points = plot.Add.ScatterPoints(idx.Select(i => x[i]).ToArray(), idx.Select(i => y[i]).ToArray(), palette.GetColor((int)c));
                points.MarkerSize = 2;
            }
            plot.Title(set.Title);
            plot.Axes.SetLimits(-lim, lim, -lim, lim);
        }
        multiplot.SavePng(path, 400 * cols, 400 * rows);
    }

    /// <summary>One panel per stage with its loss series (at most six per panel).</summary>
    public static void Losses(string path, IReadOnlyList<MetricPoint> history)
    {
        var stages = history.Select(p => p.Stage).Distinct().ToList();
        if (stages.Count == 0) return;
        var multiplot = NewMultiplot(stages.Count, 1);
        foreach (var stage in stages)
        {
            var plot = multiplot.AddPlot();
            var series = history.Where(p => p.Stage == stage && IsLoss(p.Name)).GroupBy(p => p.Name).Take(6);
            foreach (var s in series)
            {
                var pts = s.Where(p => double.IsFinite(p.Value)).ToList();
                if (pts.Count == 0) continue;
                var line = plot.Add.ScatterLine(pts.Select(p => (double)p.Step).ToArray(), pts.Select(p => p.Value).ToArray());
                line.LegendText = s.Key;
            }
            plot.Title($"{stage}");
            plot.XLabel("step");
            plot.ShowLegend(Edge.Right);
        }
        multiplot.SavePng(path, 1100, 300 * stages.Count);
    }

    /// <summary>An empty multiplot (the constructor adds one plot) with a rows × columns grid.</summary>
    private static Multiplot NewMultiplot(int rows, int columns)
    {
        var multiplot = new Multiplot { Layout = new ScottPlot.MultiplotLayouts.Grid(rows, columns) };
        while (multiplot.Subplots.Count > 0) multiplot.Subplots.RemoveAt(0);
        return multiplot;
    }

    private static bool IsLoss(string name) =>
        name.EndsWith("loss", StringComparison.Ordinal) || name.EndsWith("raw_loss", StringComparison.Ordinal) || name.EndsWith("mse", StringComparison.Ordinal);
}
