namespace HierDistill.Plugins.Baselines;

/// <summary>One round of progressive distillation.</summary>
/// <param name="Index">Zero-based round index (0: the teacher teaches).</param>
/// <param name="Steps">Sampling steps N the student learns in this round (step size Δ = 1/N).</param>
internal readonly record struct ProgressiveRound(int Index, int Steps);

/// <summary>
/// The rounds of progressive distillation (Salimans &amp; Ho 2022, Alg. 2): <c>N = N₀, N₀/2, …, N_final</c>, each for
/// <c>stepsPerRound</c> training steps, or the stage's steps divided equally (the last round takes the remainder).
/// </summary>
internal sealed class ProgressiveSchedule
{
    private readonly long _perRound;

    /// <param name="startSteps">N₀.</param>
    /// <param name="finalSteps">N of the last round; N₀ / N_final a power of two.</param>
    /// <param name="stepsPerRound">Training steps per round, or 0 to derive them from <paramref name="totalSteps"/>.</param>
    /// <param name="totalSteps">Training steps of the stage.</param>
    /// <exception cref="ArgumentException">When the steps do not halve from <paramref name="startSteps"/> to <paramref name="finalSteps"/>.</exception>
    public ProgressiveSchedule(int startSteps, int finalSteps, long stepsPerRound, long totalSteps)
    {
        if (finalSteps < 1 || startSteps < finalSteps || startSteps % finalSteps != 0 || !System.Numerics.BitOperations.IsPow2(startSteps / finalSteps))
            throw new ArgumentException($"startSteps / finalSteps must be a power of two ≥ 1; got {startSteps} / {finalSteps}.");
        var rounds = new List<int>();
        for (int n = startSteps; n >= finalSteps; n /= 2) rounds.Add(n);
        Rounds = rounds;
        _perRound = stepsPerRound > 0 ? stepsPerRound : Math.Max(1, totalSteps / rounds.Count);
    }

    /// <summary>N of each round, first to last.</summary>
    public IReadOnlyList<int> Rounds { get; }

    /// <summary>Training steps per round (the last round runs to the end of the stage).</summary>
    public long StepsPerRound => _perRound;

    /// <summary>Training steps needed to reach the last round.</summary>
    public long StepsToLastRound => _perRound * (Rounds.Count - 1);

    /// <summary>The round a zero-based training step belongs to.</summary>
    public ProgressiveRound RoundAt(long step)
    {
        int index = (int)Math.Min(Rounds.Count - 1, Math.Max(0, step) / _perRound);
        return new ProgressiveRound(index, Rounds[index]);
    }
}
