"""hmore.data.synthetic: the generator's ground truth, determinism, splits, options and errors.

The central check is the one the issue asks for: warping frame t+1 back by the true world flow must
reproduce frame t on the body pixels that stay visible (and the same for the background with the
background flow), up to bilinear interpolation and uint8 rounding. Away from part edges that error is
a fraction of a grey level for a correct flow; a flow off by a pixel gives errors many times larger,
which the negative controls check so that the tests can fail.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hmore.data import synthetic as syn
from hmore.data import synthetic_body as body
from hmore.data.synthetic import Clip, SyntheticConfig, SyntheticPairs, render_clip, render_pair

SMALL = SyntheticConfig(height=128, width=160)


def _grid(H, W):
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return xs, ys


def _backwarp(img1: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """img1 sampled at p + flow(p) (bilinear): frame t as predicted from frame t+1."""
    H, W = flow.shape[:2]
    xs, ys = _grid(H, W)
    return cv2.remap(img1.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _interior(ids: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one part id (no colour mixing across part edges)."""
    k = np.ones((3, 3), np.uint8)
    f = ids.astype(np.float32)
    return (cv2.erode(f, k) == f) & (cv2.dilate(f, k) == f)


def _dest_same_part(ids0, ids1, flow):
    """All four bilinear neighbours of the destination p + flow carry the part id of p in frame t+1."""
    H, W = ids0.shape
    xs, ys = _grid(H, W)
    qx, qy = xs + flow[..., 0], ys + flow[..., 1]
    inside = (qx >= 0) & (qx <= W - 1) & (qy >= 0) & (qy <= H - 1)
    ok = inside.copy()
    for dx in (0, 1):
        for dy in (0, 1):
            jj = np.clip(np.floor(qx).astype(np.int64) + dx, 0, W - 1)
            ii = np.clip(np.floor(qy).astype(np.int64) + dy, 0, H - 1)
            ok &= ids1[ii, jj] == ids0
    return ok


def _warp_errors(c: Clip, t: int, flow: np.ndarray, region: np.ndarray) -> np.ndarray:
    err = np.abs(_backwarp(c.frames[t + 1], flow) - c.frames[t].astype(np.float32)).max(-1)
    sel = region & _interior(c.parts[t]) & _dest_same_part(c.parts[t], c.parts[t + 1], flow)
    return err[sel]


# ---- ground truth --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,cfg", [
    (0, SyntheticConfig()),
    (1, SyntheticConfig(num_subjects=2)),
    (2, SyntheticConfig(motions=("run",), max_speed=6.0)),
    (3, SyntheticConfig(motions=("turn", "wave"), height=160, width=224)),
    (4, SyntheticConfig(motions=("jump",), time_step=2.0)),
])
def test_world_flow_warps_body(seed, cfg):
    c = render_clip(seed, 3, cfg)
    for t in range(2):
        region = c.masks[t] & ~c.occlusion[t]
        e = _warp_errors(c, t, c.world_flow[t], region)
        assert e.size > 300, "too few checkable body pixels"
        # grey levels (0..255): bilinear resampling of smooth textures plus uint8 rounding
        assert np.median(e) < 1.5, f"median {np.median(e)}"
        assert np.mean(e < 4.0) > 0.97, f"fraction under 4: {np.mean(e < 4.0)}"
        # negative control: the same check with the flow off by one pixel fails clearly
        bad = c.world_flow[t] + np.float32([1.0, -0.7])
        eb = _warp_errors(c, t, bad, region)
        assert np.median(eb) > 3 * max(np.median(e), 0.5)


@pytest.mark.parametrize("seed", [5, 6])
def test_background_flow_warps_background(seed):
    c = render_pair(seed, SyntheticConfig(max_pan=4.0, max_zoom=0.03))
    e = _warp_errors(c, 0, c.background_flow[0], c.parts[0] == 0)
    assert e.size > 10000
    assert np.median(e) < 1.5 and np.mean(e < 4.0) > 0.97, (np.median(e), np.mean(e < 4.0))
    # distractors carry their own (swaying) motion in background_flow
    dis = c.parts[0] >= syn.DISTRACTOR_KEY0
    if dis.sum() > 200:
        ed = _warp_errors(c, 0, c.background_flow[0], dis)
        assert np.median(ed) < 1.5


