using System.Text;
using System.Text.Json;
using HierDistill.Abstractions.Contracts;
using HierDistill.Host.Storage;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace HierDistill.Host.Training;

/// <summary>A checkpoint that cannot be used; the message names the file, what is wrong and what to do.</summary>
public sealed class CheckpointException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A training stage that finished: what later stages and the report need from it when a run is resumed.</summary>
/// <param name="Key">The stage key.</param>
/// <param name="Seconds">Wall time of the stage (summed over resumed parts).</param>
public sealed record CompletedStage(string Key, double Seconds);

/// <summary>The JSON manifest of a checkpoint (stored in the file as the uint8 tensor <c>hierdistill/manifest</c>).</summary>
public sealed class CheckpointManifest
{
    /// <summary>Checkpoint format version; a host refuses a checkpoint of a newer format.</summary>
    public int FormatVersion { get; set; }

    /// <summary>Version of the host that wrote it.</summary>
    public string HostVersion { get; set; } = "";

    /// <summary>When it was written (UTC, ISO 8601).</summary>
    public string WrittenUtc { get; set; } = "";

    /// <summary>SHA-256 of the resolved config (provenance excluded).</summary>
    public string ConfigDigest { get; set; } = "";

    /// <summary>Training stages finished, in order.</summary>
    public List<CompletedStage> Completed { get; set; } = [];

    /// <summary>The training stage in progress (null: between stages).</summary>
    public string? Stage { get; set; }

    /// <summary>The first step a resumed run executes (steps 0 .. NextStep-1 are done).</summary>
    public long NextStep { get; set; }

    /// <summary>Steps of the stage in progress.</summary>
    public long TotalSteps { get; set; }

    /// <summary>Wall time of the stage in progress so far, in seconds.</summary>
    public double StageSeconds { get; set; }

    /// <summary>E.g. "stage detail, step 300 of 600" or "after stage structure".</summary>
    public string Describe() => Stage is null
        ? Completed.Count == 0 ? "before the first stage" : $"after stage {Completed[^1].Key}"
        : $"stage {Stage}, step {NextStep} of {TotalSteps}";
}

/// <summary>What a training stage trains and must checkpoint: its optimisers (module, EMA, Adam state) and stateful components.</summary>
public sealed class TrainingState
{
    /// <summary>Optimisers of the stage, each with a unique name.</summary>
    public List<ModuleOptimizer> Optimizers { get; } = [];

    /// <summary>Components with state beyond trained modules (e.g. progressive distillation's round teacher), by name.</summary>
    public List<(string Name, ICheckpointable Component)> Components { get; } = [];

    /// <summary>Adds <paramref name="component"/> under <paramref name="name"/> when it is <see cref="ICheckpointable"/>.</summary>
    public TrainingState With(string name, object? component)
    {
        if (component is ICheckpointable c) Components.Add((name, c));
        return this;
    }
}

/// <summary>
/// Full-state checkpoints of one run: a single <c>checkpoint.safetensors</c> in the run folder holding every trained
/// module, EMA, optimiser state and counters of the stage in progress, the state of checkpointable components, the CPU
/// RNG state and a JSON manifest (format version, finished stages, stage and step, config digest). It is written to a
/// temporary file and renamed (<see cref="AtomicFile"/>), so a crash or a full disk while writing leaves the previous
/// checkpoint intact. Written every <c>run.checkpointEvery</c> steps, at the end of each training stage and when the run is
/// stopped by Ctrl-C/SIGTERM; read by <c>hierdistill run --resume</c>.
/// </summary>
/// <remarks>
/// On CPU a resumed run is bit-identical to an uninterrupted one (test: ResumeTests). The CUDA generator's state is not
/// saved (TorchSharp 0.107 exposes no API for it): a run resumed on CUDA reseeds the CUDA generators from run.seed, the
/// stage and the step (<see cref="ReseedCuda"/>), so it is statistically, not bitwise, equivalent.
/// </remarks>
public sealed class CheckpointStore
{
    /// <summary>
    /// The checkpoint format this host writes and the only one it reads. Format 2 (HierDistill 0.2.0): Adam's moments and step
    /// count as tensors per parameter (the device-side optimiser); format 1 held TorchSharp's serialised <c>optim.Adam</c>.
    /// </summary>
    public const int FormatVersion = 2;

