"""Profile one op or one model step: a Chrome trace and a per-op table.

    python -m benchmarks.profile corr_lookup --out prof/          # an op, default inputs
    python -m benchmarks.profile raft_small --out prof/           # a training step of torchvision RAFT-small
                                                                  # with our correlation (accelerate())
    python -m benchmarks.profile hmore --out prof/                # a training step of the H-MoRe model
    python -m benchmarks.profile --list

Writes ``DIR/trace.json`` (open in chrome://tracing or https://ui.perfetto.dev) and ``DIR/ops.txt``,
and prints the per-op table: for every ``hmore::`` op (our ops, as the dispatcher records them, backward
ops included) and the heaviest other ops, the time (inclusive; device time on a GPU), calls, bytes moved
and achieved bandwidth against the device's copy bandwidth measured in the same run.

Bytes moved are counted in a separate, untimed pass under a TorchDispatchMode: per call, the bytes of
every tensor argument read plus every tensor returned -- a lower bound (each byte once; re-reads from
cache, scratch buffers and atomics are not counted), so "% of copy" is a floor on how close an op gets
to streaming speed. Aten ops get bytes too, so the table compares like with like.

Nsight Systems shows the same names through the profiler's own NVTX emission (no ranges of our own):
``nsys profile -t cuda,nvtx -o raft python -m benchmarks.profile raft_small --out prof --nvtx``
(``--nvtx`` runs the timed steps under ``torch.autograd.profiler.emit_nvtx(record_shapes=True)``, so
every op, ``hmore::corr_lookup`` included, is an NVTX range around its kernels). CUDA only.

Model steps live in ``MODEL_STEPS`` (name -> builder returning a zero-argument step function); adding one
is a function and a line there. ``hmore`` uses ``hmore.get_model("hmore")`` when ``hmore.models`` exists.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import common


# ------------------------------------------------------------------------------------------ op targets
def _img(B, C, H, W, dev, g):
    return torch.rand(B, C, H, W, generator=g).to(dev)


def _mask(B, H, W, dev, g):
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    m = ((ys - H / 2) ** 2 / (H / 3) ** 2 + (xs - W / 2) ** 2 / (W / 4) ** 2) < 1
    return m[None, None].expand(B, 1, H, W).contiguous().to(dev)


def _coords(B, H, W, dev, g):
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    return (torch.stack([xs, ys])[None] + 3 * torch.randn(B, 2, H, W, generator=g)).to(dev)


def _op_step(name, dev, backward):
    """(step, description) for op ``name`` at the benchmark's usual size (8x2x368x496 images; RAFT-small
    feature maps at 1/8 of 368x496 with D = 128 for the correlation)."""
    import hmore_kernels as hk

    g = torch.Generator().manual_seed(0)
    B, H, W = 8, 368, 496
    h, w, D = H // 8, W // 8, 128
    req = backward

    def grad(t):
        return t.requires_grad_(req) if t.is_floating_point() else t

    if name in ("sobel", "gradient_magnitude"):
        x = grad(_img(B, 2, H, W, dev, g))
        f = lambda: getattr(hk, name)(x)  # noqa: E731
        desc = f"x [{B},2,{H},{W}]"
    elif name == "flow_edges":
        x, m = grad(torch.randn(B, 2, H, W, generator=g).to(dev)), _mask(B, H, W, dev, g)
        f = lambda: hk.flow_edges(x, m)  # noqa: E731
        desc = f"flow [{B},2,{H},{W}], mask"
    elif name == "mask_boundary":
        m = _mask(B, H, W, dev, g)
        f = lambda: hk.mask_boundary(m, mode="thick", width=3)  # noqa: E731
        desc, req = f"mask [{B},1,{H},{W}] thick 3", False
    elif name == "canny":
        x = (_img(B, 1, H, W, dev, g) * 255).to(torch.uint8)
        f = lambda: hk.canny(x, 50, 150)  # noqa: E731
        desc, req = f"uint8 [{B},1,{H},{W}]", False
    elif name == "distance_transform":
        m = _mask(B, H, W, dev, g)
        f = lambda: hk.distance_transform(m)  # noqa: E731
        desc, req = f"mask [{B},1,{H},{W}]", False
    elif name in ("corr_volume", "corr_pyramid", "corr_lookup", "corr_lookup_otf", "local_corr"):
        f1, f2 = (grad(torch.randn(1, D, h, w, generator=g).to(dev)) for _ in range(2))
        c = _coords(1, h, w, dev, g)
        if name == "corr_volume":
            f = lambda: hk.corr_volume(f1, f2)  # noqa: E731
        elif name == "corr_pyramid":
            f = lambda: hk.corr_pyramid(f1, f2)  # noqa: E731
        elif name == "corr_lookup":
            f = lambda: hk.corr_lookup(hk.corr_pyramid(f1, f2), c, 4)  # noqa: E731
        elif name == "corr_lookup_otf":
            f = lambda: hk.corr_lookup_otf(f1, f2, c, 4)  # noqa: E731
        else:
            f = lambda: hk.local_corr(f1, f2, 4)  # noqa: E731
        desc = f"fmaps [1,{D},{h},{w}], radius 4, 4 levels"
    elif name in ("chamfer_distance", "nearest_neighbors"):
        x, y = (grad(torch.rand(1, 8192, 2, generator=g).to(dev) * 512) for _ in range(2))
        f = (lambda: hk.chamfer_distance(x, y)) if name == "chamfer_distance" else (lambda: hk.nearest_neighbors(x, y))
        desc = "8192 x 8192 points, D 2"
        req = req and name == "chamfer_distance"
    elif name in ("patch_centroid_chamfer", "boundary_chamfer"):
        a, b = _mask(B, H, W, dev, g), _mask(B, H, W, dev, g).roll(3, -1)
        if name == "patch_centroid_chamfer":
            a, b = grad(a.float()), b.float()
            f = lambda: hk.patch_centroid_chamfer(a, b)  # noqa: E731
        else:
            f = lambda: hk.boundary_chamfer(hk.mask_boundary(a), hk.mask_boundary(b))  # noqa: E731
            req = False
        desc = f"maps [{B},1,{H},{W}]"
    elif name == "skeleton_match":
        pts = torch.rand(B, 128, 2, generator=g).to(dev) * torch.tensor([W, H], device=dev)
        conf = torch.rand(B, 128, generator=g).to(dev)
        m = _mask(B, H, W, dev, g)
        f = lambda: hk.skeleton_match(pts, conf, m)  # noqa: E731
        desc, req = f"128 points, mask [{B},1,{H},{W}]", False
    else:
        raise SystemExit(f"TARGET: unknown op or model {name!r}; known: {', '.join(OPS + tuple(MODEL_STEPS))}")

    def step():
        out = f()
        if req:
            outs = out if isinstance(out, (list, tuple)) else [out]
            sum(o.float().sum() for o in outs if isinstance(o, torch.Tensor) and o.requires_grad).backward()
        return out

    return step, desc + (", forward+backward" if req else ", forward")


OPS = ("sobel", "gradient_magnitude", "flow_edges", "mask_boundary", "canny", "distance_transform",
       "corr_volume", "corr_pyramid", "corr_lookup", "corr_lookup_otf", "local_corr", "nearest_neighbors",
       "chamfer_distance", "patch_centroid_chamfer", "boundary_chamfer", "skeleton_match")


# ---------------------------------------------------------------------------------------- model steps
def _images(size, dev, batch):
    g = torch.Generator().manual_seed(0)
    H, W = size
    return _img(batch, 3, H, W, dev, g), _img(batch, 3, H, W, dev, g), torch.randn(batch, 2, H, W, generator=g).to(dev)


def _raft_small_step(dev, size, batch, iters):
    """One training step of torchvision's RAFT-small with our correlation: forward, sequence loss, backward."""
    import hmore_kernels.integrations as hki
    from hmore_kernels.integrations._compat import import_torchvision

    import_torchvision()
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    model = hki.accelerate(raft_small().to(dev).train())
    img1, img2, target = _images(size, dev, batch)

    def step():
        model.zero_grad(set_to_none=True)
        flows = model(img1, img2, num_flow_updates=iters)
        n = len(flows)
        sum(0.8 ** (n - 1 - i) * (f - target).abs().mean() for i, f in enumerate(flows)).backward()

    return step, f"torchvision raft_small + hmore_kernels.integrations.accelerate(), B {batch}, {size[0]}x{size[1]}, {iters} iterations, fwd+bwd"


