#!/usr/bin/env bash
# Runs the 2-D sample variants (HD-AWD, HD-GAP, TD only, DMD without TD) for several seeds, sharing one
# teacher, and prints the one-step students' metrics as a markdown table (mean ± std over seeds).
#
#   bench/toy2d-variants.sh [SEEDS] [PARALLEL] [OUT]
#     SEEDS     number of seeds (default 3)
#     PARALLEL  runs at a time, each with run.threads=1 (default 2)
#     OUT       output folder (default runs/toy2d-variants)
#
# `hierdistill compare samples/toy2d/ablation.json` (or compare.json) does this in one command with a table;
# this script is kept for its parallel runs.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-3}
parallel=${2:-2}
out=${3:-runs/toy2d-variants}
dotnet build src/Host -c Release -v q -nologo >/dev/null
cli=(dotnet artifacts/bin/HierDistill.Host/release/hierdistill.dll)
mkdir -p "$out"

# One teacher for every variant (trained by the main config, evaluation off).
if [ ! -f "$out/teacher/teacher.safetensors" ]; then
  "${cli[@]}" run samples/toy2d/hd.json --overwrite --set run.outputDir="$out/teacher" \
    --set stages:structure:enabled=false --set stages:detail:enabled=false --set stages:evaluate:enabled=false >/dev/null
fi
teacher="$out/teacher/teacher.safetensors"

jobs_list=()
for variant in hd-awd hd-gap td-only dmd-no-td; do
  for ((seed = 0; seed < seeds; seed++)); do jobs_list+=("$variant:$seed"); done
done
run_one() {
  local variant=${1%%:*} seed=${1##*:}
  "${cli[@]}" run "samples/toy2d/$variant.json" --overwrite --set run.outputDir="$out/$variant-s$seed" \
    --set run.seed="$seed" --set run.threads=1 --set stages:teacher:loadFrom="$teacher" > "$out/$variant-s$seed.log" 2>&1 \
    || echo "FAILED: $variant seed $seed (see $out/$variant-s$seed.log)"
}
export -f run_one; export out teacher
printf '%s\n' "${jobs_list[@]}" | xargs -P "$parallel" -I{} bash -c "$(declare -f run_one); cli=(${cli[*]}); run_one {}"

python3 - "$out" "$seeds" <<'PY'
import json, os, statistics, sys
out, seeds = sys.argv[1], int(sys.argv[2])
rows = {}
teacher_best = []
for variant in ["hd-awd", "hd-gap", "td-only", "dmd-no-td"]:
    for seed in range(seeds):
        path = os.path.join(out, f"{variant}-s{seed}", "metrics.json")
        if not os.path.exists(path):
            continue
        models = json.load(open(path))["models"]
        if variant == "hd-awd":
            teacher_best.append(min(m["metrics"]["sw2_data"] for m in models if m["kind"] == "teacher"))
        for m in models:
            if m["kind"] in ("trajectory", "distribution") and m["nfe"] == 1 and m["name"] == ("structure" if variant == "td-only" else "detail"):
                rows.setdefault(variant, []).append(m["metrics"])
def fmt(values):
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"
print(f"| variant (1 step) | seeds | sw2_data | sw2_teacher | mmd2_data | modes covered | high-quality fraction |")
print("|---|---:|---:|---:|---:|---:|---:|")
for variant, ms in rows.items():
    print(f"| {variant} | {len(ms)} | {fmt([m['sw2_data'] for m in ms])} | {fmt([m['sw2_teacher'] for m in ms])} | "
          f"{fmt([m['mmd2_data'] for m in ms])} | {fmt([m['modes_covered'] for m in ms])} | {fmt([m['high_quality_fraction'] for m in ms])} |")
if teacher_best:
    print(f"\nteacher best sw2_data over its NFE grid: {fmt(teacher_best)}")
PY