    /// <summary>File name in the run folder.</summary>
    public const string FileName = "checkpoint.safetensors";

    private const string ManifestKey = WeightsFile.CheckpointManifestKey;
    private const string CompletedRngKey = "rng/completed";
    private const string CurrentRngKey = "rng/current";

    private readonly List<CompletedStage> _completed = [];
    private readonly string _digest;
    private readonly long _seed;
    private byte[]? _completedRng;
    private CheckpointManifest? _resume;
    private Dictionary<string, Tensor>? _resumeTensors;

    /// <summary>Creates the store of a new run, or of a resumed one (<paramref name="resumeFrom"/> read by <see cref="Read"/>).</summary>
    /// <param name="runFolder">The run folder.</param>
    /// <param name="every">Steps between periodic checkpoints (0: none).</param>
    /// <param name="configDigest">Digest of the resolved config.</param>
    /// <param name="resumeFrom">The checkpoint to continue from, or null.</param>
    /// <param name="seed">run.seed (for reseeding CUDA generators on resume).</param>
    public CheckpointStore(string runFolder, int every, string configDigest,
        (CheckpointManifest Manifest, Dictionary<string, Tensor> Tensors)? resumeFrom = null, long seed = 0)
    {
        _seed = seed;
        Path = System.IO.Path.Combine(runFolder, FileName);
        Every = every;
        _digest = configDigest;
        if (resumeFrom is { } r)
        {
            _resume = r.Manifest;
            _resumeTensors = r.Tensors;
            _completed.AddRange(r.Manifest.Completed);
            if (r.Tensors.TryGetValue(CompletedRngKey, out var rng)) _completedRng = rng.data<byte>().ToArray();
            Last = r.Manifest.Describe();
        }
    }

    /// <summary>The checkpoint file.</summary>
    public string Path { get; }

    /// <summary>Steps between periodic checkpoints (0: none).</summary>
    public int Every { get; }

    /// <summary>The last checkpoint written or resumed from (null: none yet), e.g. "stage detail, step 300 of 600".</summary>
    public string? Last { get; private set; }

    /// <summary>Where the last good checkpoint is, for error messages.</summary>
    public string LastDescription => Last is null ? "no checkpoint has been written yet" : $"the last checkpoint is {Path} ({Last})";

    /// <summary>Whether stage <paramref name="key"/> finished before the run was resumed.</summary>
    public bool IsCompleted(string key, out CompletedStage stage)
    {
        stage = _completed.FirstOrDefault(c => c.Key == key)!;
        return stage is not null;
    }

    /// <summary>Whether any stage after <paramref name="key"/> finished (so <paramref name="key"/>, e.g. an evaluation, is skipped).</summary>
    public bool HasCompletedAfter(IReadOnlyList<string> order, string key)
    {
        int index = order.ToList().IndexOf(key);
        return _completed.Any(c => order.ToList().IndexOf(c.Key) > index);
    }

    /// <summary>
    /// Sets the CPU RNG to its state at the end of the last finished stage (after restoring the finished stages), and
    /// reseeds the CUDA generators for that point (<see cref="ReseedCuda"/>).
    /// </summary>
    /// <param name="seed">run.seed.</param>
    public void RestoreRngAfterCompletedStages(long seed)
    {
        if (_completedRng is null) return;
        random.set_rng_state(tensor(_completedRng));
        ReseedCuda(seed, _completed[^1].Key, -1);
    }

