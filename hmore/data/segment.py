"""Person segmentation (MediaPipe selfie segmentation) and a model of a segmenter's mask errors.

:class:`PersonSegmenter` wraps MediaPipe 0.10.14's ``mp.solutions.selfie_segmentation.SelfieSegmentation``
(its models ship in the wheel, so it runs offline; ~4 ms a 256x256 frame on one core). The graph is
created on the first call in the current process, and never touched from another. A process forked
from one that had already built a MediaPipe graph cannot build one itself (MediaPipe 0.10.14 hangs in
graph creation there, even when the parent's graph was closed first), so such a process -- a DataLoader
worker forked after the parent used the segmenter -- runs MediaPipe in a helper: a fresh Python
process (``python -m hmore.data.segment``, started with subprocess because DataLoader workers are
daemonic and may not start multiprocessing children) that it talks to over a pipe (:func:`run_mediapipe`).
The helper ends when its parent closes the pipe or exits. Also,
MediaPipe's native log lines are kept off stderr with :func:`hmore.data._io.native_stderr_redirected`
(to ``HMORE_NATIVE_LOG``, default /dev/null), as ``hmore annotate`` does. Selfie segmentation has no
temporal state, so a frame's result does not depend on the frames before it.

:func:`corrupt_mask` degrades an exact mask the way a real segmenter errs (boundary too tight or too
loose, holes, false-positive blobs beside the person, a misregistration shift, a coarse low-resolution
mask), for training a model that is given a segmenter's mask rather than the true one.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pickle
import subprocess
import sys
import warnings

import cv2
import numpy as np

from ._io import native_stderr_redirected

__all__ = ["batch_person_prior", "PersonSegmenter", "person_probability", "corrupt_mask", "shift_mask", "run_mediapipe", "quiet_native"]


def _check_rgb(name: str, rgb) -> np.ndarray:
    """``rgb`` as a C-contiguous uint8 [H, W, 3] array, or a ValueError naming ``name``."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"{name}: expected a numpy uint8 array [H, W, 3], got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {rgb.dtype} (shape {rgb.shape})")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"{name}: expected shape [H, W, 3], got {rgb.shape}")
    return np.ascontiguousarray(rgb)


@contextlib.contextmanager
def quiet_native():
    """MediaPipe (and libpng) quiet: native fd-2 lines to ``HMORE_NATIVE_LOG`` (default /dev/null), and
    protobuf's deprecation notice about MediaPipe's own calls ignored."""
    with native_stderr_redirected(os.environ.get("HMORE_NATIVE_LOG") or os.devnull), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*GetPrototype\(\) is deprecated", category=UserWarning)
        yield


# ---- MediaPipe across fork -------------------------------------------------------------------------------
_USED_IN: int | None = None  # pid of the process that built this process's (or its ancestor's) first graph


def mark_mediapipe_used() -> None:
    """Record that this process builds MediaPipe graphs (call before building one)."""
    global _USED_IN
    if _USED_IN is None:
        _USED_IN = os.getpid()


def forked_after_use() -> bool:
    """True in a process forked from one that had built a MediaPipe graph (it cannot build its own)."""
    return _USED_IN is not None and _USED_IN != os.getpid()


