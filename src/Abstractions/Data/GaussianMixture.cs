using HierDistill.Abstractions.Numerics;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Data;

/// <summary>
/// A class-labelled isotropic Gaussian mixture <c>x ~ Σ_k π_k N(μ_k, s_k² I)</c> (method.md §5).
/// Shared by the 2-D data source, the exact teacher and the mode-coverage metrics.
/// </summary>
public sealed class GaussianMixture
{
    /// <summary>Creates a mixture and validates its parameters.</summary>
    /// <param name="means">Component means μ_k, <c>K</c> rows of dimension D.</param>
    /// <param name="stds">Component standard deviations s_k &gt; 0, length K.</param>
    /// <param name="weights">Mixture weights π_k &gt; 0, length K; normalised to sum to 1.</param>
    /// <param name="classes">Class label of each component, length K, in <c>0 .. numClasses-1</c>.</param>
    /// <param name="numClasses">Number of classes.</param>
    /// <exception cref="ArgumentException">On inconsistent lengths, non-positive stds or weights, or bad class labels.</exception>
    public GaussianMixture(double[][] means, double[] stds, double[] weights, int[] classes, int numClasses)
    {
        int k = means.Length;
        if (k == 0) throw new ArgumentException("a mixture needs at least one component", nameof(means));
        int d = means[0].Length;
        if (means.Any(m => m.Length != d)) throw new ArgumentException("all means must have the same dimension", nameof(means));
        if (stds.Length != k || weights.Length != k || classes.Length != k)
            throw new ArgumentException($"means ({k}), stds ({stds.Length}), weights ({weights.Length}) and classes ({classes.Length}) must have the same length");
        if (stds.Any(s => !(s > 0))) throw new ArgumentException("component stds must be > 0", nameof(stds));
        if (weights.Any(w => !(w > 0))) throw new ArgumentException("mixture weights must be > 0", nameof(weights));
        if (classes.Any(c => c < 0 || c >= numClasses))
            throw new ArgumentException($"component classes must be in 0..{numClasses - 1}", nameof(classes));
        for (int c = 0; c < numClasses; c++)
            if (!classes.Contains(c)) throw new ArgumentException($"class {c} has no component", nameof(classes));
        double total = weights.Sum();
        Means = means.Select(m => (double[])m.Clone()).ToArray();
        Stds = (double[])stds.Clone();
        Weights = weights.Select(w => w / total).ToArray();
        Classes = (int[])classes.Clone();
        NumClasses = numClasses;
    }

    /// <summary>Component means μ_k (K × D).</summary>
    public IReadOnlyList<double[]> Means { get; }
    /// <summary>Component standard deviations s_k.</summary>
    public IReadOnlyList<double> Stds { get; }
    /// <summary>Normalised mixture weights π_k.</summary>
    public IReadOnlyList<double> Weights { get; }
    /// <summary>Class label of each component.</summary>
    public IReadOnlyList<int> Classes { get; }
    /// <summary>Number of classes.</summary>
    public int NumClasses { get; }
    /// <summary>Number of components K.</summary>
    public int Components => Means.Count;
    /// <summary>Dimension D.</summary>
    public int Dimension => Means[0].Length;

    /// <summary>Means as a tensor <c>[K, D]</c>.</summary>
    public Tensor MeansTensor(ScalarType dtype, Device device) =>
        tensor(Means.SelectMany(m => m).ToArray(), [Components, Dimension], dtype, device);

    /// <summary>Stds as a tensor <c>[K]</c>.</summary>
    public Tensor StdsTensor(ScalarType dtype, Device device) => tensor(Stds.ToArray(), [Components], dtype, device);

    /// <summary>Log mixture weights as a tensor <c>[K]</c>.</summary>
    public Tensor LogWeightsTensor(ScalarType dtype, Device device) =>
        tensor(Weights.Select(w => Math.Log(w)).ToArray(), [Components], dtype, device);

    /// <summary>Component-to-class membership <c>[C, K]</c> (1 where component k belongs to class c).</summary>
    public Tensor ClassMembership(ScalarType dtype, Device device)
    {
        var m = new double[NumClasses * Components];
        for (int k = 0; k < Components; k++) m[Classes[k] * Components + k] = 1;
        return tensor(m, [NumClasses, Components], dtype, device);
    }

    /// <summary>Draws samples with their component indices and class labels.</summary>
    /// <param name="count">Number of samples.</param>
    /// <param name="device">Device of the returned tensors.</param>
    /// <param name="generator">Random generator (null: global).</param>
    /// <returns>Samples <c>[N, D]</c> float32, labels <c>[N]</c> int64, components <c>[N]</c> int64.</returns>
    /// <remarks>Drawn on <paramref name="device"/> from parameter tensors kept there after the first call, so a training step
    /// on a GPU copies nothing from the host. With a <paramref name="generator"/> the draws are made on the CPU and moved
    /// (<see cref="Numerics.RandomDraw"/>: TorchSharp's generators are CPU generators).</remarks>
    public (Tensor X, Tensor Labels, Tensor Components) Sample(int count, Device device, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var (w, means, stds, classes) = OnDevice(device);
        var comp = RandomDraw.Multinomial(w, count, replacement: true, generator); // [N]
        var mu = means.index_select(0, comp);                                        // [N, D]
        var sd = stds.index_select(0, comp).unsqueeze(1);                            // [N, 1]
        var x = mu + sd * RandomDraw.Randn([count, Dimension], device, generator);
        var labels = classes.index_select(0, comp);
        return (x.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope(), comp.MoveToOuterDisposeScope());
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(TorchSharp.DeviceType, long), (Tensor W, Tensor Means, Tensor Stds, Tensor Classes)> _onDevice = new();

    /// <summary>Weights (float64), means and stds (float32) and component classes (int64) on <paramref name="device"/>, made once.</summary>
    private (Tensor W, Tensor Means, Tensor Stds, Tensor Classes) OnDevice(Device device) =>
        _onDevice.GetOrAdd((device.type, device.index), _ => (
            tensor(Weights.ToArray(), ScalarType.Float64, device).DetachFromDisposeScope(),
            MeansTensor(ScalarType.Float32, device).DetachFromDisposeScope(),
            StdsTensor(ScalarType.Float32, device).DetachFromDisposeScope(),
            tensor(Classes.Select(c => (long)c).ToArray(), device: device).DetachFromDisposeScope()));
}

/// <summary>A data source whose distribution is a known Gaussian mixture (enables the exact teacher and mode metrics).</summary>
public interface IMixtureDataSource : IDataSource
{
    /// <summary>The mixture the samples are drawn from.</summary>
    GaussianMixture Mixture { get; }
}
