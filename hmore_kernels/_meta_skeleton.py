"""Fake kernels and autograd of the skeleton family, for namespace ``ns`` (hmore or hmore_triton).

Called once ``_C`` has loaded (ns="hmore"), and by hmore_kernels/triton/skeleton.py (ns="hmore_triton",
fake=INTERPRET: triton_op registers its own body as the fake kernel on a GPU).

Only ``skeleton_points`` is differentiable; its backward is the op ``_skeleton_points_backward`` (first
order). ``skeleton_match`` / ``skeleton_offset_map`` produce training targets and have no autograd
formula (the kernels reject inputs that require grad).
"""
from __future__ import annotations

import torch


def register(ns: str, fake: bool = True, lib=None) -> None:
    ops = getattr(torch.ops, ns)
    if fake:
        reg = lambda name: torch.library.register_fake(f"{ns}::{name}", lib=lib)  # noqa: E731

        @reg("skeleton_points")
        def _(joints, conf, bones, points_per_bone=8):
            B = joints.shape[0]
            En = bones.shape[0] * points_per_bone
            return (joints.new_empty(B, En, 2), conf.new_empty(B, En),
                    joints.new_empty(En, dtype=torch.int64))

        @reg("_skeleton_points_backward")
        def _(grad_points, grad_conf, bones, num_joints, points_per_bone):
            B = grad_points.shape[0]
            return grad_points.new_empty(B, num_joints, 2), grad_points.new_empty(B, num_joints)

        @reg("skeleton_match")
        def _(points, conf, mask, eps=1e-4):
            B, _, H, W = mask.shape
            return points.new_empty(B, H, W, dtype=torch.int64)

        @reg("skeleton_offset_map")
        def _(points_t, points_t1, conf, mask, eps=1e-4):
            B, _, H, W = mask.shape
            return points_t.new_empty(B, 2, H, W), points_t.new_empty(B, 1, H, W, dtype=torch.bool)

    def sp_setup(ctx, inputs, output):
        joints, _, bones, ctx.n = inputs
        ctx.num_joints = joints.shape[1]
        ctx.save_for_backward(bones)

    def sp_bwd(ctx, grad_points, grad_conf, grad_bone):
        (bones,) = ctx.saved_tensors
        gj, gc = ops._skeleton_points_backward(grad_points, grad_conf, bones, ctx.num_joints, ctx.n)
        return gj, gc, None, None

    torch.library.register_autograd(f"{ns}::skeleton_points", sp_bwd, setup_context=sp_setup, lib=lib)
