#!/usr/bin/env bash
# Stage-2 (DMD + AWD) settings on Fashion-MNIST, one after another, from the same trained teacher and MeanFlow student,
# and a markdown table of the one-step student's FD-FMNIST against the teacher's.
#
#   bench/fmnist-stage2-sweep.sh FROM OUT < variants
#     FROM      a finished `samples/fmnist/hd-cpu.json` run folder (teacher.safetensors, student-structure.safetensors)
#     OUT       output folder; one sub-folder per variant (an existing finished one is reused, not rerun)
#     variants  one per line: NAME followed by `--set key=value` overrides of samples/fmnist/hd-cpu.json
#               (lines starting with # are skipped)
#   COMMON    overrides added to every variant (default none; bench/fmnist-discriminator-diag.sh freezes the generator)
#   NO_TABLE  set to 1 to run the variants without printing the FD table (for runs without evaluation)
#   CLI       the command that runs the host (default: dotnet artifacts/bin/HierDistill.Host/release/hierdistill.dll,
#             built first); point it at a copy of the binaries to keep rebuilding while the sweep runs
#
# Every variant evaluates the teacher at NFE 16 only (its best on the CPU preset) and the students at NFE 1 and 2,
# 1000 samples, seed 0, so the variants differ only in their overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
from=${1:?usage: bench/fmnist-stage2-sweep.sh FROM OUT < variants}
out=${2:?usage: bench/fmnist-stage2-sweep.sh FROM OUT < variants}
if [ -z "${CLI:-}" ]; then
  dotnet build src/Host -c Release -v q -nologo >/dev/null
  CLI="dotnet artifacts/bin/HierDistill.Host/release/hierdistill.dll"
fi
read -r -a cli <<< "$CLI"
read -r -a common <<< "${COMMON:-}"
mkdir -p "$out"
names=()
while read -r name args; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  names+=("$name")
  if grep -qs '"status": "finished"' "$out/$name/run.json"; then continue; fi
  read -r -a extra <<< "$args"
  start=$(date +%s)
  "${cli[@]}" run samples/fmnist/hd-cpu.json --overwrite --set run.outputDir="$out/$name" --set run.name="$name" \
    --set stages:teacher:loadFrom="$from/teacher.safetensors" \
    --set stages:structure:loadFrom="$from/student-structure.safetensors" \
    --set "stages:evaluate:teacherNfe=[16]" ${common[@]+"${common[@]}"} "${extra[@]}" < /dev/null > "$out/$name.log" 2>&1 \
    || { echo "FAILED: $name (see $out/$name.log)" >&2; continue; }
  echo "$name: $(( $(date +%s) - start )) s" >&2
  printf '%s\n' "$args" > "$out/$name/overrides.txt"
done
[ "${NO_TABLE:-0}" = 1 ] && exit 0

python3 - "$out" "${names[@]}" <<'EOF'
import json, sys, os
out, names = sys.argv[1], sys.argv[2:]
print("| variant | overrides | HD FD NFE 1 | ÷ teacher best | HD FD NFE 2 | class acc. NFE 1 | stage-2 s |")
print("|---|---|---:|---:|---:|---:|---:|")
for n in names:
    p = os.path.join(out, n, "metrics.json")
    if not os.path.exists(p):
        print(f"| {n} | (no result) | | | | | |"); continue
    m = json.load(open(p))
    over = open(os.path.join(out, n, "overrides.txt")).read().strip() if os.path.exists(os.path.join(out, n, "overrides.txt")) else ""
    teacher = min(x["metrics"]["fd_fmnist"] for x in m["models"] if x["kind"] == "teacher")
    hd = {x["nfe"]: x for x in m["models"] if x["kind"] == "distribution"}
    one, two = hd[1], hd.get(2)
    print(f"| {n} | `{over}` | {one['metrics']['fd_fmnist']:.2f} | {one['metrics']['fd_fmnist'] / teacher:.2f}× | "
          f"{two['metrics']['fd_fmnist'] if two else float('nan'):.2f} | {one['metrics']['class_accuracy'] * 100:.1f} % | "
          f"{one['training_seconds']:.0f} |")
EOF
