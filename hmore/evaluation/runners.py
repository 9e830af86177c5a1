"""The methods ``hmore eval`` compares, the model loader, and the evaluation of each split: the synthetic and
real-photo test splits (exact ground truth) and annotated real clips; :func:`run_eval` is the command itself
(its parser is in :mod:`hmore.cli`). Definitions: :mod:`hmore.evaluation` and :data:`.metrics.DEFINITIONS`."""
from __future__ import annotations

import os
import platform
import sys
import time

import cv2
import numpy as np
import torch

import hmore_kernels as hk

from ..data._io import check_out_dir
from ..provenance import git_commit, machine
from ..models.classical import DIS_PRESETS as _DIS_PRESETS, classical_flow, gray_u8 as _gray_u8
from .metrics import (BOUNDARY_TOLERANCE, DEFINITIONS, EDGE_THRESHOLD, LEAKAGE_DILATION, SEGMENTER_THRESHOLD,
                      body_flow_counts, boundary_counts, classical_local_flow, f_score, flow_edge_map, leakage_counts,
                      map_iou_counts, skeleton_satisfaction_counts)
from .report import format_table, write_results

__all__ = ["DEFAULT_METHODS", "METHODS", "REAL_METHODS", "classical_flow", "load_model", "evaluate_synthetic",
           "evaluate_photos", "evaluate_real", "run_eval"]

# "hmore" runs the model as shipped (with MediaPipe's person prior when the model takes one);
# "hmore_frames_only" runs it on the frames alone, as the paper does (only for a model with a person prior);
# "dis_mediapipe" is the pipeline a user would build instead: DIS medium flow inside MediaPipe's selfie mask
DEFAULT_METHODS = ("hmore", "hmore_frames_only", "dis_ultrafast", "dis_fast", "dis_medium", "dis_mediapipe",
                   "farneback", "zero")
# "gt" (the ground truth itself) is not a default: it is the ceiling of each metric's definition (EPE 0, and
# the boundary F-score that exact flow reaches under the edge threshold), useful to read the others against
METHODS = DEFAULT_METHODS + ("gt",)
REAL_METHODS = ("hmore", "hmore_frames_only", "dis_medium", "dis_mediapipe")
_MODEL_METHODS = ("hmore", "hmore_frames_only")


# ------------------------------------------------------------------------------------------ methods
def _check_methods(methods, allowed, name="methods") -> tuple[str, ...]:
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)) or not methods:
        raise ValueError(f"{name}: expected a non-empty list of method names from {allowed}, got {methods!r}")
    for m in methods:
        if m not in allowed:
            raise ValueError(f"{name}: unknown method {m!r}; available: {', '.join(allowed)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"{name}: a method is listed twice in {list(methods)}")
    return tuple(methods)


class _Runner:
    """Computes ``(world, local, person map or None)`` (``[B, 2, H, W]`` x2, ``[B, 1, H, W]`` bool) on the CPU for
    one method, timing the flow part (a person prior the method needs, MediaPipe's, is part of its time)."""

    def __init__(self, method: str, model=None, device="cpu", iters=None):
        self.method, self.model, self.device, self.iters = method, model, torch.device(device), iters
        self.dis = cv2.DISOpticalFlow_create(_DIS_PRESETS["dis_medium" if method == "dis_mediapipe" else method]) \
            if method in _DIS_PRESETS or method == "dis_mediapipe" else None
        self.seconds, self.pairs = 0.0, 0

    def timing(self) -> dict:
        return {"seconds": self.seconds,
                "pairs_per_s": self.pairs / self.seconds if self.seconds > 0 else float("inf")}

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, batch: dict, timed: bool = True):
        f0, f1 = batch["frame0"], batch["frame1"]
        t0 = time.perf_counter()
        smap = None
        if self.method in _MODEL_METHODS:
            kw = {}
            if self.method == "hmore" and self.model.config.person_prior:
                from ..data.segment import batch_person_prior

                kw["prior"] = batch_person_prior(f0).to(self.device)
            with torch.inference_mode():
                out = self.model(f0.to(self.device), f1.to(self.device), iters=self.iters, **kw)
                world = out["world_flow"].float().cpu()
                local = out["local_flow"].float().cpu()
                smap = out["subject_map"].float().cpu() > SEGMENTER_THRESHOLD
        elif self.method == "zero":
            world = torch.zeros(f0.shape[0], 2, *f0.shape[2:])
            local = world
        elif self.method == "gt":
            world, local, smap = batch["world_flow"], batch["local_flow"], batch["mask0"].bool()
        else:
            g0, g1 = _gray_u8(f0), _gray_u8(f1)
            flow = "dis_medium" if self.method == "dis_mediapipe" else self.method
            world = torch.from_numpy(np.stack([classical_flow(flow, a, b, self.dis) for a, b in zip(g0, g1)]))
            world = world.permute(0, 3, 1, 2).contiguous()
            local = None
            if self.method == "dis_mediapipe":
                from ..data.segment import batch_person_prior

                smap = batch_person_prior(f0) > SEGMENTER_THRESHOLD
                m = smap.float()
                v_s = (world * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1.0)
                world = world * m
                local = (world - v_s[:, :, None, None]) * m
        self._sync()
        if timed:
            self.seconds += time.perf_counter() - t0
            self.pairs += f0.shape[0]
        if local is None:  # outside the timer: the compensation is part of the metric's definition, not the method
            local = classical_local_flow(world)
        return world, local, smap


