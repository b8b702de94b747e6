using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Teachers.Exact;

/// <summary>Options of the <c>gmm-exact</c> teacher (it has none: the mixture comes from the data source).</summary>
public sealed class GaussianMixtureTeacherOptions;

/// <summary>The analytic teacher of a Gaussian-mixture data source: the oracle for tests and the 2-D toy.</summary>
internal sealed class GaussianMixtureTeacher(DataSpec spec, GaussianMixture mixture) : ITeacher
{
    private readonly GaussianMixtureVelocity _velocity = new(mixture);

    public DataSpec Spec { get; } = spec;

    public Tensor Velocity(Tensor z, Tensor t, Tensor labels) => _velocity.Velocity(z, t, labels);

    public IReadOnlyList<TokenFeatureSpec> FeatureBlocks => [];

    public IReadOnlyList<Tensor> TokenFeatures(Tensor z, Tensor t, Tensor labels, IReadOnlyList<int> blocks) =>
        throw new NotSupportedException("gmm-exact is analytic and has no token features; use a network teacher (mlp) with a discriminator.");

    public VelocityNetwork? Network => null;

    public VelocityNetwork CreateTrainableCopy() =>
        throw new NotSupportedException("gmm-exact is analytic and has no network to copy; use a network teacher (mlp) for DMD's fake score.");

    public AverageVelocityNetwork CreateStudent() =>
        throw new NotSupportedException("gmm-exact is analytic and has no architecture for a student; use a network teacher (mlp).");
}
