"""Benchmark of the edge family (docs/ops.md §2) against the PyTorch reference, kornia, OpenCV and SciPy.

    python -m benchmarks.bench_edges                      # every op, the three issue sizes, all backends here
    python -m benchmarks.bench_edges --quick --no-save    # CI smoke: few repeats, under a minute
    python -m benchmarks.bench_edges --ops flow_edges,canny --sizes 8x2x368x496 --backends cpu,reference,kornia

For each op and size it times our backends (cpu / cuda / triton where they run, plus "reference"),
kornia's nearest function, OpenCV (per image, on numpy arrays prepared beforehand: the tensor <-> numpy
conversion is NOT timed) and, for distance_transform, SciPy. Forward rows for everything; forward +
backward rows for the differentiable ops on our backends, the reference and kornia. Each row is the
median of repeated runs (at least 5 and ~0.5 s, at most 30; fewer for calls of seconds) with the
interquartile range, and ratios to the reference and to kornia measured in the same run. Rows are
appended to benchmarks/results/<device>.csv with the device, versions and commit; the issue's targets
are checked and printed as PASS/MISS where they apply to this device.

Sizes are image shapes B x C x H x W. Ops on masks use B x 1 x H x W, flow_edges B x 2 x H x W and canny
the gray image B x 1 x H x W. The Triton interpreter (TRITON_INTERPRET=1 on a CPU) is never timed: it is
correct but orders of magnitude too slow to say anything about Triton.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import traceback

import torch
import torch.nn.functional as F

import hmore_kernels as hk
from hmore_kernels import _backends

from . import common

OPS = ("sobel", "gradient_magnitude", "mask_boundary", "flow_edges", "canny", "distance_transform")
DIFFERENTIABLE = ("sobel", "gradient_magnitude", "mask_boundary", "flow_edges")
SIZES = ("1x3x512x512", "8x2x368x496", "1x2x1088x1920")
OURS = ("cpu", "cuda", "triton", "cupy")
BASELINES = ("reference", "kornia", "opencv", "scipy")
BAND = 3  # flow_edges band, as in the issue
CANNY_LOW, CANNY_HIGH = 50.0, 150.0

# The targets. CPU: speed-ups over the reference and kornia at 8x2x368x496 and distance_transform
# within 2x of SciPy; GPU: flow_edges at >= 70 % of the measured copy bandwidth.
TARGET_SIZE = "8x2x368x496"
CPU_SPEEDUP_OPS = ("gradient_magnitude", "flow_edges")
MIN_X_REF, MIN_X_KORNIA, MAX_VS_SCIPY, MIN_BW_FRACTION = 3.0, 2.0, 2.0, 0.70

# Modes. max_time lets a call of seconds stop at 3 runs. max_call: a row whose first call takes longer
# is reported from that single call, and a row whose call, predicted from a smaller size already
# measured, would take longer is skipped (the reference distance transform is O(B*H*W^2) brute force,
# ~50 s a call at 1088x1920 on 2 cores; kornia's is iterative, ~16 s at 512x512 on blobby masks).
MODES = {
    "default": dict(warmup=1, min_runs=5, min_time=0.5, max_runs=30, max_time=6.0, floor_runs=3, max_call=8.0, quick=False),
    "quick": dict(warmup=1, min_runs=3, min_time=0.05, max_runs=5, max_time=0.5, floor_runs=2, max_call=1.0, quick=True),
}
# --quick is a smoke run: by default only the target size, and of the baselines only the forward rows,
# without those that take seconds per call on a CPU at every size (iterative hysteresis and distance
# cascades, the brute-force reference distance transform).
SLOW_ON_CPU = {("canny", "reference"), ("canny", "kornia"), ("distance_transform", "reference"), ("distance_transform", "kornia")}


def parse_size(s: str) -> tuple[int, int, int, int]:
    parts = s.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"--sizes: expected BxCxHxW such as 8x2x368x496, got {s!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


# ---- inputs -------------------------------------------------------------------------------------
def smooth_noise(B, C, H, W, cell, gen):
    """Band-limited noise: a coarse normal grid (one sample per ``cell`` pixels) upsampled bicubically.

    Flow fields and subject masks are smooth with structure at tens of pixels; white noise would make
    every pixel an edge and the hysteresis / distance computations atypically short.
    """
    low = torch.randn(B, C, H // cell + 2, W // cell + 2, generator=gen)
    return F.interpolate(low, size=(H, W), mode="bicubic", align_corners=True)


def make_inputs(size, device):
    """The tensors (on ``device``) and their numpy copies (for OpenCV/SciPy) for one size."""
    B, C, H, W = size
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(B, C, H, W, generator=gen)
    flow = 4.0 * smooth_noise(B, 2, H, W, 48, gen)  # a few pixels of smooth motion
    mask = smooth_noise(B, 1, H, W, 64, gen) > 0.4  # blobs: a "subject" with boundaries
    gray = 128 + 40 * smooth_noise(B, 1, H, W, 24, gen) + 60 * mask.float() + 4 * torch.randn(B, 1, H, W, generator=gen)
    gray = gray.clamp(0, 255).round().to(torch.uint8)  # 0..255 like a camera frame; both weak and strong edges
    t = dict(image=image, flow=flow, mask=mask, maskf=mask.float(), gray=gray)
    npy = {k: v.contiguous().numpy() for k, v in t.items()}
    return {k: v.to(device) for k, v in t.items()}, npy


# ---- implementations ----------------------------------------------------------------------------
# Each maker returns {impl: (forward fn(tensors) -> out, note)}. Backward rows are built from the forward
# fns of the differentiable ops by making the differentiable input require grad.
def _ours(op, backend):
    f = {
        "sobel": lambda t: hk.sobel(t["image"], backend=backend),
        "gradient_magnitude": lambda t: hk.gradient_magnitude(t["image"], backend=backend),
        "mask_boundary": lambda t: hk.mask_boundary(t["maskf"], "thick", 1, backend=backend),
        "flow_edges": lambda t: hk.flow_edges(t["flow"], t["mask"], BAND, backend=backend),
        "canny": lambda t: hk.canny(t["gray"], CANNY_LOW, CANNY_HIGH, backend=backend),
        "distance_transform": lambda t: hk.distance_transform(t["mask"], backend=backend),
    }[op]
    return f


def _kornia(op):
    import kornia

    band_kernel = {}

    def flow_edges(t):
        # The closest kornia composition of flow_edges: Sobel of both channels, magnitude, per-image max
        # normalisation, times the thick boundary band (morphology.gradient with a (2*band+1)^2 square).
        g = kornia.filters.spatial_gradient(t["flow"], mode="sobel", order=1, normalized=True)
        m = torch.sqrt((g * g).sum((1, 2), keepdim=False) + 1e-12)[:, None]
        m = m / m.amax((2, 3), keepdim=True).clamp_min(1e-12)
        k = band_kernel.setdefault(t["flow"].device, torch.ones(2 * BAND + 1, 2 * BAND + 1, device=t["flow"].device))
        return m * kornia.morphology.gradient(t["maskf"], k)

    ones3 = {}
    return {
        "sobel": (lambda t: kornia.filters.spatial_gradient(t["image"], normalized=True), "spatial_gradient"),
        "gradient_magnitude": (lambda t: kornia.filters.sobel(t["image"]), "filters.sobel: per-channel magnitude, eps=1e-6"),
        "mask_boundary": (
            lambda t: kornia.morphology.gradient(t["maskf"], ones3.setdefault(t["maskf"].device, torch.ones(3, 3, device=t["maskf"].device))),
            "morphology.gradient (dilate-erode)",
        ),
        "flow_edges": (flow_edges, "spatial_gradient+norm+max+morph.gradient"),
        "canny": (
            lambda t: kornia.filters.canny(t["gray"].float() / 255, CANNY_LOW / 255, CANNY_HIGH / 255),
            "filters.canny: adds a 5x5 Gaussian; approx. thresholds",
        ),
        "distance_transform": (lambda t: kornia.contrib.distance_transform(t["maskf"]), "contrib: iterative approx., not exact"),
    }[op]


def _opencv(op):
    import cv2
    import numpy as np

    rep = cv2.BORDER_REPLICATE
    se3 = np.ones((3, 3), np.uint8)
    seb = np.ones((2 * BAND + 1, 2 * BAND + 1), np.uint8)

    def sobel(n):
        x = n["image"]
        return [[(cv2.Sobel(c, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=rep),
                  cv2.Sobel(c, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=rep)) for c in img] for img in x]

    def grad_sq(channels):
        acc = np.zeros(channels[0].shape, np.float32)
        for c in channels:
            cv2.accumulateSquare(cv2.Sobel(c, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=rep), acc)
            cv2.accumulateSquare(cv2.Sobel(c, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=rep), acc)
        return acc

    def gradient_magnitude(n):
        return [cv2.sqrt(grad_sq(img)) for img in n["image"]]

    def flow_edges(n):
        out = []
        for fl, mk in zip(n["flow"], n["mask"]):
            m = cv2.sqrt(grad_sq(fl))
            mx = cv2.minMaxLoc(m)[1]
            if mx > 0:
                m = cv2.multiply(m, 1.0 / mx)
            band = cv2.morphologyEx(mk[0].view(np.uint8), cv2.MORPH_GRADIENT, seb, borderType=rep)
            out.append(cv2.multiply(m, band.astype(np.float32)))
        return out

    return {
        "sobel": (sobel, "Sobel x2 per channel"),
        "gradient_magnitude": (gradient_magnitude, "Sobel x2 + accumulateSquare + sqrt"),
        "mask_boundary": (lambda n: [cv2.morphologyEx(m[0], cv2.MORPH_GRADIENT, se3, borderType=rep) for m in n["maskf"]],
                          "morphologyEx GRADIENT"),
        "flow_edges": (flow_edges, "Sobel+sqrt+max+morphologyEx"),
        "canny": (lambda n: [cv2.Canny(g[0], CANNY_LOW, CANNY_HIGH, apertureSize=3, L2gradient=False) for g in n["gray"]],
                  "Canny"),
        # OpenCV measures the distance to the nearest zero pixel, so the source is ~mask.
        "distance_transform": (lambda n: [cv2.distanceTransform((~m[0]).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
                                          for m in n["mask"]], "distanceTransform L2 PRECISE"),
    }[op]


def _scipy(op):
    if op != "distance_transform":
        return None
    from scipy import ndimage

    return (lambda n: [ndimage.distance_transform_edt(~m[0]) for m in n["mask"]], "ndimage.distance_transform_edt")


def work(op, impl, size):
    """A cost model (arbitrary units) to predict a call's time at one size from another size."""
    B, C, H, W = (int(v) for v in _shape(op, size).split("x"))
    if op == "distance_transform" and impl == "reference":
        return B * H * W * W  # brute-force minimum over every column of each row
    if op == "distance_transform" and impl == "kornia":
        return B * H * W * max(H, W)  # one convolution per pixel of the longest side
    return B * C * H * W


