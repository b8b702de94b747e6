using static TorchSharp.torch;

namespace HierDistill.Abstractions.Contracts;

/// <summary>
/// A component (distiller, matcher, discriminator) that holds state between training steps outside the modules the
/// host trains for it — e.g. progressive distillation's frozen snapshot of the student that teaches the current round.
/// The host saves that state in every full-state checkpoint and restores it on <c>hierdistill run --resume</c>, so a
/// resumed run continues bit for bit (on CPU) where it stopped. Modules returned through
/// <see cref="IDistributionMatcher.AuxiliaryModules"/> or <see cref="IDiscriminator.Heads"/>, with their optimiser
/// state, are checkpointed by the host already and must not be repeated here. A component without such state does
/// not implement this interface.
/// </summary>
public interface ICheckpointable
{
    /// <summary>
    /// The state to save, by name (unique within this component, e.g. <c>snapshot.blocks.0.weight</c>). Called at a
    /// step boundary; the host copies the tensors to the CPU and never modifies or disposes them. An empty dictionary is
    /// allowed (no state at this point).
    /// </summary>
    IReadOnlyDictionary<string, Tensor> CheckpointState();

    /// <summary>
    /// Restores what <see cref="CheckpointState"/> returned, on the component's device. Called after
    /// <see cref="ITrajectoryDistiller.Begin"/> (for a distiller) and before the first resumed step. The tensors belong to
    /// the host: copy from them, do not keep them.
    /// </summary>
    /// <param name="state">The saved tensors by name, on the CPU.</param>
    /// <exception cref="ArgumentException">When <paramref name="state"/> does not fit the component (a missing name or another
    /// shape); the message names the tensor.</exception>
    void RestoreCheckpointState(IReadOnlyDictionary<string, Tensor> state);
}
