"""Benchmark of the correlation family (docs/ops.md §1) against RAFT's algorithm in PyTorch.

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

On a CUDA device (the default where one is present) main() runs gpu_main() instead: every op on the cuda
and triton backends and the reference, float32 and bfloat16, fwd and fwdbwd, with bandwidth (corr_lookup),
TFLOP/s against torch.bmm (corr_volume / corr_pyramid) and the otf/all-pairs comparison; see the "GPU
path" notes above gpu_main. ``--quick`` / ``--gpu-quick`` is its smoke run, ``--gpu-budget`` caps it.

Size limits (2 cores, 24 GB shared): at 1088x1920 only D = 256, r = 4 runs; all-pairs and reference
there run forward only and once (a 4.3 GB volume, 5.7 GB pyramid, and the reference's ``/ sqrt(D)``
copy doubles it); otf runs forward and forward+backward.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import traceback

import torch
import torch.nn.functional as F

import hmore_kernels as hk
from hmore_kernels import _backends
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
    p.add_argument("--gpu-quick", action="store_true", help="GPU smoke run (same as --quick on a CUDA device)")
    p.add_argument("--gpu-budget", type=float, default=GPU_BUDGET_S,
                   help="GPU: seconds after which the remaining rows are recorded as skipped (default %(default)s)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    threads = common.set_threads(args.threads)
    meta = common.metadata(device, threads)
    if device.type == "cuda":
        return gpu_main(args, device, meta)
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


# ==== GPU path (device cuda) ======================================================================
# The CPU path above is unchanged (it produced the committed CPU rows). On a CUDA device main() calls
# gpu_main() instead, which measures the issue's GPU targets side by side in one run:
#
# (a) corr_lookup (12 lookups on a built pyramid) per backend: time, x_ref (RAFT's grid_sample lookup)
#     and achieved bandwidth -- gbps = bytes it must move / time, bw_frac = gbps / copy_gbps, with
#     copy_gbps from common.copy_bandwidth measured at the start of the same run. Bytes per lookup
#     (lookup_bytes): for every query pixel and level, the cells of the (2r+2)^2 window (the (2r+1)^2
#     bilinear taps touch 2r+2 rows and columns) that lie inside the level's h_l x w_l slice -- a window
#     clipped by the slice border holds no data to read (zeros are implied), so the clipped count is a
#     tighter lower bound than (2r+2)^2 (it is what the coords make necessary; it never inflates
#     gbps) -- times the pyramid's element size; plus the coords read (float32) and the float32 output
#     [B, L*(2r+1)^2, H1, W1] written. gbytes_window gives the unclipped (2r+2)^2 count for comparison.
# (b) corr_volume / corr_pyramid (cuda, triton, reference) in float32 and bfloat16 against torch.bmm of
#     the same [B, H1*W1, D] x [B, D, H2*W2] shapes, bfloat16 (the device's GEMM rate) and float32:
#     tflops = 2*B*H1*W1*H2*W2*D / time; vs_bmm_bf16 = our time / bf16 bmm time (target <= 2).
# (c) every op (corr_volume, corr_pyramid, corr_lookup, corr_lookup_otf, local_corr) on cuda, triton and
#     the reference (plus torch.bmm / unfold baselines), float32 and bfloat16, fwd and fwdbwd, time and
#     peak memory (torch.cuda.max_memory_allocated growth, peak stats reset per measurement).
# (d) corr_block (build + 12 lookups) float32: all-pairs vs otf per backend, peak memory and time ratio,
#     printed for every size (the issue's memory target is at 1088x1920).
# Every row is guarded: out of memory -> status "skipped: out of memory", the cache is emptied and the
# run goes on; any other exception -> status "error: ..."; rows past --gpu-budget seconds -> "skipped:
# time budget". One D and r on the GPU (D = 256, r = 4: RAFT's full model) to keep the run short.
GPU_D, GPU_R = 256, 4
GPU_D_QUICK = 128
GPU_BUDGET_S = 270.0
GPU_BACKENDS = ("cuda", "triton")
GPU_DTYPES = (torch.float32, torch.bfloat16)
LOCAL_D = 4
GPU_MODES = {
    "default": dict(warmup=2, min_runs=5, min_time=0.1, max_runs=20, max_time=1.5, floor_runs=3),
    "quick": dict(warmup=1, min_runs=2, min_time=0.0, max_runs=3, max_time=0.3, floor_runs=1),
}
TARGET_GPU_LOOKUP_X = 3.0     # corr_lookup >= 3x the reference
TARGET_GPU_LOOKUP_BW = 0.5    # corr_lookup >= 50% of the copy bandwidth
TARGET_GPU_VS_BMM = 2.0       # volume build within 2x of the bf16 bmm time
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _hw(size):
    return tuple(int(s) // 8 for s in size.split("x"))


def level_shapes(H2, W2, levels=LEVELS):
    return [(H2 >> l, W2 >> l) for l in range(levels)]


def lookup_bytes(coords_list, shapes, r, elem_size, levels_out=None):
    """(bytes a corr_lookup of every coords field must move, the same with unclipped windows).

    See the GPU notes above: per query pixel and level, the cells of the (2r+2)^2 window around
    floor(coords / 2**l) - r that lie inside the level's slice, times ``elem_size``; plus the coords read
    (4 bytes x 2 per pixel) and the float32 output written (4 bytes x L*(2r+1)^2 per pixel).
    """
    L = len(shapes) if levels_out is None else levels_out
    clipped = window = 0
    for c in coords_list:
        B, _, H1, W1 = c.shape
        n = B * H1 * W1
        cx, cy = c[:, 0].double(), c[:, 1].double()
        for l, (h, w) in enumerate(shapes):
            x0 = torch.floor(cx / 2**l) - r
            y0 = torch.floor(cy / 2**l) - r
            nx = (torch.minimum(x0 + 2 * r + 1, torch.full_like(x0, w - 1)) - torch.clamp(x0, min=0) + 1).clamp(min=0)
            ny = (torch.minimum(y0 + 2 * r + 1, torch.full_like(y0, h - 1)) - torch.clamp(y0, min=0) + 1).clamp(min=0)
            clipped += int((nx * ny).sum().item()) * elem_size
            window += n * (2 * r + 2) ** 2 * elem_size
        io = n * 2 * 4 + n * L * (2 * r + 1) ** 2 * 4
        clipped += io
        window += io
    return clipped, window


def gemm_flops(B, HW1, HW2, D):
    return 2.0 * B * HW1 * HW2 * D


def raft_lookup(pyramid, coords, r):
    """RAFT's CorrBlock.__call__ (reference/corr.py:RaftCorrBlock) on a given pyramid; the sampling grid
    is cast to the pyramid's dtype (grid_sample needs one dtype: bfloat16 rows use a bfloat16 grid)."""
    coords = coords.permute(0, 2, 3, 1)
    batch, h1, w1, _ = coords.shape
    dx = torch.linspace(-r, r, 2 * r + 1, device=coords.device)
    dy = torch.linspace(-r, r, 2 * r + 1, device=coords.device)
    delta = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
    out = []
    for i, corr in enumerate(pyramid):
        centroid = coords.reshape(batch * h1 * w1, 1, 1, 2) / 2**i
        grid = (centroid + delta).to(corr.dtype)
        out.append(ref.raft_bilinear_sampler(corr, grid).view(batch, h1, w1, -1))
    return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()


