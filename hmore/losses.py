"""The H-MoRe training signal (docs/method.md): one plain function per term, each usable on its own in any flow
network, then :class:`HMoReLoss`, which combines them for the H-MoRe model.

Every term takes ``backend=`` (default "auto"), passed to the ``hmore_kernels`` ops it calls, and returns a
scalar: the mean over the batch of a per-sample value (``reduction="none"`` gives the ``[B]`` values). A
sample where a term is undefined (no matched pixel, no background, no ground truth) contributes 0 to the
batch mean rather than being dropped from it, so that the mean over a batch split across processes (DDP)
equals the mean over the whole batch.

Terms:
* :func:`skeleton_loss` (F, [paper] with hinge surrogates [ours]): the flow at every body pixel against the
  skeleton offset of its confidence-weighted nearest skeleton point (``skeleton_offset_map``).
* :func:`boundary_loss` (G, [paper]; ours: the maps compared): ``flow_edges`` of the flow against
  ``mask_boundary`` of the mask through ``patch_centroid_chamfer``.
* :func:`background_loss` [ours]: mean flow magnitude outside the dilated mask.
* :func:`subject_motion_loss` [ours]: ``v_s`` against the confidence-weighted torso offset.
* :func:`subject_map_loss` [ours]: BCE of the subject map against the mask.
* :func:`epe_loss` [ours]: end-point error against exact flow, only for samples that have it (synthetic).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import hmore_kernels as hk
from hmore_kernels.layouts import COCO17

from .data.synthetic import TORSO_JOINTS, subject_motion_from_keypoints  # COCO-17 shoulders and hips: the generator's v_s uses the same joints

__all__ = [
    "skeleton_targets", "skeleton_hinge", "skeleton_loss", "boundary_loss", "background_loss",
    "subject_motion_target", "subject_motion_loss", "subject_map_loss", "epe_loss", "iteration_weights", "HMoReLoss",
    "TORSO_JOINTS",
]

_REDUCTIONS = ("mean", "sum", "none")
_MIN_FLOW = 1e-3  # px: the floor of |u| in the angle of skeleton_hinge


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean() if per_sample.numel() else per_sample.sum()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _check_flow(flow, name="flow"):
    if not isinstance(flow, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [B, 2, H, W], got {type(flow).__name__}")
    if flow.dim() != 4 or flow.shape[1] != 2 or not flow.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor [B, 2, H, W], got {flow.dtype} {tuple(flow.shape)}")


def _check_mask(mask, flow, name="mask"):
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [B, 1, H, W], got {type(mask).__name__}")
    B, _, H, W = flow.shape
    if tuple(mask.shape) != (B, 1, H, W):
        raise ValueError(f"{name}: expected shape {(B, 1, H, W)} to match the flow, got {tuple(mask.shape)}")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")


def _norm(v: torch.Tensor, dim: int = 1, keepdim: bool = False) -> torch.Tensor:
    # the L2 norm whose gradient at 0 is 0 (torch.linalg.vector_norm's subgradient), not NaN
    return torch.linalg.vector_norm(v, dim=dim, keepdim=keepdim)


# ------------------------------------------------------------------------------------------ skeleton (F)
def skeleton_targets(keypoints0: torch.Tensor, keypoints1: torch.Tensor, conf0: torch.Tensor, conf1: torch.Tensor,
                     points_per_bone: int = 8, bones=COCO17, *, backend: str = "auto"):
    """Skeleton points of both frames for :func:`skeleton_loss`, every person's skeleton concatenated.

    Args:
        keypoints0, keypoints1: ``[B, P, J, 2]`` (or ``[B, J, 2]``) joints (x, y) px at t and t+1.
        conf0, conf1: ``[B, P, J]`` (or ``[B, J]``) confidences in [0, 1].
        points_per_bone: n_k (default 8, [ours]); bones: a layout (default COCO-17).
    Returns:
        ``(points_t [B, Q, 2], points_t1 [B, Q, 2], conf [B, Q])`` with ``Q = P * E * n``; a point's
        confidence is the lower of its two frames' interpolated confidences [ours]: an offset is only as
        reliable as its less reliable end (a joint that left the frame at t+1 has confidence 0 there).
    """
    if keypoints0.dim() == 3:
        keypoints0, keypoints1, conf0, conf1 = (t.unsqueeze(1) for t in (keypoints0, keypoints1, conf0, conf1))
    B, P, J, _ = keypoints0.shape
    flat = lambda t: t.reshape(B * P, *t.shape[2:])  # noqa: E731
    p0, c0, _ = hk.skeleton_points(flat(keypoints0), flat(conf0), bones, points_per_bone, backend=backend)
    p1, c1, _ = hk.skeleton_points(flat(keypoints1), flat(conf1), bones, points_per_bone, backend=backend)
    Q = p0.shape[1]
    return p0.reshape(B, P * Q, 2), p1.reshape(B, P * Q, 2), torch.minimum(c0, c1).reshape(B, P * Q)


def skeleton_hinge(flow: torch.Tensor, offset: torch.Tensor, valid: torch.Tensor, angle_tol_deg: float = 15.0,
                   magnitude_range=(0.8, 1.2), intensity_weight: float = 0.01, min_offset: float = 0.5,
                   reduction: str = "mean") -> torch.Tensor:
    """F from a precomputed skeleton offset map (what :func:`skeleton_loss` computes after the match).

    Per matched pixel p with flow u and offset k [paper, hinges ours]:
    ``F_A = max(0, cos(angle_tol) - cos∠(u, k))`` where ``|k| >= min_offset`` (the angle is undefined for a
    smaller offset; ``|u|`` is floored at 1e-3 px in the angle, so ``u = 0`` counts as perpendicular and
    has a gradient toward ``k``), ``F_I = max(0, lo|k| - |u|) + max(0, |u| - hi|k|)``;
    ``F = mean_p [F_A + intensity_weight * F_I]`` per image (0 for an image with no matched pixel).

    Args: flow ``[B, 2, H, W]``; offset ``[B, 2, H, W]``; valid bool ``[B, 1, H, W]``.
    Returns: scalar (``reduction`` "mean"/"sum") or ``[B]`` ("none"), float32 for float32 flow.
    """
    _check_flow(flow)
    _check_reduction(reduction)
    lo, hi = magnitude_range
    k = offset.to(flow.dtype)
    nk = _norm(k)  # [B, H, W]
    nu = _norm(flow)
    dot = (flow * k).sum(1)
    # cos of the angle, exact for |u| >= 1e-3 px. Below, |u| is floored at 1e-3 px: a zero flow counts as
    # perpendicular (cos 0) and still gets a gradient toward k (with the plain norm it would get none,
    # and a flow stuck at 0 would never move)
    cos = dot / (nu.clamp_min(_MIN_FLOW) * nk).clamp_min(torch.finfo(flow.dtype).tiny)
    f_a = torch.clamp(math.cos(math.radians(angle_tol_deg)) - cos, min=0.0)
    f_a = torch.where(nk >= min_offset, f_a, torch.zeros_like(f_a))
    f_i = torch.clamp(lo * nk - nu, min=0.0) + torch.clamp(nu - hi * nk, min=0.0)
    per_px = f_a + intensity_weight * f_i
    v = valid.squeeze(1).to(flow.dtype)
    n = v.flatten(1).sum(1)
    per_sample = (per_px * v).flatten(1).sum(1) / n.clamp_min(1.0)
    return _reduce(per_sample, reduction)


def skeleton_loss(flow: torch.Tensor, points_t: torch.Tensor, points_t1: torch.Tensor, conf: torch.Tensor,
                  mask: torch.Tensor, angle_tol_deg: float = 15.0, magnitude_range=(0.8, 1.2),
                  intensity_weight: float = 0.01, min_offset: float = 0.5, eps: float = 1e-4,
                  reduction: str = "mean", *, backend: str = "auto") -> torch.Tensor:
    """H-MoRe's skeleton constraint F (docs/method.md).

    Every pixel of ``mask`` is matched to ``argmin_q |p - q| * (-log c_q)`` over the skeleton points of
    frame t (``hmore_kernels.skeleton_offset_map``), and its flow is held to that point's offset
    ``k = points_t1 - points_t`` by :func:`skeleton_hinge`: zero where the flow equals the offset, and
    within 15° and 0.8-1.2x of it; no gradient off the mask.

    Args:
        flow: ``[B, 2, H, W]`` predicted flow (px, t -> t+1).
        points_t, points_t1: ``[B, Q, 2]`` skeleton points at t and t+1 (:func:`skeleton_targets` or
            ``hmore_kernels.skeleton_points``); conf: ``[B, Q]``; mask: ``[B, 1, H, W]`` subject mask of frame t.
        angle_tol_deg (15), magnitude_range ((0.8, 1.2)), intensity_weight (0.01), min_offset (0.5 px), eps
            (1e-4, the match's confidence floor), reduction ("mean").
    Returns: scalar, or ``[B]`` for ``reduction="none"``.
    """
    _check_flow(flow)
    _check_mask(mask, flow)
    with torch.no_grad():
        offset, valid = hk.skeleton_offset_map(points_t.detach(), points_t1.detach(), conf.detach(), mask.detach(),
                                               eps, backend=backend)
    return skeleton_hinge(flow, offset, valid, angle_tol_deg, magnitude_range, intensity_weight, min_offset, reduction)


# ------------------------------------------------------------------------------------------ boundary (G)
def boundary_loss(flow: torch.Tensor, mask: torch.Tensor, patch_sizes=(8, 16, 32), band: int | None = 3,
                  min_mass: float = 1e-3, reduction: str = "mean", *, backend: str = "auto") -> torch.Tensor:
    """H-MoRe's boundary constraint G (docs/method.md): multi-scale patch-centroid Chamfer between the edges of
    the flow and the human boundary.

    Flow edges: ``hmore_kernels.flow_edges(flow, mask, band)`` (normalised Sobel magnitude, per-image max
    normalisation, restricted to a band of ``band`` px around the mask boundary, so the flow's edges
    inside the body — an arm moving over the torso — are not pulled to the silhouette; ``band=None``
    uses the whole image). Human edges: ``mask_boundary(mask, "thick", 1)``, the pixels on both sides of
    the silhouette, where a flow discontinuity at the boundary puts its Sobel response. Compared by
    ``patch_centroid_chamfer`` at ``patch_sizes``.

    Args:
        flow: ``[B, 2, H, W]``; mask: ``[B, 1, H, W]`` bool/uint8/float subject mask (no gradient).
    Returns: scalar or ``[B]``; differentiable in ``flow``.
    """
    _check_flow(flow)
    _check_mask(mask, flow)
    _check_reduction(reduction)
    m = mask.detach()
    m = m if m.dtype == torch.bool else m > 0.5
    edges = hk.flow_edges(flow, m, band, backend=backend)
    human = hk.mask_boundary(m, "thick", 1, backend=backend).to(edges.dtype)
    return hk.patch_centroid_chamfer(edges, human, tuple(patch_sizes), min_mass, reduction, backend=backend)


# ------------------------------------------------------------------------------------------ background
def background_loss(flow: torch.Tensor, mask: torch.Tensor, dilation: int = 8, reduction: str = "mean",
                    *, backend: str = "auto") -> torch.Tensor:
    """Mean flow magnitude ``|M_w|`` over the pixels outside the mask dilated by ``dilation`` px (3x3
    square element applied ``dilation`` times) [ours]: world flow suppresses background motion.
    A sample with no pixel outside contributes 0. Returns scalar or ``[B]``."""
    _check_flow(flow)
    _check_mask(mask, flow)
    _check_reduction(reduction)
    m = mask.detach()
    m = m if m.dtype == torch.bool else m > 0.5
    if dilation > 0:
        m = m | hk.mask_boundary(m, "outer", dilation, backend=backend)
    out = (~m).squeeze(1).to(flow.dtype)
    per_sample = (_norm(flow) * out).flatten(1).sum(1) / out.flatten(1).sum(1).clamp_min(1.0)
    return _reduce(per_sample, reduction)


# ------------------------------------------------------------------------------------------ subject terms
# v_s target [ours, docs/method.md]: the confidence-weighted torso offset, one definition with the generator's
# ground truth (hmore.data.synthetic.subject_motion_from_keypoints): ``(v_s [B, 2], valid [B])``
subject_motion_target = subject_motion_from_keypoints


def subject_motion_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                        reduction: str = "mean") -> torch.Tensor:
    """Euclidean distance ``|pred - target|`` (px) per sample, 0 where not ``valid``. ``[B, 2]`` inputs."""
    _check_reduction(reduction)
    e = _norm(pred - target.to(pred.dtype), dim=1)
    if valid is not None:
        e = e * valid.to(e.dtype)
    return _reduce(e, reduction)


def subject_map_loss(logits: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of the subject map (given as logits ``[B, 1, H, W]``) against the mask,
    mean over pixels per sample."""
    _check_reduction(reduction)
    bce = F.binary_cross_entropy_with_logits(logits, mask.to(logits.dtype), reduction="none")
    return _reduce(bce.flatten(1).mean(1), reduction)


def epe_loss(flow: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
             has_flow: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """End-point error ``|flow - target|`` averaged over the ``valid`` pixels of each sample (finite
    targets when ``valid`` is None); samples with ``has_flow`` False contribute 0."""
    _check_flow(flow)
    _check_reduction(reduction)
    fin = torch.isfinite(target).all(1, keepdim=True)
    valid = fin if valid is None else (valid.bool() & fin)
    tgt = torch.where(fin, target.to(flow.dtype), torch.zeros((), dtype=flow.dtype, device=flow.device))
    v = valid.squeeze(1).to(flow.dtype)
    per_sample = (_norm(flow - tgt) * v).flatten(1).sum(1) / v.flatten(1).sum(1).clamp_min(1.0)
    if has_flow is not None:
        per_sample = per_sample * has_flow.to(per_sample.dtype)
    return _reduce(per_sample, reduction)


def iteration_weights(n: int, gamma: float = 0.8) -> list[float]:
    """RAFT's sequence weights ``gamma ** (n - 1 - i)`` for iterations ``i = 0..n-1`` (the last weighs 1)."""
    return [gamma ** (n - 1 - i) for i in range(n)]


# ------------------------------------------------------------------------------------------ the sum
class HMoReLoss(nn.Module):
    """``F + 0.1 G`` [paper] plus the background, subject-motion, subject-map and supervised EPE terms
    [ours], each with its weight in :class:`~hmore.models.HMoReConfig` (0 switches a term off; a term
    with weight 0 is not computed).

    The flow terms (skeleton, boundary, background, EPE) are summed over the refinement iterations with
    RAFT's weights ``gamma ** (N - 1 - i)``; the local-flow EPE, subject-motion and subject-map terms use
    the final outputs.

    ``forward(outputs, batch, constraints=True)``: ``outputs`` as the model returns them in training mode;
    ``batch`` a dict with ``mask0 [B, 1, H, W]``, ``keypoints0/1 [B, P, 17, 2]``, ``conf0/1 [B, P, 17]``,
    and optionally ``has_flow [B]``, ``world_flow``, ``local_flow [B, 2, H, W]``, ``flow_valid``,
    ``full_flow [B, 2, H, W]`` and ``full_valid [B, 1, H, W]`` (the whole scene's exact flow, for
    ``flow_target="full"``: the ``epe_full`` term over Φ's iterations), ``subject_motion [B, 2]`` (exact v_s,
    used instead of the keypoints' torso offset where ``has_flow``).
    With ``flow_target="full"`` the world-flow terms (skeleton, boundary, background, world EPE) apply to
    the final world flow only (``full_flow x subject_map``; there is none per iteration).
    ``constraints=False`` turns the skeleton and boundary terms off (the synthetic warm-up stage).
    Returns ``(total, terms)``, ``terms`` a dict of detached scalars: every computed term before its
    weight (after the iteration sum), plus ``epe`` (final-iteration end-point error, a metric).
    """

    # every name forward() can return in ``terms``: train.py's log columns are derived from it (a term missing
    # here would never reach log.csv; tests/test_losses.py checks every config's terms are listed)
    TERMS = ("skeleton", "boundary", "background", "epe_full", "epe_world", "epe_local", "subject_motion",
             "subject_map", "epe")

    def __init__(self, config=None):
        super().__init__()
        from .models.config import HMoReConfig

        self.cfg = config if config is not None else HMoReConfig()

    def forward(self, outputs: dict, batch: dict, constraints: bool = True):
        cfg = self.cfg
        full = cfg.flow_target == "full"
        if full:  # Φ's iterations are full flows; the world flow exists only at the end (full x subject map)
            seq = outputs.get("full_flow_iters") or [outputs["full_flow"]]
            flows = [outputs["world_flow"]]
        else:
            seq = flows = outputs.get("world_flow_iters") or [outputs["world_flow"]]
        mask = batch["mask0"]
        mask = mask if mask.dtype == torch.bool else mask > 0.5
        terms: dict[str, torch.Tensor] = {}
        total = flows[-1].new_zeros(())
        has_flow = batch.get("has_flow")
        gt = batch.get("world_flow")
        use_gt = gt is not None and (has_flow is None or bool(has_flow.any()))

        def add(name, weight, fn):
            nonlocal total
            if weight == 0:
                return
            value = fn()
            terms[name] = value.detach()
            total = total + weight * value

        def over_iters(fn, fl=flows):
            w = iteration_weights(len(fl), cfg.gamma)
            return lambda: sum(wi * fn(f) for wi, f in zip(w, fl))

        if constraints and cfg.w_skeleton:
            with torch.no_grad():
                pt, pt1, pc = skeleton_targets(batch["keypoints0"], batch["keypoints1"], batch["conf0"], batch["conf1"],
                                               cfg.points_per_bone, backend=cfg.backend)
                offset, valid = hk.skeleton_offset_map(pt, pt1, pc, mask, backend=cfg.backend)
            add("skeleton", cfg.w_skeleton, over_iters(lambda f: skeleton_hinge(
                f, offset, valid, cfg.angle_tol_deg, cfg.magnitude_range, cfg.intensity_weight, cfg.min_offset)))
        if constraints:
            add("boundary", cfg.w_boundary, over_iters(lambda f: boundary_loss(
                f, mask, cfg.patch_sizes, cfg.edge_band, backend=cfg.backend)))
        add("background", cfg.w_background, over_iters(lambda f: background_loss(
            f, mask, cfg.background_dilation, backend=cfg.backend)))
        valid = batch.get("flow_valid")
        if cfg.epe_region == "body":  # [ours] see HMoReConfig.epe_region: the body's motion, not background zeros
            valid = mask if valid is None else valid.bool() & mask
        gt_full = batch.get("full_flow")
        if full and gt_full is not None and (has_flow is None or bool(has_flow.any())):
            # [ours] dense supervision: every pixel with exact flow, the scene's motion included
            add("epe_full", cfg.w_epe_full, over_iters(lambda f: epe_loss(f, gt_full, batch.get("full_valid"), has_flow),
                                                        seq))
        if use_gt:
            add("epe_world", cfg.w_epe, over_iters(lambda f: epe_loss(f, gt, valid, has_flow)))
            if batch.get("local_flow") is not None:
                add("epe_local", cfg.w_local_epe, lambda: epe_loss(outputs["local_flow"], batch["local_flow"],
                                                                   valid, has_flow))
        kp0, kp1, c0, c1 = (batch[k] for k in ("keypoints0", "keypoints1", "conf0", "conf1"))
        if kp0.dim() == 4:  # the subject is person 0
            kp0, kp1, c0, c1 = kp0[:, 0], kp1[:, 0], c0[:, 0], c1[:, 0]
        vs, vs_valid = subject_motion_target(kp0, kp1, c0, c1)
        if batch.get("subject_motion") is not None and has_flow is not None:
            # samples with exact ground truth (synthetic, photo composites) carry their exact v_s
            sm = batch["subject_motion"].to(vs.dtype)
            vs = torch.where(has_flow.view(-1, 1), sm, vs)
            vs_valid = vs_valid | has_flow.bool()
        add("subject_motion", cfg.w_subject_motion, lambda: subject_motion_loss(outputs["subject_motion"], vs, vs_valid))
        logits = outputs.get("subject_map_logits")
        if logits is None:  # eval-mode outputs: recover logits from the probabilities
            p = outputs["subject_map"].clamp(1e-6, 1 - 1e-6)
            logits = torch.log(p) - torch.log1p(-p)
        add("subject_map", cfg.w_subject_map, lambda: subject_map_loss(logits, mask))
        if use_gt:
            with torch.no_grad():
                terms["epe"] = epe_loss(flows[-1].detach(), gt, valid, has_flow)
        return total, terms
