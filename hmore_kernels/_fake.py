"""Fake (meta) kernels: shapes and dtypes only, for torch.compile / export / opcheck.

Registered once ``_C`` has loaded (the schemas live in C++). ``register(ns)`` also serves the Triton
namespace, whose ops share the schemas.
"""
from __future__ import annotations

import torch


def _empty(x, *shape, dtype=None):
    return x.new_empty(shape, dtype=dtype if dtype is not None else x.dtype)


def register(ns: str, lib=None) -> None:
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
