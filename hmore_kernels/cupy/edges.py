"""CuPy backend of the edge family: ``torch.ops.hmore_cupy.<op>`` for sobel, gradient_magnitude,
mask_boundary, flow_edges (each with its backward op), canny and distance_transform.

The kernels are those of ``csrc/edges/{edges,canny,distance}_cuda.cu``, JIT-compiled by NVRTC
(:mod:`._nvrtc`); this file does what the extension's ``*_cuda.cpp`` glue and the launchers of the ``.cu``
files do for nvcc: checks, contiguous inputs, allocation through PyTorch's caching allocator (outputs and
workspaces), the launch geometry and the kernel sequence, on the current stream. Fake kernels and autograd
are the native namespace's (:mod:`hmore_kernels._meta_edges`), registered for
``hmore_cupy`` by :mod:`._ops`.
"""
from __future__ import annotations

import math

import torch

from ..reference.edges import canny_thresholds
from ._launch import launcher
from ._ops import cuda_tensor, define_family

EDGES = "edges/edges_cuda.cu"
CANNY = "edges/canny_cuda.cu"
DISTANCE = "edges/distance_cuda.cu"

TX, TY, EW = 32, 8, 256  # edges_cuda.cu: stencil tile 32x8, elementwise blocks of 256
_T = {torch.float32: "float", torch.float64: "double", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}
_BORDER = {"replicate": 0, "reflect101": 1, "zeros": 2}
_MODE = {"inner": 0, "outer": 1, "thick": 2}
_DT_MAX_SIDE = 32768  # distance_kernels.cuh: HMORE_DT_MAX_SIDE


def _ta(dtype):
    """(storage, accumulator) C types of a float dtype, as edges_cuda.cu's dispatch_float pairs them."""
    if dtype not in _T:
        raise TypeError(f"expected float32, float64, float16 or bfloat16, got {dtype}")
    t = _T[dtype]
    return t, ("double" if dtype == torch.float64 else "float")


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def deriv_taps(kernel: str, normalized: bool):
    """(outer tap, centre tap, normaliser) of edges_kernels.cuh's deriv_taps."""
    so, sc, n = (3.0, 10.0, 32.0) if kernel == "scharr" else (1.0, 2.0, 8.0)
    return so, sc, (1.0 / n if normalized else 1.0)


