"""Make the package's shipped weights from a checkpoint of ``hmore train``.

    python3 scripts/ship_weights.py runs/cpu/checkpoints/step_00008000.pt [--note "..."]

Writes, atomically:
  hmore/weights/hmore_default.pt     {"model": state_dict (float32), "config": HMoReConfig dict}
  hmore/weights/hmore_default.json   SHA-256, size, config, and how the weights were trained (run config,
                                     steps, wall time and pairs/s from the log, machine, torch version)
  hmore/weights/training/config.json, log.csv   the run's config and full training log, as committed proof
The file holds no optimizer state (that is what keeps it small) and loads with ``weights_only=True``.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hmore.data._io import atomic_write_bytes, atomic_write_json, read_json, sha256_file  # noqa: E402
from hmore.models.hmore import DEFAULT_WEIGHTS  # noqa: E402

MAX_BYTES = 25 * 2**20


def _log_summary(log_path: str, upto: int) -> dict:
    with open(log_path) as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= upto]
    if not rows:
        raise ValueError(f"{log_path}: no logged step <= {upto}")
    secs = [float(r["seconds"]) for r in rows]
    pps = sorted(float(r["pairs_per_s"]) for r in rows if r["pairs_per_s"])
    # wall time: the sum of the gaps between consecutive logged steps, leaving out the gaps across a
    # resume (a gap > 10 min is a pause between sessions, not training)
    gaps = [b - a for a, b in zip(secs, secs[1:]) if 0 < b - a < 600]
    last = rows[-1]
    return {"steps_logged": len(rows), "train_seconds": round(sum(gaps), 1),
            "median_pairs_per_s": pps[len(pps) // 2] if pps else None,
            "final": {k: last[k] for k in last if k not in ("seconds",)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a checkpoint written by hmore train (RUN/checkpoints/step_*.pt)")
    ap.add_argument("--out", default=DEFAULT_WEIGHTS, help="weights file to write")
    ap.add_argument("--machine", default=None, help="what trained it (default: this machine's CPU/GPU)")
    ap.add_argument("--note", default="", help="free text stored in the manifest")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an inference-time HMoReConfig field of the shipped config (e.g. world_gate=hard, iters=4); "
                         "fields that shape the parameters cannot change; recorded in the manifest")
    a = ap.parse_args(argv)
    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        raise SystemExit(f"{a.checkpoint}: not a checkpoint of hmore train")
    from hmore.models import HMoReConfig
    from hmore.train import _parse_value

    changes = {}
    for item in a.set:
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        if k in HMoReConfig.ARCH_FIELDS:
            raise SystemExit(f"--set {k}: shapes the parameters; the checkpoint was trained with {ck['config'].get(k)!r}")
        changes[k] = _parse_value(v)
    if changes:
        try:
            ck["config"] = HMoReConfig.from_dict(ck["config"], "checkpoint config").replace(**changes).to_dict()
        except ValueError as e:
            raise SystemExit(f"--set: {e}") from None
    run = os.path.dirname(os.path.dirname(os.path.abspath(a.checkpoint)))
    run_cfg = read_json(os.path.join(run, "config.json"), "run config")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ck["model"].items()}
    buf = io.BytesIO()
    torch.save({"model": state, "config": ck["config"]}, buf)
    if buf.tell() > MAX_BYTES:
        raise SystemExit(f"weights are {buf.tell() / 2**20:.1f} MiB, over the 25 MiB limit")
    atomic_write_bytes(a.out, buf.getvalue(), fsync=True)
    train_dir = os.path.join(os.path.dirname(a.out), "training")
    os.makedirs(train_dir, exist_ok=True)
    for name in ("config.json", "log.csv"):
        shutil.copyfile(os.path.join(run, name), os.path.join(train_dir, name + ".tmp"))
        os.replace(os.path.join(train_dir, name + ".tmp"), os.path.join(train_dir, name))
    machine = a.machine or (torch.cuda.get_device_name(0) if torch.cuda.is_available() else
                            f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores")
    man = {"file": os.path.basename(a.out), "sha256": sha256_file(a.out), "bytes": os.path.getsize(a.out),
           "parameters": sum(v.numel() for v in state.values()), "config": ck["config"],
           "trained": {"step": int(ck["step"]), "of_steps": run_cfg["steps"], "run_config": run_cfg,
                       "machine": machine, "torch": torch.__version__,
                       **_log_summary(os.path.join(run, "log.csv"), int(ck["step"])),
                       "log": "hmore/weights/training/log.csv", "note": a.note,
                       "config_changes_at_shipping": changes}}
    atomic_write_json(os.path.splitext(a.out)[0] + ".json", man)
    print(f"{a.out}: {man['bytes'] / 2**20:.2f} MiB, step {man['trained']['step']}, sha256 {man['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