def make_fwdbwd(f, inputs_):
    """A maker of a forward+backward step: ``f(*leaves)`` (a tensor or a list of tensors) with leaves
    requiring grad; fixed random upstream gradients made once, outside the timing."""

    def make():
        leaves = [t.detach().requires_grad_() for t in inputs_]
        with torch.no_grad():
            out = f(*[t.detach() for t in inputs_])
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        gouts = [torch.randn_like(o) for o in outs]
        del out, outs

        def step():
            o = f(*leaves)
            o = list(o) if isinstance(o, (list, tuple)) else [o]
            torch.autograd.backward(o, gouts)
            for t in leaves:
                t.grad = None
            return o[0]

        return step

    return make


def _first_line(e, limit=150):
    msg = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {msg}"[:limit]


def _is_oom(e):
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


class GpuRunner:
    """Times rows on a device; never lets one row end the run."""

    def __init__(self, device, mode, mode_name, budget_s, backends_skipped):
        self.device, self.mode, self.mode_name = device, mode, mode_name
        self.budget_s, self.skipped = budget_s, backends_skipped
        self.t0 = time.perf_counter()
        self.rows = []

    def elapsed(self):
        return time.perf_counter() - self.t0

    def _cleanup(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def row(self, op, size, shape, dtype, kind, impl, make, *, backend=None, note="", **extra):
        """``make()`` returns the callable to time (set-up inside it is guarded too)."""
        row = dict(op=op, size=size, shape=shape, dtype=DTYPE_NAMES.get(dtype, str(dtype)), kind=kind, impl=impl,
                   mode=self.mode_name, note=note, **extra)
        self.rows.append(row)
        if backend in self.skipped:
            row["status"] = f"skipped: {self.skipped[backend]}"[:200]
        elif self.elapsed() > self.budget_s:
            row["status"] = f"skipped: time budget ({self.budget_s:g} s) spent"
        else:
            fn = None
            try:
                fn = make()
                times = common.measure(fn, device=self.device, **self.mode)
                row.update(common.summarize(times))
                row["peak_mib"] = peak_growth_mib(fn, self.device)
                row["status"] = "ok"
            except Exception as e:  # out of memory, a missing kernel, a dtype not supported: a row, not a crash
                if _is_oom(e):
                    row["status"] = f"skipped: out of memory ({_first_line(e, 100)})"
                else:
                    row["status"] = f"error: {_first_line(e)}"
                    traceback.print_exc(file=sys.stderr)
            finally:
                fn = None
                self._cleanup()
        print(f"  [{self.elapsed():5.0f}s] {op:<15} {size:<10} {row['dtype']:<8} {kind:<6} {impl:<16} "
              f"{common.fmt(row.get('median_ms')):>9} ms  peak {common.fmt(row.get('peak_mib')):>8} MiB  "
              f"{'' if row['status'] == 'ok' else row['status'][:70]}", file=sys.stderr, flush=True)
        return row


def gpu_backends(device):
    skipped = {}
    for b in GPU_BACKENDS:
        why = _backends._reason(b, device)
        if why is not None:
            skipped[b] = why
    return skipped


def gpu_rows_for_size(run: GpuRunner, size, D, r, device, gen, parts):
    """All rows of one size (see the GPU notes above)."""
    H, W = _hw(size)
    HW = H * W
    B = 1
    try:
        f1_32, f2_32, coords = inputs(size, D, device, gen)
    except Exception as e:  # noqa: BLE001 -- even the inputs may not fit
        run.rows.append(dict(op="inputs", size=size, status=f"error: {_first_line(e)}", mode=run.mode_name))
        run._cleanup()
        return
    shape_lk = f"B={B},D={D},r={r},L={LEVELS},lookups={LOOKUPS}"
    shape_mm = f"[{B},{HW},{D}]x[{B},{D},{HW}]"
    shapes = level_shapes(H, W)
    for dt in GPU_DTYPES:
        f1, f2 = f1_32.to(dt), f2_32.to(dt)
        flops = gemm_flops(B, HW, HW, D)
        if "volume" in parts:
            a_mat = f1.view(B, D, HW).transpose(1, 2)  # [B, HW1, D] (a transposed view: cuBLAS reads it as is)
            b_mat = f2.view(B, D, HW)                  # [B, D, HW2]
            run.row("corr_volume", size, shape_mm, dt, "fwd", "torch.bmm", lambda: (lambda: torch.bmm(a_mat, b_mat)),
                    note="GEMM baseline: torch.bmm of the same shapes", flops=flops)
            for op, f in (("corr_volume", lambda a, b, bk: hk.corr_volume(a, b, backend=bk)),
                          ("corr_pyramid", lambda a, b, bk: hk.corr_pyramid(a, b, LEVELS, backend=bk))):
                for impl in GPU_BACKENDS + ("reference",):
                    bk = impl
                    run.row(op, size, shape_mm, dt, "fwd", impl, lambda f=f, bk=bk: (lambda: f(f1, f2, bk)),
                            backend=bk, flops=flops)
                    run.row(op, size, shape_mm, dt, "fwdbwd", impl,
                            make_fwdbwd(lambda a, b, f=f, bk=bk: f(a, b, bk), (f1, f2)), backend=bk, flops=3 * flops)
            del a_mat, b_mat
        if "lookup" in parts:
            pyr = None
            try:
                with torch.no_grad():
                    pyr = ref.corr_pyramid(f1, f2, LEVELS)
                nbytes, nbytes_win = lookup_bytes(coords, shapes, r, pyr[0].element_size())
            except Exception as e:  # noqa: BLE001
                pyr = None
                why = ("skipped: out of memory" if _is_oom(e) else "error") + f" building the pyramid: {_first_line(e, 100)}"
                run._cleanup()
            for impl in GPU_BACKENDS + ("reference",):
                for kind in ("fwd", "fwdbwd"):
                    if pyr is None:
                        run.rows.append(dict(op="corr_lookup", size=size, shape=shape_lk, dtype=DTYPE_NAMES[dt], kind=kind,
                                             impl=impl, mode=run.mode_name, status=why))
                        continue
                    if impl == "reference":
                        lk = lambda p, c: raft_lookup(p, c, r)  # noqa: E731
                        note = "RAFT CorrBlock.__call__ (grid_sample)" + ("; bf16 grid" if dt != torch.float32 else "")
                    else:
                        lk = lambda p, c, bk=impl: hk.corr_lookup(p, c, r, backend=bk)  # noqa: E731
                        note = ""
                    if kind == "fwd":
                        make = lambda lk=lk: (lambda: [lk(pyr, c) for c in coords])  # noqa: E731
                        extra = dict(nbytes=nbytes, nbytes_window=nbytes_win)
                    else:
                        make = make_fwdbwd(lambda *ts, lk=lk: [lk(list(ts[:LEVELS]), c) for c in ts[LEVELS:]],
                                           list(pyr) + list(coords))
                        extra = {}
                    run.row("corr_lookup", size, shape_lk, dt, kind, impl, make, backend=impl, note=note, **extra)
            del pyr
            run._cleanup()
        if "otf" in parts:
            for impl in GPU_BACKENDS + ("reference",):
                f = lambda a, b, c, bk=impl: hk.corr_lookup_otf(a, b, c, r, LEVELS, backend=bk)  # noqa: E731
                run.row("corr_lookup_otf", size, shape_lk, dt, "fwd", impl,
                        lambda f=f: (lambda: [f(f1, f2, c) for c in coords]), backend=impl,
                        note="reference: builds the pyramid per call" if impl == "reference" else "")
                run.row("corr_lookup_otf", size, shape_lk, dt, "fwdbwd", impl,
                        make_fwdbwd(lambda a, b, *cs, f=f: [f(a, b, c) for c in cs], [f1, f2] + list(coords)), backend=impl)
        if "local" in parts:
            shape_lc = f"B={B},D={D},d={LOCAL_D},stride=1"
            for impl in GPU_BACKENDS + ("reference", "unfold"):
                if impl == "unfold":
                    f = lambda a, b: unfold_local_corr(a, b, LOCAL_D)  # noqa: E731
                else:
                    f = lambda a, b, bk=impl: hk.local_corr(a, b, LOCAL_D, backend=bk)  # noqa: E731
                run.row("local_corr", size, shape_lc, dt, "fwd", impl, lambda f=f: (lambda: f(f1, f2)), backend=impl)
                run.row("local_corr", size, shape_lc, dt, "fwdbwd", impl, make_fwdbwd(f, (f1, f2)), backend=impl)
        del f1, f2
        run._cleanup()
    if "block" in parts:
        for kind in ("fwd", "fwdbwd"):
            for impl, bk in [(f"{b}-{m}", b) for m in ("allpairs", "otf") for b in GPU_BACKENDS] + [("reference", None)]:
                mode_ = impl.split("-")[-1] if bk else "reference"
                run.row("corr_block", size, shape_lk, torch.float32, kind, impl,
                        lambda mode_=mode_, bk=bk, kind=kind: block_fn(mode_, f1_32, f2_32, coords, r, kind == "fwdbwd", bk),
                        backend=bk)
    del f1_32, f2_32, coords
    run._cleanup()


def gpu_derive(rows, copy_bw):
    """x_ref, gbps / bw_frac / copy_gbps, tflops, vs_bmm_bf16 (in place)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    by = {(r["op"], r["size"], r["dtype"], r["kind"], r["impl"]): r for r in ok}
    for r in ok:
        t = r["median_ms"] / 1e3
        refr = by.get((r["op"], r["size"], r["dtype"], r["kind"], "reference"))
        if refr is not None and r["impl"] != "reference":
            r["x_ref"] = refr["median_ms"] / r["median_ms"]
        if r.get("nbytes"):
            r["gbytes"] = r["nbytes"] / 1e9
            r["gbytes_window"] = r["nbytes_window"] / 1e9
            r["gbps"] = r["nbytes"] / t / 1e9
            if copy_bw:
                r["copy_gbps"] = copy_bw / 1e9
                r["bw_frac"] = r["gbps"] * 1e9 / copy_bw
        if r.get("flops"):
            r["tflops"] = r["flops"] / t / 1e12
        if r["op"] in ("corr_volume", "corr_pyramid") and r["kind"] == "fwd":
            mm = by.get(("corr_volume", r["size"], "bfloat16", "fwd", "torch.bmm"))
            if mm is not None:
                r["vs_bmm_bf16"] = r["median_ms"] / mm["median_ms"]
    for r in rows:  # helper counts are not CSV columns
        r.pop("nbytes", None)
        r.pop("nbytes_window", None)
        r.pop("flops", None)


def gpu_targets(rows):
    lines = []
    ok = {(r["op"], r["size"], r["dtype"], r["kind"], r["impl"]): r for r in rows if r.get("status") == "ok"}

    def v(b):
        return "PASS" if b else "MISS"

    for r in rows:
        if r["op"] == "corr_lookup" and r["kind"] == "fwd" and r["impl"] in GPU_BACKENDS:
            if r.get("status") != "ok":
                lines.append(f"  corr_lookup {r['size']} {r['dtype']} {r['impl']}: n/a ({r.get('status', '')[:70]})")
                continue
            xr, bf = r.get("x_ref"), r.get("bw_frac")
            a = f"{xr:.2f}x reference (>= {TARGET_GPU_LOOKUP_X:g}x) {v(xr >= TARGET_GPU_LOOKUP_X)}" if xr else "reference n/a"
            b = (f"{r['gbps']:.0f} GB/s = {100 * bf:.0f}% of copy {r['copy_gbps']:.0f} GB/s (>= {100 * TARGET_GPU_LOOKUP_BW:.0f}%) "
                 f"{v(bf >= TARGET_GPU_LOOKUP_BW)}") if bf is not None else "copy bandwidth n/a"
            lines.append(f"  corr_lookup {r['size']} {r['dtype']} {r['impl']}: {a}; {b}")
    for r in rows:
        if r["op"] in ("corr_volume", "corr_pyramid") and r["kind"] == "fwd" and r["impl"] in GPU_BACKENDS:
            if r.get("status") != "ok":
                lines.append(f"  {r['op']} {r['size']} {r['dtype']} {r['impl']}: n/a ({r.get('status', '')[:70]})")
                continue
            q = r.get("vs_bmm_bf16")
            s = f"{q:.2f}x the bf16 torch.bmm time (<= {TARGET_GPU_VS_BMM:g}x) {v(q <= TARGET_GPU_VS_BMM)}" if q else "bmm n/a"
            lines.append(f"  {r['op']} {r['size']} {r['dtype']} {r['impl']}: {common.fmt(r.get('tflops'))} TFLOP/s; {s}")
    for r in rows:
        if r["op"] == "corr_block" and r["kind"] == "fwd" and r["impl"].endswith("-otf") and r.get("status") == "ok":
            ap = ok.get(("corr_block", r["size"], r["dtype"], "fwd", r["impl"].replace("-otf", "-allpairs")))
            if ap is None:
                lines.append(f"  otf {r['size']} {r['impl']}: all-pairs row n/a")
                continue
            t = r["median_ms"] / ap["median_ms"]
            line = f"  otf {r['size']} {r['impl']}: time {t:.2f}x all-pairs (<= {TARGET_OTF_TIME:g}x) {v(t <= TARGET_OTF_TIME)}"
            if ap.get("peak_mib") and r.get("peak_mib") is not None:
                m = r["peak_mib"] / ap["peak_mib"]
                line += (f"; peak {common.fmt(r['peak_mib'])} vs {common.fmt(ap['peak_mib'])} MiB = {100 * m:.2f}%"
                         + (f" (< {100 * TARGET_OTF_MEM:.0f}%) {v(m < TARGET_OTF_MEM)}" if r["size"] == BIG else ""))
            lines.append(line)
    return lines


GPU_PARTS = ("volume", "lookup", "block", "otf", "local")


def gpu_main(args, device, meta):
    quick = args.quick or args.gpu_quick
    mode_name = "quick" if quick else "default"
    sizes = ["368x496"] if quick else args.sizes.split(",")
    D = GPU_D_QUICK if quick else GPU_D
    skipped = gpu_backends(device)
    print(f"device {meta['device']}; commit {meta['commit']}; torch {meta['torch']}, triton {meta['triton'] or '-'}; "
          f"mode {mode_name}; GPU backends not run: {skipped or 'none'}", flush=True)
    copy_bw = None
    try:
        copy_bw = common.copy_bandwidth(device)
        print(f"copy bandwidth (1 GiB device-to-device, read + write): {copy_bw / 1e9:.0f} GB/s", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"copy bandwidth not measured: {_first_line(e)}", flush=True)
    run = GpuRunner(device, GPU_MODES[mode_name], mode_name, args.gpu_budget, skipped)
    gen = torch.Generator().manual_seed(0)
    # The targets' rows first (lookup, volume), then the corr_block comparison, then the rest: if the
    # time budget runs out, what is skipped is the least important.
    for group in (("lookup", "volume"), ("block",), ("otf", "local")):
        for size in sizes:
            gpu_rows_for_size(run, size, D, GPU_R, device, gen, group)
    rows = run.rows
    gpu_derive(rows, copy_bw)
    cols = [("op", "op"), ("size", "size"), ("dtype", "dtype"), ("kind", "kind"), ("impl", "impl"),
            ("median_ms", "median ms"), ("iqr_ms", "IQR ms"), ("runs", "runs"), ("x_ref", "x ref"), ("gbps", "GB/s"),
            ("bw_frac", "of copy"), ("tflops", "TFLOP/s"), ("vs_bmm_bf16", "/bmm bf16"), ("peak_mib", "peak MiB"),
            ("remark", "note / status")]
    for r in rows:
        r["remark"] = (r.get("status", "") if r.get("status") != "ok" else r.get("note", ""))[:70]
    print()
    common.print_table(rows, cols, right={c for c, _ in cols if c not in ("op", "size", "dtype", "kind", "impl", "remark")})
    print("\nx ref = reference median / impl median (same op, size, dtype, kind); GB/s counts the bytes corr_lookup must move "
          "(clipped (2r+2)^2 windows + coords + output); /bmm bf16 = time / the bf16 torch.bmm time of the same shapes.")
    print("\ntargets (GPU):")
    print("\n".join(gpu_targets(rows)) or "  none apply to the rows run")
    print(f"\nbenchmark time: {run.elapsed():.0f} s")
    for r in rows:
        r.pop("remark", None)
    if not args.no_save:
        path = common.results_path(device)
        out = [dict(meta, **{k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in r.items()}) for r in rows]
        n = common.append_rows(path, out)
        print(f"\n{len(rows)} rows appended to {path} ({n} rows in all)")
    return rows


if __name__ == "__main__":
    main()
