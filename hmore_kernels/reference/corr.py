"""Pure-PyTorch reference of the correlation family (docs/ops.md §1 and §5).

Written for clarity, with autograd doing the backward; every other backend is tested against these
functions. Conventions (csrc/corr/corr_kernels.cuh states them once for all backends):

* pixel (i, j) has x = j, y = i; coords ``[B, 2, H1, W1]`` are (x, y) in pixels of level 0;
* level l of the pyramid is ``avg_pool2d`` applied l times to the volume (floor on odd sizes), its
  window centre is ``coords / 2**l``;
* tap ``(dx, dy)`` samples ``(cx + dx, cy + dy)`` by bilinear interpolation with ``align_corners=True``
  pixel coordinates and zeros outside; layout "raft": tap index ``(dx+r)*(2r+1) + (dy+r)`` (dx slowest),
  "yx": ``(dy+r)*(2r+1) + (dx+r)``; levels level-major.

:class:`RaftCorrBlock` is a separate, faithful re-implementation of RAFT's own ``CorrBlock`` algorithm
(matmul volume, ``avg_pool2d`` pyramid, ``grid_sample`` per level with normalised coordinates), written
here from the published description, so the tests can check the pixel-coordinate lookup against RAFT's
arithmetic wherever RAFT's is finite.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LAYOUTS = ("raft", "yx")


def default_scale(D: int, scale):
    """``scale`` or ``1/sqrt(D)`` when None (docs/ops.md §1); D = 0 (an empty dot product) uses 1."""
    if scale is not None:
        return float(scale)
    return 1.0 / math.sqrt(D) if D > 0 else 1.0


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def corr_volume(fmap1: torch.Tensor, fmap2: torch.Tensor, scale=None) -> torch.Tensor:
    """``[B, D, H1, W1] x [B, D, H2, W2] -> [B, H1, W1, H2, W2]``, ``<f1(p), f2(q)> * scale``, features' dtype."""
    B, D, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    s = default_scale(D, scale)
    a = fmap1.reshape(B, D, H1 * W1).transpose(1, 2).to(_compute_dtype(fmap1))
    b = fmap2.reshape(B, D, H2 * W2).to(_compute_dtype(fmap2))
    v = torch.matmul(a, b) * s
    return v.reshape(B, H1, W1, H2, W2).to(fmap1.dtype)


