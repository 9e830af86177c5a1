"""Classical optical flow (OpenCV), in one place: the baselines of ``hmore eval`` and the warm start of Φ
(``HMoReConfig.flow_init = "dis_medium"``, docs/method.md [ours, option]: RAFT's ``flow_init`` from a classical estimate).

Every function works on grayscale uint8 frames (BT.601 luma of RGB, OpenCV's ``cvtColor``)."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import torch

__all__ = ["DIS_PRESETS", "FARNEBACK_PARAMS", "gray_u8", "classical_flow", "dis_flow_batch"]

DIS_PRESETS = {
    "dis_ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "dis_fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "dis_medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# the parameters of OpenCV's own Farnebäck sample and tutorial
FARNEBACK_PARAMS = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
                    "flags": 0}

_LOCAL = threading.local()  # a DIS object is stateful (not thread-safe): one per thread and preset


def _dis(method: str):
    cache = getattr(_LOCAL, "dis", None)
    if cache is None:
        cache = _LOCAL.dis = {}
    if method not in cache:
        cache[method] = cv2.DISOpticalFlow_create(DIS_PRESETS[method])
    return cache[method]


def gray_u8(frames: torch.Tensor) -> list[np.ndarray]:
    """``[B, 3, H, W]`` float RGB in [0, 1] (or uint8) -> list of ``[H, W]`` uint8 grayscale (OpenCV BT.601)."""
    if frames.dtype != torch.uint8:
        frames = (frames.detach().float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    rgb = frames.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    return [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in rgb]


def classical_flow(method: str, gray0: np.ndarray, gray1: np.ndarray, dis=None) -> np.ndarray:
    """Flow ``[H, W, 2]`` float32 (x, y px, frame 0 -> 1) of a classical method on grayscale uint8 ``[H, W]``.

    method: "dis_ultrafast" / "dis_fast" / "dis_medium" (``cv2.DISOpticalFlow``; pass a created object as
    ``dis`` to reuse it; by default one per thread is reused) or "farneback" (:data:`FARNEBACK_PARAMS`)."""
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(gray0, gray1, None, **FARNEBACK_PARAMS)
    if method not in DIS_PRESETS:
        raise ValueError(f"method: not a classical method {method!r}; available: farneback, {', '.join(DIS_PRESETS)}")
    return (dis if dis is not None else _dis(method)).calc(gray0, gray1, None)


def dis_flow_batch(frames0: torch.Tensor, frames1: torch.Tensor, method: str = "dis_medium") -> torch.Tensor:
    """Classical flow of a batch: ``[B, 3, H, W]`` RGB (float in [0, 1] or uint8) pairs -> ``[B, 2, H, W]``
    float32 px on the frames' device (computed on the CPU; no gradient)."""
    g0, g1 = gray_u8(frames0), gray_u8(frames1)
    flow = np.stack([classical_flow(method, a, b) for a, b in zip(g0, g1)])
    return torch.from_numpy(flow).permute(0, 3, 1, 2).contiguous().to(frames0.device)
