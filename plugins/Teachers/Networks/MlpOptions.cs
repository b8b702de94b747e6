using System.ComponentModel.DataAnnotations;

namespace HierDistill.Plugins.Teachers.Networks;

/// <summary>Options of the <c>mlp</c> teacher: a residual MLP velocity network for low-dimensional data.</summary>
public sealed class MlpOptions : IValidatableObject
{
    /// <summary>Width W of the hidden layers. <value>Default 256.</value></summary>
    [Range(8, 65536)]
    public int Hidden { get; set; } = 256;

    /// <summary>Number of residual blocks (each a tappable feature block). <value>Default 4.</value></summary>
    [Range(1, 64)]
    public int Depth { get; set; } = 4;

    /// <summary>Width of the time and label embeddings. <value>Default 128.</value></summary>
    [Range(8, 65536)]
    public int EmbeddingDim { get; set; } = 128;

    /// <summary>Number of sinusoidal frequencies (even). <value>Default 64.</value></summary>
    [Range(2, 4096)]
    public int FrequencyDim { get; set; } = 64;

    /// <summary>Longest period of the sinusoidal time embedding (t ∈ [0, 1] is fed unscaled). <value>Default 10000.</value></summary>
    [Range(1.0, 1e9)]
    public double MaxPeriod { get; set; } = 10000;

    /// <summary>Channels C per token when a block's hidden vector [B, W] is read as tokens [B, W/C, C]. <value>Default 32.</value></summary>
    [Range(1, 65536)]
    public int TokenChannels { get; set; } = 32;

    /// <inheritdoc/>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Hidden % TokenChannels != 0)
            yield return new ValidationResult($"must divide hidden ({Hidden}).", [nameof(TokenChannels)]);
        if (FrequencyDim % 2 != 0)
            yield return new ValidationResult("must be even.", [nameof(FrequencyDim)]);
    }
}
