using System.ComponentModel.DataAnnotations;
using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Teachers.Networks;

/// <summary>Size of a DiT: width, depth, attention heads and patch size.</summary>
/// <param name="Hidden">Token width C.</param>
/// <param name="Depth">Number of transformer blocks.</param>
/// <param name="Heads">Attention heads (must divide <paramref name="Hidden"/>).</param>
/// <param name="Patch">Patch size p (must divide the image size).</param>
public sealed record DiTSize(int Hidden, int Depth, int Heads, int Patch);

/// <summary>Named DiT sizes (Peebles &amp; Xie 2023, Table 1, plus tiny ones for CPU runs).</summary>
public static class DiTPresets
{
    /// <summary>Every preset by name.</summary>
    public static readonly IReadOnlyDictionary<string, DiTSize> All = new Dictionary<string, DiTSize>
    {
        ["DiT-XT/4"] = new(64, 4, 4, 4),
        ["DiT-T/4"] = new(128, 4, 4, 4),
        ["DiT-T/2"] = new(128, 4, 4, 2),
        ["DiT-S/4"] = new(384, 12, 6, 4),
        ["DiT-S/2"] = new(384, 12, 6, 2),
        ["DiT-B/4"] = new(768, 12, 12, 4),
        ["DiT-B/2"] = new(768, 12, 12, 2),
    };
}

/// <summary>Options of the <c>dit</c> teacher: a diffusion transformer velocity network for images.</summary>
public sealed class DiTOptions : IValidatableObject
{
    /// <summary>Named size (DiT-XT/4, DiT-T/4, DiT-T/2, DiT-S/4, DiT-S/2, DiT-B/4, DiT-B/2). <value>Default "DiT-T/4".</value></summary>
    /// <remarks>Matched without regard to case (<c>dit-s/2</c> reads as <c>DiT-S/2</c>).</remarks>
    [Required]
    public string Preset
    {
        get;
        set => field = DiTPresets.All.Keys.FirstOrDefault(k => k.Equals(value, StringComparison.OrdinalIgnoreCase)) ?? value;
    } = "DiT-T/4";

    /// <summary>Overrides the preset's width. <value>Default: the preset's.</value></summary>
    [Range(8, 8192)]
    public int? Hidden { get; set; }

    /// <summary>Overrides the preset's depth. <value>Default: the preset's.</value></summary>
    [Range(1, 128)]
    public int? Depth { get; set; }

    /// <summary>Overrides the preset's number of heads. <value>Default: the preset's.</value></summary>
    [Range(1, 128)]
    public int? Heads { get; set; }

    /// <summary>Overrides the preset's patch size. <value>Default: the preset's.</value></summary>
    [Range(1, 64)]
    public int? Patch { get; set; }

    /// <summary>Width of the MLP in a block relative to the token width. <value>Default 4.</value></summary>
    [Range(0.25, 16.0)]
    public double MlpRatio { get; set; } = 4.0;

    /// <summary>Number of sinusoidal time frequencies (DiT: 256). <value>Default 256.</value></summary>
    [Range(2, 4096)]
    public int FrequencyDim { get; set; } = 256;

    /// <summary>Longest period of the time embedding (t ∈ [0, 1] is fed unscaled). <value>Default 10000.</value></summary>
    [Range(1.0, 1e9)]
    public double MaxPeriod { get; set; } = 10000;

    /// <summary>The effective size.</summary>
    public DiTSize Size
    {
        get
        {
            var p = DiTPresets.All[Preset];
            return new DiTSize(Hidden ?? p.Hidden, Depth ?? p.Depth, Heads ?? p.Heads, Patch ?? p.Patch);
        }
    }

    /// <inheritdoc/>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!DiTPresets.All.ContainsKey(Preset))
        {
            yield return new ValidationResult($"'{Preset}' is not a DiT preset; use one of {string.Join(", ", DiTPresets.All.Keys)}.", [nameof(Preset)]);
            yield break;
        }
        var s = Size;
        if (s.Hidden % s.Heads != 0) yield return new ValidationResult($"heads ({s.Heads}) must divide hidden ({s.Hidden}).", [nameof(Heads)]);
        if (FrequencyDim % 2 != 0) yield return new ValidationResult("must be even.", [nameof(FrequencyDim)]);
    }
}

