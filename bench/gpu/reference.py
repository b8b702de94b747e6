#!/usr/bin/env python3
"""PyTorch reference of HierDistill's Fashion-MNIST teacher training step and MeanFlow distillation step.

The same network (plugins/Teachers/Networks/DiT.cs, parameter names 1:1 under `net.`), the same loop work per step
(batch drawn on the device, label dropout, logit-normal times, loss, backward, gradient clipping, Adam, EMA update),
the same batch size, learning rate and precision (run.precision: float32, or bfloat16 through torch.autocast, which
HierDistill's Autocast mirrors by hand), read from a HierDistill run's config.resolved.json. Written as a PyTorch user
would: no host read in the step (the loss is read every --log-every steps, as HierDistill logs), PyTorch's default
(foreach) Adam and clip_grad_norm_, the DiT repository's EMA loop. HierDistill additionally masks non-finite steps on
the device; the reference has no such guard. It starts from the run's teacher.safetensors and first checks that one
forward pass agrees with HierDistill's (`hierdistill probe` output, float32), then times N steps of each after
warm-up, with CUDA synchronisation around the clock.

    python3 bench/gpu/reference.py --run RUN_FOLDER --probe probe.safetensors [--steps 200] [--warmup 20]
        [--jvp double-backward|forward] [--precision float32|bfloat16] [--log-every 50]
        [--data /usr/share/datasets/fashion-mnist] [--json out.json] [--phase-steps 20]

--phase-steps N then times N more steps of each phase by phase, synchronised at every boundary (forward: from the step's
start to the backward, batch and loss with the teacher calls and JVP; backward; optimizer: clipping, Adam, EMA;
read-back: a logged step's host read; rest), as HierDistill does with HIERDISTILL_PHASE_TIMING=N (src/Host/Training/
PhaseTiming.cs), to say where a step's time goes when the step times differ.

Prints one line per measurement and, with --json, writes them. Needs PyTorch alone (>= 1.13; torch.func for --jvp
forward): safetensors and IDX files are read and written below (no numpy, no `safetensors` package).

Weights from PyTorch to HierDistill: save the state dict of this file's Network (or of any module whose state-dict
names and shapes are HierDistill's) with `safetensors.torch.save_file(module.state_dict(), path)`, or, without the
`safetensors` package, with save_safetensors below; then `--set stages:teacher:loadFrom=path`.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import ctypes
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------- safetensors, IDX
_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "I8": torch.int8, "BOOL": torch.bool}


def load_safetensors(path):
    """Tensors of a safetensors file by name (CPU)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = bytearray(data[start:end])
        t = torch.frombuffer(buf, dtype=_DTYPES[info["dtype"]]) if end > start else torch.empty(0, dtype=_DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


_CODES = {v: k for k, v in _DTYPES.items()}


def save_safetensors(tensors, path):
    """Writes {name: tensor} as a safetensors file (the format of `safetensors.torch.save_file`), atomically."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        blob = ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""  # the raw little-endian bytes
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(path + ".tmp", path)


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_train(folder):
    def find(stem):
        for name in (stem, stem + ".gz"):
            p = os.path.join(folder, name)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(f"{stem}(.gz) not in {folder}")
    images = read_idx(find("train-images-idx3-ubyte"))
    labels = read_idx(find("train-labels-idx1-ubyte"))
    return images, labels.to(torch.int64)


# ---------------------------------------------------------------------------------------------- the network (DiT.cs)
PRESETS = {"DiT-XT/4": (64, 4, 4, 4), "DiT-T/4": (128, 4, 4, 4), "DiT-T/2": (128, 4, 4, 2), "DiT-S/4": (384, 12, 6, 4),
           "DiT-S/2": (384, 12, 6, 2), "DiT-B/4": (768, 12, 12, 4), "DiT-B/2": (768, 12, 12, 2)}


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, frequency_dim, max_period):
        super().__init__()
        self.frequency_dim, self.max_period = frequency_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
        args = t[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], 1).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)

    def forward(self, labels):
        return self.embedding_table(labels)


class PatchEmbed(nn.Module):
    def __init__(self, channels, hidden, patch):
        super().__init__()
        self.proj = nn.Conv2d(channels, hidden, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Plain bmm + softmax (twice differentiable), as DiT.cs."""

    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        b, n, c = x.shape
        d = c // self.heads
        parts = self.qkv(x).reshape(b, n, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = (parts[i].reshape(b * self.heads, n, d) for i in range(3))
        attention = (torch.bmm(q, k.transpose(1, 2)) * (1.0 / math.sqrt(d))).softmax(-1)
        y = torch.bmm(attention, v).reshape(b, self.heads, n, d).transpose(1, 2).reshape(b, n, c)
        return self.proj(y)


class Mlp(nn.Module):
    def __init__(self, hidden, inner):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(hidden, inner), nn.Linear(inner, hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, eps=1e-6, elementwise_affine=False)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-6, elementwise_affine=False)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        m = self.adaLN_modulation(c).chunk(6, 1)
        x = x + m[2].unsqueeze(1) * self.attn(modulate(self.norm1(x), m[0], m[1]))
        return x + m[5].unsqueeze(1) * self.mlp(modulate(self.norm2(x), m[3], m[4]))


class FinalLayer(nn.Module):
    def __init__(self, hidden, patch, channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, eps=1e-6, elementwise_affine=False)
        self.linear = nn.Linear(hidden, patch * patch * channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        m = self.adaLN_modulation(c).chunk(2, 1)
        return self.linear(modulate(self.norm_final(x), m[0], m[1]))


class DiTCore(nn.Module):
    def __init__(self, size, channels, image, num_classes, mlp_ratio, frequency_dim, max_period, with_time_gap):
        super().__init__()
        hidden, depth, heads, patch = size
        self.patch, self.channels, self.grid = patch, channels, image // patch
        self.x_embedder = PatchEmbed(channels, hidden, patch)
        self.t_embedder = TimestepEmbedder(hidden, frequency_dim, max_period)
        self.h_embedder = TimestepEmbedder(hidden, frequency_dim, max_period) if with_time_gap else None
        self.y_embedder = LabelEmbedder(num_classes, hidden)
        self.register_buffer("pos_embed", torch.zeros(1, self.grid * self.grid, hidden))  # loaded from the weights file
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden, patch, channels)

    def forward(self, x, t, labels, gap=None):
        tokens = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t.to(x.dtype)) + self.y_embedder(labels)
        if self.h_embedder is not None and gap is not None:
            c = c + self.h_embedder(gap.to(x.dtype))
        for block in self.blocks:
            tokens = block(tokens, c)
        out = self.final_layer(tokens, c)
        b, g, p, ch = out.shape[0], self.grid, self.patch, self.channels
        return out.reshape(b, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(b, ch, g * p, g * p)


class Network(nn.Module):
    """The module HierDistill saves: its body under `net.` (teacher: v(z, t | c); student: u(z, r, t | c))."""

    def __init__(self, options, student):
        super().__init__()
        size = list(PRESETS[options.get("preset", "DiT-T/4")])
        for i, key in enumerate(("hidden", "depth", "heads", "patch")):
            if options.get(key) is not None:
                size[i] = options[key]
        self.net = DiTCore(tuple(size), 1, 28, 10, options.get("mlpRatio", 4.0), options.get("frequencyDim", 256),
                           options.get("maxPeriod", 10000.0), with_time_gap=student)

    def velocity(self, z, t, labels):
        return self.net(z, t, labels)

    def average_velocity(self, z, r, t, labels):
        return self.net(z, t, labels, gap=t - r)


# ---------------------------------------------------------------------------------------------- the two steps
def logit_normal(n, mean, std, device):
    return torch.sigmoid(torch.randn(n, device=device) * std + mean)


def label_dropout(labels, p, null_label):
    return torch.where(torch.rand(labels.shape, device=labels.device) < p, torch.full_like(labels, null_label), labels)


_phases = None  # phase -> seconds summed, while a step is timed phase by phase (time_phases)
_phase_clock = [0.0, None]  # [start of the current phase, synchronise]


def phase(name):
    """Ends phase `name` of the step being timed phase by phase (nothing otherwise: no synchronisation)."""
    if _phases is None:
        return
    _phase_clock[1]()
    now = time.perf_counter()
    _phases[name] = _phases.get(name, 0.0) + now - _phase_clock[0]
    _phase_clock[0] = now


def time_phases(fn, steps, device):
    """Mean milliseconds per step of each phase over `steps` steps of `fn` (after the timed ones: warm)."""
    global _phases
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    _phases, _phase_clock[1] = {}, sync
    try:
        for _ in range(steps):
            sync()
            _phase_clock[0] = time.perf_counter()
            fn()
            phase("rest")
        return {k: 1000 * v / steps for k, v in _phases.items()}
    finally:
        _phases = None


class Trainer:
    """Adam + clipping + EMA as a PyTorch user writes them; reads the loss on the host every `log_every` steps only."""

    def __init__(self, module, lr, ema_decay, clip, log_every):
        self.module, self.clip, self.decay, self.log_every = module, clip, ema_decay, log_every
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=lr, betas=(0.9, 0.999))
        self.ema = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.updates = 0
        self.last = None

    def step(self, loss):
        phase("forward")
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        phase("backward")
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip) if self.clip else None
        self.optimizer.step()
        self.updates += 1
        d = min(self.decay, self.updates / (self.updates + 1.0))
        with torch.no_grad():
            for k, v in self.module.state_dict().items():
                if v.is_floating_point():
                    self.ema[k].mul_(d).add_(v, alpha=1 - d)
        phase("optimizer")
        if self.updates % self.log_every == 0:  # the logged step: one host read, as HierDistill's
            self.last = (float(loss), None if norm is None else float(norm))
            phase("read-back")


