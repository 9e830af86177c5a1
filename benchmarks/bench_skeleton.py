"""Benchmark of the skeleton family (docs/ops.md §4) against the PyTorch reference.

    python -m benchmarks.bench_skeleton                    # every op and size, all backends here
    python -m benchmarks.bench_skeleton --quick --no-save  # smoke: few repeats, the small size only

Inputs are what the skeleton constraint sees in training: a COCO-17 pose of a standing person filling
~80 % of the image height, its 16 bones x 8 points (Q = 128) with confidences in [0.3, 1] (one joint below
eps, so excluded), and a person-shaped mask made by rasterising thick limbs and a filled torso of that
pose (~10-15 % of the pixels). Sizes B x H x W: 1 and 4 images of 368 x 496 and 1088 x 1920 (B = 4 poses
are jittered copies). Ops: skeleton_match, skeleton_offset_map (fused), skeleton_points (tiny, for
completeness). Impls: cpu / cuda / triton where they run, and "reference" (chunked PyTorch over the mask
pixels). The Triton interpreter is never timed. Each row is the median of repeated runs with its
interquartile range and the speed-up over the reference measured in the same run (x ref); rows are
appended to benchmarks/results/<device>.csv. Target (CPU): cpu >= 5x the reference on every match size.
"""
from __future__ import annotations

import argparse
import math
import sys
import traceback

import torch

import hmore_kernels as hk
from hmore_kernels import _backends
from hmore_kernels.skeleton import COCO17

from . import common

OPS = ("skeleton_match", "skeleton_offset_map", "skeleton_points")
SIZES = ("1x368x496", "4x368x496", "1x1088x1920", "4x1088x1920")
OURS = ("cpu", "cuda", "triton")
MIN_X_REF = 5.0
MODES = {
    "default": dict(warmup=1, min_runs=5, min_time=0.5, max_runs=30, max_time=6.0, floor_runs=3, max_call=20.0),
    "quick": dict(warmup=1, min_runs=3, min_time=0.05, max_runs=5, max_time=0.5, floor_runs=2, max_call=5.0),
}
CSV_FIELDS = ("op", "size", "dtype", "impl", "status", "median_ms", "iqr_ms", "q1_ms", "q3_ms", "p10_ms", "p90_ms",
              "min_ms", "runs", "x_ref", "mask_frac", "mode", "note")

# A standing person in unit coordinates (x right, y down), COCO-17 order.
_POSE = [(0.50, 0.12), (0.52, 0.10), (0.48, 0.10), (0.55, 0.11), (0.45, 0.11),  # nose, eyes, ears
         (0.60, 0.24), (0.40, 0.24), (0.66, 0.40), (0.34, 0.40), (0.70, 0.54), (0.30, 0.55),  # arms
         (0.57, 0.55), (0.43, 0.55), (0.58, 0.73), (0.42, 0.73), (0.59, 0.91), (0.41, 0.91)]  # legs


def person(B: int, H: int, W: int, gen: torch.Generator, device):
    """(joints [B, 17, 2], conf [B, 17], mask bool [B, 1, H, W]): a person centred in the image."""
    s = 0.8 * H  # the pose spans ~80 % of the height, centred
    base = torch.tensor(_POSE, dtype=torch.float64)
    joints, confs, masks = [], [], []
    ys = torch.arange(H, dtype=torch.float32).view(H, 1)
    xs = torch.arange(W, dtype=torch.float32).view(1, W)
    for b in range(B):
        p = base + (torch.rand(17, 2, generator=gen, dtype=torch.float64) - 0.5) * (0.03 if b else 0.0)
        j = torch.stack([(p[:, 0] - 0.5) * s + W / 2, (p[:, 1] - 0.5) * s + H / 2], -1).float()
        c = 0.3 + 0.7 * torch.rand(17, generator=gen)
        c[4] = 0.0  # an occluded ear: excluded by eps
        m = torch.zeros(H, W, dtype=torch.bool)
        r = max(2.0, 0.035 * s)  # limb half-thickness
        for a, e in COCO17.bones:
            (ax, ay), (ex, ey) = j[a].tolist(), j[e].tolist()
            dx, dy = ex - ax, ey - ay
            L2 = max(dx * dx + dy * dy, 1e-6)
            t = (((xs - ax) * dx + (ys - ay) * dy) / L2).clamp(0, 1)
            m |= (xs - ax - t * dx) ** 2 + (ys - ay - t * dy) ** 2 <= r * r
        # torso: between the shoulders and the hips
        x0, x1 = j[[6, 12], 0].min().item(), j[[5, 11], 0].max().item()
        y0, y1 = j[[5, 6], 1].min().item(), j[[11, 12], 1].max().item()
        m |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        # head: a disc around the nose
        hx, hy = j[0].tolist()
        m |= (xs - hx) ** 2 + (ys - hy) ** 2 <= (0.07 * s) ** 2
        joints.append(j)
        confs.append(c)
        masks.append(m)
    return (torch.stack(joints).to(device), torch.stack(confs).to(device),
            torch.stack(masks).unsqueeze(1).to(device))


def _parse_size(s):
    try:
        B, H, W = (int(v) for v in s.split("x"))
        return B, H, W
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: expected BxHxW such as 4x368x496, got {s!r}") from None


