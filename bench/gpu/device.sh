#!/usr/bin/env bash
# The one prepared GPU check (issue 7), run on the lent GPU machine from the checkout root with gpu-bundle/ carried:
#   run(command="bash bench/gpu/device.sh", carry=["gpu-bundle"], timeout_s=540)
# Build the bundle here first: bench/gpu/package.sh (about 60 MiB: app without libtorch natives, .NET runtime,
# Fashion-MNIST). Builds nothing there. Steps (each bounded by `timeout -k`, so the table always prints; about 300 s
# expected, at most about 450 s with the imports; estimates for an H200 in fp32: teacher step 150-250 ms, MeanFlow
# step 400-650 ms at batch 256):
#   1. unpack; .NET from the bundle (invariant globalization: no ICU needed); libtorch = PyTorch's torch/lib
#   2. hierdistill on CUDA: the GPU preset (samples/fmnist/hd-gpu.json: DiT-S/2, batch 256) shortened to
#      STEPS teacher steps and STEPS MeanFlow steps, no stage 2 or evaluation: the TorchSharp step times
#   3. hierdistill probe: the trained teacher's velocity on fixed inputs
#   4. bench/gpu/reference.py: the same network in PyTorch from the same weights, forward check (rel. err < 1e-3;
#      timing continues either way), then the same teacher and MeanFlow steps timed (double-backward JVP as
#      HierDistill; then MeanFlow with PyTorch's forward-mode JVP), each within a time budget
#   5. a short table: step times, TorchSharp/PyTorch ratios; peak GPU memory of each side (nvidia-smi) in env.txt
# Known asymmetry: PyTorch's Adam and clip_grad_norm_ use multi-tensor (foreach) kernels on CUDA, TorchSharp's loop
# over parameters (about +2-4 % on the teacher ratio, +1 % on MeanFlow, estimated).
# The full GPU preset (40k teacher steps) does not fit a device session; size a shorter one from these step times.
# Results (logs, metrics, the table) go to $OUT (at most 8 files come back).
# Local rehearsal (no GPU, Debian 12): DEVICE=cpu PYTHON=/usr/bin/python3 TORCH_LIB=<a libtorch 2.10 lib folder>
#   WRAPPER=<the GLIBCXX-patched libLibTorchSharp.so of a normal build> EXTRA="--set ..." STEPS=6 WARMUP=2
set -uo pipefail
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
EXTRA=${EXTRA:-}
STEPS=${STEPS:-150}
WARMUP=${WARMUP:-30}
LOG_EVERY=${LOG_EVERY:-10}
OUT=${OUT:-/tmp/hd-out}
W=${W:-/tmp/hd}
mkdir -p "$OUT" "$W"
log() { echo "[$(date +%H:%M:%S)] $*"; }

log "unpacking"
mkdir -p "$W/app" "$W/dotnet"
tar -C "$W/app" -xJf gpu-bundle/app.tar.xz
tar -C "$W/dotnet" -xJf gpu-bundle/dotnet.tar.xz
tar -C "$W" -xJf gpu-bundle/fmnist.tar.xz
if [ -n "${WRAPPER:-}" ]; then
  find "$W/app" -name libLibTorchSharp.so -exec cp "$WRAPPER" {} \;
  cp "$(dirname "$WRAPPER")/libhierdistill_glibcxx_compat.so" "$(dirname "$(find "$W/app" -name libLibTorchSharp.so | head -1)")/"
