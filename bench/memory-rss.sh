#!/usr/bin/env bash
# Resident memory over a long CPU run: the 2-D main job with every training stage lengthened, periodic
# checkpoints on, resident set size (rss_mb) and live tensor count logged by the training loop every
# LOG steps into metrics.jsonl (and the managed heap, managed_mb). Prints, per stage, RSS and live tensors at 10 %, 50 % and 100 % of the
# stage and the RSS growth from 10 % to 100 % of the stage (the reference point: the same run, the
# same stage, after warm-up). A flat run grows by a few MB at most (allocator noise); a leak of one
# small tensor per step grows with the step count.
#
#   bench/memory-rss.sh [STEPS] [OUT]
#     STEPS  steps of each training stage (default 5000)
#     OUT    run folder (default runs/bench-memory-rss)
#   EXTRA="--set ..." adds overrides, e.g. EXTRA="--set stages:structure:enabled=false --set stages:detail:enabled=false"
#   for one long teacher stage.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-5000}
out=${2:-runs/bench-memory-rss}
dotnet build src/Host -c Release -v q -nologo >/dev/null
mkdir -p "$(dirname "$out")"
/usr/bin/time -v dotnet artifacts/bin/HierDistill.Host/release/hierdistill.dll run samples/toy2d/hd.json --overwrite \
  --set run.outputDir="$out" --set run.threads=1 --set run.logEvery=50 --set run.checkpointEvery=1000 \
  --set stages:teacher:training:steps="$steps" --set stages:structure:training:steps="$steps" \
  --set stages:detail:training:steps="$steps" --set stages:evaluate:enabled=false ${EXTRA:-} >"$out.log" 2>&1 \
  || { tail -20 "$out.log"; exit 1; }
grep "Maximum resident set size" "$out.log"
python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'stage':10} {'steps':>6} {'rss@10%':>9} {'rss@50%':>9} {'rss@100%':>9} {'growth MB':>10} {'managed@10%':>12} {'managed@100%':>13} {'live@10%':>9} {'live@100%':>10}")
for stage in dict.fromkeys(r["stage"] for r in rows):
    s = [r for r in rows if r["stage"] == stage]
    n = s[-1]["step"] + 1
    at = lambda f: min(s, key=lambda r: abs(r["step"] - f * n))
    a, b, c = at(0.1), at(0.5), s[-1]
    print(f"{stage:10} {n:6d} {a['rss_mb']:9.1f} {b['rss_mb']:9.1f} {c['rss_mb']:9.1f} {c['rss_mb'] - a['rss_mb']:10.1f} "
          f"{a.get('managed_mb', 0):12.1f} {c.get('managed_mb', 0):13.1f} {a['live_tensors']:9.0f} {c['live_tensors']:10.0f}")
PY
