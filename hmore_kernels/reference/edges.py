"""Pure-PyTorch reference of the edge/boundary family (docs/ops.md §2 and §5).

Written for clarity, with autograd doing the backward. Every other backend is tested against these
functions. Conventions (pinned in docs/ops.md §5): pixel (i, j) has x = j, y = i; derivatives point toward
increasing x and y; Sobel is divided by 8 and Scharr by 32 when normalised; morphology uses the 3x3
square element with replicate borders.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_SOBEL = ((1.0, 2.0, 1.0), 8.0)  # smoothing taps, normaliser
_SCHARR = ((3.0, 10.0, 3.0), 32.0)


def _pad1(x: torch.Tensor, border: str) -> torch.Tensor:
    """Pad [N, C, H, W] by one pixel on every side."""
    if border == "zeros":
        return F.pad(x, (1, 1, 1, 1))
    if border == "replicate":
        return F.pad(x, (1, 1, 1, 1), mode="replicate")
    if border == "reflect101":
        # torch's "reflect" is OpenCV's BORDER_REFLECT_101; on an axis 1 pixel long it degenerates to
        # replicate (OpenCV's behaviour), which torch refuses to do, so pad each axis on its own.
        H, W = x.shape[-2:]
        x = F.pad(x, (1, 1, 0, 0), mode="reflect" if W > 1 else "replicate")
        return F.pad(x, (0, 0, 1, 1), mode="reflect" if H > 1 else "replicate")
    raise ValueError(f"border: expected 'replicate', 'reflect101' or 'zeros', got {border!r}")


def _derivs(x: torch.Tensor, kernel: str, normalized: bool, border: str) -> torch.Tensor:
    """x [B, C, H, W] -> [B, C, 2, H, W].

    Separable: difference first, then smooth. Taking x[j+1] - x[j-1] before any weighting makes a
    constant image give exactly 0 (a weighted 3x3 sum leaves rounding residue that flow_edges'
    normalisation would blow up to 1).
    """
    B, C, H, W = x.shape
    if x.numel() == 0:
        return x.new_zeros(B, C, 2, H, W)
    (a, b, _), norm = {"sobel": _SOBEL, "scharr": _SCHARR}[kernel]
    p = _pad1(x.reshape(B * C, 1, H, W), border)[:, 0]  # [N, H+2, W+2]
    dx = p[:, :, 2:] - p[:, :, :-2]  # [N, H+2, W]
    dy = p[:, 2:, :] - p[:, :-2, :]  # [N, H, W+2]
    gx = a * (dx[:, :-2] + dx[:, 2:]) + b * dx[:, 1:-1]
    gy = a * (dy[:, :, :-2] + dy[:, :, 2:]) + b * dy[:, :, 1:-1]
    g = torch.stack([gx, gy], 1)
    if normalized:
        g = g / norm
    return g.reshape(B, C, 2, H, W)


def sobel(x: torch.Tensor, normalized: bool = True, border: str = "replicate") -> torch.Tensor:
    """3x3 Sobel derivatives. x [B, C, H, W] -> [B, C, 2, H, W] (d/dx, d/dy), same dtype."""
    return _derivs(x, "sobel", normalized, border)


def _safe_sqrt(s: torch.Tensor) -> torch.Tensor:
    """sqrt with value and gradient 0 where s == 0; NaN where s is NaN (docs/ops.md: a diverging flow shows)."""
    pos = s > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, s, torch.ones_like(s))), torch.where(torch.isnan(s), s, torch.zeros_like(s)))


def gradient_magnitude(x: torch.Tensor, kernel: str = "sobel", reduce: str = "sum", eps: float = 0.0) -> torch.Tensor:
    """sqrt(sum gx^2 + gy^2 + eps) with normalised Sobel/Scharr and replicate borders.

    x [B, C, H, W] -> [B, 1, H, W] (reduce="sum", over channels) or [B, C, H, W] (reduce="none").
    """
    g = _derivs(x, kernel, True, "replicate")
    s = (g * g).sum(2)
    if reduce == "sum":
        s = s.sum(1, keepdim=True)
    return _safe_sqrt(s + eps)


def _morph(m: torch.Tensor, width: int, op: str) -> torch.Tensor:
    """min (erode) or max (dilate) over the clamped (2w+1)^2 window = w passes of the 3x3 element
    with replicate borders. m: float [B, 1, H, W]."""
    if m.numel() == 0:
        return m.clone()
    k = 2 * width + 1
    src = -m if op == "erode" else m
    out = F.max_pool2d(F.pad(src, (width,) * 4, mode="replicate"), k, stride=1)
    return -out if op == "erode" else out


def mask_boundary(mask: torch.Tensor, mode: str = "inner", width: int = 1) -> torch.Tensor:
    """Boundary of a mask [B, 1, H, W]: inner = mask - erode, outer = dilate - mask, thick = dilate - erode.

    Bool masks give bool boundaries; float (soft) masks give float boundaries, differentiable with the
    gradient of each min/max sent to the first extremal pixel of its window in row-major order.
    """
    is_bool = mask.dtype == torch.bool
    m = mask.to(torch.float32) if is_bool else mask
    if mode == "inner":
        out = m - _morph(m, width, "erode")
    elif mode == "outer":
        out = _morph(m, width, "dilate") - m
    elif mode == "thick":
        out = _morph(m, width, "dilate") - _morph(m, width, "erode")
    else:
        raise ValueError(f"mode: expected 'inner', 'outer' or 'thick', got {mode!r}")
    return out > 0 if is_bool else out


def flow_edges(flow: torch.Tensor, mask: torch.Tensor | None = None, band: int | None = 3, normalize: bool = True) -> torch.Tensor:
    """Boundary-aware edge map of a flow field. flow [B, 2, H, W] -> [B, 1, H, W].

    m = sqrt(sum over both channels of the normalised-Sobel gx^2 + gy^2) (replicate border); with
    normalize, m / max(m) per image (a zero image stays zero); with a mask, times
    mask_boundary(mask, "thick", band).
    """
    g = _derivs(flow, "sobel", True, "replicate")
    m = _safe_sqrt((g * g).sum((1, 2)))[:, None]
    if normalize and m.numel() > 0:
        mx = m.amax(dim=(2, 3), keepdim=True)
        pos = (mx > 0) | torch.isnan(mx)  # a NaN max (amax propagates it) makes the image NaN (docs/ops.md)
        m = torch.where(pos, m / torch.where(pos, mx, torch.ones_like(mx)), torch.zeros_like(m))
    if mask is not None and band is not None:
        m = m * mask_boundary(mask.to(m.dtype) if mask.dtype == torch.bool else mask.to(m.dtype), "thick", band)
    return m


# ---- canny --------------------------------------------------------------------------------------
# OpenCV's fixed-point tangent of 22.5 degrees (tan(22.5°) * 2^15, rounded): its non-maximum
# suppression classifies directions with this constant, and so do we, to agree pixel for pixel.
TG22 = 13573
_SHIFT = 15


def to_gray(img: torch.Tensor) -> torch.Tensor:
    """[B, 1 or 3, H, W] -> float64 [B, 1, H, W] gray, 0..255.

    3 channels are RGB, converted with the BT.601 weights; for uint8 with OpenCV 5's fixed-point rounding
    (15-bit weights 9798/19235/3735, as cv2.cvtColor(..., COLOR_RGB2GRAY) in OpenCV 5.0 -- OpenCV 4 used
    14-bit weights and differs by one level on a few pixels), so the result is bit-identical to the
    gray image that OpenCV would compute.
    """
    if img.shape[1] == 1:
        return img.to(torch.float64)
    if img.dtype == torch.uint8:
        r, g, b = (img[:, i : i + 1].to(torch.int64) for i in range(3))
        return ((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15).to(torch.float64)
    r, g, b = (img[:, i : i + 1].to(torch.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def canny_thresholds(low: float, high: float, l2_gradient: bool):
    """OpenCV's integer thresholds: squared for L2, floored, swapped if low > high."""
    if l2_gradient:
        low, high = min(32767.0, low), min(32767.0, high)
        low = low * low if low > 0 else low
        high = high * high if high > 0 else high
    lo, hi = math.floor(low), math.floor(high)
    return (hi, lo) if lo > hi else (lo, hi)


