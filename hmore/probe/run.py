"""``hmore probe``: train and score one classifier per representation on labelled synthetic clips.

:func:`run_probe` renders the task's clips (:mod:`hmore.probe.data`), computes or reuses every
representation (:mod:`hmore.probe.features`), trains one classifier per representation and seed with the
same recipe (:mod:`hmore.probe.models`), scores it (:mod:`hmore.probe.metrics`) and writes ``OUT/``:
``probe.json`` (written last), ``probe.csv``, ``probe.png`` (bar chart, spread over seeds as error bars)
and, for actions, ``confusion.png`` (per method, summed over seeds). Every file is written atomically.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import time

import numpy as np

from hmore.data._io import atomic_write_bytes, atomic_write_json, check_out_dir

from ..provenance import git_commit, machine
from . import metrics
from .data import SIZES, TASKS, ProbeSize, clip_specs
from .features import DENSE, FAMILY, METHODS, SKELETON, FeatureCache, default_cache_dir
from .models import embed, predict, prepare_dense, prepare_skeleton, train

__all__ = ["run_probe", "parse_methods", "MAIN_METRIC", "format_table"]

MAIN_METRIC = {"action": "acc1", "gait": "rank1_cl"}


def parse_methods(methods) -> tuple[str, ...]:
    """None/"all" -> every method; else names (a list, or comma-separated strings) checked against METHODS."""
    if methods is None:
        return METHODS
    if isinstance(methods, str):
        methods = [methods]
    names = [m.strip() for item in methods for m in str(item).split(",") if m.strip()]
    if not names or names == ["all"]:
        return METHODS
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise ValueError(f"--methods: unknown method{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
                         f"valid methods: {', '.join(METHODS)} (or 'all')")
    return tuple(dict.fromkeys(names))


def _bar(total: int, desc: str, quiet: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, disable=quiet, file=sys.stderr, leave=False, dynamic_ncols=True)


def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    return device


def run_probe(task: str, out: str, *, methods=None, size: str | ProbeSize = "quick", cache_dir: str | None = None,
              weights: str = "default", device: str = "auto", seed: int = 0, quiet: bool = False) -> dict:
    """Run the probe of ``task`` ("action" or "gait") and write its results to ``out``; returns probe.json's dict."""
    t_start = time.time()
    if task not in TASKS:
        raise ValueError(f"--task: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    methods = parse_methods(methods)
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"--size: unknown size {size!r}; valid sizes: {', '.join(SIZES)}")
        size = SIZES[size]
    check_out_dir(out)
    device = _device(device)
    cache_dir = cache_dir or default_cache_dir()
    check_out_dir(cache_dir, "--cache")
    import torch

    specs = clip_specs(task, size, seed)
    cache = FeatureCache(size, cache_dir, weights=weights, device=device)
    if any(FAMILY[m] == "hmore" for m in methods):
        cache.weights_sha256()  # a bad --weights fails here, before any work

    # ---- representations (cached) -------------------------------------------------------------------
    families = list(dict.fromkeys(FAMILY[m] for m in methods))
    fam_seconds = dict.fromkeys(families, 0.0)
    feats = {m: [] for m in methods}
    bar = _bar(len(specs), f"{task}: representations", quiet)
    for spec in specs:
        for fam in families:
            t = time.time()
            for m in methods:
                if FAMILY[m] == fam:
                    feats[m].append(cache.get(m, spec))
            fam_seconds[fam] += time.time() - t
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()

    train_idx = np.array([i for i, s in enumerate(specs) if s.split == "train"])
    test_idx = np.array([i for i, s in enumerate(specs) if s.split == "test"])
    labels = np.array([s.label for s in specs])
    if task == "action":
        classes = list(size.actions)
        y_train = labels[train_idx]
    else:
        train_subjects = sorted({specs[i].subject for i in train_idx})
        classes = [f"subject_{s}" for s in train_subjects]
        remap = {s: k for k, s in enumerate(train_subjects)}
        y_train = np.array([remap[labels[i]] for i in train_idx])
    nc = len(classes)

    # ---- classifiers ----------------------------------------------------------------------------------
    results, confusions, train_seconds = {}, {}, {}
    bar = _bar(len(methods) * len(size.seeds) * size.epochs, f"{task}: classifiers", quiet)
    torch_threads = torch.get_num_threads()
    for m in methods:
        if m in DENSE:
            x = np.stack([prepare_dense(a, m) for a in feats[m]])
            kind = "dense"
        else:
            x = np.stack([prepare_skeleton(a, size.height) for a in feats[m]])
            kind = "skeleton"
        per_seed: dict[str, list] = {}
        conf = np.zeros((nc, nc), np.int64) if task == "action" else None
        t = time.time()
        for s in size.seeds:
            model = train(kind, x[train_idx], y_train, nc, epochs=size.epochs, batch_size=size.batch_size, lr=size.lr,
                          seed=int(s), device=device, progress=(lambda: bar.update()) if bar is not None else None)
            if task == "action":
                scores = predict(model, x[test_idx], device)
                per_seed.setdefault("acc1", []).append(metrics.accuracy_at_k(scores, labels[test_idx], 1))
                if nc >= 10:
                    per_seed.setdefault("acc5", []).append(metrics.accuracy_at_k(scores, labels[test_idx], 5))
                conf += metrics.confusion(scores.argmax(1), labels[test_idx], nc)
            else:
                e = embed(model, x[test_idx], device)
                cond = np.array([specs[i].condition for i in test_idx])
                ids = labels[test_idx]
                g = cond == "nm"
                for name, c in (("rank1_cl", "cl"), ("rank1_bg", "bg")):
                    if (cond == c).any():
                        per_seed.setdefault(name, []).append(metrics.rank1(e[g], ids[g], e[cond == c], ids[cond == c]))
        train_seconds[m] = time.time() - t
        main = MAIN_METRIC[task]
        r = {k: float(np.mean(v)) for k, v in per_seed.items()}
        r["spread"] = metrics.spread(per_seed[main])
        r["spreads"] = {k: metrics.spread(v) for k, v in per_seed.items()}
        r["per_seed"] = per_seed
        results[m] = r
        if conf is not None:
            confusions[m] = conf
    if bar is not None:
        bar.close()

    doc = {
        "task": task,
        "size": size.name,
        "methods": results,
        "units": "percent",
        "main_metric": MAIN_METRIC[task],
        "classes": classes if task == "action" else len(classes),
        "clips": {"train": int(len(train_idx)), "test": int(len(test_idx)),
                  **({"test_subjects": len({specs[i].subject for i in test_idx}),
                      "test_gallery_nm": int(sum(specs[i].condition == "nm" for i in test_idx)),
                      "test_probes_cl": int(sum(specs[i].condition == "cl" for i in test_idx)),
                      "test_probes_bg": int(sum(specs[i].condition == "bg" for i in test_idx))} if task == "gait" else {})},
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in size.__dict__.items()},
        "dataset_seed": int(seed),
        "commit": git_commit(),
        "weights_sha256": cache.weights_sha256() if "hmore" in families else None,
        "compute": {
            "device": device,
            "machine": machine(device), "torch_threads": torch_threads,
            "seconds_total": round(time.time() - t_start, 1),
            "seconds_representations": {k: round(v, 1) for k, v in fam_seconds.items()},
            "seconds_classifiers": {k: round(v, 1) for k, v in train_seconds.items()},
            "clips_computed": dict(cache.computed), "clips_reused": dict(cache.reused),
        },
    }
    _write_outputs(out, doc, confusions)
    doc["compute"]["seconds_total"] = round(time.time() - t_start, 1)
    atomic_write_json(os.path.join(out, "probe.json"), doc)
    return doc


