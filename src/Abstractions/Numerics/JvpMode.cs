namespace HierDistill.Abstractions.Numerics;

/// <summary>
/// How an objective takes the Jacobian-vector product <c>d/dt u = v · ∂_z u + ∂_t u</c> of the student (method.md §2;
/// see <see cref="JacobianVectorProduct"/>).
/// </summary>
public enum JvpMode
{
    /// <summary>Exact, by double backward (default).</summary>
    DoubleBackward,

    /// <summary>Central finite differences in float64 (one-sided at the ends of [r, 1]).</summary>
    FiniteDifference,
}