def load_model(weights="default", device="cpu", **overrides):
    """The H-MoRe model for evaluation, on ``device`` (in eval mode, unless a module was passed: the evaluation
    functions switch it to eval mode and back).

    weights: an ``nn.Module`` (used as is), ``"default"`` (the weights shipped with the package, through
    ``hmore.get_model("hmore", weights="default")``), ``"none"`` / None (random initialisation), or the path of
    a checkpoint / weights file. Returns ``(model, info)``, info = ``{"weights", "step", "sha256", "parameters",
    "iters_default"}`` (a module passed in: ``"weights": "<module>"``, no step). Pass both on to the evaluation
    functions (``evaluate_synthetic(model, model_info=info)``) so the results record the weights.
    """
    import hmore

    info = {"weights": None, "step": None}
    if isinstance(weights, torch.nn.Module):
        model = weights
        info["weights"] = "<module>"  # where it came from is the caller's to say (model_info=)
    elif weights is None or weights == "none":
        model = hmore.get_model("hmore", **overrides)
        info["weights"] = "none (random initialisation)"
    elif weights == "default":
        try:
            model = hmore.get_model("hmore", weights="default", **overrides)
        except FileNotFoundError as e:
            raise ValueError(f"weights: the shipped weights ('default') are not available in this install ({e}); "
                             "pass a checkpoint path (e.g. runs/x/checkpoints/step_*.pt) or 'none'") from None
        info["weights"] = "default"
        from ..models import default_weights

        man = default_weights()[1]
        info["step"] = man.get("trained", {}).get("step")  # the manifest records it
        info["sha256"] = man.get("sha256")
    elif isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(f"weights: {path}: no such file (expected 'default', 'none' or a checkpoint path)")
        model = hmore.get_model("hmore", weights=path, **overrides)
        info["weights"] = os.path.abspath(path)
        from ..data._io import sha256_file

        info["sha256"] = sha256_file(path)
        try:  # the training step, for the record; weights files without one are fine
            ck = torch.load(path, map_location="cpu", weights_only=True)
            info["step"] = int(ck["step"]) if isinstance(ck, dict) and "step" in ck else None
        except Exception:
            pass
    else:
        raise TypeError(f"weights: expected an nn.Module, 'default', 'none' or a file path, got {type(weights).__name__}")
    model = model.to(device)
    if not isinstance(weights, torch.nn.Module):  # a module passed in keeps its mode; evaluation sets it
        model.eval()
    info["parameters"] = sum(p.numel() for p in model.parameters())
    cfg = getattr(model, "config", None)
    info["iters_default"] = getattr(cfg, "iters", None)
    return model, info


def _resolve_model(model, model_info, methods, device):
    """``(model, info, methods)``: the model when a model method is asked for, its record (``model_info``, what
    :func:`load_model` returned with the module, over what the module itself tells), and the methods to run
    ("hmore_frames_only" is dropped for a model without a person prior: it would be "hmore" again)."""
    if model_info is not None:
        if not isinstance(model_info, dict):
            raise ValueError(f"model_info: expected the dict load_model returned, got {type(model_info).__name__}")
        if not isinstance(model, torch.nn.Module):
            raise ValueError("model_info: only with a module as the model (the info load_model returned with it); "
                             f"a {type(model).__name__} model is loaded here and recorded as such")
    if not any(m in methods for m in _MODEL_METHODS):
        return None, None, methods
    net, info = load_model("default" if model is None else model, device)
    if model_info is not None:
        info = {**info, **model_info}
    if not net.config.person_prior:
        methods = tuple(m for m in methods if m != "hmore_frames_only")
    return net, info, methods


