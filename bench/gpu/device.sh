#!/usr/bin/env bash
# The one prepared GPU check (issue 7), run on the lent GPU machine from the checkout root with gpu-bundle/ carried:
#   run(command="bash bench/gpu/device.sh", carry=["gpu-bundle"], timeout_s=600)
# Build the bundle here first: bench/gpu/package.sh (about 60 MiB: app without libtorch natives, .NET runtime,
# Fashion-MNIST). Builds nothing there. Every step is bounded by `timeout` (about 580 s in all), so the table always prints;
# about 7.5 min expected:
#   1. unpack; .NET from the bundle (invariant globalization: no ICU needed); libtorch = PyTorch's torch/lib  (~15 s)
#   2. calibrate: the GPU preset (samples/fmnist/hd-gpu.json: DiT-S/2, batch 256, bfloat16) for CAL_STEPS steps of each
#      training stage, no evaluation: TorchSharp's ms/step per stage (steps 20 .. CAL_STEPS)                   (<= 95 s)
#   3. the GPU preset end to end (teacher, MeanFlow, DMD + AWD, evaluation) with its step counts scaled so that its
#      training takes about TRAIN_S seconds (capped at the preset's own); SIGTERM at the limit writes a checkpoint
#                                                                                                         (<= 340 s)
#   4. hierdistill probe on that teacher, then bench/gpu/reference.py: the same network in PyTorch from the same weights,
#      forward check in float32 (relative error < 1e-3; timing continues either way), then the teacher step and the
#      MeanFlow step (double-backward JVP, as HierDistill) timed at the run's precision and batch       (<= 85 s)
#   5. a short table (table.md): TorchSharp/PyTorch step-time ratios, the HD one-step student against the teacher's
#      best FD-FMNIST, sampling speed per image, peak device memory per stage
# Known asymmetries: HierDistill's Adam/clip/EMA run on flat buffers (about a dozen kernels), PyTorch's on foreach kernels
# and the reference's EMA loops over tensors (the DiT repository's); HierDistill also masks non-finite steps on the device
# and checks its parameter/gradient aliasing on the host each step (the reference does neither); the reference syncs every
# 10 steps to honour its time budget.
# TorchSharp's step times come from the preset run's metrics.jsonl (between logged steps, after WARMUP steps).
# Results go to $OUT (at most 8 files come back): table.md, report.md, hierdistill.log, calibrate.log, reference.log,
# reference.json, metrics.json, env.txt.
# Local rehearsal (no GPU, Debian 12): DEVICE=cpu PYTHON=/usr/bin/python3 TORCH_LIB=<a libtorch 2.10 lib folder>
#   WRAPPER=<the GLIBCXX-patched libLibTorchSharp.so of a normal build> EXTRA="--set ..." CAL_STEPS=30 TRAIN_S=60
set -uo pipefail
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
EXTRA=${EXTRA:-}
CAL_STEPS=${CAL_STEPS:-40}     # calibration steps per training stage
TRAIN_S=${TRAIN_S:-200}        # training seconds of the preset run (all three stages)
RUN_LIMIT=${RUN_LIMIT:-320}    # hard limit of the preset run (training + evaluation), seconds
WARMUP=${WARMUP:-100}          # steps left out of TorchSharp's step time
OUT=${OUT:-/tmp/hd-out}
W=${W:-/tmp/hd}
mkdir -p "$OUT" "$W"
log() { echo "[$(date +%H:%M:%S)] $*"; }
PRESET=samples/fmnist/hd-gpu.json

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
hd() { dotnet "$W/app/hierdistill.dll" "$@"; }
COMMON=(--set "data:options:folder=$W/fashion-mnist" --set run.device="$DEVICE" --set "stages:evaluate:classifier:cacheDir=$W/cache" $EXTRA)

