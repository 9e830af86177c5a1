"""Fake kernels and autograd of the edge family, for namespace ``ns`` (hmore, hmore_triton or hmore_cupy).

Fake (meta) kernels: shapes and dtypes only, for torch.compile / export / opcheck. Autograd: each backward
is its own op (``_<op>_backward``, first order only), as in torchvision. Called once ``_C`` has loaded
(ns="hmore", the schemas live in C++), by hmore_kernels/triton/edges.py (ns="hmore_triton",
fake=INTERPRET: triton_op registers its own body as the fake kernel on a GPU) and by
hmore_kernels/cupy/edges.py (ns="hmore_cupy"); the namespaces share the schemas.
"""
from __future__ import annotations

import torch


def register(ns: str, fake: bool = True, lib=None) -> None:
    if fake:
        _register_fake(ns, lib)
    _register_autograd(ns, lib)


def _empty(x, *shape, dtype=None):
    return x.new_empty(shape, dtype=dtype if dtype is not None else x.dtype)


def _register_fake(ns: str, lib=None) -> None:
    reg = lambda name: torch.library.register_fake(f"{ns}::{name}", lib=lib)  # noqa: E731

    @reg("sobel")
    def _(x, normalized=True, border="replicate"):
        B, C, H, W = x.shape
        return _empty(x, B, C, 2, H, W)

    @reg("_sobel_backward")
    def _(grad, normalized, border):
        B, C, _, H, W = grad.shape
        return _empty(grad, B, C, H, W)

    @reg("gradient_magnitude")
    def _(x, kernel="sobel", reduce="sum", eps=0.0):
        B, C, H, W = x.shape
        return _empty(x, B, 1 if reduce == "sum" else C, H, W)

    @reg("_gradient_magnitude_backward")
    def _(grad, x, mag, kernel, reduce, eps):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @reg("mask_boundary")
    def _(mask, mode="inner", width=1):
        return torch.empty_like(mask, memory_format=torch.contiguous_format)

    @reg("_mask_boundary_backward")
    def _(grad, mask, mode, width):
        return torch.empty_like(mask, memory_format=torch.contiguous_format)

    @reg("flow_edges")
    def _(flow, mask=None, band=3, normalize=True):
        B, _, H, W = flow.shape
        return _empty(flow, B, 1, H, W)

    @reg("_flow_edges_backward")
    def _(grad, flow, mask, band, normalize):
        return torch.empty_like(flow, memory_format=torch.contiguous_format)

    @reg("canny")
    def _(img, low, high, kernel_size=3, l2_gradient=False):
        B, _, H, W = img.shape
        return _empty(img, B, 1, H, W, dtype=torch.bool)

    @reg("distance_transform")
    def _(mask, return_indices=False):
        B, _, H, W = mask.shape
        d = _empty(mask, B, 1, H, W, dtype=torch.float32)
        i = _empty(mask, B, 2, H, W, dtype=torch.int64) if return_indices else _empty(mask, 0, dtype=torch.int64)
        return d, i


def _register_autograd(ns: str, lib=None) -> None:
    ops = getattr(torch.ops, ns)

    def sobel_setup(ctx, inputs, output):
        _, ctx.normalized, ctx.border = inputs

    def sobel_bwd(ctx, grad):
        return ops._sobel_backward(grad, ctx.normalized, ctx.border), None, None

    torch.library.register_autograd(f"{ns}::sobel", sobel_bwd, setup_context=sobel_setup, lib=lib)

    def gm_setup(ctx, inputs, output):
        x, ctx.kernel, ctx.reduce, ctx.eps = inputs
        ctx.save_for_backward(x, output)

    def gm_bwd(ctx, grad):
        x, mag = ctx.saved_tensors
        return ops._gradient_magnitude_backward(grad, x, mag, ctx.kernel, ctx.reduce, ctx.eps), None, None, None

    torch.library.register_autograd(f"{ns}::gradient_magnitude", gm_bwd, setup_context=gm_setup, lib=lib)

    def mb_setup(ctx, inputs, output):
        mask, ctx.mode, ctx.width = inputs
        ctx.save_for_backward(mask)

    def mb_bwd(ctx, grad):
        (mask,) = ctx.saved_tensors
        return ops._mask_boundary_backward(grad, mask, ctx.mode, ctx.width), None, None

    torch.library.register_autograd(f"{ns}::mask_boundary", mb_bwd, setup_context=mb_setup, lib=lib)

    def fe_setup(ctx, inputs, output):
        flow, mask, ctx.band, ctx.normalize = inputs
        ctx.has_mask = mask is not None
        ctx.save_for_backward(flow, mask if mask is not None else flow.new_empty(0))

    def fe_bwd(ctx, grad):
        flow, mask = ctx.saved_tensors
        g = ops._flow_edges_backward(grad, flow, mask if ctx.has_mask else None, ctx.band, ctx.normalize)
        return g, None, None, None

    torch.library.register_autograd(f"{ns}::flow_edges", fe_bwd, setup_context=fe_setup, lib=lib)