# ---- the run ------------------------------------------------------------------------------------
def our_backends(device):
    """(runnable backends, {skipped backend: why})."""
    run, skipped = [], {}
    for b in OURS:
        why = _backends._reason(b, device)
        if b == "triton" and why is None and device.type == "cpu":
            why = "Triton interpreter (TRITON_INTERPRET=1) on CPU: far too slow to time"
        if why is None:
            run.append(b)
        else:
            skipped[b] = why
    return run, skipped


def peak_memory_mib(call, device):
    """Extra GPU memory one call allocates at its peak (MiB), beyond what was allocated before it."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def first_line(e: BaseException, limit: int = 160) -> str:
    """The exception's first sentence (PyTorch's "Could not run ..." is a paragraph), at most ``limit``."""
    msg = (str(e).strip().splitlines() or [""])[0]
    cut = msg.find(". ", 40)
    if cut > 0:
        msg = msg[: cut + 1]
    msg = f"{type(e).__name__}: {msg}"
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def bench(args):
    device = torch.device(args.device)
    threads = common.set_threads(args.threads)
    meta = common.metadata(device, threads)
    mode = MODES["quick" if args.quick else "default"]
    if args.max_call is not None:
        mode = dict(mode, max_call=args.max_call)
    ours, skipped = our_backends(device)
    wanted = set(args.backends) if args.backends else None
    impls = [b for b in ours + list(BASELINES) if wanted is None or b in wanted]

    print(f"device: {meta['device']}   threads: torch.set_num_threads({threads}), cv2.setNumThreads({threads})")
    print("versions: " + ", ".join(f"{k} {meta[k] or '-'}" for k in ("torch", "cuda", "triton", "kornia", "opencv", "scipy", "numpy")))
    if meta["loadavg"] != "" and device.type == "cpu" and meta["loadavg"] > 0.5 * threads:
        print(f"WARNING: load average {meta['loadavg']} on {threads} cores: other work is running, CPU timings are inflated")
    print(f"commit: {meta['commit']}   mode: {'quick' if args.quick else 'default'}   build: "
          + ", ".join(f"{k}={v}" for k, v in hk.build_info().items() if k in ("native", "cuda", "cuda_archs", "openmp")))
    for b, why in skipped.items():
        print(f"skipped backend {b}: {why}")
    if device.type == "cuda":
        print("OpenCV and SciPy rows run on the host CPU (numpy arrays); GPU rows flush L2 before each run.")
    print("OpenCV/SciPy rows time the library calls only, on numpy arrays prepared beforehand (no conversion).")

    copy_bw = None
    if device.type == "cuda":
        copy_bw = common.copy_bandwidth(device)
        print(f"copy bandwidth (1 GiB device-to-device, read + write): {copy_bw / 1e9:.0f} GB/s")
    print(flush=True)

    rows = []
    per_work: dict = {}  # (op, impl, kind) -> seconds per unit of work, from the sizes measured so far
    t_start = time.perf_counter()
    for op in args.ops:
        for size_s in args.sizes:
            size = parse_size(size_s)
            tens, npy = make_inputs(size, device)
            for impl in impls:
                entries = []  # (kind, fn, on_host, note)
                if impl in OURS or impl == "reference":
                    f = _ours(op, impl)
                    entries.append(("fwd", lambda f=f: f(tens), False, ""))
                    if op in DIFFERENTIABLE:
                        entries.append(("fwd+bwd", f, False, ""))
                elif impl == "kornia":
                    try:
                        f, note = _kornia(op)
                    except ImportError as e:
                        entries.append(("fwd", e, False, ""))
                    else:
                        entries.append(("fwd", lambda f=f: f(tens), False, note))
                        if op in DIFFERENTIABLE:
                            entries.append(("fwd+bwd", f, False, note))
                elif impl in ("opencv", "scipy"):
                    try:
                        got = _opencv(op) if impl == "opencv" else _scipy(op)
                    except ImportError as e:
                        got = (e, "")
                    if got is None:
                        continue
                    f, note = got
                    entries.append(("fwd", f if isinstance(f, Exception) else (lambda f=f: f(npy)), True, note))
                for kind, fn, on_host, note in entries:
                    row = dict(meta, op=op, size=size_s, shape=_shape(op, size), impl=impl, kind=kind,
                               dtype=_dtype(op), mode="quick" if args.quick else "default", note=note)
                    rows.append(row)
                    if isinstance(fn, Exception):
                        row["status"] = f"error: {first_line(fn)}"
                        continue
                    key = (op, impl, kind)
                    if mode["quick"] and impl not in OURS and kind != "fwd":
                        rows.pop()  # not a result, just not part of the smoke run
                        continue
                    if mode["quick"] and device.type == "cpu" and (op, impl) in SLOW_ON_CPU:
                        row["status"] = "skipped in --quick: seconds per call on CPU"
                        continue
                    # Our own backends are what the benchmark is for, and the baselines of the issue's
                    # targets are needed for its verdicts: neither is ever skipped on a prediction.
                    needed = impl in OURS or (op in CPU_SPEEDUP_OPS and size_s == TARGET_SIZE and kind == "fwd")
                    if key in per_work and mode["max_call"] > 0 and not needed:
                        pred = per_work[key] * work(op, impl, size)
                        if pred > mode["max_call"]:
                            row["status"] = f"skipped: ~{pred:.1f} s/call predicted (> {mode['max_call']:g} s)"
                            continue
                    try:
                        call = _backward_call(fn, op, tens) if kind == "fwd+bwd" else fn
                        dev = torch.device("cpu") if on_host else device
                        times = common.measure(call, warmup=mode["warmup"], min_runs=mode["min_runs"],
                                               min_time=mode["min_time"], max_runs=mode["max_runs"],
                                               max_time=mode["max_time"], floor_runs=mode["floor_runs"], max_call=mode["max_call"] or None, device=dev)
                        row.update(common.summarize(times))
                        row["status"] = "ok"
                        if len(times) == 1:
                            row["note"] = "; ".join(x for x in (f"1 run (> {mode['max_call']:g} s/call)", note) if x)
                        # The lowest rate seen so far: one size slowed by other work on the machine
                        # should not get the larger sizes skipped.
                        rate = row["median_ms"] / 1e3 / work(op, impl, size)
                        per_work[key] = min(per_work.get(key, rate), rate)
                        if dev.type == "cuda":
                            row["peak_mib"] = peak_memory_mib(call, device)
                    except Exception as e:  # one failing row (a kernel not registered yet) must not end the run
                        row["status"] = f"error: {first_line(e)}"
                        if args.verbose:
                            traceback.print_exc()
                    finally:
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                    _progress(row)
            del tens, npy

    _ratios(rows, copy_bw)
    elapsed = time.perf_counter() - t_start
    print()
    show = rows
    cols = [("op", "op"), ("size", "size"), ("kind", "kind"), ("impl", "impl"), ("median_ms", "median ms"),
            ("iqr_ms", "IQR ms"), ("iqr_pct", "IQR %"), ("runs", "runs"), ("x_ref", "x ref"), ("x_kornia", "x kornia")]
    if any("gbps" in r for r in rows):
        cols.append(("gbps", "GB/s"))
    if device.type == "cuda":
        cols += [("bw_frac", "of copy"), ("peak_mib", "peak MiB")]
    cols.append(("remark", "note / status"))
    for r in show:
        r["remark"] = (r["status"] if r.get("status") != "ok" else r.get("note", ""))[:90]
        if r.get("median_ms"):
            r["iqr_pct"] = 100 * r["iqr_ms"] / r["median_ms"]
    common.print_table(show, cols, right={c for c, _ in cols if c not in ("op", "size", "kind", "impl", "remark")})
    print("\nx ref = reference median / impl median; x kornia = kornia median / impl median (same op, size, kind);"
          " IQR = interquartile range of the runs.")
    _print_targets(rows, device, copy_bw, ours)
    print(f"\nbenchmark time: {elapsed:.0f} s")

    if args.save:
        path = common.results_path(device)
        n = common.append_rows(path, [_csv_row(r, meta) for r in rows])
        print(f"appended {len(rows)} rows to {path.relative_to(common.REPO_ROOT)} ({n} rows in the file)")
    return rows


# Column order of the results file: what was run, then the timing, then the environment.
CSV_FIELDS = ("op", "size", "shape", "dtype", "kind", "impl", "status", "median_ms", "iqr_ms", "q1_ms", "q3_ms",
              "p10_ms", "p90_ms", "min_ms", "runs", "x_ref", "x_kornia", "gbps", "bw_frac", "copy_gbps", "peak_mib",
              "mode", "note")


def _csv_row(r, meta):
    out = {}
    for k in CSV_FIELDS + tuple(meta):
        v = r.get(k, "")
        out[k] = float(f"{v:.6g}") if isinstance(v, float) else v  # 6 significant digits: timer noise is larger
    return out


def _shape(op, size):
    B, C, H, W = size
    c = {"flow_edges": 2, "sobel": C, "gradient_magnitude": C}.get(op, 1)
    return f"{B}x{c}x{H}x{W}"


def _dtype(op):
    return {"canny": "uint8", "distance_transform": "bool", "flow_edges": "float32 (+bool mask)"}.get(op, "float32")


def _backward_call(f, op, tens):
    """A forward+backward step: the differentiable input requires grad, the output gets a fixed
    random upstream gradient (computed once, outside the timing)."""
    key = {"sobel": "image", "gradient_magnitude": "image", "mask_boundary": "maskf", "flow_edges": "flow"}[op]
    t = dict(tens)
    x = t[key].detach().clone().requires_grad_(True)
    t[key] = x
    out = f(t)
    gout = torch.randn_like(out)
    del out

    def step():
        x.grad = None
        f(t).backward(gout)

    return step


def _progress(row):
    m = row.get("median_ms")
    state = f"{m:9.3f} ms x{row['runs']}" if m is not None else row["status"][:90]
    print(f"  {row['op']:<19} {row['size']:<14} {row['kind']:<8} {row['impl']:<10} {state}", file=sys.stderr, flush=True)


def _ratios(rows, copy_bw):
    by = {(r["op"], r["size"], r["kind"], r["impl"]): r for r in rows if r.get("status") == "ok"}
    for r in rows:
        if r.get("status") != "ok":
            continue
        for base, col in (("reference", "x_ref"), ("kornia", "x_kornia")):
            b = by.get((r["op"], r["size"], r["kind"], base))
            if b is not None and r["impl"] != base:
                r[col] = b["median_ms"] / r["median_ms"]
        if r["op"] == "flow_edges" and r["kind"] == "fwd" and r["impl"] in OURS + ("reference",):
            B, _, H, W = parse_size(r["size"])
            # Bytes a fused kernel must move: the flow read (float32), the mask read (bool) and the
            # output written (float32). The same count for every impl, so GB/s compares like with like.
            nbytes = B * H * W * (2 * 4 + 1 + 4)
            r["gbps"] = nbytes / (r["median_ms"] / 1e3) / 1e9
            if copy_bw:
                r["bw_frac"] = r["gbps"] * 1e9 / copy_bw
                r["copy_gbps"] = copy_bw / 1e9


def _print_targets(rows, device, copy_bw, ours):
    by = {(r["op"], r["size"], r["kind"], r["impl"]): r for r in rows}
    print("\nTargets (issue):")
    lines = []

    def verdict(ok):
        return "PASS" if ok else "MISS"

    if device.type == "cpu":
        for op in CPU_SPEEDUP_OPS:
            r = by.get((op, TARGET_SIZE, "fwd", "cpu"))
            if r is None:
                continue
            if r.get("status") != "ok":
                lines.append(f"  {op} @ {TARGET_SIZE} cpu: n/a ({r['status'][:80]})")
                continue
            xr, xk = r.get("x_ref"), r.get("x_kornia")
            a = f"{common.fmt(xr)}x reference (>= {MIN_X_REF:g}) {verdict(xr >= MIN_X_REF)}" if xr else "reference not timed"
            b = f"{common.fmt(xk)}x kornia (>= {MIN_X_KORNIA:g}) {verdict(xk >= MIN_X_KORNIA)}" if xk else "kornia not timed"
            lines.append(f"  {op} @ {TARGET_SIZE} cpu: {a}, {b}")
        sizes = sorted({r["size"] for r in rows if r["op"] == "distance_transform"}, key=lambda s: SIZES.index(s) if s in SIZES else 99)
        for s in sizes:
            r, sp = by.get(("distance_transform", s, "fwd", "cpu")), by.get(("distance_transform", s, "fwd", "scipy"))
            if r is None or sp is None:
                continue
            if r.get("status") != "ok" or sp.get("status") != "ok":
                bad = r if r.get("status") != "ok" else sp
                lines.append(f"  distance_transform @ {s} cpu vs SciPy: n/a ({bad['impl']}: {bad['status'][:80]})")
                continue
            q = r["median_ms"] / sp["median_ms"]
            lines.append(f"  distance_transform @ {s} cpu: {common.fmt(q)}x SciPy's time (<= {MAX_VS_SCIPY:g}) {verdict(q <= MAX_VS_SCIPY)}")
    else:
        for r in rows:
            if r["op"] == "flow_edges" and r["kind"] == "fwd" and r["impl"] in ours:
                if r.get("status") != "ok":
                    lines.append(f"  flow_edges @ {r['size']} {r['impl']}: n/a ({r['status'][:80]})")
                    continue
                frac = r["bw_frac"]
                lines.append(
                    f"  flow_edges @ {r['size']} {r['impl']}: {r['gbps']:.0f} GB/s = {100 * frac:.0f}% of copy "
                    f"{copy_bw / 1e9:.0f} GB/s (>= {100 * MIN_BW_FRACTION:.0f}%) {verdict(frac >= MIN_BW_FRACTION)}"
                )
    print("\n".join(lines) if lines else "  none apply to the rows run")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None,
                   help=f"comma-separated BxCxHxW image shapes (default: the issue's three; with --quick, {TARGET_SIZE})")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated, from {', '.join(OPS)}")
    p.add_argument("--backends", default=None,
                   help=f"comma-separated impls to run, from {', '.join(OURS + BASELINES)} (default: all available)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda (default: cuda if present)")
    p.add_argument("--quick", action="store_true",
                   help=f"CI smoke run under a minute: few repeats, {TARGET_SIZE} only unless --sizes, baselines forward only "
                        "and without the seconds-per-call ones; not saved unless --save")
    p.add_argument("--no-save", dest="save", action="store_false", default=None, help="do not append rows to benchmarks/results/")
    p.add_argument("--save", dest="save", action="store_true", help="save even with --quick")
    p.add_argument("--threads", type=int, default=None, help="torch/OpenCV threads (default: the cores available)")
    p.add_argument("--max-call", type=float, default=None,
                   help="skip a row predicted to take longer than this many seconds per call (0: never skip)")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failing rows")
    args = p.parse_args(argv)
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    for o in args.ops:
        if o not in OPS:
            p.error(f"--ops: unknown op {o!r}; expected some of {', '.join(OPS)}")
    if args.sizes is None:
        args.sizes = TARGET_SIZE if args.quick else ",".join(SIZES)
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    # Smallest first: a row's time at a larger size is predicted from the smaller ones (see MODES).
    args.sizes.sort(key=lambda s: math.prod(parse_size(s)))
    for s in args.sizes:
        try:
            parse_size(s)
        except argparse.ArgumentTypeError as e:
            p.error(str(e))
    if args.backends:
        args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        for b in args.backends:
            if b not in OURS + BASELINES:
                p.error(f"--backends: unknown {b!r}; expected some of {', '.join(OURS + BASELINES)}")
    if args.save is None:
        args.save = not args.quick  # CI smoke numbers are too noisy for the committed results file
    bench(args)


if __name__ == "__main__":
    main()