def autocast(device, precision):
    """torch.autocast in bfloat16 (HierDistill: run.precision = bfloat16), or nothing for float32."""
    if precision == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


def teacher_step(net, trainer, images, labels_all, cfg, device, precision="float32"):
    b = cfg["batchSize"]
    index = torch.randint(0, images.shape[0], (b,), device=device)
    x = images.index_select(0, index).float() / 127.5 - 1
    labels = label_dropout(labels_all.index_select(0, index), cfg.get("labelDropout", 0.1), 10)
    e = torch.randn_like(x)
    if cfg.get("timeSampling", "uniform").lower() == "logitnormal":
        t = logit_normal(b, cfg.get("timeMean", 0.0), cfg.get("timeStd", 1.0), device)
    else:
        t = torch.rand(b, device=device)
    tb = t[:, None, None, None]
    z = (1 - tb) * x + tb * e
    with autocast(device, precision):
        v = net.velocity(z, t, labels).float()
    loss = (v - (e - x)).square().flatten(1).mean(1).mean()
    trainer.step(loss)
    return loss


def guided(teacher, z, t, labels, scale):
    if scale == 1.0:
        return teacher.velocity(z, t, labels)
    b = z.shape[0]
    v = teacher.velocity(torch.cat([z, z]), torch.cat([t, t]), torch.cat([labels, torch.full_like(labels, 10)]))
    cond, uncond = v[:b], v[b:]
    return uncond + scale * (cond - uncond)


