"""Fake kernels and autograd of the corr family, for namespace ``ns`` (hmore or hmore_triton).

Called once ``_C`` has loaded (ns="hmore"), and by hmore_kernels/triton/corr.py (ns="hmore_triton",
fake=INTERPRET: triton_op registers its own body as the fake kernel on a GPU).
Each backward is its own op ``_<op>_backward`` (first order only).
"""
from __future__ import annotations

import torch


def _lookup_dtype(t: torch.Tensor) -> torch.dtype:
    # docs/ops.md §5: float32 output for float16/bfloat16/float32, float64 for float64
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


def _trim(ctx, grads):
    # Ops with a Tensor[] argument or result go through torch.library's tensor-list autograd wrapper,
    # which wants exactly one entry per argument the dispatcher passed -- and the dispatcher drops
    # trailing arguments equal to their defaults. ctx.needs_input_grad has that structure.
    return tuple(grads[: len(ctx.needs_input_grad)])


def register(ns: str, fake: bool = True, lib=None) -> None:
    ops = getattr(torch.ops, ns)
    if fake:
        reg = lambda name: torch.library.register_fake(f"{ns}::{name}", lib=lib)  # noqa: E731

        @reg("corr_volume")
        def _(fmap1, fmap2, scale=None):
            B, _, H1, W1 = fmap1.shape
            H2, W2 = fmap2.shape[-2:]
            return fmap1.new_empty(B, H1, W1, H2, W2)

        @reg("_corr_volume_backward")
        def _(grad, fmap1, fmap2, scale):
            return _like(fmap1), _like(fmap2)

        @reg("corr_pyramid")
        def _(fmap1, fmap2, num_levels=4, scale=None):
            B, _, H1, W1 = fmap1.shape
            H2, W2 = fmap2.shape[-2:]
            return [fmap1.new_empty(B * H1 * W1, 1, H2 >> l, W2 >> l) for l in range(num_levels)]

        @reg("_corr_pyramid_backward")
        def _(grads, fmap1, fmap2, scale):
            return _like(fmap1), _like(fmap2)

        @reg("corr_lookup")
        def _(pyramid, coords, radius=4, layout="raft", deterministic=False):
            B, _, H1, W1 = coords.shape
            T = (2 * radius + 1) ** 2
            return coords.new_empty(B, len(pyramid) * T, H1, W1, dtype=_lookup_dtype(pyramid[0]))

        @reg("_corr_lookup_backward")
        def _(grad, pyramid, coords, radius, layout, deterministic):
            return [_like(p) for p in pyramid], _like(coords)

        @reg("corr_lookup_otf")
        def _(fmap1, fmap2, coords, radius=4, num_levels=4, scale=None, layout="raft", deterministic=False):
            B, _, H1, W1 = coords.shape
            T = (2 * radius + 1) ** 2
            return coords.new_empty(B, num_levels * T, H1, W1, dtype=_lookup_dtype(fmap1))

        @reg("_corr_lookup_otf_backward")
        def _(grad, fmap1, fmap2, coords, radius, num_levels, scale, layout, deterministic):
            return _like(fmap1), _like(fmap2), _like(coords)

        @reg("local_corr")
        def _(fmap1, fmap2, max_displacement, stride=1, dilation=1, scale=None):
            B, _, H, W = fmap1.shape
            n = (2 * max_displacement + 1) ** 2
            return fmap1.new_empty(B, n, (H + stride - 1) // stride, (W + stride - 1) // stride)

        @reg("_local_corr_backward")
        def _(grad, fmap1, fmap2, max_displacement, stride, dilation, scale):
            return _like(fmap1), _like(fmap2)

    # ------------------------------------------------------------------ autograd
    def vol_setup(ctx, inputs, output):
        fmap1, fmap2, ctx.scale = inputs
        ctx.save_for_backward(fmap1, fmap2)

    def vol_bwd(ctx, grad):
        f1, f2 = ctx.saved_tensors
        g1, g2 = ops._corr_volume_backward(grad, f1, f2, ctx.scale)
        return g1, g2, None

    torch.library.register_autograd(f"{ns}::corr_volume", vol_bwd, setup_context=vol_setup, lib=lib)

    def pyr_setup(ctx, inputs, output):
        fmap1, fmap2, ctx.num_levels, ctx.scale = inputs
        ctx.save_for_backward(fmap1, fmap2)

    def pyr_bwd(ctx, grads):
        f1, f2 = ctx.saved_tensors
        g1, g2 = ops._corr_pyramid_backward(list(grads), f1, f2, ctx.scale)
        return _trim(ctx, (g1, g2, None, None))

    torch.library.register_autograd(f"{ns}::corr_pyramid", pyr_bwd, setup_context=pyr_setup, lib=lib)

    def lk_setup(ctx, inputs, output):
        pyramid, coords, ctx.radius, ctx.layout, ctx.deterministic = inputs
        ctx.n_levels = len(pyramid)
        ctx.save_for_backward(coords, *pyramid)

    def lk_bwd(ctx, grad):
        coords, *pyramid = ctx.saved_tensors
        gp, gc = ops._corr_lookup_backward(grad, pyramid, coords, ctx.radius, ctx.layout, ctx.deterministic)
        return _trim(ctx, (list(gp), gc, None, None, None))

    torch.library.register_autograd(f"{ns}::corr_lookup", lk_bwd, setup_context=lk_setup, lib=lib)

    def otf_setup(ctx, inputs, output):
        fmap1, fmap2, coords, ctx.radius, ctx.num_levels, ctx.scale, ctx.layout, ctx.deterministic = inputs
        ctx.save_for_backward(fmap1, fmap2, coords)

    def otf_bwd(ctx, grad):
        f1, f2, c = ctx.saved_tensors
        g1, g2, gc = ops._corr_lookup_otf_backward(
            grad, f1, f2, c, ctx.radius, ctx.num_levels, ctx.scale, ctx.layout, ctx.deterministic
        )
        return g1, g2, gc, None, None, None, None, None

    torch.library.register_autograd(f"{ns}::corr_lookup_otf", otf_bwd, setup_context=otf_setup, lib=lib)

    def lc_setup(ctx, inputs, output):
        fmap1, fmap2, ctx.d, ctx.stride, ctx.dilation, ctx.scale = inputs
        ctx.save_for_backward(fmap1, fmap2)

    def lc_bwd(ctx, grad):
        f1, f2 = ctx.saved_tensors
        g1, g2 = ops._local_corr_backward(grad, f1, f2, ctx.d, ctx.stride, ctx.dilation, ctx.scale)
        return g1, g2, None, None, None, None

    torch.library.register_autograd(f"{ns}::local_corr", lc_bwd, setup_context=lc_setup, lib=lib)
