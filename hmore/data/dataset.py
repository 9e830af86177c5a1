"""PyTorch Dataset of training pairs over hmore dataset folders, with the augmentations a flow model needs.

Each item is a pair of consecutive frames (t, t+stride) of one clip where both frames have at least one
person (frames without anyone stay in the dataset and its keypoints.json, recorded with num_persons 0,
but no pair uses them). Augmentations, applied in this order, all drawn from a generator seeded by
``(seed, epoch, index)`` so an item is reproducible whatever the worker that loads it:

1. random crop to ``crop_size`` (the same window in both frames, so flows keep their values): keypoints
   shift by the window's corner; a joint that falls outside the window gets confidence 0 (its coordinates
   are kept).
2. horizontal flip with probability ``flip_prob``: images, masks and flows mirrored, ``x -> W - 1 - x``
   for keypoints (pixel centres at integer coordinates), joints permuted by ``COCO17.flip`` (a left wrist
   becomes a right wrist), the x component of every flow and of ``subject_motion`` negated. Applying the
   flip twice gives back the input exactly.
3. photometric jitter (``jitter=(brightness, contrast, saturation, hue)``, RAFT's defaults 0.4, 0.4, 0.4,
   0.5/pi) with probability ``jitter_prob``: factors drawn uniformly in ``[1 - b, 1 + b]`` etc. and a hue
   rotation in ``[-h, h]`` turns (YIQ rotation); the same factors for both frames, except with
   probability ``asymmetric_prob`` when each frame draws its own (as RAFT does, so the model does not
   rely on brightness constancy). The order of the four operations is shuffled per draw.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from hmore_kernels.layouts import COCO17

from .format import NUM_JOINTS, DatasetReader, find_datasets

__all__ = ["PairDataset", "flip_sample", "crop_sample", "color_jitter"]

_FLOW_KEYS = ("world_flow", "local_flow", "background_flow")
_MAP_KEYS = ("mask0", "flow_valid", "occlusion") + _FLOW_KEYS


def flip_sample(s: dict) -> dict:
    """Mirror a sample dict left-right (see module docstring). Returns a new dict; an involution."""
    out = dict(s)
    W = s["frame0"].shape[-1]
    perm = torch.tensor(COCO17.flip, dtype=torch.long)
    for k in ("frame0", "frame1") + _MAP_KEYS:
        if k in s:
            out[k] = s[k].flip(-1)
    for k in _FLOW_KEYS:
        if k in s:
            f = out[k].clone()
            f[0] = -f[0]
            out[k] = f
    for i in ("0", "1"):
        kp = s["keypoints" + i][:, perm].clone()
        kp[..., 0] = (W - 1) - kp[..., 0]
        out["keypoints" + i] = kp
        out["conf" + i] = s["conf" + i][:, perm].clone()
    if "subject_motion" in s:
        sm = s["subject_motion"].clone()
        sm[..., 0] = -sm[..., 0]
        out["subject_motion"] = sm
    return out


def crop_sample(s: dict, y0: int, x0: int, h: int, w: int) -> dict:
    """Crop a sample dict to rows y0..y0+h, columns x0..x0+w; keypoints shift, joints outside get conf 0."""
    out = dict(s)
    for k in ("frame0", "frame1") + _MAP_KEYS:
        if k in s:
            out[k] = s[k][..., y0:y0 + h, x0:x0 + w]
    for i in ("0", "1"):
        kp = s["keypoints" + i].clone()
        kp[..., 0] -= x0
        kp[..., 1] -= y0
        inside = (kp[..., 0] >= -0.5) & (kp[..., 0] <= w - 0.5) & (kp[..., 1] >= -0.5) & (kp[..., 1] <= h - 0.5)
        out["keypoints" + i] = kp
        out["conf" + i] = torch.where(inside, s["conf" + i], torch.zeros_like(s["conf" + i]))
    return out


def _gray(img: torch.Tensor) -> torch.Tensor:
    return (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0)


def _hue(img: torch.Tensor, turns: float) -> torch.Tensor:
    # rotate the chroma plane of YIQ: a cheap, exactly invertible hue shift (no HSV round trip)
    m = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=img.dtype)
    a = 2 * math.pi * turns
    rot = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]], dtype=img.dtype)
    full = torch.linalg.inv(m) @ rot @ m
    return torch.einsum("ij,jhw->ihw", full, img)


def color_jitter(img: torch.Tensor, factors: dict) -> torch.Tensor:
    """Apply brightness/contrast/saturation factors and a hue rotation (turns) to ``img [3, H, W]`` in [0, 1]."""
    for op in factors["order"]:
        if op == "brightness":
            img = img * factors["brightness"]
        elif op == "contrast":
            m = _gray(img).mean()
            img = (img - m) * factors["contrast"] + m
        elif op == "saturation":
            g = _gray(img)
            img = (img - g) * factors["saturation"] + g
        elif op == "hue":
            img = _hue(img, factors["hue"])
        img = img.clamp(0.0, 1.0)
    return img


class PairDataset(torch.utils.data.Dataset):
    """Training pairs from one or more dataset folders (synthetic or real; docs/dataset.md).

    Args:
        roots: a dataset folder, a folder of dataset folders, or a list of either.
        crop_size: ``(h, w)`` random crop, or None for full frames (every clip must then have one size
            for batching). A clip smaller than the crop raises ValueError naming it.
        flip_prob: probability of the horizontal flip (0 disables).
        jitter: ``(brightness, contrast, saturation, hue)`` ranges, or None to disable.
        jitter_prob: probability that a pair is jittered at all.
        asymmetric_prob: probability that the two frames draw separate jitter factors.
        stride: frame gap of a pair (1: consecutive frames). Ground-truth flows exist only for stride 1.
        max_persons: P of the keypoint tensors (pad with confidence 0; extra tracks dropped, lowest ids
            kept); default: the largest track count over the data.
        seed: base seed; call :meth:`set_epoch` each epoch for fresh augmentations.
        augment: False turns every augmentation off (evaluation).

    Item: a dict of tensors ``frame0, frame1 [3, H, W] float32`` in [0, 1]; ``keypoints0, keypoints1
    [P, 17, 2] float32`` (x, y px, track p in both); ``conf0, conf1 [P, 17] float32``; ``mask0 [1, H, W]
    bool``; when the clip has ground truth: ``world_flow, local_flow [2, H, W] float32`` (t -> t+1, channel 0
    = x), ``flow_valid [1, H, W] bool`` (finite ground truth), ``occlusion [1, H, W] bool``,
    ``subject_motion [P, 2]``; and ``index`` ``[2] int64`` = (clip, t).
    """

    def __init__(self, roots, crop_size=None, flip_prob: float = 0.5, jitter=(0.4, 0.4, 0.4, 0.5 / math.pi),
                 jitter_prob: float = 0.8, asymmetric_prob: float = 0.2, stride: int = 1, max_persons: int | None = None,
                 seed: int = 0, augment: bool = True):
        self.readers = [DatasetReader(r) for r in find_datasets(roots)]
        if not (isinstance(stride, int) and stride >= 1):
            raise ValueError(f"stride: expected a positive integer, got {stride!r}")
        for name, p in (("flip_prob", flip_prob), ("jitter_prob", jitter_prob), ("asymmetric_prob", asymmetric_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {p!r}")
        if jitter is not None and (len(jitter) != 4 or any(j < 0 for j in jitter)):
            raise ValueError(f"jitter: expected 4 non-negative ranges (brightness, contrast, saturation, hue), got {jitter!r}")
        if crop_size is not None:
            crop_size = (int(crop_size[0]), int(crop_size[1]))
            for r in self.readers:
                if r.height < crop_size[0] or r.width < crop_size[1]:
                    raise ValueError(f"{r.root}: frames are {r.width}x{r.height}, smaller than crop_size "
                                     f"{crop_size[1]}x{crop_size[0]} (w x h)")
        self.crop_size, self.flip_prob, self.jitter = crop_size, flip_prob, jitter
        self.jitter_prob, self.asymmetric_prob, self.stride = jitter_prob, asymmetric_prob, stride
        self.seed, self.epoch, self.augment = int(seed), 0, bool(augment)
        self.pairs: list[tuple[int, int]] = []
        self.skipped_frames: list[tuple[int, int]] = []  # (clip, t) of frames with nobody in them
        for c, r in enumerate(self.readers):
            has = [r.num_persons(t) > 0 for t in range(r.num_frames)]
            self.skipped_frames += [(c, t) for t, h in enumerate(has) if not h]
            self.pairs += [(c, t) for t in range(r.num_frames - stride) if has[t] and has[t + stride]]
        if max_persons is None:
            max_persons = max([r.num_persons(t) for r in self.readers for t in range(r.num_frames)] + [1])
        self.max_persons = int(max_persons)

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _keypoints(self, r: DatasetReader, t: int, tracks: list[int]):
        ids, k, c = r.persons(t)
        P = self.max_persons
        kp = torch.zeros(P, NUM_JOINTS, 2)
        cf = torch.zeros(P, NUM_JOINTS)
        where = {int(i): n for n, i in enumerate(ids)}
        for p, tr in enumerate(tracks[:P]):
            if tr in where:
                kp[p] = torch.from_numpy(k[where[tr]])
                cf[p] = torch.from_numpy(c[where[tr]])
        return kp, cf

    def raw(self, i: int, window: tuple[int, int, int, int] | None = None) -> dict:
        """Item ``i`` without augmentation; ``window=(y0, x0, h, w)`` crops it (as :func:`crop_sample`)."""
        c, t = self.pairs[i]
        r = self.readers[c]
        t1 = t + self.stride
        y0, x0, h, w = window if window is not None else (0, 0, r.height, r.width)
        rows, cols = slice(y0, y0 + h), slice(x0, x0 + w)

        def img(a):  # [H, W, 3] uint8 -> cropped [3, h, w] float32 in [0, 1]; cropping first saves the copy
            return torch.from_numpy(np.ascontiguousarray(a[rows, cols])).permute(2, 0, 1).float().div_(255.0)

        ids0 = [int(x) for x in r.persons(t)[0]]
        ids1 = [int(x) for x in r.persons(t1)[0]]
        tracks = sorted(set(ids0) | set(ids1))
        s = {
            "frame0": img(r.frame(t)),
            "frame1": img(r.frame(t1)),
            "mask0": torch.from_numpy(np.ascontiguousarray(r.mask(t)[rows, cols]))[None],
            "index": torch.tensor([c, t], dtype=torch.int64),
        }
        s["keypoints0"], s["conf0"] = self._keypoints(r, t, tracks)
        s["keypoints1"], s["conf1"] = self._keypoints(r, t1, tracks)
        if self.stride == 1 and r.flows:
            valid = None
            for kind in r.flows:
                if kind in ("world", "local"):
                    f = r.flow(kind, t)[rows, cols]
                    v = np.isfinite(f).all(axis=2)
                    valid = v if valid is None else valid & v
                    s[f"{kind}_flow"] = torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1)))
            if valid is not None:
                s["flow_valid"] = torch.from_numpy(valid)[None]
        if self.stride == 1 and r.has_occlusion:
            s["occlusion"] = torch.from_numpy(np.ascontiguousarray(r.occlusion(t)[rows, cols]))[None]
        if self.stride == 1 and r.subject_motion is not None:
            sm = torch.zeros(self.max_persons, 2)
            for p, tr in enumerate(tracks[: self.max_persons]):
                if tr < r.subject_motion.shape[1]:
                    sm[p] = torch.from_numpy(r.subject_motion[t, tr])
            s["subject_motion"] = sm
        if window is not None:  # keypoints shift and lose the joints outside the window, as crop_sample does
            for k in ("0", "1"):
                kp = s["keypoints" + k]
                kp[..., 0] -= x0
                kp[..., 1] -= y0
                inside = (kp[..., 0] >= -0.5) & (kp[..., 0] <= w - 0.5) & (kp[..., 1] >= -0.5) & (kp[..., 1] <= h - 0.5)
                s["conf" + k] = torch.where(inside, s["conf" + k], torch.zeros(()))
        return s

    def _draw_jitter(self, g: np.random.Generator) -> dict:
        b, c, s, h = self.jitter
        order = ["brightness", "contrast", "saturation", "hue"]
        g.shuffle(order)
        return {"brightness": g.uniform(max(0.0, 1 - b), 1 + b), "contrast": g.uniform(max(0.0, 1 - c), 1 + c),
                "saturation": g.uniform(max(0.0, 1 - s), 1 + s), "hue": g.uniform(-h, h), "order": order}

    def __getitem__(self, i: int) -> dict:
        return self.get(i, self.epoch)

    def get(self, i: int, epoch: int) -> dict:
        """Item ``i`` with the augmentations of ``epoch`` (``dataset[i]`` is ``get(i, dataset.epoch)``);
        stateless, so a sampler can draw any (item, epoch) from any worker."""
        if not 0 <= i < len(self.pairs):
            raise IndexError(f"PairDataset: index {i} out of range 0..{len(self.pairs) - 1}")
        g = np.random.default_rng([self.seed, int(epoch), i])
        window = None
        if self.crop_size is not None:
            r = self.readers[self.pairs[i][0]]
            h, w = self.crop_size
            y0 = int(g.integers(0, r.height - h + 1)) if self.augment else (r.height - h) // 2
            x0 = int(g.integers(0, r.width - w + 1)) if self.augment else (r.width - w) // 2
            window = (y0, x0, h, w)
        s = self.raw(i, window)
        if not self.augment:
            return s
        if g.random() < self.flip_prob:
            s = flip_sample(s)
        if self.jitter is not None and g.random() < self.jitter_prob:
            f0 = self._draw_jitter(g)
            f1 = self._draw_jitter(g) if g.random() < self.asymmetric_prob else f0
            s["frame0"] = color_jitter(s["frame0"], f0)
            s["frame1"] = color_jitter(s["frame1"], f1)
        return s
