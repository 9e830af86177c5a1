"""Triton backend of the edge/boundary family (docs/ops.md §2, §5): ``torch.ops.hmore_triton.<op>``.

On a GPU every op is a :func:`torch.library.triton_op` launching its kernels through
:func:`torch.library.wrap_triton`, so torch.compile sees the kernels; ``triton_op`` registers the Python
body as the fake kernel (run on FakeTensors, where the wrapped launches do nothing). Its schema is
inferred from the annotations (torch 2.13 ignores ``schema=``), which matches the C++ one in
``csrc/edges/edges.cpp`` except that ``int`` reads ``SymInt``. Under ``TRITON_INTERPRET=1`` the ops are
plain custom ops with the exact C++ schemas and the fake kernels of :mod:`hmore_kernels._meta_edges` (see
``_op`` below). Autograd comes from :mod:`hmore_kernels._meta_edges` too, shared with the native namespace.

Layout: NCHW, contiguous (inputs are made so). Image kernels run one program per ``BH x BW`` tile of
one image, on a flattened 1-D grid ``tiles_per_image * images`` (no 65535 limit on the image count);
tiles are coalesced along W. Math is float32 (float64 for float64 inputs); float16/bfloat16 are loaded
and stored in their own dtype. Backward passes are gathers (each program writes only its own pixels):
deterministic, no atomics. The only atomics are in canny's union-find, whose *result* is deterministic.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton
from triton.language.extra import libdevice

from ..reference.edges import canny_thresholds
from ._common import INTERPRET, op_decorator

# The C++ schemas (csrc/edges/edges.cpp), verbatim.
_SCHEMAS = {
    "sobel": "(Tensor x, bool normalized=True, str border='replicate') -> Tensor",
    "_sobel_backward": "(Tensor grad, bool normalized, str border) -> Tensor",
    "gradient_magnitude": "(Tensor x, str kernel='sobel', str reduce='sum', float eps=0.0) -> Tensor",
    "_gradient_magnitude_backward": "(Tensor grad, Tensor x, Tensor mag, str kernel, str reduce, float eps) -> Tensor",
    "mask_boundary": "(Tensor mask, str mode='inner', int width=1) -> Tensor",
    "_mask_boundary_backward": "(Tensor grad, Tensor mask, str mode, int width) -> Tensor",
    "flow_edges": "(Tensor flow, Tensor? mask=None, int? band=3, bool normalize=True) -> Tensor",
    "_flow_edges_backward": "(Tensor grad, Tensor flow, Tensor? mask, int? band, bool normalize) -> Tensor",
    "canny": "(Tensor img, float low, float high, int kernel_size=3, bool l2_gradient=False) -> Tensor",
    "distance_transform": "(Tensor mask, bool return_indices=False) -> (Tensor, Tensor)",
}

_INTERPRET = INTERPRET
_op = op_decorator(_SCHEMAS)


# canny is bit-exact against the reference, which rounds every product and every sum. Compiled for a GPU,
# a * b + c is contracted into one FMA that rounds once (Triton's default). A launch option
# (enable_fp_fusion=False) would not hold everywhere: torch.compile's inductor drops it for user kernels.
# So the float64 products that matter go through libdevice's mul_rn, i.e. PTX mul.rn.f64, which is never
# contracted (tests/test_triton_compile.py checks canny's PTX holds no fma.rn.f64). The interpreter rounds
# every operation anyway and cannot call libdevice. (CUDA only: HIP's libdevice has no mul_rn.)
_MUL_RN = tl.constexpr(not _INTERPRET)

_BORDER = {"replicate": 0, "reflect101": 1, "zeros": 2}
_MODE = {"inner": 0, "outer": 1, "thick": 2}
# smoothing taps (outer, centre) and normaliser of the 3x3 derivative kernels
_KERNEL = {"sobel": (1.0, 2.0, 8.0), "scharr": (3.0, 10.0, 32.0)}


# ------------------------------------------------------------------------------------------------
# shared device helpers
# ------------------------------------------------------------------------------------------------
@triton.jit
def _acc(v, IS64: tl.constexpr):
    if IS64:
        return v.to(tl.float64)
    else:
        return v.to(tl.float32)


@triton.jit
def _sqrt(v, IS64: tl.constexpr):
    # correctly rounded in both precisions, like torch.sqrt (tl.sqrt on fp32 may be approximate)
    if IS64:
        return tl.sqrt(v)
    else:
        return tl.sqrt_rn(v)


@triton.jit
def _mul_rn(a, b):
    """a * b rounded by itself, never fused into an FMA with a later add. a: a float64 tensor; b: a float64
    tensor or a constant exact in float32 (a constexpr float is materialised as float32 first)."""
    if _MUL_RN:
        return libdevice.mul_rn(a, tl.cast(b, tl.float64))
    else:
        return a * b


@triton.jit
def _tile(NI, H, W, BH: tl.constexpr, BW: tl.constexpr):
    """(image, rows [BH], cols [BW]) of this program on the flattened grid tiles_per_image * NI."""
    pid = tl.program_id(0)
    tw = tl.cdiv(W, BW)
    per_img = tw * tl.cdiv(H, BH)
    img = pid // per_img
    t = pid % per_img
    rows = (t // tw) * BH + tl.arange(0, BH)
    cols = (t % tw) * BW + tl.arange(0, BW)
    return img, rows, cols


@triton.jit
def _map(r, N, BORDER: tl.constexpr):
    """Border mapping of (possibly out-of-range by 1) indices on an axis of length N.

    Returns (in-range index, valid). valid matters only for zeros; replicate and reflect101 always hit a
    pixel. reflect101 on N == 1 falls through to the clamp, i.e. replicate (OpenCV's behaviour)."""
    if BORDER == 1:
        r = tl.where(r < 0, -r, r)
        r = tl.where(r > N - 1, 2 * (N - 1) - r, r)
    valid = (r >= 0) & (r < N)
    r = tl.minimum(tl.maximum(r, 0), N - 1)
    return r, valid


@triton.jit
def _tap(base, ri, rv, ci, cv, inside, W, BORDER: tl.constexpr, IS64: tl.constexpr):
    m = inside
    if BORDER == 2:
        m = m & rv[:, None] & cv[None, :]
    return _acc(tl.load(base + ri[:, None] * W + ci[None, :], mask=m, other=0.0), IS64)


@triton.jit
def _deriv_tile(base, rows, cols, H, W, S0: tl.constexpr, S1: tl.constexpr, BORDER: tl.constexpr, IS64: tl.constexpr):
    """Unnormalised 3x3 derivatives (gx, gy) of one image at the [BH, BW] tile rows x cols.

    gx = S0 (x[-1,+1] - x[-1,-1]) + S1 (x[0,+1] - x[0,-1]) + S0 (x[+1,+1] - x[+1,-1]), gy likewise:
    differences are taken before any weighting so that a constant image gives exactly 0 (a weighted
    sum leaves rounding residue, which flow_edges' normalisation would blow up to 1). Taps outside the
    image follow BORDER; rows/cols past the image are clamped, so loads stay in bounds."""
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    r0, v0 = _map(rows - 1, H, BORDER)
    r1, v1 = _map(rows, H, BORDER)
    r2, v2 = _map(rows + 1, H, BORDER)
    c0, w0 = _map(cols - 1, W, BORDER)
    c1, w1 = _map(cols, W, BORDER)
    c2, w2 = _map(cols + 1, W, BORDER)
    x00 = _tap(base, r0, v0, c0, w0, inside, W, BORDER, IS64)
    x01 = _tap(base, r0, v0, c1, w1, inside, W, BORDER, IS64)
    x02 = _tap(base, r0, v0, c2, w2, inside, W, BORDER, IS64)
    x10 = _tap(base, r1, v1, c0, w0, inside, W, BORDER, IS64)
    x12 = _tap(base, r1, v1, c2, w2, inside, W, BORDER, IS64)
    x20 = _tap(base, r2, v2, c0, w0, inside, W, BORDER, IS64)
    x21 = _tap(base, r2, v2, c1, w1, inside, W, BORDER, IS64)
    x22 = _tap(base, r2, v2, c2, w2, inside, W, BORDER, IS64)
    if IS64:
        # the reference's roundings exactly (canny is bit-exact): no FMA
        gx = _mul_rn((x02 - x00) + (x22 - x20), S0) + _mul_rn(x12 - x10, S1)
        gy = _mul_rn((x20 - x00) + (x22 - x02), S0) + _mul_rn(x21 - x01, S1)
    else:
        gx = S0 * ((x02 - x00) + (x22 - x20)) + S1 * (x12 - x10)
        gy = S0 * ((x20 - x00) + (x22 - x02)) + S1 * (x21 - x01)
    return gx, gy


@triton.jit
def _adj_coef(r, e, N, C0: tl.constexpr, C1: tl.constexpr, C2: tl.constexpr, BORDER: tl.constexpr):
    """Adjoint weight on one axis: how much output index i = r + e sends back to input index r,
    sum over taps d in (-1, 0, 1) with weight (C0, C1, C2)[d + 1] of [map(i + d) == r].

    Border taps only ever land within one pixel of their output (replicate: i = r; reflect101: i = r -+ 1),
    so e in (-1, 0, 1) covers every contribution."""
    i = r + e
    ok = (i >= 0) & (i < N)
    out = tl.zeros(r.shape, tl.float32)
    for d in tl.static_range(3):
        c = C0 if d == 0 else (C1 if d == 1 else C2)
        if c != 0:
            src, valid = _map(i + (d - 1), N, BORDER)
            hit = ok & (src == r)
            if BORDER == 2:
                hit = hit & valid
            out += tl.where(hit, c, 0.0)
    return out


# ------------------------------------------------------------------------------------------------
# sobel
# ------------------------------------------------------------------------------------------------
@triton.jit
def _sobel_fwd_kernel(x_ptr, out_ptr, NI, H, W, SCALE: tl.constexpr, BORDER: tl.constexpr, IS64: tl.constexpr,
                      BH: tl.constexpr, BW: tl.constexpr):
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    base = x_ptr + img.to(tl.int64) * hw
    gx, gy = _deriv_tile(base, rows, cols, H, W, 1.0, 2.0, BORDER, IS64)
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    off = rows[:, None] * W + cols[None, :]
    obase = out_ptr + img.to(tl.int64) * (2 * hw)
    ty = out_ptr.dtype.element_ty
    # SCALE is a power of two, so scaling the sum equals summing the scaled taps (the reference)
    tl.store(obase + off, (gx * SCALE).to(ty), mask=inside)
    tl.store(obase + hw + off, (gy * SCALE).to(ty), mask=inside)


@triton.jit
def _deriv_bwd_kernel(g_ptr, out_ptr, NI, H, W, S0: tl.constexpr, S1: tl.constexpr, SCALE: tl.constexpr,
                      BORDER: tl.constexpr, IS64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """Adjoint of the 3x3 derivative (gather form). g: [NI, 2, H, W] (d/dx, d/dy grads) -> out [NI, H, W].

    The kernels are separable (kx = s (x) d, ky = d (x) s), so the weight from output (r+eh, c+ew) to
    input (r, c), border folding included, is a product of per-axis adjoint weights."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    gbase = g_ptr + img.to(tl.int64) * (2 * hw)
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    acc = tl.zeros(inside.shape, tl.float64 if IS64 else tl.float32)
    for eh in tl.static_range(3):
        sh = _adj_coef(rows, eh - 1, H, S0, S1, S0, BORDER)
        dh = _adj_coef(rows, eh - 1, H, -1.0, 0.0, 1.0, BORDER)
        ri = rows + (eh - 1)
        rok = (ri >= 0) & (ri < H)
        for ew in tl.static_range(3):
            sw = _adj_coef(cols, ew - 1, W, S0, S1, S0, BORDER)
            dw = _adj_coef(cols, ew - 1, W, -1.0, 0.0, 1.0, BORDER)
            ci = cols + (ew - 1)
            m = inside & rok[:, None] & (ci >= 0)[None, :] & (ci < W)[None, :]
            off = ri[:, None] * W + ci[None, :]
            gx = _acc(tl.load(gbase + off, mask=m, other=0.0), IS64)
            gy = _acc(tl.load(gbase + hw + off, mask=m, other=0.0), IS64)
            acc += gx * _acc(sh[:, None] * dw[None, :], IS64) + gy * _acc(dh[:, None] * sw[None, :], IS64)
    off0 = rows[:, None] * W + cols[None, :]
    tl.store(out_ptr + img.to(tl.int64) * hw + off0, (acc * SCALE).to(out_ptr.dtype.element_ty), mask=inside)


def _blocks(H, W, bh=16, bw=64):
    """Tile shape: up to 16 x 64 (64 contiguous columns = 256 B of fp32 per row: coalesced), shrunk
    to the image so tiny images do not waste lanes."""
    return min(bh, triton.next_power_of_2(max(H, 1))), min(bw, triton.next_power_of_2(max(W, 1)))


def _grid(NI, H, W, BH, BW):
    return (triton.cdiv(H, BH) * triton.cdiv(W, BW) * NI,)


def _is64(t):
    return t.dtype == torch.float64


def _deriv_bwd(g, out, kernel, normalized, border):
    """g [NI, 2, H, W] contiguous, out [NI, H, W] (any float dtype)."""
    NI, _, H, W = g.shape
    s0, s1, norm = _KERNEL[kernel]
    BH, BW = _blocks(H, W)
    wrap_triton(_deriv_bwd_kernel)[_grid(NI, H, W, BH, BW)](
        g, out, NI, H, W, s0, s1, (1.0 / norm) if normalized else 1.0, _BORDER[border], _is64(out), BH, BW
    )


@_op("sobel")
def sobel(x: torch.Tensor, normalized: bool = True, border: str = "replicate") -> torch.Tensor:
    B, C, H, W = x.shape
    out = x.new_empty((B, C, 2, H, W))
    if out.numel() == 0:
        return out
    x = x.contiguous()
    BH, BW = _blocks(H, W)
    wrap_triton(_sobel_fwd_kernel)[_grid(B * C, H, W, BH, BW)](
        x, out, B * C, H, W, 0.125 if normalized else 1.0, _BORDER[border], _is64(x), BH, BW
    )
    return out


@_op("_sobel_backward")
def _sobel_backward(grad: torch.Tensor, normalized: bool, border: str) -> torch.Tensor:
    B, C, _, H, W = grad.shape
    out = grad.new_empty((B, C, H, W))
    if out.numel() == 0:
        return out
    _deriv_bwd(grad.contiguous().view(B * C, 2, H, W), out, "sobel", normalized, border)
    return out


# ------------------------------------------------------------------------------------------------
# gradient_magnitude
# ------------------------------------------------------------------------------------------------
@triton.jit
def _gm_fwd_kernel(x_ptr, eps_ptr, out_ptr, NI, C, H, W, S0: tl.constexpr, S1: tl.constexpr, SCALE: tl.constexpr,
                   IS64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """out[n] = sqrt(sum_{c<C} gx^2 + gy^2 + eps) over images n*C .. n*C+C-1 (C = 1 for reduce='none');
    0 where the sum is not > 0 (the reference's safe sqrt)."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    s = tl.zeros(inside.shape, tl.float64 if IS64 else tl.float32)
    for c in range(C):
        base = x_ptr + (img.to(tl.int64) * C + c) * hw
        gx, gy = _deriv_tile(base, rows, cols, H, W, S0, S1, 0, IS64)
        gx = gx * SCALE
        gy = gy * SCALE
        s += gx * gx + gy * gy
    s += _acc(tl.load(eps_ptr), IS64)
    pos = s > 0
    # 0 where the sum is 0, NaN where it is NaN (docs/ops.md: a diverging input must show)
    mag = tl.where(pos, _sqrt(tl.where(pos, s, 1.0), IS64), tl.where(s != s, s, 0.0))
    tl.store(out_ptr + img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :],
             mag.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _gm_bwd_kernel(g_ptr, x_ptr, eps_ptr, q_ptr, NI, C, H, W, S0: tl.constexpr, S1: tl.constexpr,
                   SCALE: tl.constexpr, IS64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """q[n*C+c] = (gx, gy) * g[n] / mag[n] (0 where mag == 0): the gradient w.r.t. the derivative maps.

    Pass 1 writes (gx, gy) to q and sums the magnitude; pass 2 rescales what this program wrote (same
    addresses, same program: no cross-program hazard). mag is recomputed in the accumulation precision
    rather than read back from the (possibly half-precision) saved output."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    off = rows[:, None] * W + cols[None, :]
    s = tl.zeros(inside.shape, tl.float64 if IS64 else tl.float32)
    for c in range(C):
        k = img.to(tl.int64) * C + c
        gx, gy = _deriv_tile(x_ptr + k * hw, rows, cols, H, W, S0, S1, 0, IS64)
        gx = gx * SCALE
        gy = gy * SCALE
        s += gx * gx + gy * gy
        qb = q_ptr + k * (2 * hw)
        tl.store(qb + off, gx, mask=inside)
        tl.store(qb + hw + off, gy, mask=inside)
    s += _acc(tl.load(eps_ptr), IS64)
    pos = s > 0
    g = _acc(tl.load(g_ptr + img.to(tl.int64) * hw + off, mask=inside, other=0.0), IS64)
    ratio = tl.where(pos, g / _sqrt(tl.where(pos, s, 1.0), IS64), tl.where(s != s, s, 0.0))
    for c in range(C):
        qb = q_ptr + (img.to(tl.int64) * C + c) * (2 * hw)
        gx = tl.load(qb + off, mask=inside, other=0.0)
        gy = tl.load(qb + hw + off, mask=inside, other=0.0)
        tl.store(qb + off, gx * ratio, mask=inside)
        tl.store(qb + hw + off, gy * ratio, mask=inside)


def _acc_dtype(t):
    return torch.float64 if t.dtype == torch.float64 else torch.float32


@_op("gradient_magnitude")
def gradient_magnitude(x: torch.Tensor, kernel: str = "sobel", reduce: str = "sum", eps: float = 0.0) -> torch.Tensor:
    B, C, H, W = x.shape
    out = x.new_empty((B, 1 if reduce == "sum" else C, H, W))
    if out.numel() == 0:
        return out
    x = x.contiguous()
    s0, s1, norm = _KERNEL[kernel]
    # eps as a tensor in the accumulation dtype: a Python float kernel argument would be rounded to fp32
    eps_t = torch.full((1,), eps, dtype=_acc_dtype(x), device=x.device)
    NI, CC = (B, C) if reduce == "sum" else (B * C, 1)
    BH, BW = _blocks(H, W)
    wrap_triton(_gm_fwd_kernel)[_grid(NI, H, W, BH, BW)](
        x, eps_t, out, NI, CC, H, W, s0, s1, 1.0 / norm, _is64(x), BH, BW
    )
    return out


@_op("_gradient_magnitude_backward")
def _gradient_magnitude_backward(grad: torch.Tensor, x: torch.Tensor, mag: torch.Tensor, kernel: str, reduce: str,
                                 eps: float) -> torch.Tensor:
    B, C, H, W = x.shape
    out = x.new_empty((B, C, H, W))
    if out.numel() == 0:
        return out
    x = x.contiguous()
    grad = grad.contiguous()
    s0, s1, norm = _KERNEL[kernel]
    acc = _acc_dtype(x)
    eps_t = torch.full((1,), eps, dtype=acc, device=x.device)
    q = torch.empty((B * C, 2, H, W), dtype=acc, device=x.device)
    NI, CC = (B, C) if reduce == "sum" else (B * C, 1)
    BH, BW = _blocks(H, W)
    wrap_triton(_gm_bwd_kernel)[_grid(NI, H, W, BH, BW)](
        grad, x, eps_t, q, NI, CC, H, W, s0, s1, 1.0 / norm, _is64(x), BH, BW
    )
    _deriv_bwd(q, out.view(B * C, H, W), kernel, True, "replicate")
    return out


# ------------------------------------------------------------------------------------------------
# mask_boundary (and the band of flow_edges)
# ------------------------------------------------------------------------------------------------
@triton.jit
def _minmax_window(base, rows, cols, H, W, width, IS64: tl.constexpr):
    """min and max of the clamped (2*width+1)^2 window (= width passes of the 3x3 element, replicate)."""
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    lo = tl.full(inside.shape, float("inf"), tl.float64 if IS64 else tl.float32)
    hi = tl.full(inside.shape, float("-inf"), tl.float64 if IS64 else tl.float32)
    for di in range(-width, width + 1):
        ri = tl.minimum(tl.maximum(rows + di, 0), H - 1)
        for dj in range(-width, width + 1):
            ci = tl.minimum(tl.maximum(cols + dj, 0), W - 1)
            v = _acc(tl.load(base + ri[:, None] * W + ci[None, :], mask=inside, other=0), IS64)
            # NaN wins, as in max_pool2d (tl.minimum/maximum may drop it)
            lo = tl.where((v < lo) | (v != v), v, lo)
            hi = tl.where((v > hi) | (v != v), v, hi)
    return lo, hi


@triton.jit
def _boundary(base, rows, cols, H, W, width, MODE: tl.constexpr, IS64: tl.constexpr):
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    lo, hi = _minmax_window(base, rows, cols, H, W, width, IS64)
    if MODE == 2:
        return hi - lo
    else:
        m = _acc(tl.load(base + rows[:, None] * W + cols[None, :], mask=inside, other=0), IS64)
        if MODE == 0:
            return m - lo
        else:
            return hi - m


@triton.jit
def _mb_fwd_kernel(m_ptr, out_ptr, NI, H, W, width, MODE: tl.constexpr, IS_BOOL: tl.constexpr,
                   IS64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    v = _boundary(m_ptr + img.to(tl.int64) * hw, rows, cols, H, W, width, MODE, IS64)
    optr = out_ptr + img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :]
    if IS_BOOL:
        tl.store(optr, (v > 0).to(tl.uint8), mask=inside)
    else:
        tl.store(optr, v.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _mb_arg_kernel(m_ptr, amax_ptr, amin_ptr, NI, H, W, width, NEED_MAX: tl.constexpr, NEED_MIN: tl.constexpr,
                   IS64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """Per output pixel, the in-image index (row * W + col) that max_pool's backward would credit: the
    first extremum of the replicate-padded window in row-major order (strict compares keep the first)."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    base = m_ptr + img.to(tl.int64) * hw
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    lo = tl.full(inside.shape, float("inf"), tl.float64 if IS64 else tl.float32)
    hi = tl.full(inside.shape, float("-inf"), tl.float64 if IS64 else tl.float32)
    alo = tl.zeros(inside.shape, tl.int32)
    ahi = tl.zeros(inside.shape, tl.int32)
    for di in range(-width, width + 1):
        ri = tl.minimum(tl.maximum(rows + di, 0), H - 1)
        for dj in range(-width, width + 1):
            ci = tl.minimum(tl.maximum(cols + dj, 0), W - 1)
            idx = ri[:, None] * W + ci[None, :]
            v = _acc(tl.load(base + idx, mask=inside, other=0), IS64)
            gt = (v > hi) | (v != v)  # max_pool2d's rule: a NaN is the extremum (the last one in scan order)
            hi = tl.where(gt, v, hi)
            ahi = tl.where(gt, idx, ahi)
            lt = (v < lo) | (v != v)
            lo = tl.where(lt, v, lo)
            alo = tl.where(lt, idx, alo)
    off = img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :]
    if NEED_MAX:
        tl.store(amax_ptr + off, ahi, mask=inside)
    if NEED_MIN:
        tl.store(amin_ptr + off, alo, mask=inside)


@triton.jit
def _mb_bwd_kernel(g_ptr, amax_ptr, amin_ptr, out_ptr, NI, H, W, width, MODE: tl.constexpr, IS64: tl.constexpr,
                   BH: tl.constexpr, BW: tl.constexpr):
    """Gather: pixel p collects +g from the outputs whose max it is, -g from those whose min it is,
    and +-g of its own output for the identity term of inner/outer. Fixed order: deterministic."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    ibase = img.to(tl.int64) * hw
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    me = rows[:, None] * W + cols[None, :]
    g0 = _acc(tl.load(g_ptr + ibase + me, mask=inside, other=0.0), IS64)
    if MODE == 0:
        acc = g0
    elif MODE == 1:
        acc = -g0
    else:
        acc = tl.zeros(inside.shape, tl.float64 if IS64 else tl.float32)
    for di in range(-width, width + 1):
        ri = rows + di
        for dj in range(-width, width + 1):
            ci = cols + dj
            m = inside & ((ri >= 0) & (ri < H))[:, None] & ((ci >= 0) & (ci < W))[None, :]
            off = ibase + ri[:, None] * W + ci[None, :]
            g = _acc(tl.load(g_ptr + off, mask=m, other=0.0), IS64)
            if MODE != 0:
                a = tl.load(amax_ptr + off, mask=m, other=-1)
                acc += tl.where(a == me, g, 0.0)
            if MODE != 1:
                a = tl.load(amin_ptr + off, mask=m, other=-1)
                acc -= tl.where(a == me, g, 0.0)
    tl.store(out_ptr + ibase + me, acc.to(out_ptr.dtype.element_ty), mask=inside)


def _as_u8(mask):
    return mask.contiguous().view(torch.uint8) if mask.dtype == torch.bool else mask.contiguous()


@_op("mask_boundary")
def mask_boundary(mask: torch.Tensor, mode: str = "inner", width: int = 1) -> torch.Tensor:
    B, _, H, W = mask.shape
    is_bool = mask.dtype == torch.bool
    out = torch.empty((B, 1, H, W), dtype=torch.uint8 if is_bool else mask.dtype, device=mask.device)
    if out.numel() > 0:
        BH, BW = _blocks(H, W)
        wrap_triton(_mb_fwd_kernel)[_grid(B, H, W, BH, BW)](
            _as_u8(mask), out, B, H, W, width, _MODE[mode], is_bool, _is64(mask), BH, BW
        )
    return out.view(torch.bool) if is_bool else out


@_op("_mask_boundary_backward")
def _mask_boundary_backward(grad: torch.Tensor, mask: torch.Tensor, mode: str, width: int) -> torch.Tensor:
    B, _, H, W = mask.shape
    out = torch.empty((B, 1, H, W), dtype=mask.dtype, device=mask.device)
    if out.numel() == 0:
        return out
    mask = mask.contiguous()
    grad = grad.contiguous()
    md = _MODE[mode]
    need_max, need_min = md != 0, md != 1
    amax = torch.empty((B, H, W) if need_max else (1,), dtype=torch.int32, device=mask.device)
    amin = torch.empty((B, H, W) if need_min else (1,), dtype=torch.int32, device=mask.device)
    BH, BW = _blocks(H, W)
    grid = _grid(B, H, W, BH, BW)
    wrap_triton(_mb_arg_kernel)[grid](mask, amax, amin, B, H, W, width, need_max, need_min, _is64(mask), BH, BW)
    wrap_triton(_mb_bwd_kernel)[grid](grad, amax, amin, out, B, H, W, width, md, _is64(mask), BH, BW)
    return out


# ------------------------------------------------------------------------------------------------
# flow_edges
# ------------------------------------------------------------------------------------------------
@triton.jit
def _fe_mag_kernel(flow_ptr, m_ptr, pmax_ptr, NI, H, W, IS64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """Fused: both channels' Sobel (/8, replicate), m = safe sqrt(sum of squares), and this tile's max
    written to pmax[image, tile] (a fixed-order reduction later: deterministic, no atomics)."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    s = tl.zeros(inside.shape, tl.float64 if IS64 else tl.float32)
    for c in tl.static_range(2):
        gx, gy = _deriv_tile(flow_ptr + (img.to(tl.int64) * 2 + c) * hw, rows, cols, H, W, 1.0, 2.0, 0, IS64)
        gx = gx * 0.125
        gy = gy * 0.125
        s += gx * gx + gy * gy
    pos = s > 0
    m = tl.where(pos, _sqrt(tl.where(pos, s, 1.0), IS64), tl.where(s != s, s, 0.0))
    tl.store(m_ptr + img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :], m, mask=inside)
    # tl.max may drop NaN: adding the sum of the NaNs (0 when there are none) puts it back (torch.amax)
    tile_max = tl.max(tl.max(tl.where(inside, m, 0.0), axis=1), axis=0) + \
        tl.sum(tl.sum(tl.where(inside & (m != m), m, 0.0), axis=1), axis=0)
    tl.store(pmax_ptr + tl.program_id(0), tile_max)


@triton.jit
def _row_reduce(ptr, img, n, IS_MAX: tl.constexpr, IS64: tl.constexpr, BLOCK_T: tl.constexpr):
    """max (IS_MAX) or sum of ptr[img * n : img * n + n], in a fixed order."""
    acc = tl.zeros([BLOCK_T], tl.float64 if IS64 else tl.float32)
    base = ptr + img.to(tl.int64) * n
    for t0 in range(0, n, BLOCK_T):
        offs = t0 + tl.arange(0, BLOCK_T)
        v = _acc(tl.load(base + offs, mask=offs < n, other=0.0), IS64)
        if IS_MAX:
            acc = tl.where((v > acc) | (v != v), v, acc)  # NaN propagates (torch.amax)
        else:
            acc += v
    if IS_MAX:
        return tl.max(acc, axis=0) + tl.sum(tl.where(acc != acc, acc, 0.0), axis=0)
    else:
        return tl.sum(acc, axis=0)


@triton.jit
def _fe_out_kernel(m_ptr, pmax_ptr, mask_ptr, out_ptr, NI, H, W, n_tiles, band, NORMALIZE: tl.constexpr,
                   HAS_BAND: tl.constexpr, IS64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
                   BLOCK_T: tl.constexpr):
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    off = img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :]
    m = tl.load(m_ptr + off, mask=inside, other=0.0)
    if NORMALIZE:
        mx = _row_reduce(pmax_ptr, img, n_tiles, True, IS64, BLOCK_T)
        mxb = tl.zeros_like(m) + mx  # a block-shaped predicate (see environment.md on scalar & block masks)
        pos = (mxb > 0) | (mxb != mxb)  # a NaN max makes the image NaN (docs/ops.md)
        m = tl.where(pos, m / tl.where(pos, mxb, 1.0), 0.0)
    if HAS_BAND:
        m = m * _boundary(mask_ptr + img.to(tl.int64) * hw, rows, cols, H, W, band, 2, IS64)
    tl.store(out_ptr + off, m.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _fe_bwd_dn_kernel(g_ptr, m_ptr, pmax_ptr, mask_ptr, dn_ptr, psum_ptr, pcnt_ptr, NI, H, W, n_tiles, band,
                      NORMALIZE: tl.constexpr, HAS_BAND: tl.constexpr, IS64: tl.constexpr, BH: tl.constexpr,
                      BW: tl.constexpr, BLOCK_T: tl.constexpr):
    """dn = grad * band (the gradient w.r.t. the normalised map) and, per tile, sum(dn * m) and the
    number of pixels tied at the image's max (amax's backward splits evenly among them)."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    off = img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :]
    dn = _acc(tl.load(g_ptr + off, mask=inside, other=0.0), IS64)
    if HAS_BAND:
        dn = dn * _boundary(mask_ptr + img.to(tl.int64) * hw, rows, cols, H, W, band, 2, IS64)
    tl.store(dn_ptr + off, dn, mask=inside)
    if NORMALIZE:
        m = tl.load(m_ptr + off, mask=inside, other=0.0)
        mx = _row_reduce(pmax_ptr, img, n_tiles, True, IS64, BLOCK_T)
        tied = inside & (m == mx)
        tl.store(psum_ptr + tl.program_id(0), tl.sum(tl.sum(dn * m, axis=1), axis=0))
        tl.store(pcnt_ptr + tl.program_id(0), tl.sum(tl.sum(tied.to(tl.float32), axis=1), axis=0))


@triton.jit
def _fe_bwd_q_kernel(flow_ptr, m_ptr, dn_ptr, pmax_ptr, psum_ptr, pcnt_ptr, q_ptr, NI, H, W, n_tiles,
                     NORMALIZE: tl.constexpr, IS64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
                     BLOCK_T: tl.constexpr):
    """dm = dn / mx - [m == mx] * sum(dn * m) / mx^2 / count (0 everywhere when mx == 0), then
    q = (gx, gy) of both channels * dm / m (0 where m == 0): the input of the Sobel adjoint."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    off = img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :]
    m = tl.load(m_ptr + off, mask=inside, other=0.0)
    dm = tl.load(dn_ptr + off, mask=inside, other=0.0)
    if NORMALIZE:
        mx = _row_reduce(pmax_ptr, img, n_tiles, True, IS64, BLOCK_T)
        ssum = _row_reduce(psum_ptr, img, n_tiles, False, IS64, BLOCK_T)
        cnt = _row_reduce(pcnt_ptr, img, n_tiles, False, IS64, BLOCK_T)
        mxb = tl.zeros_like(m) + mx
        pos = (mxb > 0) | (mxb != mxb)
        safe = tl.where(pos, mxb, 1.0)
        dm = dm / safe - tl.where(m == mxb, ssum / (safe * safe) / tl.maximum(cnt, 1.0), 0.0)
        dm = tl.where(pos, dm, 0.0)
    ratio = tl.where(m > 0, dm / tl.where(m > 0, m, 1.0), tl.where(m != m, m, 0.0))
    for c in tl.static_range(2):
        k = img.to(tl.int64) * 2 + c
        gx, gy = _deriv_tile(flow_ptr + k * hw, rows, cols, H, W, 1.0, 2.0, 0, IS64)
        qoff = k * (2 * hw) + rows[:, None] * W + cols[None, :]
        tl.store(q_ptr + qoff, gx * 0.125 * ratio, mask=inside)
        tl.store(q_ptr + qoff + hw, gy * 0.125 * ratio, mask=inside)


def _fe_prep(flow, mask, band):
    B, _, H, W = flow.shape
    flow = flow.contiguous()
    acc = _acc_dtype(flow)
    has_band = mask is not None and band is not None
    if has_band:
        # the band is computed on the mask in the flow's dtype (the reference's mask.to(m.dtype))
        mk = mask.to(flow.dtype) if mask.dtype != flow.dtype else mask
        mk = mk.contiguous()
    else:
        mk = flow  # unused
    BH, BW = _blocks(H, W)
    n_tiles = triton.cdiv(H, BH) * triton.cdiv(W, BW)
    m = torch.empty((B, H, W), dtype=acc, device=flow.device)
    pmax = torch.empty((B * n_tiles,), dtype=acc, device=flow.device)
    grid = _grid(B, H, W, BH, BW)
    wrap_triton(_fe_mag_kernel)[grid](flow, m, pmax, B, H, W, _is64(flow), BH, BW)
    return flow, mk, has_band, m, pmax, BH, BW, n_tiles, grid


@_op("flow_edges")
def flow_edges(flow: torch.Tensor, mask: Optional[torch.Tensor] = None, band: Optional[int] = 3,
               normalize: bool = True) -> torch.Tensor:
    B, _, H, W = flow.shape
    out = flow.new_empty((B, 1, H, W))
    if out.numel() == 0:
        return out
    flow, mk, has_band, m, pmax, BH, BW, n_tiles, grid = _fe_prep(flow, mask, band)
    wrap_triton(_fe_out_kernel)[grid](
        m, pmax, mk, out, B, H, W, n_tiles, band if has_band else 1, normalize, has_band, _is64(flow), BH, BW, 128
    )
    return out


@_op("_flow_edges_backward")
def _flow_edges_backward(grad: torch.Tensor, flow: torch.Tensor, mask: Optional[torch.Tensor], band: Optional[int],
                         normalize: bool) -> torch.Tensor:
    B, _, H, W = flow.shape
    out = torch.empty((B, 2, H, W), dtype=flow.dtype, device=flow.device)
    if out.numel() == 0:
        return out
    flow, mk, has_band, m, pmax, BH, BW, n_tiles, grid = _fe_prep(flow, mask, band)
    acc = m.dtype
    grad = grad.contiguous()
    dn = torch.empty_like(m)
    psum = torch.empty((B * n_tiles,), dtype=acc, device=flow.device)
    pcnt = torch.empty((B * n_tiles,), dtype=torch.float32, device=flow.device)
    bnd = band if has_band else 1
    wrap_triton(_fe_bwd_dn_kernel)[grid](
        grad, m, pmax, mk, dn, psum, pcnt, B, H, W, n_tiles, bnd, normalize, has_band, _is64(flow), BH, BW, 128
    )
    q = torch.empty((B * 2, 2, H, W), dtype=acc, device=flow.device)
    wrap_triton(_fe_bwd_q_kernel)[grid](
        flow, m, dn, pmax, psum, pcnt, q, B, H, W, n_tiles, normalize, _is64(flow), BH, BW, 128
    )
    _deriv_bwd(q, out.view(B * 2, H, W), "sobel", True, "replicate")
    return out


# ------------------------------------------------------------------------------------------------
# canny
# ------------------------------------------------------------------------------------------------
@triton.jit
def _canny_gray_kernel(img_ptr, wts_ptr, gray_ptr, NI, C, H, W, IS_U8: tl.constexpr, BH: tl.constexpr,
                       BW: tl.constexpr):
    """gray (float64) = the channel (C == 1), OpenCV's fixed-point BT.601 for uint8 RGB, or
    0.299 r + 0.587 g + 0.114 b in float64 (weights read from a float64 tensor, so they are exact)."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    off = rows[:, None] * W + cols[None, :]
    base = img_ptr + img.to(tl.int64) * C * hw
    if C == 1:
        g = tl.load(base + off, mask=inside, other=0).to(tl.float64)
    else:
        if IS_U8:
            r = tl.load(base + off, mask=inside, other=0).to(tl.int32)
            gg = tl.load(base + hw + off, mask=inside, other=0).to(tl.int32)
            b = tl.load(base + 2 * hw + off, mask=inside, other=0).to(tl.int32)
            g = ((r * 9798 + gg * 19235 + b * 3735 + 16384) >> 15).to(tl.float64)  # OpenCV 5's 15-bit BT.601
        else:
            r = tl.load(base + off, mask=inside, other=0).to(tl.float64)
            gg = tl.load(base + hw + off, mask=inside, other=0).to(tl.float64)
            b = tl.load(base + 2 * hw + off, mask=inside, other=0).to(tl.float64)
            # each product rounded by itself, as the reference computes it (no FMA: see _MUL_RN)
            g = _mul_rn(r, tl.load(wts_ptr)) + _mul_rn(gg, tl.load(wts_ptr + 1)) + _mul_rn(b, tl.load(wts_ptr + 2))
    tl.store(gray_ptr + img.to(tl.int64) * hw + off, g, mask=inside)


@triton.jit
def _canny_mag_kernel(gray_ptr, mag_ptr, NI, H, W, L2: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    dx, dy = _deriv_tile(gray_ptr + img.to(tl.int64) * hw, rows, cols, H, W, 1.0, 2.0, 0, True)
    if L2:
        mag = _mul_rn(dx, dx) + _mul_rn(dy, dy)  # no FMA: the reference rounds both squares
    else:
        mag = tl.abs(dx) + tl.abs(dy)
    tl.store(mag_ptr + img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :], mag, mask=inside)


@triton.jit
def _canny_nms_kernel(gray_ptr, mag_ptr, label_ptr, strong_ptr, thr_ptr, NI, H, W, BH: tl.constexpr,
                      BW: tl.constexpr):
    """OpenCV's non-maximum suppression (tan 22.5 deg = 13573 / 2^15, its strict / non-strict compares,
    magnitude 0 outside the image), then the union-find seed: label = own flat index for candidates
    (mag > lo), -1 otherwise; strong = candidate and mag > hi."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    dx, dy = _deriv_tile(gray_ptr + img.to(tl.int64) * hw, rows, cols, H, W, 1.0, 2.0, 0, True)
    mbase = mag_ptr + img.to(tl.int64) * hw
    mag = tl.load(mbase + rows[:, None] * W + cols[None, :], mask=inside, other=0.0)

    # neighbours, zero outside the image
    nl = tl.load(mbase + rows[:, None] * W + (cols - 1)[None, :], mask=inside & (cols >= 1)[None, :], other=0.0)
    nr = tl.load(mbase + rows[:, None] * W + (cols + 1)[None, :], mask=inside & (cols + 1 < W)[None, :], other=0.0)
    up_ok = (rows >= 1)[:, None]
    dn_ok = (rows + 1 < H)[:, None]
    nu = tl.load(mbase + (rows - 1)[:, None] * W + cols[None, :], mask=inside & up_ok, other=0.0)
    nd = tl.load(mbase + (rows + 1)[:, None] * W + cols[None, :], mask=inside & dn_ok, other=0.0)
    nul = tl.load(mbase + (rows - 1)[:, None] * W + (cols - 1)[None, :], mask=inside & up_ok & (cols >= 1)[None, :],
                  other=0.0)
    nur = tl.load(mbase + (rows - 1)[:, None] * W + (cols + 1)[None, :],
                  mask=inside & up_ok & (cols + 1 < W)[None, :], other=0.0)
    ndl = tl.load(mbase + (rows + 1)[:, None] * W + (cols - 1)[None, :], mask=inside & dn_ok & (cols >= 1)[None, :],
                  other=0.0)
    ndr = tl.load(mbase + (rows + 1)[:, None] * W + (cols + 1)[None, :],
                  mask=inside & dn_ok & (cols + 1 < W)[None, :], other=0.0)

    ax = tl.abs(dx)
    ay = tl.abs(dy)
    y = ay * 32768.0
    # tg67x = tg22x + ax * 65536 with both products rounded (a plain tg22x would be fused into the add,
    # an FMA that rounds once: tg67x would differ from the reference's)
    tg22x = _mul_rn(ax, 13573.0)
    tg67x = tg22x + _mul_rn(ax, 65536.0)
    horiz = y < tg22x
    vert = (~horiz) & (y > tg67x)
    diag = ~(horiz | vert)
    s_pos = (dx * dy) >= 0
    keep_h = (mag > nl) & (mag >= nr)
    keep_v = (mag > nu) & (mag >= nd)
    keep_d = tl.where(s_pos, (mag > nul) & (mag > ndr), (mag > nur) & (mag > ndl))
    nms = (horiz & keep_h) | (vert & keep_v) | (diag & keep_d)
    cand = nms & (mag > tl.load(thr_ptr)) & inside
    strong = cand & (mag > tl.load(thr_ptr + 1))
    flat = img * hw + rows[:, None] * W + cols[None, :]  # int32: the wrapper checks B*H*W < 2^31
    off = img.to(tl.int64) * hw + rows[:, None] * W + cols[None, :]
    tl.store(label_ptr + off, tl.where(cand, flat, -1), mask=inside)
    tl.store(strong_ptr + off, strong.to(tl.uint8), mask=inside)


@triton.jit
def _find(L, r, active):
    """Root of r in the union-find forest L (L[x] <= x, roots point to themselves), by pointer jumping.
    Loads are volatile: other programs rewrite L concurrently, stale cached values would loop forever."""
    r = tl.where(active, r, 0)
    nxt = tl.where(active, tl.load(L + r, mask=active, other=0, volatile=True), r)
    while tl.max((nxt != r).to(tl.int32)) > 0:
        r = nxt
        nxt = tl.where(active, tl.load(L + r, mask=active, other=0, volatile=True), r)
    return r


@triton.jit
def _union(L, a, b, active):
    """Lock-free union (Playne & Hawick 2018): hook the larger root under the smaller with atomic_min;
    if that root had meanwhile been hooked elsewhere (old != hi), keep uniting with what it pointed to."""
    done = ~active
    while tl.max((~done).to(tl.int32)) > 0:
        act = ~done
        a = _find(L, a, act)
        b = _find(L, b, act)
        lo = tl.minimum(a, b)
        hi = tl.maximum(a, b)
        done = done | (a == b)
        act = ~done
        old = tl.atomic_min(L + tl.where(act, hi, 0), lo, mask=act)
        done = done | (act & (old == hi))
        a = tl.where(act, lo, a)
        b = tl.where(act, old, b)


@triton.jit
def _canny_merge_kernel(label_ptr, NI, H, W, BH: tl.constexpr, BW: tl.constexpr):
    """Unite every candidate with its candidate neighbours E, SW, S, SE (the other four are covered by
    symmetry): 8-connectivity."""
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    flat = img * hw + rows[:, None] * W + cols[None, :]
    me_c = tl.load(label_ptr + flat, mask=inside, other=-1) >= 0
    for k in tl.static_range(4):
        di = 0 if k == 0 else 1
        dj = 1 if k == 0 else k - 2
        rr = rows + di
        cc = cols + dj
        ok = inside & (rr < H)[:, None] & ((cc >= 0) & (cc < W))[None, :]
        nb = flat + (di * W + dj)
        nb_c = tl.load(label_ptr + nb, mask=ok, other=-1) >= 0
        _union(label_ptr, flat, nb, ok & me_c & nb_c)


@triton.jit
def _canny_mark_kernel(label_ptr, strong_ptr, flag_ptr, NI, H, W, BH: tl.constexpr, BW: tl.constexpr):
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    flat = img * hw + rows[:, None] * W + cols[None, :]
    st = (tl.load(strong_ptr + flat, mask=inside, other=0) != 0) & inside
    root = _find(label_ptr, flat, st)
    tl.store(flag_ptr + root, tl.full(root.shape, 1, tl.uint8), mask=st)  # same value from everyone: benign


@triton.jit
def _canny_out_kernel(label_ptr, flag_ptr, out_ptr, NI, H, W, BH: tl.constexpr, BW: tl.constexpr):
    img, rows, cols = _tile(NI, H, W, BH, BW)
    hw = H * W
    inside = (rows[:, None] < H) & (cols[None, :] < W)
    flat = img * hw + rows[:, None] * W + cols[None, :]
    cand = (tl.load(label_ptr + flat, mask=inside, other=-1) >= 0) & inside
    root = _find(label_ptr, flat, cand)
    f = tl.load(flag_ptr + root, mask=cand, other=0)
    tl.store(out_ptr + flat, (cand & (f != 0)).to(tl.uint8), mask=inside)


@_op("canny")
def canny(img: torch.Tensor, low: float, high: float, kernel_size: int = 3, l2_gradient: bool = False) -> torch.Tensor:
    if kernel_size != 3:
        raise ValueError(f"kernel_size: only 3 is supported, got {kernel_size}")
    B, C, H, W = img.shape
    out = torch.zeros((B, 1, H, W), dtype=torch.uint8, device=img.device)
    if out.numel() == 0:
        return out.view(torch.bool)
    if B * H * W >= 2**31:
        raise ValueError(f"img: canny's labels are int32, so B*H*W must be < 2^31, got shape {tuple(img.shape)}")
    img = img.contiguous()
    lo, hi = canny_thresholds(low, high, l2_gradient)
    dev = img.device
    wts = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=dev)
    # float64 tensor: Python float kernel arguments become fp32 (squared L2 thresholds need 30+ bits)
    thr = torch.tensor([float(lo), float(hi)], dtype=torch.float64, device=dev)
    gray = torch.empty((B, H, W), dtype=torch.float64, device=dev)
    mag = torch.empty((B, H, W), dtype=torch.float64, device=dev)
    label = torch.empty((B, H, W), dtype=torch.int32, device=dev)
    strong = torch.empty((B, H, W), dtype=torch.uint8, device=dev)
    flag = torch.zeros((B, H, W), dtype=torch.uint8, device=dev)
    BH, BW = _blocks(H, W)
    grid = _grid(B, H, W, BH, BW)
    # A fixed sequence of launches; nothing is read back to the host.
    wrap_triton(_canny_gray_kernel)[grid](img, wts, gray, B, C, H, W, img.dtype == torch.uint8, BH, BW)
    wrap_triton(_canny_mag_kernel)[grid](gray, mag, B, H, W, bool(l2_gradient), BH, BW)
    wrap_triton(_canny_nms_kernel)[grid](gray, mag, label, strong, thr, B, H, W, BH, BW)
    wrap_triton(_canny_merge_kernel)[grid](label, B, H, W, BH, BW)
    wrap_triton(_canny_mark_kernel)[grid](label, strong, flag, B, H, W, BH, BW)
    wrap_triton(_canny_out_kernel)[grid](label, flag, out, B, H, W, BH, BW)
    return out.view(torch.bool)


