#!/usr/bin/env bash
# The one prepared GPU check (issue 7), run on the lent GPU machine from the checkout root with gpu-bundle/ carried:
#   run(command="bash bench/gpu/device.sh", carry=["gpu-bundle"], timeout_s=600)
# Build the bundle here first: bench/gpu/package.sh (about 60 MiB: app without libtorch natives, .NET runtime,
# Fashion-MNIST). Builds nothing there. The calibration, the preset run, the probe and the reference are bounded by
# `timeout` and share one deadline, BUDGET_S seconds from the start (default 520), which the script aims to end by: a
# step's limit is its own or what the deadline leaves after the later steps' reserves (their expected times: probe 30 s,
# reference 80 s, table 10 s, the preset run's 20 s kill grace), whichever is less but at least 5 s (plus a 5 s kill
# grace), and the preset run's training time shrinks with it. Unpacking, the table and the archive are not bounded
# (seconds). The table is written after the preset
# run and again at the end, so a call stopped at its limit still brings it back. About 8.5 min expected:
#   1. unpack; .NET from the bundle (invariant globalization: no ICU needed); libtorch = PyTorch's torch/lib  (~15 s)
#   2. calibrate: the GPU preset (samples/fmnist/hd-gpu.json: DiT-S/2, batch 256, bfloat16) for CAL_STEPS steps of each
#      training stage, no evaluation: TorchSharp's ms/step per stage (logged steps 20 .. CAL_STEPS - PHASE_STEPS - 1),
#      then its last PHASE_STEPS steps timed phase by phase (forward, backward, optimizer, ...; synchronised)    (<= 95 s)
#   3. the GPU preset end to end (teacher, MeanFlow, DMD + AWD, evaluation) with its step counts scaled so that its
#      training takes about TRAIN_S seconds (capped at the preset's own), then its evaluation; SIGTERM at the limit
#      stops it at the next step boundary (training or evaluation; SIGKILL 20 s later)                      (<= 340 s)
#   4. hierdistill probe on that teacher, then bench/gpu/reference.py: the same network in PyTorch from the same weights,
#      forward check in float32 (relative error < 1e-3; timing continues either way), then the teacher step and the
#      MeanFlow step (double-backward JVP, as HierDistill) timed at the run's precision and batch      (<= 130 s)
#   5. a short table (table.md): TorchSharp/PyTorch step-time ratios, the HD one-step student against the teacher's
#      best FD-FMNIST, sampling speed per image, peak device memory per stage
# Known asymmetries: HierDistill's Adam/clip/EMA run on flat buffers (about a dozen kernels), PyTorch's on foreach kernels
# and the reference's EMA loops over tensors (the DiT repository's); HierDistill also masks non-finite steps on the device
# and checks its parameter/gradient aliasing on the host each step (the reference does neither); the reference syncs every
# 10 steps to honour its time budget.
# TorchSharp's step times come from the preset run's metrics.jsonl (between logged steps, after WARMUP steps; the
# arithmetic of the step counts and of the table is bench/gpu/summary.py).
# Results go to $OUT (at most 8 files come back): table.md, report.md, hierdistill.log, reference.json, metrics.json and
# logs.tar.gz (calibrate.log, reference.log, env.txt, both runs' metrics.jsonl, the run's figures and report). Until the
# last step calibrate.log, reference.log and env.txt stand in $OUT on their own.
# Local rehearsal (no GPU, Debian 12): DEVICE=cpu PYTHON=/usr/bin/python3 TORCH_LIB=<a libtorch 2.10 lib folder>
#   WRAPPER=<the GLIBCXX-patched libLibTorchSharp.so of a normal build> EXTRA="--set ..." CAL_STEPS=30 TRAIN_S=60
set -uo pipefail
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
EXTRA=${EXTRA:-}
CAL_STEPS=${CAL_STEPS:-45}     # calibration steps per training stage
PHASE_STEPS=${PHASE_STEPS:-10} # of which the last ones are timed phase by phase (HIERDISTILL_PHASE_TIMING), not used by the plan
TRAIN_S=${TRAIN_S:-200}        # training seconds of the preset run (all three stages)
RUN_LIMIT=${RUN_LIMIT:-320}    # hard limit of the preset run (training + evaluation), seconds
BUDGET_S=${BUDGET_S:-520}      # deadline of the whole script, seconds from its start
WARMUP=${WARMUP:-100}          # steps left out of TorchSharp's step time
OUT=${OUT:-/tmp/hd-out}
W=${W:-/tmp/hd}
mkdir -p "$OUT" "$W"
# A warm machine (or a local rehearsal) may hold the last call's files: nothing of it may pass for this call's.
rm -rf "$W/logs" "$W/probe.safetensors"
rm -f "$OUT"/{table.md,table.md.tmp,report.md,metrics.json,reference.json,hierdistill.log,calibrate.log,reference.log,env.txt,logs.tar.gz}
log() { echo "[$(date +%H:%M:%S)] $*"; }
# limit OWN RESERVE: OWN seconds, or what the deadline leaves after RESERVE seconds for the later steps (at least 5)
limit() { local l=$((BUDGET_S - SECONDS - $2)); ((l > $1)) && l=$1; ((l < 5)) && l=5; echo "$l"; }
# unpack FILE FOLDER: tar -J, or Python's tarfile where the machine has no xz
unpack() { tar -C "$2" -xJf "$1" 2>/dev/null || $PYTHON -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; }
table() { $PYTHON bench/gpu/summary.py table "$W/run/metrics.jsonl" "$OUT/reference.json" "$W/run/metrics.json" "$WARMUP" \
  "$W/calibrate/metrics.jsonl" "$((CAL_STEPS - PHASE_STEPS - 1))" > "$OUT/table.md.tmp" && mv "$OUT/table.md.tmp" "$OUT/table.md"; }
