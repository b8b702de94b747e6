using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Conventions;
using HierDistill.Abstractions.Losses;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Numerics;
using static TorchSharp.torch;

namespace HierDistill.Plugins.Dmd;

/// <summary>
/// DMD (Yin et al. 2024) with DMD2's two-time-scale rule (method.md §3). Real score: the frozen teacher with CFG
/// scale <c>w_real</c>; fake score: a trainable copy of the teacher, trained online by flow matching on generator
/// samples (CFG scale 1). Noisy samples <c>x_s = (1 - s) x + s n</c>, <c>s ~ U[timeMin, timeMax]</c>; denoised
/// estimates <c>x0 = x_s - s v(x_s, s | c)</c>.
/// </summary>
internal sealed class DmdMatcher : IDistributionMatcher
{
    private readonly ITeacher _teacher;
    private readonly VelocityNetwork _fake;
    private readonly VelocityField _real;

    public DmdMatcher(DmdOptions options, ITeacher teacher)
    {
        Options = options;
        _teacher = teacher;
        _fake = teacher.CreateTrainableCopy();
        _real = ClassifierFreeGuidance.Guide(teacher.Velocity, options.RealGuidanceScale, teacher.Spec.NullLabel);
        AuxiliaryModules =
        [
            new TrainableModule("fake_score", _fake, options.FakeScore.ToSettings()),
        ];
    }

    public DmdOptions Options { get; }

    public IReadOnlyList<TrainableModule> AuxiliaryModules { get; }

    public int GeneratorUpdateInterval => Options.GeneratorUpdateInterval;

    public LossBreakdown GeneratorLoss(Tensor samples, Tensor labels, TrainingProgress progress)
    {
        Shapes.RequireBatchOf(samples, "samples", _teacher.Spec.SampleShape);
        Tensor x0Real, x0Fake;
        using (no_grad())
        {
            var s = TimeSampling.Uniform(samples.shape[0], Options.TimeMin, Options.TimeMax, samples.device);
            var xs = FlowConventions.Interpolate(samples.detach(), randn_like(samples), s);
            var sb = FlowConventions.ExpandTime(s, xs);
            x0Real = xs - sb * _real(xs, s, labels);
            x0Fake = xs - sb * _fake.Velocity(xs, s, labels);
        }
        return DmdLoss.Compute(samples, x0Real, x0Fake, Options.DenominatorClamp);
    }

    public LossBreakdown AuxiliaryLoss(Tensor samples, Tensor labels, TrainingProgress progress)
    {
        var x = samples.detach();
        var t = rand([x.shape[0]], device: x.device);
        var loss = FlowMatchingLoss.Compute(_fake.Velocity, x, labels, randn_like(x), t);
        return new LossBreakdown(loss.Total, new Dictionary<string, Tensor> { ["fake_score_mse"] = loss.Total });
    }
}