def meanflow_step(student, teacher, trainer, images, labels_all, train_cfg, mf, device, jvp_mode, precision="float32"):
    b = train_cfg["batchSize"]
    index = torch.randint(0, images.shape[0], (b,), device=device)
    x = images.index_select(0, index).float() / 127.5 - 1
    labels = label_dropout(labels_all.index_select(0, index), mf.get("labelDropout", 0.1), 10)
    a = logit_normal(b, mf.get("timeMean", -0.4), mf.get("timeStd", 1.0), device)
    c = logit_normal(b, mf.get("timeMean", -0.4), mf.get("timeStd", 1.0), device)
    t, r = torch.maximum(a, c), torch.minimum(a, c)
    r = torch.where(torch.rand(b, device=device) < mf.get("ratioRNotEqualT", 0.25), r, t)
    e = torch.randn_like(x)
    z = (1 - t[:, None, None, None]) * x + t[:, None, None, None] * e
    with torch.no_grad(), autocast(device, precision):
        v = guided(teacher, z, t, labels, mf.get("guidanceScale", 1.0)).float().detach()

    def f(zz, tt):
        with autocast(device, precision):
            return student.average_velocity(zz, r, tt, labels).float()
    if jvp_mode == "forward":
        u, dudt = torch.func.jvp(f, (z, t), (v, torch.ones_like(t)))
        dudt = dudt.detach()
    else:  # double backward, as JacobianVectorProduct.DoubleBackward
        zz, tt = z.detach().requires_grad_(True), t.detach().requires_grad_(True)
        u = f(zz, tt)
        w = torch.zeros_like(u, requires_grad=True)
        gz, gt = torch.autograd.grad(u, (zz, tt), w, create_graph=True, retain_graph=True)
        dot = (gz * v).sum() + (gt * torch.ones_like(t)).sum()
        dudt = torch.autograd.grad(dot, w, retain_graph=True)[0].detach()
    target = (v - (t - r)[:, None, None, None] * dudt).detach()
    s = (u - target).square().flatten(1).sum(1)
    weight = (s.detach() + mf.get("adaptiveWeightEpsilon", 1e-2)).pow(-mf.get("adaptiveWeightPower", 1.0))
    loss = (weight * s).mean()
    trainer.step(loss)
    return loss


