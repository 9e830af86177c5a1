"""H-MoRe model benchmark: a training step (forward, backward, AdamW) with the fused ops against the same
model on ``backend="reference"``, and inference pairs/s, side by side in one run.

    python3 -m benchmarks.bench_model [--quick] [--threads N]

Rows go to ``benchmarks/results/<device>.csv`` (family "model"). Targets (issue 9): training step >= 1.5x
faster with the fused ops than with the reference; on an H100, >= 150 pairs/s at 384x512 in bf16.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import append_rows, measure, metadata, print_table, results_path, set_threads, summarize

TARGET_TRAIN_SPEEDUP = 1.5


def _batch(B, H, W, device):
    from hmore.data.mix import MixedPairs

    ds = MixedPairs([{"source": "synthetic"}], crop=(H, W), seed=0)
    b = torch.utils.data.default_collate([ds[i] for i in range(B)])
    return {k: v.to(device) for k, v in b.items()}


def train_step_fn(backend, B, H, W, iters, device):
    import hmore
    from hmore.losses import HMoReLoss

    torch.manual_seed(0)
    m = hmore.get_model("hmore", backend=backend, iters=iters).to(device).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    lf = HMoReLoss(m.config)
    b = _batch(B, H, W, device)

    def step():
        total, _ = lf(m(b["frame0"], b["frame1"]), b)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return step


def infer_fn(B, H, W, iters, device, dtype=None):
    import hmore

    m = hmore.get_model("hmore", iters=iters).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.rand(B, 3, H, W, generator=g).to(device) for _ in range(2))

    def run():
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            m(x1, x2)

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few runs (a smoke run)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = set_threads(a.threads)
    meta = metadata(device, threads)
    rows = []
    B, H, W, iters = (2, 128, 128, 4) if a.quick else (4, 256, 256, 12)
    kw = dict(min_runs=2 if a.quick else 3, max_runs=3 if a.quick else 5, max_time=30.0, device=device)
    res = {}
    for backend in ("auto", "reference"):
        fn = train_step_fn(backend, B, H, W, iters, device)
        s = summarize(measure(fn, **kw))
        res[backend] = s["median_ms"]
        rows.append({**meta, "family": "model", "op": "train_step", "backend": backend,
                     "shape": f"{B}x3x{H}x{W} iters {iters}", **s})
    speed = res["reference"] / res["auto"]
    for r in rows:
        r["ratio_vs_reference"] = round(res["reference"] / r["median_ms"], 3)
    sizes = [(1, 128, 128)] if a.quick else [(1, 192, 256), (1, 368, 496)]
    for (b, h, w) in sizes:
        s = summarize(measure(infer_fn(b, h, w, 12 if not a.quick else iters, device), **kw))
        rows.append({**meta, "family": "model", "op": "inference", "backend": "auto", "shape": f"{b}x3x{h}x{w} iters 12",
                     **s, "pairs_per_s": round(1e3 * b / s["median_ms"], 3)})
    if device.type == "cuda":
        s = summarize(measure(infer_fn(8, 384, 512, 12, device, torch.bfloat16), **kw))
        rows.append({**meta, "family": "model", "op": "inference_bf16", "backend": "auto", "shape": "8x3x384x512 iters 12",
                     **s, "pairs_per_s": round(8e3 / s["median_ms"], 3)})
    print_table(rows, [("op", "op"), ("backend", "backend"), ("shape", "shape"), ("median_ms", "median ms"),
                       ("iqr_ms", "IQR ms"), ("ratio_vs_reference", "x ref"),
                       ("pairs_per_s", "pairs/s")])
    print(f"training step, fused vs reference: {speed:.2f}x (target >= {TARGET_TRAIN_SPEEDUP}x: "
          f"{'met' if speed >= TARGET_TRAIN_SPEEDUP else 'missed'})")
    n = append_rows(results_path(device), rows)
    print(f"{n} rows -> {results_path(device)}")


if __name__ == "__main__":
    main()