/// <summary>Image to patch tokens: <c>proj</c> is a p×p convolution with stride p (DiT's PatchEmbed).</summary>
internal sealed class PatchEmbed : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d proj;

    public PatchEmbed(string name, long channels, long hidden, long patch) : base(name)
    {
        proj = nn.Conv2d(channels, hidden, patch, stride: patch);
        RegisterComponents();
        using var _ = no_grad();
        nn.init.xavier_uniform_(proj.weight!.view(hidden, -1)); // as a linear layer (DiT's initialize_weights)
        nn.init.zeros_(proj.bias!);
    }

    public override Tensor forward(Tensor x) => Autocast.Conv2d(proj, x).flatten(2).transpose(1, 2); // [B, C, H, W] -> [B, C', H/p, W/p] -> [B, N, C']
}

/// <summary>
/// Multi-head self-attention written with <c>bmm</c> and <c>softmax</c> so that it is twice differentiable (the
/// MeanFlow JVP by double backward; fused attention kernels have no double backward).
/// </summary>
internal sealed class Attention : nn.Module<Tensor, Tensor>
{
    private readonly Linear qkv;
    private readonly Linear proj;
    private readonly int _heads;

    public Attention(string name, int hidden, int heads) : base(name)
    {
        _heads = heads;
        qkv = nn.Linear(hidden, 3 * hidden);
        proj = nn.Linear(hidden, hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], n = x.shape[1], c = x.shape[2], d = c / _heads;
        var parts = Autocast.Linear(qkv, x).reshape(b, n, 3, _heads, d).permute(2, 0, 3, 1, 4); // [B, N, 3C] -> [3, B, H, N, D]
        var q = parts[0].reshape(b * _heads, n, d);                                     // [B H, N, D]
        var k = parts[1].reshape(b * _heads, n, d);
        var v = parts[2].reshape(b * _heads, n, d);
        // Scores in the compute dtype, softmax in float32 (autocast's rule), probabilities back to the compute dtype.
        var attention = Autocast.Compute(Autocast.Float32(q.bmm(k.transpose(1, 2)) * (1.0 / Math.Sqrt(d))).softmax(-1)); // [B H, N, N]
        var y = attention.bmm(v).reshape(b, _heads, n, d).transpose(1, 2).reshape(b, n, c); // [B H, N, D] -> [B, N, C]
        return Autocast.Linear(proj, y);
    }
}

