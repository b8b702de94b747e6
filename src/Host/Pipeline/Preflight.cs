using HierDistill.Abstractions.Contracts;
using HierDistill.Abstractions.Data;
using HierDistill.Abstractions.Models;
using HierDistill.Abstractions.Plugins;
using HierDistill.Host.Configuration;
using HierDistill.Host.Pipeline.Stages;
using HierDistill.Host.Runtime;
using HierDistill.Host.Storage;
using TorchSharp;

namespace HierDistill.Host.Pipeline;

/// <summary>
/// Builds once, from the config alone and on the CPU, what the stages will build: the data source (with trial draws checked
/// against its contract, <see cref="DataContract"/>), the teacher's architecture
/// (untrained), each trajectory stage's distiller and student, each distribution stage's matcher (with its fake score),
/// discriminator and regularizer. Checks that they fit together (the teacher models the data, the discriminator's blocks are
/// teacher feature blocks and it keeps its contract on a trial batch, the teacher, its trainable copy, its students and its token
/// features keep theirs (<see cref="TeacherContract"/>), each distiller's and regularizer's loss on a trial batch reaches the
/// student or generator it trains, the matcher's generator loss reaches the generated samples, the modules a stage trains have distinct names, a
/// configured student models the teacher's data) and that every <c>loadFrom</c> file's names, shapes
/// and dtype kinds fit the network it will be loaded into (from the file's header: no tensor is read); then discards them.
/// So a discriminator block the teacher lacks, a student for other data or a weights file of another architecture is a
/// configuration error before the run folder is created or overwritten, not a failure after hours of teacher training.
/// </summary>
/// <remarks>
/// Building draws random initial weights: the global random stream is saved first and restored after, so a run's results
/// do not depend on this check; every tensor it makes is freed when it ends. Nothing is trained or evaluated; the evaluation
/// stage's classifier is not built (its <c>samples</c> are checked against the data's evaluation split, image sizes against the classifier).
/// </remarks>
public static class Preflight
{
    /// <summary>
    /// For an exception that is a slip in code rather than a message meant for the user (a null dereference, an index out of
    /// range, a failed cast, a missing key, a method not implemented), where it was thrown: <c> (NullReferenceException thrown
    /// by MyLab.OneStep.OneStepDistiller..ctor in the plugin MyLab.OneStep)</c>, the innermost frame of the component's
    /// assembly; for an assembly that cannot be loaded, how to ship it; else empty (an <see cref="ArgumentException"/> naming
    /// a bad option reads as it is).
    /// </summary>
    internal static string BugSite(Exception e, string? assembly)
    {
        // A dependency the plugin was built with but its folder lacks (a NuGet package's DLL left out).
        if (e is FileNotFoundException && e.Message.StartsWith("Could not load file or assembly", StringComparison.Ordinal))
            return $" (a library the plugin {assembly} uses is not in its plugin folder: publish the plugin into that folder (dotnet publish -o …), " +
                   "or copy the missing DLL beside it)";
        // Found, but not the version it was built against (TorchSharp and HierDistill.Abstractions come from the host).
        if (e is FileLoadException && e.Message.StartsWith("Could not load file or assembly", StringComparison.Ordinal))
            return $" (the plugin {assembly} was built against another version of that library than the one loaded; TorchSharp and " +
                   "HierDistill.Abstractions are the host's: build the plugin against the host's versions (hierdistill plugins lists them))";
        if (e is not (NullReferenceException or IndexOutOfRangeException or InvalidCastException or KeyNotFoundException
            or NotImplementedException or DivideByZeroException)) return "";
        foreach (var frame in new System.Diagnostics.StackTrace(e, fNeedFileInfo: false).GetFrames())
        {
            if (frame.GetMethod() is not { DeclaringType: { } type } method || type.Assembly.GetName().Name != assembly) continue;
            string where = type.FullName?.Split('+')[0] ?? type.Name;
            // "thrown by" when the exception starts in the plugin's code, or in the runtime's helpers it calls for a cast or an
            // index; "raised under" when a library's code threw it.
            bool own = e.TargetSite?.DeclaringType?.Assembly is not { } origin || origin == type.Assembly || origin == typeof(object).Assembly;
            return $" ({e.GetType().Name} {(own ? "thrown by" : "raised under")} {where}.{method.Name} in the plugin {assembly})";
        }
        return $" ({e.GetType().Name})";
    }

