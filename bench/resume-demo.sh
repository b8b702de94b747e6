#!/usr/bin/env bash
# The README main job stopped by a signal (SIGTERM, handled like Ctrl-C) in stage 2 (DMD + AWD) and resumed, against the same job
# never stopped: prints both runs' one-step metrics and whether the weights files are identical.
#
#   bench/resume-demo.sh [STOP_AT_DETAIL_STEP] [OUT]     (defaults 700, runs/resume-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
stop=${1:-700}
out=${2:-runs/resume-demo}
dotnet build src/Host -c Release -v q -nologo >/dev/null
cli=(dotnet artifacts/bin/HierDistill.Host/release/hierdistill.dll)
mkdir -p "$out"
[ -f "$out/straight/metrics.json" ] || "${cli[@]}" run samples/toy2d/hd.json --overwrite --set run.outputDir="$out/straight" >"$out/straight.log" 2>&1

rm -rf "$out/stopped"   # (so that the wait below cannot see an earlier run's metrics)
"${cli[@]}" run samples/toy2d/hd.json --set run.outputDir="$out/stopped" --set run.logEvery=10 >"$out/stopped.log" 2>&1 &
pid=$!
until grep -q "\"stage\":\"detail\",\"step\":$stop," "$out/stopped/metrics.jsonl" 2>/dev/null; do   # flushed at every logged step
  kill -0 $pid 2>/dev/null || { echo "the run ended before detail step $stop"; exit 1; }
  sleep 0.2
done
kill -TERM $pid   # a script's background job ignores SIGINT (bash), so SIGTERM: the same stop at the step boundary
set +e; wait $pid; code=$?; set -e
echo "stopped: exit $code; $(grep -o '"message": "[^"]*"' "$out/stopped/run.json")"
"${cli[@]}" run samples/toy2d/hd.json --set run.logEvery=10 --resume "$out/stopped" >"$out/resumed.log" 2>&1
echo "resumed: exit $?"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def rows(run):
    m = json.load(open(f"{out}/{run}/metrics.json"))
    return {(x["name"], x["nfe"]): x["metrics"]["sw2_data"] for x in m["models"] if x["nfe"] in (1, 16) and x["kind"] != "data"}
a, b = rows("straight"), rows("stopped")
for k in sorted(a):
    print(f"{k[0]:10} NFE {k[1]:3}: sw2_data never stopped {a[k]:.6f}   stopped+resumed {b.get(k, float('nan')):.6f}")
PY
for f in teacher.safetensors student-structure.safetensors student-detail.safetensors; do
  cmp -s "$out/straight/$f" "$out/stopped/$f" && echo "$f: identical" || echo "$f: DIFFERENT"
done
