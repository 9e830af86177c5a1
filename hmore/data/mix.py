"""Training pairs for ``hmore train``: synthetic pairs rendered on the fly, dataset folders (real clips
from ``hmore annotate``, or written synthetic clips), or a weighted mix, in one sample schema.

Sample ``n`` (the n-th pair the run ever draws) is a pure function of ``(seed, n)``: which source, which
pair and which augmentation all come from ``numpy.random.default_rng([seed, n])``. A run therefore reads
the same data whatever the number of DataLoader workers, and a resumed run continues exactly where it
stopped; with DDP, rank r of R draws samples ``step*B*R + r*B + b``, the same pairs as one process with
batch ``B*R``.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from .dataset import PairDataset
from .format import NUM_JOINTS
from .synthetic import SPLIT_SEED_SPAN, SyntheticConfig, SyntheticPairs

__all__ = ["MixedPairs", "StepSampler", "parse_sources", "BUILTIN_SOURCES", "PriorPolicy", "make_prior"]

# "synthetic": rendered people (hmore.data.synthetic); "photos": real photographs of people composited over
# real photos with exact flow (hmore.data.photos, role "train")
BUILTIN_SOURCES = ("synthetic", "photos")


@dataclasses.dataclass(frozen=True)
class PriorPolicy:
    """How a training sample's person prior (the model's ``prior`` input, ``HMoReConfig.person_prior``) is
    made [ours]: with probability ``segmenter`` the segmenter a user runs at inference (MediaPipe's selfie
    mask, :func:`hmore.data.segment.person_probability`) on frame 0, errors and all (it misses most
    synthetic people); with ``corrupt`` the true mask through :func:`hmore.data.segment.corrupt_mask` (eroded,
    dilated, holed, shifted, as segmenters err); otherwise (``1 - segmenter - corrupt``) none: the sample
    trains the frames-only model."""

    segmenter: float = 0.5
    corrupt: float = 0.3

    def __post_init__(self):
        for name in ("segmenter", "corrupt"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"prior.{name}: expected a probability in [0, 1], got {v!r}")
        if self.segmenter + self.corrupt > 1 + 1e-9:
            raise ValueError(f"prior: segmenter + corrupt must be <= 1, got {self.segmenter} + {self.corrupt}")


def make_prior(policy: PriorPolicy, frame0: torch.Tensor, mask0: torch.Tensor, g: np.random.Generator):
    """``(prior [1, H, W] float32, valid bool scalar)`` for one sample (``frame0 [3, H, W]`` in [0, 1],
    ``mask0 [1, H, W]`` bool) under ``policy``; ``g`` is the sample's generator (so the choice is a pure
    function of the sample)."""
    from .segment import corrupt_mask, person_probability

    u = g.random()
    H, W = mask0.shape[-2:]
    if u < policy.segmenter:
        rgb = (frame0.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
        return torch.from_numpy(np.ascontiguousarray(person_probability(rgb), dtype=np.float32))[None], torch.tensor(True)
    if u < policy.segmenter + policy.corrupt:
        m = corrupt_mask(mask0[0].numpy().astype(bool), g)
        return torch.from_numpy(m.astype(np.float32))[None], torch.tensor(True)
    return torch.zeros(1, H, W), torch.tensor(False)


def parse_sources(data) -> list[dict]:
    """Normalise a ``data`` config entry: a list of ``{"source": "synthetic" | PATH, "weight": w}``
    (a bare string is weight 1). Folders must exist; weights must be positive."""
    if isinstance(data, (str, dict)):
        data = [data]
    if not isinstance(data, (list, tuple)) or not data:
        raise ValueError(f"data: expected a non-empty list of sources, got {data!r}")
    out = []
    for i, d in enumerate(data):
        d = {"source": d} if isinstance(d, str) else dict(d)
        extra = set(d) - {"source", "weight"}
        if extra or "source" not in d:
            raise ValueError(f"data[{i}]: expected keys 'source' and optionally 'weight', got {sorted(d)}")
        w = d.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 or w == float("inf"):
            raise ValueError(f"data[{i}].weight: expected a finite number > 0, got {w!r}")
        src = d["source"]
        if not isinstance(src, str) or not src:
            raise ValueError(f"data[{i}].source: expected 'synthetic', 'photos' or a dataset folder path, got {src!r}")
        if src not in BUILTIN_SOURCES and not os.path.isdir(src):
            raise FileNotFoundError(f"{src}: data folder does not exist (data[{i}].source)")
        out.append({"source": src, "weight": float(w)})
    return out


class MixedPairs(torch.utils.data.Dataset):
    """``dataset[n]`` -> one training sample (dict of tensors), for any ``n >= 0``.

    Args:
        sources: as :func:`parse_sources` returns.
        crop: ``(h, w)``: synthetic pairs are rendered at this size (the generator scales its people and
            motions to the frame), folder pairs are randomly cropped to it.
        seed: the run's data seed.
        synthetic: :class:`SyntheticConfig` field overrides (height/width come from ``crop``).
        max_persons: P of the keypoint tensors (default 1: the subject; extra tracks are dropped).
        augment: folder pairs get PairDataset's flip and photometric jitter.
        prior: a :class:`PriorPolicy` (samples get ``prior0 [1, h, w]`` and ``prior_valid``), or None (no prior).
        flow_init: "none" or a classical method (:mod:`hmore.models.classical`): samples get ``flow_init
            [2, h, w]``, computed here in the loader's worker rather than in the training step.

    Sample: ``frame0, frame1 [3, h, w]`` float32 in [0, 1]; ``mask0 [1, h, w]`` bool; ``keypoints0/1
    [P, 17, 2]``; ``conf0/1 [P, 17]``; ``has_flow`` bool scalar; ``world_flow, local_flow [2, h, w]``
    (zeros when the pair has no ground truth); ``flow_valid [1, h, w]`` bool (finite ground truth; all
    False without); ``full_flow [2, h, w]`` (the whole scene's exact flow: world flow on the body, the
    background's elsewhere; zeros without) and ``full_valid [1, h, w]``; ``subject_motion [2]`` (exact v_s;
    zeros without); ``source`` int64 (index into ``sources``); ``n`` int64; and ``prior0``/``prior_valid``,
    ``flow_init`` as asked.
    """

    def __init__(self, sources: list[dict], crop=(128, 128), seed: int = 0, synthetic: dict | None = None,
                 max_persons: int = 1, augment: bool = True, prior: PriorPolicy | None = None,
                 flow_init: str = "none"):
        self.sources = parse_sources(sources)
        self.crop = (int(crop[0]), int(crop[1]))
        self.seed = int(seed)
        self.max_persons = int(max_persons)
        w = np.array([s["weight"] for s in self.sources], np.float64)
        self.cum = np.cumsum(w / w.sum())
        syn = dict(synthetic or {})
        for k in ("height", "width"):
            if k in syn:
                raise ValueError(f"synthetic.{k}: set by crop (the pairs are rendered at the crop size)")
        names = {f.name for f in dataclasses.fields(SyntheticConfig)}
        for k in syn:
            if k not in names:
                from ..models.config import unknown_key_error

                raise unknown_key_error(k, names - {"height", "width"}, "synthetic")
        self.synthetic_config = SyntheticConfig(height=self.crop[0], width=self.crop[1], **syn)
        self._synthetic = SyntheticPairs("train", SPLIT_SEED_SPAN, self.synthetic_config)
        self._photos = None
        if any(s["source"] == "photos" for s in self.sources):
            from .photos import PhotoPairs

            self._photos = PhotoPairs("train", SPLIT_SEED_SPAN, self.crop[0], self.crop[1])
        self.prior = prior
        self.flow_init = flow_init
        self._folders: dict[int, PairDataset] = {}
        for i, s in enumerate(self.sources):
            if s["source"] not in BUILTIN_SOURCES:
                ds = PairDataset(s["source"], crop_size=self.crop, seed=self.seed, max_persons=self.max_persons,
                                 augment=augment)
                if len(ds) == 0:
                    raise ValueError(f"{s['source']}: no training pairs (no two consecutive frames with a person)")
                self._folders[i] = ds

    def __len__(self) -> int:
        return 1 << 62  # an endless stream; StepSampler picks the indices

    def _persons(self, kp: torch.Tensor, c: torch.Tensor):
        P = self.max_persons
        kp, c = kp[:P], c[:P]
        if kp.shape[0] < P:
            kp = torch.cat([kp, kp.new_zeros(P - kp.shape[0], NUM_JOINTS, 2)])
            c = torch.cat([c, c.new_zeros(P - c.shape[0], NUM_JOINTS)])
        return kp.float().contiguous(), c.float().contiguous()

    def __getitem__(self, n: int) -> dict:
        g = np.random.default_rng([self.seed, int(n)])
        k = int(np.searchsorted(self.cum, g.random(), side="right"))
        k = min(k, len(self.sources) - 1)
        if self.sources[k]["source"] == "synthetic":
            s = self._synthetic[int(g.integers(SPLIT_SEED_SPAN))]
        elif self.sources[k]["source"] == "photos":
            s = self._photos[int(g.integers(SPLIT_SEED_SPAN))]
        else:
            ds = self._folders[k]
            s = ds.get(int(g.integers(len(ds))), epoch=int(n))
        h, w = self.crop
        out = {"frame0": s["frame0"], "frame1": s["frame1"], "mask0": s["mask0"].bool(),
               "source": torch.tensor(k, dtype=torch.int64), "n": torch.tensor(int(n), dtype=torch.int64)}
        out["keypoints0"], out["conf0"] = self._persons(s["keypoints0"], s["conf0"])
        out["keypoints1"], out["conf1"] = self._persons(s["keypoints1"], s["conf1"])
        if "world_flow" in s:
            wf = s["world_flow"]
            lf = s.get("local_flow", torch.zeros_like(wf))
            valid = torch.isfinite(wf).all(0, keepdim=True)
            out.update(has_flow=torch.tensor(True), world_flow=torch.nan_to_num(wf), local_flow=torch.nan_to_num(lf),
                       flow_valid=valid)
            if "full_flow" in s:
                ff = s["full_flow"]
            elif "background_flow" in s:  # the generator's background layer moves under the body too
                ff = torch.where(out["mask0"], wf, s["background_flow"])
            else:
                ff = None
            if ff is not None:
                out.update(full_flow=torch.nan_to_num(ff), full_valid=torch.isfinite(ff).all(0, keepdim=True))
            sm = s.get("subject_motion")
            if sm is not None:
                out["subject_motion"] = sm.reshape(-1, 2)[0].float()
        else:
            out.update(has_flow=torch.tensor(False), world_flow=torch.zeros(2, h, w), local_flow=torch.zeros(2, h, w),
                       flow_valid=torch.zeros(1, h, w, dtype=torch.bool))
        out.setdefault("full_flow", torch.zeros(2, h, w))
        out.setdefault("full_valid", torch.zeros(1, h, w, dtype=torch.bool))
        out.setdefault("subject_motion", torch.zeros(2))
        if self.prior is not None:
            out["prior0"], out["prior_valid"] = make_prior(self.prior, out["frame0"], out["mask0"], g)
        if self.flow_init != "none":
            from ..models.classical import dis_flow_batch

            out["flow_init"] = dis_flow_batch(out["frame0"][None], out["frame1"][None], self.flow_init)[0]
        return out


class StepSampler(torch.utils.data.Sampler):
    """Endless sample indices for steps ``start_step, start_step + 1, ...``: rank ``r`` of ``world`` gets
    ``step*batch*world + r*batch + b`` for ``b < batch`` (see the module docstring)."""

    def __init__(self, batch_size: int, start_step: int = 0, rank: int = 0, world_size: int = 1):
        self.batch_size, self.start_step, self.rank, self.world_size = batch_size, start_step, rank, world_size

    def __iter__(self):
        step = self.start_step
        B = self.batch_size
        while True:
            base = (step * self.world_size + self.rank) * B
            yield from range(base, base + B)
            step += 1

    def __len__(self) -> int:
        return 1 << 62
