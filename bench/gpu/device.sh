#!/usr/bin/env bash
# The one prepared GPU check (issue 7), run on the lent GPU machine from the checkout root with gpu-bundle/ carried:
#   run(command="bash bench/gpu/device.sh", carry=["gpu-bundle"], timeout_s=540)
# Build the bundle here first: bench/gpu/package.sh (about 60 MiB: app without libtorch natives, .NET runtime,
# Fashion-MNIST). Builds nothing there. Steps (each bounded by `timeout`, so the table always prints):
#   1. unpack; .NET from the bundle; libtorch = PyTorch's torch/lib (LD_LIBRARY_PATH)
#   2. hierdistill on CUDA: the GPU preset (samples/fmnist/hd-gpu.json: DiT-S/2, batch 256) shortened to
#      STEPS teacher steps and STEPS MeanFlow steps, no stage 2 or evaluation: the TorchSharp step times
#   3. hierdistill probe: the trained teacher's velocity on fixed inputs
#   4. bench/gpu/reference.py: the same network in PyTorch from the same weights, forward check (rel. err < 1e-3),
#      then the same teacher and MeanFlow steps timed (double-backward JVP as HierDistill, then forward-mode)
#   5. with FULL_SECONDS > 0: the GPU preset as configured, stopped after FULL_SECONDS (it checkpoints; resume it
#      in a later session with --resume)
#   6. a short table: step times, TorchSharp/PyTorch ratios, peak memory
# Results (logs, metrics, the table) go to $OUT (at most 8 files come back).
# Local rehearsal (no GPU, Debian 12): DEVICE=cpu PYTHON=/usr/bin/python3 TORCH_LIB=<a libtorch 2.10 lib folder>
#   WRAPPER=<the GLIBCXX-patched libLibTorchSharp.so of a normal build> EXTRA="--set ..." STEPS=6 WARMUP=2
set -uo pipefail
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
EXTRA=${EXTRA:-}
STEPS=${STEPS:-300}
WARMUP=${WARMUP:-50}
FULL_SECONDS=${FULL_SECONDS:-0}
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
export DOTNET_ROOT="$W/dotnet" PATH="$W/dotnet:$PATH" DOTNET_CLI_TELEMETRY_OPTOUT=1
TORCH_LIB=${TORCH_LIB:-$($PYTHON -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}" HIERDISTILL_LIBTORCH="$TORCH_LIB"
$PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv >> "$OUT/env.txt" 2>&1
hd() { dotnet "$W/app/hierdistill.dll" "$@"; }
DATA=(--set "data:options:folder=$W/fashion-mnist" --set run.device="$DEVICE" $EXTRA)

log "TorchSharp: teacher $STEPS steps, MeanFlow $STEPS steps (DiT-S/2, batch 256, CUDA)"
timeout 240 dotnet "$W/app/hierdistill.dll" run samples/fmnist/hd-gpu.json --overwrite "${DATA[@]}" \
  --set run.outputDir="$W/bench" --set run.logEvery=25 --set run.checkpointEvery=0 \
  --set stages:teacher:training:steps="$STEPS" --set stages:structure:training:steps="$STEPS" \
  --set stages:detail:enabled=false --set stages:evaluate:enabled=false > "$OUT/torchsharp.log" 2>&1
echo "exit $?" >> "$OUT/torchsharp.log"
tail -3 "$OUT/torchsharp.log"
cp "$W/bench/metrics.jsonl" "$OUT/torchsharp-metrics.jsonl" 2>/dev/null

log "probe + PyTorch reference"
timeout 60 dotnet "$W/app/hierdistill.dll" probe samples/fmnist/hd-gpu.json "${DATA[@]}" \
  --weights "$W/bench/teacher.safetensors" --out "$W/probe.safetensors" > "$OUT/reference.log" 2>&1
timeout 150 $PYTHON bench/gpu/reference.py --run "$W/bench" --probe "$W/probe.safetensors" --data "$W/fashion-mnist" --device "$DEVICE" \
  --steps "$STEPS" --warmup "$WARMUP" --json "$OUT/reference.json" >> "$OUT/reference.log" 2>&1
echo "exit $?" >> "$OUT/reference.log"
timeout 60 $PYTHON bench/gpu/reference.py --run "$W/bench" --data "$W/fashion-mnist" --device "$DEVICE" --steps 100 --warmup 20 --jvp forward \
  --json "$OUT/reference-forward.json" >> "$OUT/reference.log" 2>&1
tail -6 "$OUT/reference.log"

if [ "$FULL_SECONDS" -gt 0 ]; then
  log "the GPU preset for at most $FULL_SECONDS s"
  timeout -s INT "$FULL_SECONDS" dotnet "$W/app/hierdistill.dll" run samples/fmnist/hd-gpu.json --overwrite "${DATA[@]}" \
    --set run.outputDir="$W/full" > "$OUT/full.log" 2>&1
  echo "exit $?" >> "$OUT/full.log"
  cp "$W/full/report.md" "$OUT/full-report.md" 2>/dev/null
fi

log "table"
$PYTHON - "$W/bench/metrics.jsonl" "$OUT/reference.json" "$OUT/reference-forward.json" "$WARMUP" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()] if len(sys.argv) > 1 else []
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
