using TorchSharp;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using HierDistill.Host.Configuration;
using HierDistill.Host.Storage;
using HierDistill.Host.Training;
using static TorchSharp.torch;

namespace HierDistill.Host.Pipeline.Stages;

/// <summary>
/// Stage 2: the generator (the stage-1 student, or the teacher for the ablation) is fine-tuned with
/// the distribution matcher's loss plus an adversarial loss from a discriminator over the frozen
/// teacher's token features, with two-time-scale updates (DMD2, Yin et al. 2024b, §4.2): the
/// matcher's auxiliary models and the discriminator step every iteration, the generator every
/// <see cref="IDistributionMatcher.GeneratorUpdateInterval"/>-th.
/// </summary>
public sealed class DistributionStage(string key, DistributionStageConfig config, RunContext run) : IPipelineStage
{
    /// <inheritdoc/>
    public string Key => key;

    /// <inheritdoc/>
    /// <remarks>The generator is loaded from the run folder's <c>student-KEY.safetensors</c>.</remarks>
    public void Restore(PipelineState state, CompletedStage completed)
    {
        var teacher = state.RequireTeacher();
        var (generator, source, sourceResult) = CreateGenerator(state, teacher);
        generator.to(run.Environment.Device);
        string file = Path.Combine(run.OutputDirectory, RunFolder.StudentFileName(key));
        WeightsFile.Load(generator, file);
        generator.Freeze();
        run.Logger.Information("Stage {Stage}: generator restored from {Path} (the stage had finished)", key, file);
        state.Throughput.Add(new StageThroughput(key, config.Training.Steps, config.Training.BatchSize, completed.Seconds));
        state.Students.Add(new StudentResult(key, StageKinds.Distribution, generator, Describe(source), completed.Seconds)
        {
            DistillationSeconds = (sourceResult?.DistillationSeconds ?? 0) + completed.Seconds,
        });
    }

    private string Describe(string source) =>
        run.Config.Component($"stages:{key}:matcher").Descriptor.Name +
        (run.Has($"stages:{key}:discriminator") ? " + " + run.Config.Component($"stages:{key}:discriminator").Descriptor.Name : "") +
        $" from {source}";

