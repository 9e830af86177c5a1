"""CuPy backend of the skeleton family: ``torch.ops.hmore_cupy.{skeleton_points, _skeleton_points_backward,
skeleton_match, skeleton_offset_map}``, the kernels of ``csrc/skeleton/skeleton_cuda.cu``, the work of
``skeleton_cuda.cpp`` here: float16/bfloat16 points are converted to float32 (coordinates and costs are
float32, docs/ops.md) and the results rounded back; float32 and float64 run natively. The per-point weights are
computed by the reference's ``point_weights`` (the same ATen sequence as the C++ glue's), in float64.
"""
from __future__ import annotations

import torch

from ..reference.skeleton import point_weights
from ._launch import launcher
from ._ops import cuda_tensor, define_family

SKELETON = "skeleton/skeleton_cuda.cu"
THREADS = 256  # skeleton_cuda.cu


def _ct(dtype):
    if not dtype.is_floating_point:
        raise TypeError(f"expected a floating-point tensor, got {dtype}")
    return torch.float64 if dtype == torch.float64 else torch.float32


def _c(ct):
    return "double" if ct == torch.float64 else "float"


def grid_1d(total: int) -> int:
    """skeleton_cuda.cu's grid_1d: blocks of 256, at most 65536 * 8 (grid-stride past that)."""
    return max(1, min((total + THREADS - 1) // THREADS, 65536 * 8))


def _bones(bones, J):
    if bones.dim() != 2 or bones.shape[1] != 2:
        raise ValueError(f"bones: expected a 2-D tensor [E, 2] of joint indices, got shape {tuple(bones.shape)}")
    if bones.dtype.is_floating_point or bones.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise TypeError(f"bones: expected an integer tensor (int64), got {bones.dtype}")
    b = bones.to("cpu", torch.int64).contiguous()  # read back once, like the C++ glue
    if b.numel() and (int(b.min()) < 0 or int(b.max()) >= J):
        bad = int(((b < 0) | (b >= J)).nonzero()[0, 0])
        raise ValueError(f"bones: expected joint indices in [0, {J}) (J = {J} joints), got {b[bad].tolist()} in bone {bad}")
    return b


def _points_per_bone(n):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"points_per_bone: expected an int >= 1, got {n!r}")


def skeleton_points(joints, conf, bones, points_per_bone: int = 8):
    cuda_tensor(joints, "joints")
    cuda_tensor(conf, "conf", like=joints)
    if joints.dim() != 3 or joints.shape[2] != 2:
        raise ValueError(f"joints: expected a 3-D tensor [B, J, 2], got shape {tuple(joints.shape)}")
    if tuple(conf.shape) != tuple(joints.shape[:2]):
        raise ValueError(f"conf: expected shape [{joints.shape[0]}, {joints.shape[1]}] like joints, got {tuple(conf.shape)}")
    _points_per_bone(points_per_bone)
    B, J, _ = joints.shape
    n = points_per_bone
    bl = _bones(bones, J)
    E = bl.shape[0]
    if E * n >= 2**31:
        raise ValueError(f"points_per_bone: expected E * points_per_bone < 2^31, got {E} * {n}")
    ct = _ct(joints.dtype)
    bone = torch.arange(E, device=joints.device).repeat_interleave(n)
    pts = joints.new_empty((B, E * n, 2), dtype=ct)
    pc = joints.new_empty((B, E * n), dtype=ct)
    if pts.numel() > 0:
        jc, cc = joints.to(ct).contiguous(), conf.to(ct).contiguous()
        launcher()(SKELETON, f"points_forward_kernel<{_c(ct)}>", (grid_1d(B * E * n),), (THREADS,),
                   [jc, cc, bl.to(joints.device), B, J, E, n, pts, pc], device=joints.device)
    return pts.to(joints.dtype), pc.to(joints.dtype), bone


def skeleton_points_backward(grad_points, grad_conf, bones, num_joints: int, points_per_bone: int):
    cuda_tensor(grad_points, "grad_points")
    cuda_tensor(grad_conf, "grad_conf", like=grad_points)
    _points_per_bone(points_per_bone)
    if not 0 <= num_joints < 2**31:
        raise ValueError(f"num_joints: expected an int in [0, 2^31), got {num_joints}")
    bl = _bones(bones, num_joints)
    B, E, n, J = grad_points.shape[0], bl.shape[0], points_per_bone, num_joints
    if grad_points.dim() != 3 or tuple(grad_points.shape[1:]) != (E * n, 2):
        raise ValueError(f"grad_points: expected shape [{B}, {E * n}, 2] (E = {E} bones x {n} points), "
                         f"got {tuple(grad_points.shape)}")
    if tuple(grad_conf.shape) != (B, E * n):
        raise ValueError(f"grad_conf: expected shape [{B}, {E * n}], got {tuple(grad_conf.shape)}")
    ct = _ct(grad_points.dtype)
    gj = grad_points.new_empty((B, J, 2), dtype=ct)
    gc = grad_points.new_empty((B, J), dtype=ct)
    if gj.numel() > 0:
        gpc, gcc = grad_points.to(ct).contiguous(), grad_conf.to(ct).contiguous()
        launcher()(SKELETON, f"points_backward_kernel<{_c(ct)}>", (grid_1d(B * J),), (THREADS,),
                   [gpc, gcc, bl.to(grad_points.device), B, J, E, n, gj, gc], device=grad_points.device)
    return gj.to(grad_points.dtype), gc.to(grad_points.dtype)


def _match_args(points, points1, conf, mask, eps, op):
    cuda_tensor(points, "points")
    for t, name in ((points1, "points_t1"), (conf, "conf"), (mask, "mask")):
        if t is not None:
            cuda_tensor(t, name, like=points)
    if points.dim() != 3 or points.shape[2] != 2:
        raise ValueError(f"points: expected a 3-D tensor [B, Q, 2], got shape {tuple(points.shape)}")
    if points1 is not None and points1.shape != points.shape:
        raise ValueError(f"points_t1: expected shape {tuple(points.shape)} like points_t, got {tuple(points1.shape)}")
    if tuple(conf.shape) != tuple(points.shape[:2]):
        raise ValueError(f"conf: expected shape {list(points.shape[:2])}, got {tuple(conf.shape)}")
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != points.shape[0]:
        raise ValueError(f"mask: expected a 4-D tensor [{points.shape[0]}, 1, H, W], got shape {tuple(mask.shape)}")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps: expected a float in (0, 0.5), got {eps}")
    for t, name in ((points, "points"), (points1, "points_t1"), (conf, "conf"), (mask, "mask")):
        if t is not None and t.requires_grad:
            raise ValueError(f"{name}: {op} produces training targets and has no gradient; pass {name}.detach()")


def _match(points, points1, conf, mask, eps, idx, off, valid):
    B, Q, _ = points.shape
    H, W = mask.shape[2], mask.shape[3]
    ct = _ct(points.dtype)
    p0 = points.to(ct).contiguous()
    p1 = points1.to(ct).contiguous() if points1 is not None else None
    w = point_weights(conf, eps, ct).contiguous()
    m = (mask if mask.dtype in (torch.bool, torch.uint8) else mask.ne(0)).contiguous()
    HW = H * W
    launcher()(SKELETON, f"match_kernel<{_c(ct)}>", ((HW + THREADS - 1) // THREADS, min(B, 65535)), (THREADS,),
               [p0, p1, w, m, B, Q, H, W, idx, off, valid], device=points.device)


def skeleton_match(points, conf, mask, eps: float = 1e-4):
    _match_args(points, None, conf, mask, eps, "skeleton_match")
    idx = points.new_empty((points.shape[0], mask.shape[2], mask.shape[3]), dtype=torch.int64)
    if idx.numel() > 0:
        _match(points, None, conf, mask, eps, idx, None, None)
    return idx


def skeleton_offset_map(points_t, points_t1, conf, mask, eps: float = 1e-4):
    _match_args(points_t, points_t1, conf, mask, eps, "skeleton_offset_map")
    B, H, W = points_t.shape[0], mask.shape[2], mask.shape[3]
    ct = _ct(points_t.dtype)
    off = points_t.new_empty((B, 2, H, W), dtype=ct)
    valid = points_t.new_empty((B, 1, H, W), dtype=torch.bool)
    if valid.numel() > 0:
        _match(points_t, points_t1, conf, mask, eps, None, off, valid)
    return off.to(points_t.dtype), valid


OPS = {"skeleton_points": skeleton_points, "_skeleton_points_backward": skeleton_points_backward,
       "skeleton_match": skeleton_match, "skeleton_offset_map": skeleton_offset_map}


from .. import _meta_skeleton  # noqa: E402

define_family(OPS, _meta_skeleton.register)
