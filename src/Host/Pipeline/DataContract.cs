using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using HierDistill.Host.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Host.Pipeline;

/// <summary>
/// <see cref="IDataSource"/>'s contract, checked by the preflight on trial draws on the CPU before anything runs or is written:
/// a data source whose batches have the wrong shape or dtype, labels outside <c>0 .. K-1</c> or non-finite values is named
/// with the fix, where it would otherwise fail inside the teacher's first forward (naming the teacher), train the last class
/// as unconditional (labels counted from 1: label K is the null label ∅), or fail only in the evaluation.
/// </summary>
/// <remarks>
/// Two things are warnings, not errors, because they can be intended: image samples that look like raw pixels (all
/// non-negative, in [0, 1] or up to 255: HierDistill's images are in [-1, 1], latents are not checked), and two instances
/// whose first training draws differ after the same <c>torch.manual_seed</c> (the data source draws from a random stream of
/// its own, so runs with the same <c>run.seed</c> differ and a resumed run does not continue the stopped one).
/// </remarks>
internal static class DataContract
{
    /// <summary>Samples per trial draw at most (fewer when the split is smaller or the samples are large).</summary>
    internal const int TrialSize = 256;

    /// <summary>Trial draws hold about this many values (16 MB of float32), so large samples get fewer (but at least 16).</summary>
    private const long TrialValues = 4L << 20;

    /// <summary>
    /// The seed set before each instance of the data source is built (and its split sizes read), as a run seeds the stream
    /// before it builds one: a source that draws from the global stream when built (random class centres, a random split) is
    /// then the same in both.
    /// </summary>
    internal const long BuildSeed = 4320;

    /// <summary>The seed set before the trial draws of each instance (the stages draw after the run's seed).</summary>
    private const long DrawSeed = 4321;

