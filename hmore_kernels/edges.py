"""Edges and boundaries (docs/ops.md §2): sobel, gradient_magnitude, mask_boundary, flow_edges, canny,
distance_transform.

Every function takes ``backend=`` ("auto", "reference", "cpu", "cuda", "triton"); see
:func:`hmore_kernels.available_backends`. Images are ``[B, C, H, W]``, masks ``[B, 1, H, W]``; pixel
(i, j) has x = j, y = i. Inputs may be non-contiguous or channels-last.
"""
from __future__ import annotations

import torch

from . import _validate as _v
from ._backends import ops as _ops
from ._backends import pick as _pick
from ._validate import check_bool as _check_bool
from ._validate import check_choice as _check_choice
from ._validate import check_int as _check_int
from ._validate import tensor as _tensor
from .reference import edges as _ref

_BORDERS = ("replicate", "reflect101", "zeros")


def _check_image(x, name, allow_int=False):
    _tensor(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D tensor [B, C, H, W], got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or (allow_int and x.dtype == torch.uint8)):
        kinds = "a floating-point or uint8" if allow_int else "a floating-point"
        raise TypeError(f"{name}: expected {kinds} tensor, got {x.dtype}")


def _check_mask(mask, name, like=None, allow_bool=True):
    _tensor(mask, name)
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"{name}: expected a 4-D tensor [B, 1, H, W], got shape {tuple(mask.shape)}")
    if not (mask.is_floating_point() or (allow_bool and mask.dtype == torch.bool)):
        raise TypeError(f"{name}: expected a bool or floating-point tensor, got {mask.dtype}")
    if like is not None:
        ref_name, ref = like
        if mask.shape[0] != ref.shape[0] or mask.shape[-2:] != ref.shape[-2:]:
            raise ValueError(
                f"{name}: expected shape [{ref.shape[0]}, 1, {ref.shape[2]}, {ref.shape[3]}] to match {ref_name}, "
                f"got {tuple(mask.shape)}"
            )
        _v.check_same_device(mask, name, ref, ref_name)


def sobel(x: torch.Tensor, normalized: bool = True, border: str = "replicate", *, backend: str = "auto") -> torch.Tensor:
    """3x3 Sobel derivatives of every channel.

    Args:
        x: ``[B, C, H, W]`` float (float16/bfloat16 on GPU backends).
        normalized: divide by 8, so a ramp of slope 1 gives 1 (default True).
        border: "replicate" (default), "reflect101" (OpenCV's default) or "zeros".
    Returns:
        ``[B, C, 2, H, W]``, same dtype: d/dx (toward increasing x, right), d/dy (down).
        Differentiable. Matches ``cv2.Sobel(ksize=3)`` (divided by 8 when normalized).
    """
    _check_image(x, "x")
    normalized = _check_bool(normalized, "normalized")
    _check_choice(border, "border", _BORDERS)
    b = _pick("edges", "sobel", backend, x.device, x.dtype)
    if b == "reference":
        return _ref.sobel(x, normalized, border)
    return _ops(b).sobel(x, normalized, border)


def gradient_magnitude(
    x: torch.Tensor, kernel: str = "sobel", reduce: str = "sum", eps: float = 0.0, *, backend: str = "auto"
) -> torch.Tensor:
    """Fused gradient magnitude ``sqrt(sum gx^2 + gy^2 + eps)``.

    Args:
        x: ``[B, C, H, W]`` float.
        kernel: "sobel" (/8, default) or "scharr" (/32); replicate border.
        reduce: "sum" sums the squares over channels (-> ``[B, 1, H, W]``); "none" keeps them
            (-> ``[B, C, H, W]``).
        eps: added under the square root (default 0.0); like kornia's ``sobel(eps=)``.
    Returns:
        Same dtype as ``x``. Differentiable; the gradient is 0, never NaN, where the magnitude is 0.
    """
    _check_image(x, "x")
    _check_choice(kernel, "kernel", ("sobel", "scharr"))
    _check_choice(reduce, "reduce", ("sum", "none"))
    eps = _v.check_float(eps, "eps", minimum=0.0)
    b = _pick("edges", "gradient_magnitude", backend, x.device, x.dtype)
    if b == "reference":
        return _ref.gradient_magnitude(x, kernel, reduce, eps)
    return _ops(b).gradient_magnitude(x, kernel, reduce, eps)


def mask_boundary(mask: torch.Tensor, mode: str = "inner", width: int = 1, *, backend: str = "auto") -> torch.Tensor:
    """Boundary of a mask by 3x3 square morphology (8-connectivity), replicate borders.

    Args:
        mask: ``[B, 1, H, W]`` bool, or float in [0, 1] (a soft mask).
        mode: "inner" = mask - erode(mask) (default), "outer" = dilate(mask) - mask,
            "thick" = dilate - erode; the same as scikit-image ``find_boundaries(mode=...)``.
        width: how many times the 3x3 element is applied (>= 1, default 1).
    Returns:
        ``[B, 1, H, W]``, the dtype of ``mask``. Soft masks use min/max-pool semantics and are
        differentiable (the gradient of each min/max goes to the first extremal pixel of its
        ``(2*width+1)^2`` window in row-major order).
    """
    _check_mask(mask, "mask")
    _check_choice(mode, "mode", ("inner", "outer", "thick"))
    width = _check_int(width, "width", 1)
    b = _pick("edges", "mask_boundary", backend, mask.device, mask.dtype)
    if b == "reference":
        return _ref.mask_boundary(mask, mode, width)
    return _ops(b).mask_boundary(mask, mode, width)


