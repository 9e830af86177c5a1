"""Drawing the sprites of :mod:`hmore.data.synthetic` into a frame, in two passes (deferred shading).

Pass 1, :func:`cover`, is the painter's algorithm on part ids alone: per sprite (in depth order) it maps
the pixel centres of the sprite's box into the sprite's local frame and writes the sprite's key where
its shape test holds. Pass 2, :func:`shade`, then evaluates colour and flow once per *visible* pixel,
for all sprites at once: the pixel's key selects a row of a per-sprite parameter table (inverse map,
shape, texture, flow map), gathered per pixel.

Why: a frame has ~12 sprites on boxes of ~900 px (median at 256x256), where NumPy's per-call cost
exceeds the arithmetic; drawing every sprite completely took ~40 array operations per sprite over its
whole box (overdrawn pixels and box corners included). Now each sprite costs ~12 operations for the
shape test, and colour and flow ~50 operations per frame over only the pixels that show.

Exactness: the values are those of drawing each sprite completely and keeping the one on top. The
local coordinates are computed by the same float32 expression in both passes (so the shape that
pass 1 tested is the one pass 2 shades), and the flow ``A' A^-1 (p - b) + b' - p`` of the sprite on top
by the same float32 expression per pixel as on a sprite's box (bit-identical to drawing the flow of
every sprite in depth order). The background distractors write their flow in pass 1, since the
background flow is needed behind the subjects too.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from . import synthetic_body as body

f32 = np.float32

# Columns of the per-sprite parameter table (float32), see `params`.
I00, I01, CU, I10, I11, CV = range(6)  # inverse map: u = I00 x + I01 y + CU, v = I10 x + I11 y + CV
RA, RK, LCLIP, EU = 6, 7, 8, 9  # r = RA + RK * clip(u, 0, LCLIP); rel2 = (EU u)^2 + (v / r)^2
SHADE, RAMP_G, RAMP_C = 10, 11, 12  # shade = 1 - SHADE min(rel2, 1); ramp weight clip(RAMP_G u + RAMP_C)
WAVE1, WAVE2 = 13, 16  # (kx, ky, phase) of the two plane waves in (u, v)
FLOW = 19  # D00, D01, c0, D10, D11, c1: flow = D p + c (0 without a next frame)
MARK, MARK_U, MARK_R = 25, 26, 27  # marker on/off, its centre u, 1 / R^2
NCOL = 28
KEY_LUT_SIZE = 1024 + 32  # keys: subjects <= 8 * 16, distractors DISTRACTOR_KEY0 (1000) + i, i < 16


def place(sp: body.Sprite, H: int, W: int):
    """Pixel box (y0, y1, x0, x1) and inverse map (i00, i01, cu, i10, i11, cv) of sprite ``sp``, or
    None when the box misses the frame or the map is degenerate.

    Capsule box: the union of the boxes of the two end caps (tighter than its rotated rectangle's).
    """
    (a00, a01), (a10, a11) = sp.A.tolist()
    b0, b1 = sp.b.tolist()
    if sp.shape == "capsule":
        g = max(math.hypot(a00, a10) * sp.cap, math.hypot(a01, a11))
        ex0, ex1 = b0 + a00 * sp.length, b1 + a10 * sp.length
        ra, rb = g * sp.r0, g * sp.r1
        xlo, xhi = min(b0 - ra, ex0 - rb), max(b0 + ra, ex0 + rb)
        ylo, yhi = min(b1 - ra, ex1 - rb), max(b1 + ra, ex1 + rb)
    else:
        ex, ey = abs(a00) * sp.r0 + abs(a01) * sp.r1, abs(a10) * sp.r0 + abs(a11) * sp.r1
        xlo, xhi, ylo, yhi = b0 - ex, b0 + ex, b1 - ey, b1 + ey
    x0, x1 = max(int(math.floor(xlo)), 0), min(int(math.ceil(xhi)) + 1, W)
    y0, y1 = max(int(math.floor(ylo)), 0), min(int(math.ceil(yhi)) + 1, H)
    if x0 >= x1 or y0 >= y1:
        return None
    det = a00 * a11 - a01 * a10
    if abs(det) < 1e-9:
        return None
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    return (y0, y1, x0, x1), (i00, i01, -(i00 * b0 + i01 * b1), i10, i11, -(i10 * b0 + i11 * b1))


def cover(parts: np.ndarray, sp: body.Sprite, box, inv, xs: np.ndarray, ys: np.ndarray,
          flow: np.ndarray | None = None, row: list | None = None) -> None:
    """Pass 1: write ``sp.key`` into ``parts`` where the sprite's shape covers the pixel centre, and (if
    ``flow`` is given) the sprite's flow there, from its parameter ``row`` (see `params`): used for the
    background distractors, whose flow is needed behind the subjects too.

    Capsule: with t = clip(u / L, 0, 1) and r(t) = r0 + (r1 - r0) t, the points with
    ((u - t L) / cap)^2 + v^2 <= r(t)^2 -- a band of half-width r(u/L) along the bone closed by
    elliptic caps (semi-axes cap*r, r) at the ends. Ellipse: (u / r0)^2 + (v / r1)^2 <= 1.
    u and v are row + column sums (the map is affine), one full-size operation each.
    """
    y0, y1, x0, x1 = box
    i00, i01, cu, i10, i11, cv = inv
    X = xs[x0:x1][None, :]
    Y = ys[y0:y1][:, None]
    u = f32(i00) * X + (f32(i01) * Y + f32(cu))
    v = f32(i10) * X + (f32(i11) * Y + f32(cv))
    v2 = v * v
    if sp.shape == "capsule":
        L = sp.length
        t = np.minimum(np.maximum(u, f32(0.0)), f32(L))  # t * L
        du = u - t
        if sp.cap != 1.0:
            du *= f32(1.0 / sp.cap)
        r = f32(sp.r0) + f32((sp.r1 - sp.r0) / L) * t
        inside = du * du + v2 <= r * r
    else:
        inside = (u * f32(1.0 / sp.r0)) ** 2 + v2 * f32(1.0 / (sp.r1 * sp.r1)) <= 1.0
    np.copyto(parts[y0:y1, x0:x1], np.int16(sp.key), where=inside)
    if flow is not None:
        D00, D01, c0, D10, D11, c1 = row[FLOW:FLOW + 6]
        np.copyto(flow[y0:y1, x0:x1, 0], f32(D00) * X + (f32(D01) * Y + f32(c0)), where=inside)
        np.copyto(flow[y0:y1, x0:x1, 1], f32(D10) * X + (f32(D11) * Y + f32(c1)), where=inside)


def params(sp: body.Sprite, inv, nxt: body.Sprite | None, markers: bool) -> tuple[list, list]:
    """Row of the parameter table (NCOL floats) and colour matrix (12 floats: base, wave 1, wave 2, ramp
    colours) of sprite ``sp`` with inverse map ``inv``; ``nxt`` is the same part one frame later (flow) or None.

    colour = shade * ((1 - w) * (base + sum_i sin(k_i . (u, v) + phase_i) * col_i) + w * ramp_col), with
    w a linear ramp along u (sleeve/trouser ends, hair) and shade = 1 - s * min(rel2, 1), rel2 =
    (|v| / half-width)^2 for a capsule and the ellipse's (u / r0)^2 + (v / r1)^2 (cylindrical shading).
    """
    # Python lists (a few dozen scalars; NumPy's per-item cost would dominate), one array per frame
    row = [0.0] * NCOL
    cols = [0.0] * 12
    row[I00:CV + 1] = inv
    if sp.shape == "capsule":
        row[RA], row[RK], row[LCLIP] = sp.r0, (sp.r1 - sp.r0) / sp.length, sp.length
        if markers:
            # a dot of radius 0.6 * r at the middle of the part; subtractive so that the difference with
            # an unmarked render is the dot's weight alone
            R = 0.6 * min(sp.r0, sp.r1)
            row[MARK], row[MARK_U], row[MARK_R] = 1.0, sp.length / 2, 1.0 / (R * R)
    else:
        row[RA], row[EU] = sp.r1, 1.0 / sp.r0
    tex = sp.tex
    row[SHADE] = tex["shade"]
    cols[0:3] = tex["base"].tolist()
    if tex["ramp"] is not None:
        _, start, width, col = tex["ramp"]
        row[RAMP_G], row[RAMP_C] = 1.0 / width, -start / width
        cols[9:12] = col.tolist()
    for i, (kx, ky, ph, col) in enumerate(tex["pattern"] or ()):
        row[WAVE1 + 3 * i:WAVE1 + 3 * i + 3] = kx, ky, ph
        cols[3 + 3 * i:6 + 3 * i] = col.tolist()
    if nxt is not None:
        # flow = (A' - A) A^-1 (p - b) + (b' - b): exactly 0 for a part that does not move
        i00, i01, _, i10, i11, _ = inv
        (n00, n01), (n10, n11) = (nxt.A - sp.A).tolist()
        d0, d1 = (nxt.b - sp.b).tolist()
        b0, b1 = sp.b.tolist()
        D00, D01 = n00 * i00 + n01 * i10, n00 * i01 + n01 * i11
        D10, D11 = n10 * i00 + n11 * i10, n10 * i01 + n11 * i11
        row[FLOW:FLOW + 6] = D00, D01, d0 - (D00 * b0 + D01 * b1), D10, D11, d1 - (D10 * b0 + D11 * b1)
    return row, cols


class Table:
    """Per-sprite parameters of one frame, gathered per pixel by the sprite's key."""

    def __init__(self):
        self.keys, self.rows, self.cols = [], [], []

    def add(self, key: int, row: list, cols: list) -> None:
        self.keys.append(key)
        self.rows.append(row)
        self.cols.append(cols)

    def freeze(self) -> None:
        self.slot = np.zeros(KEY_LUT_SIZE, np.intp)
        self.slot[self.keys] = np.arange(len(self.keys))
        # one row per sprite: gathering rows (axis 0) copies NCOL values per pixel at once, ~10x faster
        # than NumPy's gather along axis 1 (see _pixels)
        self.T = np.array(self.rows, np.float32)  # [S, NCOL]
        self.C = np.array(self.cols, np.float32)  # [S, 12]


