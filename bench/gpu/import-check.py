#!/usr/bin/env python3
"""PyTorch -> HierDistill: a teacher changed in PyTorch, written with save_safetensors, imported and probed by HierDistill.

Loads a HierDistill run's teacher.safetensors into reference.py's PyTorch DiT, perturbs every parameter (0.05 * N(0, 1),
seed 0), stores one tensor in bfloat16, writes the state dict with save_safetensors, runs `hierdistill probe` on that
file, and prints the relative error between HierDistill's velocity and PyTorch's forward pass on the probe's inputs.

    python3 bench/gpu/import-check.py [RUN_FOLDER] [CONFIG]
        RUN_FOLDER  a finished Fashion-MNIST run (default runs/fmnist-hd-cpu); CONFIG its preset (default samples/fmnist/hd-cpu.json)
        CLI         environment: the command that runs the host (default: dotnet artifacts/bin/HierDistill.Host/release/hierdistill.dll)
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as r  # noqa: E402

run = sys.argv[1] if len(sys.argv) > 1 else "runs/fmnist-hd-cpu"
config = sys.argv[2] if len(sys.argv) > 2 else "samples/fmnist/hd-cpu.json"
cli = shlex.split(os.environ.get("CLI", "dotnet artifacts/bin/HierDistill.Host/release/hierdistill.dll"))
with open(os.path.join(run, "config.resolved.json")) as f:
    stage = next(s for s in json.load(f)["stages"].values() if s.get("kind") == "teacher")
net = r.Network(stage["teacher"].get("options") or {}, student=False)
net.load_state_dict(r.load_safetensors(os.path.join(run, "teacher.safetensors")), strict=True)
torch.manual_seed(0)
with torch.no_grad():
    for p in net.parameters():
        p.add_(0.05 * torch.randn_like(p))
state = dict(net.state_dict())
state["net.final_layer.linear.weight"] = state["net.final_layer.linear.weight"].to(torch.bfloat16)
net.load_state_dict({k: v.float() for k, v in state.items()})
with tempfile.TemporaryDirectory() as tmp:
    weights, probe_path = os.path.join(tmp, "teacher.safetensors"), os.path.join(tmp, "probe.safetensors")
    r.save_safetensors(state, weights)
    subprocess.run(cli + ["probe", config, "--weights", weights, "--out", probe_path, "--batch", "16"], check=True)
    probe = r.load_safetensors(probe_path)
with torch.no_grad():
    mine = net.velocity(probe["z"], probe["t"], probe["labels"]).float()
rel = float((mine - probe["velocity"]).norm() / probe["velocity"].norm())
print(f"PyTorch-written teacher imported by HierDistill: relative error of the velocity {rel:.2e} ({'ok' if rel < 1e-3 else 'MISMATCH'}, limit 1e-3)")
sys.exit(0 if rel < 1e-3 else 1)
