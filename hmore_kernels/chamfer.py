"""Chamfer distances and the H-MoRe boundary term (docs/ops.md §3, §5): nearest_neighbors, chamfer_distance,
patch_centroids, patch_centroid_chamfer, boundary_chamfer.

Every function takes ``backend=`` ("auto", "reference", "cpu", "cuda", "triton"); see
:func:`hmore_kernels.available_backends`. Point clouds are ``[B, N, D]`` (D = 2 specialised, any D >= 1
works) with optional ``lengths [B]`` int64 for ragged batches; maps are ``[B, 1, H, W]`` with pixel
(i, j) at x = j, y = i. Conventions shared by every backend (ties, padding, empty clouds) are in
:mod:`hmore_kernels.reference.chamfer`.
"""
from __future__ import annotations

import math

import torch

from . import _validate as _v
from ._backends import ops as _ops
from ._backends import pick as _pick
from ._validate import check_bool as _check_bool
from ._validate import check_choice as _check_choice
from ._validate import check_int as _check_int
from ._validate import deterministic as _deterministic
from ._validate import tensor as _tensor
from .reference import chamfer as _ref

__all__ = ["nearest_neighbors", "chamfer_distance", "patch_centroids", "patch_centroid_chamfer", "boundary_chamfer"]

_REDUCTIONS = ("mean", "sum", "none")
_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check_points(x, name):
    _tensor(x, name)
    if x.dim() != 3:
        raise ValueError(f"{name}: expected a 3-D tensor [B, N, D], got shape {tuple(x.shape)}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name}: expected a floating-point tensor (float32, float64, float16, bfloat16), got {x.dtype}")


def _check_pair(x, y):
    _check_points(x, "x")
    _check_points(y, "y")
    if y.device != x.device:
        raise ValueError(f"y: expected a tensor on {x.device} like x, got {y.device}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y: expected batch size {x.shape[0]} like x, got shape {tuple(y.shape)}")
    if y.shape[2] != x.shape[2]:
        raise ValueError(f"y: expected D = {x.shape[2]} like x, got shape {tuple(y.shape)}")
    if x.shape[2] < 1 and x.shape[1] * y.shape[1] > 0:
        raise ValueError(f"x: expected D >= 1, got shape {tuple(x.shape)}")
    if y.dtype != x.dtype:
        raise TypeError(f"y: expected dtype {x.dtype} like x, got {y.dtype}")


def _check_lengths(lengths, name, x, N):
    """[B] int64 in [0, N]: checked on the host for CPU tensors, by a device-side assertion on a GPU
    (no host synchronisation); never clamped (docs/ops.md, "Non-finite values and value checks")."""
    if lengths is None:
        return
    _tensor(lengths, name)
    B = x.shape[0]
    if lengths.dim() != 1 or lengths.shape[0] != B:
        raise ValueError(f"{name}: expected shape [{B}], got {tuple(lengths.shape)}")
    if lengths.dtype != torch.int64:
        raise TypeError(f"{name}: expected int64, got {lengths.dtype}")
    if lengths.device != x.device:
        raise ValueError(f"{name}: expected a tensor on {x.device} like x, got {lengths.device}")
    if B == 0:
        return
    if lengths.device.type == "cpu":
        if not _v.compiling():
            lo, hi = int(lengths.min()), int(lengths.max())
            if lo < 0 or hi > N:
                raise ValueError(f"{name}: expected values in [0, {N}], got min {lo}, max {hi}")
    else:
        _v.check_values(((lengths >= 0) & (lengths <= N)).all(), f"{name}: expected values in [0, {N}]")


def _check_weights(w, name, x, N):
    if w is None:
        return
    _tensor(w, name)
    B = x.shape[0]
    if w.dim() != 2 or tuple(w.shape) != (B, N):
        raise ValueError(f"{name}: expected shape [{B}, {N}], got {tuple(w.shape)}")
    if not w.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {w.dtype}")
    if w.device != x.device:
        raise ValueError(f"{name}: expected a tensor on {x.device} like x, got {w.device}")
    _check_nonnegative(w, name, "weights")


