using System.ComponentModel.DataAnnotations;

namespace HierDistill.Plugins.Data;

/// <summary>Options of the <c>fashion-mnist</c> data source.</summary>
public sealed class FashionMnistOptions
{
    /// <summary>
    /// Folder with the four IDX files (<c>train-images-idx3-ubyte</c>, <c>train-labels-idx1-ubyte</c>, <c>t10k-images-idx3-ubyte</c>,
    /// <c>t10k-labels-idx1-ubyte</c>, each raw or <c>.gz</c>). <value>Default "/usr/share/datasets/fashion-mnist" (Debian's dataset-fashion-mnist).</value>
    /// </summary>
    [Required]
    public string Folder { get; set; } = "/usr/share/datasets/fashion-mnist";

    /// <summary>Use only the first N training images (0: all 60,000). <value>Default 0.</value></summary>
    [Range(0, 60000)]
    public int TrainSubset { get; set; }
}
