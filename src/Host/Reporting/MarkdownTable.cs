using System.Text;
using HierDistill.Host.Evaluation;

namespace HierDistill.Host.Reporting;

/// <summary>The markdown tables of report.md and comparison.md: fixed leading columns, one column per metric, trailing columns.</summary>
public static class MarkdownTable
{
    /// <summary>The metrics a table shows: all but the per-mode masses (<c>mode_mass_0</c> ...), which stay in the JSON and CSV.</summary>
    public static List<string> ShownMetrics(IEnumerable<string> names) =>
        names.Where(k => !(k.StartsWith(EvaluationStage.Names.ModeMass + "_", StringComparison.Ordinal) && char.IsAsciiDigit(k[^1]))).ToList();

    /// <summary>
    /// A table with <paramref name="leading"/> columns, then one right-aligned column per metric of <paramref name="metrics"/>,
    /// then right-aligned <paramref name="trailing"/> columns. Each row gives its leading cells, a metric formatter (null or
    /// empty string: empty cell) and its trailing cells.
    /// </summary>
    /// <param name="leading">Leading column headers and whether each is right-aligned.</param>
    /// <param name="metrics">Metric columns.</param>
    /// <param name="trailing">Trailing column headers (right-aligned).</param>
    /// <param name="rows">The rows.</param>
    public static string Render(IReadOnlyList<(string Header, bool Right)> leading, IReadOnlyList<string> metrics, IReadOnlyList<string> trailing,
        IEnumerable<(IReadOnlyList<string> Leading, Func<string, string?> Metric, IReadOnlyList<string> Trailing)> rows)
    {
        var sb = new StringBuilder("|");
        foreach (var h in leading.Select(c => c.Header).Concat(metrics).Concat(trailing)) sb.Append($" {h} |");
        sb.AppendLine().Append('|');
        foreach (var (_, right) in leading) sb.Append(right ? "---:|" : "---|");
        foreach (var _ in metrics.Concat(trailing)) sb.Append("---:|");
        sb.AppendLine();
        foreach (var (cells, metric, tail) in rows)
        {
            sb.Append('|');
            foreach (var c in cells) sb.Append($" {c} |");
            foreach (var m in metrics) sb.Append($" {metric(m)} |");
            foreach (var c in tail) sb.Append($" {c} |");
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
