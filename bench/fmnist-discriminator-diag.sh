#!/usr/bin/env bash
# How well the stage-2 discriminator separates real from generated samples, with the generator frozen at the MeanFlow
# student (its learning rate 0), from a finished CPU-preset run; one variant after another, then a table of the
# discriminator's accuracy, logit gap (real - fake) and attention entropy (averages over the first and last fifth of the
# logged steps; metrics.jsonl of each variant). No evaluation.
#
#   bench/fmnist-discriminator-diag.sh FROM OUT [STEPS] < variants
#     FROM      a finished `samples/fmnist/hd-cpu.json` run folder (teacher.safetensors, student-structure.safetensors)
#     OUT       output folder; one sub-folder per variant (a finished one is reused)
#     STEPS     stage-2 iterations (default 300)
#     variants  one per line: NAME followed by `--set key=value` overrides (lines starting with # are skipped)
#   CLI       the command that runs the host (default: dotnet artifacts/bin/HierDistill.Host/release/hierdistill.dll, built first)
#
# bench/fmnist-stage2-sweep.sh's table of a sweep can be summarised the same way: `bench/fmnist-discriminator-diag.sh - OUT`
# (FROM "-" runs nothing and prints the table of OUT's variants).
set -euo pipefail
cd "$(dirname "$0")/.."
from=${1:?usage: bench/fmnist-discriminator-diag.sh FROM OUT [STEPS] < variants}
out=${2:?usage: bench/fmnist-discriminator-diag.sh FROM OUT [STEPS] < variants}
steps=${3:-300}
if [ "$from" != "-" ]; then
  # The variants run by bench/fmnist-stage2-sweep.sh, each with the generator frozen, no evaluation, a log every 10 steps.
  COMMON="--set stages:evaluate:enabled=false --set stages:detail:training:steps=$steps --set stages:detail:training:learningRate=0 --set run.logEvery=10" \
    NO_TABLE=1 bench/fmnist-stage2-sweep.sh "$from" "$out"
fi

python3 - "$out" <<'PY'
import glob, json, os, sys
print("| variant | steps | accuracy first → last fifth | logit gap (last fifth) | attention entropy (last fifth) |")
print("|---|---:|---|---:|---:|")
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*", "metrics.jsonl"))):
    rows = []
    for line in open(f):
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut by a stopped run
        if r.get("stage") == "detail" and "discriminator/accuracy" in r:
            rows.append(r)
    if not rows:
        continue
    k = max(1, len(rows) // 5)
    first, last = rows[:k], rows[-k:]
    avg = lambda key, rs: sum(r[key] for r in rs) / len(rs)
    entropy = f"{avg('discriminator/attention_entropy', last):.2f}" if "discriminator/attention_entropy" in last[-1] else "(GAP)"
    print(f"| {os.path.basename(os.path.dirname(f))} | {rows[-1]['step'] + 1} | {avg('discriminator/accuracy', first):.3f} → "
          f"{avg('discriminator/accuracy', last):.3f} | {avg('discriminator/logit_real', last) - avg('discriminator/logit_fake', last):.2f} | {entropy} |")
PY