class _Helper:
    """A fresh Python process running MediaPipe calls for this one (see the module docstring)."""

    def __init__(self):
        import hmore

        root = os.path.dirname(os.path.dirname(os.path.abspath(hmore.__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        self._log = open(os.environ.get("HMORE_NATIVE_LOG") or os.devnull, "ab")
        self.pid = os.getpid()
        self.proc = subprocess.Popen([sys.executable, "-m", "hmore.data.segment"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=env)

    def call(self, target: str, *args):
        pickle.dump((target, args), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()
        try:
            ok, value = pickle.load(self.proc.stdout)
        except EOFError:
            raise RuntimeError(f"MediaPipe helper process exited (status {self.proc.poll()})") from None
        if not ok:
            raise RuntimeError(f"MediaPipe helper process: {value}")
        return value

    def close(self):
        if self.pid == os.getpid() and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self._log.close()


_HELPER: _Helper | None = None


def _close_helper():
    if _HELPER is not None:
        _HELPER.close()


atexit.register(_close_helper)


def _call(target: str, args):
    mod, _, fn = target.partition(":")
    if not mod.startswith("hmore."):
        raise ValueError(f"target: expected 'hmore.<module>:<function>', got {target!r}")
    return getattr(importlib.import_module(mod), fn)(*args)


def run_mediapipe(target: str, *args):
    """``module:function(*args)`` here, or in the helper process when this process was forked after
    MediaPipe had been used (the function's arguments and result travel pickled)."""
    global _HELPER
    if not forked_after_use():
        return _call(target, args)
    if _HELPER is None or _HELPER.pid != os.getpid():
        _HELPER = _Helper()
    return _HELPER.call(target, *args)


def _serve() -> None:
    """The helper's loop: (target, args) pickles in on stdin, (ok, result or message) pickles out."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to the log, not into the protocol
    inp = sys.stdin.buffer
    while True:
        try:
            target, args = pickle.load(inp)
        except EOFError:
            return
        try:
            res = (True, _call(target, args))
        except Exception as e:  # reported to the caller
            res = (False, f"{type(e).__name__}: {e}")
        pickle.dump(res, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


_LOCAL: dict[int, PersonSegmenter] = {}


def _segment_here(model_selection: int, rgb: np.ndarray) -> np.ndarray:
    seg = _LOCAL.get(model_selection)
    if seg is None:
        seg = _LOCAL[model_selection] = PersonSegmenter(model_selection)
    return seg._process(rgb)


class PersonSegmenter:
    """``PersonSegmenter(model_selection=0)(rgb) -> float32 [H, W]`` person probability in [0, 1].

    model_selection: 0 = MediaPipe's general 256x256 model (the one ``hmore annotate`` uses), 1 = the
    landscape 144x256 model; both ship in the wheel.
    """

    def __init__(self, model_selection: int = 0):
        if isinstance(model_selection, bool) or model_selection not in (0, 1):
            raise ValueError(f"model_selection: expected 0 or 1, got {model_selection!r}")
        self.model_selection = int(model_selection)
        self._model = None
        self._pid = None

    def _graph(self):
        if self._model is None or self._pid != os.getpid():
            # a graph inherited through fork belongs to the parent: build a new one, never close that one
            import mediapipe as mp

            mark_mediapipe_used()
            with quiet_native():
                self._model = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=self.model_selection)
            self._pid = os.getpid()
        return self._model

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = _check_rgb("rgb", rgb)
        if forked_after_use():
            return run_mediapipe("hmore.data.segment:_segment_here", self.model_selection, rgb)
        return self._process(rgb)

    def _process(self, rgb: np.ndarray) -> np.ndarray:
        model = self._graph()
        with quiet_native():
            res = model.process(rgb)
        soft = res.segmentation_mask
        if soft is None:
            return np.zeros(rgb.shape[:2], np.float32)
        return np.clip(np.asarray(soft, np.float32), 0.0, 1.0)

    def close(self) -> None:
        """Release the native graph (only one this process created)."""
        if self._model is not None and self._pid == os.getpid():
            self._model.close()
        self._model, self._pid = None, None


_SHARED: PersonSegmenter | None = None


def person_probability(rgb: np.ndarray) -> np.ndarray:
    """Person probability float32 [H, W] in [0, 1] of a uint8 [H, W, 3] RGB image, from one
    :class:`PersonSegmenter` (model 0) shared within the process."""
    global _SHARED
    if _SHARED is None:
        _SHARED = PersonSegmenter(0)
    return _SHARED(rgb)


# ---- mask corruption -----------------------------------------------------------------------------
def batch_person_prior(frames):
    """The person prior of a batch, as H-MoRe's ``prior`` input takes it: ``frames [B, 3, H, W]`` RGB (float in
    [0, 1] or uint8, a torch tensor) -> ``[B, 1, H, W]`` float32 person probability (CPU), one
    :func:`person_probability` per frame."""
    import torch

    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames: expected a torch tensor [B, 3, H, W] of RGB frames, got {got}")
    if frames.dtype != torch.uint8:
        frames = (frames.detach().float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    rgb = frames.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return torch.from_numpy(np.stack([person_probability(x) for x in rgb])[:, None].astype(np.float32))


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def shift_mask(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``out[i + dy, j + dx] = mask[i, j]`` (what moves in from outside is False)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                     max(-dx, 0):w - max(dx, 0)]
    return out


def _blobs(rng, shape, centres, radii) -> np.ndarray:
    """Union of random ellipses (semi-axes radii * (0.6..1.4), random angle) at ``centres`` (x, y)."""
    out = np.zeros(shape, np.uint8)
    for (x, y), r in zip(centres, radii):
        ax = (max(1, int(round(r * rng.uniform(0.6, 1.4)))), max(1, int(round(r * rng.uniform(0.6, 1.4)))))
        cv2.ellipse(out, (int(round(x)), int(round(y))), ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return out.astype(bool)


def corrupt_mask(mask: np.ndarray, rng: np.random.Generator, *, max_radius: int = 3, max_holes: int = 2,
                 max_false_positives: int = 2, blob_size: tuple[float, float] = (0.03, 0.1), max_shift: int = 2,
                 coarse_prob: float = 0.3, coarse_factor: tuple[int, int] = (4, 8)) -> np.ndarray:
    """A copy of ``mask`` (bool [H, W]) with a real segmenter's kinds of error, drawn from ``rng``.

    Steps, in this order (each off when its parameter is 0):

    1. boundary: erode or dilate by r px, r uniform in [-max_radius, max_radius] (an elliptic disk of
       radius |r|; r < 0 erodes). With only this step on, the result lies inside the dilation by
       ``max_radius`` and contains the erosion by ``max_radius`` of the input.
    2. holes: 0..max_holes blobs (ellipses) removed, centred on random pixels of the mask.
    3. false positives: 0..max_false_positives blobs added, centred within one blob radius of a random
       boundary pixel of the mask (spill-over next to the person, as real segmenters make).
       Blob radii are ``blob_size`` (min, max) times the mask's bounding-box height (0 < min <= max <= 0.5).
    4. coarse: with probability coarse_prob, the mask is box-downsampled by an integer factor drawn
       from ``coarse_factor`` (min, max; 2 <= min <= max <= 32) and bilinearly upsampled back, then
       thresholded at 0.5 (blocky, rounded boundaries of a low-resolution segmenter).
    5. shift: the whole mask moves by integers (dx, dy), each uniform in [-max_shift, max_shift]
       (pixels moved in from outside are False).

    Bounds: max_radius, max_shift in [0, 32]; max_holes, max_false_positives in [0, 16];
    coarse_prob in [0, 1]. An empty mask stays empty through steps 1-3 and 5. Deterministic for a
    given rng state.
    """
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 2:
        got = f"dtype {mask.dtype}, shape {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ValueError(f"mask: expected a bool numpy array [H, W], got {got}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    for name, v, hi in (("max_radius", max_radius, 32), ("max_shift", max_shift, 32), ("max_holes", max_holes, 16),
                        ("max_false_positives", max_false_positives, 16)):
        if not is_int(v) or not 0 <= v <= hi:
            raise ValueError(f"{name}: expected an int in [0, {hi}], got {v!r}")
    if not (isinstance(blob_size, (tuple, list)) and len(blob_size) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in blob_size)
            and 0 < blob_size[0] <= blob_size[1] <= 0.5):
        raise ValueError(f"blob_size: expected (min, max) with 0 < min <= max <= 0.5, got {blob_size!r}")
    if not (isinstance(coarse_prob, (int, float)) and not isinstance(coarse_prob, bool) and 0 <= coarse_prob <= 1):
        raise ValueError(f"coarse_prob: expected a number in [0, 1], got {coarse_prob!r}")
    if not (isinstance(coarse_factor, (tuple, list)) and len(coarse_factor) == 2 and all(is_int(v) for v in coarse_factor)
            and 2 <= coarse_factor[0] <= coarse_factor[1] <= 32):
        raise ValueError(f"coarse_factor: expected (min, max) ints with 2 <= min <= max <= 32, got {coarse_factor!r}")

    h, w = mask.shape
    out = mask.copy()
    if max_radius > 0:
        r = int(rng.integers(-max_radius, max_radius + 1))
        if r != 0:
            op = cv2.dilate if r > 0 else cv2.erode
            # pixels beyond the border count as False for both operations
            out = op(out.astype(np.uint8), _disk(abs(r)), borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    ys, xs = np.nonzero(out)
    if len(ys):
        bh = float(ys.max() - ys.min() + 1)
        if max_holes > 0:
            n = int(rng.integers(0, max_holes + 1))
            k = rng.integers(0, len(ys), n)
            out &= ~_blobs(rng, (h, w), zip(xs[k], ys[k]), rng.uniform(*blob_size, n) * bh)
        if max_false_positives > 0:
            n = int(rng.integers(0, max_false_positives + 1))
            inner = cv2.erode(out.astype(np.uint8), _disk(1), borderType=cv2.BORDER_CONSTANT, borderValue=0)
            edge = out & ~inner.astype(bool)
            ey, ex = np.nonzero(edge)
            if n and len(ey):
                k = rng.integers(0, len(ey), n)
                radii = rng.uniform(*blob_size, n) * bh
                ang = rng.uniform(0, 2 * np.pi, n)
                cx = ex[k] + radii * np.cos(ang)
                cy = ey[k] + radii * np.sin(ang)
                out |= _blobs(rng, (h, w), zip(cx, cy), radii)
    if coarse_prob > 0 and rng.random() < coarse_prob:
        f = int(rng.integers(coarse_factor[0], coarse_factor[1] + 1))
        small = cv2.resize(out.astype(np.float32), (max(1, round(w / f)), max(1, round(h / f))),
                           interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    if max_shift > 0:
        dx, dy = (int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
        out = shift_mask(out, dx, dy)
    return out


if __name__ == "__main__":
    _serve()