def test_background_motion_off_is_static():
    c = render_pair(7, SyntheticConfig(background_motion=False))
    assert not c.background_flow.any()
    bg = (c.parts[0] == 0) & (c.parts[1] == 0)
    assert np.array_equal(c.frames[0][bg], c.frames[1][bg])


def test_flow_zero_off_body_and_local_is_world_minus_vs():
    c = render_clip(8, 3, SyntheticConfig(num_subjects=3))
    for t in range(2):
        off = ~c.masks[t]
        assert not c.world_flow[t][off].any() and not c.local_flow[t][off].any()
        for k in range(1, c.meta["num_subjects"] + 1):
            m = c.instances[t] == k
            assert np.array_equal(c.local_flow[t][m], c.world_flow[t][m] - c.subject_motion[t, k - 1])


def test_subject_motion_is_torso_mean_displacement():
    for seed in range(9, 13):
        c = render_clip(seed, 3, SyntheticConfig(num_subjects=(1, 2)))
        n = c.meta["num_subjects"]
        for t in range(2):
            for k in range(n):
                j = list(syn.TORSO_JOINTS)
                d = c.keypoints[t + 1, k, j].astype(np.float64) - c.keypoints[t, k, j]
                w = c.confidences[t, k, j].astype(np.float64) * c.confidences[t + 1, k, j]
                want = (w[:, None] * d).sum(0) / w.sum() if w.sum() > 0 else d.mean(0)
                np.testing.assert_allclose(c.subject_motion[t, k], want, atol=1e-4)
            assert not c.subject_motion[t, n:].any()


def test_flow_at_joints_matches_keypoint_displacement():
    """Independent of the sprite maps: the joints come from the skeleton, the flow from the parts."""
    checked = 0
    for seed in range(13, 19):
        c = render_clip(seed, 2, SyntheticConfig(num_subjects=2))
        H, W = c.masks.shape[1:]
        for k in range(c.meta["num_subjects"]):
            for j in (7, 8, 9, 10, 13, 14, 15, 16):  # elbows, wrists, knees, ankles: ends of rigid parts
                if c.confidences[0, k, j] < 1 or c.confidences[1, k, j] < 1:
                    continue
                x, y = c.keypoints[0, k, j]
                i, jj = int(round(y)), int(round(x))
                pid = int(c.parts[0, i, jj]) - (k * body.PARTS_PER_SUBJECT + 1)
                if pid not in body.JOINT_OWNERS[j]:
                    continue
                want = c.keypoints[1, k, j] - c.keypoints[0, k, j]
                # the pixel centre is within 0.71 px of the joint; limbs turn by < 0.2 rad/frame
                np.testing.assert_allclose(c.world_flow[0, i, jj], want, atol=0.3)
                checked += 1
    assert checked >= 20


def test_marker_tracking_matches_flow():
    """A dot painted in each limb's local frame moves by the flow: its centroid displacement between
    the frames equals the flow averaged with the dot's weights (the flow is affine on a part, so that
    average is the flow at the centroid)."""
    checked = 0
    for seed in range(19, 25):
        cfg = SyntheticConfig(subject_height=(0.7, 0.9), num_distractors=(0, 0))
        a = render_pair(seed, cfg)
        b = render_pair(seed, SyntheticConfig(**{**a.meta["config"], "markers": True}))
        assert np.array_equal(a.parts, b.parts) and np.array_equal(a.world_flow, b.world_flow)
        wt = [(a.frames[t].astype(np.float32) - b.frames[t]).mean(-1) for t in range(2)]
        H, W = a.masks.shape[1:]
        xs, ys = _grid(H, W)
        for pid in np.unique(a.parts[0]):
            if pid == 0 or pid >= syn.DISTRACTOR_KEY0 or (pid - 1) % body.PARTS_PER_SUBJECT == body.HEADP:
                continue
            w0 = np.where(a.parts[0] == pid, wt[0], 0.0)
            w1 = np.where(a.parts[1] == pid, wt[1], 0.0)
            m0, m1 = w0.sum(), w1.sum()
            if m0 < 200 or not 0.97 < m1 / m0 < 1.03:
                continue  # dot hidden or cut in one frame
            sup = w0 > 0.5
            if not _interior(a.parts[0])[sup].all() or (b.frames[0][sup] < 2).any():
                continue
            c0 = np.array([(w0 * xs).sum(), (w0 * ys).sum()]) / m0
            c1 = np.array([(w1 * xs).sum(), (w1 * ys).sum()]) / m1
            pred = np.array([(w0 * a.world_flow[0, ..., 0]).sum(), (w0 * a.world_flow[0, ..., 1]).sum()]) / m0
            np.testing.assert_allclose(c1 - c0, pred, atol=0.15)
            checked += 1
    assert checked >= 15