def _check_nonnegative(w, name, what):
    """No negative value (NaN passes: it propagates, docs/ops.md). Host check on CPU, device assertion on a GPU."""
    if w.dtype == torch.bool or w.numel() == 0:
        return
    if w.device.type == "cpu":
        # One vectorised min instead of `(w < 0).any()` (a bool temporary, then a second pass): the
        # latter tripled patch_centroid_chamfer's time at 368x496. A NaN min hides negatives, so only
        # then is every value compared.
        if not _v.compiling():
            lo = w.detach().amin()
            if bool(lo < 0) or (bool(lo.isnan()) and bool((w.detach() < 0).any())):
                raise ValueError(f"{name}: expected {what} >= 0, got min {float(w.detach().nan_to_num(0.0).min())}")
    else:
        _v.check_values(~(w.detach() < 0).any(), f"{name}: expected {what} >= 0")


def _check_map(t, name, allow_bool=True):
    _tensor(t, name)
    if t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"{name}: expected a 4-D tensor [B, 1, H, W], got shape {tuple(t.shape)}")
    if not (t.dtype in _FLOATS or (allow_bool and t.dtype == torch.bool)):
        raise TypeError(f"{name}: expected a bool or floating-point tensor, got {t.dtype}")


def nearest_neighbors(x, y, x_lengths=None, y_lengths=None, *, backend: str = "auto"):
    """Nearest point of ``y`` for every point of ``x`` (exact, brute force in cache-sized tiles).

    Args:
        x: ``[B, N, D]`` float (float16/bfloat16 on GPU backends); y: ``[B, M, D]``, same dtype and D.
        x_lengths, y_lengths: optional ``[B]`` int64 in ``[0, N]`` / ``[0, M]``: points past them are ignored.
    Returns:
        ``(dist [B, N], idx [B, N] int64)``: squared L2 distance (float32 for half inputs) and index of the
        nearest point; ties go to the lowest index; 0 / -1 past ``x_lengths`` and where the y cloud is
        empty. Not differentiable (use :func:`chamfer_distance`).
    """
    _check_pair(x, y)
    _check_lengths(x_lengths, "x_lengths", x, x.shape[1])
    _check_lengths(y_lengths, "y_lengths", x, y.shape[1])
    b = _pick("chamfer", "nearest_neighbors", backend, x.device, x.dtype)
    if b == "reference":
        return _ref.nearest_neighbors(x, y, x_lengths, y_lengths)
    return _ops(b).nearest_neighbors(x.detach(), y.detach(), x_lengths, y_lengths)


def chamfer_distance(
    x,
    y,
    x_lengths=None,
    y_lengths=None,
    x_weights=None,
    y_weights=None,
    squared: bool = True,
    reduction: str = "mean",
    bidirectional: bool = True,
    *,
    deterministic: bool | None = None,
    backend: str = "auto",
):
    """Chamfer distance between two batches of point clouds; both directions in one pass over the tiles.

    Per direction ``D_x = sum_i w_i d_i / sum_i w_i`` ("mean", "none") or ``sum_i w_i d_i`` ("sum"), with
    ``d_i`` the squared (``squared=True``, default) or plain L2 distance of ``x_i`` to its nearest point of
    ``y``; a cloud's value is ``D_x + D_y`` (``D_x`` alone when ``bidirectional=False``); an empty cloud
    (or all-zero weights) contributes 0. Like pytorch3d's ``chamfer_distance`` (point_reduction="mean").

    Args:
        x: ``[B, N, D]``, y: ``[B, M, D]`` float (float16/bfloat16 on GPU backends).
        x_lengths, y_lengths: optional ``[B]`` int64 (ragged batches).
        x_weights, y_weights: optional ``[B, N]`` / ``[B, M]`` float weights >= 0.
        squared: squared L2 (default) or plain L2 (gradient 0 at distance 0).
        reduction: "mean" (over the batch, default), "sum" or "none" (``[B]``).
        bidirectional: add the y -> x direction (default True).
        deterministic: backward without float atomics (default: ``torch.are_deterministic_algorithms_enabled()``);
            the CPU backward is always deterministic.
    Returns:
        ``[]`` (mean/sum) or ``[B]`` (none); float32 for half inputs. Differentiable in x, y and the weights.
    """
    _check_pair(x, y)
    N, M = x.shape[1], y.shape[1]
    _check_lengths(x_lengths, "x_lengths", x, N)
    _check_lengths(y_lengths, "y_lengths", x, M)
    _check_weights(x_weights, "x_weights", x, N)
    _check_weights(y_weights, "y_weights", x, M)
    _check_choice(reduction, "reduction", _REDUCTIONS)
    squared = _check_bool(squared, "squared")
    bidirectional = _check_bool(bidirectional, "bidirectional")
    det = _deterministic(deterministic)
    b = _pick("chamfer", "chamfer_distance", backend, x.device, x.dtype)
    if b == "reference":
        return _ref.chamfer_distance(x, y, x_lengths, y_lengths, x_weights, y_weights, squared, reduction, bidirectional)
    value, _, _ = _ops(b).chamfer_distance(
        x, y, x_lengths, y_lengths, x_weights, y_weights, squared, reduction, bidirectional, det
    )
    return value


