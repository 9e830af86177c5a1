"""The representations the probe compares, and their on-disk cache.

Dense representations are ``[T', C, S, S]`` arrays (T' = the flow pairs of a clip, t -> t+1 for t in
``size.pair_starts``; S = ``size.input_size``), resized from the full frames with area averaging (a flow is
divided by the same factor, so it stays in pixels of the resized grid):

* ``rgb``: frame t, 3 channels in [0, 1].
* ``dis``: DIS (medium) flow t -> t+1, 2 channels.
* ``dis_masked``: DIS flow times MediaPipe's person mask of frame t (selfie segmenter, probability > 0.5).
* ``hmore_world``: H-MoRe's world flow, 2 channels; ``hmore_world_local``: world and local flow, 4 channels.

Skeletons are ``[T, 17, 3]`` (x, y in pixels of the full frame, confidence), every frame of the clip:

* ``skeleton_gt``: the generator's COCO-17 keypoints and confidences (the ceiling).
* ``skeleton_mediapipe``: MediaPipe Pose on the rendered frames (BlazePose-33 -> COCO-17 as
  ``hmore annotate`` does), confidence 0 for a frame where it found no one.

The cache: one ``.npz`` per clip and *family* (what one computation yields) in
``CACHE/<family>-<key>/<clip>.npz``, written atomically, so an interrupted run resumes and a rerun reuses
it. ``<clip>`` hashes the clip's spec and the sizes that shape the arrays; ``<key>`` hashes what the
family's numbers depend on: the H-MoRe family the weights file's SHA-256, DIS its preset, the MediaPipe
families MediaPipe's version. New weights therefore recompute H-MoRe's flows and nothing else.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter

import cv2
import numpy as np

from hmore.data._io import atomic_write_bytes, sha256_file

from . import METHODS
from .data import ClipSpec, ProbeSize, render_spec

__all__ = ["METHODS", "DENSE", "SKELETON", "FAMILY", "FeatureCache", "CACHE_VERSION", "default_cache_dir"]

DENSE = ("rgb", "dis", "dis_masked", "hmore_world", "hmore_world_local")
SKELETON = ("skeleton_gt", "skeleton_mediapipe")
FAMILY = {"rgb": "render", "skeleton_gt": "render", "dis": "dis", "dis_masked": "dis_masked",
          "hmore_world": "hmore", "hmore_world_local": "hmore", "skeleton_mediapipe": "mediapipe_pose"}
CACHE_VERSION = 1
DIS_PRESET = "dis_medium"


def default_cache_dir() -> str:
    """``$HMORE_PROBE_CACHE``, else ``~/.cache/hmore/probe``."""
    return os.environ.get("HMORE_PROBE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hmore", "probe")


def _h(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _resize(a: np.ndarray, s: int) -> np.ndarray:
    """[H, W, C] float32 -> [C, s, s] by area averaging."""
    r = cv2.resize(a, (s, s), interpolation=cv2.INTER_AREA)
    return (r[:, :, None] if r.ndim == 2 else r).transpose(2, 0, 1)


def _flow_small(flow: np.ndarray, s: int) -> np.ndarray:
    """[H, W, 2] px -> [2, s, s] px of the s x s grid."""
    H, W = flow.shape[:2]
    out = _resize(np.ascontiguousarray(flow, np.float32), s)
    out[0] *= s / W
    out[1] *= s / H
    return out


def _mediapipe_version() -> str:
    try:
        import mediapipe

        return str(getattr(mediapipe, "__version__", "unknown"))
    except ImportError:
        return "missing"


class FeatureCache:
    """Computes and caches the representations of labelled clips.

    Args:
        size: the probe's :class:`ProbeSize` (frames, sizes, pairs).
        cache_dir: the cache folder (created on first write).
        weights: "default" (the shipped weights, checked against their manifest) or a weights file path.
        device: torch device for H-MoRe ("cpu", "cuda", ...).
    ``computed`` / ``reused`` count clips per family: computed here, or read from the cache (what an
    earlier run saved). The families of the last clip asked for are also kept in memory, so the two
    H-MoRe methods (or rgb and skeleton_gt) of one clip cost one read.
    """

    def __init__(self, size: ProbeSize, cache_dir: str, weights: str = "default", device: str = "cpu"):
        self.size, self.cache_dir, self.weights, self.device = size, os.fspath(cache_dir), weights, device
        self.computed: Counter = Counter()
        self.reused: Counter = Counter()
        self._model = None
        self._weights_sha = None
        self._clip = None  # (key, Clip): the last rendered clip, shared by the families of one clip
        self._mem: dict = {}  # (family, clip key) -> arrays, for the last clip only

    # ---- keys ----------------------------------------------------------------------------------
    def weights_sha256(self) -> str:
        if self._weights_sha is None:
            if self.weights == "default":
                from hmore.models import default_weights

                _, man = default_weights()
                self._weights_sha = str(man["sha256"])
            else:
                if not os.path.isfile(self.weights):
                    raise FileNotFoundError(f"--weights {self.weights}: file not found")
                self._weights_sha = sha256_file(self.weights)
        return self._weights_sha

    def family_key(self, family: str) -> str:
        s = self.size
        if family == "render":
            deps = {}
        elif family == "dis":
            deps = {"preset": DIS_PRESET, "cv2": cv2.__version__}
        elif family == "dis_masked":
            deps = {"preset": DIS_PRESET, "cv2": cv2.__version__, "mediapipe": _mediapipe_version(), "mask": "selfie>0.5"}
        elif family == "hmore":
            deps = {"weights_sha256": self.weights_sha256()}
        elif family == "mediapipe_pose":
            deps = {"mediapipe": _mediapipe_version(), "model_complexity": 1}
        else:
            raise ValueError(f"family: unknown {family!r}")
        deps.update(version=CACHE_VERSION, frames=s.frames, height=s.height, width=s.width,
                    pairs=list(s.pair_starts), input_size=s.input_size)
        return _h(deps)

    def path(self, family: str, spec: ClipSpec) -> str:
        return os.path.join(self.cache_dir, f"{family}-{self.family_key(family)}", spec.key + ".npz")

    # ---- access ---------------------------------------------------------------------------------
    def get(self, method: str, spec: ClipSpec) -> np.ndarray:
        """The representation ``method`` of one clip (computed and cached on first use)."""
        if method not in FAMILY:
            raise ValueError(f"method: unknown method {method!r}; valid methods: {', '.join(METHODS)}")
        arrays = self._family(FAMILY[method], spec)
        if method == "hmore_world":
            return arrays["flow"][:, :2]
        if method == "hmore_world_local":
            return arrays["flow"]
        if method == "rgb":
            return arrays["rgb"].astype(np.float32) / 255.0
        if method in SKELETON:
            return arrays["skeleton"]
        return arrays["flow"]

    def _family(self, family: str, spec: ClipSpec) -> dict:
        mem = self._mem.get((family, spec.key))
        if mem is not None:
            return mem
        if not any(k == spec.key for _, k in self._mem):
            self._mem.clear()
        out = self._mem[(family, spec.key)] = self._load_or_compute(family, spec)
        return out

    def _load_or_compute(self, family: str, spec: ClipSpec) -> dict:
        p = self.path(family, spec)
        if os.path.isfile(p):
            try:
                with np.load(p) as z:
                    out = {k: z[k] for k in z.files}
                self.reused[family] += 1
                return out
            except (OSError, ValueError, EOFError):  # a damaged file (not ours: ours are atomic): recompute
                pass
        out = self._compute(family, spec)
        buf = io.BytesIO()
        np.savez(buf, **out)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        atomic_write_bytes(p, buf.getvalue())
        self.computed[family] += 1
        return out

    # ---- computation ----------------------------------------------------------------------------
    def render(self, spec: ClipSpec):
        if self._clip is None or self._clip[0] != spec.key:
            self._clip = (spec.key, render_spec(spec, self.size))
        return self._clip[1]

    def _pairs(self, clip):
        import torch

        t0 = list(self.size.pair_starts)
        f = torch.from_numpy(np.ascontiguousarray(clip.frames)).permute(0, 3, 1, 2)
        return f[t0], f[[t + 1 for t in t0]]

    def _compute(self, family: str, spec: ClipSpec) -> dict:
        clip = self.render(spec)
        S = self.size.input_size
        t0 = list(self.size.pair_starts)
        if family == "render":
            rgb = np.stack([_resize(clip.frames[t].astype(np.float32), S) for t in t0])
            sk = np.concatenate([clip.keypoints[:, 0], clip.confidences[:, 0, :, None]], -1)
            return {"rgb": np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "skeleton": sk.astype(np.float32)}
        if family in ("dis", "dis_masked"):
            from hmore.models.classical import dis_flow_batch

            f0, f1 = self._pairs(clip)
            flow = dis_flow_batch(f0, f1, DIS_PRESET).permute(0, 2, 3, 1).numpy()  # [T', H, W, 2]
            if family == "dis_masked":
                from hmore.data.segment import batch_person_prior, mark_mediapipe_used, quiet_native

                mark_mediapipe_used()
                with quiet_native():
                    mask = batch_person_prior(f0)[:, 0].numpy() > 0.5
                flow = flow * mask[..., None]
            return {"flow": np.stack([_flow_small(x, S) for x in flow]).astype(np.float16)}
        if family == "hmore":
            return {"flow": self._hmore(clip)}
        if family == "mediapipe_pose":
            return {"skeleton": self._mediapipe_pose(clip)}
        raise ValueError(f"family: unknown {family!r}")

    def model(self):
        if self._model is None:
            import hmore

            self._model = hmore.get_model("hmore", weights=self.weights).eval().to(self.device)
        return self._model

    def _hmore(self, clip) -> np.ndarray:
        import torch

        model = self.model()
        f0, f1 = self._pairs(clip)
        f0, f1 = f0.float() / 255.0, f1.float() / 255.0
        kw = {}
        if getattr(model.config, "person_prior", False):
            from hmore.data.segment import batch_person_prior, mark_mediapipe_used, quiet_native

            mark_mediapipe_used()
            with quiet_native():
                kw["prior"] = batch_person_prior(f0).to(self.device)
        out = []
        with torch.no_grad():
            for i in range(0, len(f0), 8):
                sub = {k: v[i:i + 8] for k, v in kw.items()}
                o = model(f0[i:i + 8].to(self.device), f1[i:i + 8].to(self.device), **sub)
                out.append(torch.cat([o["world_flow"], o["local_flow"]], 1).float().cpu())
        flow = torch.cat(out).permute(0, 2, 3, 1).numpy()  # [T', H, W, 4]
        S = self.size.input_size
        small = [np.concatenate([_flow_small(x[..., :2], S), _flow_small(x[..., 2:], S)]) for x in flow]
        return np.stack(small).astype(np.float16)

    def _mediapipe_pose(self, clip) -> np.ndarray:
        from hmore.data.annotate import _Models
        from hmore.data.segment import mark_mediapipe_used, quiet_native

        mark_mediapipe_used()
        T = clip.frames.shape[0]
        out = np.zeros((T, 17, 3), np.float32)
        with quiet_native():
            models = _Models(static=False, mask_source="pose")  # tracking within the clip, fresh per clip
            try:
                for t in range(T):
                    persons, _ = models(np.ascontiguousarray(clip.frames[t]))
                    if persons:
                        _, k, c = persons[0]
                        out[t, :, :2], out[t, :, 2] = k, c
            finally:
                models.close()
        return out