def _check_int(v, name, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    return int(v)


def _check_iters(iters):
    return None if iters is None else _check_int(iters, "iters", 1)


def _environment(device) -> dict:
    return {"torch": torch.__version__, "opencv": cv2.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "device": str(device), "torch_threads": torch.get_num_threads(), "opencv_threads": cv2.getNumThreads(),
            "machine": machine(device), "commit": git_commit()}


class _Progress:
    """A tqdm bar on stderr (none when disabled or tqdm is missing) that also puts ``net`` back in training
    mode on exit if it was in it (evaluation switches it to eval mode)."""

    def __init__(self, total, desc, enabled, net=None):
        self.bar, self.net = None, net
        self.was_training = net is not None and net.training
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="pair", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass
        if net is not None:
            net.eval()

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        if self.was_training:
            self.net.train()


def _stack(items: list, keys) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in keys}


# ------------------------------------------------------------------------------------------ synthetic
class _SyntheticTotals:
    def __init__(self):
        self.world = {"epe_sum": 0.0, "pixels": 0, "lt1": 0, "lt3": 0}
        self.local_sum = 0.0
        self.leak_sum, self.leak_px = 0.0, 0
        self.bnd = {"edge_matched": 0, "edge_pixels": 0, "boundary_matched": 0, "boundary_pixels": 0}
        self.inter = self.union = 0
        self.has_map = False

    def update(self, world, local, batch, boundary, edge_threshold, tolerance, dilation, smap=None):
        if smap is not None:
            self.has_map = True
            i, u = map_iou_counts(smap, batch["mask0"])
            self.inter += i
            self.union += u
        for k, v in body_flow_counts(world, batch["world_flow"], batch["flow_valid"]).items():
            self.world[k] += v
        self.local_sum += body_flow_counts(local, batch["local_flow"], batch["flow_valid"])["epe_sum"]
        s, n = leakage_counts(world, batch["mask0"], dilation)
        self.leak_sum += s
        self.leak_px += n
        for k, v in boundary_counts(flow_edge_map(world, edge_threshold), boundary, tolerance).items():
            self.bnd[k] += v

    def result(self) -> dict:
        n = self.world["pixels"]
        nan = float("nan")
        p, r, f = f_score(self.bnd)
        return {"world_epe": self.world["epe_sum"] / n if n else nan, "local_epe": self.local_sum / n if n else nan,
                "px1": self.world["lt1"] / n if n else nan, "px3": self.world["lt3"] / n if n else nan,
                "background_leakage": self.leak_sum / self.leak_px if self.leak_px else nan,
                "boundary_precision": p, "boundary_recall": r, "boundary_f": f,
                "map_iou": (self.inter / self.union if self.union else 1.0) if self.has_map else nan,
                "body_pixels": n, "background_pixels": self.leak_px, **self.bnd}