def _hmore_step(dev, size, batch, iters):
    """One training step of the H-MoRe model (hmore.get_model("hmore")): forward, a stand-in loss, backward.

    The loss is the sum of the means of every differentiable output, enough to run every backward op; the
    real objective (hmore.losses) needs keypoints and masks and is the trainer's business.
    """
    try:
        from hmore.models import get_model
    except ImportError as e:
        raise SystemExit(f"TARGET hmore: the H-MoRe model is not available in this checkout yet (hmore.models: {e})")
    torch.manual_seed(0)
    model = get_model("hmore").to(dev).train()
    img1, img2, _ = _images(size, dev, batch)

    def leaves(out):
        if isinstance(out, torch.Tensor):
            return [out] if out.requires_grad else []
        if isinstance(out, dict):
            out = list(out.values())
        if isinstance(out, (list, tuple)):
            return [t for o in out for t in leaves(o)]
        return []

    def step():
        model.zero_grad(set_to_none=True)
        out = model(img1, img2, iters=iters)
        sum(t.float().mean() for t in leaves(out)).backward()

    return step, f"hmore.get_model('hmore'), B {batch}, {size[0]}x{size[1]}, {iters} iterations, fwd+bwd"


MODEL_STEPS = {"raft_small": _raft_small_step, "hmore": _hmore_step}


