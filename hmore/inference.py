"""Inference: H-MoRe on a video, a folder of frames or two images, and the ``hmore infer`` writer.

``hmore.infer(inputs, ...)`` yields one :class:`PairResult` per consecutive pair of frames, running the
model on batches of pairs. :func:`infer_to_folder` (``hmore infer``) writes the results to a folder:

    world/000000.flo, local/000000.flo        Middlebury .flo (or KITTI 16-bit .png with kitti=True)
    world_color/000000.png, local_color/...   colour-wheel PNGs (one max_flow for the whole run)
    subject_map/000000.png                    the subject map, 8-bit grey
    subject_motion.csv                        pair, v_s x, v_s y (px)
    panels.mp4                                frame | world flow | local flow | subject map, with a key
    infer.json                                inputs, settings, weights checksum, pairs done, pairs/s

Every file is written atomically. ``infer.json`` is rewritten after every batch, so a killed run resumes
from the pairs whose files are all on disk (same inputs and settings, else a clear error).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

__all__ = ["FrameSource", "PairResult", "Predictor", "infer", "infer_to_folder", "IMAGE_EXTS", "VIDEO_EXTS"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv")
INFER_FORMAT = 1


# ------------------------------------------------------------------------------------------ frames
class FrameSource:
    """The frames of a video file, a folder of images (sorted by name) or a list of image files.

    Args:
        inputs: a path (video file, image folder, or one image: an error, a pair needs two) or a sequence
            of image paths (two images = one pair).
        max_frames: read at most this many frames (None: all).
    Iterating yields RGB ``uint8 [H, W, 3]`` frames. Opening checks what can be checked without decoding
    everything (the file exists and opens, the first frame decodes, its size is >= ``min_size``); a frame
    of another size or one that fails to decode raises ``ValueError`` naming the file and frame.
    """

    def __init__(self, inputs, max_frames: int | None = None, min_size: int = 64):
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 2):
            raise ValueError(f"max_frames: expected None or an int >= 2 (a pair needs two frames), got {max_frames!r}")
        self.max_frames, self.min_size = max_frames, min_size
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [os.fspath(inputs)]
        inputs = [os.fspath(p) for p in inputs]
        if not inputs:
            raise ValueError("inputs: empty; give a video, a folder of frames or two images")
        for p in inputs:
            if not os.path.exists(p):
                raise FileNotFoundError(f"{p}: no such file or folder")
            if os.path.isfile(p) and os.path.getsize(p) == 0:
                raise ValueError(f"{p}: is empty (0 bytes)")
        if len(inputs) == 1 and os.path.isdir(inputs[0]):
            self.kind, self.name = "folder", inputs[0]
            files = sorted(f for f in os.listdir(inputs[0]) if f.lower().endswith(IMAGE_EXTS) and not f.startswith("."))
            if len(files) < 2:
                raise ValueError(f"{inputs[0]}: a folder of frames needs at least 2 images ({'/'.join(IMAGE_EXTS)}); "
                                 f"found {len(files)}")
            self.files = [os.path.join(inputs[0], f) for f in files]
        elif len(inputs) == 1 and not inputs[0].lower().endswith(IMAGE_EXTS):
            self.kind, self.name, self.files = "video", inputs[0], []
        else:
            for p in inputs:
                if os.path.isdir(p):
                    raise ValueError(f"{p}: a folder; give one folder alone, or image files")
            if len(inputs) < 2:
                raise ValueError(f"{inputs[0]}: one image makes no pair; give two images, a folder or a video")
            self.kind, self.name, self.files = "images", inputs[0], inputs
        if self.max_frames is not None and self.files:
            self.files = self.files[:self.max_frames]
        frames = self._frames()
        first = next(frames, None)
        frames.close()  # releases the video decoder now, not at garbage collection
        if first is None:
            raise ValueError(f"{self.name}: contains no frames (empty or not a video OpenCV can decode)")
        self.height, self.width = first.shape[:2]
        if min(self.height, self.width) < min_size:
            raise ValueError(f"{self.name}: frames are {self.width}x{self.height}; H-MoRe needs at least "
                             f"{min_size}x{min_size} (upscale the input)")
        if self.kind == "video":
            cap = cv2.VideoCapture(self.name)
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 10.0
            cap.release()
            self.num_frames = None if n <= 0 else (n if self.max_frames is None else min(n, self.max_frames))
        else:
            self.num_frames, self.fps = len(self.files), 10.0

    def identity(self) -> dict:
        """What a resumed run must find unchanged: the inputs, their sizes and modification times."""
        files = [self.name] if self.kind == "video" else self.files
        return {"kind": self.kind, "inputs": [os.path.abspath(f) for f in files],
                "stat": [[os.path.getsize(f), int(os.path.getmtime(f))] for f in files],
                "size": [self.height, self.width], "max_frames": self.max_frames}

    def _frames(self) -> Iterator[np.ndarray]:
        if self.kind == "video":
            from .data._io import native_stderr_redirected

            with native_stderr_redirected():  # FFmpeg's own lines ("moov atom not found"); we say it below
                cap = cv2.VideoCapture(self.name)
            if not cap.isOpened():
                raise ValueError(f"{self.name}: cannot be opened as a video (unreadable, or a format OpenCV "
                                 f"cannot decode)")
            try:
                i = 0
                while self.max_frames is None or i < self.max_frames:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    yield bgr[..., ::-1].copy()
                    i += 1
            finally:
                cap.release()
        else:
            for f in self.files:
                bgr = cv2.imread(f, cv2.IMREAD_COLOR)
                if bgr is None:
                    raise ValueError(f"{f}: cannot be read as an image")
                yield bgr[..., ::-1].copy()

    def __iter__(self) -> Iterator[np.ndarray]:
        for i, fr in enumerate(self._frames()):
            if fr.shape[:2] != (self.height, self.width):
                where = self.files[i] if self.files else f"{self.name} frame {i}"
                raise ValueError(f"{where}: is {fr.shape[1]}x{fr.shape[0]}, the first frame is "
                                 f"{self.width}x{self.height}; all frames must have one size")
            yield fr


# ------------------------------------------------------------------------------------------ model
@dataclass
class PairResult:
    """One consecutive pair (frame ``index`` -> ``index + 1``); numpy arrays, float32.

    world_flow, local_flow ``[H, W, 2]`` px (x right, y down); subject_motion ``[2]`` px;
    subject_map ``[H, W]`` in [0, 1]; frame0 ``[H, W, 3]`` uint8 RGB (the pair's first frame)."""
    index: int
    frame0: np.ndarray
    world_flow: np.ndarray
    local_flow: np.ndarray
    subject_motion: np.ndarray
    subject_map: np.ndarray


def _resolve_device(device: str):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but no CUDA device is available here")
    if d.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    return d


class Predictor:
    """The model ready for inference: device, dtype, iterations, optional ``torch.compile``.

    Args:
        model: an :class:`hmore.models.HMoRe` (else built from ``weights``).
        weights: ``"default"`` (the weights shipped in the package), a checkpoint / weights path, or None
            (random initialisation; for tests).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: ``"float32"`` or ``"bfloat16"`` (autocast; the outputs stay float32). ``"auto"``: bfloat16 on
            CUDA, float32 on CPU (where bf16 convolutions are slower).
        iters: refinement iterations (None: the weights' config, 12 by default).
        compile: ``torch.compile`` the model (on CUDA with ``mode="reduce-overhead"``: CUDA graphs).
    ``predictor(frames0, frames1)`` takes uint8 ``[B, H, W, 3]`` RGB arrays and returns a dict of numpy
    arrays ``world_flow, local_flow [B, H, W, 2]``, ``subject_motion [B, 2]``, ``subject_map [B, H, W]``.
    """

    def __init__(self, model=None, weights="default", device="auto", dtype="auto", iters: int | None = None,
                 compile: bool = False):
        import torch

        from .models import HMoRe, get_model

        self.device = _resolve_device(device)
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype: expected auto, float32 or bfloat16, got {dtype!r}")
        self.dtype = dtype
        if iters is not None and (isinstance(iters, bool) or not isinstance(iters, int) or iters < 1):
            raise ValueError(f"iters: expected None or an int >= 1, got {iters!r}")
        if model is None:
            model = get_model("hmore", weights=weights)
        elif not isinstance(model, HMoRe):
            raise TypeError(f"model: expected an hmore HMoRe model, got {type(model).__name__}")
        self.model = model.to(self.device).eval()
        self.iters = iters if iters is not None else model.config.iters
        self._run = self.model
        if compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._run = torch.compile(self.model, mode=mode, dynamic=False)

    def __call__(self, frames0: np.ndarray, frames1: np.ndarray) -> dict:
        import torch

        def tensor(a, name):
            a = np.asarray(a)
            if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
                raise ValueError(f"{name}: expected uint8 [B, H, W, 3] RGB, got {a.dtype} {a.shape}")
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device).permute(0, 3, 1, 2)

        x0, x1 = tensor(frames0, "frames0"), tensor(frames1, "frames1")
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.dtype == "bfloat16"):
            out = self._run(x0, x1, iters=self.iters)
        return {"world_flow": out["world_flow"].float().permute(0, 2, 3, 1).cpu().numpy(),
                "local_flow": out["local_flow"].float().permute(0, 2, 3, 1).cpu().numpy(),
                "subject_motion": out["subject_motion"].float().cpu().numpy(),
                "subject_map": out["subject_map"].float()[:, 0].cpu().numpy()}

    def pairs(self, source: FrameSource, batch_size: int = 4, start: int = 0) -> Iterator[PairResult]:
        """Yield the results of every consecutive pair of ``source`` from pair ``start`` on, in order,
        running ``batch_size`` pairs per forward pass (pairs before ``start`` are decoded, not run)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        prev, batch = None, []
        for i, fr in enumerate(source):
            if prev is not None and i - 1 >= start:
                batch.append((i - 1, prev, fr))
                if len(batch) == batch_size:
                    yield from self._batch(batch)
                    batch = []
            prev = fr
        if batch:
            yield from self._batch(batch)

    def _batch(self, batch) -> Iterator[PairResult]:
        out = self(np.stack([b[1] for b in batch]), np.stack([b[2] for b in batch]))
        for j, (i, f0, _) in enumerate(batch):
            yield PairResult(i, f0, out["world_flow"][j], out["local_flow"][j], out["subject_motion"][j],
                             out["subject_map"][j])


def infer(inputs, weights="default", *, model=None, device="auto", dtype="auto", iters: int | None = None,
          batch_size: int = 4, compile: bool = False, max_frames: int | None = None) -> Iterator[PairResult]:
    """Run H-MoRe on ``inputs`` (a video, a folder of frames, or two images); yield a :class:`PairResult`
    per consecutive pair, in order. See :class:`Predictor` for the arguments.

    >>> for r in hmore.infer("clip.mp4"):            # doctest: +SKIP
    ...     r.world_flow, r.local_flow, r.subject_motion, r.subject_map
    """
    from .models import MIN_SIZE

    source = FrameSource(inputs, max_frames=max_frames, min_size=MIN_SIZE)
    pred = Predictor(model, weights, device=device, dtype=dtype, iters=iters, compile=compile)
    return pred.pairs(source, batch_size=batch_size)


# ------------------------------------------------------------------------------------------ writer
def _weights_id(model, weights) -> str:
    """A short fingerprint of the parameters (resume must not mix outputs of two models)."""
    import torch

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _pair_files(out: str, t: int, kitti: bool) -> list[str]:
    ext = ".png" if kitti else ".flo"
    return [os.path.join(out, "world", f"{t:06d}{ext}"), os.path.join(out, "local", f"{t:06d}{ext}"),
            os.path.join(out, "world_color", f"{t:06d}.png"), os.path.join(out, "local_color", f"{t:06d}.png"),
            os.path.join(out, "subject_map", f"{t:06d}.png")]


def infer_to_folder(inputs, out: str, weights="default", *, model=None, device="auto", dtype="auto",
                    iters: int | None = None, batch_size: int = 4, compile: bool = False,
                    max_frames: int | None = None, kitti: bool = False, max_flow: float | None = None,
                    video: bool = True, overwrite: bool = False, progress: bool = True) -> dict:
    """``hmore infer``: run :func:`infer` and write its results to ``out`` (layout in the module doc).

    ``max_flow``: the flow radius drawn fully saturated in every colour image and panel (None: 1.5x the
    99th percentile of |world flow| of the first pair, fixed for the run so colours compare over time).
    ``overwrite``: start again in a folder that holds another run (else that is an error; the same run
    resumes). Returns the summary written to ``infer.json`` (pairs, seconds, pairs_per_s, ...)."""
    from tqdm import tqdm

    from .data._io import atomic_write_bytes, atomic_write_json, check_out_dir, encode_png, read_json
    from .data.flow_io import write_flo, write_kitti_png
    from .data.viz import PanelWriter, flow_to_color
    from .models import MIN_SIZE

    out = os.fspath(out)
    check_out_dir(out, "--out")
    if max_flow is not None and not (np.isfinite(max_flow) and max_flow > 0):
        raise ValueError(f"max_flow: expected a positive number, got {max_flow!r}")
    source = FrameSource(inputs, max_frames=max_frames, min_size=MIN_SIZE)
    pred = Predictor(model, weights, device=device, dtype=dtype, iters=iters, compile=compile)
    settings = {"format": INFER_FORMAT, "source": source.identity(), "weights": _weights_id(pred.model, weights),
                "iters": pred.iters, "dtype": pred.dtype, "kitti": bool(kitti)}
    manifest = os.path.join(out, "infer.json")
    done, state = 0, None
    if os.path.isfile(manifest) and not overwrite:
        state = read_json(manifest, "hmore infer state")
        if state.get("settings") != settings:
            diff = sorted(k for k in settings if (state.get("settings") or {}).get(k) != settings[k])
            raise ValueError(f"{manifest}: this folder holds a run with other {', '.join(diff) or 'settings'}; "
                             f"use another --out, or --overwrite to start again")
        done = int(state.get("pairs_done", 0))
        max_flow = state["max_flow"] if max_flow is None else max_flow
        # a pair counts only if every one of its files is on disk (they are written before the manifest)
        while done > 0 and not all(os.path.isfile(f) for f in _pair_files(out, done - 1, kitti)):
            done -= 1
    elif os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise ValueError(f"--out {out}: exists and is not empty (not an hmore infer folder); use another "
                         f"folder, or --overwrite")
    os.makedirs(out, exist_ok=True)
    total = None if source.num_frames is None else max(source.num_frames - 1, 0)
    bar = tqdm(total=total, initial=done, desc=f"infer {os.path.basename(source.name)}", unit="pair",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    motion_rows = []
    if done and os.path.isfile(os.path.join(out, "subject_motion.csv")):
        with open(os.path.join(out, "subject_motion.csv")) as f:
            motion_rows = [r for r in csv.reader(f)][1:done + 1]
    t0, n_run, n = time.perf_counter(), 0, done

    def save_state(n_done, finished=False, seconds=None):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["pair", "subject_motion_x", "subject_motion_y"])
        w.writerows(motion_rows)
        atomic_write_bytes(os.path.join(out, "subject_motion.csv"), buf.getvalue().encode())
        st = {"settings": settings, "pairs_done": n_done, "max_flow": max_flow, "finished": finished,
              "height": source.height, "width": source.width, "device": str(pred.device)}
        if seconds is not None:
            st.update(seconds=seconds, pairs_run=n_run, pairs_per_s=(n_run / seconds if seconds > 0 else None))
        atomic_write_json(manifest, st, fsync=False)
        return st

    try:
        for r in pred.pairs(source, batch_size=batch_size, start=done):
            if max_flow is None:
                mag = np.hypot(r.world_flow[..., 0], r.world_flow[..., 1])
                max_flow = float(max(1.5 * np.percentile(mag[np.isfinite(mag)], 99) if np.isfinite(mag).any() else 0, 1.0))
            fw, fl, cw, cl, sm = _pair_files(out, r.index, kitti)
            if kitti:
                write_kitti_png(fw, r.world_flow, clip=True)
                write_kitti_png(fl, r.local_flow, clip=True)
            else:
                write_flo(fw, r.world_flow)
                write_flo(fl, r.local_flow)
            atomic_write_bytes(cw, encode_png(flow_to_color(r.world_flow, max_flow, bgr=True), cw))
            atomic_write_bytes(cl, encode_png(flow_to_color(r.local_flow, max_flow, bgr=True), cl))
            atomic_write_bytes(sm, encode_png(np.floor(r.subject_map.clip(0, 1) * 255 + 0.5).astype(np.uint8), sm))
            motion_rows.append([str(r.index), f"{r.subject_motion[0]:.4f}", f"{r.subject_motion[1]:.4f}"])
            n, n_run = r.index + 1, n_run + 1
            bar.update(1)
            if n_run % batch_size == 0:
                save_state(n)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if n == 0:
        raise ValueError(f"{source.name}: only one frame decodes; a pair needs two")
    st = save_state(n, finished=False, seconds=seconds)
    if video:
        panel = os.path.join(out, "panels.mp4")
        with PanelWriter(panel, fps=source.fps, max_flow=max_flow, mask_label="subject map", legend=True) as w:
            for t, fr in enumerate(source):
                if t >= n:
                    break
                w.add(fr, *_read_pair(out, t, kitti))
    st = save_state(n, finished=True, seconds=seconds)
    st["out"] = out
    return st


def _read_pair(out: str, t: int, kitti: bool):
    """World flow, local flow and subject map of pair ``t`` read back from ``out`` (for the panels)."""
    from .data._io import read_png
    from .data.flow_io import read_flo, read_kitti_png

    fw, fl, _, _, sm = _pair_files(out, t, kitti)
    rd = (lambda p: read_kitti_png(p)[0]) if kitti else read_flo
    return rd(fw), rd(fl), read_png(sm, what="subject map").astype(np.float32) / 255.0
