#!/usr/bin/env python3
"""The arithmetic of bench/gpu/device.sh, from HierDistill's metrics files (standard library only).

  summary.py plan CALIBRATE_METRICS_JSONL PRESET_JSON TRAIN_S [LAST_STEP]
      Step counts of the preset run: TRAIN_S seconds split 35/25/40 % over teacher/structure/detail by the calibration's
      ms/step (logged steps 20 .. LAST_STEP; the steps after it were timed phase by phase, slower), at least 50 and at most the preset's own counts; a stage the calibration did not reach gets
      its preset count / 8. Stage 2 gets the largest share: on the CPU preset three times the DMD + AWD iterations took the
      one-step FD from 1.52x to 1.40x the teacher's best (docs/benchmarks.md). Prints "TEACHER STRUCTURE DETAIL".
  summary.py table RUN_METRICS_JSONL REFERENCE_JSON RUN_METRICS_JSON WARMUP CALIBRATE_METRICS_JSONL [LAST_STEP]
      The closing table: TorchSharp/PyTorch step-time ratios, the HD one-step student against the teacher's best
      FD-FMNIST, sampling time per image, peak device memory per stage; then, where the calibration run timed its steps
      phase by phase (HIERDISTILL_PHASE_TIMING, in its log.txt) and the reference did (--phase-steps), where a step's time
      goes, side by side.

TorchSharp's ms/step is measured between the first logged step at or after the warm-up and the last logged step of a
stage (`elapsed_s` of metrics.jsonl; the logged steps are the training loop's only host reads).
"""
import json
import os
import re
import sys


def rows(path):
    """The parseable lines of a metrics.jsonl (a process killed by `timeout` may leave its last line cut)."""
    out = []
    try:
        lines = open(path).readlines()
    except OSError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def na(value):
    """A figure, or n/a where there is none (no GPU, no reference, a run that did not finish)."""
    return "n/a" if value is None else value


def load(path):
    try:
        return json.load(open(path))
    except Exception:
        return {}


def ms_per_step(logged, stage, skip, last=None):
    s = [r for r in logged if r.get("stage") == stage and r.get("step", -1) >= skip and (last is None or r["step"] <= last)]
    if len(s) >= 2 and s[-1]["step"] > s[0]["step"]:
        return 1000 * (s[-1]["elapsed_s"] - s[0]["elapsed_s"]) / (s[-1]["step"] - s[0]["step"])
    return None


def plan(calibration, preset, train_s, last_step=None):
    logged = rows(calibration)
    last = int(last_step) if last_step is not None else None
    stages = json.loads(re.sub(r"^\s*//.*$", "", open(preset).read(), flags=re.M))["stages"]
    out = []
    for key, share in (("teacher", 0.35), ("structure", 0.25), ("detail", 0.4)):
        cap = stages[key]["training"]["steps"]
        m = ms_per_step(logged, key, 20, last)
        out.append(max(50, min(cap, int(float(train_s) * share * 1000 / m))) if m else cap // 8)
    print(" ".join(map(str, out)))


def phases_of(log_txt):
    """{stage: (steps, {phase: ms})} from the "phase times" lines of a HierDistill run's log.txt (the last line per stage)."""
    out = {}
    try:
        lines = open(log_txt, errors="replace").readlines()
    except OSError:
        return out
    for line in lines:
        m = re.search(r"Stage (\S+): phase times over its last (\d+) steps .*?\): (.*) \(sum [0-9.]+ ms\)", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), {k: float(v) for k, v in re.findall(r"([\w-]+) ([0-9.]+) ms", m.group(3))})
    return out


