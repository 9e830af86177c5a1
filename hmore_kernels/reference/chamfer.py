"""Pure-PyTorch reference of the Chamfer family (docs/ops.md §3, §5): the tests' oracle and the benchmarks'
baseline. Differentiable through autograd; float16/bfloat16 points are computed in float32.

Numerical conventions every backend follows (csrc/chamfer/chamfer_kernels.cuh holds the same math):

* Squared distances are computed directly as ``sum_k (x_k - y_k)^2`` (k = 0..D-1 in order), never as
  ``|x|^2 + |y|^2 - 2<x, y>``: with pixel coordinates up to 4096 the expansion cancels catastrophically
  and turns exact integer distances into noise, which breaks ties.
* Nearest neighbour: scanning candidates in increasing index, a strictly smaller distance replaces the
  best one, so ties go to the lowest index.
* A point with no candidate (the other cloud is empty for that batch element) has distance 0 and index
  -1 and contributes nothing; points past ``lengths`` are padding: distance 0, index -1.
* Non-finite points (docs/ops.md, "Non-finite values"): a point with a NaN or infinite coordinate is never
  anyone's nearest point; its own distance is NaN and its index -1; its Chamfer term is NaN, so the
  value of a cloud that holds one is NaN (a diverging network shows in its loss).
* ``chamfer_distance``: per direction ``D_x = sum_i w_i d_i / sum_i w_i`` ("mean", "none"; 0 when the
  weight sum is 0, e.g. an empty cloud) or ``sum_i w_i d_i`` ("sum"); a cloud's value is
  ``D_x + D_y``; "mean" averages the clouds over the batch, "sum" sums them, "none" returns ``[B]``.
  Plain L2 (``squared=False``) has gradient 0, not NaN, at distance 0.
* ``patch_centroid_chamfer``: docs/ops.md §5. Centroids are accumulated in patch-local coordinates
  (``j - j0``, ``i - i0``) -- the patch origin cancels in ``|c_a - c_b|`` and local sums keep float32
  exact for large images. The coverage ``min(1, m / p)`` has derivative ``1/p`` for ``m <= p``
  (torch.clamp's rule); ``|c_a - c_b|`` and ``|r_a - r_b|`` have derivative 0 where they are 0.
"""
from __future__ import annotations

import math

import torch

_REDUCTIONS = ("mean", "sum", "none")


def _acc_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _safe_sqrt(s: torch.Tensor) -> torch.Tensor:
    pos = s > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, s, torch.ones_like(s))), torch.zeros_like(s))


def _valid(lengths, B, N, device):
    """[B, N] bool: point n of cloud b is inside its length."""
    ar = torch.arange(N, device=device)
    if lengths is None:
        return torch.ones(B, N, dtype=torch.bool, device=device).expand(B, N) if N else torch.zeros(B, 0, dtype=torch.bool, device=device)
    return ar[None, :] < lengths.to(device=device, dtype=torch.int64)[:, None]


def nonfinite_points(p: torch.Tensor, lengths=None) -> torch.Tensor:
    """[B, N] bool: points inside their length with a non-finite coordinate (every backend uses this rule)."""
    B, N, D = p.shape
    if D == 0:
        return torch.zeros(B, N, dtype=torch.bool, device=p.device)
    return ~torch.isfinite(p.detach()).all(-1) & _valid(lengths, B, N, p.device)


