"""Correlation (docs/ops.md §1): corr_volume, corr_pyramid, corr_lookup, corr_lookup_otf, local_corr and
the RAFT drop-in :class:`CorrBlock`.

Feature maps are ``[B, D, H, W]``; coordinates ``[B, 2, H1, W1]`` are (x, y) in pixels of level 0
(pixel (i, j) has x = j, y = i). ``scale=None`` means ``1/sqrt(D)``. Every function takes ``backend=``
("auto", "reference", "cpu", "cuda", "triton"); see :func:`hmore_kernels.available_backends`. Inputs
may be non-contiguous or channels-last. The tap order, level coordinates and sampling rule are stated
once in ``csrc/corr/corr_kernels.cuh`` and :mod:`hmore_kernels.reference.corr`.
"""
from __future__ import annotations

import math
import os

import torch

from . import _validate as _v
from ._backends import ops as _ops
from ._backends import pick as _pick
from ._validate import check_int as _check_int
from ._validate import deterministic as _deterministic
from ._validate import tensor as _tensor
from .reference import corr as _ref

__all__ = ["CorrBlock", "corr_lookup", "corr_lookup_otf", "corr_pyramid", "corr_volume", "local_corr"]

LAYOUTS = ("raft", "yx")


# ---------------------------------------------------------------------------------------------- checks
def _check_fmap(x, name):
    _tensor(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D tensor [B, D, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")


def _check_pair(fmap1, fmap2, same_size=False):
    _check_fmap(fmap1, "fmap1")
    _check_fmap(fmap2, "fmap2")
    if fmap2.device != fmap1.device:
        raise ValueError(f"fmap2: expected a tensor on {fmap1.device} like fmap1, got {fmap2.device}")
    if fmap2.dtype != fmap1.dtype:
        raise TypeError(f"fmap2: expected dtype {fmap1.dtype} like fmap1, got {fmap2.dtype}")
    if fmap2.shape[0] != fmap1.shape[0]:
        raise ValueError(f"fmap2: expected batch size {fmap1.shape[0]} like fmap1, got shape {tuple(fmap2.shape)}")
    if fmap2.shape[1] != fmap1.shape[1]:
        raise ValueError(f"fmap2: expected D = {fmap1.shape[1]} channels like fmap1, got shape {tuple(fmap2.shape)}")
    if same_size and fmap2.shape[-2:] != fmap1.shape[-2:]:
        raise ValueError(
            f"fmap2: expected spatial size {tuple(fmap1.shape[-2:])} like fmap1, got shape {tuple(fmap2.shape)}"
        )


def _check_coords(coords, B, H1, W1, device, what):
    _tensor(coords, "coords")
    if not coords.is_floating_point():
        raise TypeError(f"coords: expected a floating-point tensor [B, 2, H1, W1], got {coords.dtype}")
    if tuple(coords.shape) != (B, 2, H1, W1):
        raise ValueError(f"coords: expected shape [{B}, 2, {H1}, {W1}] ({what}), got {tuple(coords.shape)}")
    if coords.device != device:
        raise ValueError(f"coords: expected a tensor on {device}, got {coords.device}")


def _check_scale(scale):
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise TypeError(f"scale: expected a finite float or None, got {scale!r}")
    # The GEMMs fold the scale into alpha (cuBLAS/BLAS): past float32's range it cannot be converted
    # (float32 features) or turns overflowing sums into NaN instead of inf; no feature scale needs more.
    if abs(scale) > _MAX_SCALE:
        raise ValueError(f"scale: expected |scale| <= 2**64, got {scale!r}")
    return float(scale)


_MAX_SCALE = 2.0**64


def _check_taps(radius, num_levels):
    """radius in [0, 1024], and L * (2r+1)^2 output channels indexable in 32 bits."""
    radius = _check_int(radius, "radius", 0)
    if num_levels * (2 * radius + 1) ** 2 > _v.INT32_MAX:
        raise ValueError(f"radius: expected num_levels * (2 * radius + 1)^2 <= {_v.INT32_MAX} output channels, "
                         f"got radius={radius} with {num_levels} levels")
    return radius


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of 'raft', 'yx', got {layout!r}")


def _check_pyramid(pyramid):
    if not isinstance(pyramid, (list, tuple)) or len(pyramid) == 0:
        got = f"an empty {type(pyramid).__name__}" if isinstance(pyramid, (list, tuple)) else type(pyramid).__name__
        raise TypeError(f"pyramid: expected a non-empty list of tensors [N, 1, H2>>l, W2>>l], got {got}")
    p0 = pyramid[0]
    for l, p in enumerate(pyramid):
        _tensor(p, f"pyramid[{l}]")
        if p.dim() != 4 or p.shape[1] != 1:
            raise ValueError(f"pyramid[{l}]: expected a 4-D tensor [N, 1, h, w], got shape {tuple(p.shape)}")
        if not p.is_floating_point():
            raise TypeError(f"pyramid[{l}]: expected a floating-point tensor, got {p.dtype}")
        if p.dtype != p0.dtype:
            raise TypeError(f"pyramid[{l}]: expected dtype {p0.dtype} like pyramid[0], got {p.dtype}")
        if p.device != p0.device:
            raise ValueError(f"pyramid[{l}]: expected a tensor on {p0.device} like pyramid[0], got {p.device}")
        want = (p0.shape[0], 1, p0.shape[2] >> l, p0.shape[3] >> l)
        if tuple(p.shape) != want:
            raise ValueError(
                f"pyramid[{l}]: expected shape {list(want)} (level 0 pooled {l} times, floor), got {tuple(p.shape)}"
            )


# ---------------------------------------------------------------------------------------------- ops
def corr_volume(fmap1: torch.Tensor, fmap2: torch.Tensor, scale: float | None = None, *, backend: str = "auto"):
    """All-pairs correlation volume.

    Args:
        fmap1: ``[B, D, H1, W1]`` float; fmap2: ``[B, D, H2, W2]``, same dtype and device.
        scale: multiplies every dot product; None (default) = ``1/sqrt(D)`` (RAFT's).
    Returns:
        ``[B, H1, W1, H2, W2]`` in the features' dtype, ``<fmap1(p), fmap2(q)> * scale``.
        Differentiable in both feature maps.
    """
    _check_pair(fmap1, fmap2)
    scale = _check_scale(scale)
    b = _pick("corr", "corr_volume", backend, fmap1.device, fmap1.dtype)
    if b == "reference":
        return _ref.corr_volume(fmap1, fmap2, scale)
    return _ops(b).corr_volume(fmap1, fmap2, scale)


def corr_pyramid(
    fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, scale: float | None = None, *, backend: str = "auto"
) -> list[torch.Tensor]:
    """RAFT's correlation pyramid.

    Returns:
        ``num_levels`` tensors ``[B*H1*W1, 1, H2>>l, W2>>l]`` in the features' dtype: level 0 is the
        volume, level l is ``avg_pool2d(level l-1, 2, stride=2)`` (floor on odd sizes; a level whose
        side reaches 0 is an empty tensor, where RAFT's avg_pool2d would raise). Differentiable in both
        feature maps.
    """
    _check_pair(fmap1, fmap2)
    num_levels = _check_int(num_levels, "num_levels", 1)
    scale = _check_scale(scale)
    b = _pick("corr", "corr_pyramid", backend, fmap1.device, fmap1.dtype)
    if b == "reference":
        return _ref.corr_pyramid(fmap1, fmap2, num_levels, scale)
    return list(_ops(b).corr_pyramid(fmap1, fmap2, num_levels, scale))


def corr_lookup(
    pyramid,
    coords: torch.Tensor,
    radius: int = 4,
    layout: str = "raft",
    *,
    deterministic: bool | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """RAFT's ``CorrBlock.__call__``: sample a ``(2r+1)^2`` window of every level around ``coords``.

    Args:
        pyramid: list of ``[B*H1*W1, 1, H2>>l, W2>>l]`` (from :func:`corr_pyramid`).
        coords: ``[B, 2, H1, W1]`` float, (x, y) pixels of level 0; level l's window centre is
            ``coords / 2**l``.
        radius: window radius r >= 0 (default 4).
        layout: "raft" (default; tap ``(dx+r)*(2r+1) + (dy+r)``, dx slowest, as RAFT) or "yx" (dy slowest).
        deterministic: no float atomics in the backward (default: follow
            ``torch.are_deterministic_algorithms_enabled()``). The CPU backward is always deterministic.
    Returns:
        ``[B, L*(2r+1)^2, H1, W1]``, float32 (float64 for a float64 pyramid). Bilinear sampling with
        align_corners=True pixel coordinates and zeros outside: RAFT's numbers to float rounding
        wherever RAFT's are finite, and finite on levels 1 pixel wide (where RAFT gives NaN); taps on a
        level of width or height 0 read 0. Differentiable in the pyramid and in ``coords``.
    """
    _check_pyramid(pyramid)
    B_HW = pyramid[0].shape[0]
    _tensor(coords, "coords")
    if coords.dim() != 4 or coords.shape[1] != 2 or coords.shape[0] * coords.shape[2] * coords.shape[3] != B_HW:
        raise ValueError(
            f"coords: expected shape [B, 2, H1, W1] with B*H1*W1 = {B_HW} (pyramid[0].shape[0]), got {tuple(coords.shape)}"
        )
    _check_coords(coords, *coords.shape[:1], *coords.shape[2:], pyramid[0].device, "like the pyramid")
    if len(pyramid) > _v.INT_LIMITS["num_levels"][0]:
        raise ValueError(f"pyramid: expected at most {_v.INT_LIMITS['num_levels'][0]} levels, got {len(pyramid)}")
    radius = _check_taps(radius, len(pyramid))
    _check_layout(layout)
    det = _deterministic(deterministic)
    b = _pick("corr", "corr_lookup", backend, coords.device, pyramid[0].dtype if len(pyramid) else None)
    if b == "reference":
        return _ref.corr_lookup(list(pyramid), coords, radius, layout)
    return _ops(b).corr_lookup(list(pyramid), coords, radius, layout, det)


def corr_lookup_otf(
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    coords: torch.Tensor,
    radius: int = 4,
    num_levels: int = 4,
    scale: float | None = None,
    layout: str = "raft",
    *,
    deterministic: bool | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``corr_lookup(corr_pyramid(fmap1, fmap2, num_levels, scale), coords, radius, layout)`` without
    ever storing the volume (memory O(H*W*D), not O((H*W)^2)).

    By linearity, pooling the volume equals correlating with ``fmap2`` pooled the same way, and a
    bilinear tap equals the bilinear combination of dot products at the 4 integer corners.

    Args:
        fmap1: ``[B, D, H1, W1]``; fmap2: ``[B, D, H2, W2]``; coords: ``[B, 2, H1, W1]``.
        radius, num_levels, scale, layout, deterministic: as in :func:`corr_lookup` / :func:`corr_pyramid`.
    Returns:
        ``[B, L*(2r+1)^2, H1, W1]``, float32 (float64 for float64 features). Differentiable in fmap1,
        fmap2 and coords; the backward never materialises a volume-sized gradient.
    """
    _check_pair(fmap1, fmap2)
    B, _, H1, W1 = fmap1.shape
    _check_coords(coords, B, H1, W1, fmap1.device, "like fmap1")
    num_levels = _check_int(num_levels, "num_levels", 1)
    radius = _check_taps(radius, num_levels)
    scale = _check_scale(scale)
    _check_layout(layout)
    det = _deterministic(deterministic)
    b = _pick("corr", "corr_lookup_otf", backend, fmap1.device, fmap1.dtype)
    if b == "reference":
        return _ref.corr_lookup_otf(fmap1, fmap2, coords, radius, num_levels, scale, layout)
    return _ops(b).corr_lookup_otf(fmap1, fmap2, coords, radius, num_levels, scale, layout, det)


def local_corr(
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    max_displacement: int,
    stride: int = 1,
    dilation: int = 1,
    scale: float | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """FlowNet/PWC-Net integer-window correlation (replaces spatial-correlation-sampler).

    Args:
        fmap1, fmap2: ``[B, D, H, W]``, same shape, dtype and device.
        max_displacement: d >= 0; the window is ``(2d+1)^2`` taps at ``(dx*dilation, dy*dilation)``.
        stride: output pixel (i, j) is fmap1 at ``(i*stride, j*stride)`` (>= 1, default 1).
        dilation: spacing of the taps (>= 1, default 1).
        scale: None (default) = ``1/sqrt(D)``; 1.0 reproduces spatial-correlation-sampler, ``1/D``
            FlowNet's correlation layer.
    Returns:
        ``[B, (2d+1)^2, ceil(H/stride), ceil(W/stride)]`` in the features' dtype, channel
        ``(dy+d)*(2d+1) + (dx+d)`` (dy slowest), zeros where the tap leaves fmap2. Differentiable in both.
    """
    _check_pair(fmap1, fmap2, same_size=True)
    max_displacement = _check_int(max_displacement, "max_displacement", 0)
    stride = _check_int(stride, "stride", 1)
    dilation = _check_int(dilation, "dilation", 1)
    scale = _check_scale(scale)
    b = _pick("corr", "local_corr", backend, fmap1.device, fmap1.dtype)
    if b == "reference":
        return _ref.local_corr(fmap1, fmap2, max_displacement, stride, dilation, scale)
    return _ops(b).local_corr(fmap1, fmap2, max_displacement, stride, dilation, scale)


# ---------------------------------------------------------------------------------------------- CorrBlock
def _available_memory(device: torch.device) -> int:
    """Free memory in bytes: CUDA's free device memory, or the host's MemAvailable on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def pyramid_bytes(fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4) -> int:
    """Bytes the all-pairs pyramid of these feature maps takes (the volume and its pooled levels)."""
    B, _, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    cells = sum((H2 >> l) * (W2 >> l) for l in range(num_levels))
    return B * H1 * W1 * cells * fmap1.element_size()


class CorrBlock:
    """Drop-in for RAFT's ``CorrBlock``: ``CorrBlock(fmap1, fmap2, num_levels, radius)(coords)``.

    Args:
        fmap1, fmap2: ``[B, D, H, W]`` features (RAFT scales the dot products by ``1/sqrt(D)``; so does this).
        num_levels: pyramid levels (default 4); radius: window radius (default 4).
        mode: "allpairs" builds RAFT's pyramid once (fast lookups, O((H*W)^2) memory); "otf" stores only
            the feature maps and correlates on the fly at each call (O(H*W*D) memory); "auto" (default)
            picks "allpairs" when :func:`pyramid_bytes` <= ``memory_budget``, else "otf".
        backend: passed to the ops.
        memory_budget: bytes the pyramid may take in "auto" mode. Default: half of the free device
            memory on CUDA (``torch.cuda.mem_get_info``), a quarter of the host's available memory
            (``MemAvailable``) on CPU, read once in the constructor. Pass a number to make the choice
            reproducible.
        layout: tap order, "raft" (default) or "yx".
    ``__call__(coords)``: coords ``[B, 2, H, W]`` (x, y) pixels -> ``[B, L*(2r+1)^2, H, W]``, float32
    (float64 for float64 features), differentiable in the features and coords. ``self.mode`` is the
    resolved mode.
    """

    def __init__(
        self,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        num_levels: int = 4,
        radius: int = 4,
        mode: str = "auto",
        backend: str = "auto",
        *,
        memory_budget: int | None = None,
        layout: str = "raft",
    ):
        _check_pair(fmap1, fmap2)
        num_levels = _check_int(num_levels, "num_levels", 1)
        radius = _check_taps(radius, num_levels)
        _check_layout(layout)
        if mode not in ("auto", "allpairs", "otf"):
            raise ValueError(f"mode: expected one of 'auto', 'allpairs', 'otf', got {mode!r}")
        if memory_budget is not None and (isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)) or memory_budget < 0):
            raise ValueError(f"memory_budget: expected a number of bytes >= 0 or None, got {memory_budget!r}")
        self.num_levels = num_levels
        self.radius = radius
        self.layout = layout
        self.backend = backend
        if mode == "auto":
            if memory_budget is None:
                avail = _available_memory(fmap1.device)
                memory_budget = avail // 2 if fmap1.device.type == "cuda" else avail // 4
            mode = "allpairs" if pyramid_bytes(fmap1, fmap2, num_levels) <= memory_budget else "otf"
        self.mode = mode
        if mode == "allpairs":
            self.corr_pyramid = corr_pyramid(fmap1, fmap2, num_levels, backend=backend)
            self.fmap1 = self.fmap2 = None
        else:
            self.corr_pyramid = None
            self.fmap1, self.fmap2 = fmap1, fmap2

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        if self.mode == "allpairs":
            return corr_lookup(self.corr_pyramid, coords, self.radius, self.layout, backend=self.backend)
        return corr_lookup_otf(
            self.fmap1, self.fmap2, coords, self.radius, self.num_levels, None, self.layout, backend=self.backend
        )