    /// <inheritdoc/>
    public void Run(PipelineState state)
    {
        var teacher = state.RequireTeacher();
        var device = run.Environment.Device;
        var (generator, source, sourceResult) = CreateGenerator(state, teacher);
        generator.to(device);
        generator.Freeze(false);

        var matcher = run.Create<IDistributionMatcher>($"stages:{key}:matcher", state.Data, teacher);
        var discriminator = run.Has($"stages:{key}:discriminator")
            ? run.Create<IDiscriminator>($"stages:{key}:discriminator", state.Data, teacher)
            : null;
        var regularizer = run.Has($"stages:{key}:regularizer") && config.RegularizerWeight > 0
            ? run.Create<ITrajectoryDistiller>($"stages:{key}:regularizer", state.Data, teacher)
            : null;
        using var ownedRegularizer = regularizer as IDisposable;
        if (discriminator is not null) CheckFeatures(key, run.Components, teacher, discriminator);
        CheckModuleNames(key, run.Components, matcher, discriminator);
        string matcherPath = $"stages:{key}:matcher", matcherName = run.Components.Describe(matcherPath);
        string regularizerPath = $"stages:{key}:regularizer", regularizerName = regularizer is null ? "" : run.Components.Describe(regularizerPath);
        string discriminatorPath = $"stages:{key}:discriminator";
        string discriminatorName = discriminator is null ? "" : run.Components.Describe(discriminatorPath);
        string teacherPath = run.Config.TeacherPath;
        var teacherName = (teacherPath, run.Components.Describe(teacherPath));

        var training = config.Training;
        int maxSkipped = run.Config.Config.Run.MaxSkippedSteps;
        using var generatorOptimizer = new ModuleOptimizer("generator", generator, training.ToOptimizer(), training.EmaDecay,
            LearningRateSchedules.Warmup(training.WarmupSteps), maxSkipped);
        generatorOptimizer.TermOwner = term =>
            term.StartsWith("adv/", StringComparison.Ordinal) ? discriminatorName
            : term.StartsWith("reg/", StringComparison.Ordinal) ? regularizerName
            : matcherName;
        var auxiliary = matcher.AuxiliaryModules.Select(m =>
        {
            m.Module.to(device);
            m.Module.train();
            return new ModuleOptimizer(m.Name, m.Module, m.Optimizer, maxConsecutiveSkips: maxSkipped) { TermOwner = _ => matcherName };
        }).ToList();
        ModuleOptimizer? discriminatorOptimizer = null;
        if (discriminator is not null)
        {
            discriminator.Heads.Module.to(device);
            discriminator.Heads.Module.train();
            discriminatorOptimizer = new ModuleOptimizer(discriminator.Heads.Name, discriminator.Heads.Module, discriminator.Heads.Optimizer,
                maxConsecutiveSkips: maxSkipped) { TermOwner = _ => discriminatorName };
        }
        regularizer?.Begin(generator, teacher);
        var trained = new TrainingState().With("matcher", matcher).With("discriminator", discriminator).With("regularizer", regularizer);
        trained.Optimizers.Add(generatorOptimizer);
        trained.Optimizers.AddRange(auxiliary);
        if (discriminatorOptimizer is not null) trained.Optimizers.Add(discriminatorOptimizer);

        int interval = matcher.GeneratorUpdateInterval;
        if (interval < 1) throw new InvalidOperationException($"stages:{key}:matcher: the generator update interval must be ≥ 1, got {interval}.");
        string description = Describe(source);
        run.Logger.Information("Stage {Stage}: {Description}, generator of {Parameters:N0} parameters, {Steps} iterations, generator every {Interval}",
            key, description, generator.ParameterCount(), training.Steps, interval);
        foreach (var m in matcher.AuxiliaryModules)
            run.Logger.Information("Stage {Stage}: the matcher's {Module} of {Parameters:N0} parameters", key, m.Name, m.Module.ParameterCount());
        if (discriminator is not null)
            run.Logger.Information("Stage {Stage}: discriminator {Discriminator}: heads of {Parameters:N0} parameters on teacher blocks {Blocks}",
                key, discriminatorName, discriminator.Heads.Module.ParameterCount(), string.Join(", ", discriminator.FeatureBlocks));

        try
        {
            double seconds = TrainingLoop.Run(run, key, training.Steps, progress =>
            {
                var log = new StepLog();
                var batch = state.Data.SampleTrain(training.BatchSize, device);
                var labels = batch.Labels;
                var noise = randn_like(batch.X);
                Tensor fake;
                if (progress.Step % interval == 0)
                {
                    var x = Generate(generator, noise, labels, differentiable: true);
                    var loss = matcher.GeneratorLoss(x, labels, progress);
                    LossGradients.Require(loss, matcherPath, matcherName, "GeneratorLoss", "the generated samples x it is given");
                    if (discriminator is not null && config.AdversarialWeight > 0)
                    {
                        var output = Discriminate(discriminatorPath, discriminatorName, teacher, teacherName, discriminator, x, labels, device,
                            featureGradients: true);
                        var adversarial = discriminator.GeneratorLoss(output.Logits);
                        LossGradients.Require(adversarial, discriminatorPath, discriminatorName, "GeneratorLoss", "the logits it is given");
                        loss = loss.Plus(adversarial, config.AdversarialWeight, "adv");
                    }
                    if (regularizer is not null)
                    {
                        var regularization = regularizer.Loss(generator, teacher, batch, progress);
                        LossGradients.Require(regularization, regularizerPath, regularizerName, "Loss", "the student it is given");
                        loss = loss.Plus(regularization, config.RegularizerWeight, "reg");
                    }
                    log.Add("generator", loss);
                    log.Add("generator", generatorOptimizer.Step(loss, progress.Step, $"stages:{key} step {progress.Step} (generator)"));
                    fake = x.detach();
                }
                else
                {
                    fake = Generate(generator, noise, labels, differentiable: false);
                }

                if (auxiliary.Count > 0)
                {
                    var aux = matcher.AuxiliaryLoss(fake, labels, progress);
                    LossGradients.Require(aux, matcherPath, matcherName, "AuxiliaryLoss", "its auxiliary modules (e.g. the fake score)");
                    ModuleOptimizer.Backward(aux, auxiliary);
                    log.Add("auxiliary", aux);
                    foreach (var o in auxiliary) log.Add(o.Name, o.Apply(aux, progress.Step, $"stages:{key} step {progress.Step} ({o.Name})"));
                }

                if (discriminator is not null && discriminatorOptimizer is not null)
                {
                    // Real and generated samples in one batch: one forward, one power iteration of the heads' spectral norms (the
                    // generator's step above ran one more, as a training-mode spectral_norm module in PyTorch does on every forward).
                    var both = cat([batch.X, fake]);
                    var bothLabels = cat([labels, labels]);
                    var output = Discriminate(discriminatorPath, discriminatorName, teacher, teacherName, discriminator, both, bothLabels, device,
                        featureGradients: false);
                    long b = batch.Size;
                    var dLoss = discriminator.DiscriminatorLoss(output.Logits.narrow(0, 0, b), output.Logits.narrow(0, b, b));
                    LossGradients.Require(dLoss, discriminatorPath, discriminatorName, "DiscriminatorLoss", "the logits it is given");
                    log.Add("discriminator", new LossBreakdown(dLoss.Total, dLoss.Terms, dLoss.Diagnostics.Concat(output.Diagnostics).ToDictionary()));
                    log.Add("discriminator", discriminatorOptimizer.Step(dLoss, progress.Step, $"stages:{key} step {progress.Step} (discriminator)"));
                }
                return log;
            }, "generator/loss", trained);
            var throughput = new StageThroughput(key, training.Steps, training.BatchSize, seconds, run.DeviceMemory?.PeakMiB);
            state.Throughput.Add(throughput);
            run.Logger.Information("Stage {Stage}: {Throughput}", key, throughput.ToString());

            generatorOptimizer.Ema?.CopyTo(generator);
            generator.Freeze();
            WeightsFile.Save(generator, Path.Combine(run.OutputDirectory, RunFolder.StudentFileName(key)));
            state.Students.Add(new StudentResult(key, StageKinds.Distribution, generator, description, seconds)
            {
                DistillationSeconds = (sourceResult?.DistillationSeconds ?? 0) + seconds,
            });
        }
        finally
        {
            foreach (var o in auxiliary) o.Dispose();
            discriminatorOptimizer?.Dispose();
            foreach (var m in matcher.AuxiliaryModules) m.Module.Dispose();
            discriminator?.Heads.Module.Dispose();
        }
    }

