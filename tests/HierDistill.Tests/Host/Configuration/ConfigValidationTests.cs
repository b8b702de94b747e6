using HierDistill.Host;
using HierDistill.Host.Configuration;
using HierDistill.Host.Plugins;
using HierDistill.Tests.Support;
using Xunit;

namespace HierDistill.Tests.Host.Configuration;

public class ConfigValidationTests
{
    private const string Valid = """
    {
      "run": { "name": "t", "device": "cpu" },
      "data": { "type": "mixture2d", "options": { "preset": "ring8" } },
      "stages": {
        "teacher": { "kind": "teacher", "teacher": { "type": "mlp", "options": { "hidden": 32 } }, "training": { "steps": 10 } },
        "structure": { "kind": "trajectory", "distiller": { "type": "meanflow" }, "training": { "steps": 10 } },
        "detail": { "kind": "distribution", "matcher": { "type": "dmd" }, "discriminator": { "type": "awd" } },
        "evaluate": { "kind": "evaluation" }
      }
    }
    """;

    private static IReadOnlyList<string> Errors(string json, params string[] overrides)
    {
        using var file = new ConfigFile(json);
        try
        {
            var root = ConfigLoader.Read(file.Path, overrides);
            ConfigLoader.Validate(root, file.Path, Catalogs.BuiltIn());
            return [];
        }
        catch (ConfigException e)
        {
            return e.Errors.Select(x => x.ToString()).ToList();
        }
    }

    [Fact]
    public void Keys_names_and_values_are_matched_without_regard_to_case()
    {
        // Each of these was refused before (only keys, component names and C# enums ignored case), though the README said all do.
        string[] overrides =
        [
            "run:Device=CPU", "run:precision=BFloat16", "data:options:preset=Ring8", "stages:structure:kind=Trajectory",
            "stages:evaluate:teacherSolver=Heun", "stages:detail:generator=Structure", "stages:detail:matcher:type=DMD",
        ];
        Assert.Empty(Errors(Valid, overrides));
        using var file = new ConfigFile(Valid);
        var loaded = ConfigLoader.Validate(ConfigLoader.Read(file.Path, overrides), file.Path, Catalogs.BuiltIn());
        Assert.Equal(("cpu", "bfloat16"), (loaded.Config.Run.Device, loaded.Config.Run.Precision));
        Assert.Equal(["teacher", "trajectory", "distribution", "evaluation"], loaded.Stages.Select(x => x.Stage.Kind));
        Assert.Equal("heun", ((EvaluationStageConfig)loaded.Stages[3].Stage).TeacherSolver);
        // Stored as the stage is named, so that a --resume given another case sees the same config.
        Assert.Equal("structure", ((DistributionStageConfig)loaded.Stages[2].Stage).Generator);
        Assert.Equal("ring8", ((HierDistill.Plugins.Data.MixtureOptions)loaded.Component("data").Options).Preset);
        // A value that is no spelling of an allowed one is still refused, quoted as written.
        Assert.Equal(["run:precision: 'BF16' is not allowed: must be float32 or bfloat16.", "run:device: 'GPU' is not a device; use auto, cpu, cuda or cuda:N."],
            Errors(Valid, "run:precision=BF16", "run:device=GPU"));
        Assert.Equal(["stages:detail:generator: 'Structur' is not an earlier enabled trajectory or distribution stage; use previous, teacher, structure."],
            Errors(Valid, "stages:detail:generator=Structur"));
    }

    [Fact]
    public void A_key_that_is_a_get_only_property_of_the_options_type_says_why_it_is_no_option()
    {
        // For a plugin author whose options type has a field or a property without a setter: not silently "unknown".
        var errors = Errors(Valid, "stages:teacher:teacher={\"type\":\"dit\"}", "data:type=fashion-mnist", "data:options=null",
            "stages:teacher:teacher:options:size=3");
        Assert.Contains("stages:teacher:teacher:options:size: unknown key. Allowed here: preset, hidden, depth, heads, patch, mlpRatio, frequencyDim, " +
                        "maxPeriod. (DiTOptions.Size has no public setter, so it is not an option: the keys are the type's public properties with " +
                        "{ get; set; }.)", errors);
    }