PRESET=samples/fmnist/hd-gpu.json

log "unpacking"
mkdir -p "$W/app" "$W/dotnet"
unpack gpu-bundle/app.tar.xz "$W/app"
unpack gpu-bundle/dotnet.tar.xz "$W/dotnet"
unpack gpu-bundle/fmnist.tar.xz "$W"
if [ -n "${WRAPPER:-}" ]; then
  find "$W/app" -name libLibTorchSharp.so -exec cp "$WRAPPER" {} \;
  cp "$(dirname "$WRAPPER")/libhierdistill_glibcxx_compat.so" "$(dirname "$(find "$W/app" -name libLibTorchSharp.so | head -1)")/"
fi
export DOTNET_ROOT="$W/dotnet" PATH="$W/dotnet:$PATH" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
TORCH_LIB=${TORCH_LIB:-$($PYTHON -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}
# cuDNN and NVRTC open NVRTC, its builtins and nvJitLink by bare name; a pip PyTorch keeps them in site-packages/nvidia/*/lib
# (nvidia/cu13/lib for CUDA 13), which Python's `import torch` preloads and a .NET process does not (the host preloads the
# three itself; the path covers anything else cuDNN opens).
NV_LIBS=$(find "$TORCH_LIB/../../nvidia" -mindepth 2 -maxdepth 2 -type d -name lib 2>/dev/null | sort | paste -sd: -)
export LD_LIBRARY_PATH="$TORCH_LIB${NV_LIBS:+:$NV_LIBS}:${LD_LIBRARY_PATH:-}" HIERDISTILL_LIBTORCH="$TORCH_LIB"
$PYTHON -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv >> "$OUT/env.txt" 2>&1
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >> "$OUT/env.txt"
set -f  # EXTRA is split into words but not globbed (--set key=[1,2,4] is a glob pattern)
COMMON=(--set "data:options:folder=$W/fashion-mnist" --set run.device="$DEVICE" --set "stages:evaluate:classifier:cacheDir=$W/cache" $EXTRA)
set +f

log "calibrate: $CAL_STEPS steps of each training stage (the last $PHASE_STEPS timed phase by phase)"
HIERDISTILL_PHASE_TIMING="$PHASE_STEPS" timeout -k 5 "$(limit 90 320)" dotnet "$W/app/hierdistill.dll" run "$PRESET" --overwrite "${COMMON[@]}" \
  --set run.outputDir="$W/calibrate" --set run.logEvery=5 --set run.checkpointEvery=0 \
  --set stages:teacher:training:steps="$CAL_STEPS" --set stages:structure:training:steps="$CAL_STEPS" \
  --set stages:detail:training:steps="$CAL_STEPS" --set stages:evaluate:enabled=false > "$OUT/calibrate.log" 2>&1
echo "exit $?" >> "$OUT/calibrate.log"
tail -2 "$OUT/calibrate.log"
# Step counts for the preset run (bench/gpu/summary.py plan: TRAIN_S split 35/25/40 % over teacher/MeanFlow/DMD + AWD
# by the calibrated ms/step, stage 2 the largest share).
# The run keeps its allowance for start-up and evaluation (RUN_LIMIT - TRAIN_S) when the deadline shortens it.
RUN_S=$(limit "$RUN_LIMIT" 140)
TRAIN_S=$((RUN_S - (RUN_LIMIT - TRAIN_S) < TRAIN_S ? RUN_S - (RUN_LIMIT - TRAIN_S) : TRAIN_S))
((TRAIN_S < 30)) && TRAIN_S=30
read -r T_STEPS S_STEPS D_STEPS < <($PYTHON bench/gpu/summary.py plan "$W/calibrate/metrics.jsonl" "$PRESET" "$TRAIN_S" \
  "$((CAL_STEPS - PHASE_STEPS - 1))")
T_STEPS=${T_STEPS:-400} S_STEPS=${S_STEPS:-200} D_STEPS=${D_STEPS:-200}
log "preset run: teacher $T_STEPS, structure $S_STEPS, detail $D_STEPS steps (about ${TRAIN_S} s of training, limit ${RUN_S} s), then evaluation"
timeout -s TERM -k 20 "$RUN_S" dotnet "$W/app/hierdistill.dll" run "$PRESET" --overwrite "${COMMON[@]}" \
  --set run.outputDir="$W/run" --set run.checkpointEvery=0 --set stages:teacher:training:steps="$T_STEPS" \
  --set stages:structure:training:steps="$S_STEPS" --set stages:detail:training:steps="$D_STEPS" > "$OUT/hierdistill.log" 2>&1
echo "exit $?" >> "$OUT/hierdistill.log"
tail -3 "$OUT/hierdistill.log"
cp "$W/run/report.md" "$W/run/metrics.json" "$OUT/" 2>/dev/null
table  # a first table (no reference yet), in case the call is stopped before the end

log "probe + PyTorch reference"
timeout -k 5 "$(limit 40 90)" dotnet "$W/app/hierdistill.dll" probe "$PRESET" "${COMMON[@]}" \
  --weights "$W/run/teacher.safetensors" --out "$W/probe.safetensors" > "$OUT/reference.log" 2>&1
timeout -k 5 "$(limit 80 10)" $PYTHON bench/gpu/reference.py --run "$W/run" --probe "$W/probe.safetensors" --data "$W/fashion-mnist" --device "$DEVICE" \
  --steps "${REF_STEPS:-300}" --warmup "${REF_WARMUP:-30}" --max-seconds "${REF_MAX_S:-20}" --phase-steps "$PHASE_STEPS" \
  --json "$OUT/reference.json" >> "$OUT/reference.log" 2>&1
echo "exit $?" >> "$OUT/reference.log"
tail -4 "$OUT/reference.log"

log "table"
table
cat "$OUT/table.md"
# At most 8 files come back: the logs, the metrics and the figures travel in one archive.
mkdir -p "$W/logs" && cp "$W/run/metrics.jsonl" "$W/logs/run-metrics.jsonl" 2>/dev/null
cp "$W/calibrate/metrics.jsonl" "$W/logs/calibrate-metrics.jsonl" 2>/dev/null
cp "$W/calibrate/log.txt" "$W/logs/calibrate-log.txt" 2>/dev/null
cp "$W"/run/*.png "$W/run/report.md" "$W/logs/" 2>/dev/null
cp "$OUT/calibrate.log" "$OUT/reference.log" "$OUT/env.txt" "$W/logs/" 2>/dev/null
tar -C "$W" -czf "$OUT/logs.tar.gz" logs && rm -f "$OUT/calibrate.log" "$OUT/reference.log" "$OUT/env.txt"
log "done in ${SECONDS} s (deadline ${BUDGET_S} s)"
