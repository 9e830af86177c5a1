"""Stock flow models against the same models with our correlation (hmore_kernels.integrations).

    python -m benchmarks.bench_integrations            # 368x496 for every model, 1088x1920 for RAFT-small
    python -m benchmarks.bench_integrations --quick --no-save

Per model (default torchvision and ptlflow RAFT-small; ``--models`` adds others; random weights, seeded; B = 1; 12 refinement iterations), in one run, side by side:
``stock`` (the library's own correlation), ``allpairs`` and ``otf`` (``accelerate(model, mode=...)``),
forward (eval, no grad) and forward+backward (train mode, RAFT's sequence loss), median wall time,
ratio to stock, and peak memory (growth of the process's resident set over one call, sampled every
1 ms -- bench_corr.peak_growth_mib; torch.cuda.max_memory_allocated on a GPU).

Sizes on this project's 2-core, 24 GiB CPU machine: 368x496 runs everything. At 1088x1920 only
torchvision RAFT-small runs, forward: stock and all-pairs build RAFT's pyramid (1/8 resolution,
136x240, D = 128: a 4.3 GB volume, 5.7 GB with its pooled levels) and fit; forward+backward would add a
pyramid-sized gradient and the saved activations of 12 iterations, which does not fit beside the other
jobs on the machine, so only ``otf`` runs it. Each 1088x1920 row is a single call (tens of seconds).
"""
from __future__ import annotations

import argparse
import copy
import gc
import os
import sys
import warnings

import torch

from . import common
from .bench_corr import peak_growth_mib

ITERS = 12
SMALL, BIG = "368x496", "1088x1920"


def _models(names):
    from hmore_kernels.integrations._compat import import_ptlflow, import_torchvision

    out = {}
    for name in names:
        lib, model_name = name.split(":")
        torch.manual_seed(0)
        if lib == "torchvision":
            import_torchvision()
            from torchvision.models import optical_flow

            out[name] = (lib, getattr(optical_flow, model_name)())
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = import_ptlflow().get_model(model_name)
            model.iters = ITERS
            out[name] = (lib, model)
    return out


def _runner(lib, model):
    if lib == "torchvision":
        return lambda a, b: model(a, b, num_flow_updates=ITERS)

    def run(a, b):
        out = model({"images": torch.stack([a, b], 1)})
        return out["flow_preds"] if model.training else [out["flows"][:, 0]]

    return run


def _fn(lib, model, kind, img1, img2, target):
    run = _runner(lib, model)
    if kind == "fwd":
        model.eval()

        def fwd():
            with torch.no_grad():
                run(img1, img2)

        return fwd
    model.train()

    def fwdbwd():
        model.zero_grad(set_to_none=True)
        flows = run(img1, img2)
        n = len(flows)
        sum(0.8 ** (n - 1 - i) * (f - target).abs().mean() for i, f in enumerate(flows)).backward()

    return fwdbwd


def main(argv=None):
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # as bench_corr: freed blocks leave the RSS
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.bench_integrations", *argv], env)
    import hmore_kernels.integrations as hki

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="368x496, torchvision RAFT-small only, few runs")
    p.add_argument("--no-big", action="store_true", help="skip the 1088x1920 rows")
    p.add_argument("--models", default="torchvision:raft_small,ptlflow:raft_small",
                   help="comma-separated library:model (also torchvision:raft_large, ptlflow:raft, ptlflow:gma, ...)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = common.set_threads(args.threads)
    meta = common.metadata(device, threads)
    names = ["torchvision:raft_small"] if args.quick else args.models.split(",")
    models = _models(names)
    plan = [(n, SMALL, kind) for n in names for kind in ("fwd", "fwdbwd")]
    if not (args.quick or args.no_big) and "torchvision:raft_small" in models:
        plan += [("torchvision:raft_small", BIG, "fwd")]
    rows = []
    g = torch.Generator().manual_seed(1)
    for name, size, kind in plan:
        lib, pristine = models[name]
        H, W = (int(s) for s in size.split("x"))
        img1, img2 = (torch.rand(1, 3, H, W, generator=g).to(device) for _ in range(2))
        target = torch.randn(1, 2, H, W, generator=g).to(device)
        impls = ["stock", "allpairs", "otf"]
        if size == BIG:
            impls += ["otf-fwdbwd"]
        stock_ms = None
        for impl in impls:
            model = copy.deepcopy(pristine).to(device)
            k = "fwdbwd" if impl == "otf-fwdbwd" else kind
            if impl != "stock":
                hki.accelerate(model, mode=impl.split("-")[0])
            fn = _fn(lib, model, k, img1, img2, target)
            if size == BIG:
                timed = []  # one call, timed while its memory is sampled

                def once():
                    timed.extend(common.measure(fn, warmup=0, min_runs=1, max_runs=1, device=device))

                peak = peak_growth_mib(once, device)
                times = timed
            else:
                peak = peak_growth_mib(fn, device)  # also the warm-up call
                times = common.measure(fn, warmup=0, min_runs=3, max_runs=10 if not args.quick else 3,
                                       max_time=20.0, floor_runs=3, device=device)
            s = common.summarize(times)
            row = {"op": f"{name}", "size": size, "kind": k, "impl": impl.split("-")[0], "status": "ok",
                   "peak_mib": peak, "mode": impl.split("-")[0], "family": "integrations",
                   "note": f"B=1, {ITERS} iterations", **s}
            if impl == "stock":
                stock_ms = s["median_ms"]
            elif k == kind and stock_ms:
                row["x_ref"] = stock_ms / s["median_ms"]
            rows.append(row)
            print(f"{name:24s} {size:10s} {k:7s} {row['impl']:9s} {s['median_ms']:10.1f} ms (IQR {s['iqr_ms']:.1f}, "
                  f"{s['runs']} runs)  x{common.fmt(row.get('x_ref'))}  peak {peak:8.1f} MiB", flush=True)
            del model, fn
            gc.collect()
    cols = [("op", "model"), ("size", "size"), ("kind", "kind"), ("impl", "impl"), ("median_ms", "median ms"),
            ("iqr_ms", "IQR"), ("x_ref", "x stock"), ("peak_mib", "peak MiB"), ("runs", "runs")]
    common.print_table(rows, cols, right={"median_ms", "iqr_ms", "x_ref", "peak_mib", "runs"})
    if not args.no_save:
        path = common.results_path(device)
        n = common.append_rows(path, [dict(meta, **r) for r in rows])
        print(f"appended {n} rows to {path}")


if __name__ == "__main__":
    main()
