"""CuPy backend of the correlation family: ``torch.ops.hmore_cupy.<op>`` for corr_volume, corr_pyramid,
corr_lookup, corr_lookup_otf, local_corr and their backward ops.

As in ``csrc/corr/corr_cuda.cpp``: the volume and the pyramid are GEMMs (``torch.baddbmm`` with
``alpha = scale``, cuBLAS), level l correlating with fmap2 average-pooled l times; the lookups, the
memory-free lookup and local_corr run the kernels of ``csrc/corr/corr_cuda.cu`` (NVRTC). float32,
float16 and bfloat16 features (float64 runs on the reference and cpu backends, docs/ops.md).
"""
from __future__ import annotations

import ctypes
import math

import torch
import torch.nn.functional as F

from .. import corr as _api
from ._launch import _STRUCTS, launcher
from ._ops import cuda_tensor, define_family

CORR = "corr/corr_cuda.cu"
MAX_LEVELS = 8  # corr_cuda.h: HMORE_CORR_MAX_LEVELS
QX, TY, OTF_WARPS, EW = 32, 8, 4, 256  # corr_cuda.cu: kQX, kTY, kOtfWarps, kEW
OTF_SMEM_LIMIT = 48 * 1024
_T = {torch.float32: "float", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}
_LAYOUT = {"raft": 0, "yx": 1}


# The level pointers inside these structs are the tensors' data_ptr() (a struct cannot hold a DLPack view);
# the tensors stay referenced by the caller until the launch is enqueued.
class Levels(ctypes.Structure):
    """corr_cuda.cu's ``struct Levels`` (by value): level pointers, gradient pointers, heights, widths."""
    _fields_ = [("p", ctypes.c_void_p * MAX_LEVELS), ("g", ctypes.c_void_p * MAX_LEVELS),
                ("h", ctypes.c_int * MAX_LEVELS), ("w", ctypes.c_int * MAX_LEVELS)]


class OtfLevels(ctypes.Structure):
    """corr_cuda.cu's ``struct OtfLevels``: offsets into the pooled-feature buffer, first target index, sizes."""
    _fields_ = [("off", ctypes.c_int64 * MAX_LEVELS), ("tstart", ctypes.c_int64 * MAX_LEVELS),
                ("h", ctypes.c_int * MAX_LEVELS), ("w", ctypes.c_int * MAX_LEVELS)]


_STRUCTS.update(Levels=Levels, OtfLevels=OtfLevels)
# For the NVRTC test: the C layouts must match these ctypes ones (size, alignment, each field's size, in order).
STRUCT_ASSERTS = "".join(
    f"\nstatic_assert(sizeof({n}) == {ctypes.sizeof(s)} && alignof({n}) == {ctypes.alignment(s)}, \"{n}: layout\");"
    + "".join(f"\nstatic_assert(sizeof({n}::{f}) == {getattr(s, f).size}, \"{n}.{f}\");" for f, _ in s._fields_)
    for n, s in (("Levels", Levels), ("OtfLevels", OtfLevels)))


def _gpu(t, name):
    cuda_tensor(t, name)
    if t.dtype not in _T:
        raise TypeError(f"{name}: the cupy backend supports float32, float16 and bfloat16, got {t.dtype} "
                        "(float64 runs on the reference and cpu backends)")


def _scale(scale, D):
    if scale is not None:
        if not math.isfinite(scale):
            raise ValueError(f"scale: expected a finite float or None, got {scale}")
        return float(scale)
    return 1.0 / math.sqrt(D) if D > 0 else 1.0


def _layout(layout):
    if layout not in _LAYOUT:
        raise ValueError(f"layout: expected 'raft' or 'yx', got {layout!r}")
    return _LAYOUT[layout]


def _radius(radius):
    if not 0 <= radius <= 1024:
        raise ValueError(f"radius: expected an int in [0, 1024], got {radius}")


def _levels(n):
    if not 1 <= n <= 62:
        raise ValueError(f"num_levels: expected an int in [1, 62], got {n}")


def _i32(v, what):
    if v > 2**31 - 1:
        raise ValueError(f"{what}: {v} does not fit the kernels' 32-bit sizes")
    return int(v)


