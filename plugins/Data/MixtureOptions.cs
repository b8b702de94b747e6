using System.ComponentModel.DataAnnotations;

namespace HierDistill.Plugins.Data;

/// <summary>Options of the <c>mixture2d</c> data source: labelled 2-D Gaussian mixtures.</summary>
public sealed class MixtureOptions
{
    /// <summary>
    /// <c>ring8</c>: 8 modes on a circle, two classes of 4 alternating modes; <c>grid25</c>: a 5×5 grid, two
    /// classes in a checkerboard. <value>Default "ring8".</value>
    /// </summary>
    [Required, RegularExpression("^(ring8|grid25)$", ErrorMessage = "must be ring8 or grid25")]
    public string Preset { get; set => field = value?.ToLowerInvariant() is "ring8" or "grid25" ? value.ToLowerInvariant() : value!; } = "ring8";

    /// <summary>Circle radius of ring8. <value>Default 4.</value></summary>
    [Range(0.01, 1000.0)]
    public double Radius { get; set; } = 4.0;

    /// <summary>Distance between neighbouring modes of grid25 (the grid is centred). <value>Default 2.</value></summary>
    [Range(0.01, 1000.0)]
    public double Spacing { get; set; } = 2.0;

    /// <summary>Standard deviation of every mode (mode width). <value>Default 0.1.</value></summary>
    [Range(1e-6, 100.0)]
    public double ModeStd { get; set; } = 0.1;
}
