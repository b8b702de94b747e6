using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Losses;
using HierDistill.Host;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Training;
using HierDistill.Tests.Host.Pipeline;
using HierDistill.Tests.Support;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Host.Training;

/// <summary>The NaN/Inf guard: a non-finite loss or gradient skips the step and leaves everything as it was; K in a row stop the run.</summary>
public class NonFiniteStepTests
{
    private static (nn.Module Module, ModuleOptimizer Optimizer) Linear(int maxSkips = 3)
    {
        manual_seed(3);
        var module = nn.Linear(4, 2);
        return (module, new ModuleOptimizer("student", module, new OptimizerSettings(1e-2, GradClipNorm: 1.0), emaDecay: 0.9, maxConsecutiveSkips: maxSkips));
    }

    /// <summary>A validated config with the given <c>run</c> section and a single exact-teacher stage (the loop's settings only).</summary>
    private static LoadedConfig RunConfig(string run)
    {
        using var file = new ConfigFile($$"""
        {
          "run": {{run}},
          "data": { "type": "mixture2d" },
          "stages": { "teacher": { "kind": "teacher", "teacher": { "type": "gmm-exact" } } }
        }
        """);
        return ConfigLoader.Validate(ConfigLoader.Read(file.Path), file.Path, Catalogs.BuiltIn());
    }

    private static Dictionary<string, byte[]> Snapshot(ModuleOptimizer optimizer)
    {
        using var scope = NewDisposeScope();
        var state = new Dictionary<string, Tensor>();
        optimizer.SaveState(state);
        return state.ToDictionary(kv => kv.Key, kv => kv.Value.contiguous().bytes.ToArray());
    }

    private static LossBreakdown Loss(nn.Module module, double scale, double extra = 0)
    {
        var x = ones(8, 4);
        var main = ((nn.Module<Tensor, Tensor>)module).call(x).square().mean() * scale;
        return new LossBreakdown(main + extra, new Dictionary<string, Tensor> { ["dm"] = main, ["adv"] = tensor(extra) });
    }

    /// <summary>
    /// <paramref name="steps"/> iterations of stage <paramref name="stage"/> in which <paramref name="optimizer"/> steps every
    /// <paramref name="interval"/>-th iteration on <see cref="Loss"/> scaled by <paramref name="scale"/> of the step (NaN: a
    /// non-finite loss), with the context <c>stages:STAGE step N</c> and <paramref name="suffix"/>.
    /// </summary>
    private static void Stage(RunContext run, ModuleOptimizer optimizer, nn.Module module, string stage, int steps, Func<long, double> scale,
        int interval = 1, string suffix = "")
    {
        var state = new TrainingState();
        state.Optimizers.Add(optimizer);
        TrainingLoop.Run(run, stage, steps, progress =>
        {
            var log = new StepLog();
            if (progress.Step % interval == 0)
                log.Add("", optimizer.Step(Loss(module, scale(progress.Step)), progress.Step, $"stages:{stage} step {progress.Step}{suffix}"));
            return log;
        }, "loss", state);
    }

    [Fact]
    public void A_non_finite_loss_skips_the_step_and_leaves_parameters_optimizer_state_and_ema_unchanged()
    {
        var (module, optimizer) = Linear();
        using var _ = optimizer;
        for (int i = 0; i < 3; i++) Assert.True(optimizer.Step(Loss(module, 1), i, "test").WasApplied);
        var before = Snapshot(optimizer);

        using (NewDisposeScope())
        {
            var outcome = optimizer.Step(Loss(module, double.NaN), 3, "test");
            Assert.False(outcome.WasApplied);
            outcome = optimizer.Step(Loss(module, 1, double.PositiveInfinity), 4, "test");
            Assert.False(outcome.WasApplied);
        }
        var after = Snapshot(optimizer);
        foreach (var (name, bytes) in before)
        {
            if (name.StartsWith("counters/", StringComparison.Ordinal)) continue;
            Assert.True(bytes.AsSpan().SequenceEqual(after[name]), $"{name} changed on a skipped step");
        }
        Assert.Equal((3L, 2L), (optimizer.Updates, optimizer.Skipped));
        // A finite step afterwards is applied again and resets the consecutive count.
        Assert.True(optimizer.Step(Loss(module, 1), 5, "test").WasApplied);
    }

