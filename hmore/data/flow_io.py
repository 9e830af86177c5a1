"""Optical-flow file I/O: Middlebury ``.flo`` and KITTI 16-bit ``.png``.

Flows are numpy arrays ``[H, W, 2]`` float32, channel 0 = u (x, right), channel 1 = v (y, down), in
pixels, the displacement of pixel (x, y) of frame t to frame t+1.

Middlebury ``.flo`` (Baker et al., "A Database and Evaluation Methodology for Optical Flow"): the float32
tag 202021.25 (bytes ``PIEH``), int32 width, int32 height, then ``H*W*2`` float32 values row by row with u
and v interleaved, all little-endian. The round trip is bit-exact for every float32 value (NaN/inf
included).

KITTI flow ``.png`` (Geiger et al., KITTI 2012/2015 devkit): a 3-channel 16-bit PNG whose first channel
(R) holds ``u * 64 + 2**15``, the second (G) ``v * 64 + 2**15`` and the third (B) 1 where the flow is valid,
0 elsewhere. Values are therefore **quantised to 1/64 px** and limited to **[-512, 511.984375] px**;
a flow on that grid inside that range round-trips exactly. Invalid pixels are written as (0, 0, 0), as
KITTI's own files are, and read back as flow 0.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from ._io import atomic_write_bytes, encode_png, read_png

__all__ = ["read_flo", "write_flo", "read_kitti_png", "write_kitti_png", "FLO_TAG", "KITTI_RANGE"]

FLO_TAG = 202021.25
_FLO_TAG_BYTES = np.array([FLO_TAG], "<f4").tobytes()  # b"PIEH"
_MAX_DIM = 1 << 20
KITTI_RANGE = (-(2**15) / 64.0, (2**16 - 1 - 2**15) / 64.0)  # (-512.0, 511.984375)


def _check_flow(flow, name: str = "flow") -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{name}: expected shape [H, W, 2], got {tuple(flow.shape)}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise TypeError(f"{name}: expected a floating-point array, got {flow.dtype}")
    return flow


def write_flo(path: str, flow: np.ndarray) -> None:
    """Write ``flow`` ``[H, W, 2]`` (float, stored as float32) to a Middlebury ``.flo`` file, atomically."""
    flow = _check_flow(flow)
    h, w = flow.shape[:2]
    header = _FLO_TAG_BYTES + np.array([w, h], "<i4").tobytes()
    atomic_write_bytes(path, header + np.ascontiguousarray(flow, dtype="<f4").tobytes())


def read_flo(path: str) -> np.ndarray:
    """Read a Middlebury ``.flo`` file into ``[H, W, 2]`` float32; errors name the file and the problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: flow file not found")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 12:
        raise ValueError(f"{path}: not a .flo file (only {len(data)} bytes, the header alone is 12)")
    if data[:4] != _FLO_TAG_BYTES:
        tag = np.frombuffer(data[:4], "<f4")[0]
        raise ValueError(f"{path}: not a .flo file (tag {tag!r}, expected {FLO_TAG})")
    w, h = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    if not (0 <= w <= _MAX_DIM and 0 <= h <= _MAX_DIM):
        raise ValueError(f"{path}: implausible .flo size {w}x{h}")
    expected = 12 + 4 * 2 * w * h
    if len(data) != expected:
        raise ValueError(f"{path}: .flo of size {w}x{h} needs {expected} bytes, file has {len(data)} (truncated or corrupt)")
    return np.frombuffer(data, "<f4", offset=12).reshape(h, w, 2).astype(np.float32)


def write_kitti_png(path: str, flow: np.ndarray, valid: np.ndarray | None = None, clip: bool = False) -> None:
    """Write ``flow`` ``[H, W, 2]`` as a KITTI 16-bit flow PNG, atomically.

    Args:
        flow: ``[H, W, 2]`` float, pixels.
        valid: ``[H, W]`` bool (default: where the flow is finite). Non-finite flow is always invalid.
        clip: values outside :data:`KITTI_RANGE` raise ValueError unless ``clip=True`` (then they saturate).
    Values are rounded to the nearest 1/64 px (half to even).
    """
    flow = _check_flow(flow)
    finite = np.isfinite(flow).all(axis=2)
    if valid is None:
        valid = finite
    else:
        valid = np.asarray(valid)
        if valid.shape != flow.shape[:2]:
            raise ValueError(f"valid: expected shape {flow.shape[:2]} to match flow, got {valid.shape}")
        valid = valid.astype(bool) & finite
    q = np.rint(np.where(valid[..., None], flow.astype(np.float64), 0.0) * 64.0) + 2**15
    if not clip and valid.any():
        qv = q[valid]
        if qv.min() < 0 or qv.max() > 65535:
            bad = flow[valid]
            raise ValueError(
                f"{path}: flow range [{bad.min():.3f}, {bad.max():.3f}] px exceeds KITTI's "
                f"[{KITTI_RANGE[0]}, {KITTI_RANGE[1]}]; pass clip=True to saturate")
    q = np.clip(q, 0, 65535).astype(np.uint16)
    q[~valid] = 0
    # OpenCV writes channels in BGR order: B = valid, G = v, R = u.
    img = np.stack([valid.astype(np.uint16), q[..., 1], q[..., 0]], axis=2)
    atomic_write_bytes(path, encode_png(img, path))


def read_kitti_png(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI flow PNG: ``(flow [H, W, 2] float32, valid [H, W] bool)``; invalid pixels read as 0."""
    img = read_png(path, cv2.IMREAD_UNCHANGED, what="KITTI flow PNG")
    if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{path}: a KITTI flow PNG is 3-channel 16-bit, got shape {img.shape}, dtype {img.dtype}")
    valid = img[..., 0] > 0
    flow = (img[..., [2, 1]].astype(np.float32) - 2**15) / 64.0
    flow[~valid] = 0.0
    return flow, valid
