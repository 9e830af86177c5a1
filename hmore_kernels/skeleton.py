"""The skeleton family (docs/ops.md §4, §5): points sampled on the bones of a skeleton, and the per-pixel match
of a subject mask to them -- the skeleton constraint of H-MoRe's training signal (docs/method.md).

* :func:`skeleton_points` samples ``n`` points evenly on every bone, confidence interpolated.
* :func:`skeleton_match` assigns every mask pixel the point of least confidence-weighted distance.
* :func:`skeleton_offset_map` turns that match into the offset map ``K_{t+1} - K_t`` (fused, one pass).

Keypoint layouts (:data:`COCO17`, the default; :data:`BLAZEPOSE33`; :data:`H36M17`) and
:func:`convert_keypoints` come from :mod:`hmore_kernels.layouts`. Every op takes ``backend=`` ("auto",
"reference", "cpu", "cuda", "triton"); see :func:`hmore_kernels.available_backends`. Pixel (i, j) has
x = j, y = i.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _validate as _v
from ._backends import ops as _ops
from ._backends import pick as _pick
from ._validate import check_int as _check_int
from ._validate import tensor as _tensor
from .layouts import BLAZEPOSE33, COCO17, H36M17, LAYOUTS, Layout, convert_keypoints  # noqa: F401
from .reference import skeleton as _ref

__all__: list[str] = ["convert_keypoints", "skeleton_points", "skeleton_match", "skeleton_offset_map"]


def _check_points(pts, pn, conf, cn, what):
    _tensor(pts, pn)
    _tensor(conf, cn)
    if pts.dim() != 3 or pts.shape[2] != 2:
        raise ValueError(f"{pn}: expected a 3-D tensor [B, {what}, 2] of (x, y), got shape {tuple(pts.shape)}")
    if not pts.is_floating_point():
        raise TypeError(f"{pn}: expected a floating-point tensor, got {pts.dtype}")
    if conf.dim() != 2 or tuple(conf.shape) != tuple(pts.shape[:2]):
        raise ValueError(
            f"{cn}: expected shape [{pts.shape[0]}, {pts.shape[1]}] to match {pn}, got {tuple(conf.shape)}"
        )
    if conf.dtype != pts.dtype:
        raise TypeError(f"{cn}: expected dtype {pts.dtype} like {pn}, got {conf.dtype}")
    _v.check_same_device(conf, cn, pts, pn)


def _bones_tensor(bones, J: int, device) -> torch.Tensor:
    """bones (a Layout, a sequence of (a, b) pairs or an integer tensor [E, 2]) -> int64 [E, 2] on device.
    Pairs are range-checked here; a tensor's values are checked by the op (no host sync here)."""
    if bones is None:
        bones = COCO17
    if isinstance(bones, Layout):
        bones = bones.bones
    if isinstance(bones, torch.Tensor):
        if bones.dim() != 2 or bones.shape[1] != 2:
            raise ValueError(f"bones: expected a 2-D tensor [E, 2] of joint indices, got shape {tuple(bones.shape)}")
        if bones.is_floating_point() or bones.is_complex() or bones.dtype == torch.bool:
            raise TypeError(f"bones: expected an integer tensor (int64), got {bones.dtype}")
        return bones.to(device=device, dtype=torch.long)
    if not isinstance(bones, Sequence):
        raise TypeError(f"bones: expected a Layout, a sequence of (a, b) joint-index pairs or a tensor [E, 2], "
                        f"got {type(bones).__name__}")
    pairs = []
    for e, pair in enumerate(bones):
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"bones: expected (a, b) pairs of joint indices, got {pair!r} as bone {e}")
        for v in pair:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"bones: expected int joint indices, got {v!r} in bone {e}")
            if not 0 <= v < J:
                raise ValueError(f"bones: expected joint indices in [0, {J}) (J = {J} joints), got {v} in bone {e}")
        pairs.append((int(pair[0]), int(pair[1])))
    return torch.tensor(pairs, dtype=torch.long, device=device).view(len(pairs), 2)


