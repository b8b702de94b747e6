using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Host.Pipeline;

/// <summary>
/// The host's checks of a teacher plugin against <see cref="ITeacher"/>'s contract, so that a teacher that breaks it is named
/// as the cause: a trial in the preflight (<see cref="Try"/>, <see cref="TryStudent"/>; the token features in the discriminator's
/// trial), and the checks of the calls the host makes itself during a run (the teacher stage's velocity, stage 2's token
/// features).
/// Those read shapes and dtypes only (no device reads, no synchronisation). The teacher is handed to the other components as
/// the plugin made it (a component may rely on its type).
/// </summary>
internal static class TeacherContract
{
    /// <summary>Checks that a velocity is <c>[B, ...S]</c> like <paramref name="z"/> and floating point.</summary>
    /// <returns><paramref name="velocity"/>.</returns>
    /// <exception cref="InvalidOperationException">Otherwise, naming the component and the contract.</exception>
    internal static Tensor CheckVelocity(string path, string component, Tensor velocity, Tensor z, string method = "Velocity")
    {
        if (velocity.shape.SequenceEqual(z.shape) && velocity.is_floating_point()) return velocity;
        throw new InvalidOperationException(
            $"{path}: {component} {method} returned a {velocity.dtype} tensor of shape {Shapes.Format(velocity)} for z of shape {Shapes.Format(z)}; the contract is " +
            $"a floating-point velocity of z's shape [B, ...S] ({(method.StartsWith("Average", StringComparison.Ordinal) ? "AverageVelocityNetwork.AverageVelocity" : "ITeacher.Velocity")}).");
    }

    /// <summary>
    /// Checks that token features are one floating-point <c>[B, N, C]</c> per block asked for, with <c>B</c> =
    /// <paramref name="samples"/> and the <c>N</c>, <c>C</c> the teacher's <see cref="ITeacher.FeatureBlocks"/> declare.
    /// </summary>
    /// <exception cref="InvalidOperationException">Otherwise, naming the component and the contract.</exception>
    internal static void CheckFeatures(string path, string component, IReadOnlyList<Tensor> features, IReadOnlyList<int> blocks,
        IReadOnlyList<TokenFeatureSpec> declared, long samples)
    {
        if (features.Count != blocks.Count)
            throw new InvalidOperationException(
                $"{path}: {component} TokenFeatures returned {features.Count} tensor(s) for the {blocks.Count} block(s) {string.Join(", ", blocks)}; the " +
                "contract is one [B, N, C] per block asked for, in the order asked (ITeacher.TokenFeatures).");
        for (int i = 0; i < blocks.Count; i++)
        {
            var f = features[i];
            var spec = declared.FirstOrDefault(s => s.Block == blocks[i]);
            bool fits = f.dim() == 3 && f.shape[0] == samples && f.is_floating_point() &&
                        (spec is null || (f.shape[1] == spec.Tokens && f.shape[2] == spec.Channels));
            if (fits) continue;
            string expected = spec is null ? $"[{samples}, N, C]" : $"[{samples}, {spec.Tokens}, {spec.Channels}]";
            throw new InvalidOperationException(
                $"{path}: {component} TokenFeatures returned a {f.dtype} tensor of shape {Shapes.Format(f)} for block {blocks[i]} and {samples} samples; the " +
                $"contract is a floating-point [B, N, C] = {expected}, the tokens and channels its FeatureBlocks declare (ITeacher.TokenFeatures).");
        }
    }

    /// <summary>
    /// Checks that token features computed from samples that require gradient carry it (<see cref="ITeacher.TokenFeatures"/> is
    /// differentiable in z; the generator's adversarial term flows through the features). Reads flags only.
    /// </summary>
    /// <exception cref="InvalidOperationException">For features without gradient, naming the component.</exception>
    internal static void CheckFeatureGradients(string path, string component, IReadOnlyList<Tensor> features, IReadOnlyList<int> blocks)
    {
        for (int i = 0; i < features.Count; i++)
            if (!features[i].requires_grad)
                throw new InvalidOperationException(
                    $"{path}: {component} TokenFeatures returned features of block {blocks[i]} without gradient with respect to z; the contract " +
                    "is features differentiable in z (ITeacher.TokenFeatures): the generator's adversarial term flows through them. Do not " +
                    "detach them or compute them under no_grad.");
    }

