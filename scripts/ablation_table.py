"""The ablation table of issue 18: every run in a folder of ablation runs (``configs/ablation/*.toml`` trained
by ``hmore train`` to the same CPU budget), its newest checkpoint validated on the val sets of
``hmore.train.validation_sets`` (synthetic val split; photo composites of role "val": never the held-out test
photos), and a profile of one training step of its recipe (data, forward, loss, backward).

    python3 scripts/ablation_table.py runs/ablation --out docs/ablation [--val-pairs 32] [--profile-steps 5]

Writes ``OUT/ablation.json`` and ``OUT/ablation.md`` (atomically) and prints the table.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hmore.data._io import atomic_write_bytes, atomic_write_json  # noqa: E402
from hmore.train import find_checkpoints, load_config, model_inputs, validate, validation_sets  # noqa: E402


def _log_summary(run: str) -> dict:
    with open(os.path.join(run, "log.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit()]
    if not rows:
        return {}
    last = rows[-1]
    rates = sorted(float(r["pairs_per_s"]) for r in rows[len(rows) // 10:] if r.get("pairs_per_s"))
    return {"steps": int(last["step"]), "cpu_seconds": float(last.get("cpu_seconds") or "nan"),
            "wall_seconds": float(last["seconds"]) - float(rows[0]["seconds"]),
            "median_pairs_per_s": rates[len(rates) // 2] if rates else float("nan")}


def profile_step(cfg, steps: int = 5) -> dict:
    """Median ms of one training step's parts for a run's recipe: making a batch (render, prior, DIS start), the
    forward pass, the loss and the backward pass (with the optimizer step), 1 thread, random init."""
    from hmore.data.mix import MixedPairs, parse_sources
    from hmore.losses import HMoReLoss
    from hmore.models import HMoRe

    mcfg = cfg.model_config()
    ds = MixedPairs(parse_sources(cfg.warmup_data), crop=cfg.crop, seed=1, synthetic=cfg.synthetic,
                    prior=cfg.prior_policy() if mcfg.person_prior else None, flow_init=mcfg.flow_init)
    torch.manual_seed(0)
    model = HMoRe(mcfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    loss_fn = HMoReLoss(mcfg)
    parts = {"data": [], "forward": [], "loss": [], "backward": []}
    # one-time costs out of the timings: the photo cut-outs (MediaPipe over the train clips, ~6 s, once per
    # process) and the segmenter's start load on the first sample of their source
    for i in range(64):
        ds[10**6 + i]
    n = 0
    for s in range(steps + 1):
        t0 = time.perf_counter()
        items = [ds[n + b] for b in range(cfg.batch_size)]
        n += cfg.batch_size
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        t1 = time.perf_counter()
        out = model(batch["frame0"], batch["frame1"], **model_inputs(batch, mcfg))
        t2 = time.perf_counter()
        total, _ = loss_fn(out, batch, constraints=False)
        t3 = time.perf_counter()
        opt.zero_grad()
        total.backward()
        opt.step()
        t4 = time.perf_counter()
        if s:  # the first step pays lazy initialisations
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[k].append(1000 * v)
    med = {k: sorted(v)[len(v) // 2] for k, v in parts.items()}
    med["step"] = sum(med.values())
    med["data_share"] = med["data"] / med["step"]
    return med


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", help="folder of ablation runs (one subfolder per recipe)")
    ap.add_argument("--out", default="docs/ablation")
    ap.add_argument("--val-pairs", type=int, default=32)
    ap.add_argument("--profile-steps", type=int, default=5)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for run in sorted(glob.glob(os.path.join(a.runs, "*", "config.json"))):
        run = os.path.dirname(run)
        name = os.path.basename(run)
        ck = find_checkpoints(run)
        if not ck:
            print(f"{run}: no checkpoint, skipped", file=sys.stderr)
            continue
        cfg = load_config(os.path.join(run, "config.json"))
        cfg.val_pairs = a.val_pairs
        import hmore

        model = hmore.get_model("hmore", weights=ck[0][1]).eval()
        sets = validation_sets(cfg, cfg.model_config())
        t0 = time.perf_counter()
        val = validate(model, sets, torch.device("cpu"))
        summary = _log_summary(run)
        results[name] = {**summary, "checkpoint_step": ck[0][0], "pairs_seen": ck[0][0] * cfg.batch_size, **val,
                         "val_seconds": time.perf_counter() - t0, "profile_ms": profile_step(cfg, a.profile_steps),
                         "model": cfg.model_config().to_dict(), "synthetic": cfg.synthetic,
                         "data": cfg.warmup_data, "prior": cfg.prior}
        print(name, json.dumps({k: v for k, v in results[name].items() if k.startswith("val_")}), file=sys.stderr)
    if results:  # the classical references on the same val pairs
        from hmore.evaluation.metrics import body_flow_counts, leakage_counts, map_iou_counts
        from hmore.evaluation.runners import _Runner

        for method in ("dis_medium", "dis_mediapipe"):
            r = {"checkpoint_step": 0, "pairs_seen": 0, "cpu_seconds": float("nan"),
                 "profile_ms": {"step": float("nan"), "data_share": float("nan")}}
            for set_name, b in sets.items():
                run = _Runner(method)
                world, _, smap = run(b)
                c = body_flow_counts(world, b["world_flow"], b["flow_valid"] & b["mask0"])
                ls, lp = leakage_counts(world, b["mask0"])
                r[f"val_{set_name}_epe"] = c["epe_sum"] / max(c["pixels"], 1)
                r[f"val_{set_name}_leakage"] = ls / max(lp, 1)
                if smap is None:
                    r[f"val_{set_name}_iou"] = float("nan")
                else:
                    i, u = map_iou_counts(smap, b["mask0"])
                    r[f"val_{set_name}_iou"] = i / u if u else 1.0
            results[method] = r
    header = ("recipe", "steps", "pairs seen", "CPU s", "val syn EPE", "val syn leak", "val syn IoU", "val photo EPE",
              "val photo leak", "val photo IoU", "step ms", "data %")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        p = r["profile_ms"]
        lines.append("| " + " | ".join([
            name, str(r["checkpoint_step"]), str(r["pairs_seen"]), f"{r.get('cpu_seconds', float('nan')):.0f}",
            f"{r['val_synthetic_epe']:.3f}", f"{r['val_synthetic_leakage']:.3f}", f"{r['val_synthetic_iou']:.3f}",
            f"{r['val_photos_epe']:.3f}", f"{r['val_photos_leakage']:.3f}", f"{r['val_photos_iou']:.3f}",
            f"{p['step']:.0f}", f"{100 * p['data_share']:.0f}"]) + " |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(a.out, exist_ok=True)
    from hmore.provenance import git_commit

    atomic_write_json(os.path.join(a.out, "ablation.json"), {"commit": git_commit(), "val_pairs": a.val_pairs,
                                                             "runs": results})
    atomic_write_bytes(os.path.join(a.out, "ablation.md"), (table + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