def search_points(p: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """p with the non-finite points' coordinates set to NaN: a NaN distance never wins a strict ``<``
    comparison, where an infinite coordinate would give an inf or NaN distance depending on the other point."""
    return torch.where(bad[..., None], torch.full((), math.nan, dtype=p.dtype, device=p.device), p)


def poison_clouds(per: torch.Tensor, bad_x: torch.Tensor, bad_y: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """per-cloud values [B] + NaN where a searched cloud holds a non-finite point."""
    bad = bad_x.any(1)
    if bidirectional:
        bad = bad | bad_y.any(1)
    return torch.where(bad.to(per.device), torch.full((), math.nan, dtype=per.dtype, device=per.device), per)


def _sqdist_direct(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[B, n, D], [B, M, D] -> [B, n, M], sum over k of (x_k - y_k)^2 in index order."""
    diff = x[:, :, None, :] - y[:, None, :, :]
    sq = diff * diff
    out = sq[..., 0]
    for k in range(1, x.shape[-1]):  # explicit left-to-right sum, like the kernels
        out = out + sq[..., k]
    return out


def nearest_neighbors(x, y, x_lengths=None, y_lengths=None, chunk_elems: int = 1 << 24):
    """(dist [B, N] squared L2 (float32 for half inputs), idx [B, N] int64); not differentiable.

    Memory is bounded by processing x in chunks of ``chunk_elems // M`` points.
    """
    acc = _acc_dtype(x)
    B, N, D = x.shape
    M = y.shape[1]
    xa, ya = x.detach().to(acc), y.detach().to(acc)
    dist = torch.zeros(B, N, dtype=acc, device=x.device)
    idx = torch.full((B, N), -1, dtype=torch.int64, device=x.device)
    if B == 0 or N == 0 or M == 0:
        # no candidates, but a non-finite point's own distance is still NaN (docs/ops.md)
        return torch.where(nonfinite_points(xa, x_lengths), torch.full_like(dist, math.nan), dist), idx
    vx = _valid(x_lengths, B, N, x.device)
    vy = _valid(y_lengths, B, M, x.device)
    bad_x, bad_y = nonfinite_points(xa, x_lengths), nonfinite_points(ya, y_lengths)
    vy = vy & ~bad_y  # a non-finite point is never a candidate
    step = max(1, chunk_elems // max(B * M * max(D, 1), 1))
    for s in range(0, N, step):
        d = _sqdist_direct(xa[:, s : s + step], ya)  # [B, n, M]
        d = torch.where(vy[:, None, :], d, torch.full_like(d, math.inf))
        # min then first index attaining it: torch.argmin returns the first minimal index.
        best, arg = d.min(dim=2)
        i = torch.argmin(d, dim=2)
        ok = vx[:, s : s + step] & vy.any(dim=1, keepdim=True) & torch.isfinite(best)
        dist[:, s : s + step] = torch.where(ok, best, torch.zeros_like(best))
        idx[:, s : s + step] = torch.where(ok, i, torch.full_like(i, -1))
    dist = torch.where(bad_x, torch.full_like(dist, math.nan), dist)
    idx = torch.where(bad_x, torch.full_like(idx, -1), idx)
    return dist, idx


def _directed(x, y, idx, w, squared, reduction, bad):
    """Per-cloud term of one direction [B], differentiable in x, y, w. idx [B, N] (-1 = no term);
    bad [B, N]: the non-finite points of x, whose term is NaN."""
    acc = _acc_dtype(x)
    xa, ya = x.to(acc), y.to(acc)
    B, N, D = x.shape
    ok = idx >= 0
    safe = idx.clamp(min=0)
    if ya.shape[1] == 0:
        ynn = torch.zeros_like(xa)
    else:
        ynn = torch.gather(ya, 1, safe[:, :, None].expand(B, N, D))
    diff = xa - ynn
    sq = diff * diff
    d = sq[..., 0] if D > 0 else xa.new_zeros(B, N)
    for k in range(1, D):
        d = d + sq[..., k]
    if not squared:
        d = _safe_sqrt(d)
    wa = torch.ones_like(d) if w is None else w.to(acc)
    d = torch.where(bad, torch.full_like(d, math.nan), d)
    ok = ok | bad
    wa = torch.where(ok, wa, torch.zeros_like(wa))
    d = torch.where(ok, d, torch.zeros_like(d))
    num = (wa * d).sum(1)
    if reduction == "sum":
        return num
    den = wa.sum(1)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


def chamfer_distance(
    x, y, x_lengths=None, y_lengths=None, x_weights=None, y_weights=None, squared=True, reduction="mean", bidirectional=True
):
    """Value only ([] for 'mean'/'sum', [B] for 'none'); see the module docstring for the conventions.

    Differentiable in x, y and both weights; float32 for half inputs, float64 for float64.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of 'mean', 'sum', 'none', got {reduction!r}")
    _, idx_x = nearest_neighbors(x, y, x_lengths, y_lengths)
    per = _directed(x, y, idx_x, x_weights, squared, reduction, nonfinite_points(x, x_lengths))
    if bidirectional:
        _, idx_y = nearest_neighbors(y, x, y_lengths, x_lengths)
        per = per + _directed(y, x, idx_y, y_weights, squared, reduction, nonfinite_points(y, y_lengths))
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.mean() if per.numel() else per.sum()


# ---- patches -------------------------------------------------------------------------------------
def _patch_stats(w: torch.Tensor, p: int, offsets=None):
    """w [B, 1, H, W] -> (m, sx, sy) [B, Hp, Wp] with sx = sum w * (j - j0 + dx), sy likewise, plus the
    patch extents (row counts [Hp], column counts [Wp]) -- local coordinates, see the module docstring."""
    B, _, H, W = w.shape
    Hp, Wp = -(-H // p), -(-W // p)
    dev, dt = w.device, w.dtype
    lx = (torch.arange(W, device=dev) % p).to(dt).view(1, W).expand(H, W)
    ly = (torch.arange(H, device=dev) % p).to(dt).view(H, 1).expand(H, W)
    w2 = w[:, 0]
    px = lx if offsets is None else lx + offsets[:, 0]
    py = ly if offsets is None else ly + offsets[:, 1]
    ph, pw = Hp * p - H, Wp * p - W

    def pool(t):
        t = torch.nn.functional.pad(t, (0, pw, 0, ph))
        return t.reshape(B, Hp, p, Wp, p).sum(dim=(2, 4))

    m = pool(w2)
    sx = pool(w2 * px)
    sy = pool(w2 * py)
    rows = (torch.clamp(H - torch.arange(Hp, device=dev) * p, max=p)).to(dt)
    cols = (torch.clamp(W - torch.arange(Wp, device=dev) * p, max=p)).to(dt)
    return m, sx, sy, rows, cols


def _local_centroid(m, sx, sy, rows, cols, thresh):
    """Patch-local centroid [B, Hp, Wp] x, y: sx/m where m > thresh, else the in-image pixel centre."""
    has = m > thresh
    safe = torch.where(has, m, torch.ones_like(m))
    cxc = ((cols - 1) * 0.5).view(1, 1, -1).expand_as(m)
    cyc = ((rows - 1) * 0.5).view(1, -1, 1).expand_as(m)
    return torch.where(has, sx / safe, cxc), torch.where(has, sy / safe, cyc)


def patch_centroids(weights: torch.Tensor, patch_size: int, offsets=None):
    """(centroids [B, ceil(H/p), ceil(W/p), 2] (x, y), mass [B, ceil(H/p), ceil(W/p)]).

    Weighted mean of ``pixel + offset`` per non-overlapping patch (pixel (i, j) at x = j, y = i); a
    patch with zero mass gets the centre of its in-image pixels. Differentiable in weights and offsets.
    """
    w = weights.to(torch.float32) if weights.dtype == torch.bool else weights
    if offsets is not None:
        offsets = offsets.to(w.dtype)
    p = int(patch_size)
    m, sx, sy, rows, cols = _patch_stats(w, p, offsets)
    cx, cy = _local_centroid(m, sx, sy, rows, cols, 0.0)
    Hp, Wp = m.shape[1:]
    x0 = (torch.arange(Wp, device=w.device) * p).to(w.dtype).view(1, 1, -1)
    y0 = (torch.arange(Hp, device=w.device) * p).to(w.dtype).view(1, -1, 1)
    return torch.stack([cx + x0, cy + y0], dim=-1), m


def _pcc_scale(a, b, p, min_mass):
    """Per-cloud value [B] at one patch size."""
    ma, sxa, sya, rows, cols = _patch_stats(a, p)
    mb, sxb, syb, _, _ = _patch_stats(b, p)
    cxa, cya = _local_centroid(ma, sxa, sya, rows, cols, min_mass)
    cxb, cyb = _local_centroid(mb, sxb, syb, rows, cols, min_mass)
    ra = torch.clamp(ma / p, max=1.0)
    rb = torch.clamp(mb / p, max=1.0)
    dist = _safe_sqrt((cxa - cxb) ** 2 + (cya - cyb) ** 2)
    term = ra * rb * dist + p * (ra - rb).abs()
    count = (ma + mb) > min_mass
    n = count.flatten(1).sum(1)
    s = torch.where(count, term, torch.zeros_like(term)).flatten(1).sum(1)
    return torch.where(n > 0, s / n.clamp(min=1).to(s.dtype), torch.zeros_like(s))


def patch_centroid_chamfer(a, b, patch_sizes=(8, 16, 32), min_mass=1e-3, reduction="mean"):
    """The H-MoRe boundary term (docs/ops.md §5). a, b [B, 1, H, W] float (bool -> float32) -> [] or [B]."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of 'mean', 'sum', 'none', got {reduction!r}")
    dt = torch.promote_types(a.dtype if a.is_floating_point() else torch.float32, b.dtype if b.is_floating_point() else torch.float32)
    a, b = a.to(dt), b.to(dt)
    per = sum(_pcc_scale(a, b, int(p), float(min_mass)) for p in patch_sizes) / len(patch_sizes)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.mean() if per.numel() else per.sum()


def boundary_chamfer(a, b, reduction="mean"):
    """Exact symmetric Chamfer distance between the True pixels of a, b [B, 1, H, W] bool -> float32
    [] or [B]: mean over a's pixels of the distance to b plus the converse; 0 when both are empty, inf when
    exactly one is. Via the reference distance transform (no gradient)."""
    from .edges import distance_transform

    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of 'mean', 'sum', 'none', got {reduction!r}")
    a, b = a.bool(), b.bool()
    B = a.shape[0]
    if a.numel() == 0:
        per = torch.zeros(B, dtype=torch.float32, device=a.device)
    else:
        da, _ = distance_transform(a)
        db, _ = distance_transform(b)

        def directed(src, dt):
            n = src.flatten(1).sum(1)
            s = torch.where(src, dt.to(torch.float64), torch.zeros((), dtype=torch.float64, device=a.device)).flatten(1).sum(1)
            return n, s

        na, sab = directed(a, db)
        nb, sba = directed(b, da)
        per = sab / na.clamp(min=1) + sba / nb.clamp(min=1)
        per = torch.where((na == 0) & (nb == 0), torch.zeros_like(per), per)
        per = torch.where((na == 0) != (nb == 0), torch.full_like(per, math.inf), per)
        per = per.to(torch.float32)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.mean() if per.numel() else per.sum()