# ------------------------------------------------------------------------------------------------
# distance_transform
# ------------------------------------------------------------------------------------------------
@triton.jit
def _dt_col_kernel(m_ptr, near_ptr, dv2_ptr, NB, H, W, BW: tl.constexpr):
    """Per column, the nearest True row (ties to the upper one) and dv^2 (-1 where the column is empty).
    A loop over rows, vectorised across BW adjacent columns (coalesced)."""
    pid = tl.program_id(0)
    tw = tl.cdiv(W, BW)
    img = pid // tw
    cols = (pid % tw) * BW + tl.arange(0, BW)
    cm = cols < W
    base = img.to(tl.int64) * H * W
    above = tl.full([BW], -1, tl.int32)
    for i in range(H):
        v = tl.load(m_ptr + base + i * W + cols, mask=cm, other=0) != 0
        above = tl.where(v, i, above)
        tl.store(near_ptr + base + i * W + cols, above, mask=cm)
    below = tl.full([BW], -1, tl.int32)
    for t in range(H):
        i = H - 1 - t
        v = tl.load(m_ptr + base + i * W + cols, mask=cm, other=0) != 0
        below = tl.where(v, i, below)
        ab = tl.load(near_ptr + base + i * W + cols, mask=cm, other=-1)  # written by this program above
        has_a = ab >= 0
        has_b = below >= 0
        use_a = has_a & ((~has_b) | ((i - ab) <= (below - i)))
        near = tl.where(use_a, ab, below)
        d = near - i
        tl.store(near_ptr + base + i * W + cols, near, mask=cm)
        tl.store(dv2_ptr + base + i * W + cols, tl.where(has_a | has_b, d * d, -1), mask=cm)


