using HierDistill.Abstractions.Numerics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Teachers.Networks;

/// <summary>
/// Sinusoidal time embedding followed by a two-layer MLP (DiT's <c>TimestepEmbedder</c>, Peebles &amp; Xie 2023),
/// fed with t ∈ [0, 1] unscaled (MeanFlow's choice, method.md §1). Field names mirror DiT (<c>mlp.0</c>, <c>mlp.2</c>).
/// </summary>
internal sealed class TimestepEmbedder : nn.Module<Tensor, Tensor>
{
    private readonly Sequential mlp;
    private readonly int _frequencyDim;
    private readonly double _maxPeriod;

    public TimestepEmbedder(string name, long hidden, int frequencyDim, double maxPeriod) : base(name)
    {
        _frequencyDim = frequencyDim;
        _maxPeriod = maxPeriod;
        mlp = nn.Sequential(("0", nn.Linear(frequencyDim, hidden)), ("1", nn.SiLU()), ("2", nn.Linear(hidden, hidden)));
        RegisterComponents();
    }

    /// <summary>
    /// <c>[cos(t f_i), sin(t f_i)]</c> with <c>f_i = exp(-ln(maxPeriod) i / half)</c>, i = 0..half-1 (DiT's
    /// <c>timestep_embedding</c>): t <c>[B]</c> → <c>[B, dim]</c>.
    /// </summary>
    public static Tensor Frequencies(Tensor t, int dim, double maxPeriod)
    {
        // In t's own dtype: a float64 network (finite-difference JVPs) must see t at full precision.
        int half = dim / 2;
        var freqs = exp(-Math.Log(maxPeriod) * arange(half, dtype: t.dtype, device: t.device) / half); // [half]
        var args = t.unsqueeze(1) * freqs.unsqueeze(0);                                                 // [B, half]
        return cat([cos(args), sin(args)], 1);                                                           // [B, 2 half]
    }

    public override Tensor forward(Tensor t) => Autocast.Float32(Autocast.Linear((Linear)mlp[2],
        nn.functional.silu(Autocast.Linear((Linear)mlp[0], Frequencies(t, _frequencyDim, _maxPeriod).to_type(FirstWeightType)))));

    private ScalarType FirstWeightType => ((Linear)mlp[0]).weight!.dtype;

    /// <summary>Zeroes the output layer so the embedding is exactly 0 (the student's <c>t - r</c> embedder at initialisation).</summary>
    public void ZeroOutput()
    {
        using var _ = no_grad();
        var last = (Linear)mlp[2];
        last.weight!.zero_();
        last.bias!.zero_();
    }
}

/// <summary>Class-label embedding with one extra row for the null label ∅ (DiT's <c>LabelEmbedder</c> with CFG).</summary>
internal sealed class LabelEmbedder : nn.Module<Tensor, Tensor>
{
    private readonly Embedding embedding_table;
    private readonly int _numClasses;

    public LabelEmbedder(string name, int numClasses, long hidden) : base(name)
    {
        _numClasses = numClasses;
        embedding_table = nn.Embedding(numClasses + 1, hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor labels)
    {
        if (labels.dtype != ScalarType.Int64) throw new ArgumentException($"labels must be int64, got {labels.dtype}.");
        return embedding_table.forward(labels);
    }

    public int NumClasses => _numClasses;
}