    /// <summary>
    /// On CUDA, where the generator's state cannot be saved (TorchSharp 0.107), seeds the CUDA generators from the run's
    /// seed, the stage and the step a resumed run continues at, so that a resumed run does not replay the random stream
    /// of the run's first steps. Does nothing without CUDA.
    /// </summary>
    public static void ReseedCuda(long seed, string stage, long step)
    {
        if (!cuda.is_available()) return;
        // (string.GetHashCode is randomised per process: the stage's part comes from its characters.)
        long mixed = unchecked(seed * 1_000_003L + stage.Aggregate(17L, (h, c) => h * 31 + c) * 7919L + step);
        cuda.manual_seed_all(mixed & long.MaxValue);
    }

    /// <summary>Records that a training stage finished and writes a checkpoint between stages.</summary>
    /// <exception cref="IOException">When writing fails (the previous checkpoint is intact).</exception>
    public void StageCompleted(CompletedStage stage)
    {
        _completed.RemoveAll(c => c.Key == stage.Key);
        _completed.Add(stage);
        _completedRng = random.get_rng_state().data<byte>().ToArray();
        using var scope = NewDisposeScope();
        Write(new CheckpointManifest { Completed = [.. _completed] }, new Dictionary<string, Tensor>());
    }

    /// <summary>Writes a checkpoint of the stage in progress.</summary>
    /// <param name="stage">The stage key.</param>
    /// <param name="nextStep">The first step not yet done.</param>
    /// <param name="totalSteps">Steps of the stage.</param>
    /// <param name="seconds">Wall time of the stage so far.</param>
    /// <param name="state">What the stage trains.</param>
    /// <exception cref="IOException">When writing fails (the previous checkpoint is intact).</exception>
    public void Save(string stage, long nextStep, long totalSteps, double seconds, TrainingState state)
    {
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>();
        foreach (var o in state.Optimizers) o.SaveState(tensors);
        foreach (var (name, component) in state.Components)
            foreach (var (k, t) in component.CheckpointState())
                tensors[$"component/{name}/{k}"] = t.detach().cpu();
        tensors[CurrentRngKey] = random.get_rng_state();
        Write(new CheckpointManifest
        {
            Completed = [.. _completed], Stage = stage, NextStep = nextStep, TotalSteps = totalSteps, StageSeconds = seconds,
        }, tensors);
    }