def test_occlusion():
    n_occ = 0
    for seed in range(25, 31):
        c = render_clip(seed, 2, SyntheticConfig(num_subjects=2, motions=("walk", "run")))
        occ, m = c.occlusion[0], c.masks[0]
        assert not occ[~m].any()
        H, W = m.shape
        ii, jj = np.nonzero(m)
        qx = np.rint(jj + c.world_flow[0, ii, jj, 0]).astype(int)
        qy = np.rint(ii + c.world_flow[0, ii, jj, 1]).astype(int)
        out = (qx < 0) | (qx >= W) | (qy < 0) | (qy >= H)
        assert occ[ii[out], jj[out]].all()
        keep = ~out
        same = c.parts[1, qy[keep], qx[keep]] == c.parts[0, ii[keep], jj[keep]]
        assert np.array_equal(occ[ii[keep], jj[keep]], ~same)
        n_occ += int(occ.sum())
    assert n_occ > 50  # walking and running limbs do hide each other


def test_keypoints_and_confidences():
    seen_occluded = False
    for seed in range(31, 37):
        c = render_clip(seed, 2, SyntheticConfig(num_subjects=2))
        H, W = c.masks.shape[1:]
        lo, hi = SyntheticConfig().occluded_confidence
        for t in range(2):
            for k in range(c.meta["num_subjects"]):
                for j in range(17):
                    x, y = c.keypoints[t, k, j]
                    cf = c.confidences[t, k, j]
                    inside = -0.5 <= x < W - 0.5 and -0.5 <= y < H - 0.5
                    if not inside:
                        assert cf == 0
                    elif cf == 1:
                        assert c.instances[t, int(round(y)), int(round(x))] == k + 1
                    else:
                        assert lo <= cf <= hi
                        seen_occluded = True
    assert seen_occluded


def test_keypoint_noise_option():
    a = render_pair(40)
    b = render_pair(40, SyntheticConfig(keypoint_noise=1.5))
    d = b.keypoints - a.keypoints
    assert 0.8 < d.std() < 2.2
    np.testing.assert_array_equal(a.subject_motion, b.subject_motion)  # v_s from the exact joints
    np.testing.assert_array_equal(a.world_flow, b.world_flow)


# ---- determinism, shapes, splits -----------------------------------------------------------------
def test_deterministic():
    cfg = SyntheticConfig(num_subjects=(1, 3))
    a, b = render_clip(41, 3, cfg), render_clip(41, 3, cfg)
    for f in ("frames", "masks", "instances", "parts", "keypoints", "confidences", "world_flow",
              "local_flow", "subject_motion", "background_flow", "occlusion"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.meta == b.meta
    c = render_clip(42, 3, cfg)
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.world_flow, c.world_flow)


