using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Numerics;
using static TorchSharp.torch;

namespace HierDistill.Host.Evaluation;

/// <summary>
/// The evaluation's seeded draws (reference and floor sets, noise). TorchSharp's generators are CPU generators whatever
/// device they are given (<see cref="RandomDraw"/>), and libtorch refuses one for a draw on CUDA, so these draws are made on
/// the CPU and moved to the device: the same sets on every device for a seed, and a data source that draws on the device
/// it is given with the generator it is given still works on a GPU.
/// </summary>
internal static class SeededDraws
{
    /// <summary>A generator seeded with <paramref name="seed"/> (a CPU generator).</summary>
    public static Generator Generator(long seed) => new((ulong)seed, CPU);

    /// <summary><see cref="IDataSource.SampleEvaluation"/> drawn on the CPU with a generator seeded with <paramref name="seed"/>,
    /// moved to <paramref name="device"/>.</summary>
    public static Batch Evaluation(IDataSource data, int count, long seed, Device device) =>
        To(data.SampleEvaluation(count, CPU, Generator(seed)), device);

    /// <summary><see cref="IDataSource.SampleTrain"/> drawn on the CPU with a generator seeded with <paramref name="seed"/>,
    /// moved to <paramref name="device"/>.</summary>
    public static Batch Train(IDataSource data, int count, long seed, Device device) =>
        To(data.SampleTrain(count, CPU, Generator(seed)), device);

    /// <summary>Standard normal noise <c>shape</c> of <paramref name="dtype"/> (float32 unless given) drawn with a generator
    /// seeded with <paramref name="seed"/>, on <paramref name="device"/>.</summary>
    public static Tensor Noise(long[] shape, long seed, Device device, ScalarType dtype = ScalarType.Float32) =>
        RandomDraw.Randn(shape, device, Generator(seed), dtype);

    private static Batch To(Batch batch, Device device) => new(batch.X.to(device), batch.Labels.to(device));
}
