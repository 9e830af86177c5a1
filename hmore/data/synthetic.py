"""Synthetic people with exact ground truth: frame pairs and clips for training and evaluating H-MoRe.

Each clip shows one or more articulated people (COCO-17 skeleton; tapered, textured limbs of varied
proportions and clothing) performing a parametric motion -- ``walk``, ``run``, ``wave``, ``jump``,
``turn`` -- with a global translation, composited in depth order (self-occlusion, and subjects in front
of one another) over a textured background that moves on its own: a camera pan with a slight zoom,
and a few swaying distractor shapes. See :mod:`hmore.data.synthetic_body` for the body model and
:mod:`hmore.data.synthetic_draw` for how sprites are drawn.

Ground truth, exact by construction (every part is drawn by inverse-mapping pixel centres into the
part's local frame, where its shape and texture live):

* **world flow** of each body pixel ``p`` of frame t (pixel (row i, col j) is the point x = j, y = i):
  ``T_{t+1}(T_t^{-1}(p)) - p`` for the part on top of the depth order at ``p``; 0 off the body.
  It is the image-space motion, so it includes the camera's pan and zoom (the subjects stand in the
  scene the camera films) [ours].
* **subject motion** ``v_s``: the mean displacement t -> t+1 of the torso joints (COCO 5, 6, 11, 12),
  each weighted by ``c_t * c_{t+1}`` (their confidences in both frames); the plain mean if all four
  weights are 0. Computed from the exact joints even when keypoint noise is on.
* **local flow** ``= world flow - v_s`` of the pixel's subject (docs/method.md), 0 off the body.
* **occlusion** (t -> t+1): a body pixel of frame t whose destination ``p + flow``, rounded to the
  nearest pixel, leaves the frame or shows another part (another limb or subject in front) in t+1.
* **background flow**: the motion of the background layer (camera + distractors) at every pixel,
  including those hidden behind subjects.
* **keypoints**: the projected joints; confidence 1 when one of the joint's own parts is on top at
  its pixel (and, for the face points, the face is turned toward the camera), a value drawn from
  ``occluded_confidence`` when it is hidden, 0 outside the frame.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed and config give identical
arrays on every run (across machines, a vectorised ``sin`` may differ in the last bit and move a
colour by one grey level; flows, masks and keypoints do not depend on it). :class:`SyntheticPairs`
maps dataset indices to seeds in disjoint ranges per split (``SPLIT_SEED_OFFSET``).

Known approximations [ours]:

* Parts are flat sprites of a 3-D stick skeleton, ordered by the mean depth of their bone (painter's
  algorithm per part, not a per-pixel z-buffer), so two crossing parts are wholly in front of or
  behind each other. A ``turn`` narrows the torso by the silhouette width of an elliptic cylinder and
  reorders the parts, but the texture does not wrap around the body (2-D approximation of a turn).
* Part shapes are tapered capsules (a band whose half-width varies linearly along the bone, closed
  by elliptic caps) and an ellipse for the head; no hands or feet.
* The flow is image-space motion, camera included; "occluded in t+1" rounds the destination to the
  nearest pixel, so part edges can flip either way by one pixel.
* Colours are rounded to uint8 after bilinear background resampling; the textures are smooth
  (periods >= 9 px) so that bilinear warping by the true flow reproduces them to ~1 grey level.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import synthetic_body as body
from . import synthetic_draw as draw

__all__ = [
    "SyntheticConfig", "Clip", "render_clip", "render_pair", "SyntheticPairs",
    "SPLIT_SEED_OFFSET", "SPLIT_SEED_SPAN", "MOTIONS", "ALL_MOTIONS", "SUBJECT_KEYS", "TORSO_JOINTS", "subject_motion_from_keypoints",
]

MOTIONS = body.MOTIONS
ALL_MOTIONS = body.ALL_MOTIONS
TORSO_JOINTS = (5, 6, 11, 12)  # COCO left/right shoulder, left/right hip
# Seeds of split s are SPLIT_SEED_OFFSET[s] + seed_base + index, with seed_base + length <= SPAN.
SPLIT_SEED_SPAN = 1 << 40
SPLIT_SEED_OFFSET = {"train": 0, "val": 1 * SPLIT_SEED_SPAN, "test": 2 * SPLIT_SEED_SPAN}
DISTRACTOR_KEY0 = 1000  # part-id map values >= this are background distractors


@dataclass(frozen=True)
class SyntheticConfig:
    """What the generator draws. Speeds are in pixels per frame at 256 px frame height and scale with
    the frame height (so a config means the same motion at every resolution).

    height, width: frame size (>= 32).
    num_subjects: an int, or (min, max) drawn per sample; arrays are sized for max (absent subjects
        have zero keypoints, confidences and motion).
    motions: the motions drawn from (uniformly per subject), a non-empty subset of ALL_MOTIONS (the
        default, MOTIONS, is the training mix; synthetic_body.ACTION_MOTIONS adds kick, punch, squat,
        sit_down, clap, bow, limp).
    background_motion: camera pan/zoom and swaying distractors; False gives a static background.
    max_speed: subject translation bound (px/frame); walk/run move at the speed of their gait (no
        foot sliding) up to this bound, the other motions drift at up to 10-20 % of it.
    max_pan: camera pan bound (px/frame); max_zoom: zoom rate bound (relative change per frame).
    num_distractors: (min, max) swaying shapes in the background (0 allowed).
    max_sway: distractor sway amplitude (radians).
    subject_height: (min, max) standing height as a fraction of the frame height.
    time_step: frames of motion time per rendered frame (> 1 gives larger displacements).
    keypoint_noise: std (px) of Gaussian noise added to the emitted keypoints (0: exact).
    occluded_confidence: (lo, hi) range of the confidence of an occluded joint.
    markers: paint a small dark dot at the middle of every limb (for flow checks; off for training).
    photo_background: probability (0..1) that a clip's background texture is a random crop of a bundled
        photo of role ``photo_role`` (see hmore.data.photos: resized to the texture, blurred by half a
        texel so that bilinear warping stays accurate) instead of the procedural texture. The choice and
        the crop come from a generator of their own (seeded by the clip's seed), so 0 (the default)
        leaves every output as it was.
    photo_role: "train", "val" or "test": whose photos photo_background draws (a val split uses "val").
    """

    height: int = 256
    width: int = 256
    num_subjects: int | tuple[int, int] = 1
    motions: tuple[str, ...] = MOTIONS
    background_motion: bool = True
    max_speed: float = 8.0
    max_pan: float = 2.0
    max_zoom: float = 0.01
    num_distractors: tuple[int, int] = (1, 3)
    max_sway: float = 0.08
    subject_height: tuple[float, float] = (0.5, 0.8)
    time_step: float = 1.0
    keypoint_noise: float = 0.0
    occluded_confidence: tuple[float, float] = (0.3, 0.6)
    markers: bool = False
    photo_background: float = 0.0
    photo_role: str = "train"

    def __post_init__(self):
        # lists are accepted where tuples are documented (JSON/YAML configs give lists); stored as
        # tuples so the config stays hashable
        for name in ("num_subjects", "motions", "num_distractors", "subject_height", "occluded_confidence"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

        def bad(name, expect):
            raise ValueError(f"SyntheticConfig.{name}: expected {expect}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)

        for name in ("height", "width"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 32:
                bad(name, "an int >= 32")
        ns = self.num_subjects
        if is_int(ns):
            if not 1 <= ns <= 8:
                bad("num_subjects", "an int in [1, 8] or a (min, max) pair")
        elif not (isinstance(ns, tuple) and len(ns) == 2 and all(is_int(v) for v in ns) and 0 <= ns[0] <= ns[1] <= 8
                  and ns[1] >= 1):
            bad("num_subjects", "an int in [1, 8] or a (min, max) pair with 0 <= min <= max <= 8, max >= 1")
        if not (isinstance(self.motions, tuple) and self.motions and all(m in ALL_MOTIONS for m in self.motions)):
            bad("motions", f"a non-empty tuple of {ALL_MOTIONS}")
        if not isinstance(self.background_motion, bool):
            bad("background_motion", "a bool")
        if not isinstance(self.markers, bool):
            bad("markers", "a bool")
        for name, hi in (("max_speed", 20.0), ("max_pan", 20.0), ("max_zoom", 0.1), ("max_sway", 0.5),
                         ("keypoint_noise", 20.0)):
            v = getattr(self, name)
            if not is_num(v) or not 0 <= v <= hi:
                bad(name, f"a number in [0, {hi}]")
        if not is_num(self.photo_background) or not 0 <= self.photo_background <= 1:
            bad("photo_background", "a number in [0, 1]")
        if self.photo_role not in SPLIT_SEED_OFFSET:
            bad("photo_role", f"one of {tuple(SPLIT_SEED_OFFSET)}")
        if not is_num(self.time_step) or not 0 < self.time_step <= 8:
            bad("time_step", "a number in (0, 8]")
        nd = self.num_distractors
        if not (isinstance(nd, tuple) and len(nd) == 2 and all(is_int(v) for v in nd) and 0 <= nd[0] <= nd[1] <= 16):
            bad("num_distractors", "a (min, max) pair of ints with 0 <= min <= max <= 16")
        for name, lo, hi in (("subject_height", 0.1, 1.0), ("occluded_confidence", 0.0, 1.0)):
            v = getattr(self, name)
            if not (isinstance(v, tuple) and len(v) == 2 and all(is_num(x) for x in v) and lo <= v[0] <= v[1] <= hi):
                bad(name, f"a (min, max) pair with {lo} <= min <= max <= {hi}")

    @property
    def subject_range(self) -> tuple[int, int]:
        ns = self.num_subjects
        return (int(ns), int(ns)) if not isinstance(ns, tuple) else (int(ns[0]), int(ns[1]))

    @property
    def max_subjects(self) -> int:
        return self.subject_range[1]


@dataclass
class Clip:
    """T rendered frames with exact ground truth (numpy arrays). P = config.max_subjects.

    frames:          [T, H, W, 3] uint8 RGB.
    masks:           [T, H, W] bool, union of the subjects' pixels.
    instances:       [T, H, W] int16, 0 background, k = subject k (1-based).
    parts:           [T, H, W] int16, part on top: 0 background, (k-1)*16 + part + 1 for part
                     `synthetic_body.PART_NAMES[part]` of subject k, >= 1000 distractors.
    keypoints:       [T, P, 17, 2] float32 (x, y) pixels, COCO-17 order (hmore_kernels.layouts.COCO17).
    confidences:     [T, P, 17] float32 in [0, 1]: 1 visible, occluded_confidence range when hidden,
                     0 outside the frame or for an absent subject.
    world_flow:      [T-1, H, W, 2] float32, forward flow t -> t+1 (x, y) of every body pixel of frame t,
                     0 off the body.
    local_flow:      [T-1, H, W, 2] float32, world_flow - v_s of the pixel's subject, 0 off the body.
    subject_motion:  [T-1, P, 2] float32, v_s per subject (0 for an absent subject).
    background_flow: [T-1, H, W, 2] float32, motion of the background layer at every pixel.
    occlusion:       [T-1, H, W] bool, body pixels of frame t hidden or out of frame in t+1.
    meta:            dict: seed, num_frames, num_subjects, motions (per subject), config (as a dict).
    """

    frames: np.ndarray
    masks: np.ndarray
    instances: np.ndarray
    parts: np.ndarray
    keypoints: np.ndarray
    confidences: np.ndarray
    world_flow: np.ndarray
    local_flow: np.ndarray
    subject_motion: np.ndarray
    background_flow: np.ndarray
    occlusion: np.ndarray
    meta: dict = field(default_factory=dict)


def subject_motion_from_keypoints(k0, k1, c0, c1, joints=TORSO_JOINTS):
    """v_s, the subject's overall motion, from its keypoints: the mean displacement t -> t+1 of the torso
    ``joints`` (COCO 5, 6, 11, 12) weighted by ``c0 * c1``; where every weight is 0, the unweighted mean.
    The one definition for the generator's ground truth and the training target (:mod:`hmore.losses`).

    Args: keypoints ``[..., 17, 2]`` and confidences ``[..., 17]`` of two frames, numpy arrays or torch tensors.
    Returns: ``(v_s [..., 2], valid [...] bool)``; valid is False where every weight is 0 (detected keypoints
    then carry no information: the loss ignores such a sample; the generator's exact joints still give the
    unweighted mean). numpy: float32 (computed in float64); torch: the keypoints' dtype.
    """
    j = list(joints)
    if isinstance(k0, np.ndarray):
        d = (k1[..., j, :] - k0[..., j, :]).astype(np.float64)
        w = (c0[..., j] * c1[..., j]).astype(np.float64)
        where = np.where
    else:
        d, w = k1[..., j, :] - k0[..., j, :], c0[..., j] * c1[..., j]
        import torch

        where = torch.where
    sw = w.sum(-1)
    valid = sw > 0
    weighted = (w[..., None] * d).sum(-2) / where(valid, sw, sw * 0 + 1)[..., None]
    v = where(valid[..., None], weighted, d.mean(-2))
    return (v.astype(np.float32) if isinstance(v, np.ndarray) else v), valid


# ---- drawing: see synthetic_draw ---------------------------------------------------------------
# subject id of each part key (0: background distractors and unused keys)
_SUBJECT_OF_KEY = np.zeros(draw.KEY_LUT_SIZE, np.int16)
_SUBJECT_OF_KEY[1:8 * body.PARTS_PER_SUBJECT + 1] = np.arange(8 * body.PARTS_PER_SUBJECT) // body.PARTS_PER_SUBJECT + 1
_SUBJECT_OF_KEY.flags.writeable = False


# ---- background ----------------------------------------------------------------------------------
_ODD_ONES: dict[int, np.ndarray] = {}


def _odd_ones(w: int) -> np.ndarray:
    """(0, 1, 0, 1, ...) float32 of length 2 w, cached by w (read-only)."""
    a = _ODD_ONES.get(w)
    if a is None:
        a = np.zeros(2 * w, np.float32)
        a[1::2] = 1.0
        a.flags.writeable = False
        _ODD_ONES[w] = a
    return a


# The background texture is built at 1/BG_STEP resolution and upsampled by the camera warp itself
# (bicubic, so the picture is C1-smooth and bilinear resampling of it is accurate): ~20x cheaper than
# drawing it at full resolution, with features >= ~3 * BG_STEP px.
BG_STEP = 2
BG_INTERP = cv2.INTER_LINEAR


def _background_texture(rng, h: int, w: int) -> np.ndarray:
    """[h, w, 4] uint8 (RGB, then a constant alpha channel that is never shown) smooth procedural texture (texel spacing BG_STEP px): colour noise at three
    scales (mostly in brightness) plus stripes.

    The noise octaves are summed on a grid of FINE texels and brought to full size by one bicubic
    resize (three full-size resizes cost ~3x more for the same look).
    """
    f32 = np.float32
    fine = 5
    fh, fw = h // fine + 4, w // fine + 4
    acc = np.zeros((fh, fw, 3), np.float32)
    for cell, amp in ((5, 40.0), (2, 25.0)):  # in fine texels
        gh, gw = fh // cell + 2, fw // cell + 2
        g = rng.standard_normal((gh, gw, 1)).astype(np.float32) * f32(amp)
        g = g + rng.standard_normal((gh, gw, 3)).astype(np.float32) * f32(0.4 * amp)
        acc += cv2.resize(g, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)[:fh, :fw]
    g = rng.standard_normal((fh, fw, 1)).astype(np.float32) * f32(14.0)
    acc += g + rng.standard_normal((fh, fw, 3)).astype(np.float32) * f32(5.6)
    acc += rng.uniform(70, 180, 3).astype(np.float32)
    out = cv2.resize(acc, (fw * fine, fh * fine), interpolation=cv2.INTER_CUBIC)[fine:fine + h, fine:fine + w]
    # stripes sin(kx x + ky y + ph), separable: sin(a + b) = sin a cos b + cos a sin b
    period, ang = rng.uniform(14, 40) / BG_STEP, rng.uniform(0, math.pi)
    k = 2 * math.pi / period
    ax = np.arange(w, dtype=np.float32) * f32(k * math.cos(ang)) + f32(rng.uniform(0, 2 * math.pi))
    by = np.arange(h, dtype=np.float32) * f32(k * math.sin(ang))
    stripes = np.sin(by)[:, None] * np.cos(ax)[None, :] + np.cos(by)[:, None] * np.sin(ax)[None, :]
    amp = rng.uniform(-20, 20, 3).astype(np.float32)
    # per-channel planes merged by OpenCV: NumPy broadcasting over a trailing axis of 3 runs an
    # inner loop of length 3 and is ~20x slower
    out += cv2.merge([stripes * amp[0], stripes * amp[1], stripes * amp[2]])
    # saturate and round to nearest in one OpenCV pass (np.clip + astype cost ~8x more); a 4th, zero
    # channel because OpenCV's bilinear warp has a SIMD path for 4 channels and not for 3 (~2.3x)
    return cv2.cvtColor(cv2.add(out, 0.0, dtype=cv2.CV_8U), cv2.COLOR_RGB2RGBA)


PHOTO_STREAM = 0x70686F746F  # second seed word of the generator that picks photo backgrounds


def _photo_background_texture(rng, h: int, w: int, role: str) -> tuple[np.ndarray, str]:
    """[h, w, 4] uint8 like :func:`_background_texture`, from a bundled photo; and the photo's name."""
    from .photos import photo_texture

    tex, name = photo_texture(rng, h, w, role, blur=0.5)
    return cv2.cvtColor(tex, cv2.COLOR_RGB2RGBA), name


def _distractor_params(rng, cfg: SyntheticConfig, margin: float) -> list[dict]:
    H, W = cfg.height, cfg.width
    lo, hi = cfg.num_distractors
    out = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        length = rng.uniform(0.15, 0.45) * H
        out.append({
            "pivot": np.array([rng.uniform(-0.1, 1.1) * W, rng.uniform(0.3, 1.1) * H]),
            "angle": rng.uniform(-math.pi, 0.0),  # pointing upward-ish from the pivot, like a plant or a flag
            "sway": rng.uniform(0.3, 1.0) * cfg.max_sway if cfg.background_motion else 0.0,
            "period": rng.uniform(10, 40), "phase": rng.uniform(0, 2 * math.pi),
            "shape": "capsule" if rng.random() < 0.6 else "ellipse",
            "length": length, "r0": rng.uniform(0.03, 0.08) * H, "r1": rng.uniform(0.02, 0.1) * H,
            "tex": {"base": rng.uniform(70, 190, 3), "pattern": body._pattern(rng, 30.0),
                    "shade": rng.uniform(0.0, 0.3), "ramp": None},
        })
    return out


def _distractor_sprite(i: int, d: dict, tau: float, camera) -> body.Sprite:
    z, e = camera
    a = d["angle"] + d["sway"] * math.sin(2 * math.pi * tau / d["period"] + d["phase"])
    R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    if d["shape"] == "capsule":
        return body.Sprite(DISTRACTOR_KEY0 + i, z * R, z * d["pivot"] + e, "capsule", d["length"],
                           d["r0"], d["r1"], 1.0, d["tex"], -1e9 + i, 0)
    # an ellipse swinging about a pivot at one end of its long axis
    c = d["pivot"] + R @ np.array([d["length"] / 2, 0.0])
    return body.Sprite(DISTRACTOR_KEY0 + i, z * R, z * c + e, "ellipse", 0.0, d["length"] / 2, d["r1"],
                       0.0, d["tex"], -1e9 + i, 0)


# ---- the clip ------------------------------------------------------------------------------------
# What render_clip's ``subjects`` may fix per subject (everything else is drawn from the clip's seed).
SUBJECT_KEYS = ("proportions", "appearance", "motion", "style", "height")


def _check_subjects(subjects, cfg: SyntheticConfig) -> list[dict]:
    if not isinstance(subjects, (list, tuple)) or not 1 <= len(subjects) <= cfg.max_subjects:
        raise ValueError(f"render_clip: subjects must be a list of 1..{cfg.max_subjects} dicts (config.num_subjects), "
                         f"got {subjects!r:.80}")
    for s in subjects:
        if not isinstance(s, dict) or not set(s) <= set(SUBJECT_KEYS):
            raise ValueError(f"render_clip: each subject must be a dict with keys among {SUBJECT_KEYS}, got {s!r:.80}")
        if "motion" in s and s["motion"] not in ALL_MOTIONS:
            raise ValueError(f"render_clip: subject motion {s['motion']!r}; expected one of {ALL_MOTIONS}")
    return list(subjects)


def _subject_params(rng, cfg: SyntheticConfig, n: int, fixed: list[dict] | None = None) -> list[dict]:
    """Per subject: proportions, appearance, motion, size, place. ``fixed[k]`` (render_clip's
    ``subjects``) replaces the drawn values of subject k; the draws are made all the same, so the rest
    of the clip (placement, motion phase and speed, viewpoint) comes from the seed either way."""
    H, W = cfg.height, cfg.width
    v_scale = H / 256.0
    subs = []
    for k in range(n):
        fx = fixed[k] if fixed is not None else {}
        pr = body.make_proportions(rng)
        app = body.make_appearance(rng)
        kind = str(rng.choice(cfg.motions))
        hfrac = rng.uniform(*cfg.subject_height)
        pr = fx.get("proportions", pr)
        app = fx.get("appearance", app)
        kind = fx.get("motion", kind)
        hfrac = fx.get("height", hfrac)
        scale = hfrac * H / body.standing_height(pr)
        leg = (pr["thigh"] + pr["shin"]) * scale
        mot = body.make_motion(rng, kind, cfg.max_speed * v_scale, leg, style=fx.get("style"))
        feet = rng.uniform(0.75, 0.97) * H
        root = np.array([rng.uniform(0.2, 0.8) * W, feet - leg])
        subs.append({"pr": pr, "app": app, "motion": mot, "scale": scale, "root": root,
                     "depth": 1e6 * (k + 1), "kind": kind})
    return subs


_ALLOCATOR_PRIMED = False


def _prime_allocator() -> None:
    """Once per process: allocate and free one 16 MiB block.

    Why: a pair allocates ~3-5 MB (outputs and temporaries, many above glibc's initial 128 KiB mmap
    threshold) and frees it all by the next call; glibc then unmaps those blocks or trims the heap top
    (its trim threshold is twice the dynamic mmap threshold), so every call touches fresh pages again:
    ~1000 page faults, ~2 ms of a 256x256 pair's ~6 ms. Freeing an mmapped block raises glibc's mmap
    threshold to that block's size (and the trim threshold to twice it), as it would after any large
    free in the process; afterwards the generator's memory is reused from the heap. The process may
    keep up to ~32 MiB of freed memory instead of returning it; other allocators are unaffected.
    """
    global _ALLOCATOR_PRIMED
    if not _ALLOCATOR_PRIMED:
        _ALLOCATOR_PRIMED = True
        block = np.empty(16 << 20, np.uint8)
        del block


def render_clip(seed: int, num_frames: int, config: SyntheticConfig = SyntheticConfig(),
                subjects: list[dict] | None = None) -> Clip:
    """Render ``num_frames`` (>= 2) consecutive frames with their ground truth; see :class:`Clip`.

    Deterministic: the same (seed, num_frames, config, subjects) gives identical arrays. A clip starts
    at a random phase of each subject's motion; frame k shows motion time ``t0 + k * config.time_step``.

    subjects: None (draw everything from the seed), or one dict per subject fixing some of
    :data:`SUBJECT_KEYS`: ``proportions`` (synthetic_body.make_proportions), ``appearance``
    (make_appearance), ``motion`` (a name in ALL_MOTIONS), ``style`` (make_motion's gait style),
    ``height`` (standing height / frame height). Persistent identities (hmore.probe) are built this way.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"render_clip: seed must be a non-negative int, got {seed!r}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 2:
        raise ValueError(f"render_clip: num_frames must be an int >= 2, got {num_frames!r}")
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"render_clip: config must be a SyntheticConfig, got {type(config).__name__}")
    _prime_allocator()
    cfg = config
    T, H, W = int(num_frames), cfg.height, cfg.width
    P = cfg.max_subjects
    rng = np.random.default_rng(int(seed))
    v_scale = H / 256.0

    # camera: scene point S -> image z_t * (S - c) + c + pan_t  (zoom about the frame centre)
    centre = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
    if cfg.background_motion:
        ang = rng.uniform(0, 2 * math.pi)
        pan_v = rng.uniform(0, cfg.max_pan * v_scale) * np.array([math.cos(ang), math.sin(ang)])
        zoom_r = rng.uniform(-cfg.max_zoom, cfg.max_zoom)
        # a long clip keeps its total zoom within [1/2, 2] (else the texture behind a zoom-out grows
        # without bound)
        lim = math.expm1(math.log(2.0) / max((T - 1) * cfg.time_step, 1e-9))
        zoom_r = max(-lim / (1.0 + lim), min(zoom_r, lim))
    else:
        pan_v, zoom_r = np.zeros(2), 0.0
    step = cfg.time_step
    cams = []
    for k in range(T):
        z = (1.0 + zoom_r) ** (k * step)
        cams.append((z, (1.0 - z) * centre + pan_v * (k * step)))
    # the background texture covers every scene point any frame shows
    span = [np.stack([(np.array(p) - e) / z for p in ((0, 0), (W - 1, H - 1))]) for z, e in cams]
    lo = np.floor(np.min([s.min(0) for s in span], 0)) - 4
    hi = np.ceil(np.max([s.max(0) for s in span], 0)) + 4
    tw, th = int(hi[0] - lo[0]) // BG_STEP + 3, int(hi[1] - lo[1]) // BG_STEP + 3
    photo = None
    if cfg.photo_background > 0:
        prng = np.random.default_rng([int(seed), PHOTO_STREAM])
        if prng.random() < cfg.photo_background:
            tex, photo = _photo_background_texture(prng, th, tw, cfg.photo_role)
    if photo is None:
        tex = _background_texture(rng, th, tw)
    distractors = _distractor_params(rng, cfg, 0.0)

    fixed = None if subjects is None else _check_subjects(subjects, cfg)
    lo_n, hi_n = cfg.subject_range
    n_sub = int(rng.integers(lo_n, hi_n + 1))
    if fixed is not None:
        n_sub = len(fixed)
    subs = _subject_params(rng, cfg, n_sub, fixed)
    t0 = rng.uniform(0, 100.0)
    occl_conf = rng.uniform(*cfg.occluded_confidence, size=(T, P, 17)).astype(np.float32)
    kp_noise = rng.standard_normal((T, P, 17, 2)).astype(np.float32) * np.float32(cfg.keypoint_noise)

    # per frame: sprites (background distractors, then subjects) and joints
    sprites, joints, jdepth = [], np.zeros((T, P, 17, 2)), np.zeros((T, P, 20))
    head_depth = np.zeros((T, P))
    for k in range(T):
        tau = t0 + k * step
        spr = [_distractor_sprite(i, d, tau, cams[k]) for i, d in enumerate(distractors)]
        for si, s in enumerate(subs):
            p = body.pose(s["motion"], tau)
            root = s["root"] + s["motion"]["vel"] * (k * step)
            root = root + np.array([0.0, p["dy"] * s["scale"]])
            ss, kp, dep, _ = body.subject_sprites(si + 1, s["pr"], s["app"], p, root, s["scale"], cams[k], s["depth"])
            spr += ss
            joints[k, si] = kp
            jdepth[k, si] = dep
        spr.sort(key=lambda sp: sp.depth)
        sprites.append(spr)

    frames = np.empty((T, H, W, 3), np.uint8)
    parts = np.zeros((T, H, W), np.int16)
    instances = np.zeros((T, H, W), np.int16)
    world = np.zeros((T - 1, H, W, 2), np.float32)
    bg_flow = np.empty((T - 1, H, W, 2), np.float32)  # every pixel written below
    xs = np.arange(W, dtype=np.float32)
    ys = np.arange(H, dtype=np.float32)
    # the frame being composed, RGBA: the background warp is ~2.3x faster with 4 channels (see
    # _background_texture) and sprites are written as 4-byte pixels; RGB is copied out at the end
    bg4 = np.empty((H, W, 4), np.uint8)
    body_box = []  # per frame: (y0, y1, x0, x1) holding every subject pixel
    for k in range(T):
        z, e = cams[k]
        # texel (col, row) holds scene point lo + BG_STEP * (col, row)
        zs = z * BG_STEP
        Mw = np.array([[zs, 0.0, z * lo[0] + e[0]], [0.0, zs, z * lo[1] + e[1]]])
        cv2.warpAffine(tex, Mw, (W, H), dst=bg4, flags=BG_INTERP, borderMode=cv2.BORDER_REFLECT101)
        last = k == T - 1
        nxt = None if last else {sp.key: sp for sp in sprites[k + 1]}
        if not last:
            # the camera flow is affine, its x depending on the column only and its y on the row only.
            # Seen as [H, 2W] (x, y interleaved), the map is fy[row] * (0, 1, 0, 1, ...) + (fx_0, 0,
            # fx_1, 0, ...): two passes with long inner loops (a broadcast against the trailing axis
            # of 2 runs a length-2 inner loop, ~8x slower). Exact: fy * 1 + 0 and fx + fy * 0.
            z1, e1 = cams[k + 1]
            r = z1 / z
            fx = np.float32(r - 1.0) * xs + np.float32(e1[0] - r * e[0])
            fy = np.float32(r - 1.0) * ys + np.float32(e1[1] - r * e[1])
            fx_row = np.zeros(2 * W, np.float32)
            fx_row[0::2] = fx
            bf = bg_flow[k].reshape(H, 2 * W)
            np.multiply(fy[:, None], _odd_ones(W), out=bf)
            bf += fx_row
        # pass 1: part ids in depth order (distractors sort first); pass 2: colour, subject ids and
        # flow of the part on top, once per visible pixel (see synthetic_draw)
        tab = draw.Table()
        pk = parts[k]
        bx = [H, 0, W, 0]  # (y0, y1, x0, x1) holding every subject pixel
        for sp in sprites[k]:
            pl = draw.place(sp, H, W)
            if pl is None:
                continue
            box, inv = pl
            row, cols = draw.params(sp, inv, None if last else nxt[sp.key], cfg.markers)
            # distractors write their flow into the background flow as they are drawn (it is needed
            # behind the subjects too); the subjects' flow comes from pass 2
            draw.cover(pk, sp, box, inv, xs, ys, bg_flow[k] if sp.subject == 0 and not last else None, row)
            tab.add(sp.key, row, cols)
            if sp.subject > 0:
                bx = [min(bx[0], box[0]), max(bx[1], box[1]), min(bx[2], box[2]), max(bx[3], box[3])]
        if tab.keys:
            tab.freeze()
            draw.shade(bg4, pk, instances[k], None if last else world[k], tab, _SUBJECT_OF_KEY, cfg.markers)
        cv2.cvtColor(bg4, cv2.COLOR_RGBA2RGB, dst=frames[k])  # drops the alpha channel, in place
        body_box.append(bx)

    masks = instances > 0

    # keypoint visibility and confidences
    conf = np.zeros((T, P, 17), np.float32)
    if n_sub:
        jx, jy = joints[:, :n_sub, :, 0], joints[:, :n_sub, :, 1]  # [T, n, 17]
        inb = (jx >= -0.5) & (jx < W - 0.5) & (jy >= -0.5) & (jy < H - 0.5)
        ri = np.clip(np.rint(jy), 0, H - 1).astype(np.intp)
        rj = np.clip(np.rint(jx), 0, W - 1).astype(np.intp)
        top = parts[np.arange(T)[:, None, None], ri, rj].astype(np.int64)
        top -= (np.arange(n_sub) * body.PARTS_PER_SUBJECT + 1)[None, :, None]  # part index of that subject
        ok = (top >= 0) & (top < body.PARTS_PER_SUBJECT)
        visible = ok & body.OWNS[np.arange(17)[None, None, :], np.where(ok, top, 0)]
        # shoulders/hips behind the torso's mid-plane are not seen through the torso
        torso_d = 0.5 * (jdepth[:, :n_sub, body.PELVIS] + jdepth[:, :n_sub, body.NECK])[..., None]
        behind = np.zeros((T, n_sub, 17), bool)
        behind[..., list(TORSO_JOINTS)] = jdepth[:, :n_sub, list(TORSO_JOINTS)] < torso_d - 1e-6
        visible &= ~(behind & (top == body.TORSO))
        # face points on the far side of the head
        visible[..., :5] &= jdepth[:, :n_sub, :5] >= jdepth[:, :n_sub, body.HEAD][..., None]
        conf[:, :n_sub] = np.where(inb, np.where(visible, np.float32(1.0), occl_conf[:, :n_sub]), np.float32(0.0))

    vs = np.zeros((T - 1, P, 2), np.float32)
    if n_sub:
        vs[:, :n_sub], _ = subject_motion_from_keypoints(joints[:-1, :n_sub], joints[1:, :n_sub],
                                                      conf[:-1, :n_sub], conf[1:, :n_sub])
    # local flow and occlusion are 0 off the body: computed on the box around the subjects only
    local = np.zeros_like(world)
    occlusion = np.zeros((T - 1, H, W), bool)
    lut = np.zeros((P + 1, 2), np.float32)  # v_s by instance id, 0 for the background
    for k in range(T - 1):
        y0, y1, x0, x1 = body_box[k]
        if y0 >= y1:
            continue
        # world flow is 0 off the body, so local = world - v_s[instance] with v_s[0] = 0
        lut[1:] = vs[k]
        box = (slice(y0, y1), slice(x0, x1))
        np.subtract(world[k][box], np.take(lut, instances[k][box], axis=0), out=local[k][box])
        ii, jj = np.nonzero(masks[k][box])
        ii += y0
        jj += x0
        qx = jj + world[k, ii, jj, 0]
        qy = ii + world[k, ii, jj, 1]
        qj, qi = np.rint(qx).astype(np.int64), np.rint(qy).astype(np.int64)
        inb = (qj >= 0) & (qj < W) & (qi >= 0) & (qi < H)
        occ = ~inb
        occ[inb] = parts[k + 1, qi[inb], qj[inb]] != parts[k, ii[inb], jj[inb]]
        occlusion[k, ii, jj] = occ

    keypoints = joints.astype(np.float32)
    keypoints[:, n_sub:] = 0.0
    if cfg.keypoint_noise > 0:
        keypoints[:, :n_sub] += kp_noise[:, :n_sub]
    meta = {
        "seed": int(seed), "num_frames": T, "num_subjects": n_sub,
        "motions": [s["kind"] for s in subs], "t0": t0,
        "camera": {"pan": pan_v.tolist(), "zoom_rate": zoom_r}, "num_distractors": len(distractors),
        "background": photo or "procedural",
        "config": {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)},
    }
    return Clip(frames, masks, instances, parts, keypoints, conf, world, local, vs, bg_flow, occlusion, meta)


def render_pair(seed: int, config: SyntheticConfig = SyntheticConfig()) -> Clip:
    """A :class:`Clip` of two frames (T = 2): the unit of training."""
    return render_clip(seed, 2, config)


# ---- torch dataset -------------------------------------------------------------------------------
_UNIT_LUT = np.arange(256, dtype=np.float32) / np.float32(255.0)  # uint8 -> [0, 1], as x / 255 in float32
_UNIT_LUT.flags.writeable = False

def _torch():
    import torch

    return torch


def hwc_to_chw(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[H, W, C] -> [C, H, W]: OpenCV's channel extraction is ~2x faster than a permuted copy."""
    out = np.empty((a.shape[2],) + a.shape[:2], a.dtype) if out is None else out
    for i in range(a.shape[2]):
        cv2.extractChannel(a, i, dst=out[i])
    return out


def unit_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 [2, H, W, 3] -> float32 [2, 3, H, W] in [0, 1], through a table of x / 255 (the values
    of a float32 division)."""
    H, W = frames.shape[1:3]
    fr = np.empty((2, 3, H, W), np.uint8)
    hwc_to_chw(frames[0], fr[0])
    hwc_to_chw(frames[1], fr[1])
    return cv2.LUT(fr.reshape(6 * H, W), _UNIT_LUT).reshape(2, 3, H, W)


def check_pair_range(owner: str, what: str, split, length, seed_base) -> None:
    """ValueError unless split is a key of SPLIT_SEED_OFFSET and 0 <= seed_base, seed_base + length <= SPAN."""
    if split not in SPLIT_SEED_OFFSET:
        raise ValueError(f"{owner}: {what} must be one of {tuple(SPLIT_SEED_OFFSET)}, got {split!r}")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ValueError(f"{owner}: length must be an int >= 0, got {length!r}")
    if isinstance(seed_base, bool) or not isinstance(seed_base, (int, np.integer)) or seed_base < 0:
        raise ValueError(f"{owner}: seed_base must be an int >= 0, got {seed_base!r}")
    if seed_base + length > SPLIT_SEED_SPAN:
        raise ValueError(f"{owner}: seed_base + length must be <= {SPLIT_SEED_SPAN}, got {seed_base + length}")


def split_seed(owner: str, split: str, seed_base: int, length: int, index: int) -> int:
    """The seed of item ``index`` (negative counts from the end) of a split's dataset."""
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{owner}: index {index} out of range for length {length}")
    return SPLIT_SEED_OFFSET[split] + seed_base + int(index)


try:
    from torch.utils.data import Dataset as _Dataset
except ImportError:  # pragma: no cover - torch is a hard dependency of the project
    _Dataset = object


class SyntheticPairs(_Dataset):
    """Frame pairs rendered on the fly: ``dataset[i]`` is the pair of seed
    ``SPLIT_SEED_OFFSET[split] + seed_base + i`` (disjoint ranges per split; deterministic per index).

    Args:
        split: "train", "val" or "test".
        length: number of pairs (>= 0); seed_base + length <= SPLIT_SEED_SPAN.
        config: :class:`SyntheticConfig`.
        seed_base: first seed within the split's range (>= 0).

    Items are dicts of torch tensors (P = config.max_subjects):
        frame0, frame1 [3, H, W] float32 in [0, 1]; keypoints0/1 [P, 17, 2] float32;
        conf0/1 [P, 17] float32; mask0, mask1 [1, H, W] bool; world_flow, local_flow [2, H, W] float32;
        subject_motion [P, 2] float32; flow_valid [1, H, W] bool (body pixels of frame 0);
        occlusion [1, H, W] bool; background_flow [2, H, W] float32; instances0 [1, H, W] int64;
        seed: int64 scalar.
    """

    def __init__(self, split: str = "train", length: int = 10000, config: SyntheticConfig = SyntheticConfig(),
                 seed_base: int = 0):
        check_pair_range("SyntheticPairs", "split", split, length, seed_base)
        if not isinstance(config, SyntheticConfig):
            raise TypeError(f"SyntheticPairs: config must be a SyntheticConfig, got {type(config).__name__}")
        self.split, self.length, self.config, self.seed_base = split, int(length), config, int(seed_base)

    def __len__(self) -> int:
        return self.length

    def seed(self, index: int) -> int:
        return split_seed("SyntheticPairs", self.split, self.seed_base, self.length, index)

    def __getitem__(self, index: int) -> dict:
        torch = _torch()
        seed = self.seed(index)
        c = render_pair(seed, self.config)
        t = torch.from_numpy
        planes = hwc_to_chw
        fr = t(unit_frames(c.frames))
        return {
            "frame0": fr[0], "frame1": fr[1],
            "keypoints0": t(c.keypoints[0]), "keypoints1": t(c.keypoints[1]),
            "conf0": t(c.confidences[0]), "conf1": t(c.confidences[1]),
            "mask0": t(c.masks[0:1]), "mask1": t(c.masks[1:2]),
            "world_flow": t(planes(c.world_flow[0])),
            "local_flow": t(planes(c.local_flow[0])),
            "subject_motion": t(c.subject_motion[0]),
            "flow_valid": t(c.masks[0:1]).clone(),
            "occlusion": t(c.occlusion[0:1]),
            "background_flow": t(planes(c.background_flow[0])),
            "instances0": t(c.instances[0:1].astype(np.int64)),
            "seed": t(np.array(seed, np.int64)),
        }
