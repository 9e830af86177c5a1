"""CuPy backend of the Chamfer family: ``torch.ops.hmore_cupy.<op>`` for nearest_neighbors,
chamfer_distance (+ backward), patch_centroids (+ backward), patch_centroid_chamfer (+ backward) and
boundary_chamfer, with the kernels of ``csrc/chamfer/chamfer_cuda.cu`` (NVRTC) and the work of
``chamfer_cuda.cpp``: the per-cloud / per-scale partial sums the kernels leave are reduced with torch in a
fixed order (deterministic); nothing is read back to the host (lengths are clamped by the kernels).
float32, float16 and bfloat16 (float64: reference and cpu backends).
"""
from __future__ import annotations

import ctypes
import math

import torch

from ._launch import _STRUCTS, launcher
from ._ops import cuda_tensor, define_family

CHAMFER = "chamfer/chamfer_cuda.cu"
# chamfer_cuda.cu's constants
NT, XP, BMY, EW = 256, 4, 256, 256
BX = NT * XP
SPLIT_GRAIN = 64
SMEM_FLOATS = 12288 - 2 * BMY
MAX_SCALES = 8
BC_BLOCK = 1024
MAX_PATCH = 46340
_T = {torch.float32: "float", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}
_RED = ("mean", "sum", "none")


class Scales(ctypes.Structure):
    """chamfer_cuda.cu's ``struct Scales`` (by value): up to 8 patch sizes and their coefficient offsets."""
    _fields_ = [("n", ctypes.c_int), ("p", ctypes.c_int64 * MAX_SCALES), ("base", ctypes.c_int64 * MAX_SCALES)]


_STRUCTS.update(Scales=Scales)
STRUCT_ASSERTS = (f"\nstatic_assert(sizeof(Scales) == {ctypes.sizeof(Scales)} && alignof(Scales) == "
                  f"{ctypes.alignment(Scales)}, \"Scales: layout\");"
                  + "".join(f"\nstatic_assert(sizeof(Scales::{f}) == {getattr(Scales, f).size}, \"Scales.{f}\");"
                            for f, _ in Scales._fields_))


def cdiv(a, b):
    return (a + b - 1) // b


def ew_blocks(total):
    return min(cdiv(total, EW), 1 << 20)  # grid-stride beyond


def tiles(n, block=EW):
    return cdiv(n, block) if n > 0 else 1


