using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Teachers.Networks;

/// <summary>
/// A network body shared by a teacher <c>v(z, t | c)</c> and its student <c>u(z, r, t | c)</c> (the student's body has
/// an extra, zero-initialised <c>t - r</c> embedder): the MLP and DiT cores.
/// </summary>
internal abstract class VelocityCore(string name) : nn.Module(name)
{
    /// <summary>Number of blocks whose token features can be tapped.</summary>
    public abstract int Depth { get; }

    /// <summary>Token shapes of every block.</summary>
    public abstract IReadOnlyList<TokenFeatureSpec> FeatureBlocks { get; }

    /// <summary>
    /// Runs the body on z <c>[B, ...S]</c>, t <c>[B]</c>, gap <c>[B]</c> (t - r, students only; null for a teacher) and labels
    /// <c>[B]</c>; appends the token features <c>[B, N, C]</c> of the blocks in <paramref name="taps"/> (ascending, once each)
    /// to <paramref name="features"/>. Returns the velocity <c>[B, ...S]</c>.
    /// </summary>
    public abstract Tensor Run(Tensor z, Tensor t, Tensor? gap, Tensor labels, IReadOnlyList<int>? taps, List<Tensor>? features);
}

/// <summary>
/// A teacher network over a <see cref="VelocityCore"/>: velocity, token features, clone and the student with the same
/// body (the teacher's weights, a zero <c>t - r</c> embedder). The state-dict names are those of the body under <c>net.</c>.
/// </summary>
internal abstract class CoreVelocityNetwork<TCore> : VelocityNetwork where TCore : VelocityCore
{
    protected readonly TCore net;

    protected CoreVelocityNetwork(string name, TCore core) : base(name)
    {
        net = core;
        register_module("net", net);
    }

    /// <summary>A new teacher network of the same configuration (random weights).</summary>
    protected abstract CoreVelocityNetwork<TCore> New();

    /// <summary>A new student network of the same configuration (random weights, zero <c>t - r</c> embedder).</summary>
    protected abstract AverageVelocityNetwork NewStudent();

    public override Tensor Velocity(Tensor z, Tensor t, Tensor labels) => net.Run(z, t, null, labels, null, null);

    public override IReadOnlyList<TokenFeatureSpec> FeatureBlocks => net.FeatureBlocks;

    public override IReadOnlyList<Tensor> TokenFeatures(Tensor z, Tensor t, Tensor labels, IReadOnlyList<int> blocks)
    {
        foreach (var b in blocks)
            if (b < 0 || b >= net.Depth)
                throw new ArgumentOutOfRangeException(nameof(blocks), b, $"feature block must be in 0..{net.Depth - 1}.");
        var features = new List<Tensor>();
        net.Run(z, t, null, labels, blocks, features);
        return blocks.Select(b => features[blocks.Where(x => x < b).Distinct().Count()]).ToList();
    }

    public override VelocityNetwork Clone()
    {
        var copy = New();
        copy.to(this.DeviceOf());
        copy.CopyWeightsFrom(this);
        return copy;
    }

    public override AverageVelocityNetwork CreateStudent()
    {
        var student = NewStudent();
        student.to(this.DeviceOf());
        student.CopyWeightsFrom(this, strict: false);
        return student;
    }
}

/// <summary>A student network <c>u_θ(z, r, t | c)</c> over a <see cref="VelocityCore"/> built with the <c>t - r</c> embedder.</summary>
internal abstract class CoreAverageVelocityNetwork<TCore> : AverageVelocityNetwork where TCore : VelocityCore
{
    protected readonly TCore net;

    protected CoreAverageVelocityNetwork(string name, TCore core) : base(name)
    {
        net = core;
        register_module("net", net);
    }

    /// <summary>A new student network of the same configuration (random weights).</summary>
    protected abstract CoreAverageVelocityNetwork<TCore> New();

    public override Tensor AverageVelocity(Tensor z, Tensor r, Tensor t, Tensor labels)
    {
        Shapes.Require(r, "r", z.shape[0]);
        return net.Run(z, t, t - r, labels, null, null);
    }

    public override AverageVelocityNetwork Clone()
    {
        var copy = New();
        copy.to(this.DeviceOf());
        copy.CopyWeightsFrom(this);
        return copy;
    }
}