# ---------------------------------------------------------------------------------------------- GEMMs
def _pool2(x):
    if x.shape[-1] < 2 or x.shape[-2] < 2:
        return x.new_zeros((*x.shape[:-2], x.shape[-2] // 2, x.shape[-1] // 2))
    return F.avg_pool2d(x, 2, 2)


def _unpool2(g, like):
    if g.numel() == 0 or like.numel() == 0:
        return g.new_zeros(like.shape)
    return torch.ops.aten.avg_pool2d_backward(g, like, [2, 2], [2, 2], [0, 0], False, True, None)


def pooled_levels(f2, L):
    """fmap2 pooled 0 .. L-1 times; levels >= 1 pooled in float32 and rounded once to the features' dtype."""
    out, cur = [f2], f2.float()
    for _ in range(1, L):
        cur = _pool2(cur)
        out.append(cur.to(f2.dtype))
    return out


def _volume_flat(f1, f2, s):
    B, D = f1.shape[:2]
    N1, N2 = f1.shape[2] * f1.shape[3], f2.shape[2] * f2.shape[3]
    if D == 0 or B == 0 or N1 == 0 or N2 == 0:
        return f1.new_zeros((B, N1, N2))
    a, b = f1.reshape(B, D, N1).transpose(1, 2), f2.reshape(B, D, N2)
    return torch.baddbmm(f1.new_empty((B, N1, N2)), a, b, beta=0, alpha=s)  # beta = 0: never read


def _levels_backward(G, f1, f2, s):
    B, D, H1, W1 = f1.shape
    N1, L = H1 * W1, len(G)
    f2l = pooled_levels(f2, L)
    a = f1.reshape(B, D, N1)
    g1 = f1.new_zeros((B, N1, D), dtype=torch.float32)  # float32 across levels
    g2 = f1.new_zeros(f2l[-1].shape, dtype=torch.float32)
    for l in range(L - 1, -1, -1):
        if l < L - 1:
            g2 = _unpool2(g2, f2l[l].float())
        if G[l] is None or G[l].numel() == 0 or D == 0:
            continue
        h, w = f2l[l].shape[2:]
        Gl = G[l].reshape(B, N1, h * w).to(f1.dtype)
        b = f2l[l].reshape(B, D, h * w)
        g1.add_(torch.bmm(Gl, b.transpose(1, 2)), alpha=s)
        g2.add_(torch.bmm(a, Gl).reshape(B, D, h, w), alpha=s)
    return (g1.transpose(1, 2).reshape(B, D, H1, W1).to(f1.dtype).contiguous(), g2.to(f2.dtype).contiguous())


def _pair(fmap1, fmap2, same_size=False):
    _api._check_pair(fmap1, fmap2, same_size)
    _gpu(fmap1, "fmap1")


def corr_volume(fmap1, fmap2, scale=None):
    _pair(fmap1, fmap2)
    s = _scale(scale, fmap1.shape[1])
    B, _, H1, W1 = fmap1.shape
    return _volume_flat(fmap1, fmap2, s).reshape(B, H1, W1, fmap2.shape[2], fmap2.shape[3])


def corr_volume_backward(grad, fmap1, fmap2, scale=None):
    _pair(fmap1, fmap2)
    cuda_tensor(grad, "grad", like=fmap1)
    B, N1, N2 = fmap1.shape[0], fmap1.shape[2] * fmap1.shape[3], fmap2.shape[2] * fmap2.shape[3]
    if grad.numel() != B * N1 * N2:
        raise ValueError(f"grad: expected shape [{B}, {fmap1.shape[2]}, {fmap1.shape[3]}, {fmap2.shape[2]}, "
                         f"{fmap2.shape[3]}], got {tuple(grad.shape)}")
    return _levels_backward([grad.reshape(B, N1, N2)], fmap1, fmap2, _scale(scale, fmap1.shape[1]))


def corr_pyramid(fmap1, fmap2, num_levels=4, scale=None):
    _pair(fmap1, fmap2)
    _levels(num_levels)
    s = _scale(scale, fmap1.shape[1])
    N = fmap1.shape[0] * fmap1.shape[2] * fmap1.shape[3]
    return [_volume_flat(fmap1, f, s).reshape(N, 1, f.shape[2], f.shape[3]) for f in pooled_levels(fmap2, num_levels)]


def corr_pyramid_backward(grads, fmap1, fmap2, scale=None):
    _pair(fmap1, fmap2)
    if len(grads) == 0:
        raise ValueError("grads: expected one gradient per level, got an empty list")
    return _levels_backward(list(grads), fmap1, fmap2, _scale(scale, fmap1.shape[1]))


# ---------------------------------------------------------------------------------------------- lookup
def _lookup_args(pyramid, coords, radius):
    _api._check_pyramid(pyramid)
    _gpu(pyramid[0], "pyramid[0]")
    N = pyramid[0].shape[0]
    if coords.dim() != 4 or coords.shape[1] != 2 or coords.shape[0] * coords.shape[2] * coords.shape[3] != N:
        raise ValueError(f"coords: expected [B, 2, H1, W1] with B*H1*W1 = {N} (pyramid[0].shape[0]), got {tuple(coords.shape)}")
    cuda_tensor(coords, "coords", like=pyramid[0])
    _radius(radius)


def _chunks(lv, glv):
    """(l0, Levels) per launch: at most MAX_LEVELS levels each (the struct's capacity)."""
    for l0 in range(0, len(lv), MAX_LEVELS):
        st = Levels()
        for k, l in enumerate(range(l0, min(len(lv), l0 + MAX_LEVELS))):
            st.p[k] = lv[l].data_ptr()
            st.g[k] = glv[l].data_ptr() if glv is not None else 0
            st.h[k] = _i32(lv[l].shape[2], "pyramid level height")
            st.w[k] = _i32(lv[l].shape[3], "pyramid level width")
        yield l0, min(MAX_LEVELS, len(lv) - l0), st


def corr_lookup(pyramid, coords, radius=4, layout="raft", deterministic=False):
    _lookup_args(pyramid, coords, radius)
    lay = _layout(layout)
    B, _, H1, W1 = coords.shape
    L, T = len(pyramid), (2 * radius + 1) ** 2
    out = coords.new_empty((B, L * T, H1, W1), dtype=torch.float32)
    if out.numel() == 0:
        return out
    c = coords.float().contiguous()
    lv = [p.contiguous() for p in pyramid]
    NQ = B * H1 * W1
    for l0, nl, st in _chunks(lv, None):
        launcher()(CORR, f"lookup_fwd_kernel<{_T[lv[0].dtype]}>", ((NQ + QX - 1) // QX,), (QX, TY),
                   [st, l0, nl, L, c, out, NQ, H1 * W1, radius, lay], device=c.device)
    return out


def corr_lookup_backward(grad, pyramid, coords, radius, layout, deterministic):
    _lookup_args(pyramid, coords, radius)
    cuda_tensor(grad, "grad", like=coords)
    lay = _layout(layout)
    B, _, H1, W1 = coords.shape
    L, T = len(pyramid), (2 * radius + 1) ** 2
    if tuple(grad.shape) != (B, L * T, H1, W1):
        raise ValueError(f"grad: expected shape [{B}, {L * T}, {H1}, {W1}], got {tuple(grad.shape)}")
    lv = [p.contiguous() for p in pyramid]
    glv = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in pyramid]
    gc = coords.new_zeros((B, 2, H1, W1), dtype=torch.float32)
    NQ = B * H1 * W1
    if NQ == 0:
        return glv, gc.to(coords.dtype)
    g, c = grad.float().contiguous(), coords.float().contiguous()
    for l0, nl, st in _chunks(lv, glv):
        launcher()(CORR, f"lookup_bwd_kernel<{_T[lv[0].dtype]}>", ((NQ + QX - 1) // QX,), (QX, TY),
                   [st, l0, nl, L, g, c, gc, int(l0 > 0), NQ, H1 * W1, radius, lay], device=c.device)
    return glv, gc.to(coords.dtype)


# ---------------------------------------------------------------------------------------------- otf
def otf_smem_per_warp(r, nl):
    return (2 * r + 2) ** 2 * (nl + 1) * 4


def _otf_args(fmap1, fmap2, coords, radius, num_levels):
    _pair(fmap1, fmap2)
    B, _, H1, W1 = fmap1.shape
    _api._check_coords(coords, B, H1, W1, fmap1.device, "fmap1's size")
    _radius(radius)
    _levels(num_levels)
    if not (radius <= 64 and num_levels <= MAX_LEVELS and otf_smem_per_warp(radius, num_levels) * OTF_WARPS <= OTF_SMEM_LIMIT):
        raise ValueError(
            f"radius, num_levels: the CUDA corr_lookup_otf keeps a (2r+2)^2 window per level in shared memory and "
            f"supports num_levels <= {MAX_LEVELS} with (2r+2)^2 * (num_levels + 1) * 16 bytes <= 48 KiB (e.g. radius "
            f"<= 10 at 4 levels), got radius={radius}, num_levels={num_levels}; use backend='triton' or mode='allpairs'")


def _otf_inputs(fmap1, fmap2, coords, L):
    """Channels-last f1 [N, D]; the pooled fmap2 levels [B, h_l, w_l, D] in one buffer, with the OtfLevels
    offsets (elements), first target indices and sizes; the number of targets over all levels."""
    B = fmap1.shape[0]
    f1 = fmap1.permute(0, 2, 3, 1).contiguous()
    st, parts, o, total = OtfLevels(), [], 0, 0
    for l, p in enumerate(pooled_levels(fmap2, L)):
        parts.append(p.permute(0, 2, 3, 1).contiguous().reshape(-1))
        st.off[l], st.tstart[l] = o, total
        st.h[l], st.w[l] = _i32(p.shape[2], "fmap2 height"), _i32(p.shape[3], "fmap2 width")
        o += parts[-1].numel()
        total += B * p.shape[2] * p.shape[3]
    return f1, torch.cat(parts), coords.float().contiguous(), st, total


def corr_lookup_otf(fmap1, fmap2, coords, radius=4, num_levels=4, scale=None, layout="raft", deterministic=False):
    _otf_args(fmap1, fmap2, coords, radius, num_levels)
    lay = _layout(layout)
    B, D, H1, W1 = fmap1.shape
    T = (2 * radius + 1) ** 2
    s = _scale(scale, D)
    out = fmap1.new_empty((B, num_levels * T, H1, W1), dtype=torch.float32)
    if out.numel() == 0:
        return out
    f1, f2, c, st, _ = _otf_inputs(fmap1, fmap2, coords, num_levels)
    NQ, S = B * H1 * W1, 2 * radius + 2
    launcher()(CORR, f"otf_fwd_kernel<{_T[fmap1.dtype]}>", ((NQ + OTF_WARPS - 1) // OTF_WARPS,), (32, OTF_WARPS),
               [st, num_levels, f1, f2, c, out, NQ, H1 * W1, D, radius, lay, s], S * S * 4 * OTF_WARPS,
               device=c.device)
    return out


def corr_lookup_otf_backward(grad, fmap1, fmap2, coords, radius, num_levels, scale, layout, deterministic):
    _otf_args(fmap1, fmap2, coords, radius, num_levels)
    cuda_tensor(grad, "grad", like=fmap1)
    lay = _layout(layout)
    B, D, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[2:]
    T, SS = (2 * radius + 1) ** 2, (2 * radius + 2) ** 2
    if tuple(grad.shape) != (B, num_levels * T, H1, W1):
        raise ValueError(f"grad: expected shape [{B}, {num_levels * T}, {H1}, {W1}], got {tuple(grad.shape)}")
    s = _scale(scale, D)
    N = B * H1 * W1
    gc = coords.new_zeros((B, 2, H1, W1), dtype=torch.float32)
    if N == 0 or D == 0 or H2 == 0 or W2 == 0:
        return torch.zeros_like(fmap1), torch.zeros_like(fmap2), gc.to(coords.dtype)
    f1, f2, c, st, total = _otf_inputs(fmap1, fmap2, coords, num_levels)
    g = grad.float().contiguous()
    gf1 = fmap1.new_empty((N, D), dtype=torch.float32)
    g2 = fmap1.new_zeros(total * D, dtype=torch.float32)
    gw = keys = None
    if deterministic:
        gw = fmap1.new_empty(N * num_levels * SS, dtype=torch.float32)
        keys = fmap1.new_empty(N * num_levels * SS, dtype=torch.int64)
    t = _T[fmap1.dtype]
    run = launcher()
    blocks = (N + OTF_WARPS - 1) // OTF_WARPS
    run(CORR, f"otf_bwd_kernel<{t}>", (blocks,), (32, OTF_WARPS),
        [st, num_levels, total, f1, f2, g, c, gc, gf1, g2, gw, keys, int(deterministic), N, H1 * W1, D, radius, lay, s],
        otf_smem_per_warp(radius, num_levels) * OTF_WARPS, device=c.device)
    if deterministic:
        # CSR by target: a stable sort keeps each target's entries in (query, level, window) order
        skeys, order = torch.sort(keys, stable=True)
        start = torch.searchsorted(skeys, torch.arange(total + 1, device=keys.device))
        run(CORR, f"otf_scatter_kernel<{t}>", ((total + OTF_WARPS - 1) // OTF_WARPS,), (32, OTF_WARPS),
            [order, start, gw, f1, g2, total, D, num_levels * SS, s], device=c.device)
    # adjoint of the pooling, coarsest level first, into level 0 (views of g2 at the level offsets)
    for l in range(num_levels - 1, 0, -1):
        hf, wf, hc, wc = st.h[l - 1], st.w[l - 1], st.h[l], st.w[l]
        tot = B * 2 * hc * 2 * wc * D
        if tot == 0:
            continue
        fine, coarse = g2[st.tstart[l - 1] * D:], g2[st.tstart[l] * D:]
        run(CORR, "unpool_add_kernel", (min((tot + EW - 1) // EW, 1048576),), (EW,),
            [fine, coarse, B, hf, wf, hc, wc, D], device=c.device)
    gfm1 = gf1.view(B, H1, W1, D).permute(0, 3, 1, 2).to(fmap1.dtype).contiguous()
    gfm2 = g2[: B * H2 * W2 * D].view(B, H2, W2, D).permute(0, 3, 1, 2).to(fmap2.dtype).contiguous()
    return gfm1, gfm2, gc.to(coords.dtype)


# ---------------------------------------------------------------------------------------------- local_corr
def _local_args(fmap1, fmap2, d, stride, dilation):
    _pair(fmap1, fmap2, same_size=True)
    if not 0 <= d <= 1024:
        raise ValueError(f"max_displacement: expected an int in [0, 1024], got {d}")
    if stride < 1 or dilation < 1:
        raise ValueError(f"stride, dilation: expected ints >= 1, got {stride}, {dilation}")


def local_corr(fmap1, fmap2, max_displacement, stride=1, dilation=1, scale=None):
    _local_args(fmap1, fmap2, max_displacement, stride, dilation)
    B, D, H, W = fmap1.shape
    K = (2 * max_displacement + 1) ** 2
    Ho, Wo = (H + stride - 1) // stride, (W + stride - 1) // stride
    out = fmap1.new_empty((B, K, Ho, Wo))
    if out.numel() == 0:
        return out
    f1, f2 = fmap1.contiguous(), fmap2.contiguous()
    launcher()(CORR, f"local_fwd_kernel<{_T[f1.dtype]}>", ((Ho * Wo + EW - 1) // EW, min(K, 65535), min(B, 65535)),
               (EW,), [f1, f2, out, B, D, H, W, Ho, Wo, max_displacement, _i32(stride, "stride"),
                       _i32(dilation, "dilation"), _scale(scale, D)], device=f1.device)
    return out


def local_corr_backward(grad, fmap1, fmap2, max_displacement, stride=1, dilation=1, scale=None):
    _local_args(fmap1, fmap2, max_displacement, stride, dilation)
    cuda_tensor(grad, "grad", like=fmap1)
    B, D, H, W = fmap1.shape
    K = (2 * max_displacement + 1) ** 2
    Ho, Wo = (H + stride - 1) // stride, (W + stride - 1) // stride
    if tuple(grad.shape) != (B, K, Ho, Wo):
        raise ValueError(f"grad: expected shape [{B}, {K}, {Ho}, {Wo}], got {tuple(grad.shape)}")
    g1 = torch.empty_like(fmap1, memory_format=torch.contiguous_format)
    g2 = torch.empty_like(fmap2, memory_format=torch.contiguous_format)
    if g1.numel() == 0:
        return g1, g2
    g, f1, f2 = grad.float().contiguous(), fmap1.contiguous(), fmap2.contiguous()
    t, s = _T[f1.dtype], _scale(scale, D)
    grid = ((H * W + EW - 1) // EW, min(B * D, 65535))
    tail = [B, D, H, W, Ho, Wo, max_displacement, _i32(stride, "stride"), _i32(dilation, "dilation"), s]
    launcher()(CORR, f"local_bwd_kernel<0, {t}>", grid, (EW,), [g, f2, g1, *tail], device=f1.device)
    launcher()(CORR, f"local_bwd_kernel<1, {t}>", grid, (EW,), [g, f1, g2, *tail], device=f1.device)
    return g1, g2


OPS = {
    "corr_volume": corr_volume, "_corr_volume_backward": corr_volume_backward,
    "corr_pyramid": corr_pyramid, "_corr_pyramid_backward": corr_pyramid_backward,
    "corr_lookup": corr_lookup, "_corr_lookup_backward": corr_lookup_backward,
    "corr_lookup_otf": corr_lookup_otf, "_corr_lookup_otf_backward": corr_lookup_otf_backward,
    "local_corr": local_corr, "_local_corr_backward": local_corr_backward,
}


from .. import _meta_corr  # noqa: E402

define_family(OPS, _meta_corr.register)