def sm_count(device) -> int:
    """Multiprocessors of the device (the split heuristic of the distance pass); 132 if unknown (an H100)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count or 132
    return 132


def _float(t, name):
    if t.dtype == torch.float64:
        raise TypeError(f"{name}: the cupy backend supports float32, float16 and bfloat16, got float64 (use "
                        "backend='cpu' or 'reference' for float64)")
    if t.dtype not in _T:
        raise TypeError(f"{name}: expected a floating-point tensor (float32, float16, bfloat16), got {t.dtype}")


def _points(t, name):
    if t.dim() != 3:
        raise ValueError(f"{name}: expected a 3-D tensor [B, N, D], got shape {tuple(t.shape)}")
    cuda_tensor(t, name)
    _float(t, name)
    if t.shape[1] >= 2**31:
        raise ValueError(f"{name}: expected fewer than 2^31 points, got {t.shape[1]}")


def _pair(x, y):
    _points(x, "x")
    _points(y, "y")
    cuda_tensor(y, "y", like=x)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y: expected batch size {x.shape[0]} like x, got shape {tuple(y.shape)}")
    if y.shape[2] != x.shape[2]:
        raise ValueError(f"y: expected D = {x.shape[2]} like x, got shape {tuple(y.shape)}")
    if x.shape[2] < 1 and x.shape[1] > 0 and y.shape[1] > 0:
        raise ValueError(f"x: expected D >= 1, got shape {tuple(x.shape)}")
    if y.dtype != x.dtype:
        raise TypeError(f"y: expected dtype {x.dtype} like x, got {y.dtype}")


def _lengths(l, B, name, x):
    if l is None:
        return None
    if l.dim() != 1 or l.shape[0] != B:
        raise ValueError(f"{name}: expected shape [{B}], got {tuple(l.shape)}")
    if l.dtype != torch.int64:
        raise TypeError(f"{name}: expected int64, got {l.dtype}")
    cuda_tensor(l, name, like=x)
    return l.contiguous()


def _weights(w, B, N, name, x):
    if w is None:
        return None
    if tuple(w.shape) != (B, N):
        raise ValueError(f"{name}: expected shape [{B}, {N}], got {tuple(w.shape)}")
    if not w.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {w.dtype}")
    cuda_tensor(w, name, like=x)
    return w.float().contiguous()


def _reduction(r):
    if r not in _RED:
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {r!r}")
    return r


def reduce_batch(per, red):
    if red == "none":
        return per
    if red == "sum":
        return per.sum()
    return per.mean() if per.numel() else per.sum()


def _direction_value(num, den, red):
    if red == "sum":
        return num
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))


def _batch_grad(grad, B, red):
    g = grad.float()
    if red == "none":
        if g.numel() != B:
            raise ValueError(f"grad: expected shape [{B}], got {tuple(grad.shape)}")
        return g.reshape(B).contiguous()
    if g.numel() != 1:
        raise ValueError(f"grad: expected a scalar, got shape {tuple(grad.shape)}")
    g = g.reshape(()).expand(B)
    return (g / B if red == "mean" else g).contiguous()


# ---------------------------------------------------------------------------------------------- distance pass
def _key_pass(x, y, xl, yl, cols):
    """Packed (distance bits, index) keys of both directions in one pass: kx [B, N], ky [B, M] or None."""
    B, N, D = x.shape
    M = y.shape[1]
    kx = x.new_full((B, N), -1, dtype=torch.int64)  # all ones: HMORE_CHAMFER_KEY_NONE
    ky = x.new_full((B, M), -1, dtype=torch.int64) if cols else None
    if D > SMEM_FLOATS:
        raise ValueError(f"x: the cupy backend supports D <= {SMEM_FLOATS}, got shape {tuple(x.shape)}")
    tiles_x, chunks = cdiv(N, BX), cdiv(M, SPLIT_GRAIN)
    # split the y range when the batch gives too few blocks to fill the GPU (8 per multiprocessor)
    splits = max(1, min(cdiv(sm_count(x.device) * 8, B * tiles_x), chunks))
    span = cdiv(chunks, splits) * SPLIT_GRAIN
    splits = cdiv(M, span)
    blocks = B * tiles_x * splits
    if blocks > 2**31 - 1:
        raise ValueError(f"x, y: {blocks} blocks do not fit one launch")
    tile = BMY if D <= SMEM_FLOATS // BMY else max(SMEM_FLOATS // D, 1)
    dc = D if D in (2, 3) else 0
    expr = f"pair_kernel<{_T[x.dtype]}, {dc}, {'true' if cols else 'false'}, {'true' if splits > 1 else 'false'}>"
    launcher()(CHAMFER, expr, (blocks,), (NT,), [x, y, xl, yl, kx, ky, N, M, D, tiles_x, splits, span, tile],
               tile * D * 4, device=x.device)
    return kx, ky


def _unpack(keys, lengths, w, squared, want_dist):
    B, N = keys.shape
    idx = keys.new_empty((B, N), dtype=torch.int64)
    dist = keys.new_empty((B, N), dtype=torch.float32) if want_dist else None
    t = tiles(N)
    part = keys.new_zeros((B, t, 2), dtype=torch.float32)
    launcher()(CHAMFER, "unpack_kernel", (t, min(B, 65535)), (EW,),
               [keys, lengths, w, idx, dist, part, B, N, t, int(squared)], device=keys.device)
    s = part.sum(1)
    return idx, dist, s[:, 0], s[:, 1]


def nearest_neighbors(x, y, x_lengths=None, y_lengths=None):
    _pair(x, y)
    B, N, _ = x.shape
    M = y.shape[1]
    xl = _lengths(x_lengths, B, "x_lengths", x)
    yl = _lengths(y_lengths, B, "y_lengths", x)
    if B * N == 0 or M == 0:
        return x.new_zeros((B, N), dtype=torch.float32), x.new_full((B, N), -1, dtype=torch.int64)
    kx, _ = _key_pass(x.contiguous(), y.contiguous(), xl, yl, False)
    idx, dist, _, _ = _unpack(kx, xl, None, True, True)
    return dist, idx


def chamfer_distance(x, y, x_lengths=None, y_lengths=None, x_weights=None, y_weights=None, squared=True,
                     reduction="mean", bidirectional=True, deterministic=False):
    _pair(x, y)
    red = _reduction(reduction)
    B, N, _ = x.shape
    M = y.shape[1]
    xl = _lengths(x_lengths, B, "x_lengths", x)
    yl = _lengths(y_lengths, B, "y_lengths", x)
    wx = _weights(x_weights, B, N, "x_weights", x)
    wy = _weights(y_weights, B, M, "y_weights", x)
    if B == 0 or N == 0 or M == 0:  # every point lacks a neighbour: distance 0, index -1, value 0
        per = x.new_zeros(B, dtype=torch.float32)
        return (reduce_batch(per, red), x.new_full((B, N), -1, dtype=torch.int64),
                x.new_full((B, M if bidirectional else 0), -1, dtype=torch.int64))
    kx, ky = _key_pass(x.contiguous(), y.contiguous(), xl, yl, bidirectional)
    idx_x, _, num, den = _unpack(kx, xl, wx, squared, False)
    per = _direction_value(num, den, red)
    if bidirectional:
        idx_y, _, num, den = _unpack(ky, yl, wy, squared, False)
        per = per + _direction_value(num, den, red)
    else:
        idx_y = x.new_empty((B, 0), dtype=torch.int64)
    return reduce_batch(per, red), idx_x, idx_y


def _direction_backward(src, dst, idx, w, gbatch, squared, normalise, deterministic, gs, gd, gw):
    B, n, D = src.shape
    m = dst.shape[1]
    t, dc = _T[src.dtype], (D if D in (2, 3) else 0)
    run = launcher()
    nt = tiles(n)
    part = src.new_zeros((B, nt, 2), dtype=torch.float32)
    run(CHAMFER, f"dir_stats_kernel<{t}, {dc}>", (nt, min(B, 65535)), (EW,),
        [src, dst, idx, w, part, B, n, m, D, nt, int(squared)], device=src.device)
    s = part.sum(1)
    num, den = s[:, 0], s[:, 1]
    if normalise:
        pos = den > 0
        scale = torch.where(pos, 1.0 / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(den))
    else:
        scale = torch.ones_like(den)
    val, coef = (num * scale).contiguous(), (gbatch * scale).contiguous()
    contrib = src.new_empty((B * n, D), dtype=torch.float32) if deterministic else None
    run(CHAMFER, f"dir_grad_kernel<{t}, {dc}>", (ew_blocks(B * n),), (EW,),
        [src, dst, idx, w, coef, val, den.contiguous(), gbatch, gs, gd, contrib, gw, B, n, m, D, int(squared),
         int(normalise)], device=src.device)
    if deterministic:
        # stable sort of (neighbour, point) by neighbour: each dst point sums its sources in increasing order
        base = (torch.arange(B, device=idx.device) * m).unsqueeze(1)
        key = torch.where(idx >= 0, idx + base, torch.full((), B * m, device=idx.device)).reshape(-1)
        skey, perm = torch.sort(key, stable=True)
        start = torch.searchsorted(skey, torch.arange(B * m + 1, device=idx.device))
        run(CHAMFER, "segsum_kernel", (ew_blocks(B * m),), (EW,),
            [gd, contrib, perm.contiguous(), start.contiguous(), B * m, D], device=src.device)


def chamfer_distance_backward(grad, x, y, idx_x, idx_y, x_lengths, y_lengths, x_weights, y_weights, squared,
                              reduction, bidirectional, deterministic):
    _pair(x, y)
    red = _reduction(reduction)
    B, N, D = x.shape
    M = y.shape[1]
    if tuple(idx_x.shape) != (B, N):
        raise ValueError(f"idx_x: expected shape [{B}, {N}], got {tuple(idx_x.shape)}")
    if bidirectional and tuple(idx_y.shape) != (B, M):
        raise ValueError(f"idx_y: expected shape [{B}, {M}], got {tuple(idx_y.shape)}")
    cuda_tensor(grad, "grad", like=x)
    wx = _weights(x_weights, B, N, "x_weights", x)
    wy = _weights(y_weights, B, M, "y_weights", x)
    gx, gy = x.new_zeros((B, N, D), dtype=torch.float32), x.new_zeros((B, M, D), dtype=torch.float32)
    gwx = x.new_zeros((B, N), dtype=torch.float32) if wx is not None else None
    gwy = x.new_zeros((B, M), dtype=torch.float32) if wy is not None else None
    if B * N > 0 and M > 0 and D > 0:
        gb = _batch_grad(grad, B, red)
        norm = red != "sum"
        xc, yc = x.contiguous(), y.contiguous()
        _direction_backward(xc, yc, idx_x.long().contiguous(), wx, gb, squared, norm, deterministic, gx, gy, gwx)
        if bidirectional:
            _direction_backward(yc, xc, idx_y.long().contiguous(), wy, gb, squared, norm, deterministic, gy, gx, gwy)
    ow = gwx.to(x_weights.dtype) if x_weights is not None else x.new_empty(0)
    owy = gwy.to(y_weights.dtype) if y_weights is not None else x.new_empty(0)
    return gx.to(x.dtype), gy.to(y.dtype), ow, owy


# ---------------------------------------------------------------------------------------------- patches
def patch_threads(p):
    n = p * p
    return 256 if n >= 256 else cdiv(n, 32) * 32


def _map(t, name):
    if t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"{name}: expected a 4-D tensor [B, 1, H, W], got shape {tuple(t.shape)}")
    cuda_tensor(t, name)
    if t.dtype != torch.bool:
        _float(t, name)


def _map_dtype(t):
    return torch.float32 if t.dtype == torch.bool else t.dtype


def _patch_size(p):
    if not 1 <= p <= MAX_PATCH:
        raise ValueError(f"patch_size: expected an int in [1, {MAX_PATCH}] on the cupy backend, got {p}")


def patch_centroids(weights, patch_size, offsets=None):
    _map(weights, "weights")
    _patch_size(patch_size)
    st = _map_dtype(weights)
    B, _, H, W = weights.shape
    p = patch_size
    if offsets is not None:
        if tuple(offsets.shape) != (B, 2, H, W):
            raise ValueError(f"offsets: expected shape [{B}, 2, {H}, {W}], got {tuple(offsets.shape)}")
        if not offsets.is_floating_point():
            raise TypeError(f"offsets: expected a floating-point tensor, got {offsets.dtype}")
        cuda_tensor(offsets, "offsets", like=weights)
    Hp, Wp = cdiv(H, p), cdiv(W, p)
    w = weights.to(st).contiguous()
    o = offsets.to(st).contiguous() if offsets is not None else None
    cen = w.new_empty((B, Hp, Wp, 2))
    mass = w.new_empty((B, Hp, Wp))
    if cen.numel() == 0:
        return cen, mass
    launcher()(CHAMFER, f"patch_centroids_kernel<{_T[st]}>", (B * Hp * Wp,), (patch_threads(p),),
               [w, o, cen, mass, H, W, Hp, Wp, p], device=w.device)
    return cen, mass


def patch_centroids_backward(grad_centroids, grad_mass, weights, offsets, centroids, mass, patch_size):
    _map(weights, "weights")
    _patch_size(patch_size)
    st = _map_dtype(weights)
    B, _, H, W = weights.shape
    p = patch_size
    Hp, Wp = cdiv(H, p), cdiv(W, p)
    if grad_centroids.numel() != B * Hp * Wp * 2 or centroids.numel() != B * Hp * Wp * 2:
        raise ValueError(f"grad_centroids: expected shape [{B}, {Hp}, {Wp}, 2], got {tuple(grad_centroids.shape)}")
    if grad_mass.numel() != B * Hp * Wp or mass.numel() != B * Hp * Wp:
        raise ValueError(f"grad_mass: expected shape [{B}, {Hp}, {Wp}], got {tuple(grad_mass.shape)}")
    w = weights.to(st).contiguous()
    o = offsets.to(st).contiguous() if offsets is not None else None
    gc, gm = grad_centroids.to(st).contiguous(), grad_mass.to(st).contiguous()
    cen, m = centroids.to(st).contiguous(), mass.to(st).contiguous()
    gw = w.new_empty((B, 1, H, W))
    go = w.new_empty((B, 2, H, W)) if o is not None else w.new_empty(0)
    if gw.numel() > 0:
        launcher()(CHAMFER, f"patch_centroids_bwd_kernel<{_T[st]}>", (ew_blocks(B * H * W),), (EW,),
                   [gc, gm, w, o, cen, m, gw, go if o is not None else None, B, H, W, Hp, Wp, p], device=w.device)
    if offsets is not None:
        go = go.to(offsets.dtype)
    return gw, go


def _pcc_args(a, b, patch_sizes, min_mass):
    _map(a, "a")
    _map(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"b: expected shape {tuple(a.shape)} like a, got {tuple(b.shape)}")
    cuda_tensor(b, "b", like=a)
    if len(patch_sizes) == 0:
        raise ValueError("patch_sizes: expected at least one patch size, got an empty list")
    if any(not 1 <= p <= MAX_PATCH for p in patch_sizes):
        raise ValueError(f"patch_sizes: expected ints in [1, {MAX_PATCH}], got {list(patch_sizes)}")
    if not (min_mass >= 0 and math.isfinite(min_mass)):
        raise ValueError(f"min_mass: expected a finite float >= 0, got {min_mass}")
    st = torch.promote_types(_map_dtype(a), _map_dtype(b))
    _float(torch.empty(0, dtype=st), "a")
    return st


def _pcc_scale(a, b, p, min_mass, coef):
    B, _, H, W = a.shape
    np_ = cdiv(H, p) * cdiv(W, p)
    term = a.new_empty((B, np_), dtype=torch.float32)
    count = a.new_empty((B, np_), dtype=torch.float32)
    launcher()(CHAMFER, f"pcc_scale_kernel<{_T[a.dtype]}>", (B * np_,), (patch_threads(p),),
               [a, b, term, count, coef, H, W, cdiv(H, p), cdiv(W, p), p, float(min_mass)], device=a.device)
    return term, count


def patch_centroid_chamfer(a, b, patch_sizes=(8, 16, 32), min_mass=1e-3, reduction="mean"):
    st = _pcc_args(a, b, patch_sizes, min_mass)
    red = _reduction(reduction)
    B, _, H, W = a.shape
    per = a.new_zeros(B, dtype=torch.float32)
    if B > 0 and H > 0 and W > 0:
        ac, bc = a.to(st).contiguous(), b.to(st).contiguous()
        for p in patch_sizes:
            term, count = _pcc_scale(ac, bc, p, min_mass, None)
            s, n = term.sum(1), count.sum(1)
            per = per + torch.where(n > 0, s / n.clamp_min(1), torch.zeros_like(s))
        per = per / len(patch_sizes)
    return reduce_batch(per.to(st), red)


def patch_centroid_chamfer_backward(grad, a, b, patch_sizes, min_mass, reduction):
    st = _pcc_args(a, b, patch_sizes, min_mass)
    red = _reduction(reduction)
    cuda_tensor(grad, "grad", like=a)
    B, _, H, W = a.shape
    S = len(patch_sizes)
    ga = a.new_zeros((B, 1, H, W), dtype=torch.float32)
    gbm = a.new_zeros((B, 1, H, W), dtype=torch.float32)
    if ga.numel() > 0:
        ac, bc = a.to(st).contiguous(), b.to(st).contiguous()
        g = _batch_grad(grad, B, red)
        bases, total = [], 0
        for p in patch_sizes:
            bases.append(total)
            total += B * cdiv(H, p) * cdiv(W, p) * 6
        coef = a.new_empty(total, dtype=torch.float32)
        facs = []
        for p, base in zip(patch_sizes, bases):
            _, count = _pcc_scale(ac, bc, p, min_mass, coef[base:])
            n = count.sum(1)
            # the term is linear in its upstream gradient: g_b / (count_b * S), 0 where nothing counted
            facs.append(torch.where(n > 0, g / (n.clamp_min(1) * S), torch.zeros_like(n)))
        fac = torch.stack(facs, 1).contiguous()  # [B, S]
        for s0 in range(0, S, MAX_SCALES):
            sc = Scales()
            sc.n = min(S - s0, MAX_SCALES)
            for k in range(MAX_SCALES):
                sc.p[k] = patch_sizes[s0 + k] if k < sc.n else 1
                sc.base[k] = bases[s0 + k] if k < sc.n else 0
            launcher()(CHAMFER, "pcc_bwd_kernel", (ew_blocks(B * H * W),), (EW,),
                       [coef, fac, sc, s0, S, ga, gbm, B, H, W, int(s0 > 0)], device=a.device)
    return (ga.to(st if a.dtype == torch.bool else a.dtype), gbm.to(st if b.dtype == torch.bool else b.dtype))


def boundary_chamfer(a, b, reduction="mean"):
    for t, name in ((a, "a"), (b, "b")):
        if t.dim() != 4 or t.shape[1] != 1:
            raise ValueError(f"{name}: expected a 4-D tensor [B, 1, H, W], got shape {tuple(t.shape)}")
        if t.dtype != torch.bool:
            raise TypeError(f"{name}: expected a bool boundary map, got {t.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"b: expected shape {tuple(a.shape)} like a, got {tuple(b.shape)}")
    cuda_tensor(a, "a")
    cuda_tensor(b, "b", like=a)
    red = _reduction(reduction)
    B, HW = a.shape[0], a.shape[2] * a.shape[3]
    if a.numel() == 0:
        return reduce_batch(a.new_zeros(B, dtype=torch.float32), red)
    from .edges import distance_transform  # the edge family's kernel on the same backend

    ac, bc = a.contiguous(), b.contiguous()
    da, db = distance_transform(ac)[0].contiguous(), distance_transform(bc)[0].contiguous()
    t = tiles(HW, BC_BLOCK)
    part = a.new_zeros((B, t, 4), dtype=torch.float64)
    launcher()(CHAMFER, "bc_reduce_kernel", (t, min(B, 65535)), (EW,), [ac, bc, da, db, part, B, HW, t],
               device=a.device)
    s = part.sum(1)
    na, sab, nb, sba = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    per = sab / na.clamp_min(1) + sba / nb.clamp_min(1)
    per = torch.where((na == 0) & (nb == 0), torch.zeros_like(per), per)
    per = torch.where((na == 0) ^ (nb == 0), torch.full_like(per, math.inf), per)
    return reduce_batch(per.float(), red)


OPS = {
    "nearest_neighbors": nearest_neighbors, "chamfer_distance": chamfer_distance,
    "_chamfer_distance_backward": chamfer_distance_backward, "patch_centroids": patch_centroids,
    "_patch_centroids_backward": patch_centroids_backward, "patch_centroid_chamfer": patch_centroid_chamfer,
    "_patch_centroid_chamfer_backward": patch_centroid_chamfer_backward, "boundary_chamfer": boundary_chamfer,
}


from .. import _meta_chamfer  # noqa: E402

define_family(OPS, _meta_chamfer.register)
