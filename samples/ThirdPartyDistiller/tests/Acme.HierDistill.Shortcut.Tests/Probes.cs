using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Acme.HierDistill.Shortcut.Tests;

/// <summary>A student given by a formula u(z, r, t | c) (no parameters).</summary>
internal sealed class FormulaStudent(Func<Tensor, Tensor, Tensor, Tensor, Tensor> formula) : AverageVelocityNetwork("formula")
{
    public override Tensor AverageVelocity(Tensor z, Tensor r, Tensor t, Tensor labels) => formula(z, r, t, labels);

    public override AverageVelocityNetwork Clone() => new FormulaStudent(formula);
}

/// <summary>A trainable student u(z, r, t) = p, one parameter vector p (starts at zero).</summary>
internal sealed class ConstantStudent : AverageVelocityNetwork
{
    public ConstantStudent(long dim) : base("constant")
    {
        P = nn.Parameter(zeros(dim));
        register_parameter("p", P);
    }

    public TorchSharp.Modules.Parameter P { get; }

    public override Tensor AverageVelocity(Tensor z, Tensor r, Tensor t, Tensor labels) => P.unsqueeze(0).expand(z.shape[0], -1) + 0 * z;

    public override AverageVelocityNetwork Clone() => throw new NotSupportedException();
}

/// <summary>A teacher given by a velocity formula v(z, t | c).</summary>
internal sealed class FormulaTeacher(DataSpec spec, Func<Tensor, Tensor, Tensor, Tensor> velocity) : ITeacher
{
    public DataSpec Spec => spec;

    public Tensor Velocity(Tensor z, Tensor t, Tensor labels) => velocity(z, t, labels);

    public IReadOnlyList<TokenFeatureSpec> FeatureBlocks => [];

    public IReadOnlyList<Tensor> TokenFeatures(Tensor z, Tensor t, Tensor labels, IReadOnlyList<int> blocks) => throw new NotSupportedException();

    public VelocityNetwork? Network => null;

    public VelocityNetwork CreateTrainableCopy() => throw new NotSupportedException();

    public AverageVelocityNetwork CreateStudent() => throw new NotSupportedException();
}

internal static class Values
{
    public static double[] Of(Tensor t) => t.to_type(ScalarType.Float64).cpu().data<double>().ToArray();

    public static double Scalar(Tensor t) => t.to_type(ScalarType.Float64).cpu().item<double>();
}
