"""Benchmark of the correlation family (ops.md §1) against RAFT's algorithm in PyTorch.

    python -m benchmarks.bench_corr                 # the issue's sizes (the big one once, see below)
    python -m benchmarks.bench_corr --quick --no-save

RAFT-small workload: feature maps at 1/8 of 368x496, 736x1280 and 1088x1920 (B = 1), D = 128 and 256,
radius 3 and 4, 4 levels, 12 lookups per pair (12 refinement iterations, coordinates moving between
them). Rows:

* ``corr_block`` fwd: build + 12 lookups. impl ``allpairs`` (corr_pyramid + corr_lookup), ``otf``
  (corr_lookup_otf), ``reference`` (RAFT's CorrBlock algorithm: matmul volume, avg_pool2d pyramid,
  grid_sample per level -- reference/corr.py:RaftCorrBlock). fwdbwd: the same plus the backward to both
  feature maps and the coordinates.
* ``corr_lookup`` fwd: the 12 lookups alone on a built pyramid (ours vs RaftCorrBlock.__call__).
* ``local_corr`` fwd / fwdbwd at d = 4 (PWC-Net): ours, the reference (pad + shifted products) and an
  unfold-based PyTorch baseline. spatial-correlation-sampler could not be installed here (its setup.py
  needs CUDA_HOME even for the CPU build; see the results note), so it is not compared.

Peak memory (``peak_mib``): growth of the process's resident set during one call over the RSS before it,
sampled every 1 ms by a thread reading /proc/self/statm (CPU). The script re-executes itself with
MALLOC_MMAP_THRESHOLD_=65536 and MALLOC_TRIM_THRESHOLD_=0 so that glibc maps every block over 64 KiB
afresh and returns it on free (otherwise its dynamic threshold keeps freed blocks resident and a second
call shows no growth). That call is also one of the timed runs. On CUDA,
torch.cuda.max_memory_allocated growth.

Size limits (2 cores, 24 GB shared): at 1088x1920 only D = 256, r = 4 runs; all-pairs and reference
there run forward only and once (a 4.3 GB volume, 5.7 GB pyramid, and the reference's ``/ sqrt(D)``
copy doubles it); otf runs forward and forward+backward.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback

import torch
import torch.nn.functional as F

import hmore_kernels as hk
from hmore_kernels.reference import corr as ref

from . import common

SIZES = ("368x496", "736x1280", "1088x1920")
BIG = "1088x1920"
LOOKUPS = 12
LEVELS = 4
TARGET_LOOKUP_X = 3.0      # corr_lookup at least 3x faster than the reference lookup (CPU)
TARGET_OTF_MEM = 0.02      # otf peak under 2% of the all-pairs peak at 1088x1920
TARGET_OTF_TIME = 3.0      # otf within 3x of all-pairs build + lookup time


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_growth_mib(fn, device) -> float:
    """Peak memory growth of one call of ``fn`` in MiB (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        fn()
    finally:
        stop.set()
        t.join()
    peak[0] = max(peak[0], _rss_bytes())
    return (peak[0] - base) / 2**20


def inputs(size, D, device, gen):
    H, W = (int(s) // 8 for s in size.split("x"))
    f1 = torch.randn(1, D, H, W, generator=gen).to(device)
    f2 = torch.randn(1, D, H, W, generator=gen).to(device)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    base = torch.stack([xs, ys])[None]
    # 12 coordinate fields, drifting like RAFT's refinements (a flow of a few pixels)
    coords = [(base + 3.0 * torch.randn(1, 2, H, W, generator=gen) * (k + 1) / LOOKUPS).to(device) for k in range(LOOKUPS)]
    return f1, f2, coords


def block_fn(impl, f1, f2, coords, r, backward, backend):
    """One RAFT-small correlation workload: build + 12 lookups (+ backward of a weighted sum)."""

    def run():
        a, b = f1, f2
        cs = coords
        if backward:
            a, b = f1.detach().requires_grad_(), f2.detach().requires_grad_()
            cs = [c.detach().requires_grad_() for c in coords]
        if impl == "reference":
            blk = ref.RaftCorrBlock(a, b, LEVELS, r)
        elif impl == "allpairs":
            blk = hk.CorrBlock(a, b, LEVELS, r, mode="allpairs", backend=backend)
        else:
            blk = hk.CorrBlock(a, b, LEVELS, r, mode="otf", backend=backend)
        if not backward:
            # inference: each lookup is consumed by the update block and freed, as in RAFT's loop
            acc = 0.0
            for c in cs:
                acc += float(blk(c)[0, 0, 0, 0])
            return acc
        # training: the autograd graph keeps every lookup until the backward
        outs = [blk(c) for c in cs]
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        return outs

    return run


def unfold_local_corr(f1, f2, d):
    """PyTorch baseline: unfold fmap2's (2d+1)^2 neighbourhoods, then one product and channel sum."""
    B, D, H, W = f1.shape
    k = 2 * d + 1
    nb = F.unfold(f2, k, padding=d).view(B, D, k * k, H, W)
    return (f1[:, :, None] * nb).sum(1) / D**0.5


def main(argv=None):
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # see the module docstring (peak memory)
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.bench_corr", *argv], env)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="368x496 only, D = 128, r = 4; few runs")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip-big-reference", action="store_true", help="no all-pairs/reference rows at 1088x1920")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    threads = common.set_threads(args.threads)
    meta = common.metadata(device, threads)
    ours = "cpu" if device.type == "cpu" else "auto"
    mode_name = "quick" if args.quick else "default"
    gen = torch.Generator().manual_seed(0)
    sizes = ["368x496"] if args.quick else args.sizes.split(",")
    rows = []

    def record(op, size, D, r, kind, impl, fn, *, once=False, mem=True, note=""):
        row = dict(op=op, size=size, shape=f"D={D},r={r},L={LEVELS},lookups={LOOKUPS}", dtype="float32", kind=kind,
                   impl=impl, mode=mode_name, note=note)
        try:
            if once:
                times = [] if mem else common.measure(fn, warmup=0, min_runs=1, max_runs=1, device=device)
            elif args.quick:
                times = common.measure(fn, min_runs=1, max_runs=2, min_time=0.1, max_time=2.0, device=device)
            else:
                times = common.measure(fn, min_runs=2, max_runs=8, max_time=12.0, floor_runs=1, max_call=8.0,
                                       fold_warmup=1.0, device=device)
            if mem:
                t0 = time.perf_counter()
                row["peak_mib"] = peak_growth_mib(fn, device)
                if device.type == "cpu":
                    times.append(time.perf_counter() - t0)
            row.update(common.summarize(times))
            row["status"] = "ok"
        except Exception as e:  # a row that fails (e.g. out of memory) is recorded, not fatal
            row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:150]}"
            traceback.print_exc(file=sys.stderr)
        rows.append(row)
        print(f"  {op:<11} {size:<10} D={D:<3} r={r} {kind:<6} {impl:<10} "
              f"{row.get('median_ms', float('nan')):10.1f} ms  peak {row.get('peak_mib', float('nan')):8.1f} MiB  "
              f"{row['status'][:60]}", file=sys.stderr, flush=True)
        return row

    for size in sizes:
        big = size == BIG
        Ds = (128,) if args.quick else ((256,) if big else (128, 256))
        rs = (4,) if (args.quick or big) else (3, 4)
        for D in Ds:
            f1, f2, coords = inputs(size, D, device, gen)
            for r in rs:
                for kind in ("fwd", "fwdbwd"):
                    bwd = kind == "fwdbwd"
                    for impl in ("allpairs", "otf", "reference"):
                        if big and impl != "otf" and (bwd or args.skip_big_reference):
                            continue
                        note = "one run (1088x1920 all-pairs: 5.7 GB pyramid)" if big and impl != "otf" else ""
                        record("corr_block", size, D, r, kind, impl if impl == "reference" else f"{ours}-{impl}",
                               block_fn(impl, f1, f2, coords, r, bwd, ours), once=big and impl != "otf", note=note)
                # lookups alone, on a pyramid built once
                if not big:
                    blk = ref.RaftCorrBlock(f1, f2, LEVELS, r)
                    pyr = blk.corr_pyramid
                    record("corr_lookup", size, D, r, "fwd", ours,
                           lambda: [hk.corr_lookup(pyr, c, r, backend=ours) for c in coords], mem=False)
                    record("corr_lookup", size, D, r, "fwd", "reference", lambda: [blk(c) for c in coords], mem=False)
                    del blk, pyr
            del f1, f2, coords

    # local_corr (PWC-Net: d = 4) at the two smaller sizes
    for size in sizes:
        if size == BIG:
            continue
        for D in ((128,) if args.quick else (128, 256)):
            f1, f2, _ = inputs(size, D, device, gen)
            for kind in ("fwd", "fwdbwd"):
                for impl, fn in (("ours", lambda a, b: hk.local_corr(a, b, 4, backend=ours)),
                                 ("reference", lambda a, b: ref.local_corr(a, b, 4)),
                                 ("unfold", lambda a, b: unfold_local_corr(a, b, 4))):
                    def run(fn=fn, kind=kind):
                        a, b = (f1.detach().requires_grad_(), f2.detach().requires_grad_()) if kind == "fwdbwd" else (f1, f2)
                        out = fn(a, b)
                        if kind == "fwdbwd":
                            out.sum().backward()
                        return out
                    row = record("local_corr", size, D, 4, kind, ours if impl == "ours" else impl, run)
                    row["shape"] = f"D={D},d=4,stride=1"

    # ratios and targets
    by = {(r["op"], r["size"], r["shape"], r["kind"], r["impl"]): r for r in rows if r.get("status") == "ok"}
    for row in rows:
        if row.get("status") != "ok":
            continue
        refr = by.get((row["op"], row["size"], row["shape"], row["kind"], "reference"))
        if refr is not None and row["impl"] != "reference":
            row["x_ref"] = refr["median_ms"] / row["median_ms"]
    print("\nop          size       shape                      kind   impl          median ms   x_ref   peak MiB")
    for row in rows:
        print(f"{row['op']:<11} {row['size']:<10} {row['shape']:<26} {row['kind']:<6} {row['impl']:<12} "
              f"{common.fmt(row.get('median_ms')):>10} {common.fmt(row.get('x_ref')):>7} {common.fmt(row.get('peak_mib')):>10}"
              f"  {'' if row.get('status') == 'ok' else row.get('status', '')[:50]}")
    print("\ntargets (CPU):")
    for row in rows:
        if row["op"] == "corr_lookup" and row["impl"] != "reference" and "x_ref" in row:
            v = row["x_ref"]
            print(f"  corr_lookup {row['size']} {row['shape']}: {v:.2f}x the reference (>= {TARGET_LOOKUP_X}x) "
                  f"{'PASS' if v >= TARGET_LOOKUP_X else 'MISS'}")
    for row in rows:
        if row["op"] == "corr_block" and row["impl"].endswith("otf") and row["kind"] == "fwd" and row.get("status") == "ok":
            ap = by.get(("corr_block", row["size"], row["shape"], "fwd", f"{ours}-allpairs"))
            if ap is None:
                continue
            t = row["median_ms"] / ap["median_ms"]
            line = f"  otf {row['size']} {row['shape']}: time {t:.2f}x all-pairs (<= {TARGET_OTF_TIME}x) {'PASS' if t <= TARGET_OTF_TIME else 'MISS'}"
            if row["size"] == BIG and ap.get("peak_mib") and row.get("peak_mib") is not None:
                m = row["peak_mib"] / ap["peak_mib"]
                line += f"; peak memory {100 * m:.2f}% of all-pairs (< {100 * TARGET_OTF_MEM:.0f}%) {'PASS' if m < TARGET_OTF_MEM else 'MISS'}"
            print(line)
    if not args.no_save:
        path = common.results_path(device)
        n = common.append_rows(path, [dict(meta, **r) for r in rows])
        print(f"\n{len(rows)} rows appended to {path} ({n} rows in all)")


if __name__ == "__main__":
    main()
