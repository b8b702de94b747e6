using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Contracts;

/// <summary>An <see cref="ITeacher"/> backed by a <see cref="VelocityNetwork"/> (MLP, DiT, imported weights).</summary>
public sealed class NetworkTeacher : ITeacher
{
    /// <summary>Wraps <paramref name="network"/> as a teacher for data described by <paramref name="spec"/>.</summary>
    public NetworkTeacher(DataSpec spec, VelocityNetwork network)
    {
        Spec = spec;
        Network = network;
    }

    /// <inheritdoc/>
    public DataSpec Spec { get; }

    /// <inheritdoc/>
    public VelocityNetwork Network { get; }

    /// <inheritdoc/>
    public Tensor Velocity(Tensor z, Tensor t, Tensor labels)
    {
        Shapes.RequireBatchOf(z, "z", Spec.SampleShape);
        return Network.Velocity(z, t, labels);
    }

    /// <inheritdoc/>
    public IReadOnlyList<TokenFeatureSpec> FeatureBlocks => Network.FeatureBlocks;

    /// <inheritdoc/>
    public IReadOnlyList<Tensor> TokenFeatures(Tensor z, Tensor t, Tensor labels, IReadOnlyList<int> blocks) =>
        Network.TokenFeatures(z, t, labels, blocks);

    /// <inheritdoc/>
    public VelocityNetwork CreateTrainableCopy()
    {
        var copy = Network.Clone();
        foreach (var p in copy.parameters()) p.requires_grad = true;
        copy.train();
        return copy;
    }

    /// <inheritdoc/>
    public AverageVelocityNetwork CreateStudent()
    {
        var student = Network.CreateStudent();
        foreach (var p in student.parameters()) p.requires_grad = true;
        student.train();
        return student;
    }
}