def _pixels(ids: np.ndarray, tab: Table):
    """Flat indices of the pixels with an id, their sprites' table slots, their (X, Y) as float32, and
    their sprites' parameters [NCOL, N]."""
    W = ids.shape[1]
    flat = np.flatnonzero(ids.ravel() != 0)  # NumPy's nonzero has a fast path for bool only (~4x)
    if flat.size == 0:
        return flat, None, None, None, None
    slot = tab.slot[ids.ravel()[flat]]
    # gather whole rows (NCOL values per pixel), then transpose with OpenCV so that each parameter is
    # a contiguous [N] row: ~5x faster than NumPy's gather along axis 1 or its transposing copy
    Q = cv2.transpose(np.take(tab.T, slot, axis=0))
    Y, X = np.divmod(flat, W)
    return flat, slot, X.astype(np.float32), Y.astype(np.float32), Q


def shade(rgba: np.ndarray, parts: np.ndarray, instances: np.ndarray, flow: np.ndarray | None,
          tab: Table, subject_of_key: np.ndarray, markers: bool) -> None:
    """Pass 2: colour of every pixel ``parts`` covers, into ``rgba`` [H, W, 4] uint8 (4-byte pixels are
    written by one uint32 scatter, ~8x faster than 3-byte rows; the alpha byte is garbage), its subject
    id into ``instances``, and (if ``flow`` is given) the world flow of the subject pixels.
    ``subject_of_key``: subject id per key (0 for distractors). Parameters: see `params`."""
    H, W = parts.shape
    flat, slot, X, Y, Q = _pixels(parts, tab)
    if flat.size == 0:
        return
    u = Q[I00] * X + (Q[I01] * Y + Q[CU])
    v = Q[I10] * X + (Q[I11] * Y + Q[CV])
    v2 = v * v
    r = Q[RA] + Q[RK] * np.minimum(np.maximum(u, f32(0.0)), Q[LCLIP])
    eu = u * Q[EU]
    rel2 = eu * eu + v2 / (r * r)
    sh = f32(1.0) - Q[SHADE] * np.minimum(rel2, f32(1.0))
    w = np.minimum(np.maximum(u * Q[RAMP_G] + Q[RAMP_C], f32(0.0)), f32(1.0))
    F = np.empty((4, flat.size), np.float32)  # per-pixel weights of the 4 colours of `params`
    np.multiply(w, sh, out=F[3])
    np.subtract(sh, F[3], out=F[0])  # (1 - w) * shade multiplies the garment terms
    for i, base in enumerate((WAVE1, WAVE2)):
        ph = Q[base] * u + (Q[base + 1] * v + Q[base + 2])
        np.multiply(np.sin(ph, out=ph), F[0], out=F[1 + i])
    C = cv2.transpose(np.take(tab.C, slot, axis=0))  # [12, N]: colour k, channel c in row 3 k + c
    col = np.empty((3, flat.size), np.float32)
    for c in range(3):
        np.multiply(F[0], C[c], out=col[c])
        for k in (1, 2, 3):
            col[c] += F[k] * C[3 * k + c]
    if markers:
        du = u - Q[MARK_U]
        d2 = (du * du + v2) * Q[MARK_R]
        col -= (f32(60.0) * Q[MARK]) * np.maximum(f32(1.0) - d2, f32(0.0))
        # bases and amplitudes keep unmarked colours within [10, 250] (see make_appearance and
        # _distractor_params), so only a marker can leave the uint8 range
        np.maximum(col, f32(0.0), out=col)
        np.minimum(col, f32(255.0), out=col)
    col += f32(0.5)  # truncation to uint8 then rounds to nearest
    c8 = col.astype(np.uint8)
    px = cv2.merge([c8[0], c8[1], c8[2], c8[0]])  # [N, 1, 4]; the 4th byte lands in the unused alpha
    rgba.view(np.uint32).reshape(H * W)[flat] = px.view(np.uint32).reshape(-1)
    # subjects: ids, and their world flow
    sub = subject_of_key[parts.ravel()[flat]]
    if flow is not None:
        # the float32 expression that a sprite's box evaluates as row + column: D00 x + (D01 y + c0)
        fx = Q[FLOW] * X + (Q[FLOW + 1] * Y + Q[FLOW + 2])
        fy = Q[FLOW + 3] * X + (Q[FLOW + 4] * Y + Q[FLOW + 5])
    is_sub = sub > 0
    if not is_sub.all():  # distractor pixels: no subject id, no world flow
        flat, sub = flat[is_sub], sub[is_sub]
        if flow is not None:
            fx, fy = fx[is_sub], fy[is_sub]
    instances.ravel()[flat] = sub
    if flow is not None:
        f2 = flow.reshape(H * W, 2)
        f2[flat, 0] = fx
        f2[flat, 1] = fy
