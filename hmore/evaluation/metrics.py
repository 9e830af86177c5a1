"""The metrics of ``hmore eval``: plain functions of flow, mask and skeleton tensors, their constants, and
:data:`DEFINITIONS` (the words written into the results; the package docstring, :mod:`hmore.evaluation`, says
the same at more length)."""
from __future__ import annotations

import math

import torch

import hmore_kernels as hk

from ..models.classical import FARNEBACK_PARAMS

__all__ = [
    "SEGMENTER_THRESHOLD", "LEAKAGE_DILATION", "EDGE_THRESHOLD", "BOUNDARY_TOLERANCE", "SKELETON_ANGLE_DEG",
    "SKELETON_RANGE", "SKELETON_MIN_OFFSET", "DEFINITIONS", "FARNEBACK_PARAMS",
    "endpoint_error", "body_flow_counts", "leakage_counts", "flow_edge_map", "boundary_counts", "f_score",
    "map_iou_counts", "classical_local_flow", "skeleton_satisfaction_counts",
]

SEGMENTER_THRESHOLD = 0.5  # a person pixel of MediaPipe's selfie mask, and of H-MoRe's subject map
LEAKAGE_DILATION = 5  # px
EDGE_THRESHOLD = 0.5  # px/px of normalised-Sobel flow gradient: a 1 px flow step is just an edge
BOUNDARY_TOLERANCE = 2.0  # px
SKELETON_ANGLE_DEG = 15.0
SKELETON_RANGE = (0.8, 1.2)
SKELETON_MIN_OFFSET = 0.5  # px

DEFINITIONS = {
    "body_pixels": "flow_valid: the subject mask of frame t",
    "world_epe": "mean |world_pred - world_gt| over the body pixels of the split (pooled over pixels)",
    "local_epe": ("mean |local_pred - local_gt| over body pixels (pooled). H-MoRe: its local_flow output; "
                  "classical methods: their flow minus its per-channel median over the whole frame (global-motion "
                  "compensation; they estimate no subject motion and no mask); zero flow: 0"),
    "px1": "share of body pixels with world-flow end-point error < 1 px",
    "px3": "share of body pixels with world-flow end-point error < 3 px",
    "background_leakage": (f"mean |world_pred| over pixels outside the body mask dilated by {LEAKAGE_DILATION} px "
                           "(3x3 square element), pooled over the split; the true world flow there is 0"),
    "boundary": (f"edges = hmore_kernels.flow_edges(world_pred, normalize=False) > {EDGE_THRESHOLD} px/px (Sobel/8 "
                 "magnitude over both channels); true boundary = hmore_kernels.mask_boundary(mask0, 'inner', 1); "
                 f"precision = share of edge pixels within {BOUNDARY_TOLERANCE} px of the boundary, recall = share of "
                 "boundary pixels within that distance of an edge pixel, counts summed over the split, "
                 "F = 2PR/(P+R)"),
    "occluded_body_share": ("share of body pixels of frame t hidden in t+1 by another part (self-occlusion) or "
                            "leaving the frame: the generator's occlusion map, for the record"),
    "pairs_per_s": "pairs / wall time of the flow computation alone, after one untimed warm-up batch",
    "skeleton_satisfaction": (f"among mask pixels matched to a skeleton point (hmore.losses.skeleton_targets + "
                              f"hmore_kernels.skeleton_offset_map, as in training) whose offset |k| >= "
                              f"{SKELETON_MIN_OFFSET} px: share with angle(u, k) <= {SKELETON_ANGLE_DEG} deg and "
                              f"{SKELETON_RANGE[0]}|k| <= |u| <= {SKELETON_RANGE[1]}|k|, pooled over pairs"),
    "flow_on_person": "sum |u| over the mask of frame t / sum |u| over the frame, pooled over pairs",
    "map_iou": ("IoU of the method's person map (H-MoRe: subject_map > 0.5; dis_mediapipe: MediaPipe's selfie mask "
                "> 0.5) with the true mask of frame t, intersections and unions summed over the split; on real clips "
                "(map_iou_selfie) the reference is MediaPipe's selfie mask > 0.5 of frame t"),
    "dis_mediapipe": ("DIS medium flow times MediaPipe's selfie mask (> 0.5) of frame t; its subject motion is the "
                      "mean flow inside the mask and its local flow (flow - that mean) inside the mask"),
    "hmore_frames_only": "the H-MoRe model given no person prior (prior=None), as the paper runs it",
    "classical": ("OpenCV on grayscale uint8 (cvtColor RGB2GRAY): DIS presets ultrafast/fast/medium; Farneback "
                  f"{FARNEBACK_PARAMS}"),
}