@torch.no_grad()
def canny(img: torch.Tensor, low: float, high: float, kernel_size: int = 3, l2_gradient: bool = False) -> torch.Tensor:
    """Canny edges with OpenCV's conventions. img [B, 1 or 3, H, W] (0..255) -> bool [B, 1, H, W].

    Unnormalised 3x3 Sobel with replicate border; magnitude |dx| + |dy| (or dx^2 + dy^2 against squared
    thresholds with l2_gradient); a pixel is a candidate where magnitude > low and it is a maximum along
    its gradient direction (OpenCV's sector test and its strict/non-strict comparisons; magnitude is 0
    outside the image); strong where magnitude > high; edges = candidates 8-connected to a strong one.
    """
    if kernel_size != 3:
        raise ValueError(f"kernel_size: only 3 is supported, got {kernel_size}")
    gray = to_gray(img)
    B, _, H, W = gray.shape
    if gray.numel() == 0:
        return torch.zeros(B, 1, H, W, dtype=torch.bool, device=img.device)
    d = _derivs(gray, "sobel", False, "replicate")
    dx, dy = d[:, 0, 0], d[:, 0, 1]  # [B, H, W]
    mag = dx * dx + dy * dy if l2_gradient else dx.abs() + dy.abs()
    lo, hi = canny_thresholds(low, high, l2_gradient)
    mp = F.pad(mag, (1, 1, 1, 1))  # zero outside the image

    def nb(di, dj):
        return mp[:, 1 + di : 1 + di + H, 1 + dj : 1 + dj + W]

    ax, ay = dx.abs(), dy.abs()
    y = ay * (1 << _SHIFT)
    tg22x = ax * TG22
    tg67x = tg22x + ax * (1 << (_SHIFT + 1))
    horiz = y < tg22x
    vert = (~horiz) & (y > tg67x)
    diag = ~(horiz | vert)
    s_pos = (dx * dy) >= 0  # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1 on the integer derivatives
    keep_h = (mag > nb(0, -1)) & (mag >= nb(0, 1))
    keep_v = (mag > nb(-1, 0)) & (mag >= nb(1, 0))
    keep_d = torch.where(s_pos, (mag > nb(-1, -1)) & (mag > nb(1, 1)), (mag > nb(-1, 1)) & (mag > nb(1, -1)))
    nms = (horiz & keep_h) | (vert & keep_v) | (diag & keep_d)
    weak = nms & (mag > lo)
    edges = weak & (mag > hi)
    weak_f, edges_f = weak[:, None].float(), edges[:, None].float()
    while True:  # hysteresis: grow strong pixels through 8-connected candidates until nothing changes
        grown = F.max_pool2d(edges_f, 3, stride=1, padding=1) * weak_f
        if torch.equal(grown, edges_f):
            break
        edges_f = grown
    return edges_f > 0