    /// <summary>
    /// Runs an untrained teacher (on the CPU, in the preflight) the way the stages will: its velocity in training mode (the
    /// teacher stage) on a trial batch of 3 random inputs; for a network teacher, that <see cref="ITeacher.Velocity"/>
    /// is its <see cref="ITeacher.Network"/>'s (what the host trains, saves and moves), that its parameters are finite
    /// float32, and that its trainable copy (DMD's fake score) is a separate network with the same tensor names that starts
    /// as the teacher. For a throwaway teacher only: its network's weights are perturbed, and it is left in evaluation mode.
    /// </summary>
    /// <exception cref="InvalidOperationException">When a check fails or the teacher throws, naming the component and the fix.</exception>
    internal static void Try(string path, string component, ITeacher teacher, DataSpec spec)
    {
        var network = teacher.Network;
        if (network is not null) CheckParameters(path, component, network, "its network (ITeacher.Network)");
        network?.train();
        using (var scope = NewDisposeScope())
        {
            var (z, t, labels) = TrialInputs(TrialBatch, spec);
            Tensor v;
            try
            {
                v = ComponentCalls.Run(path, component, $"in Velocity on a trial batch of {TrialBatch} random inputs", () => teacher.Velocity(z, t, labels));
            }
            catch (InvalidOperationException e) when (e.Message.Contains("index out of range", StringComparison.Ordinal) && spec.NumClasses > 0 &&
                                                      WorksWithoutNullLabel(teacher, z, t, spec))
            {
                // The same inputs with the null label replaced by class 0 pass: the null label is what is out of range.
                throw new InvalidOperationException(
                    $"{e.Message} The trial's labels were {spec.NumClasses} (the null label ∅ = NumClasses), {spec.NumClasses - 1} and 0, and " +
                    $"without ∅ it runs: labels run 0 .. {spec.NumClasses - 1} and ∅ = {spec.NumClasses} (classifier-free guidance), so a label " +
                    $"embedding needs NumClasses + 1 = {spec.NumClasses + 1} rows.", e);
            }
            CheckVelocity(path, component, v, z);
        }
        if (network is null) return;
        network.eval();
        // An untrained network with a zero-initialised output layer (adaLN-Zero; the mlp teacher's final layer) has velocity 0,
        // which any other network's 0 would match: the throwaway network's weights get noise before the comparisons.
        using (no_grad())
            foreach (var p in network.parameters()) p.add_(randn_like(p).mul_(0.05));
        var copy = ComponentCalls.Run(path, component, "in CreateTrainableCopy", teacher.CreateTrainableCopy);
        try
        {
            if (ReferenceEquals(copy, network))
                throw new InvalidOperationException(
                    $"{path}: {component} CreateTrainableCopy returned the teacher's own network; DMD's fake score trains the copy, which " +
                    "would change the frozen teacher (the real score): return a deep copy (VelocityNetwork.Clone).");
            CheckNotShared(path, component, copy, network, "CreateTrainableCopy returned a network that", "DMD's fake score trains it, which would change the frozen teacher (the real score)");
            CheckSameNames(path, component, copy, network);
            CheckParameters(path, component, copy, "its trainable copy (CreateTrainableCopy)");
            copy.eval();
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            // At least 64 output values (one image; 32 points of 2-D data), so that a random perturbation, such as a dropout
            // left on, cannot pass for determinism by chance.
            long elements = spec.SampleShape.Aggregate(1L, (p, d) => p * d);
            var (z, t, labels) = TrialInputs(Math.Max(1, (64 + elements - 1) / elements), spec);
            var own = CheckVelocity(path, component,
                ComponentCalls.Run(path, component, "in Network.Velocity in evaluation mode", () => network.Velocity(z, t, labels)), z, "Network.Velocity");
            if (Difference(network.Velocity(z, t, labels), own) is { } random)
                throw new InvalidOperationException(
                    $"{path}: {component} Network.Velocity gives different values for the same inputs in evaluation mode ({random}); the " +
                    "frozen teacher must be deterministic. A dropout left on is the usual cause: nn.functional.dropout defaults to " +
                    "training: true, so pass the module's training flag (or use an nn.Dropout module); no random draws in the forward pass.");
            // NetworkTeacher returns Network.Velocity by construction: one forward pass less for the built-in teachers.
            if (teacher is not NetworkTeacher && Difference(teacher.Velocity(z, t, labels), own) is { } gap)
                throw new InvalidOperationException(
                    $"{path}: {component} Velocity differs from its Network.Velocity on a trial batch ({gap}); the host trains, saves, loads and " +
                    "moves ITeacher.Network, and distils and evaluates through ITeacher.Velocity, so Velocity must return Network.Velocity " +
                    "(as NetworkTeacher does): keep every computation of the velocity inside the network.");
            var copied = CheckVelocity(path, component, ComponentCalls.Run(path, component, "in the trainable copy's Velocity", () => copy.Velocity(z, t, labels)), z,
                "CreateTrainableCopy().Velocity");
            if (Difference(copied, own) is { } differs)
                throw new InvalidOperationException(
                    $"{path}: {component} CreateTrainableCopy returned a network whose velocity differs from the teacher's on a trial batch " +
                    $"({differs}); the contract is a copy of the teacher's weights (DMD's fake score starts as the teacher).");
        }
        finally
        {
            if (!ReferenceEquals(copy, network)) copy.Dispose();
        }
    }

