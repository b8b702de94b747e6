#!/usr/bin/env bash
# Packs what the GPU machine needs into gpu-bundle/ (git-ignored; name it in the device tool's `carry`). That machine
# has PyTorch (CUDA) but no .NET and no data (../shared/docs/gpu.md):
#   gpu-bundle/app.tar.xz     hierdistill and its plugins built with -p:HierDistillTorchNatives=none: no libtorch
#                             natives (libtorch comes from PyTorch's torch/lib there) and the TorchSharp wrapper as
#                             shipped (its libstdc++ has GLIBCXX_3.4.32; the Debian 12 patch is not needed there)
#   gpu-bundle/dotnet.tar.xz  the .NET runtime of this machine
#   gpu-bundle/fmnist.tar.xz  the four Fashion-MNIST IDX files, uncompressed inside
# Everything the device run needs besides the checkout itself (scripts, samples, bench/gpu/reference.py).
#
#   bench/gpu/package.sh [OUT]      (default OUT: gpu-bundle)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-gpu-bundle}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

dotnet build src/Host -c Release -p:HierDistillTorchNatives=none -p:ArtifactsPath="$work/artifacts" -v q -nologo >/dev/null
app="$work/artifacts/bin/HierDistill.Host/release"
# The wrapper as shipped, of the TorchSharp version the build pins (Directory.Packages.props), from NuGet's packages folder.
ts_version=$(sed -n 's/.*PackageVersion Include="TorchSharp" Version="\([^"]*\)".*/\1/p' Directory.Packages.props)
native="${NUGET_PACKAGES:-$HOME/.nuget/packages}/torchsharp/$ts_version/runtimes/linux-x64/native/libLibTorchSharp.so"
[ -n "$ts_version" ] && [ -f "$native" ] || { echo "libLibTorchSharp.so of TorchSharp '$ts_version' not found at $native" >&2; exit 1; }
find "$app" -name libLibTorchSharp.so -exec cp "$native" {} \;
find "$app" -name 'libhierdistill_glibcxx_compat.so' -delete
find "$app/runtimes" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +   # other platforms' natives
find "$app" -name '*.pdb' -delete
find "$app" -name '*.xml' -delete
if find "$app" -name 'libtorch*.so*' | grep -q .; then echo "CPU libtorch natives in the bundle; build with HierDistillTorchNatives=none" >&2; exit 1; fi
tar -C "$app" -cJf "$out/app.tar.xz" .

dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
tar -C "$dotnet_root" -cJf "$out/dotnet.tar.xz" dotnet host shared/Microsoft.NETCore.App

fm=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
mkdir -p "$work/fashion-mnist"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -f "$fm/$f.gz" ]; then gunzip -c "$fm/$f.gz" > "$work/fashion-mnist/$f"; else cp "$fm/$f" "$work/fashion-mnist/$f"; fi
done
XZ_OPT=-9 tar -C "$work" -cJf "$out/fmnist.tar.xz" fashion-mnist

ls -l "$out"
du -cb "$out"/*.tar.xz | tail -1 | awk '{ printf "bundle: %.1f MiB (the device tool carries 64 MiB in all)\n", $1 / 1048576 }'