    /// <summary>Builds and checks the components of <paramref name="loaded"/> (see the class).</summary>
    /// <param name="loaded">A validated config.</param>
    /// <param name="services">Services handed to the components (those of a run, with a logger whose output may be discarded).</param>
    /// <param name="resuming">A resumed run: the teacher is restored from the run folder, not from its <c>loadFrom</c> (which is
    /// then not checked; a trajectory stage's <c>loadFrom</c> is read again and is checked).</param>
    /// <returns>The problems found, each naming its config path and the fix; empty when everything fits. After a problem in
    /// the data or the teacher nothing else is built (everything else needs them).</returns>
    /// <param name="warn">Receives each warning (<see cref="DataContract"/>'s: pixels outside [-1, 1], a data source that ignores
    /// the seed); null: none are reported.</param>
    public static IReadOnlyList<ConfigError> Check(LoadedConfig loaded, IServiceProvider services, bool resuming = false, Action<string>? warn = null)
    {
        var components = new ComponentFactory(loaded, services, new RunEnvironment(torch.CPU, loaded.Config.Run.Seed, Path.GetTempPath()));
        var errors = new List<ConfigError>();
        var built = new List<IDisposable>();
        void Own(object? o)
        {
            if (o is IDisposable d) built.Add(d);
        }
        T Build<T>(string path, IDataSource? data = null, ITeacher? teacher = null) where T : class
        {
            try
            {
                var component = components.Create<T>(path, data, teacher);
                Own(component);
                return component;
            }
            catch (Exception thrown) when (thrown is not OutOfMemoryException and not PreflightException)
            {
                // A factory invoked by reflection: the exception it threw.
                var e = thrown is System.Reflection.TargetInvocationException { InnerException: { } inner } ? inner : thrown;
                // Plugins are asked to name their config path in messages: do not repeat it.
                string message = NativeErrors.WithoutBacktrace(e.Message);
                string what = message.StartsWith(path, StringComparison.Ordinal) ? message[path.Length..].TrimStart(':', ' ') : message;
                throw new PreflightException($"{path}: '{components.NameOf(path)}' cannot be built: {what}{BugSite(e, loaded.Component(path).Descriptor.Assembly)}", e);
            }
        }

        using var rng = torch.random.get_rng_state();
        // Every tensor made here (weights, constructor temporaries, the data source's) is freed when the check ends.
        using var scope = torch.NewDisposeScope();
        try
        {
            IDataSource data;
            ITeacher? teacher = null;
            (string Path, string Component) teacherName = default;
            // The students the stages produce, in order (a distribution stage's generator stands for its own), for the
            // generator a regularizer is tried on.
            var students = new List<(string Key, AverageVelocityNetwork? Network)>();
            try
            {
                TorchRuntime.ManualSeed(DataContract.BuildSeed); // as the seed check builds its second instance
                data = Build<IDataSource>("data");
                // A data source may read its files on first use (Fashion-MNIST does, so that `sample` needs none): make it read
                // them now, so that missing or damaged data is reported here.
                try
                {
                    _ = (data.TrainSize, data.EvaluationSize);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    throw new PreflightException($"data: '{components.NameOf("data")}' cannot read its data: {e.Message}", e);
                }
                try
                {
                    // A second instance, built only for the seed check (its first draw against the first one's).
                    DataContract.Try(components.Describe("data"), data, () => components.Create<IDataSource>("data", null, null),
                        loaded.Stages.Any(s => s.Stage is EvaluationStageConfig), warn ?? (_ => { }));
                }
                catch (Exception e) when (e is not OutOfMemoryException and not PreflightException)
                {
                    // The contract's own messages, and a plugin's that name their config path, start with "data:".
                    string message = NativeErrors.WithoutBacktrace(e.Message);
                    throw new PreflightException(message.StartsWith("data:", StringComparison.Ordinal)
                        ? message : $"data: '{components.NameOf("data")}' failed on a trial draw: {message}", e);
                }
            }
            catch (PreflightException e)
            {
                errors.Add(new ConfigError("", e.Message));
                return errors;
            }
            foreach (var (key, stage) in loaded.Stages)
            {
                try
                {
                    switch (stage)
                    {
                        case TeacherStageConfig t:
                            var candidate = Build<ITeacher>($"stages:{key}:teacher", data);
                            if (candidate is not IDisposable) Own(candidate.Network);
                            TeacherStage.CheckSpec(key, candidate, data.Spec);
                            teacherName = ($"stages:{key}:teacher", components.Describe($"stages:{key}:teacher"));
                            TeacherContract.Try(teacherName.Path, teacherName.Component, candidate, data.Spec);
                            // Frozen, as the stages after the teacher stage get it (so that the trials below see what they will).
                            candidate.Network?.Freeze();
                            teacher = candidate;
                            if (teacher.Network is { } network)
                            {
                                if (string.IsNullOrWhiteSpace(t.LoadFrom) && t.Training is null)
                                    throw TeacherStage.Untrained(key, components.NameOf($"stages:{key}:teacher"));
                                if (!resuming) CheckLoadFrom(network, t.LoadFrom, key);
                            }
                            break;
                        case TrajectoryStageConfig s when teacher is not null:
                            var distiller = Build<ITrajectoryDistiller>($"stages:{key}:distiller", data, teacher);
                            bool fresh = components.Has($"stages:{key}:student");
                            var (studentPath, studentName) = fresh ? ($"stages:{key}:student", components.Describe($"stages:{key}:student")) : teacherName;
                            var student = ComponentCalls.Run(studentPath, studentName, fresh ? "in building the student network" : "in CreateStudent",
                                () => TrajectoryStage.CreateStudent(components, key, data, teacher, out _));
                            Own(student);
                            TeacherContract.TryStudent(studentPath, studentName, student, teacher, data.Spec,
                                fresh ? "the student network" : "CreateStudent");
                            // A resumed run restores a finished loaded stage from its folder's copy (TrajectoryStage).
                            if (!resuming || !ConfigLoader.HasLoadedCopy(loaded.Config.Run.ResolvedOutputDir, key)) CheckLoadFrom(student, s.LoadFrom, key);
                            if (string.IsNullOrWhiteSpace(s.LoadFrom))
                                TrajectoryStage.TryDistiller($"stages:{key}:distiller", components.Describe($"stages:{key}:distiller"), distiller, student,
                                    teacher, data, s.Training.Steps, components.Describe("data"));
                            students.Add((key, student));
                            break;
                        case DistributionStageConfig d when teacher is not null:
                            var matcher = Build<IDistributionMatcher>($"stages:{key}:matcher", data, teacher);
                            foreach (var m in matcher.AuxiliaryModules) Own(m.Module);
                            DistributionStage.TryMatcher($"stages:{key}:matcher", components.Describe($"stages:{key}:matcher"), matcher, data.Spec,
                                d.Training.Steps, loaded.Component($"stages:{key}:matcher").Options);
                            IDiscriminator? discriminator = null;
                            if (components.Has($"stages:{key}:discriminator"))
                            {
                                discriminator = Build<IDiscriminator>($"stages:{key}:discriminator", data, teacher);
                                Own(discriminator.Heads.Module);
                                DistributionStage.CheckFeatures(key, components, teacher, discriminator);
                                DistributionStage.TryDiscriminator($"stages:{key}:discriminator", components.Describe($"stages:{key}:discriminator"),
                                    teacher, teacherName, discriminator, data.Spec, loaded.Component($"stages:{key}:discriminator").Options);
                            }
                            DistributionStage.CheckModuleNames(key, components, matcher, discriminator);
                            // The generator as the stage picks it (DistributionStage.CreateGenerator). None when the stage it names
                            // failed its own checks above (or is missing, which the config check reports): its regularizer is not tried.
                            bool regularized = components.Has($"stages:{key}:regularizer") && d.RegularizerWeight > 0;
                            bool fromTeacher = d.Generator.Equals("teacher", StringComparison.OrdinalIgnoreCase);
                            var generator = fromTeacher
                                ? regularized ? ComponentCalls.Run(teacherName.Path!, teacherName.Component!, "in CreateStudent", teacher.CreateStudent) : null
                                : (d.Generator.Equals("previous", StringComparison.OrdinalIgnoreCase)
                                    ? students.LastOrDefault()
                                    : students.LastOrDefault(x => x.Key.Equals(d.Generator, StringComparison.OrdinalIgnoreCase))).Network;
                            if (fromTeacher) Own(generator);
                            students.Add((key, generator));
                            if (regularized)
                            {
                                var regularizer = Build<ITrajectoryDistiller>($"stages:{key}:regularizer", data, teacher);
                                if (generator is not null)
                                    TrajectoryStage.TryDistiller($"stages:{key}:regularizer", components.Describe($"stages:{key}:regularizer"), regularizer,
                                        generator, teacher, data, d.Training.Steps, components.Describe("data"));
                            }
                            break;
                        case EvaluationStageConfig evaluation:
                            Evaluation.EvaluationStage.CheckData(key, evaluation, data);
                            break;
                    }
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // A stage that failed its checks hands on no network here: a later generator=previous is then not tried.
                    if (stage is TrajectoryStageConfig or DistributionStageConfig && students.All(x => x.Key != key)) students.Add((key, null));
                    // Host checks name their config path; anything else is named here.
                    errors.Add(new ConfigError("", e is PreflightException ? e.Message : ConfigError.InStage(key, NativeErrors.WithoutBacktrace(e.Message))));
                    if (teacher is null) break;   // the teacher could not be built: nothing after it can be
                }
            }
            return errors;
        }
        finally
        {
            foreach (var d in Enumerable.Reverse(built)) d.Dispose();
            torch.random.set_rng_state(rng);
        }
    }

    /// <summary>A <c>loadFrom</c> file (when set and present: a missing one is a validation error already) against the network it fills.</summary>
    private static void CheckLoadFrom(torch.nn.Module network, string? loadFrom, string key)
    {
        if (string.IsNullOrWhiteSpace(loadFrom) || !File.Exists(loadFrom)) return;
        try
        {
            WeightsFile.CheckFits(network, Path.GetFullPath(loadFrom));
        }
        catch (WeightsMismatchException e)
        {
            throw new PreflightException($"stages:{key}:loadFrom: {e.Message}", e);
        }
    }

    /// <summary>A problem found by <see cref="Check"/>, with its config path in the message.</summary>
    private sealed class PreflightException(string message, Exception inner) : Exception(message, inner);
}
