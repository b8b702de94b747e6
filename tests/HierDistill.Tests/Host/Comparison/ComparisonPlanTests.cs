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
        Assert.Equal(["run:threads=1"], plan.CommonOverrides);
        Assert.Equal(2, plan.Seeds);
        Assert.Null(plan.ComparisonFile);
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
        Assert.Equal(["run:threads=2"], plan.CommonOverrides);
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
        var twice = Assert.Throws<ComparisonException>(() => ComparisonPlan.Create(TestPaths.Sample("toy2d/hd.json"), ["run.seed=1,2", "run:seed=3"], [], null, null));
        Assert.Equal(["--vary run.seed: the key is varied more than once; give all its values in one list."], twice.Errors);
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
