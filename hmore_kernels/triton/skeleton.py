"""Triton backend of the skeleton family (docs/ops.md §4, §5): ``torch.ops.hmore_triton.<op>``.

On a GPU every op is a :func:`torch.library.triton_op` launching its kernels through
:func:`torch.library.wrap_triton` (the body is the fake kernel); under ``TRITON_INTERPRET=1`` the ops are
plain custom ops with the exact C++ schemas (``csrc/skeleton/skeleton.cpp``) and the fake kernels of
:mod:`hmore_kernels._meta_skeleton`, which also gives ``skeleton_points`` its autograd.

skeleton_match / skeleton_offset_map: one program per tile of ``BP`` pixels of one image, streaming the
points in blocks of ``BQ`` (a ``[BP, BQ]`` cost tile, never a ``[B, H*W, Q]`` matrix). Per block the
lexicographic minimum of (cost, index) over the points whose cost is not NaN is merged into the running
one, which equals the sequential scan of the CPU/CUDA kernels: first non-NaN cost taken, then only a
strictly smaller one, ties to the lowest index. The cost is evaluated as in skeleton_kernels.cuh:
``sqrt_rn(dx*dx + dy*dy) * w`` with each product rounded on its own (an explicit
PTX ``mul.rn``, which is never contracted into an FMA; the interpreter rounds every operation anyway) and the
correctly rounded square root (PTX ``sqrt.rn``; ``tl.sqrt`` is approximate in float32), both without
flush-to-zero, like the CUDA kernels. Tiles with no
pixel inside the mask skip the scan. float16/bfloat16 points are converted to float32 first.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from .. import _meta_skeleton
from ..reference.skeleton import bone_weights, point_weights
from ._common import INTERPRET, op_decorator

# The C++ schemas (csrc/skeleton/skeleton.cpp), verbatim.
_SCHEMAS = {
    "skeleton_points": "(Tensor joints, Tensor conf, Tensor bones, int points_per_bone=8) -> (Tensor, Tensor, Tensor)",
    "_skeleton_points_backward": "(Tensor grad_points, Tensor grad_conf, Tensor bones, int num_joints, "
    "int points_per_bone) -> (Tensor, Tensor)",
    "skeleton_match": "(Tensor points, Tensor conf, Tensor mask, float eps=1e-4) -> Tensor",
    "skeleton_offset_map": "(Tensor points_t, Tensor points_t1, Tensor conf, Tensor mask, float eps=1e-4) "
    "-> (Tensor, Tensor)",
}

_op = op_decorator(_SCHEMAS)
# libdevice cannot run in the interpreter, which rounds every product on its own anyway.
# A global constexpr, not a kernel argument: the AOT compile test records launches under the interpreter and
# compiles them in a process without it, where this reads True (as it does on a GPU).
_MUL_RN = tl.constexpr(not INTERPRET)


@triton.jit
def _mul(a, b):
    """a * b rounded on its own. On the GPU an explicit PTX mul.rn: never contracted into an FMA, and
    without the flush-to-zero of denormals that libdevice's mul_rn gets under Triton (the CPU and CUDA
    kernels keep denormals)."""
    if _MUL_RN:
        if a.dtype == tl.float64:
            return tl.inline_asm_elementwise("mul.rn.f64 $0, $1, $2;", "=d,d,d", [a, b], dtype=tl.float64,
                                             is_pure=True, pack=1)
        else:
            return tl.inline_asm_elementwise("mul.rn.f32 $0, $1, $2;", "=f,f,f", [a, b], dtype=tl.float32,
                                             is_pure=True, pack=1)
    else:
        return a * b


@triton.jit
def _sqrt(v):
    """The correctly rounded square root (PTX sqrt.rn, no flush-to-zero) on the GPU; tl.sqrt is approximate
    in float32 there. numpy's (correctly rounded) in the interpreter."""
    if _MUL_RN:
        if v.dtype == tl.float64:
            return tl.inline_asm_elementwise("sqrt.rn.f64 $0, $1;", "=d,d", [v], dtype=tl.float64, is_pure=True,
                                             pack=1)
        else:
            return tl.inline_asm_elementwise("sqrt.rn.f32 $0, $1;", "=f,f", [v], dtype=tl.float32, is_pure=True,
                                             pack=1)
    else:
        return tl.sqrt(v)