    /// <summary>
    /// Draws up to <see cref="TrialSize"/> training samples (and, with an evaluation stage, evaluation samples) from
    /// <paramref name="data"/> on the CPU and checks them (see the class). Call it before anything else draws from
    /// <paramref name="data"/>: its first draw is compared with the first draw of <paramref name="another"/>. The global random
    /// stream is reseeded here: the caller saves and restores it. The draws are freed when it returns.
    /// </summary>
    /// <param name="component">The data component for messages, e.g. <c>'fashion-mnist' (HierDistill.Plugins.Data)</c>.</param>
    /// <param name="data">The data source, not yet drawn from.</param>
    /// <param name="another">Builds a second instance of the same data source (disposed here when disposable).</param>
    /// <param name="evaluation">Whether an evaluation stage will draw from <c>SampleEvaluation</c> (else it is not called: a data
    /// source may have no held-out split).</param>
    /// <param name="warn">Receives each warning (a whole sentence starting with <c>data:</c>).</param>
    /// <exception cref="InvalidOperationException">A draw that breaks the contract, with a message starting <c>data:</c>; an
    /// exception the data source throws passes with the component named.</exception>
    internal static void Try(string component, IDataSource data, Func<IDataSource> another, bool evaluation, Action<string> warn)
    {
        using var scope = NewDisposeScope();
        var spec = data.Spec;
        int cap = (int)Math.Clamp(TrialValues / Math.Max(1, spec.SampleSize), 16, TrialSize);
        int n = (int)Math.Min(cap, Math.Max(1, data.TrainSize ?? cap));
        int m = (int)Math.Min(cap, Math.Max(1, data.EvaluationSize ?? cap));
        // As the training stages draw: no generator (the global one), after the run's seed. The first draw is made in a dispose
        // scope of its own, disposed before the next draws, as a training step's is: tensors the source builds on its first
        // draw and keeps (a data set read or generated on first use) must leave that scope.
        TorchRuntime.ManualSeed(DrawSeed);
        Batch train;
        using (NewDisposeScope())
        {
            var first = Draw(component, "SampleTrain", n, spec, () => data.SampleTrain(n, CPU));
            train = new Batch(first.X.clone().MoveToOuterDisposeScope(), first.Labels.clone().MoveToOuterDisposeScope());
        }
        try
        {
            Draw(component, "SampleTrain", n, spec, () => data.SampleTrain(n, CPU));
        }
        catch (InvalidOperationException e) when (!e.Message.StartsWith("data:", StringComparison.Ordinal) || e.InnerException is not null)
        {
            throw new InvalidOperationException(
                $"data: {component} failed on its second draw, once the dispose scope of its first draw (a training step's) was disposed: " +
                $"{NativeErrors.WithoutBacktrace((e.InnerException ?? e).Message)} Tensors a data source keeps between calls (a data set " +
                "built on first use) must leave the caller's scope: keep them with .DetachFromDisposeScope() and dispose them in " +
                "Dispose(), as FashionMnistDataSource does.", e);
        }
        var evaluationSet = evaluation
            ? Draw(component, "SampleEvaluation", m, spec, () => data.SampleEvaluation(m, CPU, new Generator(EvaluationSeed, CPU)))
            : null;

        if (spec.SampleShape.Length == 3 && RawPixels(train.X) is var (min, max, scale))
            warn($"data: {component} gives image samples in [{min:0.###}, {max:0.###}] (SampleTrain); HierDistill's images " +
                 $"are in [-1, 1]: the noise they are mixed with is N(0, I), and `sample` and the evaluation write images clamped to " +
                 $"[-1, 1]. Scale them in the data source ({scale}); latents or other data may ignore this.");

        // The same seed must give the same run: a second instance's first draw after the same seeds equals the first one's (two
        // fresh instances, so that a source that walks a shuffled order with a cursor is not mistaken for an unseeded one). A
        // warning-level check: a second instance that cannot be built, drawn from or disposed (a lock, a singleton) skips it.
        var (sameFirst, sameSeeded) = SecondInstance(another, data, n, m, train, evaluationSet);
        // The evaluation draws its reference and floor sets with seeded generators: a source that ignores them scores every run
        // and every compare variant against other data.
        if (sameSeeded == false)
            throw new InvalidOperationException(
                $"data: {component} ignores the generator it is given: SampleEvaluation({m}, cpu, generator) gave different samples in two " +
                "instances for generators of one seed (after different torch.manual_seed). The evaluation draws its reference and floor " +
                "sets this way, so runs and compare variants would be scored against different data. Draw with the generator through " +
                "RandomDraw, e.g. RandomDraw.RandPerm(count, device, generator) or RandomDraw.RandInt(n, [count], device, generator).");
        if (sameFirst == false)
            warn($"data: {component} gave two different first training batches in two instances built from the same config after the " +
                 "same torch.manual_seed (SampleTrain with no generator): it draws from a random stream of its own (System.Random, a " +
                 "time seed), so two runs with the same run.seed differ and a resumed run does not continue the stopped one. Draw with " +
                 "the generator passed in (the device's default generator when it is null) through RandomDraw, e.g. " +
                 "RandomDraw.RandInt(n, [batchSize], device, generator).");
    }

    /// <summary>The seed of the trial <c>SampleEvaluation</c>'s generator.</summary>
    private const ulong EvaluationSeed = 1235;

    /// <summary>
    /// A second instance, built and drawn from as the first was: whether its first training batch equals the first one's (the
    /// global stream), and whether its seeded evaluation draw, made after another <c>torch.manual_seed</c>, equals the first
    /// one's (the generator passed in is used); null where it cannot tell.
    /// </summary>
    private static (bool? SameFirst, bool? SameSeeded) SecondInstance(Func<IDataSource> another, IDataSource data, int n, int m, Batch first,
        Batch? evaluationSet)
    {
        IDataSource? other = null;
        bool? sameFirst = null, sameSeeded = null;
        try
        {
            TorchRuntime.ManualSeed(BuildSeed);
            other = another();
            if (ReferenceEquals(other, data)) return (null, null); // one shared instance: nothing to compare
            _ = (other.TrainSize, other.EvaluationSize);
            TorchRuntime.ManualSeed(DrawSeed);
            sameFirst = Same(other.SampleTrain(n, CPU), first);
            _ = other.SampleTrain(n, CPU); // as the first instance drew twice
            if (evaluationSet is not null)
            {
                TorchRuntime.ManualSeed(DrawSeed + 1);
                sameSeeded = Same(other.SampleEvaluation(m, CPU, new Generator(EvaluationSeed, CPU)), evaluationSet);
            }
            return (sameFirst, sameSeeded);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return (sameFirst, sameSeeded);
        }
        finally
        {
            try
            {
                if (!ReferenceEquals(other, data)) (other as IDisposable)?.Dispose();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The check is a warning's: a second instance that cannot be disposed does not stop the run.
            }
        }
    }