def test_shapes_and_dtypes():
    cfg = SyntheticConfig(height=96, width=128, num_subjects=(1, 2))
    c = render_clip(43, 4, cfg)
    T, H, W, P = 4, 96, 128, 2
    want = {
        "frames": ((T, H, W, 3), np.uint8), "masks": ((T, H, W), np.bool_),
        "instances": ((T, H, W), np.int16), "parts": ((T, H, W), np.int16),
        "keypoints": ((T, P, 17, 2), np.float32), "confidences": ((T, P, 17), np.float32),
        "world_flow": ((T - 1, H, W, 2), np.float32), "local_flow": ((T - 1, H, W, 2), np.float32),
        "subject_motion": ((T - 1, P, 2), np.float32), "background_flow": ((T - 1, H, W, 2), np.float32),
        "occlusion": ((T - 1, H, W), np.bool_),
    }
    for f, (shape, dt) in want.items():
        v = getattr(c, f)
        assert v.shape == shape and v.dtype == dt, (f, v.shape, v.dtype)
    assert c.confidences.min() >= 0 and c.confidences.max() <= 1
    assert np.array_equal(c.masks, c.instances > 0)
    assert set(c.meta) >= {"seed", "motions", "config", "num_subjects"}
    assert c.meta["seed"] == 43 and len(c.meta["motions"]) == c.meta["num_subjects"]
    p = render_pair(43, cfg)
    assert p.frames.shape[0] == 2 and p.world_flow.shape[0] == 1


@pytest.mark.parametrize("motion", body.MOTIONS)
def test_each_motion_moves(motion):
    c = render_clip(44, 3, SyntheticConfig(motions=(motion,), background_motion=False))
    assert c.meta["motions"] == [motion]
    assert c.masks[0].sum() > 1000
    # the limbs move relative to the torso: local flow is not uniform over the body
    lf = c.local_flow[0][c.masks[0]]
    assert np.abs(lf).max() > 0.5


def test_long_clip_zoom_bounded():
    c = render_clip(58, 60, SyntheticConfig(height=48, width=48, max_zoom=0.1))
    total = (1.0 + c.meta["camera"]["zoom_rate"]) ** 59
    assert 0.5 - 1e-9 <= total <= 2.0 + 1e-9
    assert c.frames.shape == (60, 48, 48, 3)


def test_multi_subject():
    c = render_pair(45, SyntheticConfig(num_subjects=3))
    assert c.keypoints.shape[1] == 3 and c.meta["num_subjects"] == 3
    assert len(np.unique(c.instances[0])) >= 3  # background plus >= 2 visible subjects
    r = SyntheticConfig(num_subjects=(0, 2))
    counts = set()
    for seed in range(46, 56):
        c = render_pair(seed, r)
        n = c.meta["num_subjects"]
        counts.add(n)
        assert not c.keypoints[:, n:].any() and not c.confidences[:, n:].any()
        assert c.instances.max() <= n
    assert len(counts) >= 2


def test_dataset_items_and_splits():
    cfg = SyntheticConfig(height=64, width=96, num_subjects=2)
    ds = SyntheticPairs("train", 5, cfg, seed_base=3)
    item = ds[1]
    H, W, P = 64, 96, 2
    shapes = {
        "frame0": (3, H, W), "frame1": (3, H, W), "keypoints0": (P, 17, 2), "keypoints1": (P, 17, 2),
        "conf0": (P, 17), "conf1": (P, 17), "mask0": (1, H, W), "mask1": (1, H, W),
        "world_flow": (2, H, W), "local_flow": (2, H, W), "subject_motion": (P, 2), "flow_valid": (1, H, W),
    }
    for k, s in shapes.items():
        assert tuple(item[k].shape) == s, k
    assert item["frame0"].dtype == torch.float32 and 0 <= item["frame0"].min() and item["frame0"].max() <= 1
    assert item["mask0"].dtype == torch.bool and torch.equal(item["flow_valid"], item["mask0"])
    c = render_pair(syn.SPLIT_SEED_OFFSET["train"] + 3 + 1, cfg)
    np.testing.assert_array_equal(item["world_flow"].permute(1, 2, 0).numpy(), c.world_flow[0])
    assert torch.equal(ds[1]["frame1"], item["frame1"])  # deterministic per index
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert tuple(batch["world_flow"].shape) == (2, 2, H, W)
    # splits: disjoint seed ranges, different content at the same index
    seeds = {s: {SyntheticPairs(s, 1000, cfg).seed(i) for i in range(1000)} for s in ("train", "val", "test")}
    assert not (seeds["train"] & seeds["val"] or seeds["train"] & seeds["test"] or seeds["val"] & seeds["test"])
    last = {s: SyntheticPairs(s, syn.SPLIT_SEED_SPAN, cfg).seed(-1) for s in ("train", "val")}
    assert last["train"] < SyntheticPairs("val", 1, cfg).seed(0) and last["val"] < SyntheticPairs("test", 1, cfg).seed(0)
    assert not torch.equal(SyntheticPairs("val", 1, cfg)[0]["frame0"], SyntheticPairs("test", 1, cfg)[0]["frame0"])
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(ValueError, match="split"):
        SyntheticPairs("dev", 5, cfg)
    with pytest.raises(ValueError, match="seed_base"):
        SyntheticPairs("train", 5, cfg, seed_base=-1)
    with pytest.raises(ValueError, match="seed_base \\+ length"):
        SyntheticPairs("train", syn.SPLIT_SEED_SPAN, cfg, seed_base=1)
    with pytest.raises(ValueError, match="length"):
        SyntheticPairs("train", -1, cfg)