def evaluate_synthetic(model=None, *, model_info: dict | None = None, pairs: int = 200, size=(256, 256),
                       seed_base: int = 0, methods=DEFAULT_METHODS, device="cpu", batch_size: int = 4,
                       iters: int | None = None, progress: bool = True,
                       edge_threshold: float = EDGE_THRESHOLD, tolerance: float = BOUNDARY_TOLERANCE,
                       dilation: int = LEAKAGE_DILATION) -> dict:
    """Evaluate H-MoRe and classical flow on the synthetic test split (see :mod:`hmore.evaluation`).

    Args:
        model: an ``HMoRe`` module, ``"default"`` / None (the shipped weights), ``"none"`` (random init) or a
            checkpoint path; only used when ``"hmore"`` is in ``methods``. It is moved to ``device`` and put in
            eval mode.
        model_info: with a module, the ``info`` :func:`load_model` returned with it (``model, info =
            load_model(weights)``), recorded under ``"model"`` (weights, step, checksum); without it a module is
            recorded as ``{"weights": "<module>"}``.
        pairs: number of test pairs (>= 1; default 200): seeds ``SPLIT_SEED_OFFSET["test"] + seed_base + i``.
        size: ``(H, W)`` of the rendered frames (>= 64 each when "hmore" runs; default (256, 256)).
        seed_base: first seed within the test split's range (default 0).
        methods: subset of :data:`METHODS` (default :data:`DEFAULT_METHODS`; "gt" = the ground truth, a ceiling).
        device: where H-MoRe runs ("cpu", "cuda", ...); classical methods run on the CPU.
        batch_size: pairs per model call (default 4); iters: H-MoRe's refinement iterations (default: its config's).
        progress: a tqdm bar on stderr. edge_threshold, tolerance, dilation: the metric parameters
            (:data:`EDGE_THRESHOLD` px/px, :data:`BOUNDARY_TOLERANCE` px, :data:`LEAKAGE_DILATION` px).
    Returns: ``{"kind": "synthetic", "methods": {name: {world_epe, local_epe, px1, px3, background_leakage,
    boundary_precision, boundary_recall, boundary_f, map_iou, pairs_per_s, seconds, ...}}, "settings", "config",
    "model", "definitions", "environment"}``; rates are fractions in [0, 1], EPEs and leakage in px.
    """
    from ..data.synthetic import SyntheticConfig, SyntheticPairs

    H, W = _check_size(size, methods)
    cfg = SyntheticConfig(height=H, width=W)  # defaults: pan/zoom camera, 1-3 distractors, all five motions
    seed_base = _check_int(seed_base, "seed_base", 0)
    res = _evaluate_split("synthetic", lambda n: SyntheticPairs("test", n, cfg, seed_base), model, model_info,
                          pairs=pairs,
                          size=(H, W), methods=methods, device=device, batch_size=batch_size, iters=iters,
                          progress=progress, edge_threshold=edge_threshold, tolerance=tolerance, dilation=dilation)
    import dataclasses

    from ..data.synthetic import SPLIT_SEED_OFFSET

    res["settings"].update(seed_base=seed_base, first_seed=SPLIT_SEED_OFFSET["test"] + seed_base)
    res["config"] = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return res


def evaluate_photos(model=None, *, model_info: dict | None = None, pairs: int = 200, size=(256, 256),
                    methods=DEFAULT_METHODS, device="cpu", batch_size: int = 4, iters: int | None = None,
                    progress: bool = True,
                    edge_threshold: float = EDGE_THRESHOLD, tolerance: float = BOUNDARY_TOLERANCE,
                    dilation: int = LEAKAGE_DILATION) -> dict:
    """The real-photo test split: photographs of people (the held-out test photos only: astronaut,
    grace_hopper, carphone frames) cut out and composited over held-out background photos, moved rigidly
    and deformed non-rigidly over a panning, zooming background, with exact flow by construction
    (:class:`hmore.data.photos.PhotoPairs`, role "test"). Same metrics, arguments and result layout as
    :func:`evaluate_synthetic` (``"kind": "photos"``)."""
    from ..data.photos import PhotoPairs

    H, W = _check_size(size, methods)
    return _evaluate_split("photos", lambda n: PhotoPairs("test", n, H, W), model, model_info, pairs=pairs,
                           size=(H, W), methods=methods, device=device, batch_size=batch_size, iters=iters,
                           progress=progress, edge_threshold=edge_threshold, tolerance=tolerance, dilation=dilation)


def _check_size(size, methods) -> tuple[int, int]:
    from ..models import MIN_SIZE

    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        raise ValueError(f"size: expected (H, W), got {size!r}")
    lo = MIN_SIZE if any(m in methods for m in _MODEL_METHODS) else 32
    H, W = (_check_int(v, "size", lo) for v in size)
    return H, W