    [Fact]
    public void K_consecutive_skips_stop_with_the_context_and_the_non_finite_term()
    {
        var (module, optimizer) = Linear(maxSkips: 3);
        using var _ = optimizer;
        using var scope = NewDisposeScope();
        optimizer.Step(Loss(module, double.NaN), 0, "stages:detail step 0 (generator)");
        optimizer.Step(Loss(module, double.NaN), 1, "stages:detail step 1 (generator)");
        Assert.True(optimizer.Step(Loss(module, 1), 2, "stages:detail step 2 (generator)").WasApplied); // resets the count
        optimizer.Step(Loss(module, double.NaN), 3, "stages:detail step 3 (generator)");
        optimizer.Step(Loss(module, double.NaN), 4, "stages:detail step 4 (generator)");
        var e = Assert.Throws<NonFiniteLossException>(() => optimizer.Step(Loss(module, double.NaN), 5, "stages:detail step 5 (generator)"));
        Assert.StartsWith("stages:detail step 5 (generator): 3 consecutive steps of 'student' skipped", e.Message);
        Assert.Contains("loss term 'dm' = NaN", e.Message);
        Assert.EndsWith("parameters and optimiser state are those of the last finite step. Lower the learning rate, set or lower gradClip, or check the data.", e.Message);
    }

    [Fact]
    public void A_non_finite_loss_without_terms_after_finite_steps_names_the_component_whose_loss_it_is()
    {
        // A distiller whose Loss returns only a total (no terms), NaN from its 3rd step on (helper-46's onestep-vr plugin).
        var (module, optimizer) = Linear(maxSkips: 2);
        using var _ = optimizer;
        optimizer.TermOwner = _ => "'onestep-vr' (MyLab.OneStep)";
        using var scope = NewDisposeScope();
        LossBreakdown Total(double scale) => new(((nn.Module<Tensor, Tensor>)module).call(ones(8, 4)).square().mean() * scale);
        for (int i = 0; i < 2; i++) Assert.True(optimizer.Step(Total(1), i, $"stages:structure step {i}").WasApplied);
        optimizer.Step(Total(double.NaN), 2, "stages:structure step 2");
        var e = Assert.Throws<NonFiniteLossException>(() => optimizer.Step(Total(double.NaN), 3, "stages:structure step 3"));
        Assert.Equal("stages:structure step 3: 2 consecutive steps of 'student' skipped for a non-finite loss or gradient, the last at step 3 " +
                     "(loss = NaN, from 'onestep-vr' (MyLab.OneStep)); parameters and optimiser state are those of the last finite step. Lower the " +
                     "learning rate, set or lower gradClip, or check the data; or, if 'onestep-vr' (MyLab.OneStep)'s loss can be NaN for finite " +
                     "inputs (a division, log or square root of a value that can reach 0), mend it.", e.Message);
        // With terms, the non-finite term's owner is named the same way.
        var withTerms = Assert.Throws<NonFiniteLossException>(() => optimizer.Step(Loss(module, double.NaN), 4, "stages:structure step 4"));
        Assert.Contains("(loss term 'dm' = NaN, from 'onestep-vr' (MyLab.OneStep)); ", withTerms.Message);
    }

    [Fact]
    public void A_non_finite_total_beside_finite_adversarial_terms_names_the_matcher()
    {
        // Stage 2's generator: the matcher's bare total is NaN, the discriminator's adv/ term finite (helper-48's case).
        var (module, optimizer) = Linear(maxSkips: 1);
        using var _ = optimizer;
        optimizer.TermOwner = term => term.StartsWith("adv/", StringComparison.Ordinal) ? "'awd' (HierDistill.Plugins.Awd)" : "'my-dmd' (MyLab.Dmd)";
        using var scope = NewDisposeScope();
        var adv = ((nn.Module<Tensor, Tensor>)module).call(ones(8, 4)).square().mean();
        var e = Assert.Throws<NonFiniteLossException>(() =>
            optimizer.Step(new LossBreakdown(adv * double.NaN, new Dictionary<string, Tensor> { ["adv/loss"] = adv }), 0, "stages:detail step 0 (generator)"));
        Assert.Contains("(loss = NaN, from 'my-dmd' (MyLab.Dmd)); ", e.Message);
    }

    [Fact]
    public void A_loss_non_finite_from_the_first_step_points_to_the_component_not_the_learning_rate_and_the_progress_stops_at_that_step()
    {
        var loaded = RunConfig("""{ "name": "nan-from-start", "logEvery": 5, "checkpointEvery": 0, "maxSkippedSteps": 3 }""");
        using var folder = TestPaths.NewTempFolder();
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        var progress = new RecordingProgress();
        var context = TestRuns.Context(loaded, folder.Path, metrics);
        var run = new RunContext { Config = context.Config, Services = context.Services, Environment = context.Environment, Logger = context.Logger, Metrics = metrics, Progress = progress };
        var (module, optimizer) = Linear(loaded.Config.Run.MaxSkippedSteps);
        using var _ = optimizer;
        var e = Assert.Throws<NonFiniteLossException>(() => Stage(run, optimizer, module, "detail", 20, _ => double.NaN, suffix: " (discriminator)"));
        // The skip count is read every logEvery (5) of the optimiser's steps: at step 4.
        Assert.StartsWith("stages:detail step 4 (discriminator): 5 consecutive steps of 'student' skipped", e.Message);
        Assert.Contains("none of its steps has been finite, so its parameters are still the initial ones: the loss is non-finite from the start, " +
                        "which points to the weights it starts from (an earlier stage that diverged without a NaN), a component's output (a NaN in a " +
                        "plugin's forward pass or loss) or the data, not to this stage's learning rate.", e.Message);
        Assert.DoesNotContain("Lower the learning rate", e.Message);
        Assert.Equal((4L, IProgressTask.Stopped), (progress.Reports[^1].Done, progress.Reports[^1].Status)); // not the last logged step (1 done)
    }