    [Fact]
    public void A_misspelt_stage_name_is_named_with_the_stage_meant()
    {
        // --set on a misspelt stage makes a new stage without a kind: named as the slip it is, not as a missing kind.
        Assert.Equal(
        [
            "stages:strucure: not a stage of this config (it has no kind). Did you mean 'structure'? A new stage needs \"kind\": one of " +
            "teacher, trajectory, distribution, evaluation.",
            "stages:xyz:kind: is required; use one of teacher, trajectory, distribution, evaluation.",
        ], Errors(Valid, "stages:strucure:training:steps=5", "stages:xyz:enabled=false"));
    }

    [Fact]
    public void A_valid_config_binds_stages_in_order_with_component_options()
    {
        using var file = new ConfigFile(Valid);
        var loaded = ConfigLoader.Validate(ConfigLoader.Read(file.Path), file.Path, Catalogs.BuiltIn());
        Assert.Equal(["teacher", "structure", "detail", "evaluate"], loaded.Stages.Select(s => s.Key));
        var (descriptor, options) = loaded.Component("stages:teacher:teacher");
        Assert.Equal("mlp", descriptor.Name);
        Assert.Equal(32, ((HierDistill.Plugins.Teachers.Networks.MlpOptions)options).Hidden);
        Assert.Equal(4, ((HierDistill.Plugins.Teachers.Networks.MlpOptions)options).Depth); // default kept
    }

    [Fact]
    public void A_misspelt_key_names_its_path_and_the_likely_key()
    {
        var errors = Errors(Valid.Replace("{ \"type\": \"meanflow\" }", "{ \"type\": \"meanflow\", \"options\": { \"guidanceScal\": 2 } }"));
        Assert.Equal(
            ["stages:structure:distiller:options:guidanceScal: unknown key. Did you mean 'guidanceScale'? Allowed here: guidanceScale, timeMean, timeStd, " +
             "ratioRNotEqualT, adaptiveWeightPower, adaptiveWeightEpsilon, labelDropout, jvp, finiteDifferenceEpsilon."],
            errors);
        // A shortened name: the one key it begins (none when it begins several, or is shorter than 4 letters).
        Assert.Equal("guidanceScale", ConfigValidator.Suggest("guidance", ["guidanceScale", "labelDropout"]));
        Assert.Null(ConfigValidator.Suggest("time", ["timeMean", "timeStd", "guidanceScale"]));
        Assert.Null(ConfigValidator.Suggest("jv", ["jvpMode", "labelDropout"]));
        // ... else the one it ends (none when it ends several, or also begins one).
        Assert.Equal("teacherGuidanceScale", ConfigValidator.Suggest("guidanceScale", ["samples", "teacherGuidanceScale", "teacherNfe"]));
        Assert.Null(ConfigValidator.Suggest("guidanceScale", ["teacherGuidanceScale", "studentGuidanceScale"]));
    }

    /// <summary>A component's option written without its <c>options</c> level, or in its stage, is named with where it belongs.</summary>
    [Fact]
    public void An_option_written_outside_its_components_options_says_where_it_belongs()
    {
        var errors = Errors(Valid, "stages:detail:discriminator:headDim=32", "stages:structure:distiller:guidanceScale=2",
            "stages:detail:generatorUpdateInterval=3", "stages:detail:discriminator:tipe=gap");
        Assert.Equal(
        [
            "stages:detail:discriminator:headDim: unknown key. It is an option of the discriminator 'awd': stages:detail:discriminator:options:headDim. Allowed here: type, options.",
            "stages:detail:discriminator:tipe: unknown key. Did you mean 'type'? Allowed here: type, options.",
            "stages:detail:generatorUpdateInterval: unknown key. It is an option of the distribution matcher 'dmd': stages:detail:matcher:options:generatorUpdateInterval. " +
            "Allowed here: generator, generatorNfe, matcher, discriminator, adversarialWeight, regularizer, regularizerWeight, training, kind, order, enabled.",
            "stages:structure:distiller:guidanceScale: unknown key. It is an option of the trajectory distiller 'meanflow': stages:structure:distiller:options:guidanceScale. Allowed here: type, options.",
        ], errors.Order(StringComparer.Ordinal));
        // The option of another component than the one named is no hint: gap has no queries.
        Assert.Equal(["stages:detail:discriminator:queries: unknown key. Allowed here: type, options."],
            Errors(Valid, "stages:detail:discriminator:type=gap", "stages:detail:discriminator:queries=2"));
    }