def tile_grid(planes: int, H: int, W: int):
    """edges_cuda.cu's tile_grid: the tiles of a plane along x, planes along z (grid-stride past 65535)."""
    tiles = ((W + TX - 1) // TX) * ((H + TY - 1) // TY)
    return (tiles, 1, min(planes, 65535))


def ew_blocks(total: int) -> int:
    return min((total + EW - 1) // EW, 65536)  # grid-stride beyond


def _check_plane(t, name):
    if t.shape[-1] * t.shape[-2] >= 2**31:
        raise ValueError(f"{name}: H * W must be below 2^31, got shape {tuple(t.shape)}")


def _float(t, name):
    if t.dtype not in _T:
        raise TypeError(f"{name}: expected a floating-point tensor (float32, float64, float16, bfloat16), got {t.dtype}")


def _rank(t, n, name, layout):
    if t.dim() != n:
        raise ValueError(f"{name}: expected a {n}-D tensor {layout}, got shape {tuple(t.shape)}")


# ---------------------------------------------------------------------------------------------- sobel
def sobel(x: torch.Tensor, normalized: bool = True, border: str = "replicate") -> torch.Tensor:
    _rank(x, 4, "x", "[B, C, H, W]")
    _float(x, "x")
    cuda_tensor(x, "x")
    if border not in _BORDER:
        raise ValueError(f"border: expected 'replicate', 'reflect101' or 'zeros', got {border!r}")
    _check_plane(x, "x")
    xc = x.contiguous()
    B, C, H, W = xc.shape
    return _sobel_pass("sobel_forward_kernel<{t}, {a}>", xc, xc.new_empty((B, C, 2, H, W)), B * C, H, W, border,
                       normalized)


def _sobel_pass(template, inp, out, N, H, W, border, normalized):
    """One launch of the Sobel stencil (forward or adjoint) over N planes; template names the kernel."""
    if out.numel() == 0:
        return out
    t, a = _ta(inp.dtype)
    launcher()(EDGES, template.format(t=t, a=a), tile_grid(N, H, W), (TX, TY),
               [inp, out, N, H, W, _BORDER[border], *deriv_taps("sobel", normalized)], device=inp.device)
    return out


def sobel_backward(grad: torch.Tensor, normalized: bool, border: str) -> torch.Tensor:
    _rank(grad, 5, "grad", "[B, C, 2, H, W]")
    if grad.shape[2] != 2:
        raise ValueError(f"grad: expected shape [B, C, 2, H, W], got {tuple(grad.shape)}")
    _float(grad, "grad")
    cuda_tensor(grad, "grad")
    if border not in _BORDER:
        raise ValueError(f"border: expected 'replicate', 'reflect101' or 'zeros', got {border!r}")
    g = grad.contiguous()
    B, C, _, H, W = g.shape
    return _sobel_pass("sobel_backward_kernel<{t}, {t}, {a}>", g, g.new_empty((B, C, H, W)), B * C, H, W, border,
                       normalized)


# ---------------------------------------------------------------------------------------------- gradient_magnitude
def _reduce(reduce):
    if reduce not in ("sum", "none"):
        raise ValueError(f"reduce: expected 'sum' or 'none', got {reduce!r}")
    return reduce == "sum"


def _kernel(kernel):
    if kernel not in ("sobel", "scharr"):
        raise ValueError(f"kernel: expected 'sobel' or 'scharr', got {kernel!r}")
    return kernel


def gradient_magnitude(x: torch.Tensor, kernel: str = "sobel", reduce: str = "sum", eps: float = 0.0) -> torch.Tensor:
    _rank(x, 4, "x", "[B, C, H, W]")
    _float(x, "x")
    cuda_tensor(x, "x")
    _kernel(kernel)
    s = _reduce(reduce)
    if not eps >= 0:
        raise ValueError(f"eps: expected a float >= 0, got {eps}")
    _check_plane(x, "x")
    xc = x.contiguous()
    B, C, H, W = xc.shape
    out = xc.new_empty((B, 1 if s else C, H, W))
    if out.numel() == 0:
        return out
    if C == 0:
        return out.fill_(math.sqrt(eps))  # an empty channel sum is 0: sqrt(0 + eps)
    t, a = _ta(xc.dtype)
    P = B if s else B * C
    launcher()(EDGES, f"gradmag_forward_kernel<{t}, {a}>", tile_grid(P, H, W), (TX, TY),
               [xc, out, P, C, H, W, s, *deriv_taps(kernel, True), float(eps)], device=xc.device)
    return out


def gradient_magnitude_backward(grad, x, mag, kernel: str, reduce: str, eps: float) -> torch.Tensor:
    _rank(x, 4, "x", "[B, C, H, W]")
    _rank(grad, 4, "grad", "[B, C or 1, H, W]")
    _rank(mag, 4, "mag", "[B, C or 1, H, W]")
    for t_, n_ in ((x, "x"), (grad, "grad"), (mag, "mag")):
        _float(t_, n_)
        cuda_tensor(t_, n_, like=x)
    _kernel(kernel)
    s = _reduce(reduce)
    B, C, H, W = x.shape
    oshape = (B, 1 if s else C, H, W)
    for t_, n_ in ((grad, "grad"), (mag, "mag")):
        if tuple(t_.shape) != oshape:
            raise ValueError(f"{n_}: expected shape {list(oshape)}, got {tuple(t_.shape)}")
    xc = x.contiguous()
    if xc.numel() == 0:
        return xc.new_zeros((B, C, H, W))
    gc, mc = grad.to(xc.dtype).contiguous(), mag.to(xc.dtype).contiguous()
    out = xc.new_empty((B, C, H, W))
    t, a = _ta(xc.dtype)
    launcher()(EDGES, f"gradmag_backward_kernel<{t}, {a}>", tile_grid(B * C, H, W), (TX, TY),
               [gc, xc, mc, out, B, C, H, W, s, *deriv_taps(kernel, True)], device=xc.device)
    return out


# ---------------------------------------------------------------------------------------------- mask_boundary
def _boundary(m: torch.Tensor, g, mode: int, w: int) -> torch.Tensor:
    """edges_cuda.cu's boundary_impl on a contiguous [B, 1, H, W] mask; g = the incoming gradient for the
    backward (then the arg-extremum maps are built), None for the forward."""
    out = torch.empty_like(m)
    if out.numel() == 0:
        return out
    B, _, H, W = m.shape
    total = B * H * W
    if m.dtype == torch.bool:
        t, a = "uint8_t", "float"
    else:
        t, a = _ta(m.dtype)
    acc = torch.float64 if a == "double" else torch.float32
    erode, dilate = mode != _MODE["outer"], mode != _MODE["inner"]
    geo = ((ew_blocks(total),), (EW,))
    run = launcher()
    hmin = m.new_empty(total, dtype=acc)
    if g is None:
        hmax = m.new_empty(total, dtype=acc)
        if erode:
            run(EDGES, f"morph_rows_kernel<{t}, {a}>", *geo, [m, hmin, None, total, W, w, False], device=m.device)
        if dilate:
            run(EDGES, f"morph_rows_kernel<{t}, {a}>", *geo, [m, hmax, None, total, W, w, True], device=m.device)
        run(EDGES, f"boundary_forward_kernel<{t}, {a}>", *geo,
            [m, hmin if erode else None, hmax if dilate else None, out, total, H, W, w, mode], device=m.device)
        return out
    hcol = m.new_empty(total, dtype=torch.int32)
    aero = m.new_empty(total, dtype=torch.int32)
    adil = m.new_empty(total, dtype=torch.int32)
    for want_max, needed, arg in ((False, erode, aero), (True, dilate, adil)):
        if not needed:
            continue
        run(EDGES, f"morph_rows_kernel<{t}, {a}>", *geo, [m, hmin, hcol, total, W, w, want_max], device=m.device)
        run(EDGES, f"morph_args_kernel<{a}>", *geo, [hmin, hcol, arg, total, H, W, w, want_max], device=m.device)
    run(EDGES, f"boundary_backward_kernel<{t}, {a}>", *geo,
        [g, aero if erode else None, adil if dilate else None, out, total, H, W, w, mode], device=m.device)
    return out


def _mode(mode):
    if mode not in _MODE:
        raise ValueError(f"mode: expected 'inner', 'outer' or 'thick', got {mode!r}")
    return _MODE[mode]


def _width(width, H, W):
    if width < 1:
        raise ValueError(f"width: expected an int >= 1, got {width}")
    return int(min(width, max(H, W)))  # a wider window sees the same pixels


def _mask4(mask, name="mask"):
    _rank(mask, 4, name, "[B, 1, H, W]")
    if mask.shape[1] != 1:
        raise ValueError(f"{name}: expected a 4-D tensor [B, 1, H, W], got shape {tuple(mask.shape)}")


def mask_boundary(mask: torch.Tensor, mode: str = "inner", width: int = 1) -> torch.Tensor:
    _mask4(mask)
    if not (mask.dtype == torch.bool or mask.dtype in _T):
        raise TypeError(f"mask: expected a bool or floating-point tensor, got {mask.dtype}")
    cuda_tensor(mask, "mask")
    md = _mode(mode)
    w = _width(width, mask.shape[2], mask.shape[3])
    _check_plane(mask, "mask")
    return _boundary(mask.contiguous(), None, md, w)


def mask_boundary_backward(grad, mask, mode: str, width: int) -> torch.Tensor:
    _mask4(mask)
    _float(mask, "mask")
    _rank(grad, 4, "grad", "[B, 1, H, W]")
    if grad.shape != mask.shape:
        raise ValueError(f"grad: expected shape {tuple(mask.shape)} like mask, got {tuple(grad.shape)}")
    _float(grad, "grad")
    cuda_tensor(mask, "mask")
    cuda_tensor(grad, "grad", like=mask)
    md = _mode(mode)
    w = _width(width, mask.shape[2], mask.shape[3])
    mc = mask.contiguous()
    return _boundary(mc, grad.to(mc.dtype).contiguous(), md, w)


# ---------------------------------------------------------------------------------------------- flow_edges
def _flow(flow, mask, band):
    _rank(flow, 4, "flow", "[B, 2, H, W]")
    if flow.shape[1] != 2:
        raise ValueError(f"flow: expected 2 channels [B, 2, H, W], got shape {tuple(flow.shape)}")
    _float(flow, "flow")
    cuda_tensor(flow, "flow")
    _check_plane(flow, "flow")
    if band is not None and band < 1:
        raise ValueError(f"band: expected an int >= 1 or None, got {band}")
    if mask is not None:
        _mask4(mask)
        if mask.shape[0] != flow.shape[0] or mask.shape[2:] != flow.shape[2:]:
            raise ValueError(f"mask: expected shape [{flow.shape[0]}, 1, {flow.shape[2]}, {flow.shape[3]}] to match flow, "
                             f"got {tuple(mask.shape)}")
        cuda_tensor(mask, "mask", like=flow)


def _band(mask, band, fc):
    """mask_boundary(mask as the flow's dtype, "thick", band), or None."""
    if mask is None or band is None:
        return None
    return _boundary(mask.to(fc.dtype).contiguous(), None, _MODE["thick"], _width(band, fc.shape[2], fc.shape[3]))


def flow_edges(flow, mask=None, band=3, normalize: bool = True) -> torch.Tensor:
    _flow(flow, mask, band)
    fc = flow.contiguous()
    B, _, H, W = fc.shape
    out = fc.new_empty((B, 1, H, W))
    if out.numel() == 0:
        return out
    bw = _band(mask, band, fc)
    t, a = _ta(fc.dtype)
    mbuf = fc.new_zeros(B, dtype=_acc_dtype(fc.dtype))  # per-image max (atomicMax on the bits from 0)
    so_sc_inv = deriv_taps("sobel", True)
    run = launcher()
    run(EDGES, f"flow_mag_kernel<false, {t}, {a}>", tile_grid(B, H, W), (TX, TY),
        [fc, None, None, out, None, None, mbuf, None, B, H, W, *so_sc_inv], device=fc.device)
    if normalize or bw is not None:
        total = B * H * W
        run(EDGES, f"flow_scale_kernel<{t}, {a}>", (ew_blocks(total),), (EW,),
            [out, bw, mbuf, total, H * W, bool(normalize)], device=fc.device)
    return out


def flow_edges_backward(grad, flow, mask, band, normalize: bool) -> torch.Tensor:
    _flow(flow, mask, band)
    _rank(grad, 4, "grad", "[B, 1, H, W]")
    B, _, H, W = flow.shape
    if tuple(grad.shape) != (B, 1, H, W):
        raise ValueError(f"grad: expected shape [{B}, 1, {H}, {W}], got {tuple(grad.shape)}")
    _float(grad, "grad")
    cuda_tensor(grad, "grad", like=flow)
    fc = flow.contiguous()
    if fc.numel() == 0:
        return fc.new_zeros((B, 2, H, W))
    gc = grad.to(fc.dtype).contiguous()
    bw = _band(mask, band, fc)
    out = fc.new_empty((B, 2, H, W))
    t, a = _ta(fc.dtype)
    acc = _acc_dtype(fc.dtype)
    HW, total = H * W, B * H * W
    grid = tile_grid(B, H, W)
    nblk = grid[0]  # flow_mag_kernel's blocks per image: the partial dots' stride
    mbuf = fc.new_zeros(B, dtype=acc)
    dot = fc.new_empty(B, dtype=acc)
    cnt = fc.new_zeros(B, dtype=torch.int32)  # unsigned int counters (int32 storage, same bits)
    partial = fc.new_empty(B * nblk, dtype=torch.float64)
    mt = fc.new_empty(total, dtype=acc)
    G = fc.new_empty(4 * total, dtype=acc)
    so_sc_inv = deriv_taps("sobel", True)
    run = launcher()
    run(EDGES, f"flow_mag_kernel<true, {t}, {a}>", grid, (TX, TY),
        [fc, gc, bw, None, mt, G, mbuf, partial, B, H, W, *so_sc_inv], device=fc.device)
    if normalize:
        run(EDGES, f"flow_dot_kernel<{a}>", (B,), (TX, TY), [partial, dot, nblk], device=fc.device)
        run(EDGES, f"flow_count_kernel<{a}>", (ew_blocks(total),), (EW,), [mt, mbuf, cnt, total, HW], device=fc.device)
    run(EDGES, f"flow_grad_kernel<{t}, {a}>", (ew_blocks(total),), (EW,),
        [gc, bw, mt, mbuf, dot, cnt, G, total, HW, bool(normalize)], device=fc.device)
    run(EDGES, f"sobel_backward_kernel<{a}, {t}, {a}>", tile_grid(2 * B, H, W), (TX, TY),
        [G, out, 2 * B, H, W, _BORDER["replicate"], *so_sc_inv], device=fc.device)
    return out


# ---------------------------------------------------------------------------------------------- canny
_CANNY_IN = {torch.uint8: "unsigned char", **_T}
_KTW, _KTH = 32, 8  # canny_cuda.cu: kTW x kTH tiles


def canny(img, low: float, high: float, kernel_size: int = 3, l2_gradient: bool = False) -> torch.Tensor:
    _rank(img, 4, "img", "[B, 1 or 3, H, W]")
    if img.shape[1] not in (1, 3):
        raise ValueError(f"img: expected 1 or 3 channels, got shape {tuple(img.shape)}")
    if kernel_size != 3:
        raise ValueError(f"kernel_size: only 3 is supported, got {kernel_size}")
    if math.isnan(low) or math.isnan(high):
        raise ValueError(f"low, high: expected numbers, got {low}, {high}")
    if img.dtype not in _CANNY_IN:
        raise TypeError(f"img: expected uint8, float32, float64, float16 or bfloat16, got {img.dtype}")
    cuda_tensor(img, "img")
    B, C, H, W = img.shape
    out = img.new_empty((B, 1, H, W), dtype=torch.bool)
    n = out.numel()
    if n == 0:
        return out
    if n >= 2**31 - 1:
        raise ValueError(f"img: expected fewer than 2^31 pixels in the batch, got shape {tuple(img.shape)}")
    x = img.contiguous()
    parent = x.new_empty(n, dtype=torch.int32)
    root_strong = x.new_empty(n, dtype=torch.uint8)
    lo, hi = (float(v) for v in canny_thresholds(float(low), float(high), bool(l2_gradient)))
    if x.dtype == torch.uint8:
        expr = "nms_kernel<unsigned char, int, int>"
        lo, hi = (int(min(max(v, -1.0), 2147483647.0)) for v in (lo, hi))  # hmore_canny_int_threshold
    else:
        expr = f"nms_kernel<{_CANNY_IN[x.dtype]}, double, double>"
    run = launcher()
    tiles = ((W + _KTW - 1) // _KTW) * ((H + _KTH - 1) // _KTH)
    for b0 in range(0, B, 65535):  # gridDim.z <= 65535: batches in chunks
        nb = min(B - b0, 65535)
        run(CANNY, expr, (tiles, 1, nb), (_KTW, _KTH),
            [x, C, H, W, b0, bool(l2_gradient), lo, hi, parent, root_strong, out], device=x.device)
    blocks = (n + 255) // 256
    run(CANNY, "merge_kernel", (blocks,), (256,), [parent, H, W, n], device=x.device)
    run(CANNY, "flatten_kernel", (blocks,), (256,), [parent, out, root_strong, n], device=x.device)
    run(CANNY, "output_kernel", (blocks,), (256,), [parent, root_strong, out, n], device=x.device)
    return out


# ---------------------------------------------------------------------------------------------- distance_transform
_DT_IN = {torch.bool: "unsigned char", torch.uint8: "unsigned char", torch.int8: "unsigned char", **_T}


def distance_transform(mask, return_indices: bool = False):
    _mask4(mask)
    cuda_tensor(mask, "mask")
    B, _, H, W = mask.shape
    if H > _DT_MAX_SIDE or W > _DT_MAX_SIDE:
        raise ValueError(f"mask: expected H, W <= {_DT_MAX_SIDE} (squared distances are exact in int32 up to that), "
                         f"got shape {tuple(mask.shape)}")
    dist = mask.new_empty((B, 1, H, W), dtype=torch.float32)
    idx = mask.new_empty((B, 2, H, W) if return_indices else (0,), dtype=torch.int64)
    if dist.numel() == 0:
        return dist, idx
    m = mask if mask.dtype in _DT_IN else mask.ne(0)  # wider integers, complex: nonzero
    if m.dtype == torch.int8:
        m = m.view(torch.uint8)  # a nonzero int8 is a nonzero byte
    m = m.contiguous()
    n = dist.numel()
    near, env_v, env_f = (m.new_empty(n, dtype=torch.int32) for _ in range(3))
    run = launcher()
    gy = min(B, 65535)
    run(DISTANCE, f"column_kernel<{_DT_IN[mask.dtype if mask.dtype in _DT_IN else torch.bool]}>",
        ((W + 127) // 128, gy, (B + gy - 1) // gy), (128,), [m, H, W, B, near], device=m.device)
    rows = B * H
    run(DISTANCE, "row_kernel", ((rows + 127) // 128,), (128,),
        [near, rows, H, W, env_v, env_f, dist, idx if return_indices else None], device=m.device)
    return dist, idx


OPS = {
    "sobel": sobel, "_sobel_backward": sobel_backward,
    "gradient_magnitude": gradient_magnitude, "_gradient_magnitude_backward": gradient_magnitude_backward,
    "mask_boundary": mask_boundary, "_mask_boundary_backward": mask_boundary_backward,
    "flow_edges": flow_edges, "_flow_edges_backward": flow_edges_backward,
    "canny": canny, "distance_transform": distance_transform,
}


from .. import _meta_edges  # noqa: E402

define_family(OPS, _meta_edges.register)
