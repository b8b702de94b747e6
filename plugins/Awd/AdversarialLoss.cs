using HierDistill.Abstractions.Losses;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Awd;

/// <summary>Adversarial losses on logits <c>[B, H]</c>, averaged over samples and heads.</summary>
internal static class AdversarialLoss
{
    /// <summary>Discriminator loss: NS <c>softplus(D(fake)) + softplus(-D(real))</c>; hinge <c>relu(1 - D(real)) + relu(1 + D(fake))</c>.</summary>
    public static LossBreakdown Discriminator(AdversarialLossForm form, Tensor real, Tensor fake)
    {
        var (lossReal, lossFake) = form == AdversarialLossForm.Hinge
            ? (nn.functional.relu(1 - real).mean(), nn.functional.relu(1 + fake).mean())
            : (nn.functional.softplus(-real).mean(), nn.functional.softplus(fake).mean());
        var total = lossReal + lossFake;
        return new LossBreakdown(total,
            new Dictionary<string, Tensor> { ["real"] = lossReal, ["fake"] = lossFake },
            new Dictionary<string, Tensor>
            {
                ["logit_real"] = real.mean(),
                ["logit_fake"] = fake.mean(),
                ["accuracy"] = 0.5 * ((real > 0).to_type(ScalarType.Float32).mean() + (fake < 0).to_type(ScalarType.Float32).mean()),
            });
    }

    /// <summary>Generator loss: NS <c>softplus(-D(fake))</c>; hinge <c>-D(fake)</c>.</summary>
    public static LossBreakdown Generator(AdversarialLossForm form, Tensor fake)
    {
        var loss = form == AdversarialLossForm.Hinge ? (-fake).mean() : nn.functional.softplus(-fake).mean();
        return new LossBreakdown(loss, new Dictionary<string, Tensor> { ["adversarial"] = loss });
    }
}