fi
export DOTNET_ROOT="$W/dotnet" PATH="$W/dotnet:$PATH" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
TORCH_LIB=${TORCH_LIB:-$($PYTHON -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}" HIERDISTILL_LIBTORCH="$TORCH_LIB"
$PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv >> "$OUT/env.txt" 2>&1
smi() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$1" 2>/dev/null & SMI=$!; }
smi_end() { kill "$SMI" 2>/dev/null; wait "$SMI" 2>/dev/null; echo "$2 peak GPU memory (nvidia-smi): $(sort -n "$1" 2>/dev/null | tail -1) MiB" >> "$OUT/env.txt"; }
hd() { dotnet "$W/app/hierdistill.dll" "$@"; }
DATA=(--set "data:options:folder=$W/fashion-mnist" --set run.device="$DEVICE" $EXTRA)

log "TorchSharp: teacher $STEPS steps, MeanFlow $STEPS steps (DiT-S/2, batch 256, CUDA)"
smi "$W/smi-ts.txt"
timeout -k 30 180 dotnet "$W/app/hierdistill.dll" run samples/fmnist/hd-gpu.json --overwrite "${DATA[@]}" \
  --set run.outputDir="$W/bench" --set run.logEvery="$LOG_EVERY" --set run.checkpointEvery=0 \
  --set stages:teacher:training:steps="$STEPS" --set stages:structure:training:steps="$STEPS" \
  --set stages:detail:enabled=false --set stages:evaluate:enabled=false > "$OUT/torchsharp.log" 2>&1
echo "exit $?" >> "$OUT/torchsharp.log"
smi_end "$W/smi-ts.txt" TorchSharp
tail -3 "$OUT/torchsharp.log"
cp "$W/bench/metrics.jsonl" "$OUT/torchsharp-metrics.jsonl" 2>/dev/null

log "probe + PyTorch reference"
timeout -k 10 45 dotnet "$W/app/hierdistill.dll" probe samples/fmnist/hd-gpu.json "${DATA[@]}" \
  --weights "$W/bench/teacher.safetensors" --out "$W/probe.safetensors" > "$OUT/reference.log" 2>&1
timeout -k 10 140 $PYTHON bench/gpu/reference.py --run "$W/bench" --probe "$W/probe.safetensors" --data "$W/fashion-mnist" --device "$DEVICE" \
  --steps "${REF_STEPS:-100}" --warmup "${REF_WARMUP:-20}" --max-seconds "${REF_MAX_S:-45}" --json "$OUT/reference.json" >> "$OUT/reference.log" 2>&1
echo "exit $?" >> "$OUT/reference.log"
timeout -k 10 70 $PYTHON bench/gpu/reference.py --run "$W/bench" --data "$W/fashion-mnist" --device "$DEVICE" --only meanflow --steps "${FWD_STEPS:-60}" --warmup "${FWD_WARMUP:-10}" --max-seconds "${FWD_MAX_S:-25}" --jvp forward \
  --json "$OUT/reference-forward.json" >> "$OUT/reference.log" 2>&1
tail -6 "$OUT/reference.log"


log "table"
$PYTHON - "$W/bench/metrics.jsonl" "$OUT/reference.json" "$OUT/reference-forward.json" "$WARMUP" <<'PY' | tee "$OUT/table.md"
import json, sys
try: rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
except Exception as e: rows = []; print(f'(no TorchSharp metrics: {e})')
warmup = int(sys.argv[4])
def ts_ms(stage):
    # step time between the first logged step after the warm-up and the last one (CUDA is synchronised at each log)
    s = [r for r in rows if r["stage"] == stage and r["step"] >= warmup]
    if len(s) < 2: return None
    return 1000 * (s[-1]["elapsed_s"] - s[0]["elapsed_s"]) / (s[-1]["step"] - s[0]["step"])
def load(p):
    try: return json.load(open(p))
    except Exception: return {}
ref, fwd = load(sys.argv[2]), load(sys.argv[3])
print("| step | TorchSharp ms | PyTorch ms | ratio |")
print("|---|---|---|---|")
for name, stage, key, r in [("teacher (DiT-S/2, b256)", "teacher", "teacher_step_ms", ref),
                             ("MeanFlow, double-backward JVP", "structure", "meanflow_step_ms", ref),
                             ("MeanFlow, PyTorch forward-mode JVP", "structure", "meanflow_step_ms", fwd)]:
    a, b = ts_ms(stage), r.get(key)
    ratio = f"{a / b:.3f}" if a and b else "—"
    print(f"| {name} | {a and round(a, 3)} | {b and round(b, 3)} | {ratio} |")
print()
print(f"forward check (relative error): {ref.get('forward_relative_error')}; PyTorch peak memory GiB: {ref.get('peak_memory_gib')}")
PY
log "done"
