"""Flow visualisation: the Middlebury colour wheel and side-by-side panels written to PNG or MP4.

The colour coding is the one of Baker et al., "A Database and Evaluation Methodology for Optical Flow"
(IJCV 2011): the hue encodes the direction on a 55-colour wheel made of six linear ramps between the
primaries, red-yellow (15 steps), yellow-green (6), green-cyan (4), cyan-blue (11), blue-magenta (13) and
magenta-red (6); the saturation encodes the magnitude (zero flow is white, the normalising radius is
fully saturated, larger flows are drawn darker). In image coordinates (y down): rightward motion is red,
downward orange/yellow, leftward cyan, upward blue/violet.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from ._io import atomic_write_bytes, encode_png, temp_path_for

__all__ = ["make_colorwheel", "flow_to_color", "flow_legend", "mask_to_color", "draw_keypoints", "make_panel",
           "write_panel", "PanelWriter"]

_RAMPS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
# each ramp goes from one primary to the next; (channel that changes, rising or falling)
_RAMP_STEP = {"RY": (1, +1), "YG": (0, -1), "GC": (2, +1), "CB": (1, -1), "BM": (0, +1), "MR": (2, -1)}
_RAMP_START = {"RY": (255, 0, 0), "YG": (255, 255, 0), "GC": (0, 255, 0), "CB": (0, 255, 255),
               "BM": (0, 0, 255), "MR": (255, 0, 255)}


def make_colorwheel() -> np.ndarray:
    """The 55 wheel colours ``[55, 3]`` float64 RGB in 0..255, starting at red and going through yellow."""
    rows = []
    for name, n in _RAMPS:
        ch, sign = _RAMP_STEP[name]
        for i in range(n):
            c = list(_RAMP_START[name])
            frac = np.floor(255.0 * i / n)
            c[ch] = frac if sign > 0 else 255.0 - frac
            rows.append(c)
    return np.asarray(rows, dtype=np.float64)


_WHEEL = make_colorwheel()


def _as_hw2(flow) -> np.ndarray:
    try:
        import torch

        if isinstance(flow, torch.Tensor):
            flow = flow.detach().cpu().numpy()
            if flow.ndim == 3 and flow.shape[0] == 2 and flow.shape[2] != 2:
                flow = flow.transpose(1, 2, 0)
    except ImportError:  # pragma: no cover
        pass
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow: expected shape [H, W, 2] (or a torch tensor [2, H, W]), got {tuple(flow.shape)}")
    return flow.astype(np.float64)


def flow_to_color(flow, max_flow: float | None = None, bgr: bool = False) -> np.ndarray:
    """Colour-code a flow field.

    Args:
        flow: ``[H, W, 2]`` array (or a torch tensor ``[2, H, W]``), pixels, u right, v down.
        max_flow: the radius drawn fully saturated. ``None`` normalises per image by the largest finite
            radius (a zero flow stays white); a fixed value makes colours comparable across images and
            frames (use it for videos). Radii above it are drawn darker (x0.75), as in Middlebury's code.
        bgr: return BGR (OpenCV's order) instead of RGB.
    Returns:
        ``[H, W, 3]`` uint8. Non-finite flow is drawn black.
    """
    f = _as_hw2(flow)
    finite = np.isfinite(f).all(axis=2)
    u = np.where(finite, f[..., 0], 0.0)
    v = np.where(finite, f[..., 1], 0.0)
    rad = np.hypot(u, v)
    if max_flow is None:
        norm = rad.max() if rad.size else 0.0
    else:
        if not (np.isfinite(max_flow) and max_flow > 0):
            raise ValueError(f"max_flow: expected a positive finite number or None, got {max_flow!r}")
        norm = float(max_flow)
    norm = max(norm, 1e-12)
    r = rad / norm
    n = len(_WHEEL)
    a = np.arctan2(-v, -u) / np.pi  # in [-1, 1]; rightward motion lands on the wheel's red end
    fk = (a + 1.0) / 2.0 * (n - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % n
    w = (fk - k0)[..., None]
    col = ((1.0 - w) * _WHEEL[k0 % n] + w * _WHEEL[k1]) / 255.0
    inside = (r <= 1.0)[..., None]
    col = np.where(inside, 1.0 - r[..., None] * (1.0 - col), col * 0.75)
    out = np.floor(255.0 * col + 0.5).clip(0, 255).astype(np.uint8)
    out[~finite] = 0
    return out[..., ::-1].copy() if bgr else out


def flow_legend(size: int = 33) -> np.ndarray:
    """The colour-wheel key ``[size, size, 3]`` uint8 RGB: the colour of a flow pointing from the centre to
    each pixel, fully saturated on the inscribed circle (white outside it). ``size`` >= 5."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 5:
        raise ValueError(f"size: expected an int >= 5, got {size!r}")
    r = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - r
    img = flow_to_color(np.stack([xx, yy], axis=2), max_flow=r)
    img[np.hypot(xx, yy) > r] = 255
    return img


def mask_to_color(mask) -> np.ndarray:
    """A bool/uint8 mask ``[H, W]`` as a white-on-black ``[H, W, 3]`` uint8 image; a float map in [0, 1]
    (a soft subject map) is drawn as grey levels."""
    m = np.asarray(mask)
    if np.issubdtype(m.dtype, np.floating):
        g = np.floor(np.nan_to_num(m, nan=0.0).clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        g = (m > 0).astype(np.uint8) * 255
    return np.repeat(g[..., None], 3, axis=2)


def draw_keypoints(frame: np.ndarray, keypoints, conf, bones, min_conf: float = 0.3) -> np.ndarray:
    """Draw skeletons ``keypoints [P, J, 2]`` (x, y px) on a copy of an RGB ``frame``; joints below min_conf skipped."""
    img = np.ascontiguousarray(frame.copy())
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, np.shape(keypoints)[-2], 2)
    cf = np.asarray(conf, dtype=np.float64).reshape(kp.shape[:2])
    for p in range(kp.shape[0]):
        for a, b in bones:
            if cf[p, a] >= min_conf and cf[p, b] >= min_conf:
                cv2.line(img, tuple(int(round(x)) for x in kp[p, a]), tuple(int(round(x)) for x in kp[p, b]),
                         (0, 255, 0), 1, cv2.LINE_AA)
        for j in range(kp.shape[1]):
            if cf[p, j] >= min_conf:
                cv2.circle(img, tuple(int(round(x)) for x in kp[p, j]), 2, (255, 0, 0), -1, cv2.LINE_AA)
    return img


def make_panel(frame=None, world_flow=None, local_flow=None, mask=None, max_flow: float | None = None,
               labels: bool = True, mask_label: str = "mask", legend: bool = False) -> np.ndarray:
    """Side by side: frame | world flow | local flow | mask (those given), ``[H, n*W, 3]`` uint8 RGB.

    ``frame`` is ``[H, W, 3]`` uint8 RGB; flows ``[H, W, 2]``; ``mask`` ``[H, W]`` (bool, or float in [0, 1]
    drawn as grey). Both flows use the same ``max_flow`` (``None``: the larger of the two per-image maxima)
    so their colours compare. ``mask_label`` names the last tile; ``legend`` draws the colour-wheel key
    (:func:`flow_legend`) in the bottom-right corner of the first flow tile, captioned with ``max_flow``.
    """
    tiles, names = [], []
    if max_flow is None:
        radii = [np.nanmax(np.hypot(*_as_hw2(f).transpose(2, 0, 1))) for f in (world_flow, local_flow) if f is not None]
        radii = [r for r in radii if np.isfinite(r) and r > 0]
        max_flow = max(radii) if radii else 1.0
    if frame is not None:
        fr = np.asarray(frame)
        if fr.ndim != 3 or fr.shape[2] != 3 or fr.dtype != np.uint8:
            raise ValueError(f"frame: expected [H, W, 3] uint8, got {fr.shape} {fr.dtype}")
        tiles.append(fr)
        names.append("frame")
    for name, f in (("world flow", world_flow), ("local flow", local_flow)):
        if f is not None:
            tiles.append(flow_to_color(f, max_flow=max_flow))
            names.append(name)
    if mask is not None:
        tiles.append(mask_to_color(mask))
        names.append(mask_label)
    if not tiles:
        raise ValueError("make_panel: nothing to draw (give at least one of frame, world_flow, local_flow, mask)")
    h, w = tiles[0].shape[:2]
    for name, t in zip(names, tiles):
        if t.shape[:2] != (h, w):
            raise ValueError(f"make_panel: {name} is {t.shape[1]}x{t.shape[0]}, expected {w}x{h} like the first tile")
    if labels and h >= 48:
        tiles = [t.copy() for t in tiles]
        for name, t in zip(names, tiles):
            cv2.putText(t, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2, cv2.LINE_AA)
            cv2.putText(t, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    flow_tiles = [i for i, n in enumerate(names) if n.endswith("flow")]
    if legend and flow_tiles and min(h, w) >= 48:
        t = tiles[flow_tiles[0]] = tiles[flow_tiles[0]].copy()
        s = max(min(h, w) // 4, 17) | 1
        key = flow_legend(s)
        t[h - s - 12:h - 12, w - s - 2:w - 2] = key  # 12 px below it for the caption
        text = f"{max_flow:.3g} px"
        cv2.putText(t, text, (w - s - 2, h - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(t, text, (w - s - 2, h - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate(tiles, axis=1)


def write_panel(path: str, frame=None, world_flow=None, local_flow=None, mask=None, max_flow=None) -> np.ndarray:
    """Write one :func:`make_panel` image to ``path`` (PNG), atomically; returns the panel (RGB)."""
    panel = make_panel(frame, world_flow, local_flow, mask, max_flow)
    atomic_write_bytes(path, encode_png(panel[..., ::-1], path))
    return panel


class PanelWriter:
    """Write a sequence of panels to an ``.mp4`` (OpenCV's ``mp4v`` codec) or numbered PNGs.

    ``path`` ending in ``.mp4``: one video, written to a temporary file and moved into place by
    :meth:`close` (an interrupted run leaves no half-written video). ``.png``: panel i goes to
    ``<stem>_<i:06d>.png`` (or to ``path`` itself when only one panel is added). Use as a context manager;
    ``max_flow`` fixed across frames keeps colours comparable (``None``: per panel).
    """

    def __init__(self, path: str, fps: float = 10.0, max_flow: float | None = None, mask_label: str = "mask",
                 legend: bool = False):
        self.path = os.fspath(path)
        self.mask_label, self.legend = mask_label, legend
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in (".mp4", ".png"):
            raise ValueError(f"{self.path}: expected a .mp4 or .png path")
        self.video = ext == ".mp4"
        self.fps, self.max_flow = float(fps), max_flow
        self._writer = None
        self._tmp = None
        self._size = None
        self._pngs: list[np.ndarray] = []
        self.count = 0

    def add(self, frame=None, world_flow=None, local_flow=None, mask=None) -> None:
        panel = make_panel(frame, world_flow, local_flow, mask, self.max_flow, mask_label=self.mask_label,
                           legend=self.legend)
        if self.video:
            # H.264-style encoders want even sizes; pad by one row/column of black if needed
            h, w = panel.shape[:2]
            panel = np.pad(panel, ((0, h % 2), (0, w % 2), (0, 0)))
            if self._writer is None:
                self._size = panel.shape[1], panel.shape[0]
                self._tmp = temp_path_for(self.path)
                self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
                if not self._writer.isOpened():
                    self._abort()
                    raise RuntimeError(f"{self.path}: OpenCV cannot open an MP4 writer (no FFMPEG backend?)")
            if (panel.shape[1], panel.shape[0]) != self._size:
                raise ValueError(f"{self.path}: panel {self.count} has size {panel.shape[1]}x{panel.shape[0]}, "
                                 f"the video is {self._size[0]}x{self._size[1]}")
            self._writer.write(np.ascontiguousarray(panel[..., ::-1]))
        else:
            self._pngs.append(panel)
        self.count += 1

    def _abort(self):
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None

    def close(self) -> None:
        if self.video:
            if self._writer is None:
                raise ValueError(f"{self.path}: no panel was added")
            self._writer.release()
            self._writer = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        else:
            if not self._pngs:
                raise ValueError(f"{self.path}: no panel was added")
            stem = os.path.splitext(self.path)[0]
            paths = [self.path] if len(self._pngs) == 1 else [f"{stem}_{i:06d}.png" for i in range(len(self._pngs))]
            for p, img in zip(paths, self._pngs):
                atomic_write_bytes(p, encode_png(img[..., ::-1], p))
            self._pngs = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._abort()
        return False