def patch_centroids(weights, patch_size: int, offsets=None, *, backend: str = "auto"):
    """Per-patch mass and weighted centroid of a weight map, fused (no point list, no scatter).

    Args:
        weights: ``[B, 1, H, W]`` float >= 0 (e.g. an edge map), or bool (then no gradient).
        patch_size: p >= 1; the grid is ``ceil(H/p) x ceil(W/p)`` non-overlapping patches, partial ones at
            the right/bottom border included.
        offsets: optional ``[B, 2, H, W]`` per-pixel displacement (channel 0 = dx, 1 = dy, e.g. a flow):
            pixel (i, j) counts at ``(j + dx, i + dy)``.
    Returns:
        ``(centroids [B, Hp, Wp, 2] (x, y), mass [B, Hp, Wp])``, float (float32 for bool): the weighted
        mean position per patch; a patch with zero mass gets the centre of its in-image pixels.
        Differentiable in ``weights`` and ``offsets``.

    Precision of the weights' gradient: a centroid's derivative with respect to a weight of its patch is
    ``(q - c) / m`` (``q`` the pixel's patch-local position ``(j mod p) + dx``, ``c`` the centroid, ``m``
    the patch mass), a difference of nearly equal numbers where the pixel sits at the centroid -- always
    at ``patch_size=1``, where the exact value is 0. Every backend (the reference's autograd included)
    computes it within ``4 * eps * (p - 1 + max|offsets|) / m`` per unit of incoming centroid gradient
    (``eps`` of the weights' dtype), not within the relative tolerance of the other gradients: a patch
    of tiny mass has a large, noisy centroid gradient. Backends agree with each other within twice that.
    """
    _check_map(weights, "weights")
    patch_size = _check_int(patch_size, "patch_size", 1)
    if offsets is not None:
        _tensor(offsets, "offsets")
        B, _, H, W = weights.shape
        if offsets.dim() != 4 or tuple(offsets.shape) != (B, 2, H, W):
            raise ValueError(f"offsets: expected shape [{B}, 2, {H}, {W}], got {tuple(offsets.shape)}")
        if offsets.dtype not in _FLOATS:
            raise TypeError(f"offsets: expected a floating-point tensor, got {offsets.dtype}")
        _v.check_same_device(offsets, "offsets", weights, "weights")
    b = _pick("chamfer", "patch_centroids", backend, weights.device, weights.dtype)
    if b == "reference":
        return _ref.patch_centroids(weights, patch_size, offsets)
    return _ops(b).patch_centroids(weights, int(patch_size), offsets)