def phase_table(ours, ref):
    """Where a step's time goes: TorchSharp (the calibration run's timed steps) beside PyTorch (the reference's)."""
    def theirs(key):
        value = ref.get(key) if key else None
        return {k: v for k, v in value.items() if isinstance(v, (int, float))} if isinstance(value, dict) else {}
    columns = [("teacher", "teacher", "teacher_phases_ms"), ("MeanFlow", "structure", "meanflow_phases_ms"), ("DMD + AWD", "detail", None)]
    columns = [c for c in columns if c[1] in ours or theirs(c[2])]
    if not columns:
        return
    names = []
    for _, stage, key in columns:
        for k in list(ours.get(stage, (0, {}))[1]) + list(theirs(key)):
            if k not in names:
                names.append(k)
    steps = sorted({ours[s][0] for _, s, _ in columns if s in ours})
    print(f"\nWhere a step's time goes (ms/step, the device synchronised at every phase boundary, so phases sum to more than the "
          f"step times above; TorchSharp: the calibration run's last {'/'.join(map(str, steps)) or '?'} steps per stage, "
          f"HIERDISTILL_PHASE_TIMING; PyTorch: reference.py --phase-steps):\n")
    header = []
    for label, _, key in columns:
        header += [f"{label} TorchSharp"] + ([f"{label} PyTorch"] if key else [])
    print("| phase | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(header))

    def cell(v):
        return "-" if v is None else f"{v:.2f}"
    for name in names + ["sum"]:
        row = []
        for _, stage, key in columns:
            a = ours.get(stage, (0, {}))[1]
            b = theirs(key)
            row.append(cell(sum(a.values()) if name == "sum" and a else a.get(name)))
            if key:
                row.append(cell(sum(b.values()) if name == "sum" and b else b.get(name)))
        print(f"| {name} | " + " | ".join(row) + " |")


def table(run_jsonl, reference, run_json, warmup, calibration, last_step=None):
    run, ref, report, cal = rows(run_jsonl), load(reference), load(run_json), rows(calibration)
    last = int(last_step) if last_step is not None else None

    def ts_ms(stage):
        # the preset run after its warm-up; the calibration run (up to LAST_STEP: its phase-timed steps are slower) when the
        # preset run has too few logged steps
        return ms_per_step(run, stage, int(warmup)) or ms_per_step(cal, stage, 20, last)

    print(f"precision {na(ref.get('precision'))}, forward check (float32) relative error {na(ref.get('forward_relative_error'))} "
          f"({na(ref.get('forward_check'))}, limit 1e-3)\n")
    run_folder = os.path.abspath(os.path.dirname(run_jsonl))
    if ref.get("run") and ref["run"] != run_folder:
        print(f"WARNING: {reference} was measured on the run {ref['run']}, not on {run_folder}: the ratios compare different runs\n")
    try:
        cfg = json.load(open(run_jsonl.replace("metrics.jsonl", "config.resolved.json")))["stages"]
        net = (cfg["teacher"]["teacher"].get("options") or {}).get("preset", "?")
        batch = "/".join(str(cfg[k]["training"]["batchSize"]) for k in ("teacher", "structure", "detail"))
    except Exception:
        net, batch = "?", "?"
    print(f"| step ({net}, batch {batch}) | TorchSharp ms/step (steady: between logged steps from step {warmup}) | "
          f"PyTorch ms/step | ratio (target <= 1.10) |")
    print("|---|---|---|---|")
    for name, stage, key in (("teacher (flow matching)", "teacher", "teacher_step_ms"),
                             ("MeanFlow, double-backward JVP", "structure", "meanflow_step_ms")):
        a, b = ts_ms(stage), ref.get(key)
        print(f"| {name} | {na(a and round(a, 2))} | {na(b and round(b, 2))} | {f'{a / b:.3f}' if a and b else '-'} |")
    d = ts_ms("detail")
    print(f"| DMD + AWD (no reference) | {na(d and round(d, 2))} | - | - |\n")

    models = report.get("models", [])
    metric = report.get("primary_metric", "fd_fmnist")
    teacher = [m for m in models if m["kind"] == "teacher" and metric in m["metrics"]]
    hd = next((m for m in models if m["name"] == "detail" and m["nfe"] == 1), None)
    td = next((m for m in models if m["name"] == "structure" and m["nfe"] == 1), None)
    if teacher and hd:
        best = min(teacher, key=lambda m: m["metrics"][metric])
        print(f"teacher best {metric} {best['metrics'][metric]:.2f} at NFE {best['nfe']} "
              f"({1000 * best['seconds_per_sample']:.4f} ms/image)")
        for label, m in (("TD one-step (structure)", td), ("HD one-step (detail)", hd)):
            if m:
                print(f"{label}: {metric} {m['metrics'][metric]:.2f} = {m['metrics'][metric] / best['metrics'][metric]:.3f}x "
                      f"the teacher's best (target <= 1.1 for HD); {1000 * m['seconds_per_sample']:.4f} ms/image = "
                      f"{best['seconds_per_sample'] / m['seconds_per_sample']:.1f}x faster than the teacher at NFE "
                      f"{best['nfe']} (target >= 20)")
    else:
        print("(no evaluation in metrics.json: the preset run did not finish; see hierdistill.log)")
    for s in report.get("stages", []) if isinstance(report.get("stages"), list) else []:
        print(f"stage {s.get('stage')}: {s.get('steps')} steps, {na(s.get('step_ms'))} ms/step (whole stage: wall time / steps, "
              f"first steps included), {na(s.get('samples_per_s'))} samples/s, peak device memory in use {na(s.get('peak_device_mib'))} MiB (whole device: earlier stages' cached blocks included)")
    print(f"PyTorch max_memory_allocated over the reference's steps: {na(ref.get('peak_memory_gib'))} GiB (HierDistill's peak above "
          f"is NVML's whole-device memory in use, CUDA context and cached blocks included: not comparable)")
    phase_table(phases_of(os.path.join(os.path.dirname(calibration), "log.txt")), ref)


if __name__ == "__main__":
    commands = {"plan": (plan, (3, 4)), "table": (table, (5, 6))}
    if len(sys.argv) < 2 or sys.argv[1] not in commands or len(sys.argv) - 2 not in commands[sys.argv[1]][1]:
        sys.exit(__doc__)
    commands[sys.argv[1]][0](*sys.argv[2:])
