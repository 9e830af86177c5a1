"""Triton backend of the correlation family (docs/ops.md §1, §5): ``torch.ops.hmore_triton.<op>``.

Registration follows :mod:`hmore_kernels.triton.edges`: on a GPU every op is a
:func:`torch.library.triton_op` whose kernels are launched through :func:`torch.library.wrap_triton` and
whose Python body doubles as the fake kernel (it only allocates, launches and calls shape-static torch
ops); under ``TRITON_INTERPRET=1`` they are plain custom ops with the C++ schemas of
``csrc/corr/corr.cpp`` and the fake kernels of :mod:`hmore_kernels._meta_corr`.

Kernels (conventions of ``csrc/corr/corr_kernels.cuh``):

* ``corr_volume`` / ``corr_pyramid``: one batched GEMM kernel (``tl.dot``, float32 accumulation, the scale
  applied in the epilogue, stored in the features' dtype; float32 inputs use ``input_precision="ieee"``
  so the volume is a float32 product, not TF32). Level l correlates fmap1 with fmap2 average-pooled l
  times (pooling the volume over q equals correlating with the pooled fmap2; the pooled maps are built
  once in float32 and are O(H*W*D)); the volume is never pooled. The backward is GEMMs too (float32
  accumulation across levels), then the adjoint of the pooling.
* ``corr_lookup``: one launch for all levels (up to 8 per launch) and taps; a program owns ``BN`` query
  pixels x all (2r+1)^2 taps (a [BN, taps] tile), loads their coordinates once and every level's four
  bilinear corners per tap (the (2r+2)^2 neighbourhood of a query is contiguous rows of its own slice,
  so these gathers stay in L1/L2). Positions are per tap, ``coords / 2**l + d`` rounded like RAFT. The
  backward is a gather: the gradient of the pyramid at the (2r+2)^2 window positions of a query (its own
  slice: plain stores, no atomics, deterministic) sums the <= 4 taps that touch the position, and the
  gradient of the coordinates is the per-tap bilinear derivative (one-sided at integers, as grid_sample).
* ``corr_lookup_otf``: no volume. Per (query, level) the (2r+2)^2 dot products of fmap1(p) with the pooled
  fmap2 around the window (channels-last so each D-vector is contiguous), float32 accumulation, written
  to a [N, L, (2r+2)^2] float32 scratch (the size of the output, not of a volume); a second kernel does
  the bilinear combination per tap. Backward: the window gradient (gather from the tap gradients), the
  coordinate gradient from the recomputed window correlations (gather), grad fmap1 by gather, and grad of
  the pooled fmap2 -- a scatter: ``deterministic=False`` uses float32 atomics into a channels-last
  buffer; ``deterministic=True`` sorts the (query, level, window) entries by target position (a stable
  argsort, so each target's contributions are summed in increasing query order) and reduces each
  target's segment in one program (a sparse-dense product, CSR by target). Then the adjoint of pooling.
* ``local_corr``: a [BP pixels, (2d+1)^2 taps] tile per program, a loop over channels (NCHW: each channel
  plane read contiguously along pixels). Backward: two gathers (grad fmap1 at the strided pixels; grad
  fmap2 enumerates for each position the (2d+1)^2 output pixels that read it), no atomics.

dtypes: float32, float16, bfloat16 (float32 accumulation, float32 coordinates). float64 is not supported
here (reference / cpu only): a TypeError says so.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch.library import wrap_triton

from ._common import INTERPRET, op_decorator

# The C++ schemas (csrc/corr/corr.cpp), verbatim.
_SCHEMAS = {
    "corr_volume": "(Tensor fmap1, Tensor fmap2, float? scale=None) -> Tensor",
    "_corr_volume_backward": "(Tensor grad, Tensor fmap1, Tensor fmap2, float? scale) -> (Tensor, Tensor)",
    "corr_pyramid": "(Tensor fmap1, Tensor fmap2, int num_levels=4, float? scale=None) -> Tensor[]",
    "_corr_pyramid_backward": "(Tensor?[] grads, Tensor fmap1, Tensor fmap2, float? scale) -> (Tensor, Tensor)",
    "corr_lookup": "(Tensor[] pyramid, Tensor coords, int radius=4, str layout='raft', "
    "bool deterministic=False) -> Tensor",
    "_corr_lookup_backward": "(Tensor grad, Tensor[] pyramid, Tensor coords, int radius, str layout, "
    "bool deterministic) -> (Tensor[], Tensor)",
    "corr_lookup_otf": "(Tensor fmap1, Tensor fmap2, Tensor coords, int radius=4, int num_levels=4, "
    "float? scale=None, str layout='raft', bool deterministic=False) -> Tensor",
    "_corr_lookup_otf_backward": "(Tensor grad, Tensor fmap1, Tensor fmap2, Tensor coords, int radius, "
    "int num_levels, float? scale, str layout, bool deterministic) -> (Tensor, Tensor, Tensor)",
    "local_corr": "(Tensor fmap1, Tensor fmap2, int max_displacement, int stride=1, int dilation=1, "
    "float? scale=None) -> Tensor",
    "_local_corr_backward": "(Tensor grad, Tensor fmap1, Tensor fmap2, int max_displacement, int stride, "
    "int dilation, float? scale) -> (Tensor, Tensor)",
}

_INTERPRET = INTERPRET
_op = op_decorator(_SCHEMAS)

MAX_LEVELS = 8  # pyramid levels per corr_lookup launch (more levels: one launch per 8)
# Tile sizes for a GPU; the interpreter (cost per program, not per element) gets wider tiles. The AOT
# compile test sets this to True while recording, so that it compiles what a GPU runs.
_TILES_GPU = not INTERPRET
_GPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_dtype(t, name):
    if t.dtype not in _GPU_DTYPES:
        raise TypeError(
            f"{name}: the triton backend supports float32, float16 and bfloat16, got {t.dtype}"
            + (" (float64 runs on the reference and cpu backends)" if t.dtype == torch.float64 else "")
        )


def _scale(D, scale):
    return (1.0 / math.sqrt(D) if D > 0 else 1.0) if scale is None else float(scale)


def _p2(n, lo=1):
    return max(lo, triton.next_power_of_2(max(int(n), 1)))


def _layout_raft(layout):
    if layout not in ("raft", "yx"):
        raise ValueError(f"layout: expected 'raft' or 'yx', got {layout!r}")
    return layout == "raft"


# ------------------------------------------------------------------------------------------------
# batched GEMM: C[z] (+)= alpha * A[z] @ B[z], arbitrary strides, float32 accumulation
# ------------------------------------------------------------------------------------------------
@triton.jit
def _bmm_kernel(a_ptr, b_ptr, c_ptr, M, N, K, sab, sam, sak, sbb, sbk, sbn, scb, scm, scn, alpha,
                ACC: tl.constexpr, PREC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """One program per [BM, BN] tile of one batch entry, the tiles of all entries on one flat grid axis
    (no 65535 limit). The scale is applied once in the epilogue (one rounding fewer than scaling an input);
    ACC adds to C (float32 accumulation over pyramid levels)."""
    pid = tl.program_id(0)
    tn = tl.cdiv(N, BN)
    per = tl.cdiv(M, BM) * tn
    z = pid // per
    t = pid % per
    rm = (t // tn) * BM + tl.arange(0, BM)
    rn = (t % tn) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    z64 = z.to(tl.int64)
    a_base = a_ptr + z64 * sab + rm[:, None].to(tl.int64) * sam
    b_base = b_ptr + z64 * sbb + rn[None, :].to(tl.int64) * sbn
    acc = tl.zeros([BM, BN], tl.float32)
    for k0 in range(0, K, BK):
        kk = k0 + rk
        a = tl.load(a_base + kk[None, :].to(tl.int64) * sak, mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        b = tl.load(b_base + kk[:, None].to(tl.int64) * sbk, mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc += tl.dot(a, b, input_precision=PREC)
    acc = acc * alpha
    cm = (rm[:, None] < M) & (rn[None, :] < N)
    c_off = c_ptr + z64 * scb + rm[:, None].to(tl.int64) * scm + rn[None, :].to(tl.int64) * scn
    if ACC:
        acc += tl.load(c_off, mask=cm, other=0.0).to(tl.float32)
    tl.store(c_off, acc.to(c_ptr.dtype.element_ty), mask=cm)


def _bmm(a, b, c, alpha, acc=False):
    """c[z] (+)= alpha * a[z] @ b[z] for 3-D tensors of any strides (a [Z, M, K], b [Z, K, N], c [Z, M, N])."""
    Z, M, K = a.shape
    N = b.shape[2]
    if Z * M * N == 0:
        return
    if K == 0:
        if not acc:
            c.zero_()
        return
    BM, BN, BK = 64, 64, 32  # fixed: one specialization per dtype (masked edges cost little)
    prec = "ieee" if a.dtype == torch.float32 else "tf32"  # fp16/bf16 operands ignore it
    grid = (triton.cdiv(M, BM) * triton.cdiv(N, BN) * Z,)
    wrap_triton(_bmm_kernel)[grid](
        a, b, c, M, N, K, a.stride(0), a.stride(1), a.stride(2), b.stride(0), b.stride(1), b.stride(2),
        c.stride(0), c.stride(1), c.stride(2), float(alpha), bool(acc), prec, BM, BN, BK,
    )


def _pooled_levels(fmap2, num_levels):
    """fmap2 average-pooled 0 .. num_levels-1 times (2x2, floor), computed in float32 from the float32
    previous level; [B, D, H2>>l, W2>>l] each."""
    out = [fmap2.float()]
    for _ in range(num_levels - 1):
        x = out[-1]
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        out.append(F.avg_pool2d(x, 2, stride=2) if x.numel() and h > 0 and w > 0 else x.new_zeros(x.shape[0], x.shape[1], h, w))
    return out


# ------------------------------------------------------------------------------------------------
# corr_volume / corr_pyramid
# ------------------------------------------------------------------------------------------------
def _volume_into(f1, f2l, out3, s):
    """out3 [B, P, Q] = s * f1^T f2l with f1 [B, D, P], f2l [B, D, Q] (views)."""
    _bmm(f1.transpose(1, 2), f2l, out3, s)


@_op("corr_volume")
def corr_volume(fmap1: torch.Tensor, fmap2: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
    _check_dtype(fmap1, "fmap1")
    B, D, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    out = fmap1.new_empty((B, H1, W1, H2, W2))
    if out.numel() == 0:
        return out
    f1 = fmap1.reshape(B, D, H1 * W1)
    f2 = fmap2.to(fmap1.dtype).reshape(B, D, H2 * W2)
    _volume_into(f1, f2, out.view(B, H1 * W1, H2 * W2), _scale(D, scale))
    return out


@_op("_corr_volume_backward")
def _corr_volume_backward(grad: torch.Tensor, fmap1: torch.Tensor, fmap2: torch.Tensor,
                          scale: Optional[float]) -> tuple[torch.Tensor, torch.Tensor]:
    B, D, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    s = _scale(D, scale)
    g = grad.to(fmap1.dtype).reshape(B, H1 * W1, H2 * W2)
    g1 = torch.empty((B, D, H1, W1), dtype=fmap1.dtype, device=fmap1.device)
    g2 = torch.empty((B, D, H2, W2), dtype=fmap2.dtype, device=fmap2.device)
    # grad f1 [B, D, P] = s * f2 [B, D, Q] @ G^T [B, Q, P]; grad f2 [B, D, Q] = s * f1 [B, D, P] @ G [B, P, Q]
    _bmm(fmap2.to(fmap1.dtype).reshape(B, D, H2 * W2), g.transpose(1, 2), g1.view(B, D, H1 * W1), s)
    _bmm(fmap1.reshape(B, D, H1 * W1), g, g2.view(B, D, H2 * W2), s)
    return g1, g2


@_op("corr_pyramid")
def corr_pyramid(fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4,
                 scale: Optional[float] = None) -> list[torch.Tensor]:
    _check_dtype(fmap1, "fmap1")
    if num_levels < 1:
        raise ValueError(f"num_levels: expected an int >= 1, got {num_levels}")
    B, D, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    s = _scale(D, scale)
    f1 = fmap1.reshape(B, D, H1 * W1)
    levels = _pooled_levels(fmap2, num_levels)
    out = []
    for l, f2l in enumerate(levels):
        h, w = H2 >> l, W2 >> l
        lvl = fmap1.new_empty((B * H1 * W1, 1, h, w))
        if lvl.numel():
            # level 0 keeps the features' own precision; pooled levels are rounded once to it
            f2d = fmap2.to(fmap1.dtype) if l == 0 else f2l.to(fmap1.dtype)
            _volume_into(f1, f2d.reshape(B, D, h * w), lvl.view(B, H1 * W1, h * w), s)
        out.append(lvl)
    return out


@_op("_corr_pyramid_backward")
def _corr_pyramid_backward(grads: list[Optional[torch.Tensor]], fmap1: torch.Tensor, fmap2: torch.Tensor,
                           scale: Optional[float]) -> tuple[torch.Tensor, torch.Tensor]:
    B, D, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    s = _scale(D, scale)
    P = H1 * W1
    dt = fmap1.dtype
    levels = _pooled_levels(fmap2, len(grads))
    g1 = torch.zeros((B, D, P), dtype=torch.float32, device=fmap1.device)  # float32 across levels
    f1 = fmap1.reshape(B, D, P)
    g2s = []
    for l, (g, f2l) in enumerate(zip(grads, levels)):
        h, w = H2 >> l, W2 >> l
        if g is None or g.numel() == 0:
            g2s.append(None if l else torch.zeros((B, h, w, D), dtype=torch.float32, device=fmap1.device))
            continue
        gl = g.to(dt).reshape(B, P, h * w)
        _bmm(f2l.to(dt).reshape(B, D, h * w), gl.transpose(1, 2), g1, s, acc=True)
        g2l = torch.empty((B, h, w, D), dtype=torch.float32, device=fmap1.device)  # channels-last, float32
        # [B, Q, D] = s * G^T [B, Q, P] @ f1^T [B, P, D]
        _bmm(gl.transpose(1, 2), f1.transpose(1, 2), g2l.view(B, h * w, D), s)
        g2s.append(g2l)
    g2 = _pool_adjoint_chain(g2s, B, H2, W2, D, fmap1.device)
    return g1.view(B, D, H1, W1).to(dt), g2.permute(0, 3, 1, 2).to(fmap2.dtype).contiguous()


def _pool_adjoint_chain(g2s, B, H2, W2, D, device):
    """sum_l (P*)^l g2s[l]: g2s[l] is [B, H2>>l, W2>>l, D] float32 or None (level 0 never None)."""
    acc = None
    for l in range(len(g2s) - 1, -1, -1):
        g = g2s[l]
        h, w = H2 >> l, W2 >> l
        if acc is not None:
            hc, wc = acc.shape[1], acc.shape[2]
            if g is None:
                g = torch.zeros((B, h, w, D), dtype=torch.float32, device=device)
            if hc and wc:
                up = acc.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2) * 0.25
                g[:, : 2 * hc, : 2 * wc, :] += up
        acc = g
    return acc


# ------------------------------------------------------------------------------------------------
# shared lookup helpers
# ------------------------------------------------------------------------------------------------
@triton.jit
def _sel(l: tl.constexpr, a0, a1, a2, a3, a4, a5, a6, a7):
    if l == 0:
        return a0
    elif l == 1:
        return a1
    elif l == 2:
        return a2
    elif l == 3:
        return a3
    elif l == 4:
        return a4
    elif l == 5:
        return a5
    elif l == 6:
        return a6
    else:
        return a7


@triton.jit
def _tap_ij(t, R: tl.constexpr, RAFT: tl.constexpr):
    """(dx + r, dy + r) of tap t."""
    K: tl.constexpr = 2 * R + 1
    if RAFT:
        return t // K, t % K
    else:
        return t % K, t // K


@triton.jit
def _floor_pos(p, lo, hi):
    """floor(p) as int32 with the two bilinear weights (x0 + 1) - p and p - x0 (grid_sample's form). The
    integer is taken from p clamped to [lo, hi], chosen by the caller so that past them every position
    it derives is outside the level anyway; the clamp keeps the conversion in range (inf/NaN included;
    their weights stay NaN, as the reference's)."""
    f = tl.floor(p)
    i = tl.floor(tl.minimum(tl.maximum(p, lo), hi)).to(tl.int32)
    return i, (f + 1.0) - p, p - f


@triton.jit
def _corners(base, x0, y0, h, w, m):
    """The four corners (y0,x0), (y0,x0+1), (y0+1,x0), (y0+1,x0+1) of a [h, w] plane, 0 outside."""
    x1 = x0 + 1
    y1 = y0 + 1
    ix0 = (x0 >= 0) & (x0 < w)
    ix1 = (x1 >= 0) & (x1 < w)
    iy0 = (y0 >= 0) & (y0 < h)
    iy1 = (y1 >= 0) & (y1 < h)
    v00 = tl.load(base + y0 * w + x0, mask=m & iy0 & ix0, other=0.0).to(tl.float32)
    v01 = tl.load(base + y0 * w + x1, mask=m & iy0 & ix1, other=0.0).to(tl.float32)
    v10 = tl.load(base + y1 * w + x0, mask=m & iy1 & ix0, other=0.0).to(tl.float32)
    v11 = tl.load(base + y1 * w + x1, mask=m & iy1 & ix1, other=0.0).to(tl.float32)
    return v00, v01, v10, v11


@triton.jit
def _gtap(g_ptr, gb, HW1, i, j, ch0, m, R: tl.constexpr, RAFT: tl.constexpr):
    """grad of tap (dx, dy) = (i - r, j - r) of the level whose first channel is ch0, 0 where (i, j) is
    not a tap. gb: [BN, 1] offsets of the query (batch + pixel)."""
    K: tl.constexpr = 2 * R + 1
    ok = m & (i >= 0) & (i < K) & (j >= 0) & (j < K)
    if RAFT:
        t = i * K + j
    else:
        t = j * K + i
    t = tl.where(ok, t, 0)
    return tl.load(g_ptr + gb + (ch0 + t).to(tl.int64) * HW1, mask=ok, other=0.0).to(tl.float32)


@triton.jit
def _window_grad(g_ptr, gb, HW1, ch0, bb, a, wx0, wx1, wy0, wy1, m, R: tl.constexpr, RAFT: tl.constexpr):
    """Gradient of window position (x0 - r + bb, y0 - r + a): the sum over the <= 4 taps whose bilinear
    corners land on it (tap (bb, a) as its (y0,x0) corner, tap (bb-1, a) as (y0,x0+1), ...), in a fixed
    order. Window weights (shared by all taps of the level) from x0 = floor(centre)."""
    g00 = _gtap(g_ptr, gb, HW1, bb, a, ch0, m, R, RAFT)
    g01 = _gtap(g_ptr, gb, HW1, bb - 1, a, ch0, m, R, RAFT)
    g10 = _gtap(g_ptr, gb, HW1, bb, a - 1, ch0, m, R, RAFT)
    g11 = _gtap(g_ptr, gb, HW1, bb - 1, a - 1, ch0, m, R, RAFT)
    return g00 * (wx0 * wy0) + g01 * (wx1 * wy0) + g10 * (wx0 * wy1) + g11 * (wx1 * wy1)


# ------------------------------------------------------------------------------------------------
# corr_lookup
# ------------------------------------------------------------------------------------------------
@triton.jit
def _queries(coords_ptr, NQ, HW1, BN: tl.constexpr):
    """This program's BN queries n = b * HW1 + s: (n, n < NQ, b, s, offset of x in [B, 2, H1, W1] (y is
    HW1 further), x, y), the coordinates loaded once, in float32."""
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    nm = n < NQ
    b = n // HW1
    s = n - b * HW1
    cb = b.to(tl.int64) * 2 * HW1 + s
    cx = tl.load(coords_ptr + cb, mask=nm, other=0.0).to(tl.float32)
    cy = tl.load(coords_ptr + cb + HW1, mask=nm, other=0.0).to(tl.float32)
    return n, nm, b, s, cb, cx, cy


@triton.jit
def _window(x, y, b, bb, a, mk, h, w, R: tl.constexpr):
    """The (2r+2)^2 window of a level h x w around level coordinates (x, y) [BN], entry (a, bb) at
    (floor(x) - r + bb, floor(y) - r + a): (inside the level [BN, WP], flat index in the level's
    [B, h, w] positions, 0 outside)."""
    xc0, _u0, _u1 = _floor_pos(x, -2.0 - R, w + R + 1.0)
    yc0, _v0, _v1 = _floor_pos(y, -2.0 - R, h + R + 1.0)
    xa = xc0[:, None] - R + bb[None, :]
    ya = yc0[:, None] - R + a[None, :]
    ins = mk & (xa >= 0) & (xa < w) & (ya >= 0) & (ya < h)
    q = tl.where(ins, ((b.to(tl.int64) * h)[:, None] + ya) * w + xa, 0)
    return ins, q


@triton.jit
def _lookup_fwd_kernel(coords_ptr, out_ptr, p0, p1, p2, p3, p4, p5, p6, p7, h0, h1, h2, h3, h4, h5, h6, h7,
                       w0, w1, w2, w3, w4, w5, w6, w7, NQ, HW1, CO, L0: tl.constexpr, NL: tl.constexpr,
                       R: tl.constexpr, RAFT: tl.constexpr, BN: tl.constexpr, TP: tl.constexpr):
    """out[b, (L0 + l) * T + t, pixel] for BN queries (n = b * HW1 + pixel) x all taps x NL levels.
    Coordinates are loaded once; the position of a tap is coords / 2**l + d rounded per tap (RAFT)."""
    T: tl.constexpr = (2 * R + 1) * (2 * R + 1)
    n, nm, b, s, cb, cx, cy = _queries(coords_ptr, NQ, HW1, BN)
    t = tl.arange(0, TP)
    i, j = _tap_ij(t, R, RAFT)
    dx = (i - R).to(tl.float32)
    dy = (j - R).to(tl.float32)
    m = nm[:, None] & (t < T)[None, :]
    ob = b.to(tl.int64) * CO * HW1 + s
    n64 = n.to(tl.int64)
    for l in tl.static_range(NL):
        ptr = _sel(l, p0, p1, p2, p3, p4, p5, p6, p7)
        h = _sel(l, h0, h1, h2, h3, h4, h5, h6, h7)
        w = _sel(l, w0, w1, w2, w3, w4, w5, w6, w7)
        inv = 1.0 / (1 << (L0 + l))
        x = (cx * inv)[:, None] + dx[None, :]
        y = (cy * inv)[:, None] + dy[None, :]
        x0, wx0, wx1 = _floor_pos(x, -2.0, w + 1.0)
        y0, wy0, wy1 = _floor_pos(y, -2.0, h + 1.0)
        base = ptr + (n64 * h * w)[:, None]
        v00, v01, v10, v11 = _corners(base, x0, y0, h, w, m)
        val = v00 * (wx0 * wy0) + v01 * (wx1 * wy0) + v10 * (wx0 * wy1) + v11 * (wx1 * wy1)
        # An empty level (h or w 0) reads 0 whatever the coordinate, as the reference: without this a
        # non-finite coordinate's NaN weights times the zero padding would give NaN.
        val = tl.where((h > 0) & (w > 0), val, 0.0)
        tl.store(out_ptr + ob[:, None] + ((L0 + l) * T + t).to(tl.int64)[None, :] * HW1, val, mask=m)


@triton.jit
def _lookup_bwd_kernel(grad_ptr, coords_ptr, gc_ptr, p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6,
                       q7, h0, h1, h2, h3, h4, h5, h6, h7, w0, w1, w2, w3, w4, w5, w6, w7, NQ, HW1, CO,
                       L0: tl.constexpr, NL: tl.constexpr, ACC: tl.constexpr, R: tl.constexpr,
                       RAFT: tl.constexpr, BN: tl.constexpr, TP: tl.constexpr, WP: tl.constexpr):
    """Backward of _lookup_fwd_kernel for BN queries: grad of the pyramid slices (q_l: zero-filled, this
    program writes the (2r+2)^2 window of each of its queries -- its own slice, so no atomics) and of the
    coordinates (per tap, grid_sample's derivative; ACC adds to an earlier chunk of levels)."""
    T: tl.constexpr = (2 * R + 1) * (2 * R + 1)
    S: tl.constexpr = 2 * R + 2
    n, nm, b, s, cb, cx, cy = _queries(coords_ptr, NQ, HW1, BN)
    t = tl.arange(0, TP)
    i, j = _tap_ij(t, R, RAFT)
    dx = (i - R).to(tl.float32)
    dy = (j - R).to(tl.float32)
    m = nm[:, None] & (t < T)[None, :]
    k = tl.arange(0, WP)
    bb = k % S
    a = k // S
    mk = nm[:, None] & (k < S * S)[None, :]
    gb = (b.to(tl.int64) * CO * HW1 + s)[:, None]
    n64 = n.to(tl.int64)
    gx = tl.zeros([BN], tl.float32)
    gy = tl.zeros([BN], tl.float32)
    for l in tl.static_range(NL):
        ptr = _sel(l, p0, p1, p2, p3, p4, p5, p6, p7)
        gptr = _sel(l, q0, q1, q2, q3, q4, q5, q6, q7)
        h = _sel(l, h0, h1, h2, h3, h4, h5, h6, h7)
        w = _sel(l, w0, w1, w2, w3, w4, w5, w6, w7)
        inv = 1.0 / (1 << (L0 + l))
        base = (n64 * h * w)[:, None]
        # coordinates: per tap, exactly the forward's positions
        x = (cx * inv)[:, None] + dx[None, :]
        y = (cy * inv)[:, None] + dy[None, :]
        x0, wx0, wx1 = _floor_pos(x, -2.0, w + 1.0)
        y0, wy0, wy1 = _floor_pos(y, -2.0, h + 1.0)
        v00, v01, v10, v11 = _corners(ptr + base, x0, y0, h, w, m)
        g = tl.load(grad_ptr + gb + ((L0 + l) * T + t).to(tl.int64)[None, :] * HW1, mask=m, other=0.0).to(tl.float32)
        full = (h > 0) & (w > 0)  # an empty level adds nothing (its taps are constant 0)
        gx += tl.where(full, tl.sum(g * (wy0 * (v01 - v00) + wy1 * (v11 - v10)), axis=1) * inv, 0.0)
        gy += tl.where(full, tl.sum(g * (wx0 * (v10 - v00) + wx1 * (v11 - v01)), axis=1) * inv, 0.0)
        # pyramid: gather over the window of the level centre
        ccx = cx * inv
        ccy = cy * inv
        xc0, ux0, ux1 = _floor_pos(ccx, -2.0 - R, w + R + 1.0)
        yc0, uy0, uy1 = _floor_pos(ccy, -2.0 - R, h + R + 1.0)
        gw = _window_grad(grad_ptr, gb, HW1, (L0 + l) * T, bb[None, :], a[None, :], ux0[:, None], ux1[:, None],
                          uy0[:, None], uy1[:, None], mk, R, RAFT)
        xa = xc0[:, None] - R + bb[None, :]
        ya = yc0[:, None] - R + a[None, :]
        ins = mk & (xa >= 0) & (xa < w) & (ya >= 0) & (ya < h)
        tl.store(gptr + base + ya * w + xa, gw.to(gptr.dtype.element_ty), mask=ins)
    if ACC:
        gx += tl.load(gc_ptr + cb, mask=nm, other=0.0).to(tl.float32)
        gy += tl.load(gc_ptr + cb + HW1, mask=nm, other=0.0).to(tl.float32)
    tl.store(gc_ptr + cb, gx.to(gc_ptr.dtype.element_ty), mask=nm)
    tl.store(gc_ptr + cb + HW1, gy.to(gc_ptr.dtype.element_ty), mask=nm)


def _lookup_blocks(radius):
    TP = _p2((2 * radius + 1) ** 2)
    WP = _p2((2 * radius + 2) ** 2)
    # a [BN, taps] tile of about 2-4k elements per program
    BN = max(1, min(64, 4096 // max(TP, WP)))
    return BN, TP, WP


def _check_pyramid(pyramid, coords, radius):
    if len(pyramid) == 0:
        raise ValueError("pyramid: expected at least one level, got an empty list")
    if radius < 0:
        raise ValueError(f"radius: expected an int >= 0, got {radius}")
    B, _, H1, W1 = coords.shape
    for l, p in enumerate(pyramid):
        _check_dtype(p, f"pyramid[{l}]")
        if p.dim() != 4 or p.shape[0] != B * H1 * W1 or p.shape[1] != 1:
            raise ValueError(f"pyramid[{l}]: expected shape [{B * H1 * W1}, 1, h, w], got {tuple(p.shape)}")
        if p.dtype != pyramid[0].dtype:
            raise TypeError(f"pyramid[{l}]: expected {pyramid[0].dtype} like level 0, got {p.dtype}")


def _level_args(levels, fill):
    ps = list(levels) + [fill] * (MAX_LEVELS - len(levels))
    hs = [int(p.shape[-2]) for p in levels] + [0] * (MAX_LEVELS - len(levels))
    ws = [int(p.shape[-1]) for p in levels] + [0] * (MAX_LEVELS - len(levels))
    return ps, hs, ws


@_op("corr_lookup")
def corr_lookup(pyramid: list[torch.Tensor], coords: torch.Tensor, radius: int = 4, layout: str = "raft",
                deterministic: bool = False) -> torch.Tensor:
    _check_pyramid(pyramid, coords, radius)
    raft = _layout_raft(layout)
    B, _, H1, W1 = coords.shape
    L = len(pyramid)
    T = (2 * radius + 1) ** 2
    out = torch.empty((B, L * T, H1, W1), dtype=torch.float32, device=coords.device)
    NQ = B * H1 * W1
    if out.numel() == 0:
        return out
    c = coords.to(torch.float32).contiguous()
    levels = [p.contiguous() for p in pyramid]
    BN, TP, _ = _lookup_blocks(radius)
    for l0 in range(0, L, MAX_LEVELS):
        chunk = levels[l0 : l0 + MAX_LEVELS]
        ps, hs, ws = _level_args(chunk, chunk[0])
        wrap_triton(_lookup_fwd_kernel)[(triton.cdiv(NQ, BN),)](
            c, out, *ps, *hs, *ws, NQ, H1 * W1, L * T, l0, len(chunk), radius, raft, BN, TP
        )
    return out


@_op("_corr_lookup_backward")
def _corr_lookup_backward(grad: torch.Tensor, pyramid: list[torch.Tensor], coords: torch.Tensor, radius: int,
                          layout: str, deterministic: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    # no atomics anywhere: `deterministic` changes nothing
    raft = _layout_raft(layout)
    B, _, H1, W1 = coords.shape
    L = len(pyramid)
    T = (2 * radius + 1) ** 2
    NQ = B * H1 * W1
    gpyr = [torch.zeros(p.shape, dtype=p.dtype, device=p.device) for p in pyramid]
    gc = torch.zeros(coords.shape, dtype=coords.dtype, device=coords.device)
    if NQ == 0 or L == 0:
        return gpyr, gc
    g = grad.to(torch.float32).contiguous()
    c = coords.to(torch.float32).contiguous()
    gc32 = gc if gc.dtype == torch.float32 else torch.zeros(coords.shape, dtype=torch.float32, device=coords.device)
    levels = [p.contiguous() for p in pyramid]
    BN, TP, WP = _lookup_blocks(radius)
    for l0 in range(0, L, MAX_LEVELS):
        chunk = levels[l0 : l0 + MAX_LEVELS]
        gchunk = gpyr[l0 : l0 + MAX_LEVELS]
        ps, hs, ws = _level_args(chunk, chunk[0])
        qs, _, _ = _level_args(gchunk, gchunk[0])
        wrap_triton(_lookup_bwd_kernel)[(triton.cdiv(NQ, BN),)](
            g, c, gc32, *ps, *qs, *hs, *ws, NQ, H1 * W1, L * T, l0, len(chunk), l0 > 0, radius, raft, BN, TP, WP
        )
    if gc32 is not gc:
        gc.copy_(gc32)
    return gpyr, gc


# ------------------------------------------------------------------------------------------------
# corr_lookup_otf
# ------------------------------------------------------------------------------------------------
@triton.jit
def _otf_window_kernel(f1_ptr, f2_ptr, coords_ptr, c_ptr, NQ, HW1, D, o0, o1, o2, o3, o4, o5, o6, o7,
                       h0, h1, h2, h3, h4, h5, h6, h7, w0, w1, w2, w3, w4, w5, w6, w7, scale,
                       NL: tl.constexpr, R: tl.constexpr, BN: tl.constexpr, WP: tl.constexpr, BD: tl.constexpr):
    """c[n, l, a * S + bb] = scale * <f1(n), f2_l(x0 - r + bb, y0 - r + a)> (0 outside the level), x0 =
    floor(coords / 2**l), S = 2r + 2: the (2r+2)^2 window every tap's corners fall in. f1 [NQ, D] and the
    pooled levels (flat, level l at element offset o_l, [B, h_l, w_l, D]) are channels-last, so each
    D-chunk of a window position is one contiguous load."""
    S: tl.constexpr = 2 * R + 2
    n, nm, b, s, cb, cx, cy = _queries(coords_ptr, NQ, HW1, BN)
    k = tl.arange(0, WP)
    bb = k % S
    a = k // S
    mk = nm[:, None] & (k < S * S)[None, :]
    n64 = n.to(tl.int64)
    dd0 = tl.arange(0, BD)
    for l in tl.static_range(NL):
        off = _sel(l, o0, o1, o2, o3, o4, o5, o6, o7)
        h = _sel(l, h0, h1, h2, h3, h4, h5, h6, h7)
        w = _sel(l, w0, w1, w2, w3, w4, w5, w6, w7)
        ins, q = _window(cx * (1.0 / (1 << l)), cy * (1.0 / (1 << l)), b, bb, a, mk, h, w, R)
        acc = tl.zeros([BN, WP], tl.float32)
        for d0 in range(0, D, BD):
            dd = d0 + dd0
            dm = dd < D
            f1 = tl.load(f1_ptr + n64[:, None] * D + dd[None, :], mask=nm[:, None] & dm[None, :], other=0.0)
            f2 = tl.load(f2_ptr + off + q[:, :, None] * D + dd[None, None, :], mask=ins[:, :, None] & dm[None, None, :],
                         other=0.0)
            acc += tl.sum(f1.to(tl.float32)[:, None, :] * f2.to(tl.float32), axis=2)
        tl.store(c_ptr + (n64[:, None] * NL + l) * WP + k[None, :], acc * scale, mask=mk)


@triton.jit
def _otf_taps_kernel(c_ptr, coords_ptr, grad_ptr, out_ptr, NQ, HW1, h0, h1, h2, h3, h4, h5, h6, h7, w0, w1, w2,
                     w3, w4, w5, w6, w7, NL: tl.constexpr, R: tl.constexpr,
                     RAFT: tl.constexpr, BACKWARD: tl.constexpr, BN: tl.constexpr, TP: tl.constexpr,
                     WP: tl.constexpr):
    """Per tap, bilinear combination of the window correlations c (the level's values at the window
    positions; zero outside the level already). Forward: out [B, NL*T, H1, W1]. BACKWARD: out = grad of
    the coordinates [B, 2, H1, W1] from grad [B, NL*T, H1, W1] (grid_sample's derivative). An empty level
    (h_l or w_l 0) reads 0 and adds nothing to the gradient, whatever the coordinate (the reference's rule;
    a non-finite coordinate's NaN weights times its zero window would otherwise give NaN)."""
    T: tl.constexpr = (2 * R + 1) * (2 * R + 1)
    S: tl.constexpr = 2 * R + 2
    n, nm, b, s, cb, cx, cy = _queries(coords_ptr, NQ, HW1, BN)
    t = tl.arange(0, TP)
    i, j = _tap_ij(t, R, RAFT)
    dx = (i - R).to(tl.float32)
    dy = (j - R).to(tl.float32)
    m = nm[:, None] & (t < T)[None, :]
    ob = (b.to(tl.int64) * (NL * T) * HW1 + s)[:, None]
    n64 = n.to(tl.int64)
    gx = tl.zeros([BN], tl.float32)
    gy = tl.zeros([BN], tl.float32)
    for l in tl.static_range(NL):
        inv = 1.0 / (1 << l)
        ccx = cx * inv
        ccy = cy * inv
        # window origin as in _otf_window_kernel (the clamp bound only matters past the window)
        xc0 = tl.floor(tl.minimum(tl.maximum(ccx, -2.0 - R), 2.0e9)).to(tl.int32)
        yc0 = tl.floor(tl.minimum(tl.maximum(ccy, -2.0 - R), 2.0e9)).to(tl.int32)
        x = ccx[:, None] + dx[None, :]
        y = ccy[:, None] + dy[None, :]
        x0, wx0, wx1 = _floor_pos(x, -2.0 - R, 2.0e9)
        y0, wy0, wy1 = _floor_pos(y, -2.0 - R, 2.0e9)
        # corner positions in window coordinates; a corner outside the window has weight 0 or lies
        # outside the level (per-tap rounding can shift a tap by one past the window's last column)
        xw = x0 - xc0[:, None] + R
        yw = y0 - yc0[:, None] + R
        v00, v01, v10, v11 = _corners(c_ptr + (n64 * NL + l)[:, None] * WP, xw, yw, S, S, m)
        full = (_sel(l, h0, h1, h2, h3, h4, h5, h6, h7) > 0) & (_sel(l, w0, w1, w2, w3, w4, w5, w6, w7) > 0)
        if BACKWARD:
            g = tl.load(grad_ptr + ob + (l * T + t).to(tl.int64)[None, :] * HW1, mask=m, other=0.0).to(tl.float32)
            gx += tl.where(full, tl.sum(g * (wy0 * (v01 - v00) + wy1 * (v11 - v10)), axis=1) * inv, 0.0)
            gy += tl.where(full, tl.sum(g * (wx0 * (v10 - v00) + wx1 * (v11 - v01)), axis=1) * inv, 0.0)
        else:
            val = v00 * (wx0 * wy0) + v01 * (wx1 * wy0) + v10 * (wx0 * wy1) + v11 * (wx1 * wy1)
            val = tl.where(full, val, 0.0)
            tl.store(out_ptr + ob + (l * T + t).to(tl.int64)[None, :] * HW1, val, mask=m)
    if BACKWARD:
        tl.store(out_ptr + cb, gx, mask=nm)
        tl.store(out_ptr + cb + HW1, gy, mask=nm)


@triton.jit
def _otf_gwin_kernel(grad_ptr, coords_ptr, gw_ptr, key_ptr, NQ, HW1, h0, h1, h2, h3, h4, h5, h6, h7, w0, w1, w2,
                     w3, w4, w5, w6, w7, t0, t1, t2, t3, t4, t5, t6, t7, TOT, NL: tl.constexpr, R: tl.constexpr,
                     RAFT: tl.constexpr, KEYS: tl.constexpr, BN: tl.constexpr, WP: tl.constexpr):
    """Window gradient gw[n, l, k] (0 outside the level) of every query and level, and with KEYS the flat
    target index of each entry among all pooled positions (level l starts at t_l; TOT = none)."""
    S: tl.constexpr = 2 * R + 2
    T: tl.constexpr = (2 * R + 1) * (2 * R + 1)
    n, nm, b, s, cb, cx, cy = _queries(coords_ptr, NQ, HW1, BN)
    k = tl.arange(0, WP)
    bb = k % S
    a = k // S
    mk = nm[:, None] & (k < S * S)[None, :]
    gb = (b.to(tl.int64) * (NL * T) * HW1 + s)[:, None]
    n64 = n.to(tl.int64)
    for l in tl.static_range(NL):
        h = _sel(l, h0, h1, h2, h3, h4, h5, h6, h7)
        w = _sel(l, w0, w1, w2, w3, w4, w5, w6, w7)
        inv = 1.0 / (1 << l)
        xc0, ux0, ux1 = _floor_pos(cx * inv, -2.0 - R, w + R + 1.0)
        yc0, uy0, uy1 = _floor_pos(cy * inv, -2.0 - R, h + R + 1.0)
        gw = _window_grad(grad_ptr, gb, HW1, l * T, bb[None, :], a[None, :], ux0[:, None], ux1[:, None],
                          uy0[:, None], uy1[:, None], mk, R, RAFT)
        xa = xc0[:, None] - R + bb[None, :]
        ya = yc0[:, None] - R + a[None, :]
        ins = mk & (xa >= 0) & (xa < w) & (ya >= 0) & (ya < h)
        e = (n64[:, None] * NL + l) * WP + k[None, :]
        tl.store(gw_ptr + e, tl.where(ins, gw, 0.0), mask=mk)
        if KEYS:
            t0l = _sel(l, t0, t1, t2, t3, t4, t5, t6, t7)
            tgt = t0l + ((b.to(tl.int64) * h)[:, None] + ya) * w + xa
            tl.store(key_ptr + e, tl.where(ins, tgt, TOT), mask=mk)


@triton.jit
def _otf_gf1_kernel(gw_ptr, f2_ptr, coords_ptr, gf1_ptr, NQ, HW1, D, o0, o1, o2, o3, o4, o5, o6, o7,
                    h0, h1, h2, h3, h4, h5, h6, h7, w0, w1, w2, w3, w4, w5, w6, w7, scale, NL: tl.constexpr,
                    R: tl.constexpr, BN: tl.constexpr, WP: tl.constexpr, BD: tl.constexpr):
    """grad f1(n) [NQ, D] float32 = scale * sum_l sum_k gw[n, l, k] f2_l(window position k): a gather."""
    S: tl.constexpr = 2 * R + 2
    n, nm, b, s, cb, cx, cy = _queries(coords_ptr, NQ, HW1, BN)
    k = tl.arange(0, WP)
    bb = k % S
    a = k // S
    mk = nm[:, None] & (k < S * S)[None, :]
    n64 = n.to(tl.int64)
    dd0 = tl.arange(0, BD)
    for d0 in range(0, D, BD):
        dd = d0 + dd0
        dm = dd < D
        acc = tl.zeros([BN, BD], tl.float32)
        for l in tl.static_range(NL):
            off = _sel(l, o0, o1, o2, o3, o4, o5, o6, o7)
            h = _sel(l, h0, h1, h2, h3, h4, h5, h6, h7)
            w = _sel(l, w0, w1, w2, w3, w4, w5, w6, w7)
            ins, q = _window(cx * (1.0 / (1 << l)), cy * (1.0 / (1 << l)), b, bb, a, mk, h, w, R)
            gw = tl.load(gw_ptr + (n64[:, None] * NL + l) * WP + k[None, :], mask=ins, other=0.0)
            f2 = tl.load(f2_ptr + off + q[:, :, None] * D + dd[None, None, :], mask=ins[:, :, None] & dm[None, None, :],
                         other=0.0)
            acc += tl.sum(gw[:, :, None] * f2.to(tl.float32), axis=1)
        tl.store(gf1_ptr + n64[:, None] * D + dd[None, :], acc * scale, mask=nm[:, None] & dm[None, :])


@triton.jit
def _otf_scatter_atomic_kernel(gw_ptr, f1_ptr, coords_ptr, g2_ptr, NQ, HW1, D, o0, o1, o2, o3, o4, o5, o6, o7,
                               h0, h1, h2, h3, h4, h5, h6, h7, w0, w1, w2, w3, w4, w5, w6, w7, scale,
                               NL: tl.constexpr, R: tl.constexpr, BN: tl.constexpr, WP: tl.constexpr,
                               BD: tl.constexpr):
    """g2_l(window position k) += scale * gw[n, l, k] * f1(n): float32 atomics (deterministic=False)."""
    S: tl.constexpr = 2 * R + 2
    n, nm, b, s, cb, cx, cy = _queries(coords_ptr, NQ, HW1, BN)
    k = tl.arange(0, WP)
    bb = k % S
    a = k // S
    mk = nm[:, None] & (k < S * S)[None, :]
    n64 = n.to(tl.int64)
    dd0 = tl.arange(0, BD)
    for l in tl.static_range(NL):
        off = _sel(l, o0, o1, o2, o3, o4, o5, o6, o7)
        h = _sel(l, h0, h1, h2, h3, h4, h5, h6, h7)
        w = _sel(l, w0, w1, w2, w3, w4, w5, w6, w7)
        ins, q = _window(cx * (1.0 / (1 << l)), cy * (1.0 / (1 << l)), b, bb, a, mk, h, w, R)
        gw = tl.load(gw_ptr + (n64[:, None] * NL + l) * WP + k[None, :], mask=ins, other=0.0) * scale
        for d0 in range(0, D, BD):
            dd = d0 + dd0
            dm = dd < D
            f1 = tl.load(f1_ptr + n64[:, None] * D + dd[None, :], mask=nm[:, None] & dm[None, :], other=0.0)
            tl.atomic_add(g2_ptr + off + q[:, :, None] * D + dd[None, None, :],
                          gw[:, :, None] * f1.to(tl.float32)[:, None, :], mask=ins[:, :, None] & dm[None, None, :])


@triton.jit
def _otf_scatter_det_kernel(order_ptr, start_ptr, gw_ptr, f1_ptr, g2_ptr, D, EPQ, scale, BE: tl.constexpr,
                            BD: tl.constexpr):
    """Deterministic scatter: target position u (one program) sums its entries order[start[u] ..
    start[u+1]) -- entry e = (n * NL + l) * WP + k, sorted stably, so in increasing query order -- in
    fixed chunks of BE: g2[u, :] = scale * sum gw[e] f1(n(e), :)."""
    u = tl.program_id(0)
    u64 = u.to(tl.int64)
    e0 = tl.load(start_ptr + u64)
    e1 = tl.load(start_ptr + u64 + 1)
    ee = tl.arange(0, BE)
    dd0 = tl.arange(0, BD)
    for d0 in range(0, D, BD):
        dd = d0 + dd0
        dm = dd < D
        acc = tl.zeros([BD], tl.float32)
        for c0 in range(e0, e1, BE):
            e = c0 + ee
            em = e < e1
            src = tl.load(order_ptr + e, mask=em, other=0)
            gw = tl.load(gw_ptr + src, mask=em, other=0.0)
            nq = src // EPQ
            f1 = tl.load(f1_ptr + nq[:, None] * D + dd[None, :], mask=em[:, None] & dm[None, :], other=0.0)
            acc += tl.sum(gw[:, None] * f1.to(tl.float32), axis=0)
        tl.store(g2_ptr + u64 * D + dd, acc * scale, mask=dm)


def _otf_setup(fmap1, fmap2, coords, radius, num_levels, scale, layout):
    _check_dtype(fmap1, "fmap1")
    if radius < 0:
        raise ValueError(f"radius: expected an int >= 0, got {radius}")
    if not 1 <= num_levels <= MAX_LEVELS:
        raise ValueError(f"num_levels: the triton backend supports 1..{MAX_LEVELS} levels, got {num_levels}")
    raft = _layout_raft(layout)
    B, D, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    s = _scale(D, scale)
    dt = fmap1.dtype
    # channels-last features: each query's / window position's D-vector is contiguous
    f1 = fmap1.permute(0, 2, 3, 1).contiguous().view(B * H1 * W1, D)
    pooled = _pooled_levels(fmap2, num_levels)
    parts = [fmap2.to(dt).permute(0, 2, 3, 1).reshape(-1)] + [p.to(dt).permute(0, 2, 3, 1).reshape(-1)
                                                              for p in pooled[1:]]
    offs, o = [], 0
    for p in parts:
        offs.append(o)
        o += p.numel()
    f2 = torch.cat(parts) if len(parts) > 1 else parts[0].contiguous()
    hs = [H2 >> l for l in range(num_levels)]
    ws = [W2 >> l for l in range(num_levels)]
    pad = MAX_LEVELS - num_levels
    return dict(raft=raft, B=B, D=D, H1=H1, W1=W1, H2=H2, W2=W2, s=s, f1=f1, f2=f2, offs=offs + [0] * pad,
                hs=hs + [0] * pad, ws=ws + [0] * pad, NQ=B * H1 * W1, c=coords.to(torch.float32).contiguous())


def _otf_blocks(radius, D):
    _, TP, WP = _lookup_blocks(radius)
    if _TILES_GPU:  # a [BN, window, BD] tile of 4096 elements: one query per program at r = 4
        BD = 32
        BN = max(1, min(16, 4096 // (WP * BD)))
    else:
        BD = min(_p2(D), 64)
        BN = 16
    return BN, TP, WP, BD


def _otf_windows(st, radius, num_levels):
    BN, TP, WP, BD = _otf_blocks(radius, st["D"])
    NQ = st["NQ"]
    c = torch.empty((NQ, num_levels, WP), dtype=torch.float32, device=st["f1"].device)
    wrap_triton(_otf_window_kernel)[(triton.cdiv(NQ, BN),)](
        st["f1"], st["f2"], st["c"], c, NQ, st["H1"] * st["W1"], st["D"], *st["offs"], *st["hs"], *st["ws"],
        st["s"], num_levels, radius, BN, WP, BD,
    )
    return c


@_op("corr_lookup_otf")
def corr_lookup_otf(fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor, radius: int = 4,
                    num_levels: int = 4, scale: Optional[float] = None, layout: str = "raft",
                    deterministic: bool = False) -> torch.Tensor:
    B, D, H1, W1 = fmap1.shape
    T = (2 * radius + 1) ** 2
    out = torch.zeros((B, num_levels * T, H1, W1), dtype=torch.float32, device=fmap1.device)
    st = _otf_setup(fmap1, fmap2, coords, radius, num_levels, scale, layout)
    if out.numel() == 0:
        return out
    c = _otf_windows(st, radius, num_levels)
    BN, TP, WP, _ = _otf_blocks(radius, D)
    BN = _lookup_blocks(radius)[0]
    NQ = st["NQ"]
    wrap_triton(_otf_taps_kernel)[(triton.cdiv(NQ, BN),)](
        c, st["c"], c, out, NQ, H1 * W1, *st["hs"], *st["ws"], num_levels, radius, st["raft"], False, BN, TP, WP
    )
    return out


@_op("_corr_lookup_otf_backward")
def _corr_lookup_otf_backward(grad: torch.Tensor, fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor,
                              radius: int, num_levels: int, scale: Optional[float], layout: str,
                              deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, D, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    st = _otf_setup(fmap1, fmap2, coords, radius, num_levels, scale, layout)
    NQ = st["NQ"]
    gc = torch.zeros((B, 2, H1, W1), dtype=torch.float32, device=fmap1.device)
    if NQ == 0 or D == 0 or H2 == 0 or W2 == 0:
        return (torch.zeros_like(fmap1, memory_format=torch.contiguous_format),
                torch.zeros_like(fmap2, memory_format=torch.contiguous_format), gc.to(coords.dtype))
    dev = fmap1.device
    g = grad.to(torch.float32).contiguous()
    BN, TP, WP, BD = _otf_blocks(radius, D)
    BNL = _lookup_blocks(radius)[0]
    HW1 = H1 * W1
    # coordinates: recomputed window correlations, per-tap derivative (exactly the forward's taps)
    c = _otf_windows(st, radius, num_levels)
    wrap_triton(_otf_taps_kernel)[(triton.cdiv(NQ, BNL),)](
        c, st["c"], g, gc, NQ, HW1, *st["hs"], *st["ws"], num_levels, radius, st["raft"], True, BNL, TP, WP
    )
    # window gradients (+ scatter keys)
    gw = torch.empty((NQ, num_levels, WP), dtype=torch.float32, device=dev)
    starts = [0]
    for l in range(num_levels):
        starts.append(starts[-1] + B * st["hs"][l] * st["ws"][l])
    TOT = starts[-1]
    tstarts = starts[:num_levels] + [0] * (MAX_LEVELS - num_levels)
    keys = torch.empty((NQ, num_levels, WP) if deterministic else (1,), dtype=torch.int64, device=dev)
    wrap_triton(_otf_gwin_kernel)[(triton.cdiv(NQ, BNL),)](
        g, st["c"], gw, keys, NQ, HW1, *st["hs"], *st["ws"], *tstarts, TOT, num_levels, radius, st["raft"],
        bool(deterministic), BNL, WP
    )
    # grad fmap1: gather
    gf1 = torch.empty((NQ, D), dtype=torch.float32, device=dev)
    wrap_triton(_otf_gf1_kernel)[(triton.cdiv(NQ, BN),)](
        gw, st["f2"], st["c"], gf1, NQ, HW1, D, *st["offs"], *st["hs"], *st["ws"], st["s"], num_levels, radius,
        BN, WP, BD
    )
    # grad of the pooled fmap2 levels, channels-last float32, one flat buffer
    g2 = torch.zeros((TOT * D,), dtype=torch.float32, device=dev)
    if deterministic:
        kf = keys.view(-1)
        order = torch.argsort(kf, stable=True)
        bounds = torch.searchsorted(kf[order], torch.arange(TOT + 1, device=dev, dtype=torch.int64))
        wrap_triton(_otf_scatter_det_kernel)[(TOT,)](
            order, bounds, gw, st["f1"], g2, D, num_levels * WP, st["s"], 32, BD
        )
    else:
        offs = [starts[l] * D for l in range(num_levels)] + [0] * (MAX_LEVELS - num_levels)
        wrap_triton(_otf_scatter_atomic_kernel)[(triton.cdiv(NQ, BN),)](
            gw, st["f1"], st["c"], g2, NQ, HW1, D, *offs, *st["hs"], *st["ws"], st["s"], num_levels, radius,
            BN, WP, BD
        )
    g2s = [g2[starts[l] * D : starts[l + 1] * D].view(B, st["hs"][l], st["ws"][l], D) for l in range(num_levels)]
    g2full = _pool_adjoint_chain(g2s, B, H2, W2, D, dev)
    gfm1 = gf1.view(B, H1, W1, D).permute(0, 3, 1, 2).to(fmap1.dtype).contiguous()
    gfm2 = g2full.permute(0, 3, 1, 2).to(fmap2.dtype).contiguous()
    return gfm1, gfm2, gc.to(coords.dtype)


# ------------------------------------------------------------------------------------------------
# local_corr
# ------------------------------------------------------------------------------------------------
@triton.jit
def _local_fwd_kernel(f1_ptr, f2_ptr, out_ptr, NB, D, H, W, Ho, Wo, STRIDE, DIL, scale, DM: tl.constexpr,
                      BP: tl.constexpr, KP: tl.constexpr):
    """out[b, c, o] for BP output pixels o of image b x all (2d+1)^2 channels c, a loop over D."""
    K: tl.constexpr = (2 * DM + 1) * (2 * DM + 1)
    pid = tl.program_id(0)
    per = tl.cdiv(Ho * Wo, BP)
    b = pid // per
    o = (pid % per) * BP + tl.arange(0, BP)
    om = o < Ho * Wo
    oi = o // Wo
    oj = o - oi * Wo
    c = tl.arange(0, KP)
    cm = c < K
    ddy = c // (2 * DM + 1) - DM
    ddx = c % (2 * DM + 1) - DM
    y1 = oi * STRIDE
    x1 = oj * STRIDE
    y2 = y1[:, None] + ddy[None, :] * DIL
    x2 = x1[:, None] + ddx[None, :] * DIL
    m2 = om[:, None] & cm[None, :] & (y2 >= 0) & (y2 < H) & (x2 >= 0) & (x2 < W)
    p1 = y1 * W + x1
    p2 = tl.where(m2, y2 * W + x2, 0)
    HW = H * W
    base = b.to(tl.int64) * D * HW
    acc = tl.zeros([BP, KP], tl.float32)
    for d in range(D):
        a = tl.load(f1_ptr + base + d * HW + p1, mask=om, other=0.0).to(tl.float32)
        v = tl.load(f2_ptr + base + d * HW + p2, mask=m2, other=0.0).to(tl.float32)
        acc += a[:, None] * v
    ob = b.to(tl.int64) * K * (Ho * Wo)
    tl.store(out_ptr + ob + c[None, :].to(tl.int64) * (Ho * Wo) + o[:, None], (acc * scale).to(out_ptr.dtype.element_ty),
             mask=om[:, None] & cm[None, :])


@triton.jit
def _local_bwd_f1_kernel(g_ptr, f2_ptr, gf1_ptr, NB, D, H, W, Ho, Wo, STRIDE, DIL, scale, DM: tl.constexpr,
                         BP: tl.constexpr, KP: tl.constexpr):
    """grad f1 at pixel p: scale * sum_c g[c, o] f2(p + off_c) where p = o * stride (0 elsewhere)."""
    K: tl.constexpr = (2 * DM + 1) * (2 * DM + 1)
    pid = tl.program_id(0)
    per = tl.cdiv(H * W, BP)
    b = pid // per
    p = (pid % per) * BP + tl.arange(0, BP)
    pm = p < H * W
    y1 = p // W
    x1 = p - y1 * W
    on = pm & (y1 % STRIDE == 0) & (x1 % STRIDE == 0)
    o = (y1 // STRIDE) * Wo + x1 // STRIDE
    c = tl.arange(0, KP)
    cm = c < K
    ddy = c // (2 * DM + 1) - DM
    ddx = c % (2 * DM + 1) - DM
    y2 = y1[:, None] + ddy[None, :] * DIL
    x2 = x1[:, None] + ddx[None, :] * DIL
    m2 = on[:, None] & cm[None, :] & (y2 >= 0) & (y2 < H) & (x2 >= 0) & (x2 < W)
    p2 = tl.where(m2, y2 * W + x2, 0)
    gb = b.to(tl.int64) * K * (Ho * Wo)
    g = tl.load(g_ptr + gb + c[None, :].to(tl.int64) * (Ho * Wo) + tl.where(on, o, 0)[:, None], mask=m2,
                other=0.0).to(tl.float32)
    HW = H * W
    base = b.to(tl.int64) * D * HW
    for d in range(D):
        v = tl.load(f2_ptr + base + d * HW + p2, mask=m2, other=0.0).to(tl.float32)
        tl.store(gf1_ptr + base + d * HW + p, (tl.sum(g * v, axis=1) * scale).to(gf1_ptr.dtype.element_ty), mask=pm)


@triton.jit
def _local_bwd_f2_kernel(g_ptr, f1_ptr, gf2_ptr, NB, D, H, W, Ho, Wo, STRIDE, DIL, scale, DM: tl.constexpr,
                         BP: tl.constexpr, KP: tl.constexpr):
    """grad f2 at q: scale * sum_c g[c, o] f1(s) over the channels c whose source s = q - off_c is an
    output pixel (on the stride grid, inside the image): a gather, each q written once."""
    K: tl.constexpr = (2 * DM + 1) * (2 * DM + 1)
    pid = tl.program_id(0)
    per = tl.cdiv(H * W, BP)
    b = pid // per
    q = (pid % per) * BP + tl.arange(0, BP)
    qm = q < H * W
    y2 = q // W
    x2 = q - y2 * W
    c = tl.arange(0, KP)
    cm = c < K
    ddy = c // (2 * DM + 1) - DM
    ddx = c % (2 * DM + 1) - DM
    y1 = y2[:, None] - ddy[None, :] * DIL
    x1 = x2[:, None] - ddx[None, :] * DIL
    m2 = (qm[:, None] & cm[None, :] & (y1 >= 0) & (y1 < H) & (x1 >= 0) & (x1 < W)
          & (y1 % STRIDE == 0) & (x1 % STRIDE == 0))
    p1 = tl.where(m2, y1 * W + x1, 0)
    o = tl.where(m2, (y1 // STRIDE) * Wo + x1 // STRIDE, 0)
    gb = b.to(tl.int64) * K * (Ho * Wo)
    g = tl.load(g_ptr + gb + c[None, :].to(tl.int64) * (Ho * Wo) + o, mask=m2, other=0.0).to(tl.float32)
    HW = H * W
    base = b.to(tl.int64) * D * HW
    for d in range(D):
        v = tl.load(f1_ptr + base + d * HW + p1, mask=m2, other=0.0).to(tl.float32)
        tl.store(gf2_ptr + base + d * HW + q, (tl.sum(g * v, axis=1) * scale).to(gf2_ptr.dtype.element_ty), mask=qm)


def _local_setup(fmap1, max_displacement, stride, dilation):
    _check_dtype(fmap1, "fmap1")
    if max_displacement < 0:
        raise ValueError(f"max_displacement: expected an int >= 0, got {max_displacement}")
    if stride < 1:
        raise ValueError(f"stride: expected an int >= 1, got {stride}")
    if dilation < 1:
        raise ValueError(f"dilation: expected an int >= 1, got {dilation}")
    KP = _p2((2 * max_displacement + 1) ** 2)
    BP = max(1, min(128, 4096 // KP)) if _TILES_GPU else max(1, min(256, 8192 // KP))
    return KP, BP


@_op("local_corr")
def local_corr(fmap1: torch.Tensor, fmap2: torch.Tensor, max_displacement: int, stride: int = 1,
               dilation: int = 1, scale: Optional[float] = None) -> torch.Tensor:
    KP, BP = _local_setup(fmap1, max_displacement, stride, dilation)
    B, D, H, W = fmap1.shape
    K = (2 * max_displacement + 1) ** 2
    Ho, Wo = -(-H // stride), -(-W // stride)
    out = fmap1.new_empty((B, K, Ho, Wo))
    if out.numel() == 0:
        return out
    f1 = fmap1.contiguous()
    f2 = fmap2.to(fmap1.dtype).contiguous()
    if not _TILES_GPU:
        BP = min(BP, _p2(Ho * Wo))
    wrap_triton(_local_fwd_kernel)[(B * triton.cdiv(Ho * Wo, BP),)](
        f1, f2, out, B, D, H, W, Ho, Wo, stride, dilation, _scale(D, scale), max_displacement, BP, KP
    )
    return out


@_op("_local_corr_backward")
def _local_corr_backward(grad: torch.Tensor, fmap1: torch.Tensor, fmap2: torch.Tensor, max_displacement: int,
                         stride: int, dilation: int, scale: Optional[float]) -> tuple[torch.Tensor, torch.Tensor]:
    KP, BP = _local_setup(fmap1, max_displacement, stride, dilation)
    B, D, H, W = fmap1.shape
    Ho, Wo = -(-H // stride), -(-W // stride)
    g1 = torch.empty((B, D, H, W), dtype=fmap1.dtype, device=fmap1.device)
    g2 = torch.empty((B, D, H, W), dtype=fmap2.dtype, device=fmap2.device)
    if g1.numel() == 0:
        return g1, g2
    g = grad.to(torch.float32).contiguous()
    f1 = fmap1.contiguous()
    f2 = fmap2.contiguous()
    if not _TILES_GPU:
        BP = min(BP, _p2(H * W))
    grid = (B * triton.cdiv(H * W, BP),)
    s = _scale(D, scale)
    wrap_triton(_local_bwd_f1_kernel)[grid](g, f2, g1, B, D, H, W, Ho, Wo, stride, dilation, s, max_displacement,
                                            BP, KP)
    wrap_triton(_local_bwd_f2_kernel)[grid](g, f1, g2, B, D, H, W, Ho, Wo, stride, dilation, s, max_displacement,
                                            BP, KP)
    return g1, g2


from .. import _meta_corr  # noqa: E402

_meta_corr.register("hmore_triton", fake=_INTERPRET)