# ---------------------------------------------------------------------------------------- bytes moved
class _ByteCounter(TorchDispatchMode):
    """Per op name: calls and bytes of tensor arguments + tensor results (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.bytes = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        n = 0
        seen = set()
        for t in torch.utils._pytree.tree_leaves((args, kwargs or {}, out)):
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                n += t.numel() * t.element_size()
        self.bytes[_name(func)] += n
        return out


def _name(func) -> str:
    # OpOverload "hmore::corr_lookup" / "aten::mm" (the profiler's event names; overload dropped).
    return func._schema.name if hasattr(func, "_schema") else str(func)


# ---------------------------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", help="an op name (--list) or a model step: " + ", ".join(MODEL_STEPS))
    p.add_argument("--out", type=Path, help="output folder (trace.json, ops.txt)")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=1, help="profiled steps, after one untimed warm-up step")
    p.add_argument("--forward-only", action="store_true", help="ops: no backward")
    p.add_argument("--size", default="368x496", help="model steps: HxW (default 368x496)")
    p.add_argument("--batch", type=int, default=1, help="model steps: batch size")
    p.add_argument("--iters", type=int, default=12, help="model steps: refinement iterations")
    p.add_argument("--top", type=int, default=15, help="non-hmore ops shown in the table")
    p.add_argument("--nvtx", action="store_true", help="also emit NVTX ranges (CUDA; for Nsight Systems)")
    args = p.parse_args(argv)
    if args.list:
        print("ops:   " + ", ".join(OPS) + "\nmodels: " + ", ".join(MODEL_STEPS))
        return
    if not args.target or args.out is None:
        p.error("TARGET and --out are required (or --list)")
    dev = torch.device(args.device)
    if args.nvtx and dev.type != "cuda":
        p.error("--nvtx: NVTX ranges need a CUDA device (Nsight Systems profiles GPUs)")
    if args.steps < 1:
        p.error(f"--steps: expected an int >= 1, got {args.steps}")
    threads = common.set_threads(None)

    if args.target in MODEL_STEPS:
        H, W = (int(s) for s in args.size.lower().split("x"))
        step, desc = MODEL_STEPS[args.target](dev, (H, W), args.batch, args.iters)
    else:
        step, desc = _op_step(args.target, dev, backward=not args.forward_only)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    copy_bw = common.copy_bandwidth(dev, nbytes=(1 << 30) if dev.type == "cuda" else (256 << 20))
    step()  # warm-up: allocations, Triton/NVRTC compiles, lazy init
    counter = _ByteCounter()
    with counter:
        step()  # untimed: bytes per op (the dispatch mode's Python overhead stays out of the trace)
    sync()

    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts, record_shapes=True) as prof:
        if args.nvtx:
            with torch.autograd.profiler.emit_nvtx(record_shapes=True):
                for _ in range(args.steps):
                    step()
        else:
            for _ in range(args.steps):
                step()
        sync()
    wall_ms = (time.perf_counter() - t0) * 1e3 / args.steps
    trace = args.out / "trace.json"
    prof.export_chrome_trace(str(trace))

    gpu = dev.type == "cuda"
    rows = []
    for ev in prof.key_averages():
        t_us = ev.device_time_total if gpu else ev.cpu_time_total
        rows.append((ev.key, t_us / args.steps, ev.count // args.steps, counter.bytes.get(ev.key, 0)))
    ours = sorted((r for r in rows if r[0].startswith("hmore::") or r[0].startswith("hmore_triton::")),
                  key=lambda r: -r[1])
    # Other ops: aten only (the autograd wrapper events repeat the same time one level up).
    others = sorted((r for r in rows if r[0].startswith("aten::")), key=lambda r: -r[1])[: args.top]
    lines = [
        f"target: {args.target} ({desc})",
        f"device: {common.device_name(dev)}, threads {threads}, torch {torch.__version__}, commit {common.git_commit()}",
        f"copy bandwidth (measured now, read + write): {copy_bw / 1e9:.1f} GB/s; times are "
        f"{'device' if gpu else 'CPU'} time per step, inclusive of child ops; {args.steps} step(s) profiled",
        "",
        f"{'op':44s} {'ms/step':>10s} {'calls':>6s} {'MB moved':>10s} {'GB/s':>8s} {'% copy':>7s}",
    ]

    def fmt_row(r):
        name, t_us, calls, nbytes = r
        if not nbytes or t_us <= 0:  # not seen by the counter: called from inside another op's kernel
            return f"{name[:44]:44s} {t_us / 1e3:10.3f} {calls:6d} {'-':>10s} {'-':>8s} {'-':>7s}"
        gbs = nbytes / (t_us * 1e-6) / 1e9
        return f"{name[:44]:44s} {t_us / 1e3:10.3f} {calls:6d} {nbytes / 1e6:10.1f} {gbs:8.2f} {100 * gbs * 1e9 / copy_bw:7.1f}"

    lines.append("-- our ops (hmore::, backward ops included)")
    lines += [fmt_row(r) for r in ours] or ["(none recorded)"]
    lines.append(f"-- top {args.top} aten ops")
    lines += [fmt_row(r) for r in others]
    total_ours = sum(r[1] for r in ours)
    lines.append("")
    lines.append(f"hmore:: ops: {total_ours / 1e3:.1f} ms of {wall_ms:.1f} ms wall per step "
                 f"({100 * total_ours / 1e3 / wall_ms:.1f}%); '-': bytes not counted (an op called inside another)")
    lines.append(f"trace: {trace}")
    text = "\n".join(lines)
    print(text)
    (args.out / "ops.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
