using HierDistill.Abstractions.Data;
using HierDistill.Plugins.Teachers.Networks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace HierDistill.Tests.Plugins.Teachers;

public class MlpNetworkTests
{
    private static readonly DataSpec Spec = new("test", [2], 3);

    private static MlpVelocityNetwork TrainedLookingTeacher()
    {
        manual_seed(7);
        var teacher = new MlpVelocityNetwork(new MlpOptions { Hidden = 32, Depth = 3, EmbeddingDim = 16, FrequencyDim = 8, TokenChannels = 8 }, Spec);
        // Give the zero-initialised output layer weights so the network is not trivially zero.
        using (no_grad())
            foreach (var p in teacher.parameters()) p.add_(randn_like(p) * 0.1);
        return teacher;
    }

    [Fact]
    public void The_student_starts_equal_to_the_teacher_for_any_r()
    {
        using var scope = NewDisposeScope();
        var teacher = TrainedLookingTeacher();
        var student = teacher.CreateStudent();
        var z = randn(16, 2);
        var t = rand(16);
        var r = t * rand(16);
        var labels = randint(0, 4, [16]);
        var v = teacher.Velocity(z, t, labels);
        var u = student.AverageVelocity(z, r, t, labels);
        Assert.True(v.abs().sum().item<float>() > 0);
        Assert.Equal(v.data<float>().ToArray(), u.data<float>().ToArray()); // bit for bit
    }

    [Fact]
    public void Token_features_are_B_by_W_over_C_by_C_for_each_requested_block_in_order()
    {
        using var scope = NewDisposeScope();
        var teacher = TrainedLookingTeacher();
        Assert.Equal([0, 1, 2], teacher.FeatureBlocks.Select(b => b.Block));
        var f = teacher.TokenFeatures(randn(5, 2), rand(5), zeros(5, ScalarType.Int64), [2, 0]);
        Assert.Equal(2, f.Count);
        Assert.Equal(new long[] { 5, 4, 8 }, f[0].shape);
        Assert.Equal(new long[] { 5, 4, 8 }, f[1].shape);
        Assert.NotEqual(f[0].data<float>().ToArray(), f[1].data<float>().ToArray());
    }

    [Fact]
    public void Clone_is_a_deep_copy()
    {
        using var scope = NewDisposeScope();
        var teacher = TrainedLookingTeacher();
        var copy = teacher.Clone();
        var z = randn(4, 2);
        var t = rand(4);
        var c = zeros(4, ScalarType.Int64);
        Assert.Equal(teacher.Velocity(z, t, c).data<float>().ToArray(), copy.Velocity(z, t, c).data<float>().ToArray());
        using (no_grad()) foreach (var p in copy.parameters()) p.add_(1);
        Assert.NotEqual(teacher.Velocity(z, t, c).data<float>().ToArray(), copy.Velocity(z, t, c).data<float>().ToArray());
    }

    [Fact]
    public void Wrong_input_shapes_are_refused_before_any_matrix_product()
    {
        using var scope = NewDisposeScope();
        var teacher = TrainedLookingTeacher();
        var e = Assert.Throws<ArgumentException>(() => teacher.Velocity(randn(4, 3), rand(4), zeros(4, ScalarType.Int64)));
        Assert.StartsWith("z must have shape [*, 2], got [4, 3].", e.Message);
    }
}
