"""Autograd for the native ops: each backward is its own op (``_<op>_backward``), as in torchvision.

Registered once ``_C`` has loaded. ``register(ns)`` also serves the Triton namespace, whose backward
ops have the same schemas. The backward ops are first-order only (no double backward).
"""
from __future__ import annotations

import torch


def register(ns: str, lib=None) -> None:
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