    private static bool Same(Batch a, Batch b) =>
        a.X.shape.SequenceEqual(b.X.shape) && a.X.eq(b.X).all().item<bool>() && a.Labels.eq(b.Labels).all().item<bool>();

    /// <summary>One draw, checked: x float32 <c>[B, ...S]</c> finite on the CPU, labels int64 <c>[B]</c> in <c>0 .. K-1</c>.</summary>
    private static Batch Draw(string component, string method, int count, DataSpec spec, Func<Batch> draw)
    {
        var batch = ComponentCalls.Run("data", component, $"in {method}({count})", draw);
        string where = $"data: {component} {method}({count}, cpu)";
        string contract = $"(IDataSource.{method}; the data's Spec is {spec})";
        if (batch is null || batch.X is null || batch.Labels is null)
            throw new InvalidOperationException($"{where} returned no batch, or a batch without x or labels {contract}.");
        var x = batch.X;
        var labels = batch.Labels;
        long[] expected = spec.BatchShape(count);
        if (!x.shape.SequenceEqual(expected))
            throw new InvalidOperationException(
                $"{where} returned x of shape {Shapes.Format(x.shape)}; the contract is [B, ...S] = {Shapes.Format(expected)} {contract}. " +
                (expected is [_, 1, _, _] && x.shape.SequenceEqual(expected.Where((_, i) => i != 1))
                    ? "The channel dimension (of size 1) is missing: x.unsqueeze(1) makes [B, 1, H, W]."
                    : "Return the shape the Spec gives, or change the Spec."));
        if (x.dtype != ScalarType.Float32)
            throw new InvalidOperationException(
                $"{where} returned x as {x.dtype}; the networks take float32 samples {contract}: return x.to_type(ScalarType.Float32).");
        if (x.device_type != DeviceType.CPU || labels.device_type != DeviceType.CPU)
            throw new InvalidOperationException(
                $"{where} returned tensors on {x.device} and {labels.device}; the contract is the device asked for {contract}.");
        if (!labels.shape.SequenceEqual([count]) || labels.dtype != ScalarType.Int64)
            throw new InvalidOperationException(
                $"{where} returned labels as {labels.dtype} of shape {Shapes.Format(labels.shape)}; the contract is int64 labels of shape [B] = [{count}] " +
                $"{contract}{(labels.dtype != ScalarType.Int64 ? ": return labels.to_type(ScalarType.Int64)" : "")}.");
        long nonFinite = (~x.isfinite()).sum().item<long>();
        if (nonFinite > 0)
            throw new InvalidOperationException($"{where} returned x with {nonFinite} non-finite values (NaN or ±inf) {contract}.");
        long low = labels.min().item<long>(), high = labels.max().item<long>();
        bool ok = spec.NumClasses > 0 ? low >= 0 && high < spec.NumClasses : low == spec.NullLabel && high == spec.NullLabel;
        if (!ok)
            throw new InvalidOperationException(spec.NumClasses > 0
                ? $"{where} returned labels from {low} to {high}; labels are 0 .. K-1 = 0 .. {spec.NumClasses - 1} (K = Spec.NumClasses = " +
                  $"{spec.NumClasses}; the label K is the null label ∅ of classifier-free guidance) {contract}." +
                  (low == 1 && high == spec.NumClasses ? " Labels counted from 1: subtract 1 in the data source." : "")
                : $"{where} returned labels from {low} to {high}; data with no classes (Spec.NumClasses = 0) labels every sample with the " +
                  $"null label ∅ = 0 {contract}.");
        return batch;
    }

    /// <summary>For non-negative images that look like pixels in [0, 1] or [0, 255]: their range and how to scale them; else null.</summary>
    private static (double Min, double Max, string Scale)? RawPixels(Tensor x)
    {
        double min = x.min().to_type(ScalarType.Float64).item<double>(), max = x.max().to_type(ScalarType.Float64).item<double>();
        if (min < 0) return null;
        if (max <= 1.0) return (min, max, "x * 2 - 1 for pixels in [0, 1]");
        if (max > 1.5 && max <= 255.0) return (min, max, "x / 127.5 - 1 for pixels in [0, 255]");
        return null;
    }
}