# ---- skeleton_points --------------------------------------------------------------------------------
@triton.jit
def _points_fwd_kernel(j_ptr, c_ptr, bones_ptr, s_ptr, t_ptr, pts_ptr, pc_ptr, J, E, N, TOTAL,
                       BLOCK: tl.constexpr):
    """pts[q] = s_k * joint_a + t_k * joint_b for flat q = (b*E + e)*N + k; the same for the confidence."""
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = q < TOTAL
    k = q % N
    be = q // N
    e = be % E
    b = be // E
    a = tl.load(bones_ptr + 2 * e, mask=ok, other=0)
    c = tl.load(bones_ptr + 2 * e + 1, mask=ok, other=0)
    s = tl.load(s_ptr + k, mask=ok, other=0)
    t = tl.load(t_ptr + k, mask=ok, other=0)
    ja = j_ptr + (b * J + a) * 2
    jb = j_ptr + (b * J + c) * 2
    x = _mul(s, tl.load(ja, mask=ok, other=0)) + _mul(t, tl.load(jb, mask=ok, other=0))
    y = _mul(s, tl.load(ja + 1, mask=ok, other=0)) + _mul(t, tl.load(jb + 1, mask=ok, other=0))
    cc = (_mul(s, tl.load(c_ptr + b * J + a, mask=ok, other=0))
          + _mul(t, tl.load(c_ptr + b * J + c, mask=ok, other=0)))
    tl.store(pts_ptr + 2 * q, x, mask=ok)
    tl.store(pts_ptr + 2 * q + 1, y, mask=ok)
    tl.store(pc_ptr + q, cc, mask=ok)


@triton.jit
def _points_bwd_kernel(gp_ptr, gc_ptr, bones_ptr, s_ptr, t_ptr, gj_ptr, gjc_ptr, J, E, N,
                       BJ: tl.constexpr):
    """Gather: joint j sums s_k * g over the points of bones starting at j and t_k * g over those ending
    at j, bones in order, points in order (the CPU kernel's order; s, t given in float64 so that a bone
    from j to j weighs s_k + t_k rounded once, as there)."""
    nblk = tl.cdiv(J, BJ)
    pid = tl.program_id(0)
    b = pid // nblk
    j = (pid % nblk) * BJ + tl.arange(0, BJ)
    ok = j < J
    dt = gj_ptr.dtype.element_ty
    ax = tl.zeros([BJ], dtype=dt)
    ay = tl.zeros([BJ], dtype=dt)
    ac = tl.zeros([BJ], dtype=dt)
    for e in range(0, E):
        a = tl.load(bones_ptr + 2 * e)
        c = tl.load(bones_ptr + 2 * e + 1)
        is_a = j == a
        is_b = j == c
        for k in range(0, N):
            s = tl.load(s_ptr + k)
            t = tl.load(t_ptr + k)
            w = (tl.where(is_a, s, 0.0) + tl.where(is_b, t, 0.0)).to(dt)
            q = (b * E + e) * N + k
            gx = tl.load(gp_ptr + 2 * q)
            gy = tl.load(gp_ptr + 2 * q + 1)
            g = tl.load(gc_ptr + q)
            ax += _mul(w, gx)
            ay += _mul(w, gy)
            ac += _mul(w, g)
    r = b * J + j
    tl.store(gj_ptr + 2 * r, ax, mask=ok)
    tl.store(gj_ptr + 2 * r + 1, ay, mask=ok)
    tl.store(gjc_ptr + r, ac, mask=ok)


def _compute_dtype(dt):
    return torch.float32 if dt in (torch.float16, torch.bfloat16) else dt


def _check_bones(bones: torch.Tensor, J: int) -> None:
    if bones.dim() != 2 or bones.shape[1] != 2:
        raise ValueError(f"bones: expected a 2-D tensor [E, 2] of joint indices, got shape {tuple(bones.shape)}")
    if bones.is_floating_point() or bones.is_complex() or bones.dtype == torch.bool:
        raise TypeError(f"bones: expected an integer tensor (int64), got {bones.dtype}")
    # the values are read only on real tensors (the body is also the fake kernel on a GPU)
    if not torch._subclasses.fake_tensor.is_fake(bones) and bones.numel():
        lo, hi = int(bones.min()), int(bones.max())
        if lo < 0 or hi >= J:
            raise ValueError(f"bones: expected joint indices in [0, {J}) (J = {J} joints), got values from {lo} to {hi}")