# ------------------------------------------------------------------------------------------ metrics
def endpoint_error(flow: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``|flow - target|`` per pixel: ``[B, 2, H, W]`` x2 -> ``[B, H, W]`` (float32 or the inputs' float dtype)."""
    return torch.linalg.vector_norm(flow - target, dim=1)


def body_flow_counts(flow: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> dict:
    """Sums for EPE and px1/px3 over the ``valid`` pixels.

    Args: flow, target ``[B, 2, H, W]`` float; valid ``[B, 1, H, W]`` bool.
    Returns: ``{"epe_sum", "pixels", "lt1", "lt3"}`` (Python floats / ints): summed end-point error, number of
    valid pixels, and how many of them have error < 1 px and < 3 px.
    """
    e = endpoint_error(flow.double(), target.double())
    v = valid[:, 0].bool()
    ev = e[v]
    return {"epe_sum": float(ev.sum()), "pixels": int(v.sum()), "lt1": int((ev < 1.0).sum()), "lt3": int((ev < 3.0).sum())}


def leakage_counts(flow: torch.Tensor, mask: torch.Tensor, dilation: int = LEAKAGE_DILATION) -> tuple[float, int]:
    """``(sum |flow|, pixels)`` over the pixels outside ``mask`` dilated by ``dilation`` px (3x3 square element
    applied ``dilation`` times; 0 = no dilation). flow ``[B, 2, H, W]``, mask ``[B, 1, H, W]`` bool."""
    m = mask.bool()
    if dilation > 0:
        m = m | hk.mask_boundary(m, "outer", dilation)
    out = ~m[:, 0]
    mag = torch.linalg.vector_norm(flow.double(), dim=1)
    return float(mag[out].sum()), int(out.sum())


def flow_edge_map(flow: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """Edges of a flow field: bool ``[B, 1, H, W]``, True where the un-normalised ``flow_edges`` magnitude
    (Sobel/8 over both channels, px per px) exceeds ``threshold``. flow ``[B, 2, H, W]`` float."""
    return hk.flow_edges(flow.float().contiguous(), None, None, normalize=False) > threshold


def boundary_counts(edges: torch.Tensor, boundary: torch.Tensor, tolerance: float = BOUNDARY_TOLERANCE) -> dict:
    """Matching counts of a predicted edge map against a true boundary map, with a distance tolerance.

    Args: edges, boundary ``[B, 1, H, W]`` bool; tolerance in px (Euclidean, inclusive).
    Returns: ``{"edge_matched", "edge_pixels", "boundary_matched", "boundary_pixels"}`` (ints): edge pixels within
    ``tolerance`` of a boundary pixel and their total; boundary pixels within ``tolerance`` of an edge pixel and
    their total. Sum these over a data set, then :func:`f_score`.
    """
    edges, boundary = edges.bool(), boundary.bool()
    d_true = hk.distance_transform(boundary)  # inf everywhere for an image with no boundary
    d_pred = hk.distance_transform(edges)
    return {"edge_matched": int((edges & (d_true <= tolerance)).sum()), "edge_pixels": int(edges.sum()),
            "boundary_matched": int((boundary & (d_pred <= tolerance)).sum()), "boundary_pixels": int(boundary.sum())}


def f_score(counts: dict) -> tuple[float, float, float]:
    """``(precision, recall, F)`` from summed :func:`boundary_counts`; an empty side gives 0 (no NaN)."""
    p = counts["edge_matched"] / counts["edge_pixels"] if counts["edge_pixels"] else 0.0
    r = counts["boundary_matched"] / counts["boundary_pixels"] if counts["boundary_pixels"] else 0.0
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def map_iou_counts(pred: torch.Tensor, mask: torch.Tensor) -> tuple[int, int]:
    """``(|pred & mask|, |pred | mask|)`` pixel counts of two bool ``[B, 1, H, W]`` person maps."""
    p, m = pred.bool(), mask.bool()
    return int((p & m).sum()), int((p | m).sum())


def classical_local_flow(flow: torch.Tensor) -> torch.Tensor:
    """A flow minus its per-image, per-channel median over the whole frame (global-motion compensation: the
    local flow given to methods without subject motion). ``[B, 2, H, W]`` -> same shape and dtype."""
    B, C = flow.shape[:2]
    med = torch.quantile(flow.reshape(B, C, -1).double(), 0.5, dim=-1)  # the mean of the two middles, as np.median
    return flow - med[:, :, None, None].to(flow.dtype)


def skeleton_satisfaction_counts(flow: torch.Tensor, offset: torch.Tensor, valid: torch.Tensor,
                                 angle_tol_deg: float = SKELETON_ANGLE_DEG, magnitude_range=SKELETON_RANGE,
                                 min_offset: float = SKELETON_MIN_OFFSET) -> tuple[int, int]:
    """``(satisfied, considered)``: considered = ``valid`` pixels with ``|k| >= min_offset``; satisfied = those whose
    flow ``u`` is within ``angle_tol_deg`` of ``k`` and ``lo |k| <= |u| <= hi |k|`` (a zero flow never is).
    flow, offset ``[B, 2, H, W]``; valid ``[B, 1, H, W]`` bool (``hmore_kernels.skeleton_offset_map``)."""
    u, k = flow.double(), offset.double()
    nu, nk = torch.linalg.vector_norm(u, dim=1), torch.linalg.vector_norm(k, dim=1)
    considered = valid[:, 0].bool() & (nk >= min_offset)
    cos = (u * k).sum(1) / (nu * nk).clamp_min(1e-300)
    lo, hi = magnitude_range
    ok = considered & (nu > 0) & (cos >= math.cos(math.radians(angle_tol_deg))) & (nu >= lo * nk) & (nu <= hi * nk)
    return int(ok.sum()), int(considered.sum())
