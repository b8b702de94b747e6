using HierDistill.Host.Comparison;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Comparison;

public class ComparisonPlanTests
{
    [Fact]
    public void Values_split_at_top_level_commas_so_json_lists_and_objects_stay_whole()
    {
        Assert.Equal(["awd", "gap"], ComparisonPlan.SplitValues("awd, gap"));
        Assert.Equal(["[1, 2]", "[4,8]"], ComparisonPlan.SplitValues("[1, 2],[4,8]"));
        Assert.Equal(["{\"type\":\"meanflow\",\"options\":{\"jvp\":\"finiteDifference\"}}", "{\"type\":\"consistency\"}"],
            ComparisonPlan.SplitValues("{\"type\":\"meanflow\",\"options\":{\"jvp\":\"finiteDifference\"}},{\"type\":\"consistency\"}"));
        Assert.Equal(["\"a,b\"", "c"], ComparisonPlan.SplitValues("\"a,b\",c"));
    }

    [Fact]
    public void Varied_keys_make_the_cartesian_product_in_order_with_readable_names_and_safe_folders()
    {
        var plan = ComparisonPlan.Create(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:discriminator:type=awd,gap", "stages:detail:adversarialWeight=0.1,0.2"], ["run:threads=1"], 2, null);
        Assert.Equal(
            ["detail.discriminator.type=awd, detail.adversarialWeight=0.1", "detail.discriminator.type=awd, detail.adversarialWeight=0.2",
             "detail.discriminator.type=gap, detail.adversarialWeight=0.1", "detail.discriminator.type=gap, detail.adversarialWeight=0.2"],
            plan.Variants.Select(v => v.Name));
        Assert.Equal("detail.discriminator.type-awd_detail.adversarialWeight-0.1", plan.Variants[0].Folder);
        Assert.Equal(["stages:detail:discriminator:type=gap", "stages:detail:adversarialWeight=0.2"], plan.Variants[3].Overrides);
        Assert.Empty(plan.CommonOverrides);
        Assert.Equal(["run:threads=1"], plan.CommandLineOverrides);
        Assert.Equal(["stages:detail:discriminator:type=gap", "stages:detail:adversarialWeight=0.2", "run:threads=1"], plan.OverridesOf(plan.Variants[3]));
        Assert.Equal(2, plan.Seeds);
        Assert.Null(plan.ComparisonFile);
    }

    [Fact]
    public void Quoted_string_values_are_named_without_their_quotes_and_passed_on_as_given()
    {
        // `--vary 'key="awd","gap"'` (JSON strings, as --set takes them) names the variants as the unquoted form does.
        var plan = ComparisonPlan.Create(TestPaths.Sample("toy2d/hd.json"), ["stages:detail:discriminator:type=\"awd\",\"gap\""], [], 1, null);
        Assert.Equal(["detail.discriminator.type=awd", "detail.discriminator.type=gap"], plan.Variants.Select(v => v.Name));
        Assert.Equal(["detail.discriminator.type-awd", "detail.discriminator.type-gap"], plan.Variants.Select(v => v.Folder));
        Assert.Equal(["stages:detail:discriminator:type=\"gap\""], plan.Variants[1].Overrides);
        // A JSON list keeps its brackets and inner quotes.
        plan = ComparisonPlan.Create(TestPaths.Sample("toy2d/hd.json"), ["stages:detail:discriminator:options:blocks=[1,2],[3]"], [], 1, null);
        Assert.Equal(["detail.discriminator.options.blocks=[1,2]", "detail.discriminator.options.blocks=[3]"], plan.Variants.Select(v => v.Name));
    }

    [Fact]
    public void Keys_compare_sets_per_run_cannot_be_varied_and_a_varied_key_cannot_also_be_set()
    {
        var e = Assert.Throws<ComparisonException>(() => ComparisonPlan.Create(TestPaths.Sample("toy2d/hd.json"),
            ["run.seed=0,7", "run:outputDir=a,b"], [], 1, null));
        Assert.Contains("--vary run.seed: compare sets each run's seed from --seeds", e.Message);
        Assert.Contains("--vary run:outputDir: compare puts each run in <output>/<variant>/seed-<seed>", e.Message);
        e = Assert.Throws<ComparisonException>(() => ComparisonPlan.Create(TestPaths.Sample("toy2d/hd.json"),
            ["stages:detail:adversarialWeight=0.1,0.2"], ["stages.detail.adversarialWeight=0.3"], 1, null));
        Assert.Contains("--set stages.detail.adversarialWeight: the key is varied (--vary stages:detail:adversarialWeight)", e.Message);
    }

    [Fact]
    public void The_command_lines_set_applies_after_a_comparison_files_set_and_variants()
    {
        using var folder = TestPaths.NewTempFolder();
        string file = folder.File("cmp.json");
        File.WriteAllText(file, $$"""
            { "config": "{{TestPaths.Sample("toy2d/hd.json").Replace("\\", "/")}}", "set": { "stages:structure:training:steps": 20 },
              "variants": { "a": { "stages:structure:training:steps": 35 }, "b": {} } }
            """);
        var plan = ComparisonPlan.Create(file, [], ["stages:structure:training:steps=25"], null, null);
        Assert.Equal(["stages:structure:training:steps=20", "stages:structure:training:steps=35", "stages:structure:training:steps=25"],
            plan.OverridesOf(plan.Variants[0]));
        Assert.Equal(["stages:structure:training:steps=20", "stages:structure:training:steps=25"], plan.OverridesOf(plan.Variants[1]));

        File.WriteAllText(file, $$"""{ "config": "{{TestPaths.Sample("toy2d/hd.json").Replace("\\", "/")}}", "variants": { "Shared": {}, "b": {} } }""");
        var e = Assert.Throws<ComparisonException>(() => ComparisonPlan.Create(file, [], [], null, null));
        Assert.Equal(["variants:Shared: the name is reserved for the rows every variant shares (the teacher and the data floor); choose another."], e.Errors);
    }

    [Fact]
    public void A_comparison_file_names_its_base_config_seeds_and_variants_as_overrides()
    {
        var plan = ComparisonPlan.Create(TestPaths.Sample("toy2d/compare.json"), [], ["run:threads=2"], null, null);
        Assert.Equal(TestPaths.Sample("toy2d/hd.json"), plan.BaseConfig);
        Assert.Equal(3, plan.Seeds);
        Assert.Equal(Path.Combine("runs", "toy2d-compare"), plan.OutputDir);
        Assert.Equal(["meanflow", "consistency", "progressive", "dmd-no-td", "hd-gap", "hd-awd"], plan.Variants.Select(v => v.Name));
        // an object value replaces the whole entry (JSON text), scalars are plain values
        Assert.Equal(["stages:structure:distiller={\"type\":\"consistency\",\"options\":{\"guidanceScale\":1.0}}", "stages:detail:enabled=false"],
            plan.Variants[1].Overrides);
        Assert.Empty(plan.Variants[5].Overrides);
        Assert.Equal(["run:threads=2"], plan.CommandLineOverrides);
        // --vary multiplies the named variants; --seeds wins over the file
        var more = ComparisonPlan.Create(TestPaths.Sample("toy2d/ablation.json"), ["run:logEvery=10,20"], [], 1, "elsewhere");
        Assert.Equal(6, more.Variants.Count);
        Assert.Equal("no-td-init, run.logEvery=20", more.Variants[1].Name);
        Assert.Equal("no-td-init_run.logEvery-20", more.Variants[1].Folder);
        Assert.Equal((1, "elsewhere"), (more.Seeds, more.OutputDir));
    }

    [Fact]
    public void Every_problem_of_the_command_line_and_the_file_is_reported()
    {
        using var file = new ConfigFile("""
        { "config": "missing.json", "seeds": 0, "colour": 1, "variants": { "a b": {}, "ok": 3 } }
        """);
        var e = Assert.Throws<ComparisonException>(() => ComparisonPlan.Create(file.Path, ["nokey", "run:seed=1,,2"], [], null, null));
        Assert.Equal(
        [
            "colour: unknown key of a comparison file; allowed: config, outputDir, seeds, set, vary, variants.",
            $"config: base config not found: {Path.Combine(Path.GetDirectoryName(file.Path)!, "missing.json")}",
            "variants:a b: variant names must be letters, digits, '.', '_' or '-'.",
            "variants:ok: must be an object of key paths and values ({} for the base config as it is).",
            "--vary 'nokey' is not key=value1,value2,... (e.g. stages:detail:discriminator:type=awd,gap).",
            "--vary 'run:seed=1,,2': every value must be non-empty; separate values with commas.",
            "seeds: 0 is out of range; allowed 1 .. 1000.",
        ], e.Errors);
        var twice = Assert.Throws<ComparisonException>(() => ComparisonPlan.Create(TestPaths.Sample("toy2d/hd.json"), ["run.logEvery=1,2", "run:logEvery=3"], [], null, null));
        Assert.Equal(["--vary run.logEvery: the key is varied more than once; give all its values in one list."], twice.Errors);
    }

    [Theory]
    [InlineData("stages:teacher:training:steps", "stages:teacher", true)]
    [InlineData("stages", "stages:teacher", true)]
    [InlineData("Stages.Teacher", "stages:teacher", true)]
    [InlineData("stages:teacherx", "stages:teacher", false)]
    [InlineData("stages:structure:enabled", "stages:teacher", false)]
    public void An_override_touches_a_section_at_below_or_above_it(string key, string path, bool expected) =>
        Assert.Equal(expected, ComparisonPlan.Touches(key, path));
}

public class SeedStatisticsTests
{
    [Fact]
    public void Mean_and_sample_standard_deviation_with_bessels_correction()
    {
        var s = SeedStatistics.Of([1.0, 2.0, 3.0, 4.0]);
        Assert.Equal(2.5, s.Mean, 15);
        Assert.Equal(Math.Sqrt(5.0 / 3.0), s.Std!.Value, 15); // Σ(x - 2.5)² = 5, / (4 - 1)
        Assert.Equal(4, s.Count);
        Assert.Equal(new SeedStatistics(7, null, 1), SeedStatistics.Of([7.0]));
        Assert.Equal(0, SeedStatistics.Of([]).Count);
        Assert.Equal(new SeedStatistics(0.1, 0, 9), SeedStatistics.Of(Enumerable.Repeat(0.1, 9).ToList())); // Σ/9 alone gives 0.09999999999999999
    }
}

/// <summary>The comparison's summary lines.</summary>
public class ComparisonSummaryTests
{
    private static ModelMetrics Model(string name, string kind, int nfe, double score) =>
        new(name, kind, name, "euler", nfe, new Dictionary<string, double> { ["sw2"] = score }, 0.001, 1, 1, 10);

