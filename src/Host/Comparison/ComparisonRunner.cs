using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using HierDistill.Host.Configuration;
using HierDistill.Host.Runtime;
using HierDistill.Host.Pipeline.Stages;
using HierDistill.Host.Storage;
using HierDistill.Host.Training;
using Spectre.Console;

namespace HierDistill.Host.Comparison;

/// <summary>One run of a comparison and how it ended.</summary>
/// <param name="Variant">The variant (null for the shared teacher run).</param>
/// <param name="Seed">Its run.seed.</param>
/// <param name="Folder">Its run folder.</param>
/// <param name="ExitCode">The run's exit code (0: finished).</param>
/// <param name="Seconds">Wall time of the run (0 when reused).</param>
/// <param name="Reused">Kept from an earlier comparison (<c>--resume</c>).</param>
public sealed record ComparisonRun(ComparisonVariant? Variant, long Seed, string Folder, int ExitCode, double Seconds, bool Reused);

/// <summary>
/// Runs a <see cref="ComparisonPlan"/>: validates every variant first, trains the teacher once (when the base config
/// trains one) and loads it in every variant (<c>stages:&lt;teacher&gt;:loadFrom</c>), runs each variant for each seed in
/// its own folder, then writes <c>comparison.md</c>, <c>comparison.csv</c> and <c>comparison.png</c> (the primary metric of the
/// one-step students by variant) from the runs' <c>metrics.json</c>.
/// </summary>
/// <remarks>
/// Layout: <c>&lt;out&gt;/teacher/</c> (teacher stage and evaluation only), <c>&lt;out&gt;/&lt;variant&gt;/seed-&lt;s&gt;/</c>,
/// <c>&lt;out&gt;/comparison.md</c>, <c>&lt;out&gt;/comparison.csv</c>. A variant whose overrides touch <c>data</c> or the
/// teacher stage trains its own teacher; one whose overrides touch an evaluation stage reports its own teacher rows.
/// Variants that share the teacher evaluate it at its largest NFE only (the reference of the <c>*_teacher</c> metrics);
/// its full NFE grid is in the teacher run.
/// </remarks>
public sealed class ComparisonRunner(HostApplication app, IAnsiConsole console, IAnsiConsole errors)
{
    /// <summary>The shared teacher run's sub-folder.</summary>
    public const string TeacherFolder = "teacher";

    /// <summary>
    /// The entries of <paramref name="output"/> that a comparison does not write: anything but <c>comparison.csv/.md/.png</c>,
    /// the shared <see cref="TeacherFolder"/> and variant folders (folders holding only <c>seed-N</c> folders). Empty when it
    /// does not exist.
    /// </summary>
    internal static List<string> ForeignEntries(string output)
    {
        if (!Directory.Exists(output)) return [];
        var foreign = Directory.EnumerateFiles(output).Select(Path.GetFileName)
            .Where(f => f is not ("comparison.csv" or "comparison.md" or "comparison.png" or RunFolder.LockFile)
                        && !(f!.StartsWith('.') && f.EndsWith(".tmp", StringComparison.Ordinal)))
            .Concat(Directory.EnumerateDirectories(output)
                .Where(d => Path.GetFileName(d) != TeacherFolder && Directory.EnumerateFileSystemEntries(d).Any(e =>
                    !Directory.Exists(e) || !System.Text.RegularExpressions.Regex.IsMatch(Path.GetFileName(e), "^seed-[0-9]+$")))
                .Select(Path.GetFileName));
        return foreign.Order(StringComparer.Ordinal).ToList()!;
    }

    private sealed record VariantPlan(ComparisonVariant Variant, bool SharesTeacher, bool SharesTeacherRows);

