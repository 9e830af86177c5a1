"""The README's evaluation tables, rendered from the committed ``hmore eval`` results.

    python3 scripts/readme_eval.py            # rewrite the tables between <!-- eval:tables:begin/end --> in README.md
    python3 scripts/readme_eval.py --check    # exit 1 when README.md differs from docs/eval_results/eval.json

Every number of the block comes from ``docs/eval_results/eval.json`` (the weights' step and SHA-256, the
splits, each method's metrics), so it can be traced to the run that produced it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
RESULTS = os.path.join(ROOT, "docs", "eval_results", "eval.json")
BEGIN, END = "<!-- eval:tables:begin -->", "<!-- eval:tables:end -->"

NAMES = {"hmore": "H-MoRe (shipped)", "hmore_frames_only": "H-MoRe frames only", "dis_ultrafast": "DIS ultrafast",
         "dis_fast": "DIS fast", "dis_medium": "DIS medium", "dis_mediapipe": "DIS x MediaPipe mask",
         "farneback": "Farnebäck", "zero": "zero flow", "gt": "ground truth"}
SPLIT_COLUMNS = (("world_epe", "world EPE px", "{:.3f}", min), ("local_epe", "local EPE px", "{:.3f}", min),
                 ("px1", "px1 %", "pct", max), ("background_leakage", "bg leakage px", "{:.3f}", min),
                 ("boundary_f", "boundary F", "{:.3f}", max), ("map_iou", "map IoU", "{:.3f}", max),
                 ("pairs_per_s", "pairs/s", "{:.1f}", None))
REAL_COLUMNS = (("map_iou_selfie", "map IoU vs selfie mask", "{:.3f}"), ("skeleton_satisfaction", "skeleton sat. %", "pct"),
                ("flow_on_person", "flow on person %", "pct"), ("pairs", "pairs", "{:d}"))


def _fmt(v, f):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{100 * v:.1f}" if f == "pct" else f.format(v)


def render(res: dict) -> str:
    """The markdown block (without the markers) of ``eval.json``'s content."""
    out = []
    for kind, title in (("synthetic", "Synthetic test split"), ("photos", "Real-photo test split")):
        r = res.get(kind)
        if not r:
            continue
        s, m = r["settings"], r.get("model") or {}
        out.append(f"**{title}** ({s['pairs']} pairs, {s['size'][1]}x{s['size'][0]}, body pixels; weights step "
                   f"{m.get('step')}, SHA-256 `{(m.get('sha256') or '')[:12]}`):\n")
        out.append("| method | " + " | ".join(h for _, h, _, _ in SPLIT_COLUMNS) + " |")
        out.append("|---" * (len(SPLIT_COLUMNS) + 1) + "|")
        best = {}
        for k, _, _, pick in SPLIT_COLUMNS:  # bold the best real method (not the ground truth) per column
            vals = [v[k] for n, v in r["methods"].items() if n != "gt" and v.get(k) is not None
                    and math.isfinite(v[k]) and not (n == "zero" and k == "background_leakage")]
            best[k] = pick(vals) if pick and vals else None
        for n, v in r["methods"].items():
            cells = []
            for k, _, f, _ in SPLIT_COLUMNS:
                c = _fmt(v.get(k), f)
                cells.append(f"**{c}**" if best[k] is not None and v.get(k) == best[k] else c)
            out.append(f"| {NAMES.get(n, n)} | " + " | ".join(cells) + " |")
        out.append("")
    real = res.get("real")
    if real:
        clips = ", ".join(os.path.basename(os.path.normpath(c)) for c in real["clips"])
        out.append(f"**Real clips** ({clips}; annotated by `hmore annotate`, no ground-truth flow):\n")
        out.append("| clip | method | " + " | ".join(h for _, h, _ in REAL_COLUMNS) + " |")
        out.append("|---" * (len(REAL_COLUMNS) + 2) + "|")
        for n, v in real["methods"].items():
            for c, a in v["per_clip"].items():
                out.append(f"| {os.path.basename(os.path.normpath(c))} | {NAMES.get(n, n)} | "
                           + " | ".join(_fmt(a.get(k), f) for k, _, f in REAL_COLUMNS) + " |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is out of sync")
    ap.add_argument("--results", default=RESULTS)
    ap.add_argument("--readme", default=README)
    a = ap.parse_args(argv)
    with open(a.results) as f:
        block = render(json.load(f))
    with open(a.readme) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        print(f"{a.readme}: no {BEGIN} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{block}{END}{tail}"
    if a.check:
        if new != text:
            print(f"{a.readme}: the evaluation tables differ from {a.results}; run python3 scripts/readme_eval.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = a.readme + ".tmp"
        with open(tmp, "w") as f:
            f.write(new)
        os.replace(tmp, a.readme)
        print(f"{a.readme}: evaluation tables rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
