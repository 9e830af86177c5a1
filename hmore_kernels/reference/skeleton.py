"""Pure-PyTorch reference of the skeleton family (docs/ops.md §4, §5): the tests' oracle, the benchmarks'
baseline, the fallback backend.

Arithmetic is pinned so that every backend agrees bit for bit (see csrc/skeleton/skeleton_kernels.cuh):
a point's weight ``w = -log(min(c, 1 - eps))`` is computed in float64 and rounded to the points' dtype
(NaN for excluded points, ``c <= eps``); the cost at pixel (x = j, y = i) is
``sqrt((x - qx)*(x - qx) + (y - qy)*(y - qy)) * w``, each operation rounded in the points' dtype (the
square root correctly rounded).
The match is the lexicographic minimum of (cost, index) over the points whose cost is not NaN.

The reference evaluates the cost matrix in chunks of pixels (only the pixels inside the mask), so its
memory stays bounded; it is the O(H*W*Q) baseline the fast backends are measured against.
"""
from __future__ import annotations

import torch

# Pixels per chunk of the [P, Q] cost matrix (64 Ki x 128 points of float32 = 32 MiB).
_CHUNK = 1 << 16


def bone_weights(n: int, dtype, device=None):
    """(s, t) [n] of the n points of a bone: p = s*a + t*b; t = k/(n-1), s = (n-1-k)/(n-1) in float64,
    rounded to dtype (the ends are exactly the joints); n == 1: the midpoint (1/2, 1/2)."""
    if n == 1:
        h = torch.full((1,), 0.5, dtype=torch.float64, device=device)
        return h.to(dtype), h.to(dtype)
    k = torch.arange(n, dtype=torch.float64, device=device)
    t = k / (n - 1)
    s = (n - 1 - k) / (n - 1)
    return s.to(dtype), t.to(dtype)


def skeleton_points(joints: torch.Tensor, conf: torch.Tensor, bones: torch.Tensor, points_per_bone: int = 8):
    """(points [B, E*n, 2], conf [B, E*n], bone int64 [E*n]). Differentiable in joints and conf."""
    n = int(points_per_bone)
    bones = bones.to(device=joints.device, dtype=torch.long)
    E = bones.shape[0]
    s, t = bone_weights(n, joints.dtype, joints.device)
    a, b = bones[:, 0], bones[:, 1]
    ja, jb = joints[:, a], joints[:, b]  # [B, E, 2]
    pts = s.view(1, 1, n, 1) * ja.unsqueeze(2) + t.view(1, 1, n, 1) * jb.unsqueeze(2)  # [B, E, n, 2]
    ca, cb = conf[:, a], conf[:, b]
    pc = s.view(1, 1, n) * ca.unsqueeze(2) + t.view(1, 1, n) * cb.unsqueeze(2)
    bone = torch.arange(E, device=joints.device).repeat_interleave(n)
    B = joints.shape[0]
    return pts.reshape(B, E * n, 2), pc.reshape(B, E * n), bone


def point_weights(conf: torch.Tensor, eps: float, dtype) -> torch.Tensor:
    """w [B, Q] = -log(min(c, 1 - eps)) in float64, rounded to dtype; NaN where c <= eps (or c is NaN).
    The same op sequence as csrc/skeleton/skeleton.h::point_weights."""
    c = conf.to(torch.float64).contiguous()
    w = c.clamp_max(1.0 - eps).log().neg()
    w = torch.where(c.gt(eps), w, float("nan"))
    return w.to(dtype).contiguous()


def _compute_dtype(dtype):
    # float16/bfloat16 points: float32 coordinates and costs, as on the GPU backends
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _sqrt_rn(v: torch.Tensor) -> torch.Tensor:
    # The fast backends use the correctly rounded sqrt. PyTorch's CPU sqrt is not (its vectorised AVX-512
    # float32 sqrt differs from the correctly rounded result in ~15 % of inputs, float64 in ~1 %). float32:
    # the float64 root rounded to float32 is the correctly rounded float32 root (53 >= 2*24 + 2 bits), unless
    # the float64 root is itself off by an ulp right at a float32 rounding boundary (~2^-29 per value).
    # float64 keeps torch.sqrt: a difference shows only on near-ties within ~1e-16 relative.
    if v.dtype == torch.float32:
        return v.double().sqrt().float()
    return v.sqrt()


def _mask_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] != 0


def skeleton_match(points: torch.Tensor, conf: torch.Tensor, mask: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """idx int64 [B, H, W]: argmin over points of the cost (see the module docstring); -1 outside the mask
    or where no point counts."""
    B, Q = points.shape[0], points.shape[1]
    H, W = mask.shape[-2:]
    m = _mask_bool(mask)
    out = torch.full((B, H, W), -1, dtype=torch.long, device=points.device)
    if out.numel() == 0 or Q == 0:
        return out
    dt = _compute_dtype(points.dtype)
    points = points.to(dt)
    w = point_weights(conf, eps, dt)
    for b in range(B):
        pix = m[b].nonzero()  # [P, 2] (i, j), row-major
        if pix.shape[0] == 0:
            continue
        qx, qy, wb = points[b, :, 0].view(1, Q), points[b, :, 1].view(1, Q), w[b].view(1, Q)
        res = torch.empty(pix.shape[0], dtype=torch.long, device=points.device)
        for s in range(0, pix.shape[0], _CHUNK):
            p = pix[s : s + _CHUNK]
            py, px = p[:, 0:1].to(dt), p[:, 1:2].to(dt)
            dx, dy = px - qx, py - qy
            cost = _sqrt_rn(dx * dx + dy * dy) * wb  # [P, Q]
            counts = cost == cost
            filled = torch.where(counts, cost, float("inf"))
            best = filled.argmin(dim=1)  # the first minimal index
            # all counting costs infinite (or none counts): the first counting point, else -1
            first = torch.where(counts.any(dim=1), counts.to(torch.uint8).argmax(dim=1), -1)
            best_val = filled.gather(1, best.view(-1, 1)).view(-1)
            res[s : s + _CHUNK] = torch.where(best_val == float("inf"), first, best)
        out[b, pix[:, 0], pix[:, 1]] = res
    return out


def skeleton_offset_map(points_t, points_t1, conf, mask, eps: float = 1e-4):
    """(offset [B, 2, H, W] = points_t1[idx] - points_t[idx] at matched pixels, 0 elsewhere;
    valid bool [B, 1, H, W] = idx >= 0), idx from :func:`skeleton_match` on points_t."""
    idx = skeleton_match(points_t, conf, mask, eps)
    B, H, W = idx.shape
    Q = points_t.shape[1]
    valid = idx >= 0
    dt = _compute_dtype(points_t.dtype)
    k = (points_t1.to(dt) - points_t.to(dt)).to(points_t.dtype)  # [B, Q, 2]
    if Q == 0 or idx.numel() == 0:
        return points_t.new_zeros(B, 2, H, W), valid.unsqueeze(1)
    g = torch.gather(k, 1, idx.clamp_min(0).view(B, H * W, 1).expand(B, H * W, 2))  # [B, HW, 2]
    off = torch.where(valid.view(B, H * W, 1), g, torch.zeros((), dtype=k.dtype, device=k.device))
    return off.permute(0, 2, 1).reshape(B, 2, H, W).contiguous(), valid.unsqueeze(1)
