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
/// <param name="Batch">Samples per forward pass.</param>
public sealed record SampleRequest(string Weights, string Out, int Count, int? Nfe, string? Labels, double? Guidance, long Seed, int Batch);

/// <summary>What <c>hierdistill sample</c> did.</summary>
/// <param name="Model">"teacher" or "student (architecture of stage KEY)".</param>
/// <param name="Sampler">The sampler's name (<c>mean-1</c>, <c>euler-16</c>, …).</param>
/// <param name="Nfe">Network evaluations per sample.</param>
/// <param name="Guidance">The CFG scale used (null for a student: sampled unguided).</param>
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
    /// <exception cref="SampleRequestException">For labels outside the data's classes, guidance asked of a student, or an
    /// output that is neither .png nor .safetensors.</exception>
    /// <exception cref="WeightsMismatchException">When the weights fit none of the config's networks (each candidate's first
    /// mismatch is named).</exception>
    public static SampleOutcome Run(LoadedConfig loaded, IServiceProvider services, Device device, SampleRequest request)
    {
        string extension = Path.GetExtension(request.Out).ToLowerInvariant();
        if (extension is not (".png" or ".safetensors"))
            throw new SampleRequestException($"--out {request.Out}: write .png (a picture) or .safetensors (the samples as tensors).");
        var run = loaded.Config.Run;
        var components = new ComponentFactory(loaded, services, new RunEnvironment(device, run.Seed, Path.GetTempPath()));
        var data = components.Create<IDataSource>("data");
        var spec = data.Spec;
        if (extension == ".png" && spec.SampleShape.Length != 3 && spec.SampleShape is not [2])
            throw new SampleRequestException(
                $"--out {request.Out}: samples of shape [{string.Join(", ", spec.SampleShape)}] have no picture; write .safetensors instead.");
        long[] labelList = ParseLabels(request.Labels, spec);
        var evaluation = loaded.Stages.Select(s => s.Stage).OfType<EvaluationStageConfig>().FirstOrDefault();

        string teacherKey = loaded.Stages.First(s => s.Stage is TeacherStageConfig).Key;
        var teacher = components.Create<ITeacher>($"stages:{teacherKey}:teacher", data);
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
                if (request.Guidance is not null)
                    throw new SampleRequestException(
                        "--guidance: these are a student's weights; a student trained on guided targets is sampled without guidance (one " +
                        "forward pass per step, method.md §2). Guidance applies to teacher weights.");
                sampler = Samplers.AverageVelocity(student.AverageVelocity, request.Nfe ?? 1);
            }
            else
            {
                guidance = request.Guidance ?? evaluation?.TeacherGuidanceScale ?? 1.0;
                int nfe = request.Nfe ?? evaluation?.EffectiveTeacherNfe.Max() ?? 32;
                var guided = ClassifierFreeGuidance.Guide(teacher.Velocity, guidance.Value, spec.NullLabel);
                sampler = evaluation?.TeacherSolver == "heun" ? Samplers.Heun(guided, Math.Max(1, nfe / 2)) : Samplers.Euler(guided, nfe);
            }

            using var scope = NewDisposeScope();
            var generator = new Generator((ulong)request.Seed, CPU);
            var noise = randn(spec.BatchShape(request.Count), generator: generator);
            var labels = tensor(Enumerable.Range(0, request.Count).Select(i => labelList[i % labelList.Length]).ToArray());
            Tensor samples;
            double secondsPerSample;
            using (Autocast.Use(run.ComputeDtype))
                samples = EvaluationStage.TimedSample(sampler, noise.to(device), labels.to(device), request.Batch, out secondsPerSample)
                    .to_type(ScalarType.Float32).cpu();
            Write(request.Out, samples, labels, noise, spec, labelList.Length, $"{Path.GetFileName(request.Weights)}, {sampler.Name}");
            return new SampleOutcome(model, sampler.Name, sampler.Nfe, guidance, secondsPerSample);
        }
        finally
        {
            foreach (var d in built) d.Dispose();
            teacher.Network?.Dispose();
        }
    }

    /// <summary>The network the weights fit: the teacher, or the student architecture of a trajectory stage.</summary>
    private static (string Model, TorchSharp.torch.nn.Module Module) Choose(ComponentFactory components, LoadedConfig loaded, IDataSource data,
        ITeacher teacher, string weights, List<IDisposable> built)
    {
        var mismatches = new List<string>();
        if (teacher.Network is { } network)
        {
            try
            {
                WeightsFile.CheckFits(network, weights);
                return ("teacher", network);
            }
            catch (WeightsMismatchException e)
            {
                mismatches.Add($"as the teacher: {e.Message}");
            }
        }
        foreach (var (key, stage) in loaded.Stages.Where(s => s.Stage is TrajectoryStageConfig))
        {
            AverageVelocityNetwork student;
            try
            {
                student = TrajectoryStage.CreateStudent(components, key, data, teacher, out _);
            }
            catch (Exception e) when (e is InvalidOperationException or NotSupportedException or ArgumentException)
            {
                mismatches.Add($"as the student of stage {key}: {e.Message}");
                continue;
            }
            built.Add(student);
            try
            {
                WeightsFile.CheckFits(student, weights);
                return ($"student (architecture of stage {key})", student);
            }
            catch (WeightsMismatchException e)
            {
                mismatches.Add($"as the student of stage {key}: {e.Message}");
            }
        }
        throw new WeightsMismatchException(
            $"{weights} fits none of the networks of this config; sample with the config (and --set values) of the run that wrote it " +
            $"(its config.resolved.json). {string.Join(" ", mismatches.Select((m, i) => $"({i + 1}) {m}"))}");
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

    private static void Write(string path, Tensor samples, Tensor labels, Tensor noise, DataSpec spec, int columns, string title)
    {
        if (Path.GetExtension(path).Equals(".safetensors", StringComparison.OrdinalIgnoreCase))
        {
            var tensors = new Dictionary<string, Tensor> { ["x"] = samples.contiguous(), ["labels"] = labels, ["noise"] = noise.contiguous() };
            AtomicFile.Write(path, s => TorchSharp.PyBridge.Safetensors.SaveStateDict(s, tensors, leaveOpen: true));
        }
        else if (spec.SampleShape.Length == 3)
        {
            ImageGrid.Save(samples, columns, path);
        }
        else
        {
            // 2-D points (checked before sampling); ScottPlot writes the file itself, so write beside it and rename.
            string temporary = path + ".tmp.png";
            Plots.Scatter(temporary, [new PlotSamples(title, samples, labels)]);
            File.Move(temporary, path, overwrite: true);
        }
    }
}
