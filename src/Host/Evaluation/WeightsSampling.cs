using System.Globalization;
using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline;
using HierDistill.Host.Pipeline.Stages;
using HierDistill.Host.Reporting;
using HierDistill.Host.Runtime;
using HierDistill.Host.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>What <c>hierdistill sample</c> was asked for.</summary>
/// <param name="Weights">A run's <c>teacher.safetensors</c> or <c>student-&lt;stage&gt;.safetensors</c>.</param>
/// <param name="Out">Output file: <c>.png</c> or <c>.safetensors</c>.</param>
/// <param name="Count">Number of samples, ≥ 1.</param>
/// <param name="Nfe">Network evaluations per sample; null: 1 for a student, the evaluation stage's largest teacher NFE for the teacher.</param>
/// <param name="Labels">Comma-separated labels to cycle through; null: every class in turn.</param>
/// <param name="Guidance">CFG scale for teacher weights; null: the evaluation stage's <c>teacherGuidanceScale</c> (1 without one).</param>
/// <param name="Seed">Seed of the noise (drawn on the CPU, so the same on every device).</param>
/// <param name="Batch">Samples per forward pass; null: the evaluation stage's <c>batchSize</c> (256 without one).</param>
public sealed record SampleRequest(string Weights, string Out, int Count, int? Nfe, string? Labels, double? Guidance, long Seed, int? Batch);

/// <summary>What <c>hierdistill sample</c> did.</summary>
/// <param name="Model">"teacher", "student" (the teacher's own student architecture) or "student (architecture of stages:KEY:student)".</param>
/// <param name="Sampler">The sampler's name (<c>mean-1</c>, <c>euler-16</c>, …).</param>
/// <param name="Nfe">Network evaluations per sample.</param>
/// <param name="Guidance">The CFG scale used (null for a student, sampled unguided, and for unconditional samples, every label ∅, on which guidance has no effect).</param>
/// <param name="SecondsPerSample">Wall time of the sampling per sample, after a warm-up pass (as report.md's <c>ms/sample</c>).</param>
public sealed record SampleOutcome(string Model, string Sampler, int Nfe, double? Guidance, double SecondsPerSample);

/// <summary>A command-line request that cannot be met (exit 2), e.g. a label outside the data's classes.</summary>
public sealed class SampleRequestException(string message) : Exception(message);

/// <summary>
/// Samples from a run's weights: builds the config's teacher and each trajectory stage's student architecture, loads the
/// weights into the one whose names and shapes they fit (a student file fits the student: it has the <c>t - r</c>
/// embedder the teacher lacks), then samples: a student with the average-velocity sampler (method.md §1,
/// <c>x = e - u_θ(e, 0, 1)</c> in one step; no CFG, §2), the teacher with its ODE solver and classifier-free guidance
/// <c>v_w = v(∅) + w (v(c) - v(∅))</c>.
/// </summary>
public static class WeightsSampling
{
    /// <summary>Samples and writes <see cref="SampleRequest.Out"/>.</summary>
    /// <param name="loaded">The run's config (its data, teacher and student architectures, precision and evaluation defaults).</param>
    /// <param name="services">Services handed to the components.</param>
    /// <param name="device">The device to sample on.</param>
    /// <param name="request">The request.</param>
    /// <param name="cancellation">Ctrl-C: checked between batches; nothing is written then.</param>
    /// <exception cref="OperationCanceledException">When <paramref name="cancellation"/> is cancelled.</exception>
    /// <exception cref="SampleRequestException">For labels outside the data's classes, guidance asked of a student, or an
    /// output that is neither .png nor .safetensors.</exception>
    /// <exception cref="WeightsMismatchException">When the weights fit none of the config's networks (each candidate's first
    /// mismatch is named).</exception>
    public static SampleOutcome Run(LoadedConfig loaded, IServiceProvider services, Device device, SampleRequest request,
        CancellationToken cancellation = default)
    {
        string extension = Path.GetExtension(request.Out).ToLowerInvariant();
        var run = loaded.Config.Run;
        var components = new ComponentFactory(loaded, services, new RunEnvironment(device, run.Seed, Path.GetTempPath()));
        var data = components.Create<IDataSource>("data");
        using var ownedData = data as IDisposable;
        var spec = data.Spec;
        long bytes = 3L * request.Count * spec.SampleShape.Aggregate(1L, (p, d) => p * d) * sizeof(float); // noise, samples, copies
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > available / 2)
            throw new SampleRequestException(
                $"--count {request.Count}: the samples alone would take {bytes / (1024.0 * 1024 * 1024):0.#} GiB of the {available / (1024.0 * 1024 * 1024):0.#} " +
                "GiB this machine has; sample fewer per call (another --seed gives other samples).");
        if (extension == ".png" && spec.SampleShape.Length != 3 && spec.SampleShape is not [2])
            throw new SampleRequestException(
                $"--out {request.Out}: samples of shape [{string.Join(", ", spec.SampleShape)}] have no picture; write .safetensors instead.");
        long[] labelList = ParseLabels(request.Labels, spec);
        var evaluation = loaded.Stages.Select(s => s.Stage).OfType<EvaluationStageConfig>().FirstOrDefault();

