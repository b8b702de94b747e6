using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Teachers.Networks;

/// <summary>One residual block: <c>h + fc2(SiLU(fc1(SiLU(h)) + cond(SiLU(c))))</c>.</summary>
internal sealed class MlpBlock : nn.Module
{
    private readonly Linear fc1, fc2, cond;

    public MlpBlock(string name, long width, long condDim) : base(name)
    {
        fc1 = nn.Linear(width, width);
        fc2 = nn.Linear(width, width);
        cond = nn.Linear(condDim, width);
        RegisterComponents();
    }

    /// <summary>h <c>[B, W]</c>, c <c>[B, E]</c>; under autocast the residual stream h stays float32.</summary>
    public Tensor Forward(Tensor h, Tensor c) =>
        h + Autocast.Float32(Autocast.Linear(fc2, nn.functional.silu(Autocast.Linear(fc1, nn.functional.silu(h)) + Autocast.Linear(cond, nn.functional.silu(c)))));
}

/// <summary>
/// The MLP velocity network body: <c>x_embedder</c> (D → W), conditioning <c>c = t_embedder(t) + y_embedder(label)
/// [+ h_embedder(t - r)]</c>, residual <c>blocks</c>, <c>final_layer</c> (W → D, zero-initialised as in DiT).
/// </summary>
internal sealed class MlpCore : VelocityCore
{
    private readonly Linear x_embedder;
    private readonly TimestepEmbedder t_embedder;
    private readonly TimestepEmbedder? h_embedder;
    private readonly LabelEmbedder y_embedder;
    private readonly ModuleList<MlpBlock> blocks;
    private readonly Linear final_layer;

    public MlpCore(string name, MlpOptions o, DataSpec spec, bool withTimeGap) : base(name)
    {
        if (spec.SampleShape.Length != 1)
            throw new ArgumentException($"the mlp teacher needs flat samples [D]; the data has sample shape [{string.Join(", ", spec.SampleShape)}].");
        Options = o;
        Spec = spec;
        long d = spec.SampleShape[0];
        x_embedder = nn.Linear(d, o.Hidden);
        t_embedder = new TimestepEmbedder("t_embedder", o.EmbeddingDim, o.FrequencyDim, o.MaxPeriod);
        if (withTimeGap) h_embedder = new TimestepEmbedder("h_embedder", o.EmbeddingDim, o.FrequencyDim, o.MaxPeriod);
        y_embedder = new LabelEmbedder("y_embedder", spec.NumClasses, o.EmbeddingDim);
        blocks = new ModuleList<MlpBlock>(Enumerable.Range(0, o.Depth).Select(i => new MlpBlock($"blocks.{i}", o.Hidden, o.EmbeddingDim)).ToArray());
        final_layer = nn.Linear(o.Hidden, d);
        RegisterComponents();
        using var _ = no_grad();
        final_layer.weight!.zero_();
        final_layer.bias!.zero_();
        h_embedder?.ZeroOutput();
    }

    public MlpOptions Options { get; }

    public DataSpec Spec { get; }

    public bool HasTimeGap => h_embedder is not null;

    public override int Depth => Options.Depth;

    /// <summary>
    /// Runs the network. z <c>[B, D]</c>, t <c>[B]</c>, gap <c>[B]</c> (t - r, students only) or null, labels <c>[B]</c>.
    /// Collects the outputs of the blocks in <paramref name="taps"/> as tokens <c>[B, W/C, C]</c>.
    /// </summary>
    public override Tensor Run(Tensor z, Tensor t, Tensor? gap, Tensor labels, IReadOnlyList<int>? taps, List<Tensor>? features)
    {
        Shapes.Require(z, "z", -1, Spec.SampleShape[0]);
        Shapes.Require(t, "t", z.shape[0]);
        Shapes.Require(labels, "labels", z.shape[0]);
        var c = t_embedder.forward(t.to_type(z.dtype)) + y_embedder.forward(labels);        // [B, E]
        if (h_embedder is not null && gap is not null) c = c + h_embedder.forward(gap.to_type(z.dtype));
        var h = Autocast.Float32(Autocast.Linear(x_embedder, z));                           // [B, W]
        for (int i = 0; i < blocks.Count; i++)
        {
            h = blocks[i].Forward(h, c);
            if (taps is not null && features is not null && taps.Contains(i))
                features.Add(h.reshape(h.shape[0], Options.Hidden / Options.TokenChannels, Options.TokenChannels)); // [B, W] -> [B, N, C]
        }
        return Autocast.Float32(Autocast.Linear(final_layer, nn.functional.silu(h)));      // [B, D]
    }

    public override IReadOnlyList<TokenFeatureSpec> FeatureBlocks =>
        Enumerable.Range(0, Options.Depth).Select(i => new TokenFeatureSpec(i, Options.Hidden / Options.TokenChannels, Options.TokenChannels)).ToList();
}

/// <summary>The <c>mlp</c> teacher network <c>v_θ(z, t | c)</c>.</summary>
internal sealed class MlpVelocityNetwork(MlpOptions options, DataSpec spec)
    : CoreVelocityNetwork<MlpCore>("mlp_velocity", new MlpCore("net", options, spec, withTimeGap: false))
{
    protected override CoreVelocityNetwork<MlpCore> New() => new MlpVelocityNetwork(options, spec);

    protected override AverageVelocityNetwork NewStudent() => new MlpAverageVelocityNetwork(options, spec);
}

/// <summary>The <c>mlp</c> student <c>u_θ(z, r, t | c)</c>: the teacher's network plus a zero-initialised <c>t - r</c> embedder.</summary>
internal sealed class MlpAverageVelocityNetwork(MlpOptions options, DataSpec spec)
    : CoreAverageVelocityNetwork<MlpCore>("mlp_average_velocity", new MlpCore("net", options, spec, withTimeGap: true))
{
    protected override CoreAverageVelocityNetwork<MlpCore> New() => new MlpAverageVelocityNetwork(options, spec);
}