def pool_level(x: torch.Tensor) -> torch.Tensor:
    """avg_pool2d(2, stride 2) with floor, also when an axis is shorter than 2 (-> an empty axis)."""
    N, C, h, w = x.shape
    if h < 2 or w < 2:
        return x.new_zeros(N, C, h // 2, w // 2)
    return F.avg_pool2d(x, 2, stride=2)


def corr_pyramid(fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, scale=None) -> list[torch.Tensor]:
    """RAFT's pyramid: ``num_levels`` tensors ``[B*H1*W1, 1, H2>>l, W2>>l]``; level 0 is the volume."""
    B, _, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[-2:]
    v = corr_volume(fmap1, fmap2, scale).reshape(B * H1 * W1, 1, H2, W2)
    out = [v]
    for _ in range(num_levels - 1):
        out.append(pool_level(out[-1]))
    return out


def tap_offsets(radius: int, layout: str = "raft", device=None, dtype=torch.float32):
    """(dx, dy), each ``[(2r+1)^2]``, in tap order."""
    d = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    slow, fast = torch.meshgrid(d, d, indexing="ij")
    slow, fast = slow.reshape(-1), fast.reshape(-1)
    return (slow, fast) if layout == "raft" else (fast, slow)


def _sample_pixels(level: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of ``level [N, h, w]`` at pixel positions ``x, y [N, T]``, zeros outside.

    Weights written as grid_sample writes them: ``(x0 + 1 - x)`` and ``(x - x0)``.
    """
    N, h, w = level.shape
    flat = level.reshape(N, h * w)
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    wx1 = x - x0
    wx0 = (x0 + 1) - x
    wy1 = y - y0
    wy0 = (y0 + 1) - y
    out = torch.zeros_like(x)
    if h * w == 0:
        return out
    for ox, oy, wgt in ((0, 0, wx0 * wy0), (1, 0, wx1 * wy0), (0, 1, wx0 * wy1), (1, 1, wx1 * wy1)):
        xi = x0 + ox
        yi = y0 + oy
        ok = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        # out-of-range (and NaN/inf) positions read index 0 and are masked: never cast them to int
        idx = torch.where(ok, yi, torch.zeros_like(yi)).long() * w + torch.where(ok, xi, torch.zeros_like(xi)).long()
        v = torch.gather(flat, 1, idx)
        out = out + torch.where(ok, v, torch.zeros_like(v)) * wgt
    return out


def corr_lookup(pyramid, coords: torch.Tensor, radius: int = 4, layout: str = "raft") -> torch.Tensor:
    """Sample every level of the pyramid around ``coords``.

    Args:
        pyramid: list of ``[B*H1*W1, 1, h_l, w_l]``.
        coords: ``[B, 2, H1, W1]`` (x, y) pixels of level 0.
    Returns:
        ``[B, L*(2r+1)^2, H1, W1]``, float32 (float64 for a float64 pyramid).
    """
    B, _, H1, W1 = coords.shape
    N = B * H1 * W1
    cd = _compute_dtype(pyramid[0])
    c = coords.to(cd).permute(0, 2, 3, 1).reshape(N, 2)
    dx, dy = tap_offsets(radius, layout, coords.device, cd)
    T = dx.numel()
    outs = []
    for l, lvl in enumerate(pyramid):
        h, w = lvl.shape[-2:]
        cx = c[:, 0:1] / 2**l
        cy = c[:, 1:2] / 2**l
        x = cx + dx[None]
        y = cy + dy[None]
        outs.append(_sample_pixels(lvl.reshape(N, h, w).to(cd), x, y))
    out = torch.cat(outs, 1) if outs else c.new_zeros(N, 0)
    return out.reshape(B, H1, W1, len(pyramid) * T).permute(0, 3, 1, 2).contiguous()


def corr_lookup_otf(fmap1, fmap2, coords, radius: int = 4, num_levels: int = 4, scale=None, layout: str = "raft"):
    """Same numbers as ``corr_lookup(corr_pyramid(fmap1, fmap2, num_levels, scale), coords, radius, layout)``.

    The reference simply builds the pyramid (it is the oracle, not the memory-lean path).
    """
    return corr_lookup(corr_pyramid(fmap1, fmap2, num_levels, scale), coords, radius, layout)


def local_corr(fmap1, fmap2, max_displacement: int, stride: int = 1, dilation: int = 1, scale=None):
    """FlowNet/PWC-Net correlation: ``[B, (2d+1)^2, ceil(H/stride), ceil(W/stride)]``.

    Channel ``(dy+d)*(2d+1) + (dx+d)``; output (i, j) is ``<fmap1(i*s, j*s), fmap2(i*s + dy*dil, j*s + dx*dil)>
    * scale`` with zeros outside ``fmap2``.
    """
    B, D, H, W = fmap1.shape
    d, s, dil = max_displacement, stride, dilation
    sc = default_scale(D, scale)
    cd = _compute_dtype(fmap1)
    f1 = fmap1.to(cd)[:, :, ::s, ::s]
    Ho, Wo = f1.shape[-2:]
    p = d * dil
    f2 = F.pad(fmap2.to(cd), (p, p, p, p))
    outs = []
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            y0 = p + dy * dil
            x0 = p + dx * dil
            win = f2[:, :, y0 : y0 + H : s, x0 : x0 + W : s]
            outs.append((f1 * win).sum(1))
    out = torch.stack(outs, 1) * sc if outs else f1.new_zeros(B, 0, Ho, Wo)
    return out.to(fmap1.dtype)


# --------------------------------------------------------------------------------------------------
# RAFT's own algorithm, for the tests (written from RAFT's published CorrBlock description).


def raft_bilinear_sampler(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """RAFT's sampler: pixel coords ``[N, h', w', 2]`` normalised by ``W-1``/``H-1``, then
    ``grid_sample(align_corners=True)`` (zeros padding). NaN on a level 1 pixel wide or high."""
    H, W = img.shape[-2:]
    xgrid, ygrid = coords.split([1, 1], dim=-1)
    xgrid = 2 * xgrid / (W - 1) - 1 if W > 1 else xgrid * float("nan")
    ygrid = 2 * ygrid / (H - 1) - 1 if H > 1 else ygrid * float("nan")
    grid = torch.cat([xgrid, ygrid], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


class RaftCorrBlock:
    """RAFT's CorrBlock algorithm: ``[B, L*(2r+1)^2, H, W]`` float32 for ``coords [B, 2, H, W]``."""

    def __init__(self, fmap1, fmap2, num_levels: int = 4, radius: int = 4):
        self.num_levels = num_levels
        self.radius = radius
        self.corr_pyramid = []
        batch, dim, ht, wd = fmap1.shape
        f1 = fmap1.view(batch, dim, ht * wd)
        f2 = fmap2.view(batch, dim, -1)
        corr = torch.matmul(f1.transpose(1, 2), f2)
        corr = corr.view(batch, ht, wd, 1, *fmap2.shape[-2:]) / torch.sqrt(torch.tensor(dim).float())
        corr = corr.reshape(batch * ht * wd, 1, *fmap2.shape[-2:])
        self.corr_pyramid.append(corr)
        for _ in range(num_levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.corr_pyramid.append(corr)

    def __call__(self, coords):
        r = self.radius
        coords = coords.permute(0, 2, 3, 1)
        batch, h1, w1, _ = coords.shape
        out_pyramid = []
        for i in range(self.num_levels):
            corr = self.corr_pyramid[i]
            dx = torch.linspace(-r, r, 2 * r + 1, device=coords.device)
            dy = torch.linspace(-r, r, 2 * r + 1, device=coords.device)
            delta = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1)
            centroid_lvl = coords.reshape(batch * h1 * w1, 1, 1, 2) / 2**i
            delta_lvl = delta.view(1, 2 * r + 1, 2 * r + 1, 2)
            coords_lvl = centroid_lvl + delta_lvl
            corr = raft_bilinear_sampler(corr, coords_lvl)
            out_pyramid.append(corr.view(batch, h1, w1, -1))
        out = torch.cat(out_pyramid, dim=-1)
        return out.permute(0, 3, 1, 2).contiguous().float()