@triton.jit
def _dt_row_kernel(near_ptr, dv2_ptr, dist_ptr, idx_ptr, NB, H, W, WANT_IDX: tl.constexpr, WIDE: tl.constexpr,
                   BIG: tl.constexpr,
                   BJ: tl.constexpr, BK: tl.constexpr):
    """dist(i, j)^2 = min over columns k of dv2(i, k) + (j - k)^2, exact in integers, ties to the lowest k:
    a [BJ, BK] tile of candidates per step, reduced with a left-biased argmin, chunks in increasing k."""
    pid = tl.program_id(0)
    tj = tl.cdiv(W, BJ)
    row = pid // tj  # = img * H + i
    img = row // H
    i = row % H
    j = (pid % tj) * BJ + tl.arange(0, BJ)
    jm = j < W
    rbase = row.to(tl.int64) * W
    if WIDE:
        best = tl.full([BJ], BIG, tl.int64)
    else:
        best = tl.full([BJ], BIG, tl.int32)
    arg = tl.zeros([BJ], tl.int32)
    for k0 in range(0, W, BK):
        k = k0 + tl.arange(0, BK)
        dv = tl.load(dv2_ptr + rbase + k, mask=k < W, other=-1).to(best.dtype)
        dj = (j[:, None] - k[None, :]).to(best.dtype)
        tot = tl.where((dv >= 0)[None, :], dv[None, :] + dj * dj, BIG)
        cmin, carg = tl.min(tot, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = cmin < best
        best = tl.where(better, cmin, best)
        arg = tl.where(better, carg + k0, arg)
    valid = best < BIG
    d = tl.sqrt(best.to(tl.float64)).to(tl.float32)  # fp64 sqrt is correctly rounded, then to fp32 (reference)
    out_off = img.to(tl.int64) * H * W + i * W + j
    tl.store(dist_ptr + out_off, tl.where(valid, d, float("inf")), mask=jm)
    if WANT_IDX:
        yy = tl.load(near_ptr + rbase + arg, mask=jm & valid, other=-1)
        ibase = img.to(tl.int64) * 2 * H * W + i * W + j
        tl.store(idx_ptr + ibase, tl.where(valid, yy, -1).to(tl.int64), mask=jm)
        tl.store(idx_ptr + ibase + H * W, tl.where(valid, arg, -1).to(tl.int64), mask=jm)


@_op("distance_transform")
def distance_transform(mask: torch.Tensor, return_indices: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    B, _, H, W = mask.shape
    dev = mask.device
    dist = torch.empty((B, 1, H, W), dtype=torch.float32, device=dev)
    idx = torch.empty((B, 2, H, W) if return_indices else (0,), dtype=torch.int64, device=dev)
    if dist.numel() == 0:
        return dist, idx
    m = mask.contiguous()
    if m.dtype == torch.bool:
        m = m.view(torch.uint8)
    near = torch.empty((B, H, W), dtype=torch.int32, device=dev)
    dv2 = torch.empty((B, H, W), dtype=torch.int32, device=dev)
    BW = min(128, triton.next_power_of_2(W))
    wrap_triton(_dt_col_kernel)[(B * triton.cdiv(W, BW),)](m, near, dv2, B, H, W, BW)
    # int32 sums are exact while (H-1)^2 + (W-1)^2 < 2^31 - 1; wider images use int64
    wide = (H - 1) ** 2 + (W - 1) ** 2 >= 2**31 - 1
    BJ = min(64, triton.next_power_of_2(W))
    BK = min(64, triton.next_power_of_2(W))
    wrap_triton(_dt_row_kernel)[(B * H * triton.cdiv(W, BJ),)](
        near, dv2, dist, idx if return_indices else dist, B, H, W, bool(return_indices), wide,
        2**63 - 1 if wide else 2**31 - 1, BJ, BK
    )
    return dist, idx


from .. import _meta_edges  # noqa: E402

_meta_edges.register("hmore_triton", fake=_INTERPRET)  # on a GPU, triton_op registers its body as the fake kernel
