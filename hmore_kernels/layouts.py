"""Keypoint layouts (COCO-17, BlazePose-33, H36M-17) and conversion between them (docs/ops.md section 4).

A :class:`Layout` names its joints, lists the bones the skeleton constraint samples points on, and gives
the left/right mirror permutation that a horizontal flip needs. :func:`convert_keypoints` maps keypoints
and confidences between layouts: a target joint is the mean of one or more source joints (H36M's pelvis
is the mean of the hips, as MotionBERT builds it from COCO) and takes the *lowest* confidence among them,
since a derived joint is only as reliable as its weakest source. A target joint with no source at all
(COCO's eyes and ears from H36M) is placed on a stand-in joint with confidence 0, so that it is present,
finite, and ignored by every confidence-weighted op.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Layout:
    """A keypoint layout. ``bones`` are (parent, child) joint indices; ``flip[j]`` is j's mirror joint."""

    name: str
    names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    flip: tuple[int, ...] = field(init=False)

    def __post_init__(self):
        index = {n: i for i, n in enumerate(self.names)}
        flip = []
        for n in self.names:
            if n.startswith("left_"):
                flip.append(index["right_" + n[5:]])
            elif n.startswith("right_"):
                flip.append(index["left_" + n[6:]])
            else:
                flip.append(index[n])
        object.__setattr__(self, "flip", tuple(flip))
        for a, b in self.bones:
            if not (0 <= a < len(self.names) and 0 <= b < len(self.names)):
                raise ValueError(f"{self.name}: bone ({a}, {b}) out of range")

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def bones_tensor(self, device=None) -> torch.Tensor:
        """The bones as an int64 tensor ``[E, 2]``."""
        return torch.tensor(self.bones, dtype=torch.int64, device=device)


# COCO-17 (the order of the COCO keypoint annotations). The bones are COCO's 19-link skeleton without its
# three links that are not limbs (eye-eye and ear-shoulder on both sides): 16 bones, the head's 4 attached
# to the nose, the torso a quadrilateral of shoulders and hips.
COCO17 = Layout(
    "coco17",
    (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    (
        (0, 1), (0, 2), (1, 3), (2, 4),
        (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
        (5, 11), (6, 12), (11, 12),
        (11, 13), (13, 15), (12, 14), (14, 16),
    ),
)

# MediaPipe's BlazePose-33 landmarks, in MediaPipe's order; bones as MediaPipe's POSE_CONNECTIONS for the
# body (face outline and mouth left out).
BLAZEPOSE33 = Layout(
    "blazepose33",
    (
        "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
        "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "left_heel", "right_heel", "left_foot_index", "right_foot_index",
    ),
    (
        (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
        (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
        (11, 23), (12, 24), (23, 24),
        (23, 25), (25, 27), (27, 29), (29, 31), (27, 31),
        (24, 26), (26, 28), (28, 30), (30, 32), (28, 32),
    ),
)

# Human3.6M's 17 joints in the order MotionBERT and VideoPose3D use.
H36M17 = Layout(
    "h36m17",
    (
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "nose", "head",
        "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
    ),
    (
        (0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10),
        (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16),
    ),
)

LAYOUTS = {l.name: l for l in (COCO17, BLAZEPOSE33, H36M17)}


def _sources(src: Layout, dst: Layout) -> list[tuple[tuple[int, ...], bool]]:
    """For every joint of ``dst``: (source joints to average, whether it really exists in ``src``)."""
    s = {n: i for i, n in enumerate(src.names)}
    derived = {
        "pelvis": ("left_hip", "right_hip"),
        "thorax": ("left_shoulder", "right_shoulder"),
        "spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),  # pelvis-thorax midpoint
        "head": ("left_eye", "right_eye"),
    }
    # stand-ins (confidence 0) for joints that src cannot provide
    stand_in = {"left_eye": "head", "right_eye": "head", "left_ear": "head", "right_ear": "head", "head": "nose"}
    out = []
    for n in dst.names:
        if n in s:
            out.append(((s[n],), True))
        elif n in derived and all(m in s for m in derived[n]):
            out.append((tuple(s[m] for m in derived[n]), True))
        elif n in stand_in and stand_in[n] in s:
            out.append(((s[stand_in[n]],), False))
        else:
            raise ValueError(f"convert_keypoints: cannot derive joint {n!r} of {dst.name} from {src.name}")
    return out


def _layout(x, name: str) -> Layout:
    if isinstance(x, Layout):
        return x
    if isinstance(x, str) and x.lower() in LAYOUTS:
        return LAYOUTS[x.lower()]
    raise ValueError(f"{name}: expected a Layout or one of {', '.join(LAYOUTS)}, got {x!r}")


def convert_keypoints(kpts: torch.Tensor, conf: torch.Tensor, src, dst) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert keypoints between layouts.

    Args:
        kpts: ``[..., J_src, 2]`` (x, y) float tensor.
        conf: ``[..., J_src]`` confidences in [0, 1], same leading shape.
        src, dst: :class:`Layout` or its name (``"coco17"``, ``"blazepose33"``, ``"h36m17"``).

    Returns:
        ``(kpts [..., J_dst, 2], conf [..., J_dst])``, same dtype and device. Differentiable in ``kpts``.
        A derived joint is the mean of its sources with their minimum confidence; a joint ``src`` lacks is
        placed on a stand-in joint with confidence 0.
    """
    src, dst = _layout(src, "src"), _layout(dst, "dst")
    if not isinstance(kpts, torch.Tensor) or not isinstance(conf, torch.Tensor):
        raise TypeError("convert_keypoints: kpts and conf must be torch.Tensors")
    if kpts.dim() < 2 or kpts.shape[-1] != 2 or kpts.shape[-2] != src.num_joints:
        raise ValueError(f"kpts: expected shape [..., {src.num_joints}, 2] for {src.name}, got {tuple(kpts.shape)}")
    if tuple(conf.shape) != tuple(kpts.shape[:-1]):
        raise ValueError(f"conf: expected shape {tuple(kpts.shape[:-1])} to match kpts, got {tuple(conf.shape)}")
    if not kpts.is_floating_point() or not conf.is_floating_point():
        raise TypeError(f"kpts, conf: expected floating-point tensors, got {kpts.dtype} and {conf.dtype}")
    k_out, c_out = [], []
    for joints, exists in _sources(src, dst):
        idx = list(joints)
        k_out.append(kpts[..., idx, :].mean(dim=-2))
        c = conf[..., idx].amin(dim=-1)
        c_out.append(c if exists else torch.zeros_like(c))
    return torch.stack(k_out, dim=-2), torch.stack(c_out, dim=-1)