    private Tensor Generate(AverageVelocityNetwork generator, Tensor noise, Tensor labels, bool differentiable) =>
        Samplers.AverageVelocity(generator.AverageVelocity, config.GeneratorNfe, differentiable).Sample(noise, labels);

    /// <summary><c>x_s = (1 - s) x + s n</c> with fresh noise n (method.md §3, adversarial term).</summary>
    private static Tensor Noised(Tensor x, Tensor s) => FlowConventions.Interpolate(x, randn_like(x), s);

    private (AverageVelocityNetwork Generator, string Source, StudentResult? SourceResult) CreateGenerator(PipelineState state, ITeacher teacher)
    {
        string g = config.Generator;
        if (g.Equals("teacher", StringComparison.OrdinalIgnoreCase)) return (teacher.CreateStudent(), "teacher", null);
        var source = g.Equals("previous", StringComparison.OrdinalIgnoreCase)
            ? state.Students.LastOrDefault()
            : state.Students.LastOrDefault(s => s.StageKey.Equals(g, StringComparison.OrdinalIgnoreCase));
        if (source is null)
            throw new InvalidOperationException($"stages:{key}:generator: no student '{g}' was produced before this stage.");
        return (source.Model.Clone(), source.StageKey, source);
    }

    /// <summary>
    /// Checks that the modules stage <paramref name="key"/> trains have distinct names (they key the checkpoint's state and
    /// the optimisers' messages): the generator's, the matcher's auxiliary modules' and the discriminator's heads'.
    /// </summary>
    /// <exception cref="InvalidOperationException">When two share a name, naming both owners.</exception>
    internal static void CheckModuleNames(string key, ComponentFactory components, IDistributionMatcher matcher, IDiscriminator? discriminator)
    {
        var owners = new List<(string Name, string Owner)> { ("generator", "the host's generator") };
        string matcherName = components.Describe($"stages:{key}:matcher");
        owners.AddRange(matcher.AuxiliaryModules.Select(m => (m.Name, $"the matcher {matcherName}")));
        if (discriminator is not null) owners.Add((discriminator.Heads.Name, $"the discriminator {components.Describe($"stages:{key}:discriminator")}"));
        var clash = owners.GroupBy(o => o.Name).FirstOrDefault(g => g.Count() > 1);
        if (clash is null) return;
        var who = clash.ToList();
        throw new InvalidOperationException(
            $"stages:{key}: {who[0].Owner} and {who[1].Owner} both train a module named '{clash.Key}'; the names of a stage's trained modules " +
            $"key its checkpoint and must differ ('generator' is the host's): give {who[^1].Owner} another TrainableModule.Name.");
    }