def skeleton_points(
    joints: torch.Tensor,
    conf: torch.Tensor,
    bones=None,
    points_per_bone: int = 8,
    *,
    backend: str = "auto",
):
    """``n = points_per_bone`` points evenly spaced on every bone, both ends included.

    Point ``k`` of bone ``(a, b)`` is ``s_k * joint_a + t_k * joint_b`` with ``t_k = k / (n - 1)`` and
    ``s_k = (n - 1 - k) / (n - 1)``, so its ends are exactly the joints; ``n = 1`` gives the bone's
    midpoint. A point's confidence is interpolated the same way between its bone's end joints.

    Args:
        joints: ``[B, J, 2]`` (x, y) in pixels, float32 (float64 on reference/cpu, float16/bfloat16 on GPU
            backends).
        conf: ``[B, J]`` confidences in [0, 1], the dtype of ``joints``.
        bones: a :class:`~hmore_kernels.layouts.Layout`, a sequence of ``(a, b)`` joint-index pairs, or an
            integer tensor ``[E, 2]``; default ``COCO17.bones`` (16 bones).
        points_per_bone: ``n >= 1`` (default 8).
    Returns:
        ``(points [B, E*n, 2], conf [B, E*n], bone int64 [E*n])`` -- bone-major (the points of bone e are
        ``e*n .. e*n + n - 1``), ``bone`` the index of each point's bone. Differentiable in ``joints`` and
        ``conf`` (the backward is a per-joint gather: deterministic, no atomics).
    """
    _check_points(joints, "joints", conf, "conf", "J")
    points_per_bone = _check_int(points_per_bone, "points_per_bone", 1)
    bt = _bones_tensor(bones, joints.shape[1], joints.device)
    if bt.shape[0] * points_per_bone > _v.INT32_MAX:
        raise ValueError(f"points_per_bone: expected E * points_per_bone <= {_v.INT32_MAX} (point indices are "
                         f"32-bit), got {bt.shape[0]} * {points_per_bone}")
    b = _pick("skeleton", "skeleton_points", backend, joints.device, joints.dtype)
    if b == "reference":
        if isinstance(bones, torch.Tensor) and bt.numel() and not bool(((bt >= 0) & (bt < joints.shape[1])).all()):
            raise ValueError(f"bones: expected joint indices in [0, {joints.shape[1]}), got values from "
                             f"{int(bt.min())} to {int(bt.max())}")
        return _ref.skeleton_points(joints, conf, bt, points_per_bone)
    return _ops(b).skeleton_points(joints, conf, bt, points_per_bone)


def _check_match(pts, pn, conf, mask, eps, op, pts1=None):
    _check_points(pts, pn, conf, "conf", "Q")
    if pts1 is not None:
        _tensor(pts1, "points_t1")
        if pts1.shape != pts.shape:
            raise ValueError(f"points_t1: expected shape {tuple(pts.shape)} like {pn}, got {tuple(pts1.shape)}")
        if pts1.dtype != pts.dtype:
            raise TypeError(f"points_t1: expected dtype {pts.dtype} like {pn}, got {pts1.dtype}")
        if pts1.device != pts.device:
            raise ValueError(f"points_t1: expected a tensor on {pts.device} like {pn}, got {pts1.device}")
    _tensor(mask, "mask")
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask: expected a 4-D tensor [B, 1, H, W], got shape {tuple(mask.shape)}")
    if mask.shape[0] != pts.shape[0]:
        raise ValueError(f"mask: expected batch size {pts.shape[0]} like {pn}, got shape {tuple(mask.shape)}")
    if not (mask.dtype in (torch.bool, torch.uint8) or mask.is_floating_point()):
        raise TypeError(f"mask: expected a bool, uint8 or floating-point tensor, got {mask.dtype}")
    _v.check_same_device(mask, "mask", pts, pn)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 < eps < 0.5:
        raise ValueError(f"eps: expected a float in (0, 0.5), got {eps!r}")
    for name, t in ((pn, pts), ("points_t1", pts1), ("conf", conf), ("mask", mask)):
        if t is not None and t.requires_grad:
            raise ValueError(f"{name}: {op} produces training targets and has no gradient; pass a tensor that "
                             f"does not require grad (e.g. {name}.detach())")