def test_dataset_item_values_match_clip():
    """The fast conversions of __getitem__ (channel extraction, uint8 -> [0, 1] table) give exactly the
    clip's arrays, channels first, and frames as float32 x / 255."""
    cfg = SyntheticConfig(height=64, width=96)
    ds = SyntheticPairs("val", 3, cfg)
    item = ds[2]
    c = render_pair(ds.seed(2), cfg)
    fr = torch.from_numpy(c.frames).permute(0, 3, 1, 2).float().div_(255.0)
    assert torch.equal(item["frame0"], fr[0]) and torch.equal(item["frame1"], fr[1])
    for k in ("world_flow", "local_flow", "background_flow"):
        want = torch.from_numpy(getattr(c, k)[0]).permute(2, 0, 1)
        assert item[k].is_contiguous() and torch.equal(item[k], want), k
    assert torch.equal(item["instances0"], torch.from_numpy(c.instances[0:1].astype(np.int64)))
    assert item["seed"].dtype == torch.int64 and item["seed"].shape == () and int(item["seed"]) == ds.seed(2)


def test_large_resolution():
    c = render_pair(57, SyntheticConfig(height=368, width=496))
    assert c.frames.shape == (2, 368, 496, 3)
    e = _warp_errors(c, 0, c.world_flow[0], c.masks[0] & ~c.occlusion[0])
    assert e.size > 1000 and np.median(e) < 1.5


# ---- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [
    ("height", 16), ("width", 2.5), ("num_subjects", 0), ("num_subjects", (2, 1)), ("num_subjects", (0, 0)),
    ("motions", ()), ("motions", ("walk", "fly")), ("motions", "walk"), ("background_motion", 1),
    ("max_speed", -1.0), ("max_speed", float("nan")), ("max_pan", 100.0), ("max_zoom", 0.5),
    ("num_distractors", (3, 1)), ("num_distractors", 2), ("max_sway", -0.1), ("subject_height", (0.9, 0.5)),
    ("subject_height", (0.05, 0.5)), ("time_step", 0), ("keypoint_noise", -1), ("occluded_confidence", (0.5, 1.5)),
    ("markers", "yes"),
])
def test_bad_config_raises(field, value):
    with pytest.raises(ValueError, match=f"SyntheticConfig.{field}"):
        SyntheticConfig(**{field: value})


def test_config_accepts_lists():
    cfg = SyntheticConfig(num_subjects=[1, 2], motions=["walk"], subject_height=[0.5, 0.6])
    assert cfg.num_subjects == (1, 2) and cfg.motions == ("walk",) and cfg.subject_height == (0.5, 0.6)
    assert cfg.max_subjects == 2 and hash(cfg) == hash(SyntheticConfig(num_subjects=(1, 2), motions=("walk",),
                                                                       subject_height=(0.5, 0.6)))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="seed"):
        render_clip(-1, 2)
    with pytest.raises(ValueError, match="num_frames"):
        render_clip(0, 1)
    with pytest.raises(TypeError, match="config"):
        render_pair(0, {"height": 64})
