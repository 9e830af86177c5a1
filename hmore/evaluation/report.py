"""The report of ``hmore eval``: the aligned text table, and the files (JSON, CSV per split, a PNG of bar
charts drawn with matplotlib), each written atomically."""
from __future__ import annotations

import csv
import io
import math
import os

import numpy as np

from ..data._io import atomic_write_bytes, atomic_write_json, check_out_dir

__all__ = ["format_table", "write_results"]

# ------------------------------------------------------------------------------------------ writers
_SYN_COLUMNS = (("world_epe", "world EPE", "{:.3f}"), ("local_epe", "local EPE", "{:.3f}"), ("px1", "px1 %", "pct"),
                ("px3", "px3 %", "pct"), ("background_leakage", "bg leak", "{:.3f}"),
                ("boundary_precision", "bnd P", "{:.3f}"), ("boundary_recall", "bnd R", "{:.3f}"),
                ("boundary_f", "bnd F", "{:.3f}"), ("map_iou", "map IoU", "{:.3f}"), ("pairs_per_s", "pairs/s", "{:.1f}"))
_REAL_COLUMNS = (("skeleton_satisfaction", "skeleton sat. %", "pct"), ("flow_on_person", "flow on person %", "pct"),
                 ("map_iou_selfie", "map IoU (selfie)", "{:.3f}"),
                 ("considered_pixels", "pixels", "{:d}"), ("pairs", "pairs", "{:d}"), ("pairs_per_s", "pairs/s", "{:.1f}"))


# the splits with exact ground truth, in table order: (results key, title)
_SPLITS = (("synthetic", "Synthetic test split"), ("photos", "Real-photo test split (held-out photos, exact flow)"))


def _fmt(v, f):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-" if v is None or math.isnan(v) else str(v)
    return f"{100 * v:.1f}" if f == "pct" else f.format(v)


def _aligned(header, rows) -> str:
    w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w[0]) if i == 0 else str(x).rjust(w[i]) for i, x in enumerate(r))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * n for n in w)] + [line(r) for r in rows])


def _real_rows(res):
    rows = []
    for m, r in res["methods"].items():
        for c, a in r["per_clip"].items():
            rows.append((os.path.basename(os.path.normpath(c)), m, a))
        if len(r["per_clip"]) > 1:
            rows.append(("all", m, r))
    return rows


def format_table(results: dict) -> str:
    """Aligned text tables of ``{"synthetic": ..., "real": ...}`` (either may be missing)."""
    out = []
    for kind, title in _SPLITS:
        syn = results.get(kind)
        if not syn:
            continue
        s = syn["settings"]
        out.append(("\n" if out else "") +
                   f"{title}: {s['pairs']} pairs {s['size'][1]}x{s['size'][0]} (H-MoRe iters {s['iters']}, "
                   f"weights {(syn['model'] or {}).get('weights')}, step {(syn['model'] or {}).get('step')}; "
                   f"{_fmt(s.get('occluded_body_share'), 'pct')} % of body pixels occluded in t+1)")
        rows = [[m] + [_fmt(r.get(k), f) for k, _, f in _SYN_COLUMNS] for m, r in syn["methods"].items()]
        out.append(_aligned(["method"] + [h for _, h, _ in _SYN_COLUMNS], rows))
    real = results.get("real")
    if real:
        out.append(("\n" if out else "") + f"Real clips ({len(real['clips'])}):")
        rows = [[c, m] + [_fmt(a.get(k), f) if k in a else _fmt(real["methods"][m].get(k), f) for k, _, f in _REAL_COLUMNS]
                for c, m, a in _real_rows(real)]
        out.append(_aligned(["clip", "method"] + [h for _, h, _ in _REAL_COLUMNS], rows))
    return "\n".join(out)


def _csv_bytes(header, rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None  # strict JSON has no NaN/Infinity
    if isinstance(x, (np.integer, np.floating)):
        return _json_safe(x.item())
    return x


def _chart_panels(results) -> list[tuple[str, list[str], list[float]]]:
    panels = []
    for kind, _ in _SPLITS:
        syn = results.get(kind)
        if not syn:
            continue
        ms = list(syn["methods"])
        for key, title in (("world_epe", "world EPE (px), lower is better"), ("local_epe", "local EPE (px), lower is better"),
                           ("background_leakage", "background leakage (px), lower is better"),
                           ("boundary_f", "boundary F-score, higher is better"), ("map_iou", "person map IoU, higher is better")):
            panels.append((f"{kind}: {title}", ms, [syn["methods"][m][key] for m in ms]))
    real = results.get("real")
    if real:
        ms = list(real["methods"])
        for key, title in (("skeleton_satisfaction", "real: skeleton satisfaction"), ("flow_on_person", "real: flow on person")):
            panels.append((title, ms, [real["methods"][m][key] for m in ms]))
    return panels


def _chart_png(panels) -> bytes:
    """A row of bar charts as PNG bytes, drawn with matplotlib (pinned in requirements-dev.txt)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError(f"the evaluation chart needs matplotlib ({e}); install it: pip install matplotlib") from None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, names, vals) in zip(axes[0], panels):
        v = [x if x is not None and math.isfinite(x) else 0.0 for x in vals]
        bars = ax.bar(range(len(names)), v, color=["#d62728" if n == "hmore" else "#7f7f7f" for n in names])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_results(results: dict, out_dir: str, prefix: str = "eval") -> dict:
    """Write ``{"synthetic": ..., "real": ...}`` to ``out_dir``, every file atomically: ``<prefix>.json`` (all of
    it, NaN written as null), ``<prefix>_synthetic.csv`` / ``<prefix>_real.csv`` (one row per method, or per clip
    and method), ``<prefix>.png`` (bar charts of the main metrics). Returns ``{kind: path}``."""
    out_dir = os.fspath(out_dir)
    check_out_dir(out_dir, "out")
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    p = os.path.join(out_dir, f"{prefix}.json")
    atomic_write_json(p, _json_safe(results))
    paths["json"] = p
    for kind, _ in _SPLITS:
        syn = results.get(kind)
        if not syn:
            continue
        keys = [k for k, _, _ in _SYN_COLUMNS]
        rows = [[m] + [r.get(k) for k in keys] for m, r in syn["methods"].items()]
        p = os.path.join(out_dir, f"{prefix}_{kind}.csv")
        atomic_write_bytes(p, _csv_bytes(["method"] + keys, rows))
        paths[f"csv_{kind}"] = p
    real = results.get("real")
    if real:
        keys = [k for k, _, _ in _REAL_COLUMNS]
        rows = [[c, m] + [a.get(k, real["methods"][m].get(k)) for k in keys] for c, m, a in _real_rows(real)]
        p = os.path.join(out_dir, f"{prefix}_real.csv")
        atomic_write_bytes(p, _csv_bytes(["clip", "method"] + keys, rows))
        paths["csv_real"] = p
    panels = _chart_panels(results)
    if panels:
        p = os.path.join(out_dir, f"{prefix}.png")
        atomic_write_bytes(p, _chart_png(panels))
        paths["png"] = p
    return paths