def skeleton_match(
    points: torch.Tensor, conf: torch.Tensor, mask: torch.Tensor, eps: float = 1e-4, *, backend: str = "auto"
) -> torch.Tensor:
    """For every mask pixel, the skeleton point of least confidence-weighted distance.

    Pixel ``p = (x = j, y = i)`` inside the mask gets ``argmin_q |p - q| * (-log min(c_q, 1 - eps))`` over
    the points with ``c_q > eps`` (plain Euclidean distance), ties to the lowest index. The cost is
    evaluated in one pinned order on every backend (float32; float64 for float64 points on
    reference/cpu; float16/bfloat16 points are converted to float32 on GPU backends), so all backends
    return the same indices, ties and near-ties included (the weights ``-log min(c, 1 - eps)`` are
    computed by PyTorch in float64 on the tensors' device and rounded; a last-bit difference between the
    CPU's and the GPU's float64 log survives that rounding with probability ~2^-29 per point). Points on
    shared joints are duplicated by :func:`skeleton_points`, so exact ties are common: the lowest index
    wins. A point whose cost is NaN (NaN coordinates) never matches. The fast backends stream over the points per pixel: no ``[B, H*W, Q]`` matrix.

    Args:
        points: ``[B, Q, 2]`` (x, y) in pixels, e.g. from :func:`skeleton_points`.
        conf: ``[B, Q]`` confidences, the dtype of ``points``.
        mask: ``[B, 1, H, W]`` bool, uint8 or float; nonzero = inside (threshold soft masks first).
        eps: in (0, 0.5), default 1e-4: points with ``c <= eps`` are ignored, and ``1 - eps`` caps the
            confidence so the weight stays positive.
    Returns:
        ``idx`` int64 ``[B, H, W]``: the matched point, -1 outside the mask or when no point has
        ``c > eps``. No gradient: raises ``ValueError`` if an input requires grad.
    """
    _check_match(points, "points", conf, mask, eps, "skeleton_match")
    b = _pick("skeleton", "skeleton_match", backend, points.device, points.dtype)
    if b == "reference":
        return _ref.skeleton_match(points, conf, mask, float(eps))
    return _ops(b).skeleton_match(points, conf, mask, float(eps))


def skeleton_offset_map(
    points_t: torch.Tensor,
    points_t1: torch.Tensor,
    conf: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 1e-4,
    *,
    backend: str = "auto",
):
    """The skeleton offset map ``K = K_{t+1} - K_t`` of the matched point at every mask pixel (H-MoRe's
    skeleton constraint), fused with :func:`skeleton_match` (one pass, the index map is never stored).

    Args:
        points_t, points_t1: ``[B, Q, 2]`` the same skeleton points at frames t and t+1.
        conf: ``[B, Q]`` confidences of ``points_t`` (the match uses frame t).
        mask: ``[B, 1, H, W]`` subject mask of frame t; nonzero = inside.
        eps: as in :func:`skeleton_match`.
    Returns:
        ``(offset [B, 2, H, W], valid bool [B, 1, H, W])``: ``offset`` = ``points_t1[idx] - points_t[idx]``
        (channel 0 = x) where ``valid`` (``idx >= 0``), 0 elsewhere; dtype of ``points_t`` (on GPU,
        float16/bfloat16 differences are computed in float32, then rounded). No gradient.
    """
    _check_match(points_t, "points_t", conf, mask, eps, "skeleton_offset_map", pts1=points_t1)
    b = _pick("skeleton", "skeleton_offset_map", backend, points_t.device, points_t.dtype)
    if b == "reference":
        return _ref.skeleton_offset_map(points_t, points_t1, conf, mask, float(eps))
    return _ops(b).skeleton_offset_map(points_t, points_t1, conf, mask, float(eps))