def format_table(doc: dict) -> str:
    ms = sorted({k for r in doc["methods"].values() for k in r if k not in ("spread", "spreads", "per_seed")},
                key=lambda k: (k != doc["main_metric"], k))
    head = f"{'method':<20}" + "".join(f"{k:>18}" for k in ms)
    lines = [f"hmore probe --task {doc['task']} ({doc['size']}): {doc['clips']['train']} train / "
             f"{doc['clips']['test']} test clips, mean +- std over {len(doc['settings']['seeds'])} seed(s), percent",
             head, "-" * len(head)]
    for name, r in doc["methods"].items():
        lines.append(f"{name:<20}" + "".join(f"{r[k]:>11.1f} +-{r['spreads'][k]:>4.1f}" if k in r else f"{'-':>18}"
                                             for k in ms))
    return "\n".join(lines)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _write_outputs(out: str, doc: dict, confusions: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    names = list(doc["methods"])
    ms = [k for k in doc["methods"][names[0]] if k not in ("spread", "spreads", "per_seed")]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method"] + [c for k in ms for c in (k, f"{k}_spread")])
    for n in names:
        r = doc["methods"][n]
        w.writerow([n] + [c for k in ms for c in (f"{r[k]:.2f}", f"{r['spreads'][k]:.2f}")])
    atomic_write_bytes(os.path.join(out, "probe.csv"), buf.getvalue().encode())

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.6))
    width = 0.8 / len(ms)
    for j, k in enumerate(ms):
        vals = [doc["methods"][n][k] for n in names]
        errs = [doc["methods"][n]["spreads"][k] for n in names]
        ax.bar(np.arange(len(names)) + (j - (len(ms) - 1) / 2) * width, vals, width, yerr=errs, capsize=3, label=k)
    chance = (100.0 / len(doc["classes"]) if doc["task"] == "action"
              else 100.0 / max(1, doc["clips"].get("test_subjects", doc["clips"].get("test_gallery_nm", 1))))
    ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("percent")
    ax.set_ylim(0, 100)
    ax.set_title(f"hmore probe --task {doc['task']} ({doc['size']})")
    ax.legend(fontsize=8)
    atomic_write_bytes(os.path.join(out, "probe.png"), _png(fig))
    plt.close(fig)

    if confusions:
        classes = doc["classes"]
        n = len(confusions)
        cols = min(4, n)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.9 * rows), squeeze=False)
        for ax in axes.flat[n:]:
            ax.axis("off")
        for ax, (name, m) in zip(axes.flat, confusions.items()):
            norm = m / np.maximum(m.sum(1, keepdims=True), 1)
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            ax.set_title(f"{name} ({doc['methods'][name]['acc1']:.0f}%)", fontsize=9)
            ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=6)
            ax.set_yticks(range(len(classes)), classes, fontsize=6)
            ax.set_xlabel("predicted", fontsize=7)
        fig.suptitle(f"action confusion (rows: true class), summed over seeds ({doc['size']})", fontsize=9)
        fig.tight_layout()
        atomic_write_bytes(os.path.join(out, "confusion.png"), _png(fig))
        plt.close(fig)


def main(args) -> int:
    """The CLI's entry (hmore.cli builds the parser)."""
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    size = "quick" if args.quick else args.size
    doc = run_probe(args.task, args.out, methods=args.methods, size=size, cache_dir=args.cache, weights=args.weights,
                    device=args.device, seed=args.seed, quiet=args.quiet)
    print(format_table(doc))
    c = doc["compute"]
    print(f"{args.out}: probe.json, probe.csv, probe.png{', confusion.png' if args.task == 'action' else ''}; "
          f"{c['seconds_total']:.0f} s on {c['device']} (clips computed {c['clips_computed']}, reused {c['clips_reused']})")
    return 0