    /// <summary>
    /// Runs a student the way the stages will, on the CPU in the preflight: finite float32 parameters, none shared with the
    /// teacher's network (stage 1 would train the teacher), and <c>u(z, r, t)</c> of z's shape on a trial batch of 2.
    /// </summary>
    /// <param name="path">The config path that made the student (the teacher's, or a stage's <c>student</c>).</param>
    /// <param name="component">The component for messages.</param>
    /// <param name="student">The student.</param>
    /// <param name="teacher">The teacher whose network it must not share.</param>
    /// <param name="spec">The data.</param>
    /// <param name="maker">What made it, e.g. <c>CreateStudent</c>.</param>
    /// <exception cref="InvalidOperationException">When a check fails or the student throws, naming the component.</exception>
    internal static void TryStudent(string path, string component, AverageVelocityNetwork student, ITeacher teacher, DataSpec spec, string maker)
    {
        if (teacher.Network is { } network)
        {
            if (ReferenceEquals(student, network))
                throw new InvalidOperationException($"{path}: {component} {maker} returned the teacher's own network.");
            CheckNotShared(path, component, student, network, $"{maker} returned a student that", "stage 1 would train the teacher with it");
        }
        CheckParameters(path, component, student, $"its student ({maker})");
        using var scope = NewDisposeScope();
        var (z, t, labels) = TrialInputs(2, spec);
        var r = t * rand(2);
        var u = ComponentCalls.Run(path, component, "in the student's AverageVelocity on a trial batch of 2 random inputs",
            () => student.AverageVelocity(z, r, t, labels));
        CheckVelocity(path, component, u, z, "AverageVelocity");
        // The teacher's own student starts as the teacher: u(z, t, t) = v(z, t) exactly (VelocityNetwork.CreateStudent; method.md §1),
        // else stage 1 trains from other weights than the teacher's, silently. (The teacher's weights were perturbed by Try, so a
        // zero-initialised output layer cannot pass for a copy.)
        if (maker != "CreateStudent" || teacher.Network is not { } teacherNetwork) return;
        bool training = student.training;
        student.eval();
        try
        {
            using var _ = no_grad();
            var diagonal = student.AverageVelocity(z, t, t, labels);
            var v = teacherNetwork.Velocity(z, t, labels);
            // A velocity in bfloat16 or float16 agrees to its own rounding only.
            bool coarse = diagonal.dtype is ScalarType.BFloat16 or ScalarType.Float16 || v.dtype is ScalarType.BFloat16 or ScalarType.Float16;
            if (Difference(diagonal, v, coarse ? 1e-2 : 1e-5) is { } gap)
                throw new InvalidOperationException(
                    $"{path}: {component} CreateStudent returned a student whose u(z, t, t) differs from the teacher's v(z, t) on a trial batch " +
                    $"({gap}); the contract is a student that starts as the teacher (VelocityNetwork.CreateStudent: its weights copied, and " +
                    "the embedding of t - r added so that it is zero at r = t), or stage 1 trains from other weights than the teacher's.");
        }
        finally
        {
            student.train(training);
        }
    }