# ---- distance transform -------------------------------------------------------------------------
@torch.no_grad()
def distance_transform(mask: torch.Tensor, return_indices: bool = False, chunk: int = 1 << 24):
    """Exact Euclidean distance of every pixel to the nearest True (nonzero) pixel of mask [B, 1, H, W].

    Returns (dist float32 [B, 1, H, W], inf where the mask is empty; indices int64 [B, 2, H, W] (y, x)
    of that pixel, -1 where the mask is empty, or an empty [0] tensor when return_indices is False).
    Same answer as scipy.ndimage.distance_transform_edt(~mask); on exact ties any nearest pixel is valid.

    Separable: per column the nearest True row (exact, by cumulative max/min of row indices), then per
    row a brute-force minimum over columns of dv(i, k)^2 + (j - k)^2, in chunks of ``chunk`` elements.
    """
    m = mask[:, 0] != 0  # [B, H, W]
    B, H, W = m.shape
    dev = mask.device
    dist = torch.full((B, 1, H, W), math.inf, dtype=torch.float32, device=dev)
    idx = torch.full((B, 2, H, W), -1, dtype=torch.int64, device=dev)
    if m.numel() == 0:
        return dist, (idx if return_indices else torch.empty(0, dtype=torch.int64, device=dev))
    rows = torch.arange(H, device=dev).view(1, H, 1).expand(B, H, W)
    big = H + W + 1  # farther than any real distance; marks "no True pixel in this column"
    above = torch.where(m, rows, torch.full_like(rows, -big)).cummax(1).values
    below = torch.where(m, rows, torch.full_like(rows, 2 * big)).flip(1).cummin(1).values.flip(1)
    use_above = (rows - above) <= (below - rows)  # vertical ties go to the upper pixel
    near_row = torch.where(use_above, above, below)
    dv = (near_row - rows).abs()
    has = dv < big
    dv2 = torch.where(has, dv * dv, torch.full_like(dv, -1))  # -1 = no candidate in that column
    cols = torch.arange(W, device=dev)
    dh2 = (cols[:, None] - cols[None, :]) ** 2  # [j, k]
    n_rows = max(1, chunk // max(1, W * W))
    flat_dv2 = dv2.reshape(B * H, W)
    flat_row = near_row.reshape(B * H, W)
    best = torch.empty(B * H, W, dtype=torch.int64, device=dev)
    arg = torch.empty(B * H, W, dtype=torch.int64, device=dev)
    for s in range(0, B * H, n_rows):
        c = flat_dv2[s : s + n_rows]  # [r, k]
        tot = c[:, None, :] + dh2[None]  # [r, j, k]
        tot = torch.where(c[:, None, :] >= 0, tot, torch.full_like(tot, torch.iinfo(torch.int64).max))
        v, a = tot.min(2)  # min returns the lowest index among ties on CPU and CUDA
        best[s : s + n_rows], arg[s : s + n_rows] = v, a
    valid = best != torch.iinfo(torch.int64).max
    d = torch.sqrt(best.to(torch.float64)).to(torch.float32)
    dist[:, 0] = torch.where(valid, d, torch.full_like(d, math.inf)).view(B, H, W)
    if return_indices:
        yy = torch.gather(flat_row, 1, arg)
        idx[:, 0] = torch.where(valid, yy, torch.full_like(yy, -1)).view(B, H, W)
        idx[:, 1] = torch.where(valid, arg, torch.full_like(arg, -1)).view(B, H, W)
        return dist, idx
    return dist, torch.empty(0, dtype=torch.int64, device=dev)