    /// <summary>
    /// The discriminator's output for samples <paramref name="x"/> <c>[B, ...]</c>: noise levels from its
    /// <see cref="IDiscriminator.SampleTimes"/>, <paramref name="x"/> noised to them, the teacher's token features of its blocks
    /// (differentiable in <paramref name="x"/> only with <paramref name="featureGradients"/>), then <see cref="IDiscriminator.Forward"/>;
    /// with the shape checks of <see cref="CheckTimes"/> and <see cref="CheckLogits"/>.
    /// </summary>
    private static DiscriminatorOutput Discriminate(string path, string component, ITeacher teacher, (string Path, string Component) teacherName,
        IDiscriminator discriminator, Tensor x, Tensor labels, Device device, bool featureGradients)
    {
        long samples = x.shape[0];
        var s = CheckTimes(path, component, discriminator.SampleTimes(samples, device), samples);
        // A failure here is the teacher's, not the discriminator's (which only chose the blocks).
        var features = ComponentCalls.Run(teacherName.Path, teacherName.Component, $"in TokenFeatures for blocks {string.Join(", ", discriminator.FeatureBlocks)}",
            () =>
            {
                using (featureGradients ? null : no_grad())
                    return teacher.TokenFeatures(Noised(x, s), s, labels, discriminator.FeatureBlocks);
            });
        TeacherContract.CheckFeatures(teacherName.Path, teacherName.Component, features, discriminator.FeatureBlocks, teacher.FeatureBlocks, samples);
        if (featureGradients && x.requires_grad)
            TeacherContract.CheckFeatureGradients(teacherName.Path, teacherName.Component, features, discriminator.FeatureBlocks);
        var output = discriminator.Forward(features, labels);
        CheckLogits(path, component, output.Logits, samples);
        return output;
    }

    /// <summary>Checks that a discriminator's <see cref="IDiscriminator.SampleTimes"/> returned <c>[B]</c> for <paramref name="samples"/> samples (shape only: no device read).</summary>
    /// <returns><paramref name="times"/>.</returns>
    /// <exception cref="InvalidOperationException">Otherwise, naming the component and the contract.</exception>
    private static Tensor CheckTimes(string path, string component, Tensor times, long samples)
    {
        if (times.dim() == 1 && times.shape[0] == samples && times.is_floating_point()) return times;
        throw new InvalidOperationException(
            $"{path}: {component} SampleTimes({samples}) returned a {times.dtype} tensor of shape [{string.Join(", ", times.shape)}]; the contract is " +
            $"one noise level s_D in [0, 1] per sample, a floating-point [{samples}] (IDiscriminator.SampleTimes).");
    }

    /// <summary>
    /// Checks that a discriminator's logits are <c>[B, H]</c> for <paramref name="samples"/> samples, or <c>[B]</c> (one head)
    /// (shape only: no device read).
    /// </summary>
    /// <exception cref="InvalidOperationException">Otherwise, naming the component and the contract.</exception>
    private static void CheckLogits(string path, string component, Tensor logits, long samples)
    {
        if (logits.dim() is 1 or 2 && logits.shape[0] == samples && (logits.dim() == 1 || logits.shape[1] >= 1)) return;
        throw new InvalidOperationException(
            $"{path}: {component} Forward returned logits of shape [{string.Join(", ", logits.shape)}] for {samples} samples; the contract is " +
            $"[B, H] = [{samples}, H], one row per sample and one column per head, or [{samples}] for one head (IDiscriminator.Forward, " +
            "DiscriminatorOutput.Logits).");
    }