    /// <summary>Runs the plan.</summary>
    /// <param name="plan">The plan.</param>
    /// <param name="overwrite">Replace runs the comparison folder already holds.</param>
    /// <param name="resume">Keep finished runs the comparison folder already holds and run the rest.</param>
    /// <param name="cancellation">Stops at the next step boundary of the current run.</param>
    /// <returns>0 when every run finished; 1 when one failed (the tables hold the others); 2 for an invalid variant; 130 when cancelled.</returns>
    public int Run(ComparisonPlan plan, bool overwrite, bool resume, CancellationToken cancellation)
    {
        var (baseConfig, _, code) = app.Load(plan.BaseConfig, plan.SharedOverrides);
        if (baseConfig is null) return code;
        var stages = baseConfig.Stages;
        var teacherStage = stages.FirstOrDefault(s => s.Stage is TeacherStageConfig);
        var evaluations = stages.Where(s => s.Stage is EvaluationStageConfig).ToList();
        if (evaluations.Count == 0)
        {
            errors.ErrorLine($"{plan.BaseConfig}: compare needs an enabled evaluation stage; its metrics.json is what the comparison tabulates.");
            return ExitCodes.InvalidConfig;
        }
        string output = Path.GetFullPath(plan.OutputDir ?? Path.Combine("runs", $"{baseConfig.Config.Run.Name}-compare"));
        if (File.Exists(output))
        {
            errors.ErrorLine($"The comparison folder {output} is a file; name a folder with --output (or outputDir in a comparison file).");
            return ExitCodes.Failed;
        }
        if (ForeignEntries(output) is { Count: > 0 } foreign)
        {
            errors.ErrorLine($"The comparison folder {output} holds {Messages.FirstOf(foreign)}, which a " +
                             "comparison does not write" + (File.Exists(Path.Combine(output, RunFolder.StatusFile)) ? " (it is a run folder)" : "") +
                             "; name a new folder, or that of an earlier comparison, with --output (or outputDir in a comparison file).");
            return ExitCodes.Failed;
        }
        string baseName = baseConfig.Config.Run.Name;
        long baseSeed = baseConfig.Config.Run.Seed;
        var teacher = (TeacherStageConfig)teacherStage.Stage;
        bool trainTeacher = string.IsNullOrWhiteSpace(teacher.LoadFrom) && teacher.Training is not null;
        string teacherPath = $"stages:{teacherStage.Key}";
        int maxTeacherNfe = ((EvaluationStageConfig)evaluations[0].Stage).EffectiveTeacherNfe.Max();

        var variants = plan.Variants.Select(v =>
        {
            // A key the command line also sets is the command line's value in every run: it does not make the variant differ.
            var replaced = plan.CommandLineOverrides.Select(o => ComparisonPlan.NormalizeKey(ComparisonPlan.KeyOf(o))).ToHashSet();
            var keys = v.Overrides.Select(ComparisonPlan.KeyOf).Where(k => !replaced.Contains(ComparisonPlan.NormalizeKey(k))).ToList();
            bool touchesTeacher = keys.Any(k => ComparisonPlan.Touches(k, "data") || ComparisonPlan.Touches(k, teacherPath));
            bool touchesEvaluation = keys.Any(k => evaluations.Any(e => ComparisonPlan.Touches(k, $"stages:{e.Key}")));
            return new VariantPlan(v, !touchesTeacher, !touchesTeacher && !touchesEvaluation);
        }).ToList();

        TorchInfo torchInfo;
        try
        {
            // The variants' networks are built once on the CPU to check them (HostApplication.Preflight).
            torchInfo = TorchRuntime.Initialize("cpu", TorchRuntime.ResolveLibTorchFolder(baseConfig.Config.Run.Libtorch), baseConfig.Config.Run.Threads);
        }
        catch (TorchRuntimeException e)
        {
            errors.ErrorLine(e.Message);
            return ExitCodes.Failed;
        }
        // Every variant is validated, its networks built once, before anything runs (the shared teacher's weights do not exist
        // yet: loadFrom is left out).
        int invalid = 0;
        var digests = new List<(string Variant, string Digest)>();
        foreach (var v in variants)
        {
            var overrides = plan.OverridesOf(v.Variant);
            var (loaded, catalog, c) = app.Load(plan.BaseConfig, overrides);
            if (loaded is not null && catalog is not null)
                digests.Add((v.Variant.Name, ConfigDifferences.Digest(Pipeline.PipelineRunner.ResolvedConfig(loaded, overrides, catalog, torchInfo))));
            if (loaded is null || catalog is null || !app.Preflight(plan.BaseConfig, loaded, catalog))
            {
                errors.ErrorLine($"variant '{v.Variant.Name}' is invalid (overrides: {string.Join(" ", v.Variant.Overrides)}).");
                invalid++;
            }
            else if (!loaded.Stages.Any(s => s.Stage is EvaluationStageConfig))
            {
                errors.ErrorLine($"variant '{v.Variant.Name}' has no enabled evaluation stage, so it would produce no metrics.json.");
                invalid++;
            }
        }
        if (invalid > 0) return ExitCodes.InvalidConfig;
        // Variants that resolve to one config (values that differ only in case or spelling: heun,HEUN; 1,1.0) would train the same
        // thing twice (hours on a GPU) and rank it against itself: refused before anything runs. Seeds measure run-to-run noise.
        var sameConfig = digests.GroupBy(d => d.Digest).Where(g => g.Count() > 1).ToList();
        foreach (var same in sameConfig)
            errors.ErrorLine($"variants {string.Join(", ", same.Select(d => $"'{d.Variant}'"))} resolve to the same config (their values differ only " +
                             "in how they are written or in settings that do not change results, such as run.logEvery, or a --set replaces " +
                             "what set them apart), so the comparison would run the same thing " +
                             "more than once; drop all but one (to measure run-to-run noise, use --seeds).");
        if (sameConfig.Count > 0) return ExitCodes.InvalidConfig;
        foreach (var key in plan.CommandLineOverrides.Select(ComparisonPlan.KeyOf).Distinct())
        {
            bool Names(IReadOnlyList<string> by) => by.Any(c => ComparisonPlan.KeyOf(c) == key);
            var replaced = variants.Where(v => v.Variant.Overrides.Any(o => Names(plan.OverriddenBy(o).Replacing))).Select(v => v.Variant.Name).ToList();
            if (replaced.Count > 0)
                errors.WarningLine($"--set {key} replaces the value that variant(s) {string.Join(", ", replaced)} give it (the command line applies last).");
            // A key inside a variant's value, or a section holding it: the command line changes part of what the variant sets.
            var changed = variants.Select(v => (v.Variant.Name, Keys: v.Variant.Overrides.Where(o => Names(plan.OverriddenBy(o).Changing)).Select(ComparisonPlan.KeyOf).ToList()))
                .Where(v => v.Keys.Count > 0).Select(v => $"{v.Name} ({string.Join(", ", v.Keys)})").ToList();
            if (changed.Count > 0)
                errors.WarningLine($"--set {key} changes what variant(s) {string.Join(", ", changed)} set (the command line applies last; each run's " +
                                   "config.resolved.json has the result).");
        }

        var runs = new List<(VariantPlan? Plan, long Seed, string Folder)>();
        string teacherFolder = Path.Combine(output, TeacherFolder);
        if (trainTeacher && variants.Any(v => v.SharesTeacher)) runs.Add((null, baseSeed, teacherFolder));
        foreach (var v in variants)
            for (int i = 0; i < plan.Seeds; i++)
                runs.Add((v, baseSeed + i, Path.Combine(output, v.Variant.Folder, $"seed-{baseSeed + i}")));

        var variantFolders = variants.Select(v => v.Variant.Folder).ToHashSet(StringComparer.Ordinal);
        var orphans = Directory.Exists(output)
            ? Directory.EnumerateDirectories(output).Where(d => Directory.EnumerateDirectories(d, "seed-*").Any()).Select(Path.GetFileName)
                .Where(d => d != TeacherFolder && !variantFolders.Contains(d!)).Order(StringComparer.Ordinal).ToList()
            : [];
        // A run's folder holding files but no run: its run would fail there after the teacher trained, so refuse now.
        if (runs.FirstOrDefault(r => RunFolder.HasContent(r.Folder) &&
                                     !File.Exists(Path.Combine(r.Folder, RunFolder.StatusFile))) is { Folder: not null } occupiedByOthers)
        {
            errors.ErrorLine($"{occupiedByOthers.Folder} holds files but no HierDistill run ({RunFolder.StatusFile} missing), and a run of this comparison " +
                             "goes there; move them away, or choose another folder with --output.");
            return ExitCodes.Failed;
        }
        if (orphans.Count > 0)
            errors.WarningLine($"{output} also holds runs of variants this comparison does not have: {Messages.FirstOf(orphans)}" +
                               " (left as they are; the tables leave them out). A variant's folder is named " +
                               "from its name, or from its --vary keys in the order given: give them in the same order to keep its runs.");
        if (!overwrite && !resume)
        {
            var occupied = runs.Select(r => r.Folder).Where(RunFolder.HasContent).ToList();
            if (occupied.Count > 0)
            {
                errors.ErrorLine($"{output} already holds runs of this comparison ({occupied[0]}" +
                                 $"{(occupied.Count > 1 ? $" and {occupied.Count - 1} more" : "")}); pass --resume to keep the finished ones and run the rest, " +
                                 "--overwrite to run them all again, or --output for another folder.");
                return ExitCodes.Failed;
            }
        }

        // One comparison at a time in a folder (its lock file, as a run's): two `compare --resume` would each take the runs
        // the other is doing for failed ones.
        FileStream heldOutput;
        try
        {
            Directory.CreateDirectory(output);
            heldOutput = RunFolder.Lock(output);
        }
        catch (Exception e) when (e is RunFolderException or IOException or UnauthorizedAccessException)
        {
            errors.ErrorLine(e.Message);
            return ExitCodes.Failed;
        }
        using var _ = heldOutput;
        console.MarkupLine($"[bold]compare[/]: {variants.Count} variant(s) × {plan.Seeds} seed(s){(runs.Count > 0 && runs[0].Plan is null ? " + one shared teacher" : "")} -> {Markup.Escape(output)}");
        var results = new List<ComparisonRun>();
        string teacherWeights = Path.Combine(teacherFolder, TeacherStage.WeightsFileName);
        int number = 0;
        // Set when the shared teacher is trained in this call: the runs that load it cannot be kept or continued then.
        bool teacherRetrained = false;
        foreach (var (v, seed, folder) in runs)
        {
            number++;
            string what = v is null ? "shared teacher" : $"{v.Variant.Name}, seed {seed}";
            List<string> overrides = [.. plan.CommonOverrides];
            if (v is null)
            {
                overrides.AddRange(plan.CommandLineOverrides);
                // Teacher stage and evaluation only: its metrics.json holds the teacher's rows at its whole NFE grid.
                overrides.AddRange(stages.Where(s => s.Stage is TrajectoryStageConfig or DistributionStageConfig).Select(s => $"stages:{s.Key}:enabled=false"));
                overrides.Add($"run:name={baseName}-teacher");
            }
            else
            {
                overrides.AddRange(v.Variant.Overrides);
                overrides.AddRange(plan.CommandLineOverrides);
                overrides.Add($"run:seed={seed.ToString(CultureInfo.InvariantCulture)}");
                overrides.Add($"run:name={Name(baseName, v.Variant.Folder, seed)}");
                if (v.SharesTeacher && trainTeacher) overrides.Add($"{teacherPath}:loadFrom={teacherWeights}");
                if (v.SharesTeacherRows && trainTeacher)
                    overrides.AddRange(evaluations.Select(e => $"stages:{e.Key}:teacherNfe=[{maxTeacherNfe}]"));
            }
            overrides.Add($"run:outputDir={folder}");
            bool loadsNewTeacher = teacherRetrained && v is not null && v.SharesTeacher && trainTeacher;
            // The keys in which the run in the folder was made with other settings than it would get now (a changed --set,
            // variant or comparison file); null when that cannot be told.
            IReadOnlyList<string>? Changed()
            {
                var changed = app.DifferencesFromRun(plan.BaseConfig, overrides, folder);
                // The shared teacher is kept unless what shapes its weights changed: the students' stages are disabled in its
                // run, and the evaluation's settings do not change it (its rows keep the evaluation they were made with).
                if (v is null && changed is not null)
                    changed = changed.Where(c => !stages.Any(st => st.Stage is TrajectoryStageConfig or DistributionStageConfig or EvaluationStageConfig
                                                                   && c.StartsWith($"stages:{st.Key}:", StringComparison.Ordinal))).ToList();
                // The shared teacher's path moves with the comparison folder; whether its weights changed is teacherRetrained.
                if (v is not null && v.SharesTeacher && trainTeacher && changed is not null)
                    changed = changed.Where(c => !c.StartsWith($"{teacherPath}:loadFrom:", StringComparison.Ordinal)).ToList();
                return changed;
            }
            string Why(IReadOnlyList<string>? changed) =>
                loadsNewTeacher ? "the shared teacher was trained again."
                : changed is null ? "its settings could not be compared."
                : $"{changed.Count} key(s) differ, e.g. {string.Join("; ", changed.Take(3))}.";
            if (resume && Finished(folder, v is null ? [TeacherStage.WeightsFileName, "metrics.json"] : ["metrics.json"]))
            {
                // Kept only when it was run with the settings it would get now and, for a run that loads the shared teacher,
                // with that same teacher.
                var changed = Changed();
                if (changed is { Count: 0 } && !loadsNewTeacher)
                {
                    console.MarkupLine($"[grey]compare {number}/{runs.Count}: {Markup.Escape(what)}: kept (finished earlier) {Markup.Escape(folder)}[/]");
                    results.Add(new ComparisonRun(v?.Variant, seed, folder, ExitCodes.Ok, RunFolder.Seconds(folder) ?? 0, true));
                    continue;
                }
                errors.WarningLine($"compare {number}/{runs.Count}: {what} finished earlier with other settings, so it is run again: {Why(changed)}");
            }
            console.MarkupLine($"[bold]compare {number}/{runs.Count}[/]: {Markup.Escape(what)} -> {Markup.Escape(folder)}");
            var clock = Stopwatch.StartNew();
            // --resume also continues a run that was stopped mid-way from its checkpoint (same overrides, so the same config),
            // unless the shared teacher it loads was trained again meanwhile.
            bool continues = resume && Stopped(folder);
            if (continues && (loadsNewTeacher ? null : Changed()) is var changedSinceStop && changedSinceStop is not { Count: 0 })
            {
                // Continued under other settings (say a changed learning rate, which `run --resume` allows), one run of the
                // variant would mix two schedules while its finished seeds would be run again: run it again too.
                errors.WarningLine($"compare {number}/{runs.Count}: {what} was stopped with other settings, so it is run again: {Why(changedSinceStop)}");
                continues = false;
            }
            if (continues) console.MarkupLine($"[grey]compare {number}/{runs.Count}: continuing from {Markup.Escape(Path.Combine(folder, CheckpointStore.FileName))}[/]");
            int exit = continues ? app.Run(plan.BaseConfig, overrides, overwrite: false, cancellation, resume: folder, preflight: false) : ExitCodes.InvalidConfig;
            if (continues && exit == ExitCodes.InvalidConfig)
                errors.WarningLine($"compare {number}/{runs.Count}: the variant changed since it was stopped (see above), so its checkpoint cannot be continued; running it again");
            if (!continues || exit == ExitCodes.InvalidConfig)
                exit = app.Run(plan.BaseConfig, overrides, overwrite: true, cancellation, preflight: false);
            // A finished run's wall time is its run.json's: every process of it (a continued run's earlier ones too).
            results.Add(new ComparisonRun(v?.Variant, seed, folder, exit,
                exit == ExitCodes.Ok ? RunFolder.Seconds(folder) ?? clock.Elapsed.TotalSeconds : clock.Elapsed.TotalSeconds, false));
            if (v is null) teacherRetrained = true;
            // Each run's modules and tensors are unreachable now; release their native memory before the next run.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            if (exit == ExitCodes.Cancelled) break;
            if (exit != ExitCodes.Ok)
            {
                errors.ErrorLine($"compare {number}/{runs.Count}: {what} failed (exit {exit}); " +
                                 (File.Exists(Path.Combine(folder, "log.txt")) ? $"see {Path.Combine(folder, "log.txt")}." : "its message is above."));
                if (v is null)
                {
                    errors.ErrorLine("The shared teacher could not be trained; no variant can run.");
                    return exit;
                }
            }
        }

        try
        {
            // The teacher folder exists only when a variant shares it; with none sharing, every run trained its own.
            WriteReport(plan, output, variants, results, trainTeacher && variants.Any(v => v.SharesTeacher) ? teacherFolder : null,
                runs.Select(r => (r.Plan?.Variant.Name ?? "shared teacher", r.Seed, r.Folder)).ToList(),
                trainTeacher);
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            errors.ErrorLine($"The comparison could not be written: {e.Message}");
            return ExitCodes.Failed;
        }
        var written = new[] { "comparison.md", "comparison.csv", "comparison.png" }.Select(f => Path.Combine(output, f)).Where(File.Exists);
        console.MarkupLine($"[green]Comparison written:[/] {Markup.Escape(string.Join(", ", written))}");
        if (results.Any(r => r.ExitCode == ExitCodes.Cancelled))
        {
            errors.WarningLine($"The comparison was stopped after {results.Count(r => r.ExitCode == ExitCodes.Ok)} of {runs.Count} runs; " +
                               "run the same compare command with --resume to continue it (finished runs are kept, a stopped one continues from its checkpoint if it wrote one).");
            return ExitCodes.Cancelled;
        }
        return results.All(r => r.ExitCode == ExitCodes.Ok) && results.Count == runs.Count ? ExitCodes.Ok : ExitCodes.Failed;
    }