    [Fact]
    public void Each_one_step_student_is_compared_with_its_own_variants_teacher_and_floor()
    {
        // Two variants with teachers of their own (e.g. varying the data): a's teacher is best at 2.0, b's at 1.0.
        var a = new List<ModelMetrics> { Model("data", "data", 0, 0.5), Model("teacher", "teacher", 8, 2.0), Model("teacher", "teacher", 4, 3.0), Model("s", "distribution", 1, 3.0) };
        var b = new List<ModelMetrics> { Model("data", "data", 0, 0.25), Model("teacher", "teacher", 8, 1.0), Model("s", "distribution", 1, 1.5) };
        var table = ComparisonTable.Build(
        [
            ("a", [a], _ => true),
            ("b", [b], _ => true),
        ], "sw2");
        var lines = table.Summary();
        Assert.Contains("- teacher (`a`): best sw2 2 at NFE 8.", lines);
        Assert.Contains("- teacher (`b`): best sw2 1 at NFE 8.", lines);
        Assert.Contains("1. `b` / s (s), 1 step: sw2 1.5000 = 1.50× its teacher's (`b`) best.", lines);
        Assert.Contains("2. `a` / s (s), 1 step: sw2 3 = 1.50× its teacher's (`a`) best.", lines);
        Assert.Contains("- data vs data (the noise floor, `b`): sw2 0.2500: what a perfect sampler scores with this many samples, not a strict lower bound (a model can score below it).", lines);

        // One shared teacher: the lines read as before.
        var shared = ComparisonTable.Build(
        [
            (ComparisonTable.SharedVariant, [[Model("teacher", "teacher", 8, 2.0), Model("data", "data", 0, 0.5)]], m => m.Kind is "teacher" or "data"),
            ("a", [[Model("s", "distribution", 1, 3.0)]], m => m.Kind is not ("teacher" or "data")),
        ], "sw2");
        Assert.Contains("1. `a` / s (s), 1 step: sw2 3 = 1.50× the teacher's best.", shared.Summary());
        Assert.Contains("- data vs data (the noise floor): sw2 0.5000: what a perfect sampler scores with this many samples, not a strict lower bound (a model can score below it).", shared.Summary());
    }