    /// <summary>
    /// Runs a discriminator as stage 2 does, on two trial batches of random samples of <paramref name="spec"/>'s shape (4 and 6:
    /// real and generated halves, label 0; two sizes, so that logits <c>[H, B]</c> cannot pass for <c>[B, H]</c> when H is
    /// one of them) noised to its own times, through <paramref name="teacher"/>'s token features: its times, logits and both
    /// losses, with the checks of <see cref="CheckTimes"/> and <see cref="CheckLogits"/>, and the teacher's features checked
    /// first (shapes, gradient to the samples; a fault there names the teacher). For the preflight (on the CPU, an untrained
    /// teacher), so that a discriminator or teacher that breaks its contract fails before anything trains.
    /// </summary>
    /// <exception cref="InvalidOperationException">When a check fails or the discriminator throws, naming the component.</exception>
    /// <remarks><c>options</c>: the discriminator's validated options, where a bad optimiser setting's config key is looked for.</remarks>
    internal static void TryDiscriminator(string path, string component, ITeacher teacher, (string Path, string Component) teacherName,
        IDiscriminator discriminator, DataSpec spec, object? options = null)
    {
        CheckOptimizer(path, component, discriminator.Heads, options);
        foreach (long half in new long[] { 2, 3 })
        {
            using var scope = NewDisposeScope();
            // The noise levels' values (a device read the stages skip; here on the CPU it costs nothing).
            using (var times = ComponentCalls.Run(path, component, $"in SampleTimes({2 * half})", () => discriminator.SampleTimes(2 * half, CPU)))
            {
                CheckTimes(path, component, times, 2 * half);
                // In float64: the contract allows any floating-point type (bfloat16 included).
                using var levels = times.to_type(ScalarType.Float64);
                if (levels.numel() > 0 && (!isfinite(levels).all().item<bool>() || levels.min().item<double>() < 0 || levels.max().item<double>() > 1))
                    throw new InvalidOperationException(
                        $"{path}: {component} SampleTimes({2 * half}) returned noise levels from {levels.min().item<double>():g3} to {levels.max().item<double>():g3}; " +
                        "the contract is s_D in [0, 1] (0: data, 1: noise; IDiscriminator.SampleTimes), as the teacher's time is.");
            }
            var x = randn([2 * half, .. spec.SampleShape]).requires_grad_(true); // as generated samples are: the features must carry it
            var labels = zeros(2 * half, dtype: ScalarType.Int64);
            ComponentCalls.Run(path, component, $"on a trial batch of {2 * half} random samples", () =>
            {
                var output = Discriminate(path, component, teacher, teacherName, discriminator, x, labels, CPU, featureGradients: true);
                var dLoss = discriminator.DiscriminatorLoss(output.Logits.narrow(0, 0, half), output.Logits.narrow(0, half, half));
                LossGradients.Require(dLoss, path, component, "DiscriminatorLoss", "the logits it is given");
                var gLoss = discriminator.GeneratorLoss(output.Logits.narrow(0, half, half));
                LossGradients.Require(gLoss, path, component, "GeneratorLoss", "the logits it is given");
                return gLoss;
            });
        }
        CheckFeatureOrder(teacher, teacherName, discriminator.FeatureBlocks, spec);
    }