    private void WriteReport(ComparisonPlan plan, string output, IReadOnlyList<VariantPlan> variants, IReadOnlyList<ComparisonRun> results,
        string? teacherFolder, IReadOnlyList<(string Run, long Seed, string Folder)> planned, bool trainsTeacher)
    {
        var finished = results.Where(r => r.ExitCode == ExitCodes.Ok).ToList();
        var read = finished.ToDictionary(r => r, r => ModelMetrics.Read(Path.Combine(r.Folder, "metrics.json")));
        string primary = read.Values.Select(x => x.PrimaryMetric).FirstOrDefault(p => p.Length > 0) ?? "";
        static bool IsShared(ModelMetrics m) => m.Kind is "teacher" or "data";

        var groups = new List<(string, IReadOnlyList<IReadOnlyList<ModelMetrics>>, Func<ModelMetrics, bool>)>();
        var sharing = variants.Where(v => v.SharesTeacherRows).Select(v => v.Variant).ToHashSet();
        var teacherRun = finished.FirstOrDefault(r => r.Variant is null);
        if (teacherRun is not null)
            groups.Add((ComparisonTable.SharedVariant, [read[teacherRun].Models], IsShared));
        else if (sharing.Count > 0)
            groups.Add((ComparisonTable.SharedVariant, finished.Where(r => r.Variant is not null && sharing.Contains(r.Variant)).Select(r => read[r].Models).ToList(), IsShared));
        foreach (var v in variants)
        {
            var runs = finished.Where(r => r.Variant == v.Variant).Select(r => read[r].Models).ToList();
            groups.Add((v.Variant.Name, runs, v.SharesTeacherRows ? m => !IsShared(m) : _ => true));
        }
        var table = ComparisonTable.Build(groups, primary);
        Reporting.Plots.Comparison(Path.Combine(output, "comparison.png"), table, variants.Select(v => v.Variant.Name).ToList());
        AtomicFile.WriteAllText(Path.Combine(output, "comparison.csv"), table.Csv());
        AtomicFile.WriteAllText(Path.Combine(output, "comparison.md"), Markdown(plan, output, variants, results, teacherFolder, table, planned, trainsTeacher));
    }

