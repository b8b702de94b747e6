using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Awd;

/// <summary>
/// A linear layer with spectral normalisation (Miyato et al. 2018, "Spectral Normalization for GANs", Alg. 1):
/// <c>W_SN = W / σ(W)</c>, σ estimated by power iteration, <c>σ ≈ uᵀ W v</c>. The first use (training or eval)
/// runs 15 iterations from random vectors; each training forward then runs one; eval runs none, so eval is
/// deterministic. <c>u</c>, <c>v</c> and the initialised flag are buffers, saved and loaded with the module.
/// With <c>normalize: false</c> it is a plain linear layer (the same parameters and buffers, for the ablation).
/// </summary>
internal sealed class SpectralNormLinear : nn.Module<Tensor, Tensor>
{
    private const int InitialIterations = 15;
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly Tensor u;
    private readonly Tensor v;
    private readonly Tensor initialized;
    private bool _initialized;
    private readonly bool _normalize;

    public SpectralNormLinear(string name, long inFeatures, long outFeatures, bool normalize = true) : base(name)
    {
        _normalize = normalize;
        using var plain = nn.Linear(inFeatures, outFeatures); // its default (Kaiming-uniform) initialisation
        weight = nn.Parameter(plain.weight!.detach().clone());
        bias = nn.Parameter(plain.bias!.detach().clone());
        u = nn.functional.normalize(randn(outFeatures), dim: 0);
        v = nn.functional.normalize(randn(inFeatures), dim: 0);
        initialized = zeros(1);
        RegisterComponents();
    }

    public long InFeatures => weight.shape[1];

    public long OutFeatures => weight.shape[0];

    /// <summary>The raw weight <c>[out, in]</c> (tests set it).</summary>
    public Parameter Weight => weight;

    public override Tensor forward(Tensor input) =>
        nn.functional.linear(input, _normalize ? NormalizedWeight(update: training) : weight, bias);

    /// <summary>
    /// <c>W / σ</c>; <paramref name="update"/> runs one power iteration first (training). The first call ever runs
    /// the initial iterations regardless.
    /// </summary>
    public Tensor NormalizedWeight(bool update)
    {
        using (no_grad())
        {
            // The flag buffer is read once: after loading saved u and v (a checkpoint), training continues with one
            // iteration per forward exactly as if the module had never been saved.
            if (!_initialized && initialized.cpu().item<float>() > 0) _initialized = true;
            if (!_initialized)
            {
                PowerIterate(InitialIterations);
                initialized.fill_(1);
                _initialized = true;
            }
            else if (update)
            {
                PowerIterate(1);
            }
        }
        // u and v enter as constants (copies, so later in-place power iterations cannot invalidate this graph).
        var sigma = u.clone().dot(weight.mv(v.clone())); // gradient flows through W only
        return weight / sigma;
    }

    private void PowerIterate(int iterations)
    {
        var w = weight.detach();
        for (int i = 0; i < iterations; i++)
        {
            v.copy_(nn.functional.normalize(w.t().mv(u), dim: 0, eps: 1e-12));
            u.copy_(nn.functional.normalize(w.mv(v), dim: 0, eps: 1e-12));
        }
    }
}