    /// <summary>
    /// A teacher returns the features of the blocks asked for in the order asked (<see cref="ITeacher.TokenFeatures"/>): asked for
    /// them reversed, it must return the same tensors reversed. Blocks of one shape (every DiT block) would otherwise reach the
    /// discriminator's heads swapped, silently. Only with two or more distinct blocks, on the frozen preflight teacher, and when
    /// two calls in the same order agree (features random on purpose cannot be compared).
    /// </summary>
    /// <exception cref="InvalidOperationException">Naming the teacher.</exception>
    private static void CheckFeatureOrder(ITeacher teacher, (string Path, string Component) teacherName, IReadOnlyList<int> blocks, DataSpec spec)
    {
        if (blocks.Distinct().Count() < 2) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var z = randn([2, .. spec.SampleShape]);
        var s = full([2], 0.5f);
        var labels = zeros(2, dtype: ScalarType.Int64);
        var reversed = blocks.Reverse().ToList();
        // A teacher whose features differ between two calls in the same order (noise on purpose) is not checked.
        IReadOnlyList<Tensor> Features(IReadOnlyList<int> order) =>
            ComponentCalls.Run(teacherName.Path, teacherName.Component, $"in TokenFeatures for blocks {string.Join(", ", order)}",
                () => teacher.TokenFeatures(z, s, labels, order));
        static bool Same(Tensor a, Tensor b) =>
            a.shape.SequenceEqual(b.shape) && allclose(a.to_type(ScalarType.Float64), b.to_type(ScalarType.Float64), rtol: 1e-5, atol: 1e-6);
        var asked = Features(blocks);
        var again = Features(blocks);
        if (Enumerable.Range(0, blocks.Count).Any(i => !Same(asked[i], again[i]))) return;
        var back = Features(reversed);
        for (int i = 0; i < blocks.Count; i++)
        {
            if (!Same(asked[i], back[blocks.Count - 1 - i]))
                throw new InvalidOperationException(
                    $"{teacherName.Path}: {teacherName.Component} TokenFeatures does not return the blocks in the order asked: asked for blocks " +
                    $"{string.Join(", ", blocks)} and then {string.Join(", ", reversed)}, block {blocks[i]}'s features differ between the two " +
                    "calls. The contract is one tensor per block asked for, in the order of the list (ITeacher.TokenFeatures): the " +
                    "discriminator's heads read them by position.");
        }
    }

    /// <summary>
    /// Runs <paramref name="matcher"/> once on a trial batch of 2 random samples that require gradient, as generated samples
    /// do: <c>GeneratorLoss</c> must carry a gradient back to them (its value may be 0: an untrained teacher and its copy agree),
    /// <c>AuxiliaryLoss</c> on the detached samples a gradient to its auxiliary modules. For the preflight (on the CPU, an
    /// untrained teacher), so that a matcher whose generator loss trains nothing fails before the teacher trains, not at the
    /// first generator step of stage 2.
    /// </summary>
    /// <exception cref="InvalidOperationException">When a check fails or the matcher throws, naming the component.</exception>
    /// <remarks><c>options</c>: the matcher's validated options, where a bad optimiser setting's config key is looked for.</remarks>
    internal static void TryMatcher(string path, string component, IDistributionMatcher matcher, DataSpec spec, long steps, object? options = null)
    {
        using var scope = NewDisposeScope();
        var x = randn(spec.BatchShape(2)).requires_grad_(true);
        var labels = tensor(new long[] { 0, Math.Max(0, spec.NumClasses - 1) });
        var progress = new TrainingProgress(0, Math.Max(1, steps));
        const string trial = "on a trial batch of 2 random samples";
        var loss = ComponentCalls.Run(path, component, $"in GeneratorLoss {trial}", () => matcher.GeneratorLoss(x, labels, progress));
        LossGradients.RequireReaches(loss, path, component, "GeneratorLoss", "the generated samples x it is given", trial, [x],
            "does not reach the generated samples x it is given (it is computed from other tensors, or from x.detach()), so it cannot " +
            "train the generator. To add nothing on purpose (an adversarial-only ablation), return a zero made from x, e.g. (x * 0).sum().");
        foreach (var m in matcher.AuxiliaryModules) CheckOptimizer(path, component, m, options);
        if (matcher.AuxiliaryModules.Count == 0) return;
        var aux = ComponentCalls.Run(path, component, $"in AuxiliaryLoss {trial}", () => matcher.AuxiliaryLoss(x.detach(), labels, progress));
        LossGradients.Require(aux, path, component, "AuxiliaryLoss", "its auxiliary modules (e.g. the fake score)");
    }

