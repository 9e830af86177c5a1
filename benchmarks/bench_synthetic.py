"""Throughput of the synthetic-people generator (hmore.data.synthetic): frame pairs per second.

    python -m benchmarks.bench_synthetic                 # 256x256 and 368x496, one and three subjects
    python -m benchmarks.bench_synthetic --quick --no-save

One process, one thread (the generator is NumPy + OpenCV on small arrays; a training run feeds it
from DataLoader workers, one pair per call, so per-process throughput x workers is what training
sees). Each row times batches of ``render_pair`` calls over consecutive seeds (every call a new
scene), reports pairs/s from the median batch time, and also the CPU time per pair (less sensitive
to other work on a shared machine than wall time), and the ratio to the issue's target of 200
pairs/s at 256x256. A second row per size times ``SyntheticPairs.__getitem__`` (render + conversion
to torch tensors), which is what a DataLoader worker calls.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from hmore.data.synthetic import SyntheticConfig, SyntheticPairs, render_pair

from . import common

TARGET_PAIRS_PER_S = 200.0  # at 256x256 (issue)
SIZES = ((256, 256), (368, 496))


def _bench(fn, batch: int, mode: dict) -> tuple[list[float], float]:
    """Times ``fn(i)`` over batches of ``batch`` consecutive i; returns (batch wall times, CPU s per call)."""
    state = {"i": 0, "cpu": 0.0, "n": 0}

    def run():
        c0 = time.process_time()
        for _ in range(batch):
            fn(state["i"])
            state["i"] += 1
        state["cpu"] += time.process_time() - c0
        state["n"] += batch

    times = common.measure(run, warmup=1, min_runs=mode["min_runs"], min_time=mode["min_time"],
                           max_runs=mode["max_runs"], max_time=mode["max_time"])
    return times, state["cpu"] / max(state["n"], 1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repeats (CI smoke)")
    ap.add_argument("--no-save", action="store_true", help="do not append rows to benchmarks/results")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads (default 1, as in a worker)")
    args = ap.parse_args(argv)
    mode = (dict(min_runs=2, min_time=0.2, max_runs=3, max_time=2.0) if args.quick
            else dict(min_runs=7, min_time=3.0, max_runs=25, max_time=20.0))
    batch = 5 if args.quick else 20
    threads = common.set_threads(args.threads)
    meta = common.metadata(torch.device("cpu"), threads)
    rows = []
    for (H, W) in SIZES:
        for subjects in (1, 3):
            cfg = SyntheticConfig(height=H, width=W, num_subjects=subjects)
            ds = SyntheticPairs("train", 1 << 30, cfg)
            for what, fn in (("render_pair", lambda i, cfg=cfg: render_pair(i, cfg)),
                             ("SyntheticPairs", lambda i, ds=ds: ds[i])):
                if what == "SyntheticPairs" and subjects != 1:
                    continue
                times, cpu = _bench(fn, batch, mode)
                s = common.summarize([t / batch for t in times])
                pps = 1e3 / s["median_ms"]
                row = {**meta, "family": "synthetic", "op": what, "backend": "numpy+opencv",
                       "size": f"{H}x{W}", "subjects": subjects, "pairs_per_s": round(pps, 1),
                       "cpu_ms_per_pair": round(cpu * 1e3, 3), "pairs_per_cpu_s": round(1.0 / cpu, 1),
                       **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}}
                if (H, W) == (256, 256) and subjects == 1:
                    row["vs_target"] = round(pps / TARGET_PAIRS_PER_S, 3)
                rows.append(row)
    common.print_table(rows, [("op", "op"), ("size", "size"), ("subjects", "P"), ("median_ms", "ms/pair"),
                              ("iqr_ms", "IQR"), ("pairs_per_s", "pairs/s"), ("cpu_ms_per_pair", "CPU ms/pair"),
                              ("pairs_per_cpu_s", "pairs/CPU-s"), ("vs_target", "x target")],
                       right=("median_ms", "iqr_ms", "pairs_per_s", "cpu_ms_per_pair", "pairs_per_cpu_s", "vs_target"))
    print(f"\n{meta['device']}, {threads} thread(s), load average {meta['loadavg']} at start "
          f"(wall time counts other processes' work on a shared machine; CPU time much less so)")
    if not args.no_save:
        path = common.results_path(torch.device("cpu"))
        n = common.append_rows(path, rows)
        print(f"appended {len(rows)} rows to {path} ({n} rows)")


if __name__ == "__main__":
    main()
