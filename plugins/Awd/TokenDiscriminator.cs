using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Awd;

/// <summary>The heads of a token discriminator, one per tapped teacher block.</summary>
internal sealed class DiscriminatorHeads : nn.Module
{
    private readonly ModuleList<TokenHead> heads;

    public DiscriminatorHeads(IReadOnlyList<TokenFeatureSpec> blocks, long dim, int queries, bool attention, bool spectralNorm) : base("discriminator")
    {
        heads = new ModuleList<TokenHead>(blocks.Select(b => new TokenHead($"heads.{b.Block}", b.Channels, dim, queries, attention, spectralNorm)).ToArray());
        RegisterComponents();
    }

    public IReadOnlyList<TokenHead> Heads => heads.ToList();
}

/// <summary>
/// <c>awd</c> (HD's Adaptive Weighted Discriminator) or <c>gap</c> (global average pooling): heads over the frozen
/// teacher's token features of noised samples; logits <c>[B, H]</c>.
/// </summary>
internal sealed class TokenDiscriminator : IDiscriminator
{
    private readonly GapOptions _options;
    private readonly DiscriminatorHeads _heads;
    private readonly bool _attention;

    public TokenDiscriminator(GapOptions options, ITeacher teacher, bool attention)
    {
        _options = options;
        _attention = attention;
        var available = teacher.FeatureBlocks;
        if (available.Count == 0)
            throw new InvalidOperationException("the teacher exposes no token features; a token discriminator needs a network teacher (e.g. mlp).");
        var chosen = options.Blocks.Count == 0
            ? available.ToList()
            : options.Blocks.Select(b => available.FirstOrDefault(a => a.Block == b)
                ?? throw new ArgumentException($"block {b} is not a teacher feature block; available: {string.Join(", ", available.Select(a => a.Block))}.")).ToList();
        FeatureBlocks = chosen.Select(c => c.Block).ToList();
        _heads = new DiscriminatorHeads(chosen, options.HeadDim, (options as AwdOptions)?.Queries ?? 1, attention, options.SpectralNorm);
        Heads = new TrainableModule("discriminator", _heads, options.Optimizer.ToSettings());
    }

    public TrainableModule Heads { get; }

    public IReadOnlyList<int> FeatureBlocks { get; }

    public Tensor SampleTimes(long batchSize, Device device) => _options.TimeLaw == DiscriminatorTimeLaw.Uniform
        ? TimeSampling.Uniform(batchSize, 0, 1, device)
        : TimeSampling.LogitNormal(batchSize, _options.TimeMean, _options.TimeStd, device);

    public DiscriminatorOutput Forward(IReadOnlyList<Tensor> features, Tensor labels)
    {
        var heads = _heads.Heads;
        if (features.Count != heads.Count)
            throw new ArgumentException($"expected token features of {heads.Count} block(s) ({string.Join(", ", FeatureBlocks)}), got {features.Count}.");
        var logits = new List<Tensor>();
        var entropies = new List<Tensor>();
        for (int i = 0; i < heads.Count; i++)
        {
            var (logit, attention) = heads[i].Forward(features[i]);
            logits.Add(logit);
            if (_attention)
            {
                long n = attention.shape[^1];
                var h = -(attention * (attention + 1e-12).log()).sum(-1) / Math.Log(Math.Max(2, n)); // [B, M], in [0, 1]
                entropies.Add(h.mean());
            }
        }
        var diagnostics = new Dictionary<string, Tensor>();
        if (entropies.Count > 0) diagnostics["attention_entropy"] = stack(entropies).mean().detach();
        return new DiscriminatorOutput(stack(logits, 1), diagnostics); // [B, H]
    }

    public LossBreakdown DiscriminatorLoss(Tensor realLogits, Tensor fakeLogits) =>
        AdversarialLoss.Discriminator(_options.Loss, realLogits, fakeLogits);

    public LossBreakdown GeneratorLoss(Tensor fakeLogits) => AdversarialLoss.Generator(_options.Loss, fakeLogits);
}