        var teacher = components.Create<ITeacher>(loaded.TeacherPath, data);
        var built = new List<IDisposable>();
        try
        {
            var (model, module) = Choose(components, loaded, data, teacher, request.Weights, built);
            module.to(device);
            WeightsFile.Load(module, request.Weights);
            module.eval();

            Sampler sampler;
            double? guidance = null;
            if (module is AverageVelocityNetwork student)
            {
                if (request.Guidance is { } w && w != 1)
                    throw new SampleRequestException(
                        "--guidance: these are a student's weights; a student trained on guided targets is sampled without guidance (one " +
                        "forward pass per step, method.md §2). Guidance applies to teacher weights.");
                sampler = Samplers.AverageVelocity(student.AverageVelocity, request.Nfe ?? 1);
            }
            else
            {
                guidance = request.Guidance ?? evaluation?.TeacherGuidanceScale ?? 1.0;
                int nfe = request.Nfe ?? evaluation?.EffectiveTeacherNfe.Max() ?? 32;
                sampler = EvaluationStage.GuidedTeacherSampler(teacher, guidance.Value, spec.NullLabel, evaluation?.TeacherSolver ?? "euler", nfe);
            }

            using var scope = NewDisposeScope();
            var generator = new Generator((ulong)request.Seed, CPU);
            var noise = randn(spec.BatchShape(request.Count), generator: generator);
            var labels = tensor(Enumerable.Range(0, request.Count).Select(i => labelList[i % labelList.Length]).ToArray());
            Tensor samples;
            double secondsPerSample;
            int batch = request.Batch ?? evaluation?.BatchSize ?? 256;
            using (Autocast.Use(run.ComputeDtype))
                samples = EvaluationStage.TimedSample(sampler, noise.to(device), labels.to(device), batch, out secondsPerSample, cancellation)
                    .to_type(ScalarType.Float32).cpu();
            cancellation.ThrowIfCancellationRequested();
            Write(request.Out, samples, labels, noise, spec, labelList.Length, $"{Path.GetFileName(request.Weights)}, {sampler.Name}");
            // Unconditional samples (every label ∅): guidance has nothing to act on, v(∅) + w (v(∅) - v(∅)) = v(∅).
            if (labelList.All(l => l == spec.NullLabel)) guidance = null;
            return new SampleOutcome(model, sampler.Name, sampler.Nfe, guidance, secondsPerSample);
        }
        finally
        {
            foreach (var d in built) d.Dispose();
            teacher.Network?.Dispose();
        }
    }

    /// <summary>The network the weights fit: the teacher, its own student, or a trajectory stage's configured student architecture.</summary>
    private static (string Model, TorchSharp.torch.nn.Module Module) Choose(ComponentFactory components, LoadedConfig loaded, IDataSource data,
        ITeacher teacher, string weights, List<IDisposable> built)
    {
        // A file that is not readable safetensors (damaged, a folder) fails alike for every network: said once, as it is.
        WeightsFile.CheckHeader(weights);
        var mismatches = new List<(string Model, string Reason)>();
        if (teacher.Network is { } network)
        {
            try
            {
                WeightsFile.CheckFits(network, weights);
                return ("teacher", network);
            }
            catch (WeightsMismatchException e)
            {
                mismatches.Add(("teacher", e.WithoutSource ?? e.Message));
            }
        }
        // The teacher's own student (every stage without a configured `student`, and a generator distilled from the teacher),
        // then each configured student architecture.
        var students = new List<(string Model, Func<AverageVelocityNetwork> Create)> { ("student", teacher.CreateStudent) };
        foreach (var (key, _) in loaded.Stages.Where(s => s.Stage is TrajectoryStageConfig && components.Has($"stages:{s.Key}:student")))
            students.Add(($"student (architecture of stages:{key}:student)", () => TrajectoryStage.CreateStudent(components, key, data, teacher, out _)));
        foreach (var (model, create) in students)
        {
            AverageVelocityNetwork student;
            try
            {
                student = create();
            }
            catch (Exception e) when (e is InvalidOperationException or NotSupportedException or ArgumentException)
            {
                mismatches.Add((model, e.Message));
                continue;
            }
            built.Add(student);
            try
            {
                WeightsFile.CheckFits(student, weights);
                return (model, student);
            }
            catch (WeightsMismatchException e)
            {
                mismatches.Add((model, e.WithoutSource ?? e.Message));
            }
        }
        // The same reason for several networks (the teacher's and its student's first layer) is given once; the file name once.
        var reasons = mismatches
            .GroupBy(m => m.Reason)
            .Select(g => $"As the {string.Join(" and as the ", g.Select(m => m.Model))}: {g.Key}").ToList();
        throw new WeightsMismatchException(
            $"{weights} fits none of the networks of this config; sample with the config (and --set values) of the run that wrote it " +
            $"(its config.resolved.json). {string.Join(" ", reasons.Select((r, i) => reasons.Count > 1 ? $"({i + 1}) {r}" : r))}");
    }

    /// <summary>
    /// Refuses an existing <paramref name="path"/> unless it is a safetensors file holding exactly the tensors
    /// <paramref name="own"/> (what <paramref name="command"/> writes), so that a run's weights are never written over.
    /// </summary>
    /// <exception cref="SampleRequestException">When it exists and holds other tensors, or is no safetensors file.</exception>
    public static void RequireOwnTensors(string path, string[] own, string what, string command)
    {
        if (!File.Exists(path)) return;
        IReadOnlyList<SafetensorsEntry>? entries = null;
        try
        {
            entries = SafetensorsHeader.Read(Path.GetFullPath(path));
        }
        catch (WeightsMismatchException)
        {
        }
        if (entries is null)
            throw new SampleRequestException($"--out {path} exists and is not a safetensors file {command} wrote; {command} replaces only files it wrote. " +
                                             "Name another file.");
        if (!entries.Select(e => e.Name).Order(StringComparer.Ordinal).SequenceEqual(own.Order(StringComparer.Ordinal)))
            throw new SampleRequestException(
                $"--out {path} exists and holds other tensors than {what} ({string.Join(", ", own)}), e.g. a run's weights; {command} replaces only " +
                "files it wrote. Name another file.");
    }

    /// <summary>
    /// The checks of <c>--out</c> that need no config, run before anything is built or sampled: a .png or .safetensors file, not
    /// a folder, in a folder that can be written (created if missing); an existing .safetensors is replaced only when it holds
    /// samples written by <c>sample</c> (x, labels, noise), so that a run's weights are never written over, and an existing .png
    /// not when it is a run's figure (<c>samples*.png</c>, <c>losses.png</c> beside a <c>run.json</c>) or a comparison's
    /// (<c>comparison.png</c> beside <c>comparison.md</c>).
    /// </summary>
    /// <exception cref="SampleRequestException">For another extension, a folder, a .safetensors file of other tensors, or a
    /// run's or comparison's figure.</exception>
    /// <exception cref="IOException">When the folder cannot be created or written.</exception>
    public static void CheckOutput(string path)
    {
        string full = Path.GetFullPath(path);
        string extension = Path.GetExtension(full).ToLowerInvariant();
        if (extension is not (".png" or ".safetensors"))
            throw new SampleRequestException($"--out {path}: write .png (a picture) or .safetensors (the samples as tensors).");
        if (Directory.Exists(full))
            throw new SampleRequestException($"--out {path} is a folder; name a file in it (e.g. {Path.Combine(path, "samples" + extension)}).");
        if (extension == ".safetensors") RequireOwnTensors(path, ["x", "labels", "noise"], "samples", "sample");
        string folder = Path.GetDirectoryName(full)!;
        string name = Path.GetFileName(full);
        if (extension == ".png" && File.Exists(full) &&
            ((File.Exists(Path.Combine(folder, RunFolder.StatusFile)) && (name.StartsWith("samples", StringComparison.Ordinal) || name == RunFolder.LossesFigure)) ||
             (File.Exists(Path.Combine(folder, "comparison.md")) && name == "comparison.png")))
            throw new SampleRequestException(
                $"--out {path} is a figure of the {(name == "comparison.png" ? "comparison" : "run")} in {folder} (its report shows it); sample does not " +
                $"write over it. Name another file (e.g. {Path.Combine(Path.GetDirectoryName(path) ?? "", "sample-" + Path.GetFileNameWithoutExtension(name) + ".png")}).");
        try
        {
            Directory.CreateDirectory(folder);
            string probe = Path.Combine(folder, $".hierdistill-sample-{Environment.ProcessId}.tmp");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"--out {path}: the folder {folder} cannot be written ({e.Message}); choose another file.", e);
        }
    }

    /// <summary>The labels to cycle through: every class in turn by default.</summary>
    private static long[] ParseLabels(string? text, DataSpec spec)
    {
        if (string.IsNullOrWhiteSpace(text))
            return spec.NumClasses > 0 ? Enumerable.Range(0, spec.NumClasses).Select(c => (long)c).ToArray() : [spec.NullLabel];
        var labels = new List<long>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!long.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out long label) || label < 0 || label > spec.NullLabel)
                throw new SampleRequestException(
                    $"--labels: '{part}' is not a label of {spec.Name}: use 0 to {spec.NumClasses - 1}, or {spec.NullLabel} for ∅ (unconditional).");
            labels.Add(label);
        }
        return [.. labels];
    }

    /// <summary>The most images side by side in a grid row of <c>sample</c>'s pictures.</summary>
    private const int MaxColumns = 32;

    private static void Write(string path, Tensor samples, Tensor labels, Tensor noise, DataSpec spec, int columns, string title)
    {
        if (Path.GetExtension(path).Equals(".safetensors", StringComparison.OrdinalIgnoreCase))
        {
            var tensors = new Dictionary<string, Tensor> { ["x"] = samples.contiguous(), ["labels"] = labels, ["noise"] = noise.contiguous() };
            AtomicFile.Write(path, s => TorchSharp.PyBridge.Safetensors.SaveStateDict(s, tensors, leaveOpen: true));
        }
        else if (spec.SampleShape.Length == 3)
        {
            // One row per label of the list (as the run's pictures have one row per class), blank where a row is short; a
            // label with more than MaxColumns samples takes several rows, so that many samples stay a picture one can look at.
            int labelCount = (int)Math.Min(columns, samples.shape[0]);
            int perLabel = (int)((samples.shape[0] + labelCount - 1) / labelCount);
            int width = Math.Min(perLabel, MaxColumns), rowsPerLabel = (perLabel + width - 1) / width;
            var blank = ones(spec.SampleShape);
            var grid = Enumerable.Range(0, labelCount)
                .SelectMany(r => Enumerable.Range(0, rowsPerLabel * width).Select(k => k < perLabel ? (long)k * labelCount + r : long.MaxValue))
                .Select(i => i < samples.shape[0] ? samples[i] : blank).ToList();
            ImageGrid.Save(stack(grid), width, path);
        }
        else
        {
            // 2-D points (checked before sampling); ScottPlot writes the file itself, so write beside it and rename.
            string temporary = path + ".tmp.png";
            try
            {
                Plots.Scatter(temporary, [new PlotSamples(title, samples, labels)]);
                File.Move(temporary, path, overwrite: true);
            }
            finally
            {
                File.Delete(temporary);
            }
        }
    }
}