    /// <summary>Whether the teacher's velocity runs on <paramref name="z"/> and <paramref name="t"/> with class labels only (no ∅).</summary>
    private static bool WorksWithoutNullLabel(ITeacher teacher, Tensor z, Tensor t, DataSpec spec)
    {
        try
        {
            using var scope = NewDisposeScope();
            teacher.Velocity(z, t, arange(z.shape[0], dtype: ScalarType.Int64) % spec.NumClasses);
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return false;
        }
    }

    /// <summary>
    /// The trial batch size of the velocity: small, because a DiT-S/2 forward pass on a CPU core takes most of a second per
    /// image (the comparisons use one image, or enough 2-D points for 64 values), and odd, so that it differs from the sample
    /// dimension of 2-D points.
    /// </summary>
    private const long TrialBatch = 3;

    /// <summary>Random inputs of the data's shape: z ~ N(0, I), t ~ U(0.05, 0.95), labels ∅, K - 1, then 0, 1, ... (see the body).</summary>
    private static (Tensor Z, Tensor T, Tensor Labels) TrialInputs(long samples, DataSpec spec)
    {
        // ∅ = K first and the last class K - 1 second, so that even a batch of 1 or 2 reaches both ends of the label range (a
        // label embedding of K rows, without the null label, fails here), then 0, 1, ... cycling through the classes and ∅.
        long k = spec.NumClasses;
        var labels = Enumerable.Range(0, (int)samples).Select(i => i switch { 0 => k, 1 => Math.Max(0, k - 1), _ => (i - 2) % (k + 1) }).ToArray();
        return (randn([samples, .. spec.SampleShape]), rand(samples) * 0.9 + 0.05, tensor(labels));
    }

    /// <summary>Null when <paramref name="a"/> and <paramref name="b"/> agree to <paramref name="tolerance"/> (relative; float32 rounding by default), else the largest difference in
    /// words. Non-finite entries are left out (a network that overflows on the perturbed weights is not a contract fault).</summary>
    private static string? Difference(Tensor a, Tensor b, double tolerance = 1e-5)
    {
        // In float64: a velocity may be bfloat16 or float64 (the contract asks for floating point).
        a = a.to_type(ScalarType.Float64);
        b = b.to_type(ScalarType.Float64);
        var finite = isfinite(a).logical_and(isfinite(b));
        double gap = where(finite, a - b, 0).abs().max().item<double>(), scale = where(finite, b, 0).abs().max().item<double>();
        return gap <= tolerance * (1 + scale) ? null : $"largest difference {gap:g3}, largest |v| {scale:g3}";
    }

