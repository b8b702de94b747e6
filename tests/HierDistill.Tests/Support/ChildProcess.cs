using System.Diagnostics;
using Xunit;

namespace HierDistill.Tests.Support;

/// <summary>Runs a child process to its end with both output streams collected.</summary>
public static class ChildProcess
{
    /// <summary>
    /// Starts <paramref name="psi"/> (its streams redirected here), waits up to <paramref name="timeout"/> and returns the
    /// exit code and both streams; fails the test, killing the process tree, when it does not end in time.
    /// </summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(ProcessStartInfo psi, TimeSpan timeout)
    {
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{psi.FileName} {string.Join(' ', psi.ArgumentList)} did not exit in {timeout}.");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