@_op("skeleton_points")
def skeleton_points(joints: torch.Tensor, conf: torch.Tensor, bones: torch.Tensor,
                    points_per_bone: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, J = joints.shape[0], joints.shape[1]
    if points_per_bone < 1:
        raise ValueError(f"points_per_bone: expected an int >= 1, got {points_per_bone}")
    _check_bones(bones, J)
    E, n = bones.shape[0], points_per_bone
    dev = joints.device
    bone = torch.arange(E, device=dev, dtype=torch.int64).repeat_interleave(n)
    ct = _compute_dtype(joints.dtype)
    pts = torch.empty((B, E * n, 2), dtype=ct, device=dev)
    pc = torch.empty((B, E * n), dtype=ct, device=dev)
    total = B * E * n
    if total > 0:
        s, t = bone_weights(n, ct, dev)
        BLOCK = 256
        wrap_triton(_points_fwd_kernel)[(triton.cdiv(total, BLOCK),)](
            joints.to(ct).contiguous(), conf.to(ct).contiguous(), bones.to(device=dev, dtype=torch.int64).contiguous(),
            s, t, pts, pc, J, E, n, total, BLOCK)
    return pts.to(joints.dtype), pc.to(joints.dtype), bone


@_op("_skeleton_points_backward")
def _skeleton_points_backward(grad_points: torch.Tensor, grad_conf: torch.Tensor, bones: torch.Tensor,
                              num_joints: int, points_per_bone: int) -> tuple[torch.Tensor, torch.Tensor]:
    B, J, n = grad_points.shape[0], num_joints, points_per_bone
    _check_bones(bones, J)
    E = bones.shape[0]
    if grad_points.shape[1] != E * n:
        raise ValueError(f"grad_points: expected shape [{B}, {E * n}, 2] (E = {E} bones x {n} points), "
                         f"got {tuple(grad_points.shape)}")
    dev = grad_points.device
    ct = _compute_dtype(grad_points.dtype)
    gj = torch.empty((B, J, 2), dtype=ct, device=dev)
    gc = torch.empty((B, J), dtype=ct, device=dev)
    if B * J > 0:
        s, t = bone_weights(n, torch.float64, dev)
        BJ = min(32, triton.next_power_of_2(max(J, 1)))
        wrap_triton(_points_bwd_kernel)[(B * triton.cdiv(J, BJ),)](
            grad_points.to(ct).contiguous(), grad_conf.to(ct).contiguous(),
            bones.to(device=dev, dtype=torch.int64).contiguous(), s, t, gj, gc, J, E, n, BJ)
    return gj.to(grad_points.dtype), gc.to(grad_points.dtype)


# ---- skeleton_match / skeleton_offset_map -----------------------------------------------------------
@triton.jit
def _match_kernel(pts_ptr, pts1_ptr, w_ptr, mask_ptr, idx_ptr, off_ptr, valid_ptr, Q, H, W,
                  HAS_IDX: tl.constexpr, HAS_OFF: tl.constexpr,
                  BP: tl.constexpr, BQ: tl.constexpr):
    """One program: BP consecutive pixels (row-major) of image b. pts [B, Q, 2], w [B, Q] (NaN =
    excluded), mask bytes [B, H*W]; idx [B, H*W] int64; off [B, 2, H*W], valid bytes [B, H*W]."""
    HW = H * W
    ntile = tl.cdiv(HW, BP)
    pid = tl.program_id(0)
    b = pid // ntile
    pix = (pid % ntile) * BP + tl.arange(0, BP)
    ok = pix < HW
    inside = ok & (tl.load(mask_ptr + b.to(tl.int64) * HW + pix, mask=ok, other=0) != 0)
    dt = pts_ptr.dtype.element_ty
    px = (pix % W).to(dt)
    py = (pix // W).to(dt)
    best = tl.full([BP], float("inf"), dt)
    bi = tl.full([BP], -1, tl.int32)
    BIG: tl.constexpr = 2147483647
    if tl.sum(inside.to(tl.int32), axis=0) > 0:
        pbase = pts_ptr + b.to(tl.int64) * Q * 2
        wbase = w_ptr + b.to(tl.int64) * Q
        for q0 in range(0, Q, BQ):
            qs = q0 + tl.arange(0, BQ)
            qm = qs < Q
            qx = tl.load(pbase + 2 * qs, mask=qm, other=0.0)
            qy = tl.load(pbase + 2 * qs + 1, mask=qm, other=0.0)
            w = tl.load(wbase + qs, mask=qm, other=float("nan"))
            dx = px[:, None] - qx[None, :]
            dy = py[:, None] - qy[None, :]
            cost = _sqrt(_mul(dx, dx) + _mul(dy, dy)) * w[None, :]
            counts = cost == cost
            filled = tl.where(counts, cost, float("inf"))
            bmin = tl.min(filled, axis=1)
            barg = tl.min(tl.where(counts & (filled == bmin[:, None]), qs[None, :], BIG), axis=1)
            take = (barg < BIG) & ((bi < 0) | (bmin < best))
            best = tl.where(take, bmin, best)
            bi = tl.where(take, barg, bi)
    bi = tl.where(inside, bi, -1)
    obase = b.to(tl.int64) * HW + pix
    if HAS_IDX:
        tl.store(idx_ptr + obase, bi.to(tl.int64), mask=ok)
    if HAS_OFF:
        found = bi >= 0
        qsafe = tl.where(found, bi, 0)
        src = b.to(tl.int64) * Q * 2 + 2 * qsafe
        ox = tl.load(pts1_ptr + src, mask=ok & found, other=0.0) - tl.load(pts_ptr + src, mask=ok & found, other=0.0)
        oy = (tl.load(pts1_ptr + src + 1, mask=ok & found, other=0.0)
              - tl.load(pts_ptr + src + 1, mask=ok & found, other=0.0))
        ob = b.to(tl.int64) * 2 * HW + pix
        tl.store(off_ptr + ob, ox, mask=ok)
        tl.store(off_ptr + ob + HW, oy, mask=ok)
        tl.store(valid_ptr + obase, found.to(tl.uint8), mask=ok)


def _check_match(pts, pn, conf, mask, eps, pts1=None):
    if pts.dim() != 3 or pts.shape[2] != 2:
        raise ValueError(f"{pn}: expected a 3-D tensor [B, Q, 2] of (x, y), got shape {tuple(pts.shape)}")
    if not pts.is_floating_point():
        raise TypeError(f"{pn}: expected a floating-point tensor, got {pts.dtype}")
    if tuple(conf.shape) != tuple(pts.shape[:2]):
        raise ValueError(f"conf: expected shape [{pts.shape[0]}, {pts.shape[1]}] to match {pn}, got {tuple(conf.shape)}")
    if pts1 is not None and tuple(pts1.shape) != tuple(pts.shape):
        raise ValueError(f"points_t1: expected shape {tuple(pts.shape)} like {pn}, got {tuple(pts1.shape)}")
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != pts.shape[0]:
        raise ValueError(f"mask: expected a 4-D tensor [{pts.shape[0]}, 1, H, W], got shape {tuple(mask.shape)}")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps: expected a float in (0, 0.5), got {eps!r}")


def _match(pts, pts1, conf, mask, eps, idx, off, valid):
    B, Q = pts.shape[0], pts.shape[1]
    H, W = mask.shape[2], mask.shape[3]
    ct = _compute_dtype(pts.dtype)
    p0 = pts.to(ct).contiguous()
    p1 = pts1.to(ct).contiguous() if pts1 is not None else p0
    w = point_weights(conf, eps, ct)
    m = mask if mask.dtype in (torch.bool, torch.uint8) else mask != 0
    m = m.contiguous()
    if m.dtype == torch.bool:
        m = m.view(torch.uint8)
    BP, BQ = 128, 32
    grid = (B * triton.cdiv(H * W, BP),)
    wrap_triton(_match_kernel)[grid](
        p0, p1, w, m, idx if idx is not None else m, off if off is not None else p0,
        valid.view(torch.uint8) if valid is not None else m, Q, H, W, idx is not None, off is not None,
        BP, BQ)


@_op("skeleton_match")
def skeleton_match(points: torch.Tensor, conf: torch.Tensor, mask: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    _check_match(points, "points", conf, mask, eps)
    B, H, W = points.shape[0], mask.shape[2], mask.shape[3]
    idx = torch.empty((B, H, W), dtype=torch.int64, device=points.device)
    if idx.numel() > 0:
        _match(points, None, conf, mask, eps, idx, None, None)
    return idx


@_op("skeleton_offset_map")
def skeleton_offset_map(points_t: torch.Tensor, points_t1: torch.Tensor, conf: torch.Tensor, mask: torch.Tensor,
                        eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    _check_match(points_t, "points_t", conf, mask, eps, pts1=points_t1)
    B, H, W = points_t.shape[0], mask.shape[2], mask.shape[3]
    ct = _compute_dtype(points_t.dtype)
    off = torch.empty((B, 2, H, W), dtype=ct, device=points_t.device)
    valid = torch.empty((B, 1, H, W), dtype=torch.bool, device=points_t.device)
    if valid.numel() > 0:
        _match(points_t, points_t1, conf, mask, eps, None, off, valid)
    return off.to(points_t.dtype), valid


_meta_skeleton.register("hmore_triton", fake=INTERPRET)
