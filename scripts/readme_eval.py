"""The README's result tables, rendered from the committed ``hmore eval`` and ``hmore probe`` results.

    python3 scripts/readme_eval.py            # rewrite every generated block in README.md and docs/probe.md
    python3 scripts/readme_eval.py --check    # exit 1 when a block differs from its results file

Blocks: ``<!-- eval:tables:begin/end -->`` (README.md) from ``docs/eval_results/eval.json`` (the weights' step
and SHA-256, the splits, each method's metrics); ``<!-- probe:tables:begin/end -->`` (README.md and
docs/probe.md) from ``docs/probe_results/{action,gait}/probe.json`` (size, clips, seeds, weights, commit,
machine, compute, each method's metrics and their spread over classifier seeds). Every number can be traced
to the run that produced it.
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
PROBE_DOC = os.path.join(ROOT, "docs", "probe.md")
PROBE_RESULTS = os.path.join(ROOT, "docs", "probe_results")
BEGIN, END = "<!-- eval:tables:begin -->", "<!-- eval:tables:end -->"
PROBE_BEGIN, PROBE_END = "<!-- probe:tables:begin -->", "<!-- probe:tables:end -->"

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


PROBE_NAMES = {"rgb": "RGB frames", "dis": "DIS medium flow", "dis_masked": "DIS flow x MediaPipe mask",
               "hmore_world": "H-MoRe world flow", "hmore_world_local": "H-MoRe world + local flow",
               "skeleton_gt": "skeleton, generator's (ceiling)", "skeleton_mediapipe": "skeleton, MediaPipe Pose"}
PROBE_METRICS = {"action": (("acc1", "Acc@1 %"), ("acc5", "Acc@5 %")),
                 "gait": (("rank1_cl", "rank-1 CL %"), ("rank1_bg", "rank-1 BG %"))}
# The target: world-local flows >= 5 points above DIS on both tasks, and above DIS-in-the-mask on gait.
PROBE_TARGETS = {"action": (("dis", 5.0),), "gait": (("dis", 5.0), ("dis_masked", 0.0))}


def _pm(r: dict, k: str) -> str:
    return f"{r[k]:.1f} +- {r['spreads'][k]:.1f}" if k in r else "-"


def render_probe(docs: dict) -> str:
    """The markdown block (without the markers) of the probe results ``{task: probe.json content}``."""
    out = []
    for task in ("action", "gait"):
        d = docs.get(task)
        if not d:
            continue
        st, c, cl = d["settings"], d["compute"], d["clips"]
        seeds = len(st["seeds"])
        if task == "action":
            what = (f"{len(d['classes'])} classes, chance {100 / len(d['classes']):.1f} %; {cl['train']} train / "
                    f"{cl['test']} test clips of unseen subjects and backgrounds")
        else:
            what = (f"{d['classes']} training identities; {cl.get('test_subjects', '?')} test identities: gallery "
                    f"{cl['test_gallery_nm']} `nm` clips, {cl['test_probes_cl']} `cl` and {cl['test_probes_bg']} "
                    f"`bg` probes" + (f", chance {100 / cl['test_subjects']:.1f} %" if cl.get("test_subjects") else ""))
        out.append(f"**{task}** (`hmore probe --task {task} --size {d['size']}`: {what}; {st['frames']} frames at "
                   f"{st['width']}x{st['height']}, inputs {st['input_size']}x{st['input_size']}, {st['epochs']} "
                   f"epochs x {seeds} classifier seeds, mean +- std over seeds; weights SHA-256 "
                   f"`{(d.get('weights_sha256') or '')[:12]}`, commit `{d.get('commit', 'unknown')}`, "
                   f"{c.get('machine', c.get('cpu', '?'))}, {c['torch_threads']} thread(s), "
                   f"{c['seconds_total'] / 3600:.2f} h):\n")
        cols = [(k, h) for k, h in PROBE_METRICS[task] if any(k in r for r in d["methods"].values())]
        out.append("| representation | " + " | ".join(h for _, h in cols) + " |")
        out.append("|---" * (len(cols) + 1) + "|")
        best = {k: max((r[k] for r in d["methods"].values() if k in r), default=None) for k, _ in cols}
        for n, r in d["methods"].items():
            cells = [(f"**{_pm(r, k)}**" if k in r and r[k] == best[k] else _pm(r, k)) for k, _ in cols]
            out.append(f"| {PROBE_NAMES.get(n, n)} (`{n}`) | " + " | ".join(cells) + " |")
        m, main = d["methods"], d["main_metric"]
        if "hmore_world_local" in m:
            verdicts = []
            for base, margin in PROBE_TARGETS[task]:
                if base in m:
                    diff = m["hmore_world_local"][main] - m[base][main]
                    ok = diff >= margin if margin else diff > 0  # "above the mask" is strict
                    want = f">= +{margin:g}" if margin else "> 0"
                    verdicts.append(f"{diff:+.1f} points vs `{base}` (target {want}: {'met' if ok else 'missed'})")
            out.append(f"\nTarget, `hmore_world_local` on {main}: " + "; ".join(verdicts) + ".")
        if c.get("seconds_representations"):
            reps = ", ".join(f"{k} {v / 60:.1f}" for k, v in c["seconds_representations"].items())
            cls = ", ".join(f"{k} {v / 60:.1f}" for k, v in c.get("seconds_classifiers", {}).items())
            out.append(f"\nCompute (minutes): representations {reps}; classifiers ({seeds} seeds each) {cls}.")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def load_probe(folder: str = PROBE_RESULTS) -> dict:
    docs = {}
    for task in ("action", "gait"):
        p = os.path.join(folder, task, "probe.json")
        if os.path.exists(p):
            with open(p) as f:
                docs[task] = json.load(f)
    return docs


def replace_block(text: str, begin: str, end: str, block: str) -> str | None:
    """``text`` with the block between the markers replaced; None when the markers are missing."""
    if begin not in text or end not in text:
        return None
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}{end}{tail}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a generated block is out of sync")
    ap.add_argument("--results", default=RESULTS, help="hmore eval's eval.json")
    ap.add_argument("--probe-results", default=PROBE_RESULTS, help="folder of action/probe.json and gait/probe.json")
    ap.add_argument("--readme", default=README)
    ap.add_argument("--probe-doc", default=PROBE_DOC)
    a = ap.parse_args(argv)
    with open(a.results) as f:
        eval_block = render(json.load(f))
    probe = load_probe(a.probe_results)
    probe_block = render_probe(probe) if probe else None
    status = 0
    for path, blocks in ((a.readme, [(BEGIN, END, eval_block, True), (PROBE_BEGIN, PROBE_END, probe_block, False)]),
                         (a.probe_doc, [(PROBE_BEGIN, PROBE_END, probe_block, False)])):
        with open(path) as f:
            text = f.read()
        new = text
        for begin, end, block, required in blocks:
            if begin not in new and not required:
                continue  # this file does not carry the block (yet)
            if block is None:
                print(f"{path}: has {begin} but {a.probe_results} holds no probe.json", file=sys.stderr)
                return 1
            replaced = replace_block(new, begin, end, block)
            if replaced is None:
                print(f"{path}: no {begin} ... {end} markers", file=sys.stderr)
                return 1
            new = replaced
        if a.check:
            if new != text:
                print(f"{path}: the generated tables differ from their results files; run python3 scripts/readme_eval.py",
                      file=sys.stderr)
                status = 1
            continue
        if new != text:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(new)
            os.replace(tmp, path)
            print(f"{path}: generated tables rewritten")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