log "calibrate: $CAL_STEPS steps of each training stage"
timeout -k 5 90 dotnet "$W/app/hierdistill.dll" run "$PRESET" --overwrite "${COMMON[@]}" \
  --set run.outputDir="$W/calibrate" --set run.logEvery=10 --set run.checkpointEvery=0 \
  --set stages:teacher:training:steps="$CAL_STEPS" --set stages:structure:training:steps="$CAL_STEPS" \
  --set stages:detail:training:steps="$CAL_STEPS" --set stages:evaluate:enabled=false > "$OUT/calibrate.log" 2>&1
echo "exit $?" >> "$OUT/calibrate.log"
tail -2 "$OUT/calibrate.log"
# Step counts for the preset run: TRAIN_S split 35/25/40 over teacher/structure/detail by the measured ms/step (steps >= 20),
# (stage 2 gets the largest share: on the CPU preset 3x more DMD + AWD iterations took the one-step FD from 1.52x to 1.40x
# the teacher's best, docs/benchmarks.md),
# at most the preset's own counts; a stage the calibration did not reach gets its preset count / 8.
read -r T_STEPS S_STEPS D_STEPS < <($PYTHON - "$W/calibrate/metrics.jsonl" "$PRESET" "$TRAIN_S" <<'PY'
import json, re, sys
def ms(stage):
    try: rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    except Exception: return None
    s = [r for r in rows if r["stage"] == stage and r["step"] >= 20]
    return 1000 * (s[-1]["elapsed_s"] - s[0]["elapsed_s"]) / (s[-1]["step"] - s[0]["step"]) if len(s) >= 2 and s[-1]["step"] > s[0]["step"] else None
text = re.sub(r"^\s*//.*$", "", open(sys.argv[2]).read(), flags=re.M)
stages = json.loads(text)["stages"]
budget, out = float(sys.argv[3]), []
for key, share in (("teacher", 0.35), ("structure", 0.25), ("detail", 0.4)):
    cap = stages[key]["training"]["steps"]
    m = ms(key)
    out.append(str(max(50, min(cap, int(budget * share * 1000 / m)))) if m else str(cap // 8))
print(" ".join(out))
PY
)
log "preset run: teacher $T_STEPS, structure $S_STEPS, detail $D_STEPS steps (about ${TRAIN_S} s of training), then evaluation"
timeout -s TERM -k 20 "$RUN_LIMIT" dotnet "$W/app/hierdistill.dll" run "$PRESET" --overwrite "${COMMON[@]}" \
  --set run.outputDir="$W/run" --set run.checkpointEvery=0 --set stages:teacher:training:steps="$T_STEPS" \
  --set stages:structure:training:steps="$S_STEPS" --set stages:detail:training:steps="$D_STEPS" > "$OUT/hierdistill.log" 2>&1
echo "exit $?" >> "$OUT/hierdistill.log"
tail -3 "$OUT/hierdistill.log"
cp "$W/run/report.md" "$W/run/metrics.json" "$OUT/" 2>/dev/null

log "probe + PyTorch reference"
timeout -k 5 40 dotnet "$W/app/hierdistill.dll" probe "$PRESET" "${COMMON[@]}" \
  --weights "$W/run/teacher.safetensors" --out "$W/probe.safetensors" > "$OUT/reference.log" 2>&1
timeout -k 5 80 $PYTHON bench/gpu/reference.py --run "$W/run" --probe "$W/probe.safetensors" --data "$W/fashion-mnist" --device "$DEVICE" \
  --steps "${REF_STEPS:-300}" --warmup "${REF_WARMUP:-30}" --max-seconds "${REF_MAX_S:-20}" --json "$OUT/reference.json" >> "$OUT/reference.log" 2>&1
echo "exit $?" >> "$OUT/reference.log"
tail -4 "$OUT/reference.log"

log "table"
$PYTHON - "$W/run/metrics.jsonl" "$OUT/reference.json" "$W/run/metrics.json" "$WARMUP" "$W/calibrate/metrics.jsonl" <<'PY' | tee "$OUT/table.md"
import json, sys
def rows(p):
    try: return [json.loads(l) for l in open(p) if l.strip()]
    except Exception: return []
def load(p):
    try: return json.load(open(p))
    except Exception: return {}
run, ref, report, warmup, cal = rows(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3]), int(sys.argv[4]), rows(sys.argv[5])
def ts_ms(stage):
    # between the first logged step after the warm-up and the last one (the logged steps are the loop's only host reads)
    for source, skip in ((run, warmup), (cal, 20)):
        s = [r for r in source if r["stage"] == stage and r["step"] >= skip]
        if len(s) >= 2 and s[-1]["step"] > s[0]["step"]:
            return 1000 * (s[-1]["elapsed_s"] - s[0]["elapsed_s"]) / (s[-1]["step"] - s[0]["step"])
    return None
print(f"precision {ref.get('precision')}, forward check (float32) relative error {ref.get('forward_relative_error')} "
      f"({ref.get('forward_check')}, limit 1e-3)\n")
try:
    cfg = json.load(open(sys.argv[1].replace("metrics.jsonl", "config.resolved.json")))["stages"]
    net = (cfg["teacher"]["teacher"].get("options") or {}).get("preset", "?")
    batch = "/".join(str(cfg[k]["training"]["batchSize"]) for k in ("teacher", "structure", "detail"))
except Exception:
    net, batch = "?", "?"
print(f"| step ({net}, batch {batch}) | TorchSharp ms | PyTorch ms | ratio (target <= 1.10) |")
print("|---|---|---|---|")
for name, stage, key in (("teacher (flow matching)", "teacher", "teacher_step_ms"), ("MeanFlow, double-backward JVP", "structure", "meanflow_step_ms")):
    a, b = ts_ms(stage), ref.get(key)
    print(f"| {name} | {a and round(a, 2)} | {b and round(b, 2)} | {f'{a / b:.3f}' if a and b else '-'} |")
d = ts_ms("detail")
print(f"| DMD + AWD (no reference) | {d and round(d, 2)} | - | - |\n")
models = report.get("models", [])
metric = report.get("primary_metric", "fd_fmnist")
teacher = [m for m in models if m["kind"] == "teacher" and metric in m["metrics"]]
hd = next((m for m in models if m["name"] == "detail" and m["nfe"] == 1), None)
td = next((m for m in models if m["name"] == "structure" and m["nfe"] == 1), None)
if teacher and hd:
    best = min(teacher, key=lambda m: m["metrics"][metric])
    print(f"teacher best {metric} {best['metrics'][metric]:.2f} at NFE {best['nfe']} ({1000 * best['seconds_per_sample']:.4f} ms/image)")
    for label, m in (("TD one-step (structure)", td), ("HD one-step (detail)", hd)):
        if m:
            print(f"{label}: {metric} {m['metrics'][metric]:.2f} = {m['metrics'][metric] / best['metrics'][metric]:.3f}x the teacher's best "
                  f"(target <= 1.1 for HD); {1000 * m['seconds_per_sample']:.4f} ms/image = "
                  f"{best['seconds_per_sample'] / m['seconds_per_sample']:.1f}x faster than the teacher at NFE {best['nfe']} (target >= 20)")
else:
    print("(no evaluation in metrics.json: the preset run did not finish; see hierdistill.log)")
for s in report.get("stages", []) if isinstance(report.get("stages"), list) else []:
    print(f"stage {s.get('stage')}: {s.get('steps')} steps, {s.get('step_ms')} ms/step, {s.get('samples_per_s')} samples/s, "
          f"peak device memory {s.get('peak_device_mib')} MiB")
print(f"(HierDistill's peak is NVML's whole-device memory in use: CUDA context + PyTorch's cached blocks; not comparable with)\n"
      f"PyTorch max_memory_allocated over the reference's steps: {ref.get('peak_memory_gib')} GiB")
PY
log "done"
