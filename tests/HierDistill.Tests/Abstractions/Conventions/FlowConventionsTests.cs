using HierDistill.Abstractions.Conventions;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Abstractions.Conventions;

public class FlowConventionsTests
{
    [Fact]
    public void Interpolation_is_data_at_t0_noise_at_t1_and_linear_between()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 1, 2, 3, 4 }, [2, 2]);
        var e = tensor(new float[] { -1, 0, 5, 8 }, [2, 2]);
        var z = FlowConventions.Interpolate(x, e, tensor(new float[] { 0, 1 }));
        Assert.Equal(new float[] { 1, 2, 5, 8 }, z.data<float>().ToArray());
        var half = FlowConventions.Interpolate(x, e, tensor(new float[] { 0.5f, 0.25f }));
        // row 0: (x + e) / 2 = [0, 1]; row 1: 0.75 [3, 4] + 0.25 [5, 8] = [3.5, 5]
        Assert.Equal(new float[] { 0, 1, 3.5f, 5 }, half.data<float>().ToArray());
        Assert.Equal(new float[] { -2, -2, 2, 4 }, FlowConventions.ConditionalVelocity(x, e).data<float>().ToArray());
    }

    [Fact]
    public void Times_of_the_wrong_shape_are_refused_with_both_shapes()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => FlowConventions.ExpandTime(zeros(3), zeros(2, 5)));
        Assert.StartsWith("times must have shape [B] = [2] to match samples [2, 5], got [3].", e.Message);
    }
}
