// MSBuild inline task (see LibTorchSharpCompat.targets). Compiled by RoslynCodeTaskFactory at build
// time; it must stay self-contained (no project references, netstandard APIs only).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace HierDistill.Build
{
    /// <summary>
    /// Patches the output copy of TorchSharp's <c>libLibTorchSharp.so</c> so that it loads with a
    /// libstdc++ that lacks <c>GLIBCXX_3.4.32</c>: the version requirement is marked weak
    /// (VER_FLG_WEAK) and a small library defining <c>std::ios_base_library_init()</c> is added as
    /// a DT_NEEDED entry. The dynamic loader accepts an unversioned definition from a library that
    /// is not the one named in the version requirement, so the symbol then binds to the shim.
    /// </summary>
    public class PatchLibTorchSharp : Task
    {
        private const string RequiredVersion = "GLIBCXX_3.4.32";
        private const string CompatLibrary = "libhierdistill_glibcxx_compat.so";
        private const string Origin = "$ORIGIN";

        /// <summary>Output folder that holds libLibTorchSharp.so (flat or under runtimes/linux-x64/native).</summary>
        [Required] public string OutputDirectory { get; set; } = "";

        /// <summary>The C++ source of the compatibility library.</summary>
        [Required] public string CompatSource { get; set; } = "";

        /// <summary>Where the compatibility library is compiled.</summary>
        [Required] public string IntermediateDirectory { get; set; } = "";

        /// <summary>C++ compiler used for the compatibility library.</summary>
        public string Compiler { get; set; } = "g++";

        /// <summary>Patch even where the host libstdc++ has the version (used to test the patch itself).</summary>
        public bool Force { get; set; }

        public override bool Execute()
        {
            string target = FindLibTorchSharp(OutputDirectory);
            if (target == null)
            {
                Log.LogMessage(MessageImportance.Low, "HierDistill: no libLibTorchSharp.so under {0}; nothing to patch.", OutputDirectory);
                return true;
            }

            string libstdcxx = FindLibstdcxx();
            if (!Force && libstdcxx != null && FileContains(libstdcxx, RequiredVersion))
            {
                Log.LogMessage(MessageImportance.Low, "HierDistill: {0} provides {1}; libLibTorchSharp.so left as shipped.", libstdcxx, RequiredVersion);
                return true;
            }

            try
            {
                byte[] image = File.ReadAllBytes(target);
                var elf = new Elf64(image, target);
                bool needsVersion = elf.FindVernaux(RequiredVersion) >= 0;
                if (!needsVersion)
                {
                    Log.LogMessage(MessageImportance.Low, "HierDistill: {0} does not require {1}; nothing to patch.", target, RequiredVersion);
                    return true;
                }

                string compat = BuildCompatLibrary();
                if (compat == null) return false;
                string compatTarget = Path.Combine(Path.GetDirectoryName(target), CompatLibrary);
                if (!File.Exists(compatTarget) || !SameBytes(compat, compatTarget))
                    File.Copy(compat, compatTarget, true);

                bool changed = elf.MarkVersionWeak(RequiredVersion);
                changed |= elf.AddNeeded(CompatLibrary, Origin);
                if (changed)
                {
                    // Write next to the target, then rename: a failed write never leaves a half-patched file.
                    string temp = target + ".hdpatch.tmp";
                    File.WriteAllBytes(temp, image);
                    File.Copy(temp, target, true);
                    File.Delete(temp);
                    Log.LogMessage(MessageImportance.Normal,
                        "HierDistill: patched {0} for a libstdc++ without {1} ({2}): weak version requirement, needs {3}.",
                        target, RequiredVersion, libstdcxx ?? "libstdc++ not found", CompatLibrary);
                }
                return true;
            }
            catch (InvalidDataException e)
            {
                Log.LogError("HierDistill: cannot patch {0}: {1}", target, e.Message);
                return false;
            }
        }

        private static string FindLibTorchSharp(string dir)
        {
            foreach (string candidate in new[]
                     {
                         Path.Combine(dir, "libLibTorchSharp.so"),
                         Path.Combine(dir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"),
                     })
            {
                if (File.Exists(candidate)) return Path.GetFullPath(candidate);
            }
            return null;
        }

        private string BuildCompatLibrary()
        {
            Directory.CreateDirectory(IntermediateDirectory);
            string output = Path.GetFullPath(Path.Combine(IntermediateDirectory, CompatLibrary));
            if (File.Exists(output) && File.GetLastWriteTimeUtc(output) >= File.GetLastWriteTimeUtc(CompatSource))
                return output;

            var psi = new ProcessStartInfo(Compiler, "-shared -fPIC -O2 -o " + Quote(output) + " " + Quote(CompatSource))
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            try
            {
                using (var p = Process.Start(psi))
                {
                    string stderr = p.StandardError.ReadToEnd();
                    p.StandardOutput.ReadToEnd();
                    p.WaitForExit();
                    if (p.ExitCode != 0)
                    {
                        Log.LogError("HierDistill: compiling {0} with {1} failed (exit {2}): {3}", CompatSource, Compiler, p.ExitCode, stderr);
                        return null;
                    }
                }
            }
            catch (System.ComponentModel.Win32Exception)
            {
                Log.LogError(
                    "HierDistill: this host's libstdc++ lacks {0}, which TorchSharp's libLibTorchSharp.so needs, and the " +
                    "compatibility library cannot be built because the C++ compiler '{1}' was not found. Install it " +
                    "(Debian/Ubuntu: apt-get install g++) or build on a host with GCC 13 or newer.", RequiredVersion, Compiler);
                return null;
            }
            return output;
        }

        private static string Quote(string path) => "\"" + path.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";

        private static string FindLibstdcxx()
        {
            try
            {
                var psi = new ProcessStartInfo(File.Exists("/sbin/ldconfig") ? "/sbin/ldconfig" : "ldconfig", "-p")
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                };
                using (var p = Process.Start(psi))
                {
                    string text = p.StandardOutput.ReadToEnd();
                    p.WaitForExit();
                    foreach (string line in text.Split('\n'))
                    {
                        string l = line.Trim();
                        if (l.StartsWith("libstdc++.so.6 ") && l.Contains("x86-64") && l.Contains("=> "))
                            return l.Substring(l.IndexOf("=> ", StringComparison.Ordinal) + 3).Trim();
                    }
                }
            }
            catch (System.ComponentModel.Win32Exception)
            {
                // no ldconfig: fall through to the usual places
            }
            foreach (string p in new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6" })
                if (File.Exists(p)) return p;
            return null;
        }

        private static bool FileContains(string path, string ascii)
        {
            byte[] data = File.ReadAllBytes(path);
            byte[] needle = Encoding.ASCII.GetBytes(ascii + "\0");
            for (int i = 0; i + needle.Length <= data.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && data[i + j] == needle[j]) j++;
                if (j == needle.Length) return true;
            }
            return false;
        }

        private static bool SameBytes(string a, string b)
        {
            byte[] x = File.ReadAllBytes(a), y = File.ReadAllBytes(b);
            if (x.Length != y.Length) return false;
            for (int i = 0; i < x.Length; i++) if (x[i] != y[i]) return false;
            return true;
        }

        /// <summary>Just enough of ELF64 (little endian) to edit version requirements and DT_NEEDED in place.</summary>
        private sealed class Elf64
        {
            private const uint PtLoad = 1, PtDynamic = 2;
            private const long DtNull = 0, DtNeeded = 1, DtStrtab = 5, DtStrsz = 10, DtSoname = 14, DtRpath = 15, DtRunpath = 29;
            private const long DtVerneed = 0x6ffffffe, DtVerneednum = 0x6fffffff, DtVerdef = 0x6ffffffc, DtVerdefnum = 0x6ffffffd;
            private const uint ShtDynsym = 11;
            private const ushort VerFlgWeak = 0x2;

            private readonly byte[] _b;
            private readonly string _path;
            private readonly List<(ulong Vaddr, ulong Offset, ulong Size)> _loads = new List<(ulong, ulong, ulong)>();
            private readonly long _dynOffset;
            private readonly int _dynSlots;

            public Elf64(byte[] image, string path)
            {
                _b = image;
                _path = path;
                if (image.Length < 64 || image[0] != 0x7f || image[1] != (byte)'E' || image[2] != (byte)'L' || image[3] != (byte)'F')
                    throw new InvalidDataException("not an ELF file");
                if (image[4] != 2 || image[5] != 1)
                    throw new InvalidDataException("not a 64-bit little-endian ELF file");
                long phoff = (long)U64(0x20);
                int phentsize = U16(0x36), phnum = U16(0x38);
                _dynOffset = -1;
                for (int i = 0; i < phnum; i++)
                {
                    long p = phoff + (long)i * phentsize;
                    uint type = U32(p);
                    ulong offset = U64(p + 8), vaddr = U64(p + 16), filesz = U64(p + 32);
                    if (type == PtLoad) _loads.Add((vaddr, offset, filesz));
                    if (type == PtDynamic) { _dynOffset = (long)offset; _dynSlots = (int)(filesz / 16); }
                }
                if (_dynOffset < 0) throw new InvalidDataException("no PT_DYNAMIC segment");
            }

            private ushort U16(long o) => BitConverter.ToUInt16(_b, (int)o);
            private uint U32(long o) => BitConverter.ToUInt32(_b, (int)o);
            private ulong U64(long o) => BitConverter.ToUInt64(_b, (int)o);
            private void W64(long o, ulong v) => Array.Copy(BitConverter.GetBytes(v), 0, _b, o, 8);

            private long FileOffset(ulong vaddr)
            {
                foreach (var l in _loads)
                    if (vaddr >= l.Vaddr && vaddr < l.Vaddr + l.Size) return (long)(l.Offset + (vaddr - l.Vaddr));
                throw new InvalidDataException($"address 0x{vaddr:x} is in no PT_LOAD segment");
            }

            private long Tag(int slot) => (long)U64(_dynOffset + 16L * slot);
            private ulong Val(int slot) => U64(_dynOffset + 16L * slot + 8);

            private int NullSlot()
            {
                for (int i = 0; i < _dynSlots; i++) if (Tag(i) == DtNull) return i;
                throw new InvalidDataException("dynamic section has no DT_NULL");
            }

            private ulong Dyn(long tag)
            {
                int n = NullSlot();
                for (int i = 0; i < n; i++) if (Tag(i) == tag) return Val(i);
                return ulong.MaxValue;
            }

            private long StrtabOffset => FileOffset(Dyn(DtStrtab));

            private string Str(ulong offset)
            {
                long start = StrtabOffset + (long)offset, end = start;
                while (_b[end] != 0) end++;
                return Encoding.ASCII.GetString(_b, (int)start, (int)(end - start));
            }

            /// <summary>File offset of the vna_flags field of the Vernaux naming <paramref name="version"/>, or -1.</summary>
            public long FindVernaux(string version)
            {
                ulong verneed = Dyn(DtVerneed), count = Dyn(DtVerneednum);
                if (verneed == ulong.MaxValue) return -1;
                long vn = FileOffset(verneed);
                for (ulong i = 0; i < count; i++)
                {
                    int cnt = U16(vn + 2);
                    long aux = vn + U32(vn + 8);
                    for (int j = 0; j < cnt; j++)
                    {
                        if (Str(U32(aux + 8)) == version) return aux + 4;
                        aux += U32(aux + 12);
                    }
                    vn += U32(vn + 12);
                }
                return -1;
            }

            public bool MarkVersionWeak(string version)
            {
                long flags = FindVernaux(version);
                if (flags < 0) return false;
                ushort f = U16(flags);
                if ((f & VerFlgWeak) != 0) return false;
                f |= VerFlgWeak;
                _b[flags] = (byte)(f & 0xff);
                _b[flags + 1] = (byte)(f >> 8);
                return true;
            }

            /// <summary>
            /// Adds DT_NEEDED <paramref name="library"/> after the existing ones. The string goes where the
            /// DT_RUNPATH string was, which is rewritten to <paramref name="newRunpath"/> (the shipped one is
            /// "$ORIGIN/" followed by build-machine folders); the entry uses a spare DT_NULL slot.
            /// </summary>
            public bool AddNeeded(string library, string newRunpath)
            {
                int nul = NullSlot();
                int lastNeeded = -1, runpathSlot = -1;
                for (int i = 0; i < nul; i++)
                {
                    long tag = Tag(i);
                    if (tag == DtNeeded)
                    {
                        if (Str(Val(i)) == library) return false;
                        lastNeeded = i;
                    }
                    if (tag == DtRunpath || tag == DtRpath) runpathSlot = i;
                }
                if (nul + 1 >= _dynSlots)
                    throw new InvalidDataException("the dynamic section has no spare slot for another DT_NEEDED entry");
                if (runpathSlot < 0)
                    throw new InvalidDataException("no DT_RUNPATH/DT_RPATH string to make room for the library name");

                ulong runpath = Val(runpathSlot);
                string old = Str(runpath);
                int needed = newRunpath.Length + 1 + library.Length + 1;
                if (old.Length + 1 < needed)
                    throw new InvalidDataException($"the DT_RUNPATH string '{old}' is too short to hold '{library}'");
                if (!old.StartsWith(newRunpath, StringComparison.Ordinal))
                    throw new InvalidDataException($"unexpected DT_RUNPATH '{old}' (expected it to start with {newRunpath})");
                EnsureNoStringPointsInto(runpath + 1, runpath + (ulong)old.Length, runpathSlot);

                long s = StrtabOffset + (long)runpath;
                byte[] replacement = new byte[old.Length + 1];
                Encoding.ASCII.GetBytes(newRunpath).CopyTo(replacement, 0);
                Encoding.ASCII.GetBytes(library).CopyTo(replacement, newRunpath.Length + 1);
                replacement.CopyTo(_b, s);

                int insertAt = lastNeeded + 1;
                for (int i = nul; i >= insertAt; i--)
                {
                    W64(_dynOffset + 16L * (i + 1), (ulong)Tag(i));
                    W64(_dynOffset + 16L * (i + 1) + 8, Val(i));
                }
                W64(_dynOffset + 16L * insertAt, (ulong)DtNeeded);
                W64(_dynOffset + 16L * insertAt + 8, runpath + (ulong)newRunpath.Length + 1);
                return true;
            }

            /// <summary>Fails if any other string reference (symbols, versions, dynamic entries) lands inside [first, last].</summary>
            private void EnsureNoStringPointsInto(ulong first, ulong last, int ownerSlot)
            {
                void Check(ulong offset, string what)
                {
                    if (offset >= first && offset <= last)
                        throw new InvalidDataException($"{what} shares the DT_RUNPATH string; refusing to rewrite it ({_path})");
                }

                int nul = NullSlot();
                for (int i = 0; i < nul; i++)
                {
                    long tag = Tag(i);
                    if (i != ownerSlot && (tag == DtNeeded || tag == DtSoname || tag == DtRpath || tag == DtRunpath))
                        Check(Val(i), $"dynamic entry {i}");
                }

                ulong verneed = Dyn(DtVerneed);
                if (verneed != ulong.MaxValue)
                {
                    long vn = FileOffset(verneed);
                    for (ulong i = 0; i < Dyn(DtVerneednum); i++)
                    {
                        Check(U32(vn + 4), "a version file name");
                        long aux = vn + U32(vn + 8);
                        for (int j = 0; j < U16(vn + 2); j++) { Check(U32(aux + 8), "a version name"); aux += U32(aux + 12); }
                        vn += U32(vn + 12);
                    }
                }

                ulong verdef = Dyn(DtVerdef);
                if (verdef != ulong.MaxValue)
                {
                    long vd = FileOffset(verdef);
                    for (ulong i = 0; i < Dyn(DtVerdefnum); i++)
                    {
                        long aux = vd + U32(vd + 12);
                        for (int j = 0; j < U16(vd + 6); j++) { Check(U32(aux), "a version definition"); aux += U32(aux + 4); }
                        vd += U32(vd + 16);
                    }
                }

                long shoff = (long)U64(0x28);
                int shentsize = U16(0x3A), shnum = U16(0x3C);
                for (int i = 0; i < shnum && shoff > 0; i++)
                {
                    long sh = shoff + (long)i * shentsize;
                    if (U32(sh + 4) != ShtDynsym) continue;
                    long off = (long)U64(sh + 24), size = (long)U64(sh + 32), entsize = (long)U64(sh + 56);
                    for (long e = off; e < off + size; e += entsize) Check(U32(e), "a dynamic symbol name");
                }
            }
        }
    }
}