    /// <summary>
    /// When the run was resumed inside stage <paramref name="stage"/>: restores its trained modules, EMA, optimiser
    /// state, counters, component state and the RNG, and returns the step to continue from and the seconds already spent.
    /// Used once; later calls (and other stages) get null.
    /// </summary>
    /// <exception cref="CheckpointException">When the checkpoint does not fit the stage (another architecture: the message names
    /// the first mismatched tensor and both shapes; another number of steps).</exception>
    public (long NextStep, double Seconds)? Resume(string stage, long totalSteps, TrainingState state)
    {
        if (_resume?.Stage != stage || _resumeTensors is null) return null;
        var tensors = _resumeTensors;
        try
        {
            if (_resume.TotalSteps != totalSteps)
                throw new CheckpointException(
                    $"{Path}: stage {stage} was checkpointed with {_resume.TotalSteps} steps but is configured with {totalSteps}; resume with the config it was written with.");
            foreach (var o in state.Optimizers) o.RestoreState(tensors, Path);
            foreach (var (name, component) in state.Components)
            {
                string prefix = $"component/{name}/";
                component.RestoreCheckpointState(tensors.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
                    .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value));
            }
            if (!tensors.TryGetValue(CurrentRngKey, out var rng)) throw new CheckpointException($"{Path} holds no RNG state; it is damaged.");
            random.set_rng_state(rng);
            ReseedCuda(_seed, stage, _resume.NextStep);
        }
        catch (Exception e) when (e is WeightsMismatchException or ArgumentException)
        {
            throw new CheckpointException($"{e.Message} The checkpoint does not fit this run's stage {stage}; resume with the config it was written with.", e);
        }
        var result = (_resume.NextStep, _resume.StageSeconds);
        Last = _resume.Describe();
        ReleaseResume();
        return result;
    }

    /// <summary>Frees the tensors read for resuming (after the stage in progress restored them, or when it is finished).</summary>
    public void ReleaseResume()
    {
        if (_resumeTensors is not null)
            foreach (var t in _resumeTensors.Values) t.Dispose();
        _resumeTensors = null;
        _resume = null;
    }

    /// <summary>Reads and checks a checkpoint.</summary>
    /// <param name="path">The checkpoint file.</param>
    /// <returns>The manifest and every tensor (on the CPU; the caller disposes them).</returns>
    /// <exception cref="CheckpointException">
    /// When the file is missing, truncated or not a HierDistill checkpoint, or of a newer format version.
    /// </exception>
    public static (CheckpointManifest Manifest, Dictionary<string, Tensor> Tensors) Read(string path)
    {
        if (!File.Exists(path))
            throw new CheckpointException(
                $"{path} does not exist: the run stopped before its first checkpoint (run.checkpointEvery steps or the end of a stage). " +
                "Start it again with --overwrite.");
        Dictionary<string, Tensor> tensors;
        try
        {
            tensors = Safetensors.LoadStateDict(path);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new CheckpointException(
                $"{path} cannot be read ({e.Message}); it is truncated or not a safetensors file. A checkpoint is replaced only after the new one " +
                "is complete, so this file was damaged afterwards: start the run again with --overwrite.", e);
        }
        if (!tensors.TryGetValue(ManifestKey, out var manifestBytes))
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new CheckpointException($"{path} is a safetensors file but not a HierDistill checkpoint (no '{ManifestKey}'); weights files are loaded with loadFrom, not --resume.");
        }
        CheckpointManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<CheckpointManifest>(Encoding.UTF8.GetString(manifestBytes.data<byte>().ToArray()))
                       ?? throw new JsonException("empty manifest");
        }
        catch (JsonException e)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new CheckpointException($"{path}: the checkpoint's manifest cannot be read ({e.Message}); it is damaged.", e);
        }
        if (manifest.FormatVersion > FormatVersion)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new CheckpointException(
                $"{path} has checkpoint format {manifest.FormatVersion} (written by HierDistill {manifest.HostVersion}), newer than this host reads " +
                $"(format {FormatVersion}, HierDistill {Pipeline.PipelineRunner.HostVersion}); resume it with that version or newer.");
        }
        if (manifest.FormatVersion < FormatVersion)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new CheckpointException(
                $"{path} has checkpoint format {manifest.FormatVersion} (written by HierDistill {manifest.HostVersion}), which holds the optimiser " +
                $"state in TorchSharp's own serialisation; this host (HierDistill {Pipeline.PipelineRunner.HostVersion}) reads format {FormatVersion} only. " +
                $"Resume it with HierDistill {manifest.HostVersion}, or run the stage again (the weights files of finished stages are unaffected: " +
                "use them with loadFrom).");
        }
        return (manifest, tensors);
    }

    private void Write(CheckpointManifest manifest, Dictionary<string, Tensor> tensors)
    {
        manifest.FormatVersion = FormatVersion;
        manifest.HostVersion = Pipeline.PipelineRunner.HostVersion;
        manifest.WrittenUtc = DateTime.UtcNow.ToString("O");
        manifest.ConfigDigest = _digest;
        tensors[ManifestKey] = tensor(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(manifest)));
        if (_completedRng is not null) tensors[CompletedRngKey] = tensor(_completedRng);
        foreach (var k in tensors.Keys.ToList()) tensors[k] = tensors[k].contiguous();
        AtomicFile.Write(Path, stream => Safetensors.SaveStateDict(stream, tensors, leaveOpen: true));
        Last = manifest.Describe();
    }
}
