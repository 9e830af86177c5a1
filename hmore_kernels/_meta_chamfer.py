"""Fake kernels and autograd of the chamfer family, for namespace ``ns`` (hmore or hmore_triton).

Called once ``_C`` has loaded (ns="hmore"), and by hmore_kernels/triton/chamfer.py (ns="hmore_triton",
fake=INTERPRET: triton_op registers its own body as the fake kernel on a GPU).

Each backward is its own op (``_<op>_backward``), first order only. chamfer_distance saves the nearest
indices of its forward; the backward recomputes the per-point distances from them (O(N + M)).
"""
from __future__ import annotations

import torch


def _dist_dtype(x):
    # float32 distances for float16/bfloat16 points (squared pixel distances overflow float16)
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _map_dtype(*ts):
    dt = None
    for t in ts:
        d = torch.float32 if t.dtype == torch.bool else t.dtype
        dt = d if dt is None else torch.promote_types(dt, d)
    return dt


def _value(x, B, reduction, dtype):
    return x.new_empty((B,) if reduction == "none" else (), dtype=dtype)


def register(ns: str, fake: bool = True, lib=None) -> None:
    ops = getattr(torch.ops, ns)
    if fake:
        reg = lambda name: torch.library.register_fake(f"{ns}::{name}", lib=lib)  # noqa: E731

        @reg("nearest_neighbors")
        def _(x, y, x_lengths=None, y_lengths=None):
            B, N, _ = x.shape
            return x.new_empty((B, N), dtype=_dist_dtype(x)), x.new_empty((B, N), dtype=torch.int64)

        @reg("chamfer_distance")
        def _(x, y, x_lengths=None, y_lengths=None, x_weights=None, y_weights=None, squared=True,
              reduction="mean", bidirectional=True, deterministic=False):
            B, N, _ = x.shape
            M = y.shape[1] if bidirectional else 0
            # the value has the points' dtype on CPU (float32/float64) and float32 for half inputs
            vdt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
            return (
                _value(x, B, reduction, vdt),
                x.new_empty((B, N), dtype=torch.int64),
                x.new_empty((B, M), dtype=torch.int64),
            )

        @reg("_chamfer_distance_backward")
        def _(grad, x, y, idx_x, idx_y, x_lengths, y_lengths, x_weights, y_weights, squared, reduction,
              bidirectional, deterministic):
            gwx = torch.empty_like(x_weights, memory_format=torch.contiguous_format) if x_weights is not None else x.new_empty(0)
            gwy = torch.empty_like(y_weights, memory_format=torch.contiguous_format) if y_weights is not None else x.new_empty(0)
            return (
                torch.empty_like(x, memory_format=torch.contiguous_format),
                torch.empty_like(y, memory_format=torch.contiguous_format),
                gwx,
                gwy,
            )

        @reg("patch_centroids")
        def _(weights, patch_size, offsets=None):
            B, _, H, W = weights.shape
            Hp, Wp = -(-H // patch_size), -(-W // patch_size)
            dt = _map_dtype(weights)
            return weights.new_empty((B, Hp, Wp, 2), dtype=dt), weights.new_empty((B, Hp, Wp), dtype=dt)

        @reg("_patch_centroids_backward")
        def _(grad_centroids, grad_mass, weights, offsets, centroids, mass, patch_size):
            B, _, H, W = weights.shape
            gw = weights.new_empty((B, 1, H, W), dtype=_map_dtype(weights))
            go = offsets.new_empty((B, 2, H, W)) if offsets is not None else weights.new_empty(0, dtype=_map_dtype(weights))
            return gw, go

        @reg("patch_centroid_chamfer")
        def _(a, b, patch_sizes=(8, 16, 32), min_mass=1e-3, reduction="mean"):
            return _value(a, a.shape[0], reduction, _map_dtype(a, b))

        @reg("_patch_centroid_chamfer_backward")
        def _(grad, a, b, patch_sizes, min_mass, reduction):
            dt = _map_dtype(a, b)
            ga = a.new_empty(a.shape, dtype=dt if a.dtype == torch.bool else a.dtype)
            gb = b.new_empty(b.shape, dtype=dt if b.dtype == torch.bool else b.dtype)
            return ga, gb

        @reg("boundary_chamfer")
        def _(a, b, reduction="mean"):
            return _value(a, a.shape[0], reduction, torch.float32)

    # ---- autograd -------------------------------------------------------------------------------
    def cd_setup(ctx, inputs, output):
        x, y, xl, yl, xw, yw, ctx.squared, ctx.reduction, ctx.bidirectional, ctx.deterministic = inputs
        _, idx_x, idx_y = output
        ctx.has = (xl is not None, yl is not None, xw is not None, yw is not None)
        e = x.new_empty(0)
        ctx.save_for_backward(x, y, idx_x, idx_y, *(t if t is not None else e for t in (xl, yl, xw, yw)))

    def cd_bwd(ctx, grad, _gix, _giy):
        x, y, idx_x, idx_y, *opt = ctx.saved_tensors
        xl, yl, xw, yw = (t if h else None for t, h in zip(opt, ctx.has))
        gx, gy, gwx, gwy = ops._chamfer_distance_backward(
            grad, x, y, idx_x, idx_y, xl, yl, xw, yw, ctx.squared, ctx.reduction, ctx.bidirectional, ctx.deterministic
        )
        return (gx, gy, None, None, gwx if xw is not None else None, gwy if yw is not None else None,
                None, None, None, None)

    torch.library.register_autograd(f"{ns}::chamfer_distance", cd_bwd, setup_context=cd_setup, lib=lib)

    def pc_setup(ctx, inputs, output):
        weights, ctx.patch_size, offsets = inputs
        centroids, mass = output
        ctx.has_offsets = offsets is not None
        ctx.save_for_backward(weights, offsets if offsets is not None else weights.new_empty(0), centroids, mass)

    def pc_bwd(ctx, gc, gm):
        weights, offsets, centroids, mass = ctx.saved_tensors
        off = offsets if ctx.has_offsets else None
        if gc is None:
            gc = torch.zeros_like(centroids)
        if gm is None:
            gm = torch.zeros_like(mass)
        gw, go = ops._patch_centroids_backward(gc, gm, weights, off, centroids, mass, ctx.patch_size)
        return (gw if weights.dtype != torch.bool else None), None, (go if off is not None else None)

    torch.library.register_autograd(f"{ns}::patch_centroids", pc_bwd, setup_context=pc_setup, lib=lib)

    def pcc_setup(ctx, inputs, output):
        a, b, ctx.patch_sizes, ctx.min_mass, ctx.reduction = inputs
        ctx.save_for_backward(a, b)

    def pcc_bwd(ctx, grad):
        a, b = ctx.saved_tensors
        ga, gb = ops._patch_centroid_chamfer_backward(grad, a, b, ctx.patch_sizes, ctx.min_mass, ctx.reduction)
        return (ga if a.dtype != torch.bool else None), (gb if b.dtype != torch.bool else None), None, None, None

    torch.library.register_autograd(f"{ns}::patch_centroid_chamfer", pcc_bwd, setup_context=pcc_setup, lib=lib)
