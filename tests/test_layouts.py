"""Keypoint layouts and convert_keypoints (hmore_kernels.layouts, docs/ops.md section 4).

The module is plain PyTorch indexing (no kernels, hence no backends or benchmark); the checks are against
hand-written joint tables of the published orders (COCO keypoint annotations, MediaPipe's BlazePose-33,
Human3.6M as MotionBERT orders it)."""
import pytest
import torch

from hmore_kernels import convert_keypoints
from hmore_kernels.layouts import BLAZEPOSE33, COCO17, H36M17, LAYOUTS
from hmore_kernels.skeleton import COCO17 as COCO17_from_skeleton

# BlazePose-33 index of each COCO-17 joint, from MediaPipe's landmark list
BLAZE_OF_COCO = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]


def test_layout_tables():
    assert COCO17_from_skeleton is COCO17
    assert (COCO17.num_joints, BLAZEPOSE33.num_joints, H36M17.num_joints) == (17, 33, 17)
    assert len(COCO17.bones) == 16 and len(H36M17.bones) == 16
    assert set(LAYOUTS) == {"coco17", "blazepose33", "h36m17"}
    for lay in LAYOUTS.values():
        # every bone joins two different joints, no bone twice
        assert all(a != b for a, b in lay.bones)
        assert len({tuple(sorted(b)) for b in lay.bones}) == len(lay.bones)
        assert lay.bones_tensor().shape == (len(lay.bones), 2) and lay.bones_tensor().dtype == torch.int64


@pytest.mark.parametrize("lay", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_flip_is_a_mirror_involution(lay):
    f = lay.flip
    assert sorted(f) == list(range(lay.num_joints))
    assert all(f[f[j]] == j for j in range(lay.num_joints))
    for j, n in enumerate(lay.names):
        m = lay.names[f[j]]
        if n.startswith("left_"):
            assert m == "right_" + n[5:]
        elif n.startswith("right_"):
            assert m == "left_" + n[6:]
        else:
            assert f[j] == j
    # the mirror of a bone is a bone
    bones = {tuple(sorted(b)) for b in lay.bones}
    assert {tuple(sorted((f[a], f[b]))) for a, b in lay.bones} == bones


def test_coco_flip_table():
    assert COCO17.flip == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


def test_blazepose_to_coco_selects_joints(gen):
    k = torch.rand(4, 33, 2, generator=gen) * 500
    c = torch.rand(4, 33, generator=gen)
    k2, c2 = convert_keypoints(k, c, BLAZEPOSE33, "coco17")
    assert torch.equal(k2, k[:, BLAZE_OF_COCO]) and torch.equal(c2, c[:, BLAZE_OF_COCO])


def test_coco_to_h36m_derived_joints(gen):
    k = torch.rand(2, 3, 17, 2, generator=gen, dtype=torch.float64)  # any leading shape
    c = torch.rand(2, 3, 17, generator=gen, dtype=torch.float64)
    k2, c2 = convert_keypoints(k, c, "coco17", "h36m17")
    assert k2.shape == (2, 3, 17, 2) and c2.shape == (2, 3, 17)
    idx = {n: i for i, n in enumerate(COCO17.names)}
    pelvis = (k[..., idx["left_hip"], :] + k[..., idx["right_hip"], :]) / 2
    thorax = (k[..., idx["left_shoulder"], :] + k[..., idx["right_shoulder"], :]) / 2
    torch.testing.assert_close(k2[..., 0, :], pelvis)
    torch.testing.assert_close(k2[..., 8, :], thorax)
    torch.testing.assert_close(k2[..., 7, :], (pelvis + thorax) / 2)  # spine: pelvis-thorax midpoint
    torch.testing.assert_close(k2[..., 10, :], (k[..., 1, :] + k[..., 2, :]) / 2)  # head: between the eyes
    torch.testing.assert_close(c2[..., 0], torch.minimum(c[..., 11], c[..., 12]))  # weakest source
    for h, n in [(1, "right_hip"), (3, "right_ankle"), (9, "nose"), (13, "left_wrist"), (14, "right_shoulder")]:
        assert torch.equal(k2[..., h, :], k[..., idx[n], :]) and torch.equal(c2[..., h], c[..., idx[n]])


def test_h36m_to_coco_missing_joints_have_zero_confidence(gen):
    k = torch.rand(5, 17, 2, generator=gen)
    c = torch.rand(5, 17, generator=gen) + 0.1
    k2, c2 = convert_keypoints(k, c, "h36m17", "coco17")
    for n in ("left_eye", "right_eye", "left_ear", "right_ear"):
        j = COCO17.index(n)
        assert torch.all(c2[:, j] == 0) and torch.equal(k2[:, j], k[:, H36M17.index("head")])
    assert torch.all(c2[:, COCO17.index("nose")] > 0)
    # COCO -> H36M -> COCO keeps every body joint exactly
    body = [COCO17.index(n) for n in COCO17.names if n not in ("left_eye", "right_eye", "left_ear", "right_ear")]
    kc = torch.rand(5, 17, 2, generator=gen)
    cc = torch.rand(5, 17, generator=gen)
    k3, c3 = convert_keypoints(*convert_keypoints(kc, cc, "coco17", "h36m17"), "h36m17", "coco17")
    assert torch.equal(k3[:, body], kc[:, body]) and torch.equal(c3[:, body], cc[:, body])


def test_identity_and_gradient(gen):
    k = torch.rand(3, 17, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    c = torch.rand(3, 17, generator=gen, dtype=torch.float64)
    k2, c2 = convert_keypoints(k, c, "coco17", "coco17")
    assert torch.equal(k2, k) and torch.equal(c2, c)
    assert torch.autograd.gradcheck(lambda t: convert_keypoints(t, c, "coco17", "h36m17")[0], (k,))


def test_empty_batch():
    k2, c2 = convert_keypoints(torch.zeros(0, 33, 2), torch.zeros(0, 33), "blazepose33", "h36m17")
    assert k2.shape == (0, 17, 2) and c2.shape == (0, 17)


@pytest.mark.parametrize(
    "kpts, conf, src, dst, exc, word",
    [
        (torch.zeros(2, 17, 2), torch.zeros(2, 17), "coco18", "coco17", ValueError, "src"),
        (torch.zeros(2, 17, 2), torch.zeros(2, 17), "coco17", 17, ValueError, "dst"),
        (torch.zeros(2, 33, 2), torch.zeros(2, 33), "coco17", "h36m17", ValueError, "kpts"),
        (torch.zeros(2, 17, 3), torch.zeros(2, 17), "coco17", "h36m17", ValueError, "kpts"),
        (torch.zeros(2, 17, 2), torch.zeros(2, 16), "coco17", "h36m17", ValueError, "conf"),
        (torch.zeros(2, 17, 2, dtype=torch.int64), torch.zeros(2, 17), "coco17", "h36m17", TypeError, "kpts"),
        ([[0.0, 0.0]] * 17, torch.zeros(17), "coco17", "h36m17", TypeError, "kpts"),
    ],
)
def test_exceptions(kpts, conf, src, dst, exc, word):
    with pytest.raises(exc, match=word):
        convert_keypoints(kpts, conf, src, dst)