/// <summary>The block MLP: <c>fc2(GELU_tanh(fc1(x)))</c>.</summary>
internal sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Linear fc2;

    public Mlp(string name, int hidden, int inner) : base(name)
    {
        fc1 = nn.Linear(hidden, inner);
        fc2 = nn.Linear(inner, hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Autocast.Linear(fc2, nn.functional.gelu(Autocast.Linear(fc1, x), GELU.Approximate.tanh));
}

/// <summary>A DiT block with adaLN-Zero conditioning (Peebles &amp; Xie 2023, Fig. 3).</summary>
internal sealed class DiTBlock : nn.Module
{
    private readonly LayerNorm norm1;
    private readonly Attention attn;
    private readonly LayerNorm norm2;
    private readonly Mlp mlp;
    private readonly Sequential adaLN_modulation;

    public DiTBlock(string name, int hidden, int heads, double mlpRatio) : base(name)
    {
        norm1 = nn.LayerNorm(hidden, eps: 1e-6, elementwise_affine: false);
        attn = new Attention("attn", hidden, heads);
        norm2 = nn.LayerNorm(hidden, eps: 1e-6, elementwise_affine: false);
        mlp = new Mlp("mlp", hidden, (int)(hidden * mlpRatio));
        adaLN_modulation = nn.Sequential(("0", nn.SiLU()), ("1", nn.Linear(hidden, 6 * hidden)));
        RegisterComponents();
    }

    public Linear Modulation => (Linear)adaLN_modulation[1];

    /// <summary>x <c>[B, N, C]</c>, c <c>[B, C]</c>. Under autocast the residual stream x stays float32.</summary>
    public Tensor Forward(Tensor x, Tensor c)
    {
        var m = Autocast.Linear(Modulation, nn.functional.silu(c)).chunk(6, 1); // 6 × [B, C]
        x = x + Autocast.Float32(m[2].unsqueeze(1) * attn.forward(DiTCore.Modulate(norm1.forward(Autocast.Float32(x)), m[0], m[1])));
        return x + Autocast.Float32(m[5].unsqueeze(1) * mlp.forward(DiTCore.Modulate(norm2.forward(Autocast.Float32(x)), m[3], m[4])));
    }
}

/// <summary>The final layer: adaLN-modulated LayerNorm, then a linear map of each token to its p×p×channels patch.</summary>
internal sealed class FinalLayer : nn.Module
{
    private readonly LayerNorm norm_final;
    private readonly Linear linear;
    private readonly Sequential adaLN_modulation;

    public FinalLayer(string name, int hidden, int patch, long channels) : base(name)
    {
        norm_final = nn.LayerNorm(hidden, eps: 1e-6, elementwise_affine: false);
        linear = nn.Linear(hidden, patch * patch * channels);
        adaLN_modulation = nn.Sequential(("0", nn.SiLU()), ("1", nn.Linear(hidden, 2 * hidden)));
        RegisterComponents();
    }

    public Linear Output => linear;

    public Linear Modulation => (Linear)adaLN_modulation[1];

    public Tensor Forward(Tensor x, Tensor c)
    {
        var m = Autocast.Linear(Modulation, nn.functional.silu(c)).chunk(2, 1);
        return Autocast.Float32(Autocast.Linear(linear, DiTCore.Modulate(norm_final.forward(Autocast.Float32(x)), m[0], m[1])));
    }
}

/// <summary>
/// The DiT body (Peebles &amp; Xie 2023) predicting a velocity: patch tokens plus fixed 2-D sin-cos position embedding,
/// conditioning <c>c = t_embedder(t) + y_embedder(label) [+ h_embedder(t - r)]</c>, adaLN-Zero blocks, final layer,
/// unpatchify. Field names mirror the reference implementation, so state dicts map 1:1.
/// </summary>
internal sealed class DiTCore : VelocityCore
{
    private readonly PatchEmbed x_embedder;
    private readonly TimestepEmbedder t_embedder;
    private readonly TimestepEmbedder? h_embedder;
    private readonly LabelEmbedder y_embedder;
    private readonly Tensor pos_embed;
    private readonly ModuleList<DiTBlock> blocks;
    private readonly FinalLayer final_layer;
    private readonly int _grid;

    public DiTCore(string name, DiTOptions options, DataSpec spec, bool withTimeGap) : base(name)
    {
        if (spec.SampleShape.Length != 3)
            throw new ArgumentException($"the dit teacher needs images [C, H, W]; the data has sample shape [{string.Join(", ", spec.SampleShape)}].");
        var size = options.Size;
        long channels = spec.SampleShape[0], height = spec.SampleShape[1], width = spec.SampleShape[2];
        if (height != width || height % size.Patch != 0)
            throw new ArgumentException($"the dit teacher needs square images whose size is a multiple of the patch ({size.Patch}); the data is {height}×{width}.");
        Options = options;
        Spec = spec;
        Size = size;
        _grid = (int)(height / size.Patch);
        x_embedder = new PatchEmbed("x_embedder", channels, size.Hidden, size.Patch);
        t_embedder = new TimestepEmbedder("t_embedder", size.Hidden, options.FrequencyDim, options.MaxPeriod);
        if (withTimeGap) h_embedder = new TimestepEmbedder("h_embedder", size.Hidden, options.FrequencyDim, options.MaxPeriod);
        y_embedder = new LabelEmbedder("y_embedder", spec.NumClasses, size.Hidden);
        pos_embed = SinCosPositionEmbedding(size.Hidden, _grid).unsqueeze(0); // [1, N, C], fixed
        blocks = new ModuleList<DiTBlock>(Enumerable.Range(0, size.Depth).Select(i => new DiTBlock($"blocks.{i}", size.Hidden, size.Heads, options.MlpRatio)).ToArray());
        final_layer = new FinalLayer("final_layer", size.Hidden, size.Patch, channels);
        RegisterComponents();
        InitializeWeights();
    }

    public DiTOptions Options { get; }

    public DataSpec Spec { get; }

    public DiTSize Size { get; }

    public override int Depth => Size.Depth;

    public override IReadOnlyList<TokenFeatureSpec> FeatureBlocks =>
        Enumerable.Range(0, Size.Depth).Select(i => new TokenFeatureSpec(i, (long)_grid * _grid, Size.Hidden)).ToList();

    /// <summary>DiT's adaLN modulation: <c>x (1 + scale) + shift</c> with per-sample shift and scale <c>[B, C]</c>.</summary>
    public static Tensor Modulate(Tensor x, Tensor shift, Tensor scale) => x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);

    /// <summary>
    /// x <c>[B, C, H, W]</c>, t <c>[B]</c>, gap <c>[B]</c> (t - r) or null, labels <c>[B]</c> → velocity <c>[B, C, H, W]</c>;
    /// collects the outputs <c>[B, N, C]</c> of the blocks in <paramref name="taps"/>.
    /// </summary>
    public override Tensor Run(Tensor x, Tensor t, Tensor? gap, Tensor labels, IReadOnlyList<int>? taps, List<Tensor>? features)
    {
        Shapes.RequireBatchOf(x, "z", Spec.SampleShape);
        Shapes.Require(t, "t", x.shape[0]);
        Shapes.Require(labels, "labels", x.shape[0]);
        var tokens = Autocast.Float32(x_embedder.forward(x)) + pos_embed;                   // [B, N, C]
        var c = t_embedder.forward(t.to_type(x.dtype)) + y_embedder.forward(labels);       // [B, C]
        if (h_embedder is not null && gap is not null) c = c + h_embedder.forward(gap.to_type(x.dtype));
        for (int i = 0; i < blocks.Count; i++)
        {
            tokens = blocks[i].Forward(tokens, c);
            if (taps is not null && features is not null && taps.Contains(i)) features.Add(tokens);
        }
        return Unpatchify(final_layer.Forward(tokens, c));                                  // [B, N, p p C] -> [B, C, H, W]
    }

    private Tensor Unpatchify(Tensor tokens)
    {
        long b = tokens.shape[0], ch = Spec.SampleShape[0];
        int p = Size.Patch, g = _grid;
        return tokens.reshape(b, g, g, p, p, ch)   // [B, h, w, p, p, C]
            .permute(0, 5, 1, 3, 2, 4)            // [B, C, h, p, w, p]
            .reshape(b, ch, g * p, g * p);        // [B, C, H, W]
    }

    /// <summary>DiT's initialisation: Xavier-uniform linear layers, N(0, 0.02) embeddings, adaLN and output layers at zero.</summary>
    private void InitializeWeights()
    {
        using var _ = no_grad();
        foreach (var (name, module) in named_modules())
        {
            if (module is Linear l)
            {
                nn.init.xavier_uniform_(l.weight!);
                if (l.bias is not null) nn.init.zeros_(l.bias);
            }
        }
        foreach (var (name, p) in named_parameters())
        {
            if ((name.StartsWith("t_embedder.mlp.", StringComparison.Ordinal) || name.StartsWith("h_embedder.mlp.", StringComparison.Ordinal))
                && name.EndsWith(".weight", StringComparison.Ordinal))
                nn.init.normal_(p, 0, 0.02);
            if (name == "y_embedder.embedding_table.weight") nn.init.normal_(p, 0, 0.02);
        }
        foreach (var block in blocks)
        {
            nn.init.zeros_(block.Modulation.weight!);
            nn.init.zeros_(block.Modulation.bias!);
        }
        nn.init.zeros_(final_layer.Modulation.weight!);
        nn.init.zeros_(final_layer.Modulation.bias!);
        nn.init.zeros_(final_layer.Output.weight!);
        nn.init.zeros_(final_layer.Output.bias!);
        h_embedder?.ZeroOutput();
    }

    /// <summary>Fixed 2-D sin-cos position embedding (MAE/DiT <c>get_2d_sincos_pos_embed</c>): <c>[grid², dim]</c>.</summary>
    internal static Tensor SinCosPositionEmbedding(int dim, int grid)
    {
        var result = new float[grid * grid * dim];
        int half = dim / 2, quarter = half / 2;
        for (int h = 0; h < grid; h++)
        for (int w = 0; w < grid; w++)
        {
            int row = (h * grid + w) * dim;
            for (int i = 0; i < quarter; i++)
            {
                double omega = 1.0 / Math.Pow(10000, (double)i / quarter);
                // first half: embedding of the column index (DiT meshgrid puts w first), second half: the row index
                result[row + i] = (float)Math.Sin(w * omega);
                result[row + quarter + i] = (float)Math.Cos(w * omega);
                result[row + half + i] = (float)Math.Sin(h * omega);
                result[row + half + quarter + i] = (float)Math.Cos(h * omega);
            }
        }
        return tensor(result, [grid * grid, dim]);
    }
}

/// <summary>The <c>dit</c> teacher network <c>v_θ(z, t | c)</c>.</summary>
internal sealed class DiTVelocityNetwork(DiTOptions options, DataSpec spec)
    : CoreVelocityNetwork<DiTCore>("dit_velocity", new DiTCore("net", options, spec, withTimeGap: false))
{
    public DiTSize Size => net.Size;

    protected override CoreVelocityNetwork<DiTCore> New() => new DiTVelocityNetwork(options, spec);

    protected override AverageVelocityNetwork NewStudent() => new DiTAverageVelocityNetwork(options, spec);
}

/// <summary>The <c>dit</c> student <c>u_θ(z, r, t | c)</c>: the teacher plus a zero-initialised <c>t - r</c> embedder.</summary>
internal sealed class DiTAverageVelocityNetwork(DiTOptions options, DataSpec spec)
    : CoreAverageVelocityNetwork<DiTCore>("dit_average_velocity", new DiTCore("net", options, spec, withTimeGap: true))
{
    protected override CoreAverageVelocityNetwork<DiTCore> New() => new DiTAverageVelocityNetwork(options, spec);
}