    [Fact]
    public void A_rank_of_a_mixture_says_how_many_modes_the_student_covers()
    {
        // Ranked by sw2 alone, a student that drops modes can rank first: the line says so. Over two seeds: 5 and 6 of 8.
        static ModelMetrics WithModes(double score, int covered) => new("s", "distribution", "s", "euler", 1,
            new Dictionary<string, double> { ["sw2"] = score, ["modes_covered"] = covered, ["modes_total"] = 8 }, 0.001, 1, 1, 10);
        var table = ComparisonTable.Build([("a", [[WithModes(1.0, 5)], [WithModes(1.2, 6)]], _ => true)], "sw2");
        Assert.Contains("1. `a` / s (s), 1 step: sw2 1.1000 ± 0.1414, modes 5.5000 ± 0.7071 of 8.", table.Summary());
    }

    [Fact]
    public void A_model_with_the_same_scores_in_two_variants_is_named_as_such()
    {
        // Only stage 2 varies: both variants' stage-1 students score alike, to the last digit; stage 2's do not.
        var table = ComparisonTable.Build(
        [
            ("awd", [[Model("structure", "trajectory", 1, 2.0), Model("detail", "distribution", 1, 1.0)]], _ => true),
            ("gap", [[Model("structure", "trajectory", 1, 2.0), Model("detail", "distribution", 1, 1.5)]], _ => true),
        ], "sw2");
        var summary = table.Summary();
        Assert.Contains("4. `gap` / structure (structure), 1 step: sw2 2. The same scores as rank 3: what is varied does not reach this model.", summary);
        Assert.DoesNotContain("The same scores as rank 1", string.Join("\n", summary));
    }

