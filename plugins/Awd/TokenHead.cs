using HierDistill.Abstractions.Conventions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Awd;

/// <summary>
/// A discriminator head over one block's tokens F <c>[B, N, C]</c> (method.md §3):
/// <code>
/// H = LN(F);  T = LeakyReLU_0.2(SN-Linear(C→D)(H));  l_i = SN-Linear(D→1)(T_i)
/// AWD: k_i = SN-Linear(D→D)(T_i), a_mi = softmax_i(&lt;q_m, k_i&gt; / sqrt(D)), q learnable [M, D]
/// GAP: a_mi = 1 / N
/// logit = mean_m Σ_i a_mi l_i
/// </code>
/// GAP is AWD with uniform attention; both share this code so that uniform attention gives GAP exactly.
/// </summary>
internal sealed class TokenHead : nn.Module
{
    private readonly LayerNorm norm;
    private readonly SpectralNormLinear trunk;
    private readonly SpectralNormLinear logit;
    private readonly SpectralNormLinear? key;
    private readonly Parameter? query;
    private readonly long _channels;
    private readonly long _dim;

    public TokenHead(string name, long channels, long dim, int queries, bool attention, bool spectralNorm = true) : base(name)
    {
        _channels = channels;
        _dim = dim;
        norm = nn.LayerNorm(channels);
        trunk = new SpectralNormLinear("trunk", channels, dim, spectralNorm);
        logit = new SpectralNormLinear("logit", dim, 1, spectralNorm);
        if (attention)
        {
            key = new SpectralNormLinear("key", dim, dim, spectralNorm);
            query = nn.Parameter(randn(queries, dim) / Math.Sqrt(dim));
        }
        RegisterComponents();
    }

    /// <summary>The learnable queries <c>[M, D]</c> (AWD only).</summary>
    public Parameter? Query => query;

    /// <summary>Logit <c>[B]</c> and attention <c>[B, M, N]</c> for tokens <c>[B, N, C]</c>.</summary>
    public (Tensor Logit, Tensor Attention) Forward(Tensor features)
    {
        Shapes.Require(features, "features", -1, -1, _channels);
        long b = features.shape[0], n = features.shape[1];
        var h = norm.forward(features);
        var tokens = nn.functional.leaky_relu(trunk.forward(h), 0.2);            // [B, N, D]
        var l = logit.forward(tokens).squeeze(-1);                                // [B, N]
        Tensor a;
        if (key is not null && query is not null)
        {
            var k = key.forward(tokens);                                          // [B, N, D]
            var scores = k.reshape(b * n, _dim).mm(query.t())                     // [B N, M]
                .reshape(b, n, query.shape[0]).transpose(1, 2) / Math.Sqrt(_dim); // -> [B, M, N]
            a = scores.softmax(-1);
        }
        else
        {
            a = ones([b, 1, n], dtype: l.dtype, device: l.device) / n;           // [B, 1, N]
        }
        var value = (a * l.unsqueeze(1)).sum(-1).mean([1]);                        // [B]
        return (value, a);
    }
}
