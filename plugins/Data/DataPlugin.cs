using HierDistill.Abstractions.Plugins;
using Microsoft.Extensions.DependencyInjection;

namespace HierDistill.Plugins.Data;

/// <summary>Entry point of the data plugin: <c>mixture2d</c> and <c>fashion-mnist</c>.</summary>
public sealed class DataPlugin : IHierDistillPlugin
{
    /// <inheritdoc/>
    public void Register(IServiceCollection services)
    {
        services.AddDataSource<MixtureOptions>("mixture2d",
            "Labelled 2-D Gaussian mixtures (ring8, grid25), drawn fresh in process; exact mixture known for metrics and the exact teacher.",
            (_, o) => new MixtureDataSource($"mixture2d/{o.Preset}", MixtureDataSource.Create(o)));
        services.AddDataSource<FashionMnistOptions>("fashion-mnist",
            "Fashion-MNIST from IDX files (28×28 grey, 10 classes, pixels in [-1, 1]); train split for training, test split for evaluation.",
            (_, o) => new FashionMnistDataSource(o));
    }
}