    /// <summary>Every parameter of <paramref name="module"/> is float32 and finite.</summary>
    private static void CheckParameters(string path, string component, nn.Module module, string what)
    {
        foreach (var (name, p) in module.named_parameters())
        {
            if (p.dtype != ScalarType.Float32)
                throw new InvalidOperationException(
                    $"{path}: {component}: {what} has parameter '{name}' of type {p.dtype}; HierDistill keeps float32 weights (run.precision = " +
                    "bfloat16 casts the matrix products, not the weights): create the parameters as float32.");
            using var finite = isfinite(p.detach());
            if (!finite.all().item<bool>())
                throw new InvalidOperationException(
                    $"{path}: {component}: {what} has parameter '{name}' holding NaN or infinite values right after it was built; initialise " +
                    "every parameter (some TorchSharp modules leave weights uninitialised: docs/writing-a-plugin.md, \"A teacher\").");
        }
    }

    /// <summary>No parameter object of <paramref name="module"/> is one of <paramref name="network"/>'s.</summary>
    private static void CheckNotShared(string path, string component, nn.Module module, nn.Module network, string subject, string consequence)
    {
        var teachers = network.named_parameters().ToDictionary(p => p.parameter.Handle, p => p.name);
        foreach (var (name, p) in module.named_parameters())
            if (teachers.TryGetValue(p.Handle, out var teacherName))
                throw new InvalidOperationException(
                    $"{path}: {component} {subject} shares the parameter '{name}' with the teacher's network ('{teacherName}'); {consequence}. " +
                    "Give it its own parameters holding copies of the teacher's weights.");
    }

    /// <summary>The trainable copy's tensor names and shapes are the teacher network's.</summary>
    private static void CheckSameNames(string path, string component, nn.Module copy, nn.Module network)
    {
        using var scope = NewDisposeScope();
        var own = network.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var copied = copy.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var missing = own.Keys.Except(copied.Keys).ToList();
        var extra = copied.Keys.Except(own.Keys).ToList();
        if (missing.Count > 0 || extra.Count > 0)
            throw new InvalidOperationException(
                $"{path}: {component} CreateTrainableCopy returned a network whose tensor names differ from the teacher network's " +
                $"({missing.Count} of the teacher's missing, e.g. '{missing.FirstOrDefault()}'; {extra.Count} new, e.g. '{extra.FirstOrDefault()}'). " +
                "Module and parameter names must not depend on the instance (no random or counted names): checkpoints and weights files " +
                "are keyed by them, and a network built again must read them.");
        var reshaped = own.FirstOrDefault(kv => !kv.Value.SequenceEqual(copied[kv.Key]));
        if (reshaped.Key is not null)
            throw new InvalidOperationException(
                $"{path}: {component} CreateTrainableCopy returned a network whose tensor '{reshaped.Key}' has shape {Shapes.Format(copied[reshaped.Key])} " +
                $"where the teacher's has {Shapes.Format(reshaped.Value)}; the contract is a copy of the teacher's architecture and weights.");
    }


}

/// <summary>Calls into a component's code whose exceptions are reported with the component's config path and name.</summary>
internal static class ComponentCalls
{
    /// <summary>
    /// Runs <paramref name="action"/>; an exception whose message does not already name a config path (<c>stages:…</c>,
    /// <c>data:…</c>, as the host's checks do) becomes <c>"{path}: {component} failed {what}: {message}"</c>, without
    /// libtorch's backtrace. Out-of-memory errors pass unchanged.
    /// </summary>
    /// <param name="path">The component's config path.</param>
    /// <param name="component">The component for messages, e.g. <c>'awd' (HierDistill.Plugins.Awd)</c>.</param>
    /// <param name="what">What it was asked, with its preposition: <c>in CreateStudent</c>, <c>on a trial batch of 4 random samples</c>.</param>
    /// <param name="action">The call.</param>
    internal static T Run<T>(string path, string component, string what, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is not OutOfMemoryException && !e.Message.StartsWith("stages:", StringComparison.Ordinal) &&
                                  !e.Message.StartsWith("data:", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"{path}: {component} failed {what}: {NativeErrors.WithoutBacktrace(e.Message)}", e);
        }
    }
}

