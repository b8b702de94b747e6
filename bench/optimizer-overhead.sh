#!/usr/bin/env bash
# Per-step overhead of the optimiser, compared between builds of hierdistill in one script (issue 7).
# Trains only the Fashion-MNIST teacher with a deep, narrow DiT (depth 12, width 32: 160 parameter tensors, little
# arithmetic) at batch 4 on one thread, so the step time is mostly per-operation overhead - the regime a GPU step is in
# when kernels are launch-bound. Runs the builds in turn, ROUNDS times, and prints each run's teacher ms/step (from the
# log's "Stage teacher" line) and the median per build.
#   bench/optimizer-overhead.sh NAME=path/to/hierdistill.dll [NAME=path ...]      (ROUNDS=3 STEPS=400 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-400}
ARGS=(run samples/fmnist/hd-cpu.json --overwrite --set run.threads=1 --set run.logEvery=100 --set run.checkpointEvery=0
  --set stages:structure:enabled=false --set stages:detail:enabled=false --set stages:evaluate:enabled=false
  --set stages:teacher:training:steps="$STEPS" --set stages:teacher:training:batchSize=4
  --set stages:teacher:teacher:options:preset=DiT-XT/4 --set stages:teacher:teacher:options:hidden=32
  --set stages:teacher:teacher:options:depth=12 --set stages:teacher:teacher:options:heads=2)
declare -A times
for round in $(seq "$ROUNDS"); do
  for build in "$@"; do
    name=${build%%=*}; dll=${build#*=}
    out=$(mktemp -d)
    dotnet "$dll" "${ARGS[@]}" --set run.outputDir="$out" > "$out.log" 2>&1 || { echo "$name failed: $out.log"; exit 1; }
    ms=$(grep -o "Stage teacher: [0-9]* steps[^:]*: [0-9.]* ms/step" "$out.log" | grep -o "[0-9.]* ms/step" | cut -d' ' -f1)
    echo "round $round $name: $ms ms/step"
    times[$name]="${times[$name]:-} $ms"
    rm -rf "$out" "$out.log"
  done
done
for build in "$@"; do
  name=${build%%=*}
  echo "$name median: $(echo ${times[$name]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms/step"
done
