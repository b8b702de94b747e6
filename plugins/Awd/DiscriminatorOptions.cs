using System.ComponentModel.DataAnnotations;
using HierDistill.Abstractions.Contracts;

namespace HierDistill.Plugins.Awd;

/// <summary>Adversarial loss forms.</summary>
public enum AdversarialLossForm
{
    /// <summary>Non-saturating: G = softplus(-D(fake)); D = softplus(D(fake)) + softplus(-D(real)) (Goodfellow et al. 2014).</summary>
    NonSaturating,

    /// <summary>Hinge: G = -D(fake); D = relu(1 - D(real)) + relu(1 + D(fake)) (Lim &amp; Ye 2017).</summary>
    Hinge,
}

/// <summary>Law of the discriminator's noise level s_D.</summary>
public enum DiscriminatorTimeLaw
{
    /// <summary><c>sigmoid(N(mean, std²))</c> (LADD, SANA-Sprint: mean -0.6, std 1).</summary>
    LogitNormal,

    /// <summary>Uniform on [0, 1].</summary>
    Uniform,
}

/// <summary>Options of the <c>gap</c> discriminator (and the common part of <c>awd</c>).</summary>
public class GapOptions
{
    /// <summary>Teacher blocks to tap, one head each (empty: every block). <value>Default: every block.</value></summary>
    public List<int> Blocks { get; set; } = [];

    /// <summary>Width D of a head's token trunk. <value>Default 64.</value></summary>
    [Range(1, 65536)]
    public int HeadDim { get; set; } = 64;

    /// <summary>
    /// Spectral normalisation of the heads' linear layers (Miyato et al. 2018; method.md §3). False makes them plain linear
    /// layers, for the ablation. <value>Default true.</value>
    /// </summary>
    public bool SpectralNorm { get; set; } = true;

    /// <summary>Loss form. <value>Default nonSaturating.</value></summary>
    public AdversarialLossForm Loss { get; set; } = AdversarialLossForm.NonSaturating;

    /// <summary>Law of the noise level s_D of real and fake samples. <value>Default logitNormal.</value></summary>
    public DiscriminatorTimeLaw TimeLaw { get; set; } = DiscriminatorTimeLaw.LogitNormal;

    /// <summary>Mean of the logit-normal noise level. <value>Default -0.6.</value></summary>
    [Range(-10.0, 10.0)]
    public double TimeMean { get; set; } = -0.6;

    /// <summary>Standard deviation of the logit-normal noise level. <value>Default 1.</value></summary>
    [Range(0.01, 10.0)]
    public double TimeStd { get; set; } = 1.0;

    /// <summary>Adam settings of the heads. <value>Default learning rate 1e-4, betas (0.5, 0.999), clip 1.</value></summary>
    public AdamOptions Optimizer { get; set; } = new() { Beta1 = 0.5 };
}

/// <summary>Options of the <c>awd</c> discriminator (Adaptive Weighted Discriminator).</summary>
public sealed class AwdOptions : GapOptions
{
    /// <summary>Number M of learnable queries; the logit averages over them. <value>Default 1.</value></summary>
    [Range(1, 64)]
    public int Queries { get; set; } = 1;
}