def flow_edges(
    flow: torch.Tensor, mask: torch.Tensor | None = None, band: int | None = 3, normalize: bool = True, *, backend: str = "auto"
) -> torch.Tensor:
    """Boundary-aware edge map of a flow field, in one fused pass (H-MoRe's boundary constraint).

    ``m = sqrt(gx_u^2 + gy_u^2 + gx_v^2 + gy_v^2)`` with normalised Sobel and replicate border;
    with ``normalize`` divided by ``max(m)`` of each image (a constant flow gives zeros, not NaN);
    with a ``mask``, multiplied by ``mask_boundary(mask, "thick", band)``.

    Args:
        flow: ``[B, 2, H, W]`` float.
        mask: optional ``[B, 1, H, W]`` bool or float subject mask; a training target: it has no gradient.
        band: half-width of the band around the mask boundary (>= 1, default 3); None = no band.
        normalize: per-image normalisation to [0, 1] (default True).
    Returns:
        ``[B, 1, H, W]``, dtype of ``flow``; differentiable in ``flow``.
    """
    _check_image(flow, "flow")
    if flow.shape[1] != 2:
        raise ValueError(f"flow: expected 2 channels [B, 2, H, W], got shape {tuple(flow.shape)}")
    if mask is not None:
        _check_mask(mask, "mask", like=("flow", flow))
        if mask.requires_grad:
            raise ValueError("mask: flow_edges has no gradient with respect to the mask (a training target); pass mask.detach()")
    band = _check_int(band, "band", 1, allow_none=True)
    normalize = _check_bool(normalize, "normalize")
    b = _pick("edges", "flow_edges", backend, flow.device, flow.dtype)
    if b == "reference":
        return _ref.flow_edges(flow, mask, band, normalize)
    return _ops(b).flow_edges(flow, mask, band, normalize)


def canny(
    img: torch.Tensor, low: float, high: float, kernel_size: int = 3, l2_gradient: bool = False, *, backend: str = "auto"
) -> torch.Tensor:
    """Canny edges with OpenCV's conventions (``cv2.Canny(img, low, high, 3, l2_gradient)``).

    Args:
        img: ``[B, 1, H, W]`` gray or ``[B, 3, H, W]`` RGB (BT.601 weights), uint8 or float, values 0..255.
        low, high: hysteresis thresholds in those units (OpenCV floors them; squared for L2; swapped if
            low > high).
        kernel_size: Sobel aperture; only 3 is supported.
        l2_gradient: L2 magnitude instead of |dx| + |dy|.
    Returns:
        bool ``[B, 1, H, W]``. Not differentiable. On GPU backends the hysteresis runs on the device
        with no host synchronisation.
    """
    _check_image(img, "img", allow_int=True)
    if img.shape[1] not in (1, 3):
        raise ValueError(f"img: expected 1 or 3 channels, got shape {tuple(img.shape)}")
    # A NaN or infinite threshold has no meaning (OpenCV floors them to ints): refused on every backend.
    low = _v.check_float(low, "low", what="a finite number")
    high = _v.check_float(high, "high", what="a finite number")
    # OpenCV floors the thresholds to int (and squares them for L2): past 2**31 they are not ints any
    # backend can hold (the reference raised OverflowError on 1e308).
    for name, v in (("low", low), ("high", high)):
        if abs(v) > 2**31:
            raise ValueError(f"{name}: expected a threshold with |{name}| <= 2**31, got {v!r}")
    if isinstance(kernel_size, bool) or kernel_size != 3:
        raise ValueError(f"kernel_size: only 3 is supported, got {kernel_size!r}")
    l2_gradient = _check_bool(l2_gradient, "l2_gradient")
    if img.requires_grad:
        raise ValueError("img: canny is not differentiable; pass img.detach()")
    b = _pick("edges", "canny", backend, img.device, img.dtype)
    if b == "reference":
        return _ref.canny(img, low, high, 3, l2_gradient)
    return _ops(b).canny(img, low, high, 3, l2_gradient)


def distance_transform(mask: torch.Tensor, return_indices: bool = False, *, backend: str = "auto"):
    """Exact Euclidean distance transform (Felzenszwalb-Huttenlocher on the fast backends).

    Args:
        mask: ``[B, 1, H, W]``, any dtype; True = nonzero.
        return_indices: also return where the nearest True pixel is.
    Returns:
        ``dist`` float32 ``[B, 1, H, W]``: distance of every pixel to the nearest True pixel (0 on True
        pixels, inf when the mask is empty) -- ``scipy.ndimage.distance_transform_edt(~mask)``.
        With ``return_indices``, ``(dist, indices)`` with ``indices`` int64 ``[B, 2, H, W]`` = (y, x) of
        that pixel (-1 when the mask is empty; on exact ties any nearest pixel). Not differentiable.
    """
    _tensor(mask, "mask")
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask: expected a 4-D tensor [B, 1, H, W], got shape {tuple(mask.shape)}")
    if mask.requires_grad:
        raise ValueError("mask: distance_transform is not differentiable; pass mask.detach()")
    return_indices = _check_bool(return_indices, "return_indices")
    b = _pick("edges", "distance_transform", backend, mask.device, mask.dtype)
    if b == "reference":
        d, i = _ref.distance_transform(mask, return_indices)
    else:
        d, i = _ops(b).distance_transform(mask, return_indices)
    return (d, i) if return_indices else d
