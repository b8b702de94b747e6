using HierDistill.Abstractions.Numerics;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Abstractions.Numerics;

public class ExponentialMovingAverageTests
{
    [Fact]
    public void Update_folds_weights_in_with_the_decay_and_copy_writes_the_average()
    {
        using var scope = NewDisposeScope();
        var module = nn.Linear(1, 1);
        using (no_grad())
        {
            module.weight!.fill_(2);
            module.bias!.fill_(0);
        }
        using var ema = new ExponentialMovingAverage(module, 0.9);
        using (no_grad()) module.weight!.fill_(12);
        ema.Update(module);                // 0.9 * 2 + 0.1 * 12 = 3
        using (no_grad()) module.weight!.fill_(13);
        ema.Update(module, 0.5);           // 0.5 * 3 + 0.5 * 13 = 8
        var target = nn.Linear(1, 1);
        ema.CopyTo(target);
        Assert.Equal(8f, target.weight!.item<float>(), 5);
        Assert.Equal(0f, target.bias!.item<float>());
    }

    [Fact]
    public void A_decay_outside_0_1_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ExponentialMovingAverage(nn.Linear(1, 1), 1.0));
    }
}