def _impls(device, wanted):
    out = []
    for b in wanted:
        if b == "reference":
            out.append(b)
            continue
        why = _backends._reason(b, device)
        if why is None and b == "triton" and device.type == "cpu":
            why = "the Triton interpreter is not timed"
        if why is None:
            out.append(b)
        else:
            print(f"  skipping {b}: {why}", file=sys.stderr)
    return out


def run(args) -> list[dict]:
    device = torch.device(args.device)
    mode = MODES["quick" if args.quick else "default"]
    rows = []
    gen = torch.Generator().manual_seed(0)
    impls = _impls(device, args.backends)
    for size in args.sizes:
        B, H, W = size
        joints, jconf, mask = person(B, H, W, gen, device)
        pts, pconf, _ = hk.skeleton_points(joints, jconf, COCO17, 8, backend="reference")
        pts1 = pts + 2.0
        frac = float(mask.float().mean())
        tag = f"{B}x{H}x{W}"
        calls = {
            "skeleton_match": lambda b: hk.skeleton_match(pts, pconf, mask, backend=b),
            "skeleton_offset_map": lambda b: hk.skeleton_offset_map(pts, pts1, pconf, mask, backend=b),
            "skeleton_points": lambda b: hk.skeleton_points(joints, jconf, COCO17, 8, backend=b),
        }
        for op in args.ops:
            ref_idx = None
            for impl in impls:
                row = {"op": op, "size": tag, "dtype": "float32 (+bool mask)", "impl": impl, "mode": args.mode_name,
                       "mask_frac": round(frac, 4)}
                try:
                    out = calls[op](impl)
                    if op == "skeleton_match":  # the same answer, or the timing is meaningless
                        if ref_idx is None:
                            ref_idx = out
                        elif not torch.equal(out.cpu(), ref_idx.cpu()):
                            raise AssertionError(f"{impl} disagrees with {impls[0]}")
                    times = common.measure(lambda: calls[op](impl), device=device, **mode)
                    row.update(common.summarize(times), status="ok")
                except Exception as e:  # a failing row is reported, the run goes on
                    row.update(status="error", note=f"{type(e).__name__}: {e}"[:200])
                    if args.verbose:
                        traceback.print_exc()
                rows.append(row)
                print(f"  {op:20s} {tag:12s} {impl:9s} {common.fmt(row.get('median_ms'))} ms", file=sys.stderr)
    for r in rows:
        base = next((b for b in rows if b["op"] == r["op"] and b["size"] == r["size"] and b["impl"] == "reference"
                     and b.get("median_ms")), None)
        if base and r.get("median_ms"):
            r["x_ref"] = base["median_ms"] / r["median_ms"]
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help=f"comma-separated BxHxW (default: {','.join(SIZES)})")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated, from {', '.join(OPS)}")
    p.add_argument("--backends", default=None, help="comma-separated (default: reference and every fast backend here)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="few repeats, the smallest size only (unless --sizes)")
    p.add_argument("--no-save", dest="save", action="store_false", default=None)
    p.add_argument("--save", dest="save", action="store_true", help="save even with --quick")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores available)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    sizes = args.sizes.split(",") if args.sizes else (list(SIZES[:1]) if args.quick else list(SIZES))
    args.sizes = [_parse_size(s) for s in sizes]
    args.ops = [o for o in args.ops.split(",") if o]
    for o in args.ops:
        if o not in OPS:
            p.error(f"--ops: unknown op {o!r}; expected some of {', '.join(OPS)}")
    args.backends = args.backends.split(",") if args.backends else ["reference", *OURS]
    args.mode_name = "quick" if args.quick else "default"
    if args.save is None:
        args.save = not args.quick
    threads = common.set_threads(args.threads)
    device = torch.device(args.device)
    meta = common.metadata(device, threads)
    print(f"device: {meta['device']}, threads {threads}, torch {meta['torch']}, commit {meta['commit']}", file=sys.stderr)
    rows = run(args)
    cols = [("op", "op"), ("size", "size"), ("impl", "impl"), ("median_ms", "median ms"), ("iqr_ms", "IQR ms"),
            ("runs", "runs"), ("x_ref", "x ref"), ("mask_frac", "mask"), ("status", "status")]
    common.print_table(rows, cols, right=("median_ms", "iqr_ms", "runs", "x_ref", "mask_frac"))
    if device.type == "cpu":
        for r in rows:
            if r["impl"] == "cpu" and r["op"] in ("skeleton_match", "skeleton_offset_map") and r.get("x_ref"):
                verdict = "PASS" if r["x_ref"] >= MIN_X_REF else "MISS"
                print(f"target cpu >= {MIN_X_REF:g}x reference: {r['op']} {r['size']}: {r['x_ref']:.1f}x {verdict}")
    if args.save:
        out = []
        for r in rows:
            row = {k: r.get(k, "") for k in CSV_FIELDS}
            row = {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in row.items()}
            row.update(meta)
            out.append(row)
        path = common.results_path(device)
        n = common.append_rows(path, out)
        print(f"appended {len(out)} rows to {path} ({n} rows)", file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
