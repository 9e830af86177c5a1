"""hmore.losses: every term against small hand-computed cases, its limits, and its gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hmore_kernels as hk
from hmore.losses import (HMoReLoss, background_loss, boundary_loss, epe_loss, iteration_weights, skeleton_hinge,
                          skeleton_loss, skeleton_targets, subject_map_loss, subject_motion_loss,
                          subject_motion_target)
from hmore.models import HMoReConfig

COS15 = math.cos(math.radians(15))


def _one_pixel(u, k, min_offset=0.5):
    """skeleton_hinge on a single matched pixel with flow u and offset k."""
    flow = torch.tensor(u, dtype=torch.float64).view(1, 2, 1, 1)
    off = torch.tensor(k, dtype=torch.float64).view(1, 2, 1, 1)
    return float(skeleton_hinge(flow, off, torch.ones(1, 1, 1, 1, dtype=torch.bool), min_offset=min_offset))


def _rot(v, deg):
    a = math.radians(deg)
    return [v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)]


class TestSkeletonHinge:
    def test_zero_at_matched_offset(self):
        assert _one_pixel([3.0, -4.0], [3.0, -4.0]) == 0.0

    def test_zero_at_tolerance_edges(self):
        k = [10.0, 0.0]
        assert _one_pixel([8.0, 0.0], k) == 0.0  # |u| = 0.8 |k|
        assert _one_pixel([12.0, 0.0], k) == 0.0  # |u| = 1.2 |k|
        # exactly 15 degrees off: zero up to the rounding of cos
        assert abs(_one_pixel(_rot(k, 15.0), k)) < 1e-12
        assert abs(_one_pixel(_rot(k, -15.0), k)) < 1e-12
        assert _one_pixel(_rot([11.0, 0.0], 14.9), k) == 0.0

    def test_hand_values_beyond(self):
        k = [10.0, 0.0]
        assert _one_pixel(_rot(k, 30.0), k) == pytest.approx(COS15 - math.cos(math.radians(30)), abs=1e-12)
        assert _one_pixel([5.0, 0.0], k) == pytest.approx(0.01 * 3.0, abs=1e-12)  # F_I = 0.8*10 - 5
        assert _one_pixel([15.0, 0.0], k) == pytest.approx(0.01 * 3.0, abs=1e-12)  # F_I = 15 - 1.2*10
        # opposite direction at the right length: F_A = cos15 - (-1)
        assert _one_pixel([-10.0, 0.0], k) == pytest.approx(COS15 + 1.0, abs=1e-12)
        # zero flow: the angle counts as 90 degrees (cos 0), and F_I = 0.8 |k|
        assert _one_pixel([0.0, 0.0], k) == pytest.approx(COS15 + 0.01 * 8.0, abs=1e-12)

    def test_small_offset_only_intensity(self):
        # |k| = 0.3 < 0.5: a perpendicular flow of the same length costs nothing (no angle term)
        assert _one_pixel([0.0, 0.3], [0.3, 0.0]) == 0.0
        assert _one_pixel([0.0, 1.0], [0.3, 0.0]) == pytest.approx(0.01 * (1.0 - 1.2 * 0.3), abs=1e-12)
        # with the threshold lowered the angle term applies
        assert _one_pixel([0.0, 0.3], [0.3, 0.0], min_offset=0.1) == pytest.approx(COS15, abs=1e-12)

    def test_mean_over_valid_pixels_per_image(self):
        flow = torch.zeros(2, 2, 1, 3, dtype=torch.float64)
        off = torch.zeros(2, 2, 1, 3, dtype=torch.float64)
        off[:, 0] = 10.0
        flow[0, 0, 0, 0] = 10.0  # pixel 0 of image 0 is perfect; pixel 1 has zero flow (cost cos15 + 0.08)
        valid = torch.tensor([[True, True, False], [False, False, False]]).view(2, 1, 1, 3)
        per = skeleton_hinge(flow, off, valid, reduction="none")
        assert per.tolist() == pytest.approx([(COS15 + 0.08) / 2, 0.0])
        assert float(skeleton_hinge(flow, off, valid)) == pytest.approx((COS15 + 0.08) / 4)

    def test_no_gradient_off_mask_and_finite_at_zero(self):
        flow = torch.zeros(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
        off = torch.ones(1, 2, 4, 4, dtype=torch.float64)
        valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
        valid[..., 1:3, 1:3] = True
        skeleton_hinge(flow, off, valid).backward()
        g = flow.grad
        assert torch.isfinite(g).all()
        assert (g[..., ~valid[0, 0]] == 0).all()
        # a zero flow is pulled toward the offset (descending the loss increases u along k = (1, 1))
        assert (g[..., valid[0, 0]] < 0).all()


class TestSkeletonLoss:
    def _scene(self):
        # one bone from (8, 8) to (8, 24) moving by (2, 1); a mask around it
        j0 = torch.zeros(1, 17, 2)
        j0[0, 5] = torch.tensor([8.0, 8.0])
        j0[0, 11] = torch.tensor([8.0, 24.0])
        j1 = j0 + torch.tensor([2.0, 1.0])
        c = torch.zeros(1, 17)
        c[0, [5, 11]] = 0.9
        mask = torch.zeros(1, 1, 32, 20, dtype=torch.bool)
        mask[..., 6:27, 5:12] = True
        return j0, j1, c, mask

    def test_zero_at_the_skeleton_offsets_positive_elsewhere(self):
        j0, j1, c, mask = self._scene()
        pt, pt1, pc = skeleton_targets(j0, j1, c, c)
        assert pt.shape == (1, 16 * 8, 2)
        off, valid = hk.skeleton_offset_map(pt, pt1, pc, mask)
        flow = torch.zeros(1, 2, 32, 20)
        flow[:, 0], flow[:, 1] = 2.0, 1.0
        assert float(skeleton_loss(flow, pt, pt1, pc, mask)) == 0.0
        assert torch.allclose(off[:, :, mask[0, 0]], flow[:, :, mask[0, 0]], atol=1e-5)
        assert valid[0, 0].equal(mask[0, 0])
        assert float(skeleton_loss(off, pt, pt1, pc, mask)) == 0.0  # exactly the matched offsets
        # the flow off the mask does not matter; a wrong flow on it does
        flow2 = flow.clone()
        flow2[..., ~mask[0, 0]] = 100.0
        assert float(skeleton_loss(flow2, pt, pt1, pc, mask)) == 0.0
        flow3 = flow.clone()
        flow3[:, 0] = -2.0
        assert float(skeleton_loss(flow3, pt, pt1, pc, mask)) > 0.5

    def test_confidence_is_min_of_both_frames(self):
        j0, j1, c, _ = self._scene()
        c1 = c.clone()
        c1[0, 11] = 0.0
        _, _, pc = skeleton_targets(j0, j1, c, c1, points_per_bone=2)
        # bone (5, 11) is COCO17 bone index of (5, 11); its far end has confidence 0 at t+1
        from hmore_kernels.layouts import COCO17

        e = [tuple(b) for b in COCO17.bones].index((5, 11))
        assert pc[0, 2 * e].item() == pytest.approx(0.9)
        assert pc[0, 2 * e + 1].item() == 0.0

    def test_bad_input(self):
        with pytest.raises(ValueError, match="flow"):
            skeleton_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.zeros(1, 2),
                          torch.zeros(1, 1, 4, 4, dtype=torch.bool))
        with pytest.raises(ValueError, match="mask"):
            skeleton_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.zeros(1, 2),
                          torch.zeros(1, 1, 5, 4, dtype=torch.bool))


class TestBoundaryLoss:
    def _case(self, d, band):
        H = W = 96
        mask = torch.zeros(1, 1, H, W, dtype=torch.bool)
        mask[..., 30:66, 30:66] = True
        f = torch.zeros(1, 2, H, W)
        f[:, 0, 30 + d:66 + d, 30 + d:66 + d] = 3.0
        return float(boundary_loss(f, mask, band=band))

    def test_grows_as_the_discontinuity_leaves_the_boundary(self):
        free = [self._case(d, None) for d in range(9)]
        assert all(a < b for a, b in zip(free, free[1:])), free
        banded = [self._case(d, 3) for d in range(9)]
        assert all(a < b for a, b in zip(banded[:5], banded[1:5])), banded
        assert min(banded[1:]) > banded[0]  # outside the band it stays above the aligned value

    def test_identical_maps_give_zero_and_matches_the_ops(self):
        mask = torch.zeros(2, 1, 40, 48, dtype=torch.bool)
        mask[0, :, 10:30, 12:40] = True
        mask[1, :, 5:20, 5:20] = True
        flow = torch.randn(2, 2, 40, 48, dtype=torch.float64)
        e = hk.flow_edges(flow, mask, 3)
        h = hk.mask_boundary(mask, "thick", 1).double()
        want = hk.patch_centroid_chamfer(e, h, (8, 16, 32), 1e-3, "none")
        assert torch.allclose(boundary_loss(flow, mask, reduction="none"), want, rtol=1e-12, atol=1e-12)
        assert float(hk.patch_centroid_chamfer(h, h)) == 0.0

    def test_gradient_reaches_the_flow(self):
        mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
        mask[..., 8:24, 8:24] = True
        flow = torch.randn(1, 2, 32, 32, requires_grad=True)
        boundary_loss(flow, mask).backward()
        assert torch.isfinite(flow.grad).all() and flow.grad.abs().sum() > 0


class TestOtherTerms:
    def test_background_hand_case(self):
        mask = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
        mask[..., 2:4, 2:4] = True
        flow = torch.zeros(1, 2, 6, 6)
        flow[:, 0] = 3.0
        flow[:, 1] = 4.0
        assert float(background_loss(flow, mask, dilation=0)) == pytest.approx(5.0)
        # dilated by 1: the 4x4 block 1..4 is excluded; 20 pixels remain, put 0 on half of them
        flow[..., 0, :] = 0.0
        assert float(background_loss(flow, mask, dilation=1)) == pytest.approx(5.0 * 14 / 20)
        full = torch.ones(1, 1, 6, 6, dtype=torch.bool)
        assert float(background_loss(flow, full)) == 0.0  # no background: contributes 0

    def test_subject_motion_target_and_loss(self):
        k0 = torch.zeros(1, 17, 2)
        k1 = torch.zeros(1, 17, 2)
        k1[0, 5] = torch.tensor([2.0, 0.0])
        k1[0, 6] = torch.tensor([4.0, 0.0])
        c = torch.zeros(1, 17)
        c[0, 5], c[0, 6] = 1.0, 0.5  # weights c0*c1: 1 and 0.25
        v, ok = subject_motion_target(k0, k1, c, c)
        assert ok.tolist() == [True]
        assert v[0].tolist() == pytest.approx([(2 * 1 + 4 * 0.25) / 1.25, 0.0])
        # every torso weight 0: invalid for the loss, and the unweighted mean, as the generator's ground truth
        # (one definition: hmore.data.synthetic.subject_motion_from_keypoints)
        v2, ok2 = subject_motion_target(k0, k1, torch.zeros(1, 17), c)
        assert ok2.tolist() == [False] and v2[0].tolist() == pytest.approx([(2 + 4) / 4, 0.0])
        from hmore.data.synthetic import subject_motion_from_keypoints

        vn, okn = subject_motion_from_keypoints(k0.numpy(), k1.numpy(), np.zeros((1, 17), np.float32), c.numpy())
        assert okn.tolist() == [False] and vn[0].tolist() == pytest.approx(v2[0].tolist())
        assert float(subject_motion_loss(v2 + 1, v2, ok2)) == 0.0  # an invalid sample contributes 0
        pred = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
        tgt = torch.zeros(2, 2)
        assert float(subject_motion_loss(pred, tgt, torch.tensor([True, False]))) == pytest.approx(2.5)

    def test_subject_map_bce(self):
        logits = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
        mask = torch.tensor([True, False]).view(1, 1, 1, 2)
        want = (math.log(2) + math.log(1 + math.exp(2))) / 2
        assert float(subject_map_loss(logits, mask)) == pytest.approx(want, rel=1e-6)

    def test_epe_hand_case(self):
        flow = torch.zeros(2, 2, 1, 2)
        gt = torch.zeros(2, 2, 1, 2)
        gt[0, 0, 0, 0] = 3.0
        gt[0, 1, 0, 0] = 4.0
        gt[0, 0, 0, 1] = float("nan")  # not finite: ignored
        gt[1] = 7.0
        per = epe_loss(flow, gt, has_flow=torch.tensor([True, False]), reduction="none")
        assert per.tolist() == pytest.approx([5.0, 0.0])
        assert iteration_weights(3, 0.8) == pytest.approx([0.64, 0.8, 1.0])


class TestHMoReLoss:
    def _batch(self):
        from hmore.data.mix import MixedPairs

        ds = MixedPairs([{"source": "synthetic"}], crop=(64, 80), seed=3)
        return torch.utils.data.default_collate([ds[i] for i in range(2)])

    def test_total_is_the_weighted_sum_and_switches(self):
        b = self._batch()
        flows = [torch.randn(2, 2, 64, 80) for _ in range(3)]
        out = {"world_flow_iters": flows, "world_flow": flows[-1], "subject_motion": torch.randn(2, 2),
               "local_flow": torch.randn(2, 2, 64, 80), "subject_map": torch.rand(2, 1, 64, 80),
               "subject_map_logits": torch.randn(2, 1, 64, 80)}
        cfg = HMoReConfig()
        total, terms = HMoReLoss(cfg)(out, b)
        assert set(terms) == {"skeleton", "boundary", "background", "epe_world", "epe_local", "subject_motion",
                              "subject_map", "epe"}
        w = {"skeleton": cfg.w_skeleton, "boundary": cfg.w_boundary, "background": cfg.w_background,
             "epe_world": cfg.w_epe, "epe_local": cfg.w_local_epe, "subject_motion": cfg.w_subject_motion,
             "subject_map": cfg.w_subject_map}
        assert float(total) == pytest.approx(sum(w[k] * float(terms[k]) for k in w), rel=1e-5)
        # the iteration weighting: skeleton = sum gamma^(N-1-i) F(flow_i)
        pt, pt1, pc = skeleton_targets(b["keypoints0"], b["keypoints1"], b["conf0"], b["conf1"])
        want = sum(g * float(skeleton_loss(f, pt, pt1, pc, b["mask0"])) for g, f in zip([0.64, 0.8, 1.0], flows))
        assert float(terms["skeleton"]) == pytest.approx(want, rel=1e-5)
        _, t2 = HMoReLoss(cfg)(out, b, constraints=False)
        assert "skeleton" not in t2 and "boundary" not in t2
        _, t3 = HMoReLoss(cfg.replace(w_background=0.0))(out, b)
        assert "background" not in t3
        b2 = dict(b)
        b2["has_flow"] = torch.tensor([False, False])
        _, t4 = HMoReLoss(cfg)(out, b2)
        assert "epe_world" not in t4 and "epe" not in t4

    def test_epe_region_body_averages_over_mask0_only(self):
        """1 body pixel with error 5 among 4 valid pixels (errors 0): body -> 5, all -> 5/4 (hand-computed)."""
        H, W = 2, 2
        gt = torch.zeros(1, 2, H, W)
        gt[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # the body pixel moves; world flow is 0 off the body
        flow = torch.zeros(1, 2, H, W)
        mask = torch.zeros(1, 1, H, W, dtype=torch.bool)
        mask[0, 0, 0, 0] = True
        batch = {"mask0": mask, "world_flow": gt, "flow_valid": torch.ones(1, 1, H, W, dtype=torch.bool),
                 "keypoints0": torch.zeros(1, 17, 2), "keypoints1": torch.zeros(1, 17, 2),
                 "conf0": torch.zeros(1, 17), "conf1": torch.zeros(1, 17)}
        out = {"world_flow": flow, "local_flow": flow, "subject_motion": torch.zeros(1, 2),
               "subject_map": torch.full((1, 1, H, W), 0.5)}
        only_epe = dict(w_skeleton=0.0, w_boundary=0.0, w_background=0.0, w_subject_motion=0.0, w_subject_map=0.0,
                        w_local_epe=0.0)
        _, body = HMoReLoss(HMoReConfig(epe_region="body", **only_epe))(out, batch, constraints=False)
        _, every = HMoReLoss(HMoReConfig(epe_region="all", **only_epe))(out, batch, constraints=False)
        assert float(body["epe"]) == pytest.approx(5.0) and float(every["epe"]) == pytest.approx(1.25)

    def test_full_target_epe_full_over_iterations_and_exact_subject_motion(self):
        """flow_target='full': epe_full = sum_i gamma^(N-1-i) EPE_i over every pixel with exact full flow, the
        world-flow EPE on the final world flow only; v_s from batch['subject_motion'] where has_flow
        (hand-computed)."""
        H, W = 2, 2
        full_gt = torch.zeros(1, 2, H, W)
        full_gt[0, 0] = 1.0  # the scene moves 1 px right everywhere (the body too)
        mask = torch.zeros(1, 1, H, W, dtype=torch.bool)
        mask[0, 0, 0, 0] = True
        world_gt = full_gt * mask
        it0 = torch.zeros(1, 2, H, W)  # EPE 1 everywhere
        it1 = full_gt.clone()  # EPE 0
        it1[0, 1, 1, 1] = 4.0  # one pixel off by 4: EPE 4/4 = 1 over the 4 pixels
        world = torch.zeros(1, 2, H, W)
        world[0, 0, 0, 0] = 3.0  # body pixel: error 2
        batch = {"mask0": mask, "world_flow": world_gt, "flow_valid": mask.clone(), "full_flow": full_gt,
                 "full_valid": torch.ones(1, 1, H, W, dtype=torch.bool), "has_flow": torch.tensor([True]),
                 "subject_motion": torch.tensor([[1.0, 0.0]]),
                 "keypoints0": torch.zeros(1, 17, 2), "keypoints1": torch.zeros(1, 17, 2),
                 "conf0": torch.zeros(1, 17), "conf1": torch.zeros(1, 17)}
        out = {"world_flow": world, "full_flow": it1, "full_flow_iters": [it0, it1], "local_flow": world,
               "subject_motion": torch.tensor([[4.0, 4.0]]), "subject_map": torch.full((1, 1, H, W), 0.5)}
        cfg = HMoReConfig(flow_target="full", gamma=0.5, w_skeleton=0.0, w_boundary=0.0, w_background=0.0,
                          w_subject_map=0.0, w_local_epe=0.0)
        total, t = HMoReLoss(cfg)(out, batch, constraints=False)
        assert float(t["epe_full"]) == pytest.approx(0.5 * 1.0 + 1.0 * 1.0)
        assert float(t["epe_world"]) == pytest.approx(2.0) and float(t["epe"]) == pytest.approx(2.0)
        assert float(t["subject_motion"]) == pytest.approx(5.0)  # |(4, 4) - (1, 0)|, not the keypoints' 0
        assert float(total) == pytest.approx(1.5 + 2.0 + 0.1 * 5.0)
        # without exact flow the sample contributes nothing to the EPE terms and v_s falls back to keypoints
        batch["has_flow"] = torch.tensor([False])
        _, t2 = HMoReLoss(cfg)(out, batch, constraints=False)
        assert "epe_full" not in t2 and float(t2["subject_motion"]) == 0.0


def test_every_term_the_loss_returns_is_a_log_column():
    """The loss declares its terms (HMoReLoss.TERMS) and train.py's log columns are derived from them: every term
    a config can produce must be listed, or it would never reach log.csv."""
    from hmore.train import LOG_COLUMNS

    H, W = 8, 8
    mask = torch.zeros(1, 1, H, W, dtype=torch.bool)
    mask[..., 2:6, 2:6] = True
    kp = torch.rand(1, 17, 2) * 8
    batch = {"mask0": mask, "world_flow": torch.zeros(1, 2, H, W), "local_flow": torch.zeros(1, 2, H, W),
             "flow_valid": mask.clone(), "full_flow": torch.zeros(1, 2, H, W),
             "full_valid": torch.ones(1, 1, H, W, dtype=torch.bool), "has_flow": torch.tensor([True]),
             "subject_motion": torch.zeros(1, 2), "keypoints0": kp, "keypoints1": kp + 1,
             "conf0": torch.ones(1, 17), "conf1": torch.ones(1, 17)}
    seen = set()
    for target in ("world", "full"):
        f = torch.rand(1, 2, H, W)
        out = {"world_flow": f, "full_flow": f, "local_flow": f, "subject_motion": torch.zeros(1, 2),
               "subject_map": torch.full((1, 1, H, W), 0.5), f"{target}_flow_iters": [f, f]}
        _, terms = HMoReLoss(HMoReConfig(flow_target=target, patch_sizes=(4,)))(out, batch)
        seen |= set(terms)
    assert seen == set(HMoReLoss.TERMS)
    assert set(HMoReLoss.TERMS) <= set(LOG_COLUMNS)