/// <summary>Loss terms that must carry a gradient to what they train.</summary>
internal static class LossGradients
{
    /// <summary>
    /// Throws when <paramref name="loss"/> has no autograd graph (<c>requires_grad</c> false: made from detached tensors, under
    /// <c>no_grad</c>, or a constant), which would otherwise fail in backward with libtorch's "element 0 of tensors does not
    /// require grad", naming no one, or, beside another term that has a gradient, train nothing silently. A flag read: no device
    /// synchronisation.
    /// </summary>
    /// <param name="loss">The loss a component returned.</param>
    /// <param name="path">The component's config path.</param>
    /// <param name="component">The component for messages.</param>
    /// <param name="method">The method that returned it, e.g. <c>GeneratorLoss</c>.</param>
    /// <param name="from">What it must be computed from, e.g. <c>the generated samples x it is given</c>.</param>
    /// <exception cref="InvalidOperationException">When it has none.</exception>
    internal static void Require(LossBreakdown loss, string path, string component, string method, string from)
    {
        if (loss.Total.requires_grad) return;
        throw new InvalidOperationException(
            $"{path}: {component} {method} returned a loss with no gradient (requires_grad is false), so it trains nothing: compute it " +
            $"from {from}, without detach(), no_grad() or item(). To add nothing on purpose (an ablation), return a zero made from " +
            "its input, e.g. (x * 0).sum(), which keeps the graph.");
    }

    /// <summary>
    /// For a preflight trial: <see cref="Require"/>, then the backward pass of <paramref name="loss"/> (a failure names the
    /// component), then whether any of <paramref name="leaves"/> received a gradient (their gradients are cleared first).
    /// </summary>
    /// <param name="loss">The loss a component returned on the trial.</param>
    /// <param name="path">The component's config path.</param>
    /// <param name="component">The component for messages.</param>
    /// <param name="method">The method that returned it.</param>
    /// <param name="from">What it must be computed from (see <see cref="Require"/>).</param>
    /// <param name="trial">What the trial was, with its preposition: <c>on a trial batch of 2 random samples</c>.</param>
    /// <param name="leaves">The tensors the gradient must reach (the samples, the student's parameters).</param>
    /// <param name="unreached">The rest of the message when it reaches none, after "returned a loss whose gradient ".</param>
    /// <exception cref="InvalidOperationException">When the loss has no gradient, its backward pass fails, or it reaches none of the leaves.</exception>
    internal static void RequireReaches(LossBreakdown loss, string path, string component, string method, string from, string trial,
        IEnumerable<Tensor> leaves, string unreached)
    {
        Require(loss, path, component, method, from);
        var list = leaves.ToList();
        // Gradients an earlier trial left (stage 1's distiller on the network stage 2's regularizer is then tried on) are not this loss's.
        foreach (var l in list) l.grad = null;
        ComponentCalls.Run(path, component, $"in the backward pass of {method} {trial}", () =>
        {
            loss.Total.backward();
            return 0;
        });
        if (!list.Any(l => l.grad is not null))
            throw new InvalidOperationException($"{path}: {component} {method} returned a loss whose gradient {unreached}");
    }
}

/// <summary>Messages of libtorch errors without their C++ backtrace.</summary>
internal static class NativeErrors
{
    /// <summary>
    /// <paramref name="message"/> up to libtorch's "Exception raised from …" and without "frame #N: …" lines: the first lines
    /// say what went wrong; the backtrace of the C++ library helps no user of a message (the managed stack trace is in log.txt).
    /// </summary>
    internal static string WithoutBacktrace(string message)
    {
        int cut = message.IndexOf("Exception raised from ", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut];
        var lines = message.Split('\n').Where(l => !l.TrimStart().StartsWith("frame #", StringComparison.Ordinal));
        return string.Join('\n', lines).TrimEnd();
    }
}
