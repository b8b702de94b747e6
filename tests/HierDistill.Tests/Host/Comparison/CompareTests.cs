using System.Globalization;
using System.Text.Json;
using HierDistill.Host;
using HierDistill.Tests.Host.Pipeline;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Comparison;

/// <summary><c>hierdistill compare</c> end to end on the shrunk 2-D pipeline.</summary>
public class CompareTests
{
    private static readonly string[] Shrink =
    [
        "run:logEvery=5",
        "stages:teacher:teacher:options:hidden=32", "stages:teacher:teacher:options:depth=2", "stages:teacher:teacher:options:tokenChannels=8",
        "stages:teacher:training:steps=30", "stages:teacher:training:batchSize=64",
        "stages:structure:training:steps=6", "stages:structure:training:batchSize=32",
        "stages:detail:training:steps=6", "stages:detail:training:batchSize=32",
        "stages:evaluate:samples=128", "stages:evaluate:teacherNfe=[1, 2, 4]", "stages:evaluate:plots=false",
    ];

    [Fact]
    public void Variants_that_all_change_the_teacher_train_their_own_and_the_report_says_so()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("cmp");
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:teacher:training:learningRate=1e-3,2e-3"], [.. Shrink, "stages:detail:enabled=false"], 1, output, overwrite: false, resume: false,
            CancellationToken.None);
        Assert.True(code == 0, writer.ToString());
        Assert.False(Directory.Exists(Path.Combine(output, "teacher")));
        string report = File.ReadAllText(Path.Combine(output, "comparison.md"));
        Assert.Contains("- teacher: every variant changes the data or the teacher, so each run trained its own (no teacher run is shared).", report);
        Assert.DoesNotContain("trained once in", report);

        // An analytic teacher is trained by no run: the report says the base config makes it.
        output = folder.File("cmp-gmm");
        code = new HostApplication(SampleRunTests.TestConsole(writer)).Compare(TestPaths.Sample("toy2d/td-only.json"), ["data:options:radius=3,4"],
            ["stages:teacher:teacher={\"type\":\"gmm-exact\"}", "stages:teacher:training=null", "stages:structure:student={\"type\":\"mlp\"}",
             "stages:structure:training:steps=5", "stages:evaluate:samples=128", "stages:evaluate:teacherNfe=[1]", "stages:evaluate:plots=false"],
            1, output, overwrite: false, resume: false, CancellationToken.None);
        Assert.True(code == 0, writer.ToString());
        report = File.ReadAllText(Path.Combine(output, "comparison.md"));
        Assert.Contains("- teacher: as the base config makes it (analytic, or loaded from its loadFrom)", report);
    }

    [Fact]
    public void Two_variants_by_two_seeds_share_one_teacher_and_tabulate_mean_and_std_over_seeds()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("cmp");
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer));
        int code = app.Compare(TestPaths.Sample("toy2d/hd.json"), ["stages:detail:discriminator:type=awd,gap"], Shrink, 2, output,
            overwrite: false, resume: false, CancellationToken.None);
        Assert.True(code == 0, writer.ToString());

        string[] variants = ["detail.discriminator.type-awd", "detail.discriminator.type-gap"];
        string teacherWeights = Path.Combine(output, "teacher", "teacher.safetensors");
        Assert.True(File.Exists(teacherWeights));
        foreach (var v in variants)
            foreach (var seed in new[] { 0, 1 })
            {
                string run = Path.Combine(output, v, $"seed-{seed}");
                using var resolved = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "config.resolved.json")));
                var root = resolved.RootElement;
                Assert.Equal(seed, root.GetProperty("run").GetProperty("seed").GetInt64());
                Assert.Equal(teacherWeights, root.GetProperty("stages").GetProperty("teacher").GetProperty("loadFrom").GetString()); // trained once, loaded
                Assert.Equal(v.EndsWith("gap") ? "gap" : "awd", root.GetProperty("stages").GetProperty("detail").GetProperty("discriminator").GetProperty("type").GetString());
            }

        // comparison.csv: the shared teacher and floor from the teacher run, then each variant's students.
        var lines = File.ReadAllLines(Path.Combine(output, "comparison.csv"));
        Assert.DoesNotContain(lines, l => l.Contains('"')); // no field here needs quoting, so splitting at commas is exact
        var header = lines[0].Split(',');
        var rows = lines.Skip(1).Select(l => l.Split(',')).Select(f => header.Zip(f).ToDictionary(x => x.First, x => x.Second)).ToList();
        Assert.Equal(
        [
            ("shared", "data", 0), ("shared", "teacher", 1), ("shared", "teacher", 2), ("shared", "teacher", 4),
            ("detail.discriminator.type=awd", "structure", 1), ("detail.discriminator.type=awd", "structure", 2),
            ("detail.discriminator.type=awd", "detail", 1), ("detail.discriminator.type=awd", "detail", 2),
            ("detail.discriminator.type=gap", "structure", 1), ("detail.discriminator.type=gap", "structure", 2),
            ("detail.discriminator.type=gap", "detail", 1), ("detail.discriminator.type=gap", "detail", 2),
        ], rows.Select(r => (r["variant"], r["model"], int.Parse(r["nfe"], CultureInfo.InvariantCulture))));

        // Mean and sample std recomputed here from each run's metrics.json.
        for (int i = 0; i < variants.Length; i++)
        {
            var runs = new[] { 0, 1 }.Select(s => JsonDocument.Parse(File.ReadAllText(Path.Combine(output, variants[i], $"seed-{s}", "metrics.json")))).ToList();
            foreach (var row in rows.Where(r => r["variant"] == (i == 0 ? "detail.discriminator.type=awd" : "detail.discriminator.type=gap")))
            {
                var entries = runs.Select(d => d.RootElement.GetProperty("models").EnumerateArray()
                    .Single(m => m.GetProperty("name").GetString() == row["model"] && m.GetProperty("nfe").GetInt32() == int.Parse(row["nfe"], CultureInfo.InvariantCulture))).ToList();
                Assert.Equal("2", row["runs"]);
                foreach (var (column, read) in new (string, Func<JsonElement, double>)[]
                         {
                             ("sw2_data", m => m.GetProperty("metrics").GetProperty("sw2_data").GetDouble()),
                             ("mmd2_teacher", m => m.GetProperty("metrics").GetProperty("mmd2_teacher").GetDouble()),
                             ("modes_covered", m => m.GetProperty("metrics").GetProperty("modes_covered").GetDouble()),
                             ("seconds_per_sample", m => m.GetProperty("seconds_per_sample").GetDouble()),
                             ("training_seconds", m => m.GetProperty("training_seconds").GetDouble()),
                             ("distillation_seconds", m => m.GetProperty("distillation_seconds").GetDouble()),
                         })
                {
                    double a = read(entries[0]), b = read(entries[1]);
                    double mean = (a + b) / 2, std = Math.Abs(a - b) / Math.Sqrt(2); // two values: sqrt(((a-m)² + (b-m)²) / 1)
                    AssertClose(mean, row[$"{column}_mean"], $"{row["variant"]} {row["model"]} {row["nfe"]} {column} mean");
                    AssertClose(std, row[$"{column}_std"], $"{row["variant"]} {row["model"]} {row["nfe"]} {column} std");
                }
                Assert.Equal(entries[0].GetProperty("parameters").GetInt64().ToString(CultureInfo.InvariantCulture), row["parameters"]);
                Assert.True(long.Parse(row["parameters"], CultureInfo.InvariantCulture) > 0);
                // HD's stage-2 student went through both stages
                if (row["model"] == "detail")
                    Assert.True(entries.All(e => e.GetProperty("distillation_seconds").GetDouble() > e.GetProperty("training_seconds").GetDouble()));
            }
        }
        // the shared rows come from the one teacher run (no std); its teacher saw the whole NFE grid, the variants only NFE 4
        Assert.All(rows.Take(4), r => Assert.Equal(("1", ""), (r["runs"], r["sw2_data_std"])));

        string md = File.ReadAllText(Path.Combine(output, "comparison.md"));
        Assert.Contains("| variant | model | sampler | NFE | runs | sw2_data |", md);
        Assert.Contains("| detail.discriminator.type=gap | detail | mean-1 | 1 | 2 |", md);
        Assert.Matches(@"\| shared \| data \| [^|]+ \| - \| 1 \|[^\n]*\| - \|", md); // the data floor samples nothing
        Assert.Contains(" ± ", md);
        Assert.Contains("## Summary", md);
        Assert.Contains("](comparison.png)", md);
        Assert.True(new FileInfo(Path.Combine(output, "comparison.png")).Length > 1000);

        // Run again: refused without a flag; with --resume nothing is rerun.
        var again = new StringWriter();
        Assert.Equal(ExitCodes.Failed, new HostApplication(SampleRunTests.TestConsole(again)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:discriminator:type=awd,gap"], Shrink, 2, output, false, false, CancellationToken.None));
        Assert.Contains("pass --resume", again.ToString());
        var resumed = new StringWriter();
        var before = File.GetLastWriteTimeUtc(Path.Combine(output, variants[0], "seed-0", "metrics.json"));
        // Runs of a variant this comparison lacks (--vary keys given in another order name other folders) are left, with a warning.
        Directory.CreateDirectory(Path.Combine(output, "detail.adversarialWeight-0.2", "seed-0"));
        Assert.Equal(ExitCodes.Ok, new HostApplication(SampleRunTests.TestConsole(resumed)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:discriminator:type=awd,gap"], Shrink, 2, output, false, true, CancellationToken.None));
        Assert.Equal(5, resumed.ToString().Split("kept (finished earlier)").Length - 1);
        Assert.Contains($"{output} also holds runs of variants this comparison does not have: detail.adversarialWeight-0.2 (left as they are", resumed.ToString().ReplaceLineEndings(""));
        Assert.True(Directory.Exists(Path.Combine(output, "detail.adversarialWeight-0.2", "seed-0")));
        Assert.Equal(before, File.GetLastWriteTimeUtc(Path.Combine(output, variants[0], "seed-0", "metrics.json")));
    }

    [Fact]
    public void Resume_continues_a_stopped_variant_from_its_checkpoint()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("cmp");
        string[] shrink = [.. Shrink, "stages:structure:training:steps=12"];
        var stopped = new StringWriter();
        var stopping = new HostApplication(SampleRunTests.TestConsole(stopped))
        {
            ProgressDecorator = (inner, stop) => new ResumeTests.StopAt(inner, stop, "structure", 6),
        };
        Assert.Equal(ExitCodes.Cancelled, stopping.Compare(TestPaths.Sample("toy2d/hd.json"), ["stages:detail:adversarialWeight=0.2,0.1"], shrink, 1, output,
            overwrite: false, resume: false, CancellationToken.None));
        string first = Path.Combine(output, "detail.adversarialWeight-0.2", "seed-0");
        Assert.Contains("stage structure, step 6 of 12", File.ReadAllText(Path.Combine(first, "run.json")));
        string markdown = File.ReadAllText(Path.Combine(output, "comparison.md"));
        Assert.Contains("**Incomplete: 1 of 3 runs finished**", markdown);
        // Every planned run has a row in Runs, the one the stop left unrun too.
        Assert.Contains("| detail.adversarialWeight=0.2 | 0 | cancelled |", markdown);
        Assert.Contains("| detail.adversarialWeight=0.1 | 0 | not run | | `detail.adversarialWeight-0.1/seed-0/` |", markdown);
        Assert.Contains("run the same compare command with --resume to continue it", stopped.ToString().Replace("\n", ""));

        var resumed = new StringWriter();
        Assert.Equal(ExitCodes.Ok, new HostApplication(SampleRunTests.TestConsole(resumed)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:adversarialWeight=0.2,0.1"], shrink, 1, output, overwrite: false, resume: true, CancellationToken.None));
        Assert.Contains($"continuing from {Path.Combine(first, "checkpoint.safetensors")}", resumed.ToString().Replace("\n", ""));
        Assert.Contains("Resuming from", File.ReadAllText(Path.Combine(first, "log.txt")));
        Assert.Contains("\"finished\"", File.ReadAllText(Path.Combine(first, "run.json")));
        Assert.DoesNotContain("Incomplete", File.ReadAllText(Path.Combine(output, "comparison.md")));
        // A kept run's wall time is the one its run.json records (blank before).
        Assert.Matches(@"\| shared teacher \| 0 \| finished \(kept\) \| [0-9]+ \|", File.ReadAllText(Path.Combine(output, "comparison.md")));

        // --resume with a changed --set: finished runs made with the old value are run again, not kept; the shared teacher,
        // whose run does not include stage 2, is kept.
        var changed = new StringWriter();
        Assert.Equal(ExitCodes.Ok, new HostApplication(SampleRunTests.TestConsole(changed)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:adversarialWeight=0.2,0.1"], [.. shrink, "stages:detail:training:steps=8"], 1, output, overwrite: false,
            resume: true, CancellationToken.None));
        string text = changed.ToString().Replace("\n", "");
        Assert.Equal(1, text.Split("kept (finished earlier)").Length - 1);
        Assert.Equal(2, text.Split("finished earlier with other settings, so it is run again: 1 key(s) differ, e.g. stages:detail:training:steps: '6' → '8'").Length - 1);
        Assert.Contains("\"steps\": 8", File.ReadAllText(Path.Combine(first, "config.resolved.json")));

        // An evaluation setting keeps the shared teacher too; a moved comparison folder keeps every run.
        string[] evaluated = [.. shrink, "stages:detail:training:steps=8", "stages:evaluate:samples=100"];
        var evaluation = new StringWriter();
        Assert.Equal(ExitCodes.Ok, new HostApplication(SampleRunTests.TestConsole(evaluation)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:adversarialWeight=0.2,0.1"], evaluated, 1, output, overwrite: false, resume: true, CancellationToken.None));
        Assert.Equal(1, evaluation.ToString().Split("kept (finished earlier)").Length - 1);
        string moved = folder.File("moved");
        Directory.Move(output, moved);
        var again = new StringWriter();
        Assert.Equal(ExitCodes.Ok, new HostApplication(SampleRunTests.TestConsole(again)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:adversarialWeight=0.2,0.1"], evaluated, 1, moved, overwrite: false, resume: true, CancellationToken.None));
        Assert.True(again.ToString().Split("kept (finished earlier)").Length - 1 == 3, again.ToString());
    }

    [Fact]
    public void Resume_runs_a_stopped_variant_again_when_its_settings_changed()
    {
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("cmp");
        string[] shrink = [.. Shrink, "stages:structure:training:steps=12"];
        var stopping = new HostApplication(SampleRunTests.TestConsole(new StringWriter()))
        {
            ProgressDecorator = (inner, stop) => new ResumeTests.StopAt(inner, stop, "structure", 6),
        };
        Assert.Equal(ExitCodes.Cancelled, stopping.Compare(TestPaths.Sample("toy2d/hd.json"), ["stages:detail:adversarialWeight=0.2"], shrink, 1, output,
            overwrite: false, resume: false, CancellationToken.None));
        string run = Path.Combine(output, "detail.adversarialWeight-0.2", "seed-0");
        Assert.True(File.Exists(Path.Combine(run, "checkpoint.safetensors")));

        // A learning rate may change on `run --resume`; a comparison does not continue one seed under two schedules.
        var resumed = new StringWriter();
        Assert.Equal(ExitCodes.Ok, new HostApplication(SampleRunTests.TestConsole(resumed)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:adversarialWeight=0.2"], [.. shrink, "stages:structure:training:learningRate=1e-4"], 1, output, overwrite: false,
            resume: true, CancellationToken.None));
        string text = resumed.ToString().Replace("\n", "");
        Assert.Contains("kept (finished earlier)", text); // the shared teacher
        Assert.Contains("was stopped with other settings, so it is run again: 1 key(s) differ, e.g. stages:structure:training:learningRate:", text);
        Assert.DoesNotContain("continuing from", text);
        Assert.DoesNotContain("config differs", text);
        Assert.DoesNotContain("Resuming from", File.ReadAllText(Path.Combine(run, "log.txt")));
        Assert.Contains("\"finished\"", File.ReadAllText(Path.Combine(run, "run.json")));
        Assert.Contains("\"learningRate\": 0.0001", File.ReadAllText(Path.Combine(run, "config.resolved.json")));
    }

    [Fact]
    public void A_teacher_key_that_the_command_line_also_sets_does_not_give_a_variant_its_own_teacher()
    {
        using var folder = TestPaths.NewTempFolder();
        string comparison = folder.File("steps.json");
        File.WriteAllText(comparison, $$"""
            { "config": "{{TestPaths.Sample("toy2d/hd.json")}}",
              "variants": { "long": { "stages:teacher:training:steps": 50, "stages:detail:adversarialWeight": 0.3 }, "base": {} } }
            """);
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Compare(comparison, [], [.. Shrink, "stages:teacher:training:steps=20"], 1,
            folder.File("cmp"), overwrite: false, resume: false, CancellationToken.None);
        string text = writer.ToString().Replace("\n", "");
        Assert.True(code == 0, text);
        Assert.Contains("--set stages:teacher:training:steps replaces the value that variant(s) long give it", text);
        Assert.Contains("- `long` (`long/`): ~~`stages:teacher:training:steps=50`~~ (replaced by the command line's `--set stages:teacher:training:steps=20`) `stages:detail:adversarialWeight=0.3`",
            File.ReadAllText(Path.Combine(folder.File("cmp"), "comparison.md")));
        Assert.Contains("+ one shared teacher", text);
        string teacherWeights = Path.Combine(folder.File("cmp"), "teacher", "teacher.safetensors");
        foreach (var v in new[] { "long", "base" })
        {
            using var resolved = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder.File("cmp"), v, "seed-0", "config.resolved.json")));
            var teacher = resolved.RootElement.GetProperty("stages").GetProperty("teacher");
            Assert.Equal(teacherWeights, teacher.GetProperty("loadFrom").GetString()); // the shared teacher, loaded
        }
        // Without the stage-2 difference, the --set replaces all that set the two variants apart: one config, refused.
        File.WriteAllText(comparison, File.ReadAllText(comparison).Replace(", \"stages:detail:adversarialWeight\": 0.3", ""));
        var refused = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(SampleRunTests.TestConsole(refused)).Compare(comparison, [],
            [.. Shrink, "stages:teacher:training:steps=20"], 1, folder.File("cmp2"), overwrite: false, resume: false, CancellationToken.None));
        Assert.Contains("variants 'long', 'base' resolve to the same config (their values differ only in how they are written or in settings that do not change results, such as run.logEvery, or a --set replaces " +
                        "what set them apart)", System.Text.RegularExpressions.Regex.Replace(refused.ToString(), @"\e\[[0-9;]*m", "").ReplaceLineEndings(""));
        Assert.False(Directory.Exists(folder.File("cmp2")));
    }

    [Fact]
    public void A_command_line_key_inside_a_variants_value_is_named_with_it()
    {
        // A variant sets a whole section; the command line sets a key inside it, after it. The warning comes before anything
        // runs (a planned run folder holding a stray file then stops the comparison, so that nothing trains here); the
        // variant line's wording of comparison.md is checked through the plan.
        using var folder = TestPaths.NewTempFolder();
        string stray = Directory.CreateDirectory(Path.Combine(folder.File("cmp"), "c", "seed-0")).FullName;
        File.WriteAllText(Path.Combine(stray, "notes.txt"), "mine");
        string comparison = folder.File("sections.json");
        File.WriteAllText(comparison, $$"""
            { "config": "{{TestPaths.Sample("toy2d/hd.json")}}",
              "variants": { "c": { "stages:detail:discriminator": { "type": "gap" } }, "base": {} } }
            """);
        var writer = new StringWriter();
        Assert.Equal(ExitCodes.Failed, new HostApplication(SampleRunTests.TestConsole(writer)).Compare(comparison, [],
            [.. Shrink, "stages:detail:discriminator:type=awd"], 1, folder.File("cmp"), overwrite: false, resume: false, CancellationToken.None));
        string text = writer.ToString().Replace("\n", "");
        Assert.Contains("--set stages:detail:discriminator:type changes what variant(s) c (stages:detail:discriminator) set (the command line applies last;", text);
        var plan = new HierDistill.Host.Comparison.ComparisonPlan
        {
            BaseConfig = "b.json", Seeds = 1, CommonOverrides = [], Variants = [], Varied = [],
            CommandLineOverrides = ["stages:detail:discriminator:type=awd", "stages:Detail:Training:Steps=5"],
        };
        var section = plan.OverriddenBy("stages:detail:discriminator={\"type\":\"gap\"}");
        Assert.Empty(section.Replacing);
        Assert.Equal(["stages:detail:discriminator:type=awd"], section.Changing);
        var steps = plan.OverriddenBy("stages:detail:training:steps=50");
        Assert.Equal(["stages:Detail:Training:Steps=5"], steps.Replacing);
        Assert.Empty(steps.Changing);
        Assert.Empty(plan.OverriddenBy("stages:detail:adversarialWeight=0.2").Replacing);
        Assert.Empty(plan.OverriddenBy("stages:detail:adversarialWeight=0.2").Changing);
    }

    [Fact]
    public void A_comparison_folder_another_compare_holds_is_refused_before_anything_runs()
    {
        // Two `compare --resume` at once would each take the runs the other is doing for failed ones.
        using var folder = TestPaths.NewTempFolder();
        string output = Directory.CreateDirectory(folder.File("cmp")).FullName;
        var writer = new StringWriter();
        using (var other = HierDistill.Host.Storage.RunFolder.Lock(output))
            Assert.Equal(ExitCodes.Failed, new HostApplication(SampleRunTests.TestConsole(writer)).Compare(TestPaths.Sample("toy2d/hd.json"),
                ["stages:detail:adversarialWeight=0.2,0.1"], Shrink, 1, output, overwrite: false, resume: true, CancellationToken.None));
        Assert.Contains($"{output} is being written by another process (it holds .hierdistill.lock)", writer.ToString().Replace("\n", ""));
        Assert.Equal([".hierdistill.lock"], Directory.GetFileSystemEntries(output).Select(Path.GetFileName)); // nothing ran
    }

    [Fact]
    public void Variants_that_resolve_to_one_config_are_named()
    {
        // heun and HEUN are one value (fixed-list values ignore case), as are 1 and 1.0: refused before anything runs or is written.
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("cmp");
        var writer = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(SampleRunTests.TestConsole(writer)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:evaluate:teacherSolver=heun,HEUN,euler", "stages:detail:adversarialWeight=1,1.0"], Shrink, 1, output, overwrite: false,
            resume: false, CancellationToken.None));
        // Lines of 400 columns: a wrap takes the space it breaks at.
        string text = System.Text.RegularExpressions.Regex.Replace(System.Text.RegularExpressions.Regex.Replace(writer.ToString(), @"\e\[[0-9;]*m", ""), @" *\r?\n *", " ");
        Assert.Contains("variants 'evaluate.teacherSolver=heun, detail.adversarialWeight=1', 'evaluate.teacherSolver=heun, detail.adversarialWeight=1.0', " +
                        "'evaluate.teacherSolver=HEUN, detail.adversarialWeight=1', 'evaluate.teacherSolver=HEUN, detail.adversarialWeight=1.0' resolve to the " +
                        "same config (their values differ only in how they are written or in settings that do not change results, such as run.logEvery, or a --set replaces what set them apart), so the comparison would " +
                        "run the same thing more than once; drop all but one (to measure run-to-run noise, use --seeds).", text);
        Assert.Contains("variants 'evaluate.teacherSolver=euler, detail.adversarialWeight=1', 'evaluate.teacherSolver=euler, detail.adversarialWeight=1.0' resolve", text);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void A_variant_whose_run_did_not_finish_is_named_beside_the_ranking()
    {
        // The first variant's run is stopped in stage 2 (as Ctrl-C stops it): compare writes what it has and exits 130; the
        // summary's ranking has no row of that variant, and the line after it says why.
        using var folder = TestPaths.NewTempFolder();
        string output = folder.File("cmp");
        var writer = new StringWriter();
        var app = new HostApplication(SampleRunTests.TestConsole(writer))
        {
            ProgressDecorator = (inner, stop) => new ResumeTests.StopAt(inner, stop, "detail", 1), // after step 0 (reported: logEvery 5 reports steps 0 and 5)
        };
        int code = app.Compare(TestPaths.Sample("toy2d/hd.json"), ["stages:detail:adversarialWeight=0.2,0.1"], Shrink, 1, output,
            overwrite: false, resume: false, CancellationToken.None);
        Assert.True(code == ExitCodes.Cancelled, writer.ToString());
        string md = File.ReadAllText(Path.Combine(output, "comparison.md"));
        string summary = md[md.IndexOf("## Summary", StringComparison.Ordinal)..md.IndexOf("## Variants", StringComparison.Ordinal)];
        Assert.DoesNotContain("`detail.adversarialWeight=0.2` /", summary);
        Assert.Contains("- `detail.adversarialWeight=0.2`: seed 0 cancelled, so its rows are missing (see Runs below).", summary);
    }

    [Fact]
    public void An_output_that_is_a_file_a_run_folder_or_the_users_folder_is_refused_before_anything_runs()
    {
        using var folder = TestPaths.NewTempFolder();
        string file = folder.File("notes.txt");
        File.WriteAllText(file, "mine");
        var writer = new StringWriter();
        Assert.Equal(ExitCodes.Failed, new HostApplication(SampleRunTests.TestConsole(writer)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:adversarialWeight=0.2,0.1"], Shrink, 1, file, overwrite: false, resume: false, CancellationToken.None));
        Assert.Contains($"The comparison folder {file} is a file; name a folder with --output", writer.ToString().ReplaceLineEndings(""));
        Assert.DoesNotContain("log.txt", writer.ToString());
        Assert.Equal("mine", File.ReadAllText(file));

        // A run folder, or a folder of the user's files, is no comparison folder: refused before anything is written into it.
        string run = Directory.CreateDirectory(folder.File("run")).FullName;
        File.WriteAllText(Path.Combine(run, "run.json"), """{ "status": "finished" }""");
        File.WriteAllText(Path.Combine(run, "report.md"), "the run's report");
        string mine = Directory.CreateDirectory(folder.File("configs")).FullName;
        File.WriteAllText(Path.Combine(mine, "a.json"), "{}");
        Directory.CreateDirectory(Path.Combine(mine, "old"));
        File.WriteAllText(Path.Combine(mine, "old", "notes.txt"), "mine");
        foreach (var (target, listed) in new[] { (run, "report.md, run.json, which a comparison does not write (it is a run folder)"), (mine, "a.json, old, which a comparison does not write;") })
        {
            writer.GetStringBuilder().Clear();
            var before = Directory.GetFileSystemEntries(target, "*", SearchOption.AllDirectories).Order().ToList();
            Assert.Equal(ExitCodes.Failed, new HostApplication(SampleRunTests.TestConsole(writer)).Compare(TestPaths.Sample("toy2d/hd.json"),
                ["stages:detail:adversarialWeight=0.2,0.1"], Shrink, 1, target, overwrite: true, resume: false, CancellationToken.None));
            Assert.Contains($"The comparison folder {target} holds {listed}", writer.ToString().ReplaceLineEndings(""));
            Assert.Equal(before, Directory.GetFileSystemEntries(target, "*", SearchOption.AllDirectories).Order().ToList());
        }

        // A planned run's folder holding files but no run: refused before the teacher trains (it failed after, with a log.txt
        // that did not exist). An empty or hidden folder is not taken for another variant's runs.
        string comparison = folder.File("cmp");
        string seed = Directory.CreateDirectory(Path.Combine(comparison, "detail.adversarialWeight-0.1", "seed-0")).FullName;
        File.WriteAllText(Path.Combine(seed, "notes.txt"), "mine");
        Directory.CreateDirectory(Path.Combine(comparison, ".ipynb_checkpoints"));
        writer.GetStringBuilder().Clear();
        Assert.Equal(ExitCodes.Failed, new HostApplication(SampleRunTests.TestConsole(writer)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:adversarialWeight=0.2,0.1"], Shrink, 1, comparison, overwrite: true, resume: false, CancellationToken.None));
        Assert.Contains($"{seed} holds files but no HierDistill run (run.json missing), and a run of this comparison goes there; move them away, " +
                        "or choose another folder with --output.", writer.ToString().ReplaceLineEndings(""));
        Assert.DoesNotContain("runs of variants this comparison does not have", writer.ToString());
        Assert.False(Directory.Exists(Path.Combine(comparison, "teacher")));
    }

    [Fact]
    public void Validate_on_a_comparison_file_says_what_it_is_and_which_command_checks_it()
    {
        var writer = new StringWriter();
        string path = TestPaths.Sample("toy2d/compare.json");
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(SampleRunTests.TestConsole(writer)).Validate(path, []));
        string text = writer.ToString().ReplaceLineEndings(" ");
        Assert.Contains("is a comparison file", text);
        Assert.Contains($"hierdistill compare {path}", text);
        // `run` on it says the same instead of listing the comparison file's keys as config errors
        var run = new StringWriter();
        Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(SampleRunTests.TestConsole(run)).Run(path, [], overwrite: false, CancellationToken.None));
        Assert.Contains($"is a comparison file (it has \"variants\"), not a run config; run it with hierdistill compare {path}.", run.ToString().ReplaceLineEndings(""));
        Assert.DoesNotContain("unknown key", run.ToString());
    }

    [Fact]
    public void An_invalid_variant_stops_the_comparison_before_anything_runs()
    {
        using var folder = TestPaths.NewTempFolder();
        var writer = new StringWriter();
        int code = new HostApplication(SampleRunTests.TestConsole(writer)).Compare(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:discriminator:type=awd,patchgan"], [], null, folder.File("cmp"), false, false, CancellationToken.None);
        Assert.Equal(ExitCodes.InvalidConfig, code);
        Assert.Contains("unknown discriminator 'patchgan'", writer.ToString());
        Assert.Contains("variant 'detail.discriminator.type=patchgan' is invalid", writer.ToString());
        Assert.False(Directory.Exists(folder.File("cmp")));
    }

    private static void AssertClose(double expected, string actual, string what)
    {
        double value = double.Parse(actual, CultureInfo.InvariantCulture);
        Assert.True(Math.Abs(value - expected) <= 1e-12 * Math.Max(1, Math.Abs(expected)), $"{what}: csv {actual}, recomputed {expected}");
    }
}
