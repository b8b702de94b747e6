using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Numerics;

/// <summary>
/// Mixed precision by hand (TorchSharp has no <c>torch.autocast</c>): an ambient compute dtype (per async flow, like PyTorch's
/// thread-local autocast state) that networks consult in their forward pass. Under <c>bfloat16</c> the matrix products
/// (<see cref="Linear"/>, <see cref="Conv2d"/>, attention <c>bmm</c>) run on bfloat16 copies of their inputs and weights, while
/// the parameters, their gradients and the optimiser state stay float32 (the casts are differentiable, so gradients reach the
/// float32 weights), and normalisation, softmax, residual sums and the network output are float32 (<see cref="Float32"/>),
/// following PyTorch's autocast op lists. Losses and JVP tangents therefore see float32 tensors.
/// </summary>
/// <remarks>
/// The host sets it from <c>run.precision</c> for the whole run. A network that ignores it simply runs in its parameters' dtype.
/// Inside <see cref="Use"/>(null) (e.g. a float64 finite-difference copy) nothing is cast.
/// </remarks>
public static class Autocast
{
    private static readonly AsyncLocal<ScalarType?> Current = new();

    /// <summary>The compute dtype of matrix products now, or null when autocast is off (everything runs in the inputs' dtype).</summary>
    public static ScalarType? Dtype => Current.Value;

    /// <summary>Sets the compute dtype until the returned scope is disposed (then the previous one is restored).</summary>
    /// <param name="dtype"><c>BFloat16</c> or <c>Float16</c>, or null to turn autocast off; <c>Float32</c> is the same as null.</param>
    /// <exception cref="ArgumentException">For a dtype that is not a 16-bit float type.</exception>
    public static IDisposable Use(ScalarType? dtype)
    {
        if (dtype == ScalarType.Float32) dtype = null;
        if (dtype is not null and not ScalarType.BFloat16 and not ScalarType.Float16)
            throw new ArgumentException($"autocast runs matrix products in bfloat16 or float16, not {dtype}.", nameof(dtype));
        var previous = Current.Value;
        Current.Value = dtype;
        return new Scope(previous);
    }

    /// <summary><c>x Wᵀ + b</c> of <paramref name="layer"/> on x <c>[..., in]</c>: in the compute dtype when autocast is on
    /// (output <c>[..., out]</c> in that dtype), else <c>layer.forward(x)</c>.</summary>
    public static Tensor Linear(Linear layer, Tensor x) => Dtype is { } d
        ? nn.functional.linear(x.to_type(d), layer.weight!.to_type(d), layer.bias?.to_type(d))
        : layer.forward(x);

    /// <summary>A 2-D convolution of <paramref name="layer"/> on x <c>[B, C, H, W]</c>: in the compute dtype when autocast is on,
    /// else <c>layer.forward(x)</c>. Uses the layer's stride, padding, dilation and groups.</summary>
    public static Tensor Conv2d(Conv2d layer, Tensor x) => Dtype is { } d
        ? nn.functional.conv2d(x.to_type(d), layer.weight!.to_type(d), layer.bias?.to_type(d), layer.stride, layer.padding, layer.dilation, layer.groups)
        : layer.forward(x);

    /// <summary>Casts to the compute dtype when autocast is on (inputs of a hand-written matrix product such as attention's <c>bmm</c>).</summary>
    public static Tensor Compute(Tensor x) => Dtype is { } d ? x.to_type(d) : x;

    /// <summary>Casts to float32 when autocast is on (inputs of normalisation and softmax, residual streams, outputs), else returns x.</summary>
    public static Tensor Float32(Tensor x) => Dtype is not null && x.dtype != ScalarType.Float32 ? x.to_type(ScalarType.Float32) : x;

    private sealed class Scope(ScalarType? previous) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            Current.Value = previous;
        }
    }
}
