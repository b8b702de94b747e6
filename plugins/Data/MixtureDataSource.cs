using HierDistill.Abstractions.Data;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Data;

/// <summary>Fresh draws from a labelled Gaussian mixture for every batch (training and evaluation alike).</summary>
internal sealed class MixtureDataSource : IMixtureDataSource
{
    public MixtureDataSource(string name, GaussianMixture mixture)
    {
        Mixture = mixture;
        Spec = new DataSpec(name, [mixture.Dimension], mixture.NumClasses);
    }

    public DataSpec Spec { get; }

    public GaussianMixture Mixture { get; }

    public Batch SampleTrain(int batchSize, Device device, Generator? generator = null) => Draw(batchSize, device, generator);

    public Batch SampleEvaluation(int count, Device device, Generator? generator = null) => Draw(count, device, generator);

    private Batch Draw(int count, Device device, Generator? generator)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "the number of samples must be ≥ 1.");
        var (x, labels, components) = Mixture.Sample(count, device, generator);
        components.Dispose();
        return new Batch(x, labels);
    }

    /// <summary>The mixture of a preset.</summary>
    public static GaussianMixture Create(MixtureOptions o)
    {
        switch (o.Preset)
        {
            case "ring8":
            {
                var means = Enumerable.Range(0, 8)
                    .Select(k => new[] { o.Radius * Math.Cos(2 * Math.PI * k / 8), o.Radius * Math.Sin(2 * Math.PI * k / 8) }).ToArray();
                return new GaussianMixture(means, Enumerable.Repeat(o.ModeStd, 8).ToArray(), Enumerable.Repeat(1.0, 8).ToArray(),
                    Enumerable.Range(0, 8).Select(k => k % 2).ToArray(), 2);
            }
            case "grid25":
            {
                var means = new List<double[]>();
                var classes = new List<int>();
                for (int i = 0; i < 5; i++)
                for (int j = 0; j < 5; j++)
                {
                    means.Add([(i - 2) * o.Spacing, (j - 2) * o.Spacing]);
                    classes.Add((i + j) % 2);
                }
                return new GaussianMixture(means.ToArray(), Enumerable.Repeat(o.ModeStd, 25).ToArray(), Enumerable.Repeat(1.0, 25).ToArray(),
                    classes.ToArray(), 2);
            }
            default:
                throw new ArgumentException($"unknown mixture preset '{o.Preset}'; use ring8 or grid25.");
        }
    }
}
