using HierDistill.Abstractions.Models;
using static TorchSharp.torch;

namespace HierDistill.Abstractions.Numerics;

/// <summary>A sampler with its settings bound: maps noise <c>[B, ...S]</c> and labels <c>[B]</c> to samples <c>[B, ...S]</c>.</summary>
/// <param name="Name">E.g. <c>"euler-32"</c>.</param>
/// <param name="Nfe">Number of network evaluations per sample (CFG's doubled batch counts once).</param>
/// <param name="Run">The sampling function; runs without gradients.</param>
public sealed record Sampler(string Name, int Nfe, Func<Tensor, Tensor, Tensor> Run)
{
    /// <summary>Samples from <paramref name="noise"/> with <paramref name="labels"/>.</summary>
    public Tensor Sample(Tensor noise, Tensor labels) => Run(noise, labels);
}

/// <summary>
/// Samplers for velocity fields (ODE solvers from t = 1 to t = 0 on a uniform grid) and for
/// average-velocity students (method.md §1). All share one signature (k-diffusion, SiT).
/// </summary>
public static class Samplers
{
    /// <summary>Euler: <c>z_{k+1} = z_k - (t_k - t_{k+1}) v(z_k, t_k)</c>; NFE = steps.</summary>
    /// <exception cref="ArgumentOutOfRangeException">For steps &lt; 1.</exception>
    public static Sampler Euler(VelocityField velocity, int steps) =>
        new($"euler-{steps}", Positive(steps), (noise, labels) => Integrate(noise, steps, false, (z, tk, tn) =>
        {
            var t = full([z.shape[0]], tk, device: z.device);
            return z - (tk - tn) * velocity(z, t, labels);
        }));

    /// <summary>
    /// Heun (explicit trapezoid, Karras et al. 2022, Alg. 1 without churn): Euler predictor, then
    /// the average of both slopes; NFE = 2 × steps.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">For steps &lt; 1.</exception>
    public static Sampler Heun(VelocityField velocity, int steps) =>
        new($"heun-{steps}", 2 * Positive(steps), (noise, labels) => Integrate(noise, steps, false, (z, tk, tn) =>
        {
            long b = z.shape[0];
            var d1 = velocity(z, full([b], tk, device: z.device), labels);
            var zPred = z - (tk - tn) * d1;
            var d2 = velocity(zPred, full([b], tn, device: z.device), labels);
            return z - (tk - tn) * 0.5 * (d1 + d2);
        }));

    /// <summary>
    /// Few-step sampling of a student <c>u_θ</c>: <c>z_{k+1} = z_k - (t_k - t_{k+1}) u_θ(z_k, t_{k+1}, t_k)</c>
    /// on <c>1 = t_0 &gt; … &gt; t_K = 0</c>; one step is <c>x = e - u_θ(e, 0, 1)</c>. NFE = K. No CFG:
    /// a student trained on guided targets is sampled unguided (method.md §2).
    /// </summary>
    /// <param name="student">The student.</param>
    /// <param name="nfe">Number of steps K ≥ 1.</param>
    /// <param name="differentiable">Keep the graph (a generator trained through its own sampling, DMD stage); default: no gradients.</param>
    /// <exception cref="ArgumentOutOfRangeException">For nfe &lt; 1.</exception>
    public static Sampler AverageVelocity(AverageVelocityField student, int nfe, bool differentiable = false) =>
        new($"mean-{nfe}", Positive(nfe), (noise, labels) => Integrate(noise, nfe, differentiable, (z, tk, tn) =>
        {
            long b = z.shape[0];
            var u = student(z, full([b], tn, device: z.device), full([b], tk, device: z.device), labels);
            return z - (tk - tn) * u;
        }));

    /// <summary>The uniform grid <c>t_k = 1 - k / K</c>, k = 0..K.</summary>
    public static double[] UniformGrid(int steps) => Enumerable.Range(0, steps + 1).Select(k => 1.0 - (double)k / steps).ToArray();

    private static Tensor Integrate(Tensor noise, int steps, bool differentiable, Func<Tensor, double, double, Tensor> step)
    {
        using var _ = differentiable ? enable_grad() : no_grad();
        var grid = UniformGrid(steps);
        var z = noise.alias();
        for (int k = 0; k < steps; k++)
        {
            using var scope = NewDisposeScope();
            z = step(z, grid[k], grid[k + 1]).MoveToOuterDisposeScope();
        }
        return z;
    }

    private static int Positive(int n) =>
        n >= 1 ? n : throw new ArgumentOutOfRangeException(nameof(n), n, "the number of steps must be ≥ 1.");
}
