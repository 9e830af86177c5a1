"""Inference: H-MoRe on a video, a folder of frames or two images, and the ``hmore infer`` writer.

``hmore.infer(inputs, ...)`` yields one :class:`PairResult` per consecutive pair of frames. Two paths: the
plain one runs the model on batches of pairs; the video one (the default for a video or a folder of frames)
encodes each frame once (same results) and, optionally, warm-starts each pair from the previous pair's
1/8 flow with fewer iterations.
The model runs at a working size (default: the shorter side capped at 256 px) and the flows come back at
the frames' size, scaled. :func:`infer_to_folder` (``hmore infer``) writes the results to a folder:

    world/000000.flo, local/000000.flo        Middlebury .flo (or KITTI 16-bit .png with kitti=True)
    world_color/000000.png, local_color/...   colour-wheel PNGs (one max_flow for the whole run)
    subject_map/000000.png                    the subject map, 8-bit grey
    subject_motion.csv                        pair, v_s x, v_s y (px)
    panels.mp4                                frame | world flow | local flow | subject map, with a key
    infer.json                                inputs, settings (working size, path, warm start), weights
                                              checksum, pairs done, pairs/s
    warm_state.npy                            (video path, warm start) the last saved pair's 1/8 flow, for resume

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
INFER_FORMAT = 2  # 2: working size, video path and warm start in the settings


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
AUTO_SHORT_SIDE = 256  # px: size="auto" caps the frames' shorter side here (a 1080p phone video runs at 456x256)
SIZE_HELP = "'auto' (shorter side capped at 256 px, aspect kept, multiple of 8), 'native' (or 0), or (H, W)"


@dataclass
class PairResult:
    """One consecutive pair (frame ``index`` -> ``index + 1``); numpy arrays, float32.

    world_flow, local_flow ``[H, W, 2]`` px (x right, y down); subject_motion ``[2]`` px;
    subject_map ``[H, W]`` in [0, 1]; frame0 ``[H, W, 3]`` uint8 RGB (the pair's first frame); all at the
    frame's size whatever the working size. flow_low: the video path's 1/8 flow ``[2, h/8, w/8]`` (1/8 px of
    the padded working size), the warm start of the next pair (None on the plain path)."""
    index: int
    frame0: np.ndarray
    world_flow: np.ndarray
    local_flow: np.ndarray
    subject_motion: np.ndarray
    subject_map: np.ndarray
    flow_low: np.ndarray | None = None


def _round8(v: float) -> int:
    return max(8, int(round(v / 8.0)) * 8)


def check_size(size, scale=None, min_size: int = 64):
    """Normalise a working-size request: returns ``"auto"``, ``"native"``, ``(H, W)`` ints or ``("scale", s)``.
    Errors name the argument (``size`` / ``scale``)."""
    if scale is not None:
        if size not in (None, "auto"):
            raise ValueError(f"scale: give size or scale, not both (size={size!r}, scale={scale!r})")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale: expected a positive number, got {scale!r}")
        return ("scale", float(scale))
    if size is None or size == "auto":
        return "auto"
    if size == "native" or (not isinstance(size, bool) and isinstance(size, int) and size == 0):
        return "native"
    if isinstance(size, str):
        raise ValueError(f"size: expected {SIZE_HELP}, got {size!r}")
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"size: expected {SIZE_HELP}, got {size!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"size: expected two ints (H, W), got {size!r}")
        if v <= 0:
            raise ValueError(f"size: expected positive (H, W), got {tuple(size)}")
        if v < min_size:
            raise ValueError(f"size: {tuple(size)} is below the model's minimum {min_size}x{min_size} (H, W)")
    return (int(h), int(w))


def working_size(height: int, width: int, size="auto", min_size: int = 64) -> tuple[int, int]:
    """The size ``(H, W)`` the model runs at for frames of ``height x width``, from a :func:`check_size` value.

    "auto": the frames' size if the shorter side is <= :data:`AUTO_SHORT_SIDE`, else scaled so the shorter
    side is 256 (each side rounded to a multiple of 8); "native": the frames' size; ``("scale", s)``: each side
    x s, rounded to a multiple of 8 (an error below ``min_size``)."""
    if size == "native":
        return height, width
    if size == "auto":
        if min(height, width) <= AUTO_SHORT_SIDE:
            return height, width
        s = AUTO_SHORT_SIDE / min(height, width)
        return _round8(height * s), _round8(width * s)
    if isinstance(size, tuple) and size[0] == "scale":
        h, w = _round8(height * size[1]), _round8(width * size[1])
        if min(h, w) < min_size:
            raise ValueError(f"scale: {size[1]} makes {width}x{height} frames {w}x{h}, below the model's minimum "
                             f"{min_size}x{min_size}")
        return h, w
    return size


def _resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``[B, H, W, 3]`` -> ``[B, h, w, 3]``: cv2.INTER_AREA when shrinking, INTER_LINEAR otherwise."""
    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    interp = cv2.INTER_AREA if h <= frames.shape[1] and w <= frames.shape[2] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def _default_prior_fn(frames):
    """The person prior of a batch of frames ``[B, 3, H, W]`` float in [0, 1] -> ``[B, 1, H, W]``."""
    from .data.segment import batch_person_prior  # lazily: it loads a segmentation model

    return batch_person_prior(frames)


def _forward_project(flow_low):
    """RAFT's warm start at 1/8: the previous pair's flow ``[B, 2, h, w]`` (1/8 px) carried to where it
    points (each cell's flow moved to ``p + flow(p)``, rounded to the nearest cell; cells several land on
    average them; cells nothing lands on keep their own previous flow), i.e. the flow assumed constant
    along each point's motion. RAFT fills the holes by nearest-neighbour interpolation (scipy griddata);
    keeping the old value is cheaper and, under the constant-velocity assumption, as good a guess."""
    import torch

    B, _, h, w = flow_low.shape
    f = flow_low.float()
    ys, xs = torch.meshgrid(torch.arange(h, device=f.device), torch.arange(w, device=f.device), indexing="ij")
    out = f.clone()
    for b in range(B):
        tx = (xs + f[b, 0]).round().long()
        ty = (ys + f[b, 1]).round().long()
        ok = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
        idx = (ty * w + tx)[ok]
        acc = torch.zeros(2, h * w, device=f.device).index_add_(1, idx, f[b][:, ok])
        cnt = torch.zeros(h * w, device=f.device).index_add_(0, idx, torch.ones_like(idx, dtype=torch.float32))
        hit = cnt > 0
        o = out[b].view(2, h * w)
        o[:, hit] = acc[:, hit] / cnt[hit]
    return out


class Predictor:
    """The model ready for inference: device, dtype, iterations, working size, person prior, optional
    ``torch.compile``.

    Args:
        model: an :class:`hmore.models.HMoRe` (else built from ``weights``).
        weights: ``"default"`` (the weights shipped in the package), a checkpoint / weights path, or None
            (random initialisation; for tests).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: ``"float32"`` or ``"bfloat16"`` (autocast; the outputs stay float32). ``"auto"``: bfloat16 on
            CUDA, float32 on CPU (where bf16 convolutions are slower).
        iters: refinement iterations (None: the weights' config, 12 by default).
        compile: ``torch.compile`` the model (on CUDA with ``mode="reduce-overhead"``: CUDA graphs; the
            plain path only).
        size: the working size, see :func:`working_size`: ``"auto"`` (shorter side capped at 256 px),
            ``"native"`` (or 0), ``(H, W)``; scale: or a factor per side instead. Frames are resized with
            cv2.INTER_AREA when shrinking; flows come back at the frame's size, upsampled bilinearly and
            multiplied by the size ratio per axis (as ptlflow's input size option), subject motion likewise,
            the subject map upsampled, the local flow recomputed from them.
        prior: ``"auto"`` (a model with ``config.person_prior`` gets the person prior of each pair's first
            frame from ``prior_fn``, computed once per frame) or ``"none"`` (frames-only).
        prior_fn: ``frames [B, 3, h, w] float in [0, 1] -> [B, 1, h, w]`` person probability (default
            ``hmore.data.segment.batch_person_prior``, imported when first needed).
        warm_iters: the video path's iterations for a warm-started pair (default ``max(1, iters // 2)``).
    ``predictor(frames0, frames1)`` takes uint8 ``[B, H, W, 3]`` RGB arrays and returns a dict of numpy
    arrays ``world_flow, local_flow [B, H, W, 2]``, ``subject_motion [B, 2]``, ``subject_map [B, H, W]``.
    :meth:`pairs` runs every pair of a clip that way (the plain path); :meth:`video` encodes each frame once
    and warm-starts each pair from the previous one (the video path).
    """

    def __init__(self, model=None, weights="default", device="auto", dtype="auto", iters: int | None = None,
                 compile: bool = False, size="auto", scale: float | None = None, prior: str = "auto",
                 prior_fn=None, warm_iters: int | None = None):
        import torch

        from .models import MIN_SIZE, HMoRe, get_model

        from .device import resolve_device

        self.device = resolve_device(device, "device")
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype: expected auto, float32 or bfloat16, got {dtype!r}")
        self.dtype = dtype
        for name, v in (("iters", iters), ("warm_iters", warm_iters)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}: expected None or an int >= 1, got {v!r}")
        if prior not in ("auto", "none"):
            raise ValueError(f"prior: expected 'auto' or 'none', got {prior!r}")
        if prior_fn is not None and not callable(prior_fn):
            raise TypeError(f"prior_fn: expected a callable frames -> prior, got {type(prior_fn).__name__}")
        self.size = check_size(size, scale, MIN_SIZE)
        if model is None:
            model = get_model("hmore", weights=weights)
        elif not isinstance(model, HMoRe):
            raise TypeError(f"model: expected an hmore HMoRe model, got {type(model).__name__}")
        self.model = model.to(self.device).eval()
        self.iters = iters if iters is not None else model.config.iters
        self.warm_iters = warm_iters if warm_iters is not None else max(1, self.iters // 2)
        self.use_prior = bool(model.config.person_prior) and prior == "auto"
        self.prior = prior
        self.prior_fn = prior_fn if prior_fn is not None else _default_prior_fn
        self._run = self.model
        if compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._run = torch.compile(self.model, mode=mode, dynamic=False)

    # -------------------------------------------------------------------------------- shared steps
    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the model runs at for ``height x width`` frames (see :func:`working_size`)."""
        from .models import MIN_SIZE

        return working_size(height, width, self.size, MIN_SIZE)

    def _autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16")

    def _tensor(self, a, name):
        """uint8 ``[B, H, W, 3]`` frames -> uint8 ``[B, 3, h, w]`` at the working size on the device."""
        import torch

        a = np.asarray(a)
        if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise ValueError(f"{name}: expected uint8 [B, H, W, 3] RGB, got {a.dtype} {a.shape}")
        from .models import MIN_SIZE

        size = self.working_size(*a.shape[1:3])
        if min(size) < MIN_SIZE:
            raise ValueError(f"{name}: frames are {a.shape[2]}x{a.shape[1]}; H-MoRe needs at least {MIN_SIZE}x{MIN_SIZE}")
        a = _resize_frames(a, size)
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device).permute(0, 3, 1, 2)

    def _prior(self, x_u8):
        """The person prior of uint8 ``[B, 3, h, w]`` frames (None when the model runs frames-only)."""
        import torch

        from .models.hmore import _prepare_prior

        if not self.use_prior:
            return None
        p = self.prior_fn(x_u8.float() / 255.0)
        return _prepare_prior(p if isinstance(p, torch.Tensor) else torch.as_tensor(np.asarray(p)), x_u8)

    def _outputs(self, out: dict, size: tuple[int, int]) -> dict:
        """The model's output tensors at the working size -> numpy at the frame's ``size`` (H, W)."""
        import torch
        import torch.nn.functional as F

        world, v_s, smap = out["world_flow"].float(), out["subject_motion"].float(), out["subject_map"].float()
        h, w = world.shape[-2:]
        if (h, w) != tuple(size):
            H, W = size
            ratio = torch.tensor([W / w, H / h], device=world.device)
            world = F.interpolate(world, size=(H, W), mode="bilinear", align_corners=False) * ratio[None, :, None, None]
            smap = F.interpolate(smap, size=(H, W), mode="bilinear", align_corners=False)
            v_s = v_s * ratio
            local = (world - v_s[:, :, None, None]) * smap
        else:
            local = out["local_flow"].float()
        return {"world_flow": world.permute(0, 2, 3, 1).cpu().numpy(),
                "local_flow": local.permute(0, 2, 3, 1).cpu().numpy(),
                "subject_motion": v_s.cpu().numpy(), "subject_map": smap[:, 0].cpu().numpy()}

    # -------------------------------------------------------------------------------- plain path
    def __call__(self, frames0: np.ndarray, frames1: np.ndarray) -> dict:
        import torch

        x0, x1 = self._tensor(frames0, "frames0"), self._tensor(frames1, "frames1")
        with torch.inference_mode(), self._autocast():
            out = self._run(x0, x1, iters=self.iters, prior=self._prior(x0))
        return self._outputs(out, np.asarray(frames0).shape[1:3])

    def pairs(self, source, batch_size: int = 4, start: int = 0) -> Iterator[PairResult]:
        """The plain path: yield the results of every consecutive pair of ``source`` from pair ``start`` on,
        in order, running ``batch_size`` pairs per forward pass (pairs before ``start`` are decoded, not run;
        each frame is encoded twice, as the second frame of a pair and the first of the next)."""
        _check_batch(batch_size)
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

    # -------------------------------------------------------------------------------- video path
    def video(self, source, batch_size: int = 4, start: int = 0, warm_start: bool = False,
              init_low: np.ndarray | None = None) -> Iterator[PairResult]:
        """The video path: yield every consecutive pair's result from pair ``start`` on, encoding each frame
        once (features, context, person prior and padding; frame t+1's encoding is the first frame of the next
        pair), ``batch_size`` frames per encoder pass.

        ``warm_start`` (off by default: the shipped weights' iterations do not converge to a start-independent
        flow, so a warm-started chain drifts, 0.6 px EPE against the plain path after 8 pairs of carphone;
        see docs/model.md): each pair after the first starts its iterations from the previous pair's 1/8 flow,
        forward-projected (:func:`_forward_project`), and runs ``warm_iters`` iterations (the first pair,
        with nothing to start from, runs ``iters``); pairs are then decoded one at a time. ``init_low``
        (``[2, h/8, w/8]``, a :attr:`PairResult.flow_low`): the state to warm-start pair ``start`` from (a
        resumed run). Without warm start, ``batch_size`` pairs are decoded per pass and the results equal
        the plain path's (same ``iters``).

        With a model that refines a classical estimate (``config.flow_init``), each pair still gets its own
        full-resolution classical flow (computed on the working-size frames as the plain path does); the
        warm start moves only where the iterations start, and the output keeps the model's convention
        ``flow_init + up8(flow_low - down8(flow_init))``, so the correction stays relative to the
        classical estimate it was trained on."""
        import torch

        from .models.classical import dis_flow_batch

        _check_batch(batch_size)
        model, cfg = self.model, self.model.config
        prev = None  # the last frame's state: frame (uint8 HWC), x (padded [-1,1]), u8, enc, prior planes
        low = None if init_low is None or not warm_start else torch.as_tensor(np.asarray(init_low))[None].to(self.device)
        chunk: list = []

        def run_chunk(chunk, prev, low):
            idx = [i for i, _ in chunk]
            frames = np.stack([f for _, f in chunk])
            size = frames.shape[1:3]
            u8 = self._tensor(frames, "frames")
            h, w = u8.shape[-2:]
            ph, pw = (-h) % 8, (-w) % 8
            pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
            x = u8.float() / 255.0 * 2.0 - 1.0
            pri = self._prior(u8)
            if ph or pw:
                x = torch.nn.functional.pad(x, pad, mode="replicate")
                pri = None if pri is None else torch.nn.functional.pad(pri, pad, mode="replicate")
            x = x.contiguous()
            planes = None
            if cfg.person_prior:
                from .models.subject_motion import prior_planes

                planes = prior_planes(pri, None, x[:, :1])
            enc = model.phi.encode(x, context=True)
            if prev is not None:  # prepend the previous chunk's last frame
                idx = [prev["index"]] + idx
                frames = np.concatenate([prev["frame"][None], frames])
                u8, x = torch.cat([prev["u8"], u8]), torch.cat([prev["x"], x])
                planes = None if planes is None else torch.cat([prev["planes"], planes])
                enc = {k: torch.cat([prev["enc"][k], v]) for k, v in enc.items()}
            n = len(idx) - 1  # pairs in this chunk
            results = []
            if n > 0:
                fi = None
                if cfg.flow_init != "none":
                    fi = dis_flow_batch(u8[:-1], u8[1:], cfg.flow_init).float()
                    if ph or pw:
                        fi = torch.nn.functional.pad(fi, pad, mode="replicate")
                groups = [range(k, k + 1) for k in range(n)] if warm_start else [range(0, n)]
                for g in groups:
                    a, b = g.start, g.stop
                    e1 = {k: enc[k][a:b] for k in ("fmap", "net", "inp")}
                    e2 = {"fmap": enc["fmap"][a + 1:b + 1]}
                    f_init = None if fi is None else fi[a:b]
                    start_low = None if low is None else _forward_project(low)
                    iters = self.warm_iters if start_low is not None else self.iters
                    out = model.phi.decode(e1, e2, iters, flow_init=f_init, init_low=start_low)
                    if f_init is not None and start_low is not None:
                        from .models.world_flow import downsample_flow8, upsample_flow8

                        out["flows"] = [f_init + upsample_flow8(out["flow_low"] - downsample_flow8(f_init))]
                    res = model._heads(out, x[a:b], x[a + 1:b + 1], None if planes is None else planes[a:b],
                                       pad, (h, w))
                    if warm_start:
                        low = out["flow_low"].float()
                    o = self._outputs(res, size)
                    fl = out["flow_low"].float().cpu().numpy()
                    for j in range(b - a):
                        results.append(PairResult(idx[a + j], frames[a + j], o["world_flow"][j], o["local_flow"][j],
                                                  o["subject_motion"][j], o["subject_map"][j], fl[j]))
            last = {"index": idx[-1], "frame": frames[-1], "u8": u8[-1:], "x": x[-1:],
                    "planes": None if planes is None else planes[-1:], "enc": {k: v[-1:] for k, v in enc.items()}}
            return results, last, low

        def step(chunk, prev, low):  # no grad mode left set while the caller holds a yielded result
            with torch.inference_mode(), self._autocast():
                return run_chunk(chunk, prev, low)

        for i, fr in enumerate(source):
            if i < start:
                continue
            chunk.append((i, fr))
            if len(chunk) == batch_size + (prev is None):
                results, prev, low = step(chunk, prev, low)
                chunk = []
                yield from results
        if chunk:
            results, prev, low = step(chunk, prev, low)
            yield from results


def _check_batch(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")


def _use_video_path(path: str, source: FrameSource) -> bool:
    if path not in ("auto", "video", "plain"):
        raise ValueError(f"path: expected 'auto', 'video' or 'plain', got {path!r}")
    return path == "video" or (path == "auto" and source.kind in ("video", "folder"))


def infer(inputs, weights="default", *, model=None, device="auto", dtype="auto", iters: int | None = None,
          batch_size: int = 4, compile: bool = False, max_frames: int | None = None, size="auto",
          scale: float | None = None, path: str = "auto", warm_start: bool = False, warm_iters: int | None = None,
          prior: str = "auto", prior_fn=None) -> Iterator[PairResult]:
    """Run H-MoRe on ``inputs`` (a video, a folder of frames, or two images); yield a :class:`PairResult`
    per consecutive pair, in order, at the frames' size. See :class:`Predictor` for the arguments.

    ``path``: ``"video"`` (:meth:`Predictor.video`: each frame encoded once; ``warm_start=True`` also starts
    each pair from the previous one's flow with ``warm_iters``: off by default, the shipped weights drift
    under it), ``"plain"`` (:meth:`Predictor.pairs`), ``"auto"``: video for a video file or a
    folder of frames, plain for a list of images.

    >>> for r in hmore.infer("clip.mp4"):            # doctest: +SKIP
    ...     r.world_flow, r.local_flow, r.subject_motion, r.subject_map
    """
    from .models import MIN_SIZE

    source = FrameSource(inputs, max_frames=max_frames, min_size=MIN_SIZE)
    pred = Predictor(model, weights, device=device, dtype=dtype, iters=iters, compile=compile, size=size,
                     scale=scale, prior=prior, prior_fn=prior_fn, warm_iters=warm_iters)
    if _use_video_path(path, source):
        return pred.video(source, batch_size=batch_size, warm_start=warm_start)
    return pred.pairs(source, batch_size=batch_size)


# ------------------------------------------------------------------------------------------ writer
def _weights_id(model) -> str:
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
                    video: bool = True, overwrite: bool = False, progress: bool = True, size="auto",
                    scale: float | None = None, path: str = "auto", warm_start: bool = False,
                    warm_iters: int | None = None, prior: str = "auto", prior_fn=None) -> dict:
    """``hmore infer``: run :func:`infer` and write its results to ``out`` (layout in the module doc).

    ``size``/``scale``/``path``/``warm_start``/``warm_iters``/``prior``: as :func:`infer`; the working size,
    the path and the warm start are recorded in ``infer.json`` (a resume must use the same). A warm-started
    video run also keeps the last saved pair's 1/8 flow (``warm_state.npy``) so a resumed run continues the
    chain where it stopped (same results as an uninterrupted run).

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
    pred = Predictor(model, weights, device=device, dtype=dtype, iters=iters, compile=compile, size=size,
                     scale=scale, prior=prior, prior_fn=prior_fn, warm_iters=warm_iters)
    use_video = _use_video_path(path, source)
    warm = use_video and bool(warm_start)
    work = list(pred.working_size(source.height, source.width))
    settings = {"format": INFER_FORMAT, "source": source.identity(), "weights": _weights_id(pred.model),
                "iters": pred.iters, "dtype": pred.dtype, "kitti": bool(kitti), "size": work,
                "path": "video" if use_video else "plain", "warm_iters": pred.warm_iters if warm else None,
                "prior": "auto" if pred.use_prior else "none"}
    manifest = os.path.join(out, "infer.json")
    warm_file = os.path.join(out, "warm_state.npy")
    done, state, init_low = 0, None, None
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
        if warm and done > 0 and state.get("warm_state_pair") == done - 1 and os.path.isfile(warm_file):
            init_low = np.load(warm_file)  # the chain goes on where it stopped (else pair `done` starts cold)
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
    last = {"low": None, "pair": None}

    def save_state(n_done, finished=False, seconds=None):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["pair", "subject_motion_x", "subject_motion_y"])
        w.writerows(motion_rows)
        atomic_write_bytes(os.path.join(out, "subject_motion.csv"), buf.getvalue().encode())
        st = {"settings": settings, "pairs_done": n_done, "max_flow": max_flow, "finished": finished,
              "height": source.height, "width": source.width, "working_size": work, "device": str(pred.device)}
        if last["low"] is not None:
            buf = io.BytesIO()
            np.save(buf, last["low"])
            atomic_write_bytes(warm_file, buf.getvalue())
            st["warm_state_pair"] = last["pair"]
        elif state is not None and "warm_state_pair" in state:
            st["warm_state_pair"] = state["warm_state_pair"]
        if seconds is not None:
            st.update(seconds=seconds, pairs_run=n_run, pairs_per_s=(n_run / seconds if seconds > 0 else None))
        atomic_write_json(manifest, st, fsync=False)
        return st

    try:
        results = (pred.video(source, batch_size=batch_size, start=done, warm_start=warm, init_low=init_low)
                   if use_video else pred.pairs(source, batch_size=batch_size, start=done))
        for r in results:
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
            if warm:
                last.update(low=r.flow_low, pair=r.index)
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