def timed(fn, steps, warmup, device, budget_s=0.0, check_every=10):
    """Mean seconds per step over `steps` steps after `warmup`, or fewer when `budget_s` runs out (the budget is checked
    every `check_every` steps after a CUDA synchronisation, so the loop itself stays free of host reads). Returns (s, n)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    n = 0
    while n < steps:
        fn()
        n += 1
        if budget_s > 0 and n % check_every == 0:
            sync()
            if time.perf_counter() - start > budget_s:
                break
    sync()
    return (time.perf_counter() - start) / n, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a HierDistill run folder (config.resolved.json, teacher.safetensors)")
    ap.add_argument("--probe", help="hierdistill probe output to check the forward pass against")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--jvp", choices=["double-backward", "forward"], default="double-backward")
    ap.add_argument("--precision", choices=["float32", "bfloat16"], help="default: the run's run.precision")
    ap.add_argument("--log-every", type=int, default=0, help="read the loss every this many steps (default: the run's run.logEvery)")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="write the measurements here (rewritten after each measurement)")
    ap.add_argument("--only", choices=["teacher", "meanflow"], help="time only this step")
    ap.add_argument("--max-seconds", type=float, default=0.0, help="stop each timed loop after this many seconds (0: no limit)")
    ap.add_argument("--phase-steps", type=int, default=0, help="then time this many steps of each phase by phase (0: none)")
    args = ap.parse_args()

    def dump():
        if args.json:
            with open(args.json + ".tmp", "w") as f:
                json.dump(results, f, indent=2)
            os.replace(args.json + ".tmp", args.json)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with open(os.path.join(args.run, "config.resolved.json")) as f:
        config = json.load(f)
    stages = config["stages"]
    teacher_stage = next(s for s in stages.values() if s.get("kind") == "teacher")
    structure = next((s for s in stages.values() if s.get("kind") == "trajectory"), None)
    if structure is None and args.only != "teacher":
        print("the run has no trajectory (MeanFlow) stage: only the teacher step is timed")
        args.only = "teacher"
    if teacher_stage["teacher"].get("type") != "dit":
        sys.exit(f"{args.run}: its teacher is '{teacher_stage['teacher'].get('type')}'; this reference ports the DiT teacher "
                 "(a run of samples/fmnist/*.json).")
    options = teacher_stage["teacher"].get("options") or {}
    weights = load_safetensors(os.path.join(args.run, "teacher.safetensors"))
    precision = args.precision or config.get("run", {}).get("precision", "float32")
    log_every = args.log_every or config.get("run", {}).get("logEvery", 50)
    results = {"device": str(device), "torch": torch.__version__, "steps": args.steps, "jvp": args.jvp, "precision": precision,
               "log_every": log_every, "run": os.path.abspath(args.run), "preset": options.get("preset", "DiT-T/4")}

    teacher = Network(options, student=False).to(device)
    teacher.load_state_dict({k: v.to(device) for k, v in weights.items()}, strict=True)
    teacher.eval()
    if args.probe:
        probe = load_safetensors(args.probe)
        with torch.no_grad():
            mine = teacher.velocity(probe["z"].to(device), probe["t"].to(device), probe["labels"].to(device)).float().cpu()
        rel = float((mine - probe["velocity"]).norm() / probe["velocity"].norm().clamp_min(1e-12))
        results["forward_relative_error"] = rel
        results["forward_check"] = "ok" if rel < 1e-3 else "MISMATCH"
        print(f"forward check: relative error {rel:.3e} ({results['forward_check']}, limit 1e-3); timing continues either way")
        dump()

    images, labels = fashion_mnist_train(args.data)
    images, labels = images[:, None].to(device), labels.to(device)  # uint8 [N, 1, 28, 28] kept on the device

    # Teacher training step: a fresh copy of the teacher's weights, trained.
    tcfg = teacher_stage["training"]
    if args.only != "meanflow":
        net = Network(options, student=False).to(device)
        net.load_state_dict(teacher.state_dict())
        net.train()
        trainer = Trainer(net, tcfg.get("learningRate", 1e-3), tcfg.get("emaDecay", 0.999), tcfg.get("gradClip", 1.0), log_every)
        sec, n = timed(lambda: teacher_step(net, trainer, images, labels, tcfg, device, precision), args.steps, args.warmup, device, args.max_seconds)
        results["teacher_step_ms"], results["teacher_steps_timed"] = 1000 * sec, n
        print(f"teacher step: {1000 * sec:.3f} ms over {n} steps (batch {tcfg['batchSize']})")
        dump()
        if args.phase_steps > 0:
            results["teacher_phases_ms"] = time_phases(lambda: teacher_step(net, trainer, images, labels, tcfg, device, precision), args.phase_steps, device)
            print("teacher phases (ms/step, synchronised): " + ", ".join(f"{k} {v:.2f}" for k, v in results["teacher_phases_ms"].items()))
            dump()
        del net, trainer
    if args.only == "teacher":
        return

    # MeanFlow step: the student starts as the teacher with a zero t - r embedder.
    scfg = structure["training"]
    mf = (structure["distiller"].get("options") or {})
    student = Network(options, student=True).to(device)
    missing = student.load_state_dict(teacher.state_dict(), strict=False)
    assert all(k.startswith("net.h_embedder.") for k in missing.missing_keys), missing
    with torch.no_grad():
        student.net.h_embedder.mlp[2].weight.zero_()
        student.net.h_embedder.mlp[2].bias.zero_()
    student.train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    trainer = Trainer(student, scfg.get("learningRate", 1e-4), scfg.get("emaDecay", 0.999), scfg.get("gradClip", 1.0), log_every)
    sec, n = timed(lambda: meanflow_step(student, teacher, trainer, images, labels, scfg, mf, device, args.jvp, precision), args.steps, args.warmup, device, args.max_seconds)
    results["meanflow_step_ms"], results["meanflow_steps_timed"] = 1000 * sec, n
    print(f"meanflow step ({args.jvp}): {1000 * sec:.3f} ms over {n} steps (batch {scfg['batchSize']})")
    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    dump()
    if args.phase_steps > 0:
        results["meanflow_phases_ms"] = time_phases(
            lambda: meanflow_step(student, teacher, trainer, images, labels, scfg, mf, device, args.jvp, precision), args.phase_steps, device)
        print("meanflow phases (ms/step, synchronised): " + ", ".join(f"{k} {v:.2f}" for k, v in results["meanflow_phases_ms"].items()))
        dump()


if __name__ == "__main__":
    main()
