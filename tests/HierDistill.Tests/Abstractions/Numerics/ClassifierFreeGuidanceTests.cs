using HierDistill.Abstractions.Numerics;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Abstractions.Numerics;

public class ClassifierFreeGuidanceTests
{
    // v(z, t | c) = z + c (the label shifts the field): conditional and unconditional differ by c - null.
    private static Tensor Field(Tensor z, Tensor t, Tensor labels) => z + labels.to_type(ScalarType.Float32).unsqueeze(1);

    [Fact]
    public void Scale_one_is_the_unguided_field_with_exactly_one_call()
    {
        int calls = 0;
        var guided = ClassifierFreeGuidance.Guide((z, t, c) => { calls++; return Field(z, t, c); }, 1.0, nullLabel: 2);
        using var scope = NewDisposeScope();
        var v = guided(zeros(3, 2), zeros(3), tensor(new long[] { 0, 1, 2 }));
        Assert.Equal(1, calls);
        Assert.Equal(new float[] { 0, 0, 1, 1, 2, 2 }, v.data<float>().ToArray());
    }

    [Fact]
    public void Guided_field_is_uncond_plus_w_times_cond_minus_uncond_in_one_batched_call()
    {
        int calls = 0;
        var guided = ClassifierFreeGuidance.Guide((z, t, c) => { calls++; return Field(z, t, c); }, 3.0, nullLabel: 2);
        using var scope = NewDisposeScope();
        // label 0: uncond = 2, cond = 0 -> 2 + 3 (0 - 2) = -4; label 1: 2 + 3 (1 - 2) = -1; null: 2.
        var v = guided(zeros(3, 1), zeros(3), tensor(new long[] { 0, 1, 2 }));
        Assert.Equal(1, calls);
        Assert.Equal(new float[] { -4, -1, 2 }, v.data<float>().ToArray());
    }

    [Fact]
    public void A_negative_scale_is_refused()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ClassifierFreeGuidance.Guide(Field, -1, 2));
        Assert.Contains("the guidance scale must be a finite number ≥ 0.", e.Message);
    }
}