    [Fact]
    public void Every_error_is_reported_not_just_the_first()
    {
        var errors = Errors(Valid, "run:sead=1", "run:seed=abc", "stages:structure:training:batchSize=0", "stages:detail:matcher:type=dmdd",
            "stages:evaluate:teacherSolver=rk4", "data:options:preset=moons");
        Assert.Equal(
        [
            "data:options:preset: 'moons' is not allowed: must be ring8 or grid25.",
            "run:sead: unknown key. Did you mean 'seed'? Allowed here: name, outputDir, device, seed, libtorch, precision, threads, overwrite, logEvery, checkpointEvery, maxSkippedSteps.",
            "run:seed: 'abc' is not an integer.",
            "stages:detail:matcher:type: unknown distribution matcher 'dmdd'. Did you mean 'dmd'? Known: dmd. Plugin folders searched: /test/plugins.",
            "stages:evaluate:teacherSolver: 'rk4' is not allowed: must be euler or heun.",
            "stages:structure:training:batchSize: 0 is out of range; allowed 1 .. 1000000.",
        ], errors.Order(StringComparer.Ordinal));

        // A range error beside a value of the wrong type or an unknown key in the same section (or one below it) is reported
        // in the same pass; the values in error are left out, so they raise nothing more.
        errors = Errors(Valid, "run:seed=abc", "run:logEvery=0", "stages:detail:discriminator:options:timeMean=abc",
            "stages:detail:discriminator:options:headDim=0", "stages:detail:discriminator:options:optimizer:learningRate=-1",
            "stages:detail:training:foo=1", "stages:detail:training:batchSize=0");
        Assert.Equal(
        [
            "run:logEvery: 0 is out of range; allowed 1 .. 1000000.",
            "run:seed: 'abc' is not an integer.",
            "stages:detail:discriminator:options:headDim: 0 is out of range; allowed 1 .. 65536.",
            "stages:detail:discriminator:options:optimizer:learningRate: -1 is out of range; allowed 0 .. 10.",
            "stages:detail:discriminator:options:timeMean: 'abc' is not a number.",
            "stages:detail:training:batchSize: 0 is out of range; allowed 1 .. 1000000.",
            "stages:detail:training:foo: unknown key. Allowed here: steps, batchSize, learningRate, beta1, beta2, weightDecay, gradClip, emaDecay, warmupSteps.",
        ], errors.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Unknown_component_names_list_the_known_ones_and_the_folders_searched()
    {
        var errors = Errors(Valid, "stages:detail:discriminator:type=patchgan");
        Assert.Equal(["stages:detail:discriminator:type: unknown discriminator 'patchgan'. Known: awd, gap. Plugin folders searched: /test/plugins."], errors);
        // Only the host's own folder searched: where a plugin of one's own goes.
        var hostOnly = ComponentCatalog.Create(Catalogs.BuiltIn().Plugins, [], [PluginDiscovery.DefaultFolder]);
        using (var config = new ConfigFile(Valid))
        {
            var noFolder = Assert.Throws<ConfigException>(() =>
                ConfigLoader.Validate(ConfigLoader.Read(config.Path, ["stages:detail:discriminator:type=patchgan"]), config.Path, hostOnly));
            Assert.EndsWith($"Plugin folders searched: {PluginDiscovery.DefaultFolder}; a plugin of your own is found when its folder is listed in " +
                            "the config's \"plugins\": { \"folders\": [\"DIR\"] }.", Assert.Single(noFolder.Errors).ToString());
        }
        // A near miss is a typo, not a missing folder.
        Assert.Equal(["stages:detail:discriminator:type: unknown discriminator 'awdd'. Did you mean 'awd'? Known: awd, gap. Plugin folders searched: /test/plugins."],
            Errors(Valid, "stages:detail:discriminator:type=awdd"));

        // A plugin that failed to load may be the one that has it: the reasons follow.
        var builtIn = Catalogs.BuiltIn();
        var withFailure = ComponentCatalog.Create(builtIn.Plugins, [new PluginLoadError("/p/PatchGan/PatchGan.dll", "no entry point: …")], ["/test/plugins"]);
        using var file = new ConfigFile(Valid);
        var e = Assert.Throws<ConfigException>(() =>
            ConfigLoader.Validate(ConfigLoader.Read(file.Path, ["stages:detail:discriminator:type=patchgan"]), file.Path, withFailure));
        Assert.EndsWith("Plugin folders searched: /test/plugins. Not loaded (1): /p/PatchGan/PatchGan.dll: no entry point: …", Assert.Single(e.Errors).ToString());
    }

    [Fact]
    public void Wrong_types_and_enum_values_say_what_is_allowed()
    {
        var errors = Errors(Valid, "stages:structure:distiller:options:jvp=forward", "run:overwrite=yes", "stages:evaluate:teacherNfe:0=many");
        Assert.Equal(
        [
            "run:overwrite: 'yes' is not true or false.",
            "stages:evaluate:teacherNfe:0: 'many' is not an integer.",
            "stages:structure:distiller:options:jvp: 'forward' is not one of doubleBackward, finiteDifference.",
        ], errors.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Stage_kinds_and_pipeline_structure_are_checked()
    {
        Assert.Equal(["stages:extra:kind: 'finetune' is not a stage kind; use one of teacher, trajectory, distribution, evaluation."],
            Errors(Valid, "stages:extra:kind=finetune"));
        Assert.Equal(
            ["stages:detail:generator: 'previous' needs an earlier enabled trajectory or distribution stage, and there is none; use 'teacher' " +
             "to start the generator from the teacher (DMD without TD initialisation)."],
            Errors(Valid, "stages:structure:enabled=false"));
        Assert.Empty(Errors(Valid, "stages:structure:enabled=false", "stages:detail:generator=teacher"));
        Assert.Equal(["stages: no enabled teacher stage; add one ({ \"kind\": \"teacher\", ... })."],
            Errors(Valid, "stages:teacher:enabled=false", "stages:detail:generator=teacher", "stages:structure:enabled=false"));
    }

    [Fact]
    public void Cross_field_rules_of_options_are_reported_with_the_field()
    {
        Assert.Equal(["stages:teacher:teacher:options:tokenChannels: must divide hidden (32)."],
            Errors(Valid, "stages:teacher:teacher:options:tokenChannels=5"));
        Assert.Equal(["stages:detail:matcher:options:timeMin: must be below timeMax (0.5)."],
            Errors(Valid, "stages:detail:matcher:options:timeMin=0.6", "stages:detail:matcher:options:timeMax=0.5"));
        Assert.Equal(["run:device: 'gpu' is not a device; use auto, cpu, cuda or cuda:N."], Errors(Valid, "run:device=gpu"));
        Assert.Equal(["run:precision: 'fp16' is not allowed: must be float32 or bfloat16."], Errors(Valid, "run:precision=fp16"));
        Assert.Empty(Errors(Valid, "run:precision=bfloat16"));
    }

    [Fact]
    public void Malformed_json_is_reported_with_line_and_column()
    {
        var errors = Errors("{\n  \"run\": { \"name\": \"t\" }\n  \"data\": {}\n}");
        Assert.Single(errors);
        Assert.StartsWith("malformed JSON at line 3, column 3:", errors[0]);
    }

    [Fact]
    public void A_missing_file_and_a_malformed_override_are_named()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Read("/no/such/config.json"));
        Assert.Equal("config file not found: /no/such/config.json", e.Errors.Single().ToString());
        // A folder: a run folder names its resolved config, another folder its JSON files.
        using (var folder = TestPaths.NewTempFolder())
        {
            e = Assert.Throws<ConfigException>(() => ConfigLoader.Read(folder.Path));
            Assert.Equal($"{folder.Path} is a folder, not a config file.", e.Errors.Single().ToString());
            File.WriteAllText(folder.File("b.json"), "{}");
            File.WriteAllText(folder.File("a.json"), "{}");
            e = Assert.Throws<ConfigException>(() => ConfigLoader.Read(folder.Path));
            Assert.Equal($"{folder.Path} is a folder, not a config file; name one of its configs: a.json, b.json.", e.Errors.Single().ToString());
            File.WriteAllText(folder.File("config.resolved.json"), "{}");
            e = Assert.Throws<ConfigException>(() => ConfigLoader.Read(folder.Path));
            Assert.Equal($"{folder.Path} is a run folder, not a config file; its config is {folder.File("config.resolved.json")} (to continue a stopped " +
                         $"run: hierdistill run {folder.File("config.resolved.json")} --resume {folder.Path}).", e.Errors.Single().ToString());
        }
        using var file = new ConfigFile(Valid);
        var e2 = Assert.Throws<ConfigException>(() => ConfigLoader.Read(file.Path, ["stages:detail:enabled"]));
        Assert.Equal("--set: 'stages:detail:enabled' is not key=value (e.g. stages:detail:enabled=false).", e2.Errors.Single().ToString());
        // extends on the command line would be ignored (the base configs are read first): refused.
        var e3 = Assert.Throws<ConfigException>(() => ConfigLoader.Read(file.Path, ["extends=other.json"]));
        Assert.Equal("extends: cannot be set with --set (the base configs are read before the overrides); write a config file with " +
                     "\"extends\": \"<base>\" and run that.", e3.Errors.Single().ToString());
    }

    [Fact]
    public void Dotted_overrides_reach_the_same_keys_as_colon_ones()
    {
        using var file = new ConfigFile(Valid);
        var loaded = ConfigLoader.Validate(ConfigLoader.Read(file.Path, ["run.seed=42", "stages.detail.enabled=false"]), file.Path, Catalogs.BuiltIn());
        Assert.Equal(42, loaded.Config.Run.Seed);
        Assert.DoesNotContain(loaded.Stages, s => s.Key == "detail");
    }

    [Fact]
    public void The_sample_configs_are_valid()
    {
        foreach (var path in Directory.GetFiles(TestPaths.Sample("toy2d"), "*.json"))
        {
            if (File.ReadAllText(path).Contains("\"variants\"", StringComparison.Ordinal))
            {
                // a comparison file: every variant of its base config is valid
                var plan = HierDistill.Host.Comparison.ComparisonPlan.Create(path, [], [], null, null);
                foreach (var variant in plan.Variants)
                    Assert.NotEmpty(ConfigLoader.Validate(ConfigLoader.Read(plan.BaseConfig, variant.Overrides), plan.BaseConfig, Catalogs.BuiltIn()).Stages);
                continue;
            }
            var loaded = ConfigLoader.Validate(ConfigLoader.Read(path), path, Catalogs.BuiltIn());
            Assert.NotEmpty(loaded.Stages);
        }
    }

    [Fact]
    public void A_variant_extends_its_base_and_overrides_only_what_it_names()
    {
        using var folder = TestPaths.NewTempFolder();
        File.WriteAllText(folder.File("base.json"), Valid);
        File.WriteAllText(folder.File("variant.json"), """
        { "extends": "base.json", "run": { "name": "variant" }, "stages": { "detail": { "discriminator": { "type": "gap" } } } }
        """);
        var loaded = ConfigLoader.Validate(ConfigLoader.Read(folder.File("variant.json")), folder.File("variant.json"), Catalogs.BuiltIn());
        Assert.Equal("variant", loaded.Config.Run.Name);
        Assert.Equal("cpu", loaded.Config.Run.Device);                       // from the base
        Assert.Equal("gap", loaded.Component("stages:detail:discriminator").Descriptor.Name);
        Assert.Equal("dmd", loaded.Component("stages:detail:matcher").Descriptor.Name);
    }

    [Fact]
    public void An_unknown_option_the_user_did_not_write_names_where_it_comes_from_and_how_to_remove_it()
    {
        using var folder = TestPaths.NewTempFolder();
        // The sample's MeanFlow options include ratioRNotEqualT, which progressive distillation does not take.
        File.WriteAllText(folder.File("swap.json"),
            $$"""{ "extends": "{{TestPaths.Sample("toy2d/hd.json")}}", "stages": { "structure": { "distiller": { "type": "progressive" } } } }""");
        string Validate(string config, params string[] overrides)
        {
            var writer = new StringWriter();
            var console = HierDistill.Tests.Host.Pipeline.SampleRunTests.TestConsole(writer);
            console.Profile.Width = 10_000; // one line per error
            Assert.Equal(ExitCodes.InvalidConfig, new HostApplication(console).Validate(config, overrides));
            return writer.ToString();
        }
        Assert.Contains("stages:structure:distiller:options:ratioRNotEqualT: unknown key. Allowed here: guidanceScale, labelDropout, startSteps, " +
                        "finalSteps, stepsPerRound, adaptiveWeightPower, adaptiveWeightEpsilon. It comes from " + TestPaths.Sample("toy2d/hd.json") +
                        ", which this config extends (objects merge key by key, also under a component whose type this config changes); " +
                        "remove it here with \"ratioRNotEqualT\": null.", Validate(folder.File("swap.json")));
        // The same swap on the command line.
        Assert.Contains("It is set in this config for the type that the override stages:structure:distiller:type=… replaced (options stay when " +
                        "the type changes); remove it with the override stages:structure:distiller:options:ratioRNotEqualT=null beside that one " +
                        "(in a comparison file, in the same variant; --vary gives every variant the same --set), or override the whole component, " +
                        "whose options are then only those given: stages:structure:distiller={\"type\": …, \"options\": {…}} (with --vary, one such " +
                        "object per value, separated by commas).",
            Validate(TestPaths.Sample("toy2d/hd.json"), "stages:structure:distiller:type=progressive"));
        // A config that extends the one holding the key, with the type changed on the command line: the override is named.
        File.WriteAllText(folder.File("mid.json"), $$"""{ "extends": "{{TestPaths.Sample("toy2d/hd.json")}}" }""");
        Assert.Contains($"It is set in {TestPaths.Sample("toy2d/hd.json")}, which this config extends, for the type that the override " +
                        "stages:structure:distiller:type=… replaced", Validate(folder.File("mid.json"), "stages:structure:distiller:type=progressive"));
        // A key the user wrote gets no hint.
        string own = Validate(TestPaths.Sample("toy2d/hd.json"), "stages:structure:distiller:options:ratioRNotEqualTypo=1");
        Assert.Contains("ratioRNotEqualTypo: unknown key.", own);
        Assert.DoesNotContain("It comes from", own);
        Assert.DoesNotContain("It is set in this config", own);
    }

    [Fact]
    public void A_missing_base_or_a_cycle_of_extends_is_reported()
    {
        using var folder = TestPaths.NewTempFolder();
        File.WriteAllText(folder.File("a.json"), """{ "extends": "b.json" }""");
        File.WriteAllText(folder.File("b.json"), """{ "extends": "a.json" }""");
        File.WriteAllText(folder.File("c.json"), """{ "extends": "missing.json" }""");
        var cycle = Assert.Throws<ConfigException>(() => ConfigLoader.Read(folder.File("a.json")));
        Assert.EndsWith("extends itself through a cycle.", cycle.Errors.Single().ToString());
        var missing = Assert.Throws<ConfigException>(() => ConfigLoader.Read(folder.File("c.json")));
        Assert.Equal($"extends: config file not found: {folder.File("missing.json")}", missing.Errors.Single().ToString());
    }

    [Fact]
    public void Errors_in_component_options_do_not_hide_errors_in_the_same_stage_or_the_pipeline()
    {
        var errors = Errors(Valid, "stages:structure:training:steps=-10", "stages:structure:distiller:options:ratioRNotEqualT=1.5",
            "run:seed=-1", "stages:detail:generator=nope", "stages:evaluate:samples=0", "stages:evaluate:teacherNfe=[0]");
        Assert.Equal(
        [
            "run:seed: -1 is out of range; allowed 0 .. 9223372036854775807.",
            "stages:detail:generator: 'nope' is not an earlier enabled trajectory or distribution stage; use previous, teacher, structure.",
            "stages:evaluate:samples: 0 is out of range; allowed 16 .. 10000000.",
            "stages:evaluate:teacherNfe: every entry must be in 1..4096.",
            "stages:structure:distiller:options:ratioRNotEqualT: 1.5 is out of range; allowed 0 .. 1.",
            "stages:structure:training:steps: -10 is out of range; allowed 0 .. 100000000.",
        ], errors.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void A_stage_that_cannot_be_read_does_not_hide_pipeline_errors()
    {
        var errors = Errors(Valid, "stages:teacher:training:batchSzie=256", "stages:detail:generator=nope");
        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("stages:teacher:training:batchSzie: unknown key. Did you mean 'batchSize'?", StringComparison.Ordinal));
        Assert.Contains("stages:detail:generator: 'nope' is not an earlier enabled trajectory or distribution stage; use previous, teacher, structure.", errors);
    }

    [Fact]
    public void A_json_list_on_the_command_line_replaces_the_whole_list_and_null_removes_a_key()
    {
        using var folder = TestPaths.NewTempFolder();
        File.WriteAllText(folder.File("base.json"), Valid.Replace("\"evaluate\": { \"kind\": \"evaluation\" }",
            "\"evaluate\": { \"kind\": \"evaluation\", \"teacherNfe\": [1, 2, 4, 8] }"));
        File.WriteAllText(folder.File("variant.json"), """{ "extends": "base.json", "stages": { "detail": { "discriminator": null } } }""");
        var loaded = ConfigLoader.Validate(ConfigLoader.Read(folder.File("variant.json"), ["stages:evaluate:teacherNfe=[16, 32]"]),
            folder.File("variant.json"), Catalogs.BuiltIn());
        Assert.Equal([16, 32], ((EvaluationStageConfig)loaded.Config.Stages["evaluate"]).TeacherNfe);
        Assert.False(loaded.Components.ContainsKey("stages:detail:discriminator")); // DMD alone
        Assert.True(loaded.Components.ContainsKey("stages:detail:matcher"));
        var indexed = ConfigLoader.Validate(ConfigLoader.Read(folder.File("base.json"), ["stages:evaluate:teacherNfe:1=64"]),
            folder.File("base.json"), Catalogs.BuiltIn());
        Assert.Equal([1, 64, 4, 8], ((EvaluationStageConfig)indexed.Config.Stages["evaluate"]).TeacherNfe);
        // A JSON string: "null" in quotes is the text, not a removal.
        var named = ConfigLoader.Validate(ConfigLoader.Read(folder.File("base.json"), ["run:name=\"null\""]), folder.File("base.json"), Catalogs.BuiltIn());
        Assert.Equal("null", named.Config.Run.Name);
    }

    [Fact]
    public void A_scalar_for_a_list_and_a_missing_weights_file_are_errors()
    {
        Assert.Equal(["stages:evaluate:teacherNfe: expected a list of integers, got the value '8'. Write it as a list: [8]."], Errors(Valid, "stages:evaluate:teacherNfe=8"));
        // A list of strings: the hint is valid JSON, quoted.
        Assert.Contains(Errors(Valid, "plugins:folders=/tmp/x"), e => e.EndsWith("Write it as a list: [\"/tmp/x\"].", StringComparison.Ordinal));
        // A value in double quotes is a JSON string (the quotes are not part of it); quotes inside are escaped as in a config file.
        Assert.Contains(Errors(Valid, "plugins:folders=\"/tmp/my plugins\""), e => e.EndsWith("Write it as a list: [\"/tmp/my plugins\"].", StringComparison.Ordinal));
        Assert.Contains(Errors(Valid, "plugins:folders=\"a\\\"b\""), e => e.EndsWith("Write it as a list: [\"a\\\"b\"].", StringComparison.Ordinal));
        Assert.Equal(["stages:teacher:loadFrom: weights file not found: /no/teacher.safetensors."], Errors(Valid, "stages:teacher:loadFrom=/no/teacher.safetensors"));
    }

    [Fact]
    public void A_repeated_nfe_a_second_evaluation_stage_and_a_stage_after_the_evaluation_are_errors()
    {
        Assert.Equal(["stages:evaluate:teacherNfe: NFE 4 is listed 2 times; list each NFE once."], Errors(Valid, "stages:evaluate:teacherNfe=[4, 1, 4]"));
        var two = Errors(Valid, "stages:again:kind=evaluation", "stages:again:teacherNfe=[2]");
        Assert.Single(two);
        Assert.StartsWith("stages: 2 enabled evaluation stages (", two[0]);
        Assert.Contains("they would write the same report.md and metrics.json", two[0]);
        Assert.Equal(["stages:evaluate:order: the evaluation stage must run last, but 'detail' comes after it (its students would not be evaluated)."],
            Errors(Valid, "stages:detail:order=2000"));
    }
}