    [Theory]
    [InlineData(12, 1, 10)] // the limit is reached in the stage's last steps, after the last logged step (10)
    [InlineData(14, 3, 3)]  // a module stepped every 3rd iteration (DMD's generator): 4 of its own steps, fewer than logEvery
    public void The_skip_limit_stops_a_stage_even_between_logged_steps(int steps, int interval, int nanFrom)
    {
        var loaded = RunConfig("""{ "name": "tail", "logEvery": 5, "checkpointEvery": 0, "maxSkippedSteps": 2 }""");
        using var folder = TestPaths.NewTempFolder();
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        var run = TestRuns.Context(loaded, folder.Path, metrics);
        var (module, optimizer) = Linear(loaded.Config.Run.MaxSkippedSteps);
        using var _ = optimizer;
        var e = Assert.Throws<NonFiniteLossException>(() =>
            Stage(run, optimizer, module, "detail", steps, step => step < nanFrom ? 1 : double.NaN, interval));
        Assert.Contains("consecutive steps of 'student' skipped for a non-finite loss or gradient", e.Message);
    }

    [Fact]
    public void A_module_none_of_whose_few_steps_was_finite_stops_the_stage_at_its_end_under_the_skip_limit()
    {
        // 6 iterations, the generator every 3rd: 2 steps of its own, both NaN, fewer than maxSkippedSteps (5). The stage used to
        // finish with the initial weights, reported as trained.
        var loaded = RunConfig("""{ "name": "short", "logEvery": 5, "checkpointEvery": 0, "maxSkippedSteps": 5 }""");
        using var folder = TestPaths.NewTempFolder();
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        var run = TestRuns.Context(loaded, folder.Path, metrics);
        var (module, optimizer) = Linear(loaded.Config.Run.MaxSkippedSteps);
        using var _ = optimizer;
        var e = Assert.Throws<NonFiniteLossException>(() => Stage(run, optimizer, module, "detail", 6, _ => double.NaN, interval: 3, suffix: " (generator)"));
        Assert.True(e.NeverFinite);
        Assert.StartsWith("stages:detail step 3 (generator): 2 consecutive steps of 'student' skipped", e.Message);
        Assert.Contains("none of its steps has been finite", e.Message);

        // A module with one finite step among them finishes (its skips are counted and logged, not fatal under the limit).
        var (module2, optimizer2) = Linear(loaded.Config.Run.MaxSkippedSteps);
        using var __ = optimizer2;
        Stage(run, optimizer2, module2, "detail2", 6, step => step == 0 ? 1 : double.NaN, interval: 3);
    }

    [Fact]
    public void A_stage_that_diverges_stops_naming_stage_step_term_and_the_last_good_checkpoint()
    {
        var loaded = RunConfig("""{ "name": "diverges", "logEvery": 1, "checkpointEvery": 2, "maxSkippedSteps": 3 }""");
        using var folder = TestPaths.NewTempFolder();
        using var metrics = new MetricsWriter(folder.Path, tensorboard: false);
        var checkpoints = new CheckpointStore(folder.Path, loaded.Config.Run.CheckpointEvery, "digest");
        var run = TestRuns.Context(loaded, folder.Path, metrics, checkpoints);
        var (module, optimizer) = Linear(loaded.Config.Run.MaxSkippedSteps);
        using var _ = optimizer;
        // Finite for steps 0-4 (checkpoints after steps 1 and 3), then the loss term 'dm' is NaN for good.
        var e = Assert.Throws<NonFiniteLossException>(() => Stage(run, optimizer, module, "structure", 20, step => step < 5 ? 1 : double.NaN));
        Assert.StartsWith("stages:structure step 7: 3 consecutive steps of 'student' skipped", e.Message);
        Assert.Contains("loss term 'dm' = NaN", e.Message);
        Assert.EndsWith($"the last checkpoint is {checkpoints.Path} (stage structure, step 4 of 20): continue from it with --resume after lowering " +
                        "the learning rate or setting gradClip (learning rates, gradClip and run.maxSkippedSteps may change on resume).", e.Message);
        Assert.Equal(5, optimizer.Updates);
        // Skips are counted in every logged line, so skips between logged steps show too.
        Assert.Equal([1.0, 2.0], metrics.History.Where(p => p.Name == "skipped_total").Select(p => p.Value));
    }
}