def patch_centroid_chamfer(a, b, patch_sizes=(8, 16, 32), min_mass: float = 1e-3, reduction: str = "mean", *, backend: str = "auto"):
    """The H-MoRe boundary term: multi-scale patch-centroid Chamfer between two soft edge maps.

    At patch size p (docs/ops.md §5): per patch of the ``ceil(H/p) x ceil(W/p)`` grid, masses ``m_a, m_b``,
    coverages ``r = min(1, m/p)``, centroids ``c`` (the patch centre when ``m <= min_mass``); a patch
    counts when ``m_a + m_b > min_mass`` and adds ``r_a r_b |c_a - c_b| + p |r_a - r_b|``; the scale's
    value is the mean over counted patches (0 if none); the result is the mean over scales. Identical maps
    give 0. O(H W) per scale, one fused pass, no point lists.

    Args:
        a, b: ``[B, 1, H, W]`` float weights >= 0 (bool accepted: then no gradient), same shape.
        patch_sizes: non-empty sequence of ints >= 1 (default (8, 16, 32)).
        min_mass: float >= 0 (default 1e-3).
        reduction: "mean" (over the batch, default), "sum" or "none" (``[B]``).
    Returns:
        ``[]`` or ``[B]``, the promoted float dtype of a and b (float32 for bool). Differentiable in both
        maps; the gradient of ``|c_a - c_b|`` at ``c_a == c_b`` is 0.
    """
    _check_map(a, "a")
    _check_map(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"b: expected shape {tuple(a.shape)} like a, got {tuple(b.shape)}")
    if b.device != a.device:
        raise ValueError(f"b: expected a tensor on {a.device} like a, got {b.device}")
    if isinstance(patch_sizes, int):
        patch_sizes = (patch_sizes,)
    try:
        ps = list(patch_sizes)
    except TypeError:
        raise TypeError(f"patch_sizes: expected a sequence of ints, got {type(patch_sizes).__name__}") from None
    if not ps:
        raise ValueError("patch_sizes: expected at least one patch size, got an empty sequence")
    ps = [_check_int(p, "patch_sizes", 1) for p in ps]
    if isinstance(min_mass, bool) or not isinstance(min_mass, (int, float)) or not (min_mass >= 0) or math.isinf(min_mass):
        raise ValueError(f"min_mass: expected a finite float >= 0, got {min_mass!r}")
    _check_choice(reduction, "reduction", _REDUCTIONS)
    # Masses are weights: a negative one makes the coverage min(1, m/p) and the value jump (docs/ops.md:
    # a value out of range is an error, never clamped).
    _check_nonnegative(a, "a", "weights")
    _check_nonnegative(b, "b", "weights")
    bk = _pick("chamfer", "patch_centroid_chamfer", backend, a.device, a.dtype)
    if bk == "reference":
        return _ref.patch_centroid_chamfer(a, b, tuple(ps), float(min_mass), reduction)
    return _ops(bk).patch_centroid_chamfer(a, b, [int(p) for p in ps], float(min_mass), reduction)


def boundary_chamfer(a, b, reduction: str = "mean", *, backend: str = "auto"):
    """Exact symmetric Chamfer distance between the True pixels of two boundary maps, in O(H W).

    The mean over a's True pixels of the Euclidean distance to the nearest True pixel of b, plus the
    converse, via :func:`hmore_kernels.distance_transform` (exact, Felzenszwalb-Huttenlocher). 0 when both
    maps are empty, inf when exactly one is. The oracle :func:`patch_centroid_chamfer` is measured against.

    Args:
        a, b: ``[B, 1, H, W]`` bool, same shape (threshold soft maps yourself, e.g. ``edges > 0.5``).
        reduction: "mean" (over the batch, default), "sum" or "none" (``[B]``).
    Returns:
        float32 ``[]`` or ``[B]``. Not differentiable (bool inputs have no gradient).
    """
    for name, t in (("a", a), ("b", b)):
        _tensor(t, name)
        if t.dim() != 4 or t.shape[1] != 1:
            raise ValueError(f"{name}: expected a 4-D tensor [B, 1, H, W], got shape {tuple(t.shape)}")
        if t.dtype != torch.bool:
            raise TypeError(
                f"{name}: expected a bool boundary map (True = boundary pixel), got {t.dtype}; "
                f"boundary_chamfer has no gradient -- threshold soft maps first (e.g. {name} > 0.5)"
            )
    if a.shape != b.shape:
        raise ValueError(f"b: expected shape {tuple(a.shape)} like a, got {tuple(b.shape)}")
    if b.device != a.device:
        raise ValueError(f"b: expected a tensor on {a.device} like a, got {b.device}")
    _check_choice(reduction, "reduction", _REDUCTIONS)
    bk = _pick("chamfer", "boundary_chamfer", backend, a.device, a.dtype)
    if bk == "reference":
        return _ref.boundary_chamfer(a, b, reduction)
    return _ops(bk).boundary_chamfer(a, b, reduction)
