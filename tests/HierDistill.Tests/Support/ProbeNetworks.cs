using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace HierDistill.Tests.Support;

/// <summary>A student defined by a formula (no parameters but one dummy, so optimisers and clones work).</summary>
internal sealed class FormulaStudent(Func<Tensor, Tensor, Tensor, Tensor, Tensor> formula) : AverageVelocityNetwork("formula")
{
    public int Calls { get; private set; }

    public override Tensor AverageVelocity(Tensor z, Tensor r, Tensor t, Tensor labels)
    {
        Calls++;
        return formula(z, r, t, labels);
    }

    public override AverageVelocityNetwork Clone() => new FormulaStudent(formula);
}

/// <summary>A velocity network defined by a formula, counting calls.</summary>
internal sealed class FormulaVelocity(Func<Tensor, Tensor, Tensor, Tensor> formula) : VelocityNetwork("formula")
{
    public int Calls { get; private set; }

    public override Tensor Velocity(Tensor z, Tensor t, Tensor labels)
    {
        Calls++;
        return formula(z, t, labels);
    }

    public override VelocityNetwork Clone() => new FormulaVelocity(formula);

    public override AverageVelocityNetwork CreateStudent() => new FormulaStudent((z, r, t, c) => formula(z, t, c));
}