def _evaluate_split(kind, make_dataset, model, model_info, *, pairs, size, methods, device, batch_size, iters, progress,
                    edge_threshold, tolerance, dilation) -> dict:
    methods = _check_methods(methods, METHODS)
    pairs = _check_int(pairs, "pairs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    iters = _check_iters(iters)
    H, W = size
    ds = make_dataset(pairs)
    net, info, methods = _resolve_model(model, model_info, methods, device)
    runners = {m: _Runner(m, net, device, iters) for m in methods}
    totals = {m: _SyntheticTotals() for m in methods}
    keys = ("frame0", "frame1", "world_flow", "local_flow", "flow_valid", "mask0", "occlusion")
    render_s = 0.0
    occluded = body = 0  # how much occlusion the split holds, for the record
    with _Progress(pairs, f"eval {kind} {W}x{H}", progress, net) as bar:
        for start in range(0, pairs, batch_size):
            t0 = time.perf_counter()
            batch = _stack([ds[i] for i in range(start, min(start + batch_size, pairs))], keys)
            render_s += time.perf_counter() - t0
            occluded += int((batch["occlusion"] & batch["flow_valid"]).sum())
            body += int(batch["flow_valid"].sum())
            boundary = hk.mask_boundary(batch["mask0"], "inner", 1)
            for m in methods:
                if start == 0:
                    runners[m](batch, timed=False)  # warm-up: first-call allocations and lazy inits
                world, local, smap = runners[m](batch)
                totals[m].update(world, local, batch, boundary, edge_threshold, tolerance, dilation, smap)
            bar.update(batch["frame0"].shape[0])
    res = {m: {**totals[m].result(), **runners[m].timing()} for m in methods}
    return {
        "kind": kind, "methods": res,
        "settings": {"pairs": pairs, "size": [H, W], "split": "test", "batch_size": batch_size,
                     "iters": iters if iters is not None else (info or {}).get("iters_default"),
                     "edge_threshold": edge_threshold, "tolerance": tolerance, "dilation": dilation,
                     "render_seconds": render_s,
                     "occluded_body_share": occluded / body if body else float("nan")},
        "model": info, "definitions": DEFINITIONS, "environment": _environment(device),
    }


# ------------------------------------------------------------------------------------------ real
def evaluate_real(folders, model=None, *, model_info: dict | None = None, methods=REAL_METHODS, device="cpu",
                  batch_size: int = 4, iters: int | None = None, max_pairs: int | None = None, points_per_bone: int = 8,
                  progress: bool = True) -> dict:
    """Skeleton-constraint satisfaction and flow-on-person share on annotated real clips (:mod:`hmore.evaluation`).

    Args:
        folders: a dataset folder written by ``hmore annotate`` (docs/dataset.md), a folder of such folders, or
            a list of either. Pairs are consecutive frames that both have a person (``PairDataset``, no
            augmentation, full frames).
        model, model_info: as in :func:`evaluate_synthetic`. methods: subset of :data:`METHODS` without "gt" (default
            ``("hmore", "dis_medium")``).
        max_pairs: at most this many pairs per clip, evenly spaced over it (default: all).
        points_per_bone: skeleton points per bone (8, as in training).
    Returns: ``{"kind": "real", "clips": [paths], "methods": {name: {"skeleton_satisfaction", "flow_on_person",
    "considered_pixels", "pairs", "pairs_per_s", "seconds", "per_clip": {clip: {...}}}}, "settings", "model",
    "definitions", "environment"}``.
    """
    from ..data.dataset import PairDataset
    from ..data.format import find_datasets
    from ..losses import skeleton_targets

    methods = _check_methods(methods, tuple(m for m in METHODS if m != "gt"))
    batch_size = _check_int(batch_size, "batch_size", 1)
    iters = _check_iters(iters)
    if max_pairs is not None:
        max_pairs = _check_int(max_pairs, "max_pairs", 1)
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    if not isinstance(folders, (list, tuple)) or not folders:
        raise ValueError(f"folders: expected a dataset folder or a non-empty list of them, got {folders!r}")
    clips = []
    for f in folders:
        f = os.fspath(f)
        if not os.path.isdir(f):
            raise ValueError(f"folders: {f}: no such folder (expected a dataset folder written by hmore annotate)")
        try:
            clips += find_datasets(f)
        except ValueError as e:
            raise ValueError(f"folders: {e}") from None
    net, info, methods = _resolve_model(model, model_info, methods, device)
    runners = {m: _Runner(m, net, device, iters) for m in methods}
    zero = {"satisfied": 0, "considered": 0, "on_person": 0.0, "total": 0.0, "pairs": 0, "inter": 0, "union": 0}
    per = {m: {} for m in methods}
    datasets = [PairDataset(c, augment=False) for c in clips]
    index_lists = []
    for ds in datasets:
        n = len(ds)
        idx = list(range(n)) if max_pairs is None or n <= max_pairs else \
            sorted(set(np.linspace(0, n - 1, max_pairs).round().astype(int).tolist()))
        index_lists.append(idx)
    keys = ("frame0", "frame1", "mask0", "keypoints0", "keypoints1", "conf0", "conf1")
    with _Progress(sum(len(i) for i in index_lists), "eval real", progress, net) as bar:
        for clip, ds, idx in zip(clips, datasets, index_lists):
            for m in methods:
                per[m][clip] = dict(zero)
            for start in range(0, len(idx), batch_size):
                batch = _stack([ds[i] for i in idx[start:start + batch_size]], keys)
                pt, pt1, pc = skeleton_targets(batch["keypoints0"], batch["keypoints1"], batch["conf0"], batch["conf1"],
                                               points_per_bone)
                offset, valid = hk.skeleton_offset_map(pt, pt1, pc, batch["mask0"])
                mask = batch["mask0"][:, 0]
                from ..data.segment import batch_person_prior

                selfie = batch_person_prior(batch["frame0"]) > SEGMENTER_THRESHOLD
                for m in methods:
                    if start == 0 and clip == clips[0]:
                        runners[m](batch, timed=False)
                    world, _, smap = runners[m](batch)
                    s, c = skeleton_satisfaction_counts(world, offset, valid)
                    mag = torch.linalg.vector_norm(world.double(), dim=1)
                    acc = per[m][clip]
                    acc["satisfied"] += s
                    acc["considered"] += c
                    acc["on_person"] += float(mag[mask].sum())
                    acc["total"] += float(mag.sum())
                    acc["pairs"] += world.shape[0]
                    if smap is not None:
                        i, u = map_iou_counts(smap, selfie)
                        acc["inter"] += i
                        acc["union"] += u
                bar.update(batch["frame0"].shape[0])

    def summary(a):
        nan = float("nan")
        return {"skeleton_satisfaction": a["satisfied"] / a["considered"] if a["considered"] else nan,
                "flow_on_person": a["on_person"] / a["total"] if a["total"] > 0 else nan,
                "map_iou_selfie": a["inter"] / a["union"] if a["union"] else nan,
                "considered_pixels": a["considered"], "pairs": a["pairs"]}

    res = {}
    for m in methods:
        tot = dict(zero)
        for a in per[m].values():
            for k in tot:
                tot[k] += a[k]
        r = {**summary(tot), **runners[m].timing()}
        r["per_clip"] = {c: summary(a) for c, a in per[m].items()}
        res[m] = r
    return {"kind": "real", "clips": clips, "methods": res,
            "settings": {"batch_size": batch_size, "max_pairs": max_pairs, "points_per_bone": points_per_bone,
                         "iters": iters if iters is not None else (info or {}).get("iters_default")},
            "model": info, "definitions": DEFINITIONS, "environment": _environment(device)}


# ------------------------------------------------------------------------------------------ command line
def run_eval(a) -> int:
    """The ``hmore eval`` command (its options: :func:`hmore.cli.build_parser`): evaluate, print the table, write
    the files. Returns the exit status (0)."""
    check_out_dir(a.out, "--out")
    from ..device import resolve_device

    device = str(resolve_device(a.device, "--device"))
    methods = _check_methods(a.methods, METHODS, "--methods")
    model = info = None
    if any(m in methods for m in _MODEL_METHODS):
        model, info = load_model(a.weights, device)
    results = {"synthetic": evaluate_synthetic(model, model_info=info, pairs=a.pairs, size=tuple(a.size),
                                               seed_base=a.seed_base, methods=methods, device=device,
                                               batch_size=a.batch_size, iters=a.iters, progress=not a.quiet)}
    if isinstance(a.photos, bool) or not isinstance(a.photos, int) or a.photos < 0:
        raise ValueError(f"--photos: expected an int >= 0, got {a.photos!r}")
    if a.photos:
        results["photos"] = evaluate_photos(model, model_info=info, pairs=a.photos, size=tuple(a.size), methods=methods,
                                            device=device, batch_size=a.batch_size, iters=a.iters, progress=not a.quiet)
    if a.real:
        real_methods = tuple(m for m in REAL_METHODS if m in methods)
        if not real_methods:
            raise ValueError(f"--real: needs one of {', '.join(REAL_METHODS)} among --methods, got {list(methods)}")
        results["real"] = evaluate_real(a.real, model, model_info=info, methods=real_methods, device=device,
                                        batch_size=a.batch_size, iters=a.iters, max_pairs=a.real_max_pairs,
                                        progress=not a.quiet)
    print(format_table(results))
    paths = write_results(results, a.out)
    print("wrote " + ", ".join(paths.values()))
    return 0
