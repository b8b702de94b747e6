using HierDistill.Host.Storage;
using System.Globalization;
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
            Scatter(Path.Combine(folder, RunFolder.SamplesFigure), samples);
        Losses(Path.Combine(folder, RunFolder.LossesFigure), history);
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

    /// <summary>
    /// <c>comparison.png</c>: the primary metric (mean ± std over seeds) of every student model at one NFE across the
    /// variants in their order (e.g. student widths of a capacity study), one series per model (points joined by a line only
    /// when the variants' labels are numbers, a trend; categories such as awd/gap get markers alone), with the shared
    /// teacher's best NFE and the data floor as horizontal lines. Nothing is written when no variant has a student at that NFE.
    /// </summary>
    /// <param name="path">The PNG file.</param>
    /// <param name="table">The comparison's rows.</param>
    /// <param name="variants">Variant names in their order (the x axis).</param>
    /// <param name="nfe">The students' NFE to plot (1: one-step).</param>
    public static void Comparison(string path, Comparison.ComparisonTable table, IReadOnlyList<string> variants, int nfe = 1)
    {
        string metric = table.PrimaryMetric;
        if (metric.Length == 0) return;
        var students = table.Rows.Where(r => r.Kind is not ("teacher" or "data") && r.Nfe == nfe && r.Metrics.ContainsKey(metric)).ToList();
        if (students.Count == 0) return;
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int color = 0;
        // Lines join the variants only when they are values of one number (a trend); other variants (awd, gap) are
        // categories, drawn as markers alone.
        var labels = ShortLabels(variants);
        bool ordered = labels.Length > 1 && labels.All(l => double.TryParse(l, NumberStyles.Float, CultureInfo.InvariantCulture, out _));
        foreach (var model in students.GroupBy(r => r.Model))
        {
            var points = variants.Select((v, i) => (i, Row: model.FirstOrDefault(r => r.Variant == v))).Where(p => p.Row is not null).ToList();
            double[] xs = points.Select(p => (double)p.i).ToArray();
            double[] ys = points.Select(p => p.Row!.Metrics[metric].Mean).ToArray();
            var c = palette.GetColor(color++);
            var line = plot.Add.ScatterLine(xs, ys, c);
            line.MarkerSize = 7;
            if (!ordered) line.LineWidth = 0;
            line.LegendText = $"{model.Key} (NFE {nfe})";
            double[] errors = points.Select(p => p.Row!.Metrics[metric].Std ?? 0).ToArray();
            if (errors.Any(e => e > 0))
            {
                var bars = plot.Add.ErrorBar(xs, ys, errors);
                bars.Color = c;
            }
        }
        foreach (var (kind, pattern) in new[] { ("teacher", LinePattern.Dashed), ("data", LinePattern.Dotted) })
        {
            var rows = table.Rows.Where(r => r.Kind == kind && r.Metrics.ContainsKey(metric)).ToList();
            if (rows.Count == 0) continue;
            var best = rows.MinBy(r => r.Metrics[metric].Mean)!;
            var h = plot.Add.HorizontalLine(best.Metrics[metric].Mean);
            h.LinePattern = pattern;
            h.Color = Colors.Gray;
            h.LegendText = kind == "teacher" ? $"teacher, best (NFE {best.Nfe})" : "data vs data";
        }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, variants.Count).Select(i => (double)i).ToArray(), labels);
        plot.XLabel("variant");
        plot.YLabel($"{metric} (lower is better)");
        plot.ShowLegend(Edge.Right);
        plot.SavePng(path, Math.Max(700, 110 * variants.Count + 300), 450);
    }

    /// <summary>
    /// Tick labels for variant names: what they share at the start and the end is dropped (e.g. of
    /// <c>structure.student={"type":"mlp","options":{"hidden":16,...}}</c> and <c>...{"hidden":64,...}}</c> only <c>16</c> and
    /// <c>64</c> stay, cut at word-like boundaries), and each is cut to 24 characters.
    /// </summary>
    internal static string[] ShortLabels(IReadOnlyList<string> names)
    {
        if (names.Count < 2) return names.Select(n => Cut(n)).ToArray();
        // Names of --vary variants, "key=value, key2=value2" with the keys in one order: only the values of the keys whose
        // values differ ("awd, 0.0001" and "gap, 0.0001" would read alike once cut).
        var parts = names.Select(n => n.Split(", ")).ToList();
        static string KeyOf(string part) => part[..part.IndexOf('=')];
        if (parts.All(p => p.Length == parts[0].Length && p.All(x => x.IndexOf('=') > 0))
            && Enumerable.Range(0, parts[0].Length).All(i => parts.All(p => KeyOf(p[i]) == KeyOf(parts[0][i]))))
        {
            var differing = Enumerable.Range(0, parts[0].Length).Where(i => parts.Any(p => p[i] != parts[0][i])).ToList();
            if (differing.Count > 0)
                names = parts.Select(p => string.Join(", ", differing.Select(i => p[i][(p[i].IndexOf('=') + 1)..]))).ToList();
        }
        int prefix = 0, suffix = 0, shortest = names.Min(n => n.Length);
        while (prefix < shortest && names.All(n => n[prefix] == names[0][prefix])) prefix++;
        while (suffix < shortest - prefix && names.All(n => n[^(suffix + 1)] == names[0][^(suffix + 1)])) suffix++;
        // Keep whole tokens: back off to the last separator so "w16"/"w32" stay "w16"/"w32", not "16"/"32", and 0.05/0.1
        // stay numbers (a '.' after a digit is a decimal point, a '-' or '+' before a digit a sign: -0.5, 1e-4).
        var n0 = names[0];
        bool InToken(int i) => char.IsLetterOrDigit(n0[i]) || (n0[i] == '.' && i > 0 && char.IsDigit(n0[i - 1]))
                               || (n0[i] is '-' or '+' && i + 1 < n0.Length && char.IsDigit(n0[i + 1]));
        while (prefix > 0 && InToken(prefix - 1)) prefix--;
        while (suffix > 0 && InToken(n0.Length - suffix)) suffix--;
        return names.Select(n => Cut(n[prefix..(n.Length - suffix)])).ToArray();

        static string Cut(string s) => s.Length <= 24 ? s : s[..23] + "…";
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
            bool right = false;
            foreach (var s in series)
            {
                var pts = s.Where(p => double.IsFinite(p.Value)).ToList();
                if (pts.Count == 0) continue;
                var line = plot.Add.ScatterLine(pts.Select(p => (double)p.Step).ToArray(), pts.Select(p => p.Value).ToArray());
                line.LegendText = s.Key;
                // The unweighted loss of an adaptively weighted objective is orders of magnitude larger: its own axis, so that
                // the weighted loss is not a flat line at the bottom.
                if (s.Key.EndsWith("raw_loss", StringComparison.Ordinal))
                {
                    line.Axes.YAxis = plot.Axes.Right;
                    right = true;
                }
            }
            plot.Title($"{stage}");
            plot.XLabel("step");
            plot.YLabel("loss");
            if (right) plot.Axes.Right.Label.Text = "raw_loss (unweighted)";
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