    [Fact]
    public void Ranks_whose_means_lie_within_their_seeds_spread_say_so()
    {
        // Over two seeds: x 1.0, 1.2 (mean 1.1, std 0.1414); y 1.3, 1.5 (1.4, 0.1414): 0.3 apart > 0.2828, told apart.
        // z 1.5, 1.6 (1.55, 0.0707): 0.15 from y, within 0.1414 + 0.0707.
        ComparisonTable Table(params (string Variant, double A, double B)[] variants) => ComparisonTable.Build(
            [.. variants.Select(v => (v.Variant, (IReadOnlyList<IReadOnlyList<ModelMetrics>>)[[Model("s", "distribution", 1, v.A)], [Model("s", "distribution", 1, v.B)]],
                (Func<ModelMetrics, bool>)(_ => true)))], "sw2");
        var lines = Table(("x", 1.0, 1.2), ("y", 1.3, 1.5), ("z", 1.5, 1.6)).Summary();
        Assert.Equal(
        [
            "1. `x` / s (s), 1 step: sw2 1.1000 ± 0.1414.",
            "2. `y` / s (s), 1 step: sw2 1.4000 ± 0.1414.",
            "3. `z` / s (s), 1 step: sw2 1.5500 ± 0.0707. Within the spread of rank 2 (the means differ by no more than their standard deviations added): these seeds do not tell the two apart.",
        ], lines);
    }
}
