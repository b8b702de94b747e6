using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Plugins;
using HierDistill.Plugins.Teachers.Exact;
using HierDistill.Plugins.Teachers.Networks;
using Microsoft.Extensions.DependencyInjection;

namespace HierDistill.Plugins.Teachers;

/// <summary>Entry point of the teachers plugin: <c>gmm-exact</c>, <c>mlp</c> and <c>dit</c>.</summary>
public sealed class TeachersPlugin : IHierDistillPlugin
{
    /// <inheritdoc/>
    public void Register(IServiceCollection services)
    {
        services.AddTeacher<GaussianMixtureTeacherOptions>("gmm-exact",
            "Closed-form velocity of the data's Gaussian mixture (class-conditional; CFG in closed form): the oracle teacher.",
            (ctx, _) =>
            {
                var data = ctx.RequireData();
                if (data is not IMixtureDataSource mixture)
                    throw new InvalidOperationException($"{ctx.ConfigPath}: gmm-exact needs a Gaussian-mixture data source (mixture2d); the data is {data.Spec}.");
                return new GaussianMixtureTeacher(data.Spec, mixture.Mixture);
            });
        services.AddTeacher<MlpOptions>("mlp",
            "Residual MLP velocity network v(z, t | c) for low-dimensional data, trained by flow matching in the teacher stage; token features from its blocks.",
            (ctx, o) =>
            {
                var spec = ctx.RequireData().Spec;
                return new NetworkTeacher(spec, new MlpVelocityNetwork(o, spec));
            });
        services.AddTeacher<DiTOptions>("dit",
            "Diffusion transformer (adaLN-Zero, Peebles & Xie 2023) velocity network v(z, t | c) for images, named presets, attention that supports double backward; token features from its blocks.",
            (ctx, o) =>
            {
                var spec = ctx.RequireData().Spec;
                return new NetworkTeacher(spec, new DiTVelocityNetwork(o, spec));
            });
    }
}