    /// <summary>
    /// Checks a component's optimiser settings against <see cref="OptimizerSettings"/>' contract (learning rate &gt; 0, betas in
    /// [0, 1), weight decay ≥ 0, a clip &gt; 0): a negative learning rate ascends the loss, silently.
    /// </summary>
    /// <remarks><c>options</c>: the component's validated options; where one of its <see cref="AdamOptions"/> holds the bad value, the
    /// message names that config key (a config mistake) instead of asking the plugin's author for a range.</remarks>
    /// <exception cref="InvalidOperationException">Naming the component, the module and the setting.</exception>
    internal static void CheckOptimizer(string path, string component, TrainableModule module, object? options = null)
    {
        var o = module.Optimizer;
        var (problem, property, value) =
            !(o.LearningRate > 0) || double.IsInfinity(o.LearningRate) ? ($"learning rate {o.LearningRate} (must be > 0 and finite)", nameof(AdamOptions.LearningRate), o.LearningRate)
            : !(o.Beta1 >= 0 && o.Beta1 < 1) ? ($"beta1 {o.Beta1} (must be in [0, 1))", nameof(AdamOptions.Beta1), o.Beta1)
            : !(o.Beta2 >= 0 && o.Beta2 < 1) ? ($"beta2 {o.Beta2} (must be in [0, 1))", nameof(AdamOptions.Beta2), o.Beta2)
            : !(o.WeightDecay >= 0) || double.IsInfinity(o.WeightDecay) ? ($"weight decay {o.WeightDecay} (must be >= 0 and finite)", nameof(AdamOptions.WeightDecay), o.WeightDecay)
            : o.GradClipNorm is { } clip && !(clip > 0) ? ($"gradient clip {clip} (must be > 0, or null for none)", nameof(AdamOptions.GradClip), clip)
            : ((string?)null, "", 0.0);
        if (problem is null) return;
        if (options is not null && AdamKey(options, property, value) is { } key)
            throw new InvalidOperationException(
                $"{path}: {component} trains '{module.Name}' with {problem}, set by {path}:options:{key}; give it a value in that range.");
        throw new InvalidOperationException(
            $"{path}: {component} trains '{module.Name}' with {problem} (OptimizerSettings); give the option that sets it a range " +
            "([Range] on the options property) so that a config cannot set it so.");
    }

    /// <summary>
    /// The config key (<c>optimizer:learningRate</c>) of the <see cref="AdamOptions"/> property <paramref name="property"/> in
    /// <paramref name="options"/> (its properties, one level down) that holds <paramref name="value"/>; null when none or more
    /// than one does (the value may come from elsewhere).
    /// </summary>
    private static string? AdamKey(object options, string property, double value)
    {
        static string Camel(string name) => char.ToLowerInvariant(name[0]) + name[1..];
        var keys = new List<string>();
        foreach (var p in options.GetType().GetProperties().Where(p => p.GetIndexParameters().Length == 0 && typeof(AdamOptions).IsAssignableFrom(p.PropertyType)))
        {
            if (p.GetValue(options) is not AdamOptions adam) continue;
            object? held = typeof(AdamOptions).GetProperty(property)?.GetValue(adam);
            if (held is double d && (d == value || (double.IsNaN(d) && double.IsNaN(value)))) keys.Add($"{Camel(p.Name)}:{Camel(property)}");
        }
        return keys.Count == 1 ? keys[0] : null;
    }

    /// <summary>Checks that the teacher exposes token features and every block the discriminator of stage <paramref name="key"/> reads.</summary>
    /// <exception cref="InvalidOperationException">When it does not.</exception>
    internal static void CheckFeatures(string key, ComponentFactory components, ITeacher teacher, IDiscriminator discriminator)
    {
        var available = teacher.FeatureBlocks.Select(b => b.Block).ToHashSet();
        if (available.Count == 0)
            throw new InvalidOperationException(
                $"stages:{key}:discriminator: the teacher exposes no token features, so a discriminator cannot read it; " +
                "use a network teacher (e.g. mlp) or remove the discriminator.");
        var missing = discriminator.FeatureBlocks.Where(b => !available.Contains(b)).ToList();
        if (missing.Count > 0)
            throw new InvalidOperationException(
                $"stages:{key}:discriminator: {components.Describe($"stages:{key}:discriminator")} reads " +
                (missing.Count == 1 ? $"block {missing[0]}, which is not a teacher feature block" : $"blocks {string.Join(", ", missing)}, which are not teacher feature blocks") +
                $"; available: {string.Join(", ", available.Order())}.");
    }
}