    private static string Markdown(ComparisonPlan plan, string output, IReadOnlyList<VariantPlan> variants, IReadOnlyList<ComparisonRun> results,
        string? teacherFolder, ComparisonTable table, IReadOnlyList<(string Run, long Seed, string Folder)> planned, bool trainsTeacher)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# Comparison of {variants.Count} variant(s) of `{plan.BaseConfig}`").AppendLine();
        int done = results.Count(r => r.ExitCode == ExitCodes.Ok);
        if (done < planned.Count)
            sb.AppendLine($"**Incomplete: {done} of {planned.Count} runs finished** (stopped or failed; the table holds the finished ones). " +
                          "Run the same `hierdistill compare` command with `--resume` to finish it.").AppendLine();
        if (plan.ComparisonFile is not null) sb.AppendLine($"- comparison file: `{plan.ComparisonFile}`");
        var seeds = results.Where(r => r.Variant is not null).Select(r => r.Seed).Distinct().Order().ToList();
        sb.AppendLine($"- seeds (run.seed): {string.Join(", ", seeds)}; each value is the mean ± sample standard deviation (n - 1) over the runs " +
                      "(`runs`); one run shows the value alone.");
        if (plan.SharedOverrides.Count > 0) sb.AppendLine($"- every run: {string.Join(" ", plan.SharedOverrides.Select(o => $"`--set {o}`"))}");
        foreach (var v in plan.Varied) sb.AppendLine($"- varied: `{v}`");
        sb.AppendLine(teacherFolder is not null
            ? $"- teacher: trained once in `{Path.GetFileName(teacherFolder)}/` and loaded by every variant that does not change it " +
              "(`stages:<teacher>:loadFrom`); the `shared` rows (teacher at each NFE, data floor) come from that run."
            : trainsTeacher && variants.All(v => !v.SharesTeacher)
                ? "- teacher: every variant changes the data or the teacher, so each run trained its own (no teacher run is shared)."
                : "- teacher: as the base config makes it (analytic, or loaded from its loadFrom); the `shared` rows aggregate every run that shares it.");
        sb.AppendLine("- `ms/sample`: sampling wall time per sample; `train s`: wall time of the model's own stage (for the teacher: its training in " +
                      "the teacher run, or its loading when loaded); `distill s`: wall time of every student stage the model went through (TD + DMD for HD); `params`: parameters.");
        sb.AppendLine();
        sb.AppendLine(table.MarkdownTable());
        if (File.Exists(Path.Combine(output, "comparison.png")))
            sb.AppendLine().AppendLine($"![{table.PrimaryMetric} of the one-step students by variant](comparison.png)");
        var summary = table.Summary().ToList();
        // A variant whose runs did not all finish is ranked on those that did, or not at all: say so beside the ranking.
        foreach (var failed in results.Where(r => !r.Reused && r.ExitCode != ExitCodes.Ok).GroupBy(r => r.Variant?.Name ?? "shared teacher"))
            summary.Add($"- `{failed.Key}`: {string.Join(", ", failed.Select(r => $"seed {r.Seed} {(r.ExitCode == ExitCodes.Cancelled ? "cancelled" : $"failed (exit {r.ExitCode})")}"))}" +
                        $", so its rows {(failed.Count() == plan.Seeds || failed.Key == "shared teacher" ? "are missing" : "hold the other seeds only")} (see Runs below).");
        if (summary.Count > 0)
        {
            sb.AppendLine("## Summary").AppendLine();
            foreach (var line in summary) sb.AppendLine(line);
            sb.AppendLine();
        }
        sb.AppendLine("## Variants").AppendLine();
        foreach (var v in variants)
        {
            string overrides = v.Variant.Overrides.Count == 0 ? "the base config as it is" : string.Join(" ", v.Variant.Overrides.Select(o =>
                plan.OverriddenBy(o) switch
                {
                    { Replacing: [.., var last] } => $"~~`{o}`~~ (replaced by the command line's `--set {last}`)",
                    { Changing: { Count: > 0 } changing } =>
                        $"`{o}`, then the command line's {string.Join(" ", changing.Select(c => $"`--set {c}`"))} (applied last; each run's config.resolved.json has the result)",
                    _ => $"`{o}`",
                }));
            string teacher = v.SharesTeacher ? "" : " (changes the data or the teacher: trains its own)";
            sb.AppendLine($"- `{v.Variant.Name}` (`{v.Variant.Folder}/`): {overrides}{teacher}");
        }
        sb.AppendLine();
        sb.AppendLine("## Runs").AppendLine();
        sb.AppendLine("| run | seed | status | wall s | folder |");
        sb.AppendLine("|---|---:|---|---:|---|");
        foreach (var r in results)
        {
            string status = r.Reused ? "finished (kept)" : r.ExitCode switch
            {
                ExitCodes.Ok => "finished",
                ExitCodes.Cancelled => "cancelled",
                _ => $"failed (exit {r.ExitCode})",
            };
            sb.AppendLine($"| {r.Variant?.Name ?? "shared teacher"} | {r.Seed} | {status} | {(r.Seconds > 0 ? r.Seconds.ToString("0", CultureInfo.InvariantCulture) : "")} | " +
                          $"`{Path.GetRelativePath(output, r.Folder)}/` |");
        }
        // The runs a stop left unrun: every planned run has a row.
        foreach (var (run, seed, folder) in planned.Where(p => results.All(r => r.Folder != p.Folder)))
            sb.AppendLine($"| {run} | {seed} | not run | | `{Path.GetRelativePath(output, folder)}/` |");
        return sb.ToString();
    }

    private static string Name(string baseName, string folder, long seed)
    {
        string name = $"{baseName}-{folder}-s{seed}";
        return name.Length <= 120 ? name : name[..120];
    }

    /// <summary>Whether <paramref name="folder"/> holds a run stopped (Ctrl-C, kill) with a checkpoint to continue from.</summary>
    private static bool Stopped(string folder) =>
        File.Exists(Path.Combine(folder, CheckpointStore.FileName)) && RunFolder.Status(folder) is "cancelled" or "running";

    /// <summary>Whether a folder holds a finished run with every file of <paramref name="products"/>.</summary>
    private static bool Finished(string folder, string[] products) =>
        RunFolder.Status(folder) == "finished" && products.All(p => File.Exists(Path.Combine(folder, p)));
}
