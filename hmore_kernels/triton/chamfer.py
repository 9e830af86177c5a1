"""Triton backend of the Chamfer family (docs/ops.md §3, §5): ``torch.ops.hmore_triton.<op>``.

Registration as in :mod:`hmore_kernels.triton.edges`: on a GPU every op is a ``triton_op`` whose Python
body (torch ops on FakeTensors plus wrapped launches) is its own fake kernel; under
``TRITON_INTERPRET=1`` the ops are plain custom ops with the C++ schemas of ``csrc/chamfer/chamfer.cpp``
and the fake kernels of :mod:`hmore_kernels._meta_chamfer`, which also registers the autograd.

Numerics follow ``csrc/chamfer/chamfer_kernels.cuh`` / ``reference/chamfer.py``: squared distances are
``sum_k (x_k - y_k)^2`` in float32, k ascending, each product rounded by itself (no FMA contraction on
the GPU: ``libdevice.mul_rn``), so every backend gets the same bits and resolves ties the same way.
float16/bfloat16 points are loaded as such and computed in float32; float64 is not supported on GPU
backends (TypeError).

Design
------
* ``nearest_neighbors`` / ``chamfer_distance`` forward, one pass over the distance tiles: a program owns
  ``BN`` points of x (registers) and streams ``BM``-point tiles of y through a ``[BN, BM]`` distance tile.
  Row minima (x -> y) stay in registers (strict ``<`` over increasing tiles plus a left-biased argmin:
  ties to the lowest index). Column minima (y -> x) of the tile are merged across programs with one
  ``atomic_min`` per column on a packed int64 key ``(float bits of d) << 32 | index``: d >= 0, so its bits
  order like the float and the index in the low word makes equal distances resolve to the lowest
  index -- the result is deterministic although the merge order is not. When the y range is split over
  several programs (small batches: more parallelism) the row minima are merged the same way.
  Ragged lengths are read on the device (no host synchronisation).
* An unpack kernel turns keys into (distance, index) and per-program partial sums (sum w d, sum w);
  the last reduction over a handful of partials is a torch sum (fixed order: deterministic).
* Backward: per direction one kernel recomputes d from the saved index; the gradient to the point itself
  is a gather; the gradient to its neighbour is a scatter -- float ``atomic_add`` when
  ``deterministic=False``; when ``deterministic=True`` the contributions are stored, the (neighbour, point)
  pairs sorted by neighbour (stable ``torch.sort``: a counting sort in effect), and one program per
  neighbour block sums its segment in increasing point order (fixed order: bit-reproducible).
* ``patch_centroids`` / ``patch_centroid_chamfer``: a program reduces ``G`` adjacent patches of one patch
  row from a ``[PR, G, PC]`` tile (``PC`` = next power of two >= p columns per patch, rows in chunks of
  ``PR``), so a row of the tile is 64+ contiguous pixels (coalesced). patch_centroid_chamfer computes both
  maps' statistics, the per-patch term and the counted flag in the same program and writes per-program
  partial sums (one launch per scale); its backward stores the per-patch gradient of the statistics for a
  unit upstream gradient (the term is linear in it), and one pixel kernel gathers, for every scale, its
  patch's (gm, gsx, gsy) scaled by ``g_b / (count_b,s * scales)``. No scatter anywhere.
* ``boundary_chamfer``: the Triton ``distance_transform`` of both maps, then one fused masked reduction
  (sum of DT_a over b's pixels, counts; float64 partials like the reference).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton
from triton.language.extra import libdevice

from . import edges as _edges  # noqa: F401  (registers torch.ops.hmore_triton.distance_transform)
from ..reference import chamfer as _ref
from ._common import INTERPRET, op_decorator

# The C++ schemas (csrc/chamfer/chamfer.cpp), verbatim. (On a GPU triton_op infers the schema from the
# annotations, and torch.library cannot express a list default: there patch_centroid_chamfer's
# patch_sizes has no default -- the Python API always passes it.)
_SCHEMAS = {
    "nearest_neighbors": "(Tensor x, Tensor y, Tensor? x_lengths=None, Tensor? y_lengths=None) -> (Tensor, Tensor)",
    "chamfer_distance": "(Tensor x, Tensor y, Tensor? x_lengths=None, Tensor? y_lengths=None, "
    "Tensor? x_weights=None, Tensor? y_weights=None, bool squared=True, str reduction='mean', "
    "bool bidirectional=True, bool deterministic=False) -> (Tensor, Tensor, Tensor)",
    "_chamfer_distance_backward": "(Tensor grad, Tensor x, Tensor y, Tensor idx_x, Tensor idx_y, "
    "Tensor? x_lengths, Tensor? y_lengths, Tensor? x_weights, Tensor? y_weights, bool squared, "
    "str reduction, bool bidirectional, bool deterministic) -> (Tensor, Tensor, Tensor, Tensor)",
    "patch_centroids": "(Tensor weights, int patch_size, Tensor? offsets=None) -> (Tensor, Tensor)",
    "_patch_centroids_backward": "(Tensor grad_centroids, Tensor grad_mass, Tensor weights, Tensor? offsets, "
    "Tensor centroids, Tensor mass, int patch_size) -> (Tensor, Tensor)",
    "patch_centroid_chamfer": "(Tensor a, Tensor b, int[] patch_sizes=[8, 16, 32], float min_mass=0.001, "
    "str reduction='mean') -> Tensor",
    "_patch_centroid_chamfer_backward": "(Tensor grad, Tensor a, Tensor b, int[] patch_sizes, float min_mass, "
    "str reduction) -> (Tensor, Tensor)",
    "boundary_chamfer": "(Tensor a, Tensor b, str reduction='mean') -> Tensor",
}

_INTERPRET = INTERPRET
_op = op_decorator(_SCHEMAS)

# Products rounded by themselves (PTX mul.rn is never contracted into an FMA): the squared distances are
# then bit-identical to the CPU kernel's and the reference's. The interpreter rounds every op anyway.
_MUL_RN = tl.constexpr(not _INTERPRET)

_KEY_NONE = 2**63 - 1  # "no neighbour": larger than every packed key
_REDUCTIONS = ("mean", "sum", "none")
# Programs the distance pass aims for before it splits the y range: 4 waves of an H100/H200's 132 SMs on a
# GPU; under the interpreter, whose cost is per program, just enough that small inputs still take the
# split path (rows merged with atomic_min), which the tests then cover.
_TARGET_PROGRAMS = 8 if _INTERPRET else 4 * 132
_BN, _BM = 64, 64  # distance tile
_BF = 256  # points per program of the unpack / backward kernels


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
@triton.jit
def _sq(v):
    if _MUL_RN:
        return libdevice.mul_rn(v, v)
    else:
        return v * v


@triton.jit
def _length(len_ptr, b, N, HAS_LEN: tl.constexpr):
    """Number of valid points of cloud b (lengths clamped to [0, N]: memory safety)."""
    if HAS_LEN:
        n = tl.load(len_ptr + b).to(tl.int32)
        n = tl.minimum(tl.maximum(n, 0), N)
    else:
        n = N
    return n


@triton.jit
def _pack(d, idx):
    return (d.to(tl.int32, bitcast=True).to(tl.int64) << 32) | idx.to(tl.int64)


def _check_float(t: torch.Tensor, name: str) -> None:
    if t.dtype == torch.float64:
        raise TypeError(f"{name}: the triton backend supports float32, float16 and bfloat16, got float64 "
                        "(use backend='cpu' or 'reference' for float64)")
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{name}: expected a floating-point tensor (float32, float16, bfloat16), got {t.dtype}")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of 'mean', 'sum', 'none', got {reduction!r}")


def _reduce_batch(per: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.mean() if per.numel() else per.sum()


def _batch_grad(grad: torch.Tensor, B: int, reduction: str) -> torch.Tensor:
    """dLoss/d per-cloud value, [B] float32."""
    g = grad.to(torch.float32)
    if reduction == "none":
        return g.reshape(B).contiguous()
    g = g.reshape(()).expand(B)
    return (g / B if reduction == "mean" else g).contiguous()


# ------------------------------------------------------------------------------------------------
# distance pass (nearest_neighbors, chamfer_distance)
# ------------------------------------------------------------------------------------------------
@triton.jit
def _pair_kernel(x_ptr, y_ptr, xlen_ptr, ylen_ptr, kx_ptr, ky_ptr, N, M, D, tiles_x, splits, span,
                 HAS_XLEN: tl.constexpr, HAS_YLEN: tl.constexpr, DIM2: tl.constexpr, COLS: tl.constexpr,
                 ROW_ATOMIC: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr):
    """x [B, N, D], y [B, M, D] contiguous -> packed keys kx [B, N] (row minima) and, if COLS, atomic
    minima into ky [B, M] (column minima). Program = (cloud b, x tile, y split) on a flat grid."""
    pid = tl.program_id(0)
    s = pid % splits
    t = pid // splits
    tx = t % tiles_x
    b = t // tiles_x
    lx = _length(xlen_ptr, b, N, HAS_XLEN)
    ly = _length(ylen_ptr, b, M, HAS_YLEN)
    rows = tx * BN + tl.arange(0, BN)
    rm = rows < lx
    xb = x_ptr + b.to(tl.int64) * N * D
    yb = y_ptr + b.to(tl.int64) * M * D
    if DIM2:  # the D = 2 fast path: the tile's coordinates stay in registers
        x0 = tl.load(xb + rows * 2, mask=rm, other=0.0).to(tl.float32)
        x1 = tl.load(xb + rows * 2 + 1, mask=rm, other=0.0).to(tl.float32)
    j_begin = s * span
    j_end = tl.minimum(j_begin + span, ly)
    j_end = tl.where(tx * BN < lx, j_end, j_begin)  # no valid row in this tile: nothing to do
    best = tl.full([BN], float("inf"), tl.float32)
    barg = tl.full([BN], -1, tl.int32)
    for j0 in range(j_begin, j_end, BM):
        cols = j0 + tl.arange(0, BM)
        cm = cols < j_end
        if DIM2:
            y0 = tl.load(yb + cols * 2, mask=cm, other=0.0).to(tl.float32)
            y1 = tl.load(yb + cols * 2 + 1, mask=cm, other=0.0).to(tl.float32)
            d = _sq(x0[:, None] - y0[None, :]) + _sq(x1[:, None] - y1[None, :])
        else:
            xk = tl.load(xb + rows * D, mask=rm, other=0.0).to(tl.float32)
            yk = tl.load(yb + cols * D, mask=cm, other=0.0).to(tl.float32)
            d = _sq(xk[:, None] - yk[None, :])
            for k in range(1, D):  # k ascending, left to right: the reference's order
                xk = tl.load(xb + rows * D + k, mask=rm, other=0.0).to(tl.float32)
                yk = tl.load(yb + cols * D + k, mask=cm, other=0.0).to(tl.float32)
                d = d + _sq(xk[:, None] - yk[None, :])
        dr = tl.where(cm[None, :], d, float("inf"))
        cmin, carg = tl.min(dr, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = cmin < best  # strict: an earlier tile keeps ties
        best = tl.where(better, cmin, best)
        barg = tl.where(better, carg + j0, barg)
        if COLS:
            dc = tl.where(rm[:, None], d, float("inf"))
            m2, a2 = tl.min(dc, axis=0, return_indices=True, return_indices_tie_break_left=True)
            # inf: no valid row, or an overflowing distance (the reference gives such a point index -1)
            tl.atomic_min(ky_ptr + b.to(tl.int64) * M + cols, _pack(m2, a2 + tx * BN),
                          mask=cm & (m2 < float("inf")))
    ok = rm & (barg >= 0)
    key = tl.where(ok, _pack(best, barg), 9223372036854775807)
    if ROW_ATOMIC:
        tl.atomic_min(kx_ptr + b.to(tl.int64) * N + rows, key, mask=ok)
    else:
        tl.store(kx_ptr + b.to(tl.int64) * N + rows, key, mask=rows < N)


@triton.jit
def _unpack_kernel(k_ptr, len_ptr, w_ptr, idx_ptr, dist_ptr, part_ptr, N, tiles, HAS_LEN: tl.constexpr,
                   HAS_W: tl.constexpr, SQUARED: tl.constexpr, WRITE_DIST: tl.constexpr, BLOCK: tl.constexpr):
    """keys [B, N] -> idx [B, N] int64 (-1: padding / no neighbour), optionally dist [B, N] (the squared
    distance, 0 where idx is -1), and partials [B, tiles, 2] = (sum w d, sum w) over the valid points."""
    pid = tl.program_id(0)
    b = pid // tiles
    t = pid % tiles
    n = _length(len_ptr, b, N, HAS_LEN)
    i = t * BLOCK + tl.arange(0, BLOCK)
    inb = i < N
    off = b.to(tl.int64) * N + i
    key = tl.load(k_ptr + off, mask=inb, other=9223372036854775807)
    ok = (i < n) & (key != 9223372036854775807)
    d2 = (key >> 32).to(tl.int32).to(tl.float32, bitcast=True)
    d2 = tl.where(ok, d2, 0.0)
    tl.store(idx_ptr + off, tl.where(ok, key & 0xFFFFFFFF, -1), mask=inb)
    if WRITE_DIST:
        tl.store(dist_ptr + off, d2, mask=inb)
    if SQUARED:
        d = d2
    else:
        d = tl.sqrt_rn(d2)  # d2 >= 0; sqrt(0) = 0
    if HAS_W:
        w = tl.load(w_ptr + off, mask=ok, other=0.0).to(tl.float32)
    else:
        w = tl.where(ok, 1.0, 0.0)
    p = part_ptr + (b.to(tl.int64) * tiles + t) * 2
    tl.store(p, tl.sum(w * d, axis=0))
    tl.store(p + 1, tl.sum(w, axis=0))


def _keys_pass(x, y, xl, yl, cols: bool):
    """(kx [B, N], ky [B, M] or None) packed keys of both directions in one pass over the tiles."""
    B, N, D = x.shape
    M = y.shape[1]
    tiles_x = triton.cdiv(N, _BN)
    tiles_y = max(1, triton.cdiv(M, _BM))
    splits = max(1, min(tiles_y, triton.cdiv(_TARGET_PROGRAMS, max(1, B * tiles_x))))
    span = triton.cdiv(tiles_y, splits) * _BM
    splits = triton.cdiv(max(M, 1), span)
    row_atomic = splits > 1
    if row_atomic:  # several programs merge into a row: start from "no neighbour"
        kx = torch.full((B, N), _KEY_NONE, dtype=torch.int64, device=x.device)
    else:  # one program per row stores its key
        kx = torch.empty((B, N), dtype=torch.int64, device=x.device)
    ky = torch.full((B, M), _KEY_NONE, dtype=torch.int64, device=x.device) if cols else None
    wrap_triton(_pair_kernel)[(B * tiles_x * splits,)](
        x, y, xl, yl, kx, ky if cols else kx, N, M, D, tiles_x, splits, span,
        xl is not None, yl is not None, D == 2, bool(cols), row_atomic, _BN, _BM,
    )
    return kx, ky


def _unpack(keys, lengths, weights, squared, write_dist):
    """-> (idx [B, N] int64, dist [B, N] float32 or None, (sum w d [B], sum w [B]))."""
    B, N = keys.shape
    dev = keys.device
    idx = torch.empty((B, N), dtype=torch.int64, device=dev)
    dist = torch.empty((B, N), dtype=torch.float32, device=dev) if write_dist else None
    tiles = max(1, triton.cdiv(N, _BF))
    part = torch.empty((B, tiles, 2), dtype=torch.float32, device=dev)
    if B * N > 0:
        wrap_triton(_unpack_kernel)[(B * tiles,)](
            keys, lengths, weights, idx, dist if write_dist else idx, part, N, tiles,
            lengths is not None, weights is not None, bool(squared), bool(write_dist), _BF,
        )
    else:
        part.zero_()
    s = part.sum(1)
    return idx, dist, (s[:, 0], s[:, 1])


def _prep_points(x, name):
    _check_float(x, name)
    if x.dim() != 3:
        raise ValueError(f"{name}: expected a 3-D tensor [B, N, D], got shape {tuple(x.shape)}")
    return x.contiguous()


def _prep_opt(t, dtype=None):
    if t is None:
        return None
    return (t if dtype is None else t.to(dtype)).contiguous()


@_op("nearest_neighbors")
def nearest_neighbors(x: torch.Tensor, y: torch.Tensor, x_lengths: Optional[torch.Tensor] = None,
                      y_lengths: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    x = _prep_points(x, "x")
    y = _prep_points(y, "y")
    B, N, D = x.shape
    M = y.shape[1]
    xl, yl = _prep_opt(x_lengths), _prep_opt(y_lengths)
    if B * N == 0 or M == 0 or D == 0:
        dist = torch.zeros((B, N), dtype=torch.float32, device=x.device)
        return (dist.masked_fill(_ref.nonfinite_points(x, xl), math.nan),
                torch.full((B, N), -1, dtype=torch.int64, device=x.device))
    # docs/ops.md "Non-finite values": search on clouds whose non-finite points are all-NaN (never chosen),
    # then mark the searched points' own results (hmore_kernels.reference.chamfer, same helpers).
    bad_x, bad_y = _ref.nonfinite_points(x, xl), _ref.nonfinite_points(y, yl)
    kx, _ = _keys_pass(_ref.search_points(x, bad_x).contiguous(), _ref.search_points(y, bad_y).contiguous(),
                       xl, yl, cols=False)
    idx, dist, _ = _unpack(kx, xl, None, True, True)
    return dist.masked_fill(bad_x, math.nan), idx.masked_fill(bad_x, -1)


def _direction_value(num, den, reduction):
    if reduction == "sum":
        return num
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


@_op("chamfer_distance")
def chamfer_distance(x: torch.Tensor, y: torch.Tensor, x_lengths: Optional[torch.Tensor] = None,
                     y_lengths: Optional[torch.Tensor] = None, x_weights: Optional[torch.Tensor] = None,
                     y_weights: Optional[torch.Tensor] = None, squared: bool = True, reduction: str = "mean",
                     bidirectional: bool = True,
                     deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_reduction(reduction)
    x = _prep_points(x, "x")
    y = _prep_points(y, "y")
    B, N, D = x.shape
    M = y.shape[1]
    dev = x.device
    xl, yl = _prep_opt(x_lengths), _prep_opt(y_lengths)
    xw, yw = _prep_opt(x_weights), _prep_opt(y_weights)
    if N == 0 or M == 0 or D == 0 or B == 0:  # every point lacks a neighbour: distance 0, index -1
        per = torch.zeros((B,), dtype=torch.float32, device=dev)
        idx_x = torch.full((B, N), -1, dtype=torch.int64, device=dev)
        idx_y = torch.full((B, M if bidirectional else 0), -1, dtype=torch.int64, device=dev)
        per = _ref.poison_clouds(per, _ref.nonfinite_points(x, xl), _ref.nonfinite_points(y, yl), bidirectional)
        return _reduce_batch(per, reduction), idx_x, idx_y
    bad_x, bad_y = _ref.nonfinite_points(x, xl), _ref.nonfinite_points(y, yl)
    kx, ky = _keys_pass(_ref.search_points(x, bad_x).contiguous(), _ref.search_points(y, bad_y).contiguous(),
                        xl, yl, cols=bidirectional)
    idx_x, _, (nx, dx) = _unpack(kx, xl, xw, squared, False)
    per = _direction_value(nx, dx, reduction)
    if bidirectional:
        idx_y, _, (ny, dy) = _unpack(ky, yl, yw, squared, False)
        per = per + _direction_value(ny, dy, reduction)
    else:
        idx_y = torch.empty((B, 0), dtype=torch.int64, device=dev)
    return _reduce_batch(_ref.poison_clouds(per, bad_x, bad_y, bidirectional), reduction), idx_x, idx_y


# ------------------------------------------------------------------------------------------------
# chamfer_distance backward
# ------------------------------------------------------------------------------------------------
@triton.jit
def _pt_dist(sb, db, i, j, ok, D, DIM2: tl.constexpr):
    """Squared distance between src point i and dst point j (same order/rounding as the forward), and
    the two coordinate differences for D = 2."""
    if DIM2:
        e0 = tl.load(sb + i * 2, mask=ok, other=0.0).to(tl.float32) - tl.load(db + j * 2, mask=ok, other=0.0).to(
            tl.float32)
        e1 = tl.load(sb + i * 2 + 1, mask=ok, other=0.0).to(tl.float32) - tl.load(db + j * 2 + 1, mask=ok,
                                                                                  other=0.0).to(tl.float32)
        d2 = _sq(e0) + _sq(e1)
    else:
        e0 = tl.load(sb + i * D, mask=ok, other=0.0).to(tl.float32) - tl.load(db + j * D, mask=ok, other=0.0).to(
            tl.float32)
        e1 = e0
        d2 = _sq(e0)
        for k in range(1, D):
            e = tl.load(sb + i * D + k, mask=ok, other=0.0).to(tl.float32) - tl.load(db + j * D + k, mask=ok,
                                                                                     other=0.0).to(tl.float32)
            d2 = d2 + _sq(e)
    return d2, e0, e1


@triton.jit
def _dir_stats_kernel(s_ptr, d_ptr, idx_ptr, len_ptr, w_ptr, part_ptr, N, M, D, tiles, HAS_LEN: tl.constexpr,
                      HAS_W: tl.constexpr, SQUARED: tl.constexpr, DIM2: tl.constexpr, BLOCK: tl.constexpr):
    """Partials [B, tiles, 2] = (sum w d, sum w) of one direction, d recomputed from the saved index."""
    pid = tl.program_id(0)
    b = pid // tiles
    t = pid % tiles
    n = _length(len_ptr, b, N, HAS_LEN)
    i = t * BLOCK + tl.arange(0, BLOCK)
    off = b.to(tl.int64) * N + i
    j = tl.load(idx_ptr + off, mask=i < N, other=-1)
    ok = (i < n) & (j >= 0)
    j = tl.where(ok, j, 0)
    d2, e0, e1 = _pt_dist(s_ptr + b.to(tl.int64) * N * D, d_ptr + b.to(tl.int64) * M * D, i, j, ok, D, DIM2)
    if SQUARED:
        dd = d2
    else:
        dd = tl.sqrt_rn(d2)
    if HAS_W:
        w = tl.load(w_ptr + off, mask=ok, other=0.0).to(tl.float32)
    else:
        w = tl.where(ok, 1.0, 0.0)
    dd = tl.where(ok, dd, 0.0)
    p = part_ptr + (b.to(tl.int64) * tiles + t) * 2
    tl.store(p, tl.sum(w * dd, axis=0))
    tl.store(p + 1, tl.sum(w, axis=0))


@triton.jit
def _dir_grad_kernel(s_ptr, d_ptr, idx_ptr, len_ptr, w_ptr, coef_ptr, val_ptr, den_ptr, gb_ptr, gs_ptr, gd_ptr,
                     contrib_ptr, gw_ptr, N, M, D, tiles, HAS_LEN: tl.constexpr, HAS_W: tl.constexpr,
                     SQUARED: tl.constexpr, NORMALISE: tl.constexpr, DETERMINISTIC: tl.constexpr,
                     DIM2: tl.constexpr, BLOCK: tl.constexpr, DP: tl.constexpr):
    """One direction src -> dst. With c_i = coef_b * w_i * term_grad_coef(d2) (coef_b = g_b / sum w, or
    g_b for 'sum'): gs[i] += c_i (s_i - d_j) (a gather: this program owns i; gs is float32 and already
    holds any earlier contribution), and -c_i (s_i - d_j) goes to gd[j]: atomic_add, or stored in
    contrib [B*N, D] for the deterministic segment sum. gw[i] = g_b * weight_grad(d_i, D_b, sum w)."""
    pid = tl.program_id(0)
    b = pid // tiles
    t = pid % tiles
    n = _length(len_ptr, b, N, HAS_LEN)
    i = t * BLOCK + tl.arange(0, BLOCK)
    inb = i < N
    off = b.to(tl.int64) * N + i
    j = tl.load(idx_ptr + off, mask=inb, other=-1)
    ok = (i < n) & (j >= 0)
    j = tl.where(ok, j, 0)
    sb = s_ptr + b.to(tl.int64) * N * D
    db = d_ptr + b.to(tl.int64) * M * D
    d2, e0, e1 = _pt_dist(sb, db, i, j, ok, D, DIM2)
    if SQUARED:
        tg = tl.full([BLOCK], 2.0, tl.float32)
    else:
        pos = d2 > 0
        tg = tl.where(pos, 1.0 / tl.sqrt_rn(tl.where(pos, d2, 1.0)), 0.0)  # gradient 0 at distance 0
    if HAS_W:
        w = tl.load(w_ptr + off, mask=ok, other=0.0).to(tl.float32)
    else:
        w = tl.where(ok, 1.0, 0.0)
    c = tl.load(coef_ptr + b) * w * tg
    c = tl.where(ok, c, 0.0)
    k = tl.arange(0, DP)
    km = k < D
    m2 = inb[:, None] & km[None, :]
    sv = tl.load(sb + i[:, None] * D + k[None, :], mask=ok[:, None] & km[None, :], other=0.0).to(tl.float32)
    dv = tl.load(db + j[:, None] * D + k[None, :], mask=ok[:, None] & km[None, :], other=0.0).to(tl.float32)
    gvec = c[:, None] * (sv - dv)
    gso = gs_ptr + off[:, None] * D + k[None, :]
    tl.store(gso, tl.load(gso, mask=m2, other=0.0) + gvec, mask=m2)
    if DETERMINISTIC:
        tl.store(contrib_ptr + off[:, None] * D + k[None, :], -gvec, mask=m2)
    else:
        tl.atomic_add(gd_ptr + (b.to(tl.int64) * M + j)[:, None] * D + k[None, :], -gvec,
                      mask=ok[:, None] & km[None, :])
    if HAS_W:
        if SQUARED:
            dd = d2
        else:
            dd = tl.sqrt_rn(d2)
        dd = tl.where(ok, dd, 0.0)
        gb = tl.load(gb_ptr + b)
        if NORMALISE:
            den = tl.load(den_ptr + b)
            val = tl.load(val_ptr + b)
            gw = tl.where(den > 0, gb * (dd - val) / tl.where(den > 0, den, 1.0), 0.0)
        else:
            gw = gb * dd
        tl.store(gw_ptr + off, tl.where(ok, gw, 0.0), mask=inb)


@triton.jit
def _segsum_kernel(out_ptr, contrib_ptr, perm_ptr, start_ptr, total, D, BLOCK: tl.constexpr, DP: tl.constexpr):
    """out[q] += sum of contrib[perm[start[q] .. start[q+1])] in that (increasing point) order: the
    deterministic scatter. q runs over the flat dst points (b * M + j)."""
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    qm = q < total
    st = tl.load(start_ptr + q, mask=qm, other=0)
    cnt = tl.load(start_ptr + q + 1, mask=qm, other=0) - st
    k = tl.arange(0, DP)
    km = k < D
    acc = tl.zeros([BLOCK, DP], tl.float32)
    for r in range(0, tl.max(cnt, axis=0)):
        live = r < cnt
        src = tl.load(perm_ptr + st + r, mask=live, other=0)
        acc += tl.load(contrib_ptr + src[:, None] * D + k[None, :], mask=live[:, None] & km[None, :], other=0.0)
    o = out_ptr + q.to(tl.int64)[:, None] * D + k[None, :]
    m2 = qm[:, None] & km[None, :]
    tl.store(o, tl.load(o, mask=m2, other=0.0) + acc, mask=m2)


def _dir_stats(s, d, idx, sl, sw, squared):
    B, N, D = s.shape
    M = d.shape[1]
    tiles = max(1, triton.cdiv(N, _BF))
    part = torch.empty((B, tiles, 2), dtype=torch.float32, device=s.device)
    wrap_triton(_dir_stats_kernel)[(B * tiles,)](
        s, d, idx, sl, sw, part, N, M, D, tiles, sl is not None, sw is not None, bool(squared), D == 2, _BF
    )
    t = part.sum(1)
    return t[:, 0], t[:, 1]


def _dir_grad(s, d, idx, sl, sw, gb, squared, normalise, deterministic, gs, gd, gw):
    """Adds this direction's gradients into gs (gather), gd (scatter) and writes gw; see the kernel."""
    B, N, D = s.shape
    M = d.shape[1]
    num, den = _dir_stats(s, d, idx, sl, sw, squared)
    if normalise:
        scale = torch.where(den > 0, 1.0 / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
        val = num * scale
    else:
        scale = torch.ones_like(den)
        val = num
    coef = (gb * scale).contiguous()
    tiles = max(1, triton.cdiv(N, _BF))
    contrib = torch.empty((B * N, D), dtype=torch.float32, device=s.device) if deterministic else gs
    DP = triton.next_power_of_2(D)
    wrap_triton(_dir_grad_kernel)[(B * tiles,)](
        s, d, idx, sl, sw, coef, val.contiguous(), den.contiguous(), gb, gs, gd, contrib,
        gw if gw is not None else gs, N, M, D, tiles, sl is not None, sw is not None, bool(squared),
        bool(normalise), bool(deterministic), D == 2, _BF, DP,
    )
    if deterministic:
        # stable sort of (neighbour, point) pairs by neighbour: the segment of dst point q holds its
        # sources in increasing order; -1 (no term) sorts after every real neighbour
        bm = torch.arange(B, device=s.device, dtype=torch.int64)[:, None] * M
        key = torch.where(idx >= 0, idx + bm, torch.full_like(idx, B * M)).reshape(-1)
        skey, perm = torch.sort(key, stable=True)
        start = torch.searchsorted(skey, torch.arange(B * M + 1, device=s.device, dtype=torch.int64))
        BLK = 64
        wrap_triton(_segsum_kernel)[(triton.cdiv(B * M, BLK),)](gd, contrib, perm, start, B * M, D, BLK, DP)


@_op("_chamfer_distance_backward")
def _chamfer_distance_backward(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor, idx_x: torch.Tensor,
                               idx_y: torch.Tensor, x_lengths: Optional[torch.Tensor],
                               y_lengths: Optional[torch.Tensor], x_weights: Optional[torch.Tensor],
                               y_weights: Optional[torch.Tensor], squared: bool, reduction: str, bidirectional: bool,
                               deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_reduction(reduction)
    x = _prep_points(x, "x")
    y = _prep_points(y, "y")
    B, N, D = x.shape
    M = y.shape[1]
    dev = x.device
    gx = torch.zeros((B, N, D), dtype=torch.float32, device=dev)
    gy = torch.zeros((B, M, D), dtype=torch.float32, device=dev)
    gwx = torch.zeros((B, N), dtype=torch.float32, device=dev) if x_weights is not None else None
    gwy = torch.zeros((B, M), dtype=torch.float32, device=dev) if y_weights is not None else None
    if B * N > 0 and M > 0 and D > 0:
        xl, yl = _prep_opt(x_lengths), _prep_opt(y_lengths)
        xw, yw = _prep_opt(x_weights), _prep_opt(y_weights)
        gb = _batch_grad(grad, B, reduction)
        normalise = reduction != "sum"
        ix = idx_x.contiguous()
        _dir_grad(x, y, ix, xl, xw, gb, squared, normalise, deterministic, gx, gy, gwx)
        if bidirectional:
            _dir_grad(y, x, idx_y.contiguous(), yl, yw, gb, squared, normalise, deterministic, gy, gx, gwy)

    def out_w(gw, w):
        if w is None:
            return torch.empty((0,), dtype=x.dtype, device=dev)
        return gw.to(w.dtype)

    return gx.to(x.dtype), gy.to(y.dtype), out_w(gwx, x_weights), out_w(gwy, y_weights)


# ------------------------------------------------------------------------------------------------
# patches
# ------------------------------------------------------------------------------------------------
@triton.jit
def _patch_sums(w_ptr, off_ptr, b, pi, pg, H, W, Wp, p, HAS_OFF: tl.constexpr, PR: tl.constexpr,
                G: tl.constexpr, PC: tl.constexpr):
    """(m, sx, sy) [G] of patches (pi, pg*G + g) of image b, in patch-local coordinates (j - j0 + dx,
    i - i0 + dy), float32. Tile [PR, G, PC]; rows in chunks of PR."""
    g = tl.arange(0, G)
    cc = tl.arange(0, PC)
    pj = pg * G + g
    col = pj[:, None] * p + cc[None, :]  # [G, PC]
    cmask = (cc[None, :] < p) & (col < W) & (pj[:, None] < Wp)
    hw = H * W
    wb = w_ptr + b.to(tl.int64) * hw
    ob = off_ptr + b.to(tl.int64) * 2 * hw
    m = tl.zeros([G], tl.float32)
    sx = tl.zeros([G], tl.float32)
    sy = tl.zeros([G], tl.float32)
    for r0 in range(0, p, PR):
        r = r0 + tl.arange(0, PR)
        row = pi * p + r
        rmask = (r < p) & (row < H)
        msk = rmask[:, None, None] & cmask[None, :, :]
        o = row[:, None, None] * W + col[None, :, :]
        w = tl.load(wb + o, mask=msk, other=0).to(tl.float32)
        lx = tl.zeros([PR, G, PC], tl.float32) + cc[None, None, :].to(tl.float32)
        ly = tl.zeros([PR, G, PC], tl.float32) + r[:, None, None].to(tl.float32)
        if HAS_OFF:
            lx = lx + tl.load(ob + o, mask=msk, other=0).to(tl.float32)
            ly = ly + tl.load(ob + hw + o, mask=msk, other=0).to(tl.float32)
        m += tl.sum(tl.sum(w, axis=2), axis=0)
        sx += tl.sum(tl.sum(w * lx, axis=2), axis=0)
        sy += tl.sum(tl.sum(w * ly, axis=2), axis=0)
    return m, sx, sy


@triton.jit
def _extent(pidx, p, size):
    return tl.minimum(size - pidx * p, p)


@triton.jit
def _local_centroid(m, sx, sy, rows, cols, thresh):
    has = m > thresh
    safe = tl.where(has, m, 1.0)
    cx = tl.where(has, sx / safe, (cols - 1).to(tl.float32) * 0.5)
    cy = tl.where(has, sy / safe, (rows - 1).to(tl.float32) * 0.5)
    return cx, cy


@triton.jit
def _patch_centroids_kernel(w_ptr, off_ptr, c_ptr, m_ptr, H, W, Hp, Wp, p, groups, HAS_OFF: tl.constexpr,
                            PR: tl.constexpr, G: tl.constexpr, PC: tl.constexpr):
    pid = tl.program_id(0)
    pg = pid % groups
    t = pid // groups
    pi = t % Hp
    b = t // Hp
    m, sx, sy = _patch_sums(w_ptr, off_ptr, b, pi, pg, H, W, Wp, p, HAS_OFF, PR, G, PC)
    pj = pg * G + tl.arange(0, G)
    ok = pj < Wp
    cx, cy = _local_centroid(m, sx, sy, _extent(pi, p, H) + tl.zeros([G], tl.int32), _extent(pj, p, W), 0.0)
    po = (b.to(tl.int64) * Hp + pi) * Wp + pj
    ty = c_ptr.dtype.element_ty
    tl.store(c_ptr + po * 2, (cx + (pj * p).to(tl.float32)).to(ty), mask=ok)
    tl.store(c_ptr + po * 2 + 1, (cy + (pi * p).to(tl.float32)).to(ty), mask=ok)
    tl.store(m_ptr + po, m.to(m_ptr.dtype.element_ty), mask=ok)


def _patch_blocks(p):
    """(PR, G, PC): PC = next power of two >= p columns per patch, G patches side by side (>= 64 tile
    columns: coalesced rows), PR rows per step (tile <= 4096 elements)."""
    PC = triton.next_power_of_2(p)
    G = max(1, 64 // PC)
    PR = max(1, min(triton.next_power_of_2(p), 4096 // (G * PC)))
    return PR, G, PC


def _check_map(t, name, allow_bool=False):
    if t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"{name}: expected shape [B, 1, H, W], got {tuple(t.shape)}")
    if t.dtype == torch.bool and allow_bool:
        return
    _check_float(t, name)


def _check_patch(p):
    if p < 1:
        raise ValueError(f"patch_size: expected an int >= 1, got {p}")


@_op("patch_centroids")
def patch_centroids(weights: torch.Tensor, patch_size: int,
                    offsets: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    _check_map(weights, "weights", allow_bool=True)
    _check_patch(patch_size)
    w = weights.to(torch.float32) if weights.dtype == torch.bool else weights
    B, _, H, W = w.shape
    p = int(patch_size)
    Hp, Wp = triton.cdiv(H, p), triton.cdiv(W, p)
    cen = torch.empty((B, Hp, Wp, 2), dtype=w.dtype, device=w.device)
    mass = torch.empty((B, Hp, Wp), dtype=w.dtype, device=w.device)
    if cen.numel() == 0:
        return cen, mass
    w = w.contiguous()
    off = offsets.to(w.dtype).contiguous() if offsets is not None else None
    PR, G, PC = _patch_blocks(p)
    groups = triton.cdiv(Wp, G)
    wrap_triton(_patch_centroids_kernel)[(B * Hp * groups,)](
        w, off if off is not None else w, cen, mass, H, W, Hp, Wp, p, groups, off is not None, PR, G, PC
    )
    return cen, mass


@triton.jit
def _pixel_tile(H, W, BH: tl.constexpr, BW: tl.constexpr):
    pid = tl.program_id(0)
    tw = tl.cdiv(W, BW)
    per = tw * tl.cdiv(H, BH)
    b = pid // per
    t = pid % per
    rows = (t // tw) * BH + tl.arange(0, BH)
    cols = (t % tw) * BW + tl.arange(0, BW)
    return b, rows, cols


@triton.jit
def _patch_centroids_bwd_kernel(gc_ptr, gm_ptr, w_ptr, off_ptr, c_ptr, m_ptr, gw_ptr, go_ptr, H, W, Hp, Wp, p,
                                HAS_OFF: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """Gather: pixel (i, j) of patch P reads P's centroid, mass and incoming gradients.
    c = sum w (pos + off) / m for m > 0: dc/dw = (pos + off - c) / m, dc/doff = w / m; dm/dw = 1."""
    b, rows, cols = _pixel_tile(H, W, BH, BW)
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    pi = rows // p
    pj = cols // p
    po = (b.to(tl.int64) * Hp + pi[:, None]) * Wp + pj[None, :]
    m = tl.load(m_ptr + po, mask=inside, other=0).to(tl.float32)
    gm = tl.load(gm_ptr + po, mask=inside, other=0).to(tl.float32)
    gcx = tl.load(gc_ptr + po * 2, mask=inside, other=0).to(tl.float32)
    gcy = tl.load(gc_ptr + po * 2 + 1, mask=inside, other=0).to(tl.float32)
    # patch-local coordinates (the reference's): (j - j0) and the local centroid c - j0
    lcx = tl.load(c_ptr + po * 2, mask=inside, other=0).to(tl.float32) - (pj * p).to(tl.float32)[None, :]
    lcy = tl.load(c_ptr + po * 2 + 1, mask=inside, other=0).to(tl.float32) - (pi * p).to(tl.float32)[:, None]
    hw = H * W
    o = rows[:, None] * W + cols[None, :]
    px = tl.zeros([BH, BW], tl.float32) + (cols - pj * p).to(tl.float32)[None, :]
    py = tl.zeros([BH, BW], tl.float32) + (rows - pi * p).to(tl.float32)[:, None]
    if HAS_OFF:
        ob = off_ptr + b.to(tl.int64) * 2 * hw
        px = px + tl.load(ob + o, mask=inside, other=0).to(tl.float32)
        py = py + tl.load(ob + hw + o, mask=inside, other=0).to(tl.float32)
    has = m > 0
    inv = tl.where(has, 1.0 / tl.where(has, m, 1.0), 0.0)
    gw = gm + (gcx * (px - lcx) + gcy * (py - lcy)) * inv
    tl.store(gw_ptr + b.to(tl.int64) * hw + o, gw.to(gw_ptr.dtype.element_ty), mask=inside)
    if HAS_OFF:
        w = tl.load(w_ptr + b.to(tl.int64) * hw + o, mask=inside, other=0).to(tl.float32)
        gob = go_ptr + b.to(tl.int64) * 2 * hw
        ty = go_ptr.dtype.element_ty
        tl.store(gob + o, (gcx * w * inv).to(ty), mask=inside)
        tl.store(gob + hw + o, (gcy * w * inv).to(ty), mask=inside)


def _pix_blocks(H, W):
    return min(16, triton.next_power_of_2(max(H, 1))), min(64, triton.next_power_of_2(max(W, 1)))


@_op("_patch_centroids_backward")
def _patch_centroids_backward(grad_centroids: torch.Tensor, grad_mass: torch.Tensor, weights: torch.Tensor,
                              offsets: Optional[torch.Tensor], centroids: torch.Tensor, mass: torch.Tensor,
                              patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    _check_patch(patch_size)
    w = weights.to(torch.float32) if weights.dtype == torch.bool else weights
    B, _, H, W = w.shape
    p = int(patch_size)
    Hp, Wp = triton.cdiv(H, p), triton.cdiv(W, p)
    gw = torch.empty((B, 1, H, W), dtype=w.dtype, device=w.device)
    go = (torch.empty((B, 2, H, W), dtype=offsets.dtype, device=w.device) if offsets is not None
          else torch.empty((0,), dtype=w.dtype, device=w.device))
    if gw.numel() == 0:
        return gw, go
    w = w.contiguous()
    off = offsets.to(w.dtype).contiguous() if offsets is not None else None
    BH, BW = _pix_blocks(H, W)
    wrap_triton(_patch_centroids_bwd_kernel)[(B * triton.cdiv(H, BH) * triton.cdiv(W, BW),)](
        grad_centroids.contiguous(), grad_mass.contiguous(), w, off if off is not None else w,
        centroids.contiguous(), mass.contiguous(), gw, go if off is not None else gw, H, W, Hp, Wp, p,
        off is not None, BH, BW,
    )
    return gw, go


@triton.jit
def _pcc_scale_kernel(a_ptr, b_ptr, part_ptr, coef_ptr, H, W, Hp, Wp, p, groups, min_mass, WANT_COEF: tl.constexpr,
                      PR: tl.constexpr, G: tl.constexpr, PC: tl.constexpr):
    """One scale of patch_centroid_chamfer for G patches: both maps' statistics, the term (chamfer_kernels
    pcc_term), partials [B, Hp*groups, 2] = (sum of counted terms, count); with WANT_COEF the gradient of
    the term w.r.t. (m, sx, sy) of a and b for a unit upstream gradient (pcc_term_backward), [B, Hp, Wp, 6]."""
    pid = tl.program_id(0)
    pg = pid % groups
    t = pid // groups
    pi = t % Hp
    b = t // Hp
    ma, sxa, sya = _patch_sums(a_ptr, a_ptr, b, pi, pg, H, W, Wp, p, False, PR, G, PC)
    mb, sxb, syb = _patch_sums(b_ptr, b_ptr, b, pi, pg, H, W, Wp, p, False, PR, G, PC)
    pj = pg * G + tl.arange(0, G)
    ok = pj < Wp
    rows = _extent(pi, p, H) + tl.zeros([G], tl.int32)
    cols = _extent(pj, p, W)
    cxa, cya = _local_centroid(ma, sxa, sya, rows, cols, min_mass)
    cxb, cyb = _local_centroid(mb, sxb, syb, rows, cols, min_mass)
    pf = p + tl.zeros([G], tl.float32)  # p may be the constexpr 1
    ra = tl.minimum(ma / pf, 1.0)
    rb = tl.minimum(mb / pf, 1.0)
    dx = cxa - cxb
    dy = cya - cyb
    l2 = dx * dx + dy * dy
    pos = l2 > 0
    L = tl.where(pos, tl.sqrt_rn(tl.where(pos, l2, 1.0)), 0.0)
    dr = ra - rb
    count = ok & (ma + mb > min_mass)
    term = tl.where(count, ra * rb * L + pf * tl.abs(dr), 0.0)
    pp = part_ptr + ((b.to(tl.int64) * Hp + pi) * groups + pg) * 2
    tl.store(pp, tl.sum(term, axis=0))
    tl.store(pp + 1, tl.sum(count.to(tl.float32), axis=0))
    if WANT_COEF:
        sgn = tl.where(dr > 0, 1.0, tl.where(dr < 0, -1.0, 0.0))
        gra = rb * L + pf * sgn
        grb = ra * L - pf * sgn
        gma = gra * tl.where(ma / pf <= 1.0, 1.0 / pf, 0.0)
        gmb = grb * tl.where(mb / pf <= 1.0, 1.0 / pf, 0.0)
        kk = tl.where(L > 0, ra * rb / tl.where(L > 0, L, 1.0), 0.0)
        gcx = kk * dx
        gcy = kk * dy
        ha = ma > min_mass
        inva = 1.0 / tl.where(ha, ma, 1.0)
        gma += tl.where(ha, -(gcx * cxa + gcy * cya) * inva, 0.0)
        gsxa = tl.where(ha, gcx * inva, 0.0)
        gsya = tl.where(ha, gcy * inva, 0.0)
        hb = mb > min_mass
        invb = 1.0 / tl.where(hb, mb, 1.0)
        gmb += tl.where(hb, (gcx * cxb + gcy * cyb) * invb, 0.0)
        gsxb = tl.where(hb, -gcx * invb, 0.0)
        gsyb = tl.where(hb, -gcy * invb, 0.0)
        cp = coef_ptr + ((b.to(tl.int64) * Hp + pi) * Wp + pj) * 6
        tl.store(cp, tl.where(count, gma, 0.0), mask=ok)
        tl.store(cp + 1, tl.where(count, gsxa, 0.0), mask=ok)
        tl.store(cp + 2, tl.where(count, gsya, 0.0), mask=ok)
        tl.store(cp + 3, tl.where(count, gmb, 0.0), mask=ok)
        tl.store(cp + 4, tl.where(count, gsxb, 0.0), mask=ok)
        tl.store(cp + 5, tl.where(count, gsyb, 0.0), mask=ok)


@triton.jit
def _pcc_bwd_kernel(coef_ptr, fac_ptr, sizes_ptr, base_ptr, ga_ptr, gb_ptr, B, H, W, S, BH: tl.constexpr,
                    BW: tl.constexpr):
    """grad_a(i, j) = sum over scales s of fac[b, s] * (gm + gsx (j - j0) + gsy (i - i0)) of its patch (a
    gather per scale); likewise grad_b. fac[b, s] = g_b / (count_b,s * S) (0 when nothing counted)."""
    b, rows, cols = _pixel_tile(H, W, BH, BW)
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    ga = tl.zeros([BH, BW], tl.float32)
    gb = tl.zeros([BH, BW], tl.float32)
    for s in range(S):
        p = tl.load(sizes_ptr + s)
        Wp = (W + p - 1) // p
        Hp = (H + p - 1) // p
        f = tl.load(fac_ptr + b * S + s)
        pi = rows // p
        pj = cols // p
        lx = (cols - pj * p).to(tl.float32)[None, :]
        ly = (rows - pi * p).to(tl.float32)[:, None]
        cp = coef_ptr + tl.load(base_ptr + s) + ((b.to(tl.int64) * Hp + pi[:, None]) * Wp + pj[None, :]) * 6
        c0 = tl.load(cp, mask=inside, other=0.0)
        c1 = tl.load(cp + 1, mask=inside, other=0.0)
        c2 = tl.load(cp + 2, mask=inside, other=0.0)
        c3 = tl.load(cp + 3, mask=inside, other=0.0)
        c4 = tl.load(cp + 4, mask=inside, other=0.0)
        c5 = tl.load(cp + 5, mask=inside, other=0.0)
        ga += f * (c0 + c1 * lx + c2 * ly)
        gb += f * (c3 + c4 * lx + c5 * ly)
    o = b.to(tl.int64) * H * W + rows[:, None] * W + cols[None, :]
    tl.store(ga_ptr + o, ga.to(ga_ptr.dtype.element_ty), mask=inside)
    tl.store(gb_ptr + o, gb.to(gb_ptr.dtype.element_ty), mask=inside)


def _pcc_prep(a, b, patch_sizes, min_mass):
    _check_map(a, "a", allow_bool=True)
    _check_map(b, "b", allow_bool=True)
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    if len(patch_sizes) == 0:
        raise ValueError("patch_sizes: expected at least one patch size, got []")
    for p in patch_sizes:
        if int(p) < 1:
            raise ValueError(f"patch_sizes: expected ints >= 1, got {list(patch_sizes)}")
    fa = a.dtype if a.is_floating_point() else torch.float32
    fb = b.dtype if b.is_floating_point() else torch.float32
    dt = torch.promote_types(fa, fb)
    return a.to(dt).contiguous(), b.to(dt).contiguous(), dt


def _pcc_scales(a, b, patch_sizes, min_mass, want_coef):
    """Per scale: (value [B] float32, count [B], coef [B, Hp, Wp, 6] or None)."""
    B, _, H, W = a.shape
    out = []
    for p in patch_sizes:
        p = int(p)
        Hp, Wp = triton.cdiv(H, p), triton.cdiv(W, p)
        PR, G, PC = _patch_blocks(p)
        groups = triton.cdiv(Wp, G)
        part = torch.empty((B, Hp * groups, 2), dtype=torch.float32, device=a.device)
        coef = torch.empty((B, Hp, Wp, 6), dtype=torch.float32, device=a.device) if want_coef else None
        wrap_triton(_pcc_scale_kernel)[(B * Hp * groups,)](
            a, b, part, coef if want_coef else part, H, W, Hp, Wp, p, groups, float(min_mass), bool(want_coef),
            PR, G, PC,
        )
        s = part.sum(1)
        n = s[:, 1]
        val = torch.where(n > 0, s[:, 0] / n.clamp(min=1), torch.zeros_like(n))
        out.append((val, n, coef))
    return out


def _pcc_forward(a, b, patch_sizes, min_mass, reduction):
    _check_reduction(reduction)
    a, b, dt = _pcc_prep(a, b, patch_sizes, min_mass)
    B, _, H, W = a.shape
    if B == 0 or H == 0 or W == 0:
        per = torch.zeros((B,), dtype=torch.float32, device=a.device)
    else:
        per = sum(v for v, _, _ in _pcc_scales(a, b, patch_sizes, min_mass, False)) / len(patch_sizes)
    return _reduce_batch(per.to(dt), reduction)


# The custom op of the interpreter path is called with the schema's defaults dropped, so its Python body
# needs the default; triton_op infers the schema from the annotations and rejects a list default.
if _INTERPRET:
    @_op("patch_centroid_chamfer")
    def patch_centroid_chamfer(a: torch.Tensor, b: torch.Tensor, patch_sizes: list[int] = (8, 16, 32),
                               min_mass: float = 0.001, reduction: str = "mean") -> torch.Tensor:
        return _pcc_forward(a, b, patch_sizes, min_mass, reduction)
else:
    @_op("patch_centroid_chamfer")
    def patch_centroid_chamfer(a: torch.Tensor, b: torch.Tensor, patch_sizes: list[int], min_mass: float = 0.001,
                               reduction: str = "mean") -> torch.Tensor:
        return _pcc_forward(a, b, patch_sizes, min_mass, reduction)


@_op("_patch_centroid_chamfer_backward")
def _patch_centroid_chamfer_backward(grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor, patch_sizes: list[int],
                                     min_mass: float, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    _check_reduction(reduction)
    # each gradient in its map's dtype (the promoted one for a bool map), like the fake kernel
    da = a.dtype if a.dtype != torch.bool else None
    db = b.dtype if b.dtype != torch.bool else None
    a, b, dt = _pcc_prep(a, b, patch_sizes, min_mass)
    B, _, H, W = a.shape
    ga = torch.empty((B, 1, H, W), dtype=da or dt, device=a.device)
    gb = torch.empty((B, 1, H, W), dtype=db or dt, device=a.device)
    if ga.numel() == 0:
        return ga, gb
    S = len(patch_sizes)
    scales = _pcc_scales(a, b, patch_sizes, min_mass, True)
    g = _batch_grad(grad, B, reduction)
    fac = torch.stack([torch.where(n > 0, g / (n.clamp(min=1) * S), torch.zeros_like(n)) for _, n, _ in scales],
                      dim=1).contiguous()  # [B, S]
    coef = torch.cat([c.reshape(-1) for _, _, c in scales])
    sizes = torch.tensor([int(p) for p in patch_sizes], dtype=torch.int32).to(a.device)
    bases = [0]
    for _, _, c in scales[:-1]:
        bases.append(bases[-1] + c.numel())
    base = torch.tensor(bases, dtype=torch.int64).to(a.device)
    BH, BW = _pix_blocks(H, W)
    wrap_triton(_pcc_bwd_kernel)[(B * triton.cdiv(H, BH) * triton.cdiv(W, BW),)](
        coef, fac, sizes, base, ga, gb, B, H, W, S, BH, BW
    )
    return ga, gb


# ------------------------------------------------------------------------------------------------
# boundary_chamfer
# ------------------------------------------------------------------------------------------------
@triton.jit
def _bc_reduce_kernel(a_ptr, b_ptr, da_ptr, db_ptr, part_ptr, HW, tiles, BLOCK: tl.constexpr):
    """partials [B, tiles, 4] float64 = (#a, sum over a of DT_b, #b, sum over b of DT_a)."""
    pid = tl.program_id(0)
    bi = pid // tiles
    t = pid % tiles
    i = t * BLOCK + tl.arange(0, BLOCK)
    msk = i < HW
    off = bi.to(tl.int64) * HW + i
    av = tl.load(a_ptr + off, mask=msk, other=0) != 0
    bv = tl.load(b_ptr + off, mask=msk, other=0) != 0
    db = tl.load(db_ptr + off, mask=av, other=0.0).to(tl.float64)
    da = tl.load(da_ptr + off, mask=bv, other=0.0).to(tl.float64)
    pp = part_ptr + (bi.to(tl.int64) * tiles + t) * 4
    tl.store(pp, tl.sum(av.to(tl.float64), axis=0))
    tl.store(pp + 1, tl.sum(tl.where(av, db, 0.0), axis=0))
    tl.store(pp + 2, tl.sum(bv.to(tl.float64), axis=0))
    tl.store(pp + 3, tl.sum(tl.where(bv, da, 0.0), axis=0))


@_op("boundary_chamfer")
def boundary_chamfer(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    _check_reduction(reduction)
    for t, name in ((a, "a"), (b, "b")):
        if t.dim() != 4 or t.shape[1] != 1:
            raise ValueError(f"{name}: expected shape [B, 1, H, W], got {tuple(t.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    B, _, H, W = a.shape
    if a.numel() == 0:
        return _reduce_batch(torch.zeros((B,), dtype=torch.float32, device=a.device), reduction)
    am = a.bool().contiguous()
    bm = b.bool().contiguous()
    da, _ = torch.ops.hmore_triton.distance_transform(am, False)
    db, _ = torch.ops.hmore_triton.distance_transform(bm, False)
    HW = H * W
    BLOCK = 1024
    tiles = triton.cdiv(HW, BLOCK)
    part = torch.empty((B, tiles, 4), dtype=torch.float64, device=a.device)
    wrap_triton(_bc_reduce_kernel)[(B * tiles,)](am.view(torch.uint8), bm.view(torch.uint8), da, db, part, HW, tiles,
                                                 BLOCK)
    s = part.sum(1)
    na, sab, nb, sba = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    per = sab / na.clamp(min=1) + sba / nb.clamp(min=1)
    per = torch.where((na == 0) & (nb == 0), torch.zeros_like(per), per)
    per = torch.where((na == 0) != (nb == 0), torch.full_like(per, float("inf")), per)
    return _reduce_batch(per.to(torch.float32), reduction)


from .. import _meta_chamfer  # noqa: E402

_meta_chamfer.register("hmore_triton", fake=_INTERPRET)
