"""Articulated 2.5-D people for :mod:`hmore.data.synthetic`: body proportions, clothing, motions, sprites.

A subject is a 3-D stick skeleton (COCO-17 joints) posed by a parametric motion and projected
orthographically after a rotation about the vertical axis (the body's yaw). Every body part is then a
flat textured *sprite*: a shape and a texture defined in the part's own 2-D local frame, placed in the
image by a 2-D affine map ``p = A u + b``. The map sends the part's bone to the projected bone (so the
joints are exactly where the keypoints are) and the part's width to a fixed number of pixels (scaled
by the camera zoom, and for the torso by the silhouette width of an elliptic cylinder seen at that
yaw). Because the picture of a part is a function of ``u`` only, the world flow of any pixel the part
drew is exactly ``A_{t+1} A_t^{-1} (p - b_t) + b_{t+1} - p``.

The 3-D part is only used to place the joints and to order the parts in depth; the sprites themselves
stay flat, so a turn is a 2-D approximation (widths shrink and the depth order changes, but the
texture does not wrap around the body).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Parts of one subject, drawn as sprites. (name, joint a, joint b) -- joints are indices into the
# 3-D joint table built by `_skeleton` (COCO-17 indices, plus 17 = pelvis centre, 18 = neck, 19 =
# head centre).
PELVIS, NECK, HEAD = 17, 18, 19
PART_NAMES = (
    "torso", "head",
    "left_upper_arm", "left_forearm", "right_upper_arm", "right_forearm",
    "left_thigh", "left_shin", "right_thigh", "right_shin",
)
PARTS_PER_SUBJECT = 16  # id stride per subject in the part-id map (room for more parts later)
TORSO, HEADP, LUA, LFA, RUA, RFA, LTH, LSH, RTH, RSH = range(10)
_PART_JOINTS = {
    TORSO: (PELVIS, NECK), HEADP: (HEAD, HEAD),
    LUA: (5, 7), LFA: (7, 9), RUA: (6, 8), RFA: (8, 10),
    LTH: (11, 13), LSH: (13, 15), RTH: (12, 14), RSH: (14, 16),
}
_PART_LENGTH = {TORSO: "torso", LUA: "upper_arm", RUA: "upper_arm", LFA: "forearm", RFA: "forearm",
                LTH: "thigh", RTH: "thigh", LSH: "shin", RSH: "shin"}
# Which parts "own" each COCO joint: a joint is visible where one of its parts is on top.
JOINT_OWNERS = (
    (HEADP,), (HEADP,), (HEADP,), (HEADP,), (HEADP,),
    (TORSO, LUA), (TORSO, RUA), (LUA, LFA), (RUA, RFA), (LFA,), (RFA,),
    (TORSO, LTH), (TORSO, RTH), (LTH, LSH), (RTH, RSH), (LSH,), (RSH,),
)
# OWNS[j, part]: part is one of joint j's owners
OWNS = np.zeros((17, PARTS_PER_SUBJECT), bool)
for _j, _o in enumerate(JOINT_OWNERS):
    OWNS[_j, list(_o)] = True
# Depth bias (px) between parts at the same depth: arms in front of the torso, legs behind the hips.
_DEPTH_BIAS = {TORSO: 0.0, HEADP: 0.5, LUA: 1.0, LFA: 1.2, RUA: 1.0, RFA: 1.2,
               LTH: -1.0, LSH: -0.8, RTH: -1.0, RSH: -0.8}

MOTIONS = ("walk", "run", "wave", "jump", "turn")  # the default mix of training clips (SyntheticConfig.motions)
# More actions, for labelled clips (hmore.probe); never drawn unless a config names them, so every
# default output of the generator is unchanged.
ACTION_MOTIONS = ("kick", "punch", "squat", "sit_down", "clap", "bow", "limp")
ALL_MOTIONS = MOTIONS + ACTION_MOTIONS
GAIT_MOTIONS = ("walk", "run", "limp")  # cyclic gaits: translate at the speed their stride implies
_HIP_AMP = {"walk": 24.0, "run": 34.0, "limp": 20.0}  # hip flexion amplitude (degrees) of the gait cycles
# A personal gait style (make_motion's ``style``): keys and what they scale.
STYLE_KEYS = ("stride", "cadence", "arm_swing", "lean", "carry")


@dataclass
class Sprite:
    """One textured shape placed by ``p = A u + b`` (pixel coordinates x = column, y = row).

    shape: "capsule" (tapered: along local x from 0 to ``length``, half-widths r0 -> r1, end caps
    ellipses with semi-axes (cap*r, r)) or "ellipse" (semi-axes r0 along local x, r1 along local y).
    tex: texture parameters (see `texture`). key: stable id across frames (the part-id map value).
    """

    key: int
    A: np.ndarray  # [2, 2] float64
    b: np.ndarray  # [2] float64
    shape: str
    length: float
    r0: float
    r1: float
    cap: float
    tex: dict
    depth: float
    subject: int  # 1-based subject, 0 for background distractors


# ---- appearance ----------------------------------------------------------------------------------
def _colour(rng, lo=80.0, hi=200.0):
    return rng.uniform(lo, hi, 3)


def _pattern(rng, amp_hi=24.0):
    """Two plane waves in local coordinates; periods >= 9 px keep bilinear interpolation accurate."""
    waves = []
    for _ in range(2):
        period = rng.uniform(9.0, 24.0)
        ang = rng.uniform(0, math.pi)
        k = 2 * math.pi / period
        waves.append((k * math.cos(ang), k * math.sin(ang), rng.uniform(0, 2 * math.pi),
                      rng.uniform(-amp_hi, amp_hi, 3)))
    return waves


def make_appearance(rng) -> dict:
    """Clothing and skin of one subject: shirt, trousers, sleeve/leg lengths, skin, hair."""
    skin = rng.uniform(90, 200) * np.array([1.0, 0.8, 0.65]) + rng.uniform(-10, 10, 3)
    return {
        "skin": np.clip(skin, 70, 220),
        "hair": _colour(rng, 20 + 60, 150),
        "shirt": _colour(rng), "shirt_pat": _pattern(rng),
        "pants": _colour(rng), "pants_pat": _pattern(rng),
        "sleeve": rng.uniform(0.2, 1.3),   # fraction of the forearm covered (>1: long sleeves)
        "trouser": rng.uniform(0.3, 1.3),  # fraction of the shin covered
        "shade": rng.uniform(0.15, 0.3),
    }


def _tex(base, pattern, shade, ramp=None):
    return {"base": base, "pattern": pattern, "shade": shade, "ramp": ramp}


def make_proportions(rng) -> dict:
    """Segment lengths and radii in body units (total standing height ~1), each varied by +-15 %."""
    j = lambda: rng.uniform(0.87, 1.15)  # noqa: E731
    fat = rng.uniform(0.8, 1.3)
    return {
        "torso": 0.30 * j(), "neck": 0.035 * j(), "head_h": 0.065 * j(), "head_w": 0.05 * j(),
        "shoulder": 0.20 * j(), "hip": 0.14 * j(), "upper_arm": 0.165 * j(), "forearm": 0.15 * j(),
        "thigh": 0.24 * j(), "shin": 0.23 * j(),
        "r_upper_arm": 0.03 * fat, "r_forearm": 0.024 * fat, "r_thigh": 0.045 * fat, "r_shin": 0.032 * fat,
        "r_hip": 0.085 * fat, "r_shoulder": 0.11 * fat, "depth_ratio": rng.uniform(0.5, 0.65),
    }


def standing_height(pr: dict) -> float:
    """Ankle to head top, in body units (the scale factor turns it into pixels)."""
    return pr["thigh"] + pr["shin"] + pr["torso"] + pr["neck"] + 2 * pr["head_h"]


# ---- motion --------------------------------------------------------------------------------------
def make_motion(rng, kind: str, max_speed: float, leg_px: float = 0.0, style: dict | None = None) -> dict:
    """Parameters of one subject's motion; `pose` evaluates them at a time.

    max_speed: bound on the root's translation (px/frame). leg_px: hip-to-ankle length in pixels;
    walk/run/limp move at the speed their gait implies (the stance foot sweeps 2 * leg * sin(hip
    amplitude) per half cycle, so the feet do not slide), capped at max_speed.
    style: a personal gait style for walk/run/limp (the random draws are made all the same, so the
    stream of ``rng`` does not depend on it): ``stride`` (replaces the amplitude factor, ~0.8..1.2),
    ``cadence`` (multiplies the period), ``arm_swing`` (multiplies the arm swing), ``lean`` (torso lean,
    radians), ``carry`` (True: the left arm holds a bag, bent and still). Missing keys keep the draws.
    """
    if style is not None and not set(style) <= set(STYLE_KEYS):
        raise ValueError(f"style: unknown keys {sorted(set(style) - set(STYLE_KEYS))}; expected some of {STYLE_KEYS}")
    m = {"kind": kind, "phase": rng.uniform(0, 2 * math.pi), "amp": rng.uniform(0.8, 1.2)}
    side = rng.choice([-1.0, 1.0])
    if kind in GAIT_MOTIONS:
        m["yaw"] = side * rng.uniform(math.radians(40), math.radians(90))
        m["period"] = rng.uniform(14, 20) if kind == "run" else rng.uniform(22, 30)
        if kind == "limp":
            m["period"] *= 1.25  # a slower, uneven cycle
            m["leg"] = "l" if rng.random() < 0.5 else "r"  # the sore leg
        if style:
            if "stride" in style:
                m["amp"] = float(style["stride"])
            if "cadence" in style:
                m["period"] *= float(style["cadence"])
            for k in ("arm_swing", "lean", "carry"):
                if k in style:
                    m[k] = style[k]
        hip = math.radians(_HIP_AMP[kind]) * m["amp"]
        gait = 4.0 * leg_px * math.sin(hip) / m["period"] * abs(math.sin(m["yaw"]))
        m["vel"] = np.array([side * min(gait, max_speed), rng.uniform(-0.05, 0.05) * max_speed])
    elif kind == "wave":
        m["yaw"] = rng.uniform(-math.radians(45), math.radians(45))
        m["period"] = rng.uniform(14, 24)
        m["arms"] = int(rng.integers(1, 4))  # 1 left, 2 right, 3 both
        m["vel"] = rng.uniform(-0.1, 0.1, 2) * max_speed
    elif kind == "jump":
        m["yaw"] = rng.uniform(-math.radians(70), math.radians(70))
        m["period"] = rng.uniform(18, 26)
        m["height"] = rng.uniform(0.08, 0.16)
        m["vel"] = np.array([rng.uniform(-0.2, 0.2) * max_speed, 0.0])
    elif kind == "turn":
        m["yaw"] = rng.uniform(-math.pi, math.pi)
        m["yaw_rate"] = side * math.radians(rng.uniform(3, 8))
        m["period"] = rng.uniform(24, 32)
        m["vel"] = rng.uniform(-0.1, 0.1, 2) * max_speed
    elif kind in ACTION_MOTIONS:
        m["yaw"] = rng.uniform(-math.radians(60), math.radians(60))
        m["period"] = {"kick": (16, 24), "punch": (10, 16), "squat": (20, 30), "sit_down": (40, 56),
                       "clap": (8, 13), "bow": (26, 36)}[kind]
        m["period"] = rng.uniform(*m["period"])
        m["side"] = "l" if rng.random() < 0.5 else "r"  # the kicking leg / leading fist
        m["vel"] = rng.uniform(-0.1, 0.1, 2) * max_speed
    else:  # validated by the config; kept for direct callers
        raise ValueError(f"motions: unknown motion {kind!r}, expected one of {ALL_MOTIONS}")
    return m


def pose(m: dict, tau: float) -> dict:
    """Joint angles (radians) and root offsets of motion ``m`` at time ``tau`` (frames).

    Keys: yaw, lean, dy (vertical root offset, body units, negative = up), and per side (l, r):
    sf/sa (shoulder flexion/abduction), el (elbow flexion), hf/ha (hip flexion/abduction), kn (knee).
    """
    kind, a = m["kind"], m["amp"]
    w = 2 * math.pi / m["period"]
    ph = w * tau + m["phase"]
    s, c = math.sin(ph), math.cos(ph)
    p = {"yaw": m["yaw"], "lean": 0.0, "dy": 0.0}
    for sd in "lr":
        p.update({f"sf{sd}": 0.0, f"sa{sd}": math.radians(6), f"el{sd}": math.radians(8),
                  f"hf{sd}": 0.0, f"ha{sd}": math.radians(3), f"kn{sd}": math.radians(3)})
    if kind in ("walk", "run"):
        run = kind == "run"
        hip, arm = math.radians(_HIP_AMP[kind]) * a, math.radians(18 if not run else 30) * a
        if "arm_swing" in m:
            arm = arm * m["arm_swing"]
        p["lean"] = math.radians(3 if not run else 9) if "lean" not in m else m["lean"]
        p["dy"] = -(0.008 if not run else 0.02) * abs(c)
        for sd, sg in (("l", 1.0), ("r", -1.0)):
            p[f"hf{sd}"] = sg * hip * s
            # the knee bends most while the leg swings forward (phase lead of ~90 deg)
            p[f"kn{sd}"] = math.radians(8) + (math.radians(30 if not run else 55) * a) * max(0.0, sg * c)
            p[f"sf{sd}"] = -sg * arm * s
            p[f"el{sd}"] = math.radians(15 if not run else 75) + math.radians(10) * (1 - sg * s)
        if m.get("carry"):
            _carry(p)
    elif kind in ACTION_MOTIONS:
        _action_pose(m, p, ph, s, c, a)
    elif kind == "wave":
        for sd, bit in (("l", 1), ("r", 2)):
            if m["arms"] & bit:
                p[f"sa{sd}"] = math.radians(120) + math.radians(30) * a * s
                p[f"el{sd}"] = math.radians(35) + math.radians(25) * c
        p["dy"] = -0.004 * s
    elif kind == "jump":
        u = (ph / (2 * math.pi)) % 1.0
        air = max(0.0, math.sin(2 * math.pi * u))  # airborne in the first half of the cycle
        crouch = max(0.0, -math.sin(2 * math.pi * u))  # knees bend while on the ground
        p["dy"] = -m["height"] * a * air + 0.05 * crouch
        for sd in "lr":
            p[f"kn{sd}"] = math.radians(5) + math.radians(60) * crouch
            p[f"hf{sd}"] = math.radians(35) * crouch
            p[f"sf{sd}"] = math.radians(20) + math.radians(70) * air - math.radians(30) * crouch
            p[f"el{sd}"] = math.radians(20)
        p["lean"] = math.radians(15) * crouch
    elif kind == "turn":
        p["yaw"] = m["yaw"] + m["yaw_rate"] * tau
        for sd, sg in (("l", 1.0), ("r", -1.0)):
            p[f"sf{sd}"] = sg * math.radians(8) * s
            p[f"hf{sd}"] = sg * math.radians(6) * s
    return p


def _carry(p: dict) -> None:
    """The left arm holds a bag in front of the body: bent at the elbow, barely swinging."""
    p["sfl"], p["sal"], p["ell"] = math.radians(25), math.radians(12), math.radians(95)


def _legs_dy(p: dict) -> float:
    """Root drop (body units, + = down) that keeps the feet near the ground when the legs fold (mean
    thigh/shin lengths; a few % of foot sliding is the price of not knowing the proportions here)."""
    ext = min(0.24 * math.cos(p[f"hf{sd}"]) + 0.23 * math.cos(p[f"hf{sd}"] - p[f"kn{sd}"]) for sd in "lr")
    return 0.47 - ext


def _action_pose(m: dict, p: dict, ph: float, s: float, c: float, a: float) -> None:
    """Joint angles of the ACTION_MOTIONS (see `pose`), in place."""
    kind, rad = m["kind"], math.radians
    one, other = m.get("side", "l"), ("r" if m.get("side", "l") == "l" else "l")
    up = 0.5 - 0.5 * c  # 0 -> 1 -> 0 over a cycle
    if kind == "kick":
        k = max(0.0, s) ** 2  # the kick: a quick forward swing of one leg, a knee cocked before it
        wind = max(0.0, -s)
        p[f"hf{one}"] = rad(80) * a * k - rad(15) * wind
        p[f"kn{one}"] = rad(70) * wind + rad(10) * k
        p[f"sf{one}"], p[f"sf{other}"] = -rad(25) * k, rad(30) * k
        p[f"sa{one}"] = p[f"sa{other}"] = rad(25)
        p["lean"] = -rad(10) * k
    elif kind == "punch":
        for sd in "lr":  # guard: fists up by the chin
            p[f"sf{sd}"], p[f"el{sd}"], p[f"sa{sd}"] = rad(45), rad(125), rad(15)
        for sd, sg in ((one, 1.0), (other, -1.0)):  # alternate straight punches forward
            e = max(0.0, sg * s) ** 1.5
            p[f"sf{sd}"] = rad(45) + rad(45) * a * e
            p[f"el{sd}"] = rad(125) - rad(115) * e
        p["lean"] = rad(6)
        p["hf" + one], p["kn" + one], p["kn" + other] = rad(15), rad(15), rad(10)
    elif kind == "squat":
        d = up * a
        for sd in "lr":
            p[f"hf{sd}"] = rad(95) * d
            p[f"kn{sd}"] = rad(115) * d
            p[f"ha{sd}"] = rad(12)
            p[f"sf{sd}"] = rad(85) * d  # arms forward for balance
            p[f"el{sd}"] = rad(10)
        p["lean"] = rad(35) * d
        p["dy"] = _legs_dy(p)
    elif kind == "sit_down":
        # a slow cycle with plateaus: stand, sit down, stay seated, stand up (hands on the thighs)
        u = min(1.0, max(0.0, 1.6 * up - 0.3))
        u = u * u * (3 - 2 * u)
        for sd in "lr":
            p[f"hf{sd}"] = rad(90) * u
            p[f"kn{sd}"] = rad(90) * u
            p[f"sf{sd}"] = rad(40) * u
            p[f"el{sd}"] = rad(8) + rad(30) * u
        p["lean"] = rad(25) * math.sin(math.pi * u) + rad(5) * u  # lean forward to stand or sit
        p["dy"] = 0.8 * _legs_dy(p)
    elif kind == "clap":
        g = 0.5 + 0.5 * s  # hands apart -> together
        for sd in "lr":
            p[f"sf{sd}"] = rad(75)
            p[f"sa{sd}"] = rad(40) * a * (1 - g) - rad(8) * g
            p[f"el{sd}"] = rad(35) + rad(20) * g
        p["dy"] = -0.003 * s
    elif kind == "bow":
        b = up ** 1.5 * a
        p["lean"] = rad(65) * b
        for sd in "lr":
            p[f"hf{sd}"] = rad(10) * b
            p[f"sf{sd}"] = rad(55) * b  # arms hang down while the torso tips forward
            p[f"el{sd}"] = rad(10)
    elif kind == "limp":
        sore = m.get("leg", "l")
        hip = rad(_HIP_AMP["limp"]) * a
        arm = rad(14) * a * m.get("arm_swing", 1.0)
        p["lean"] = m.get("lean", rad(5))
        for sd, sg in (("l", 1.0), ("r", -1.0)):
            stiff = sd == sore
            p[f"hf{sd}"] = sg * hip * s * (0.55 if stiff else 1.0)
            p[f"kn{sd}"] = rad(6) + (rad(8) if stiff else rad(35) * a) * max(0.0, sg * c)
            p[f"sf{sd}"] = -sg * arm * s
            p[f"el{sd}"] = rad(18) + rad(10) * (1 - sg * s)
        # the body dips while the weight is on the sore leg
        sg = 1.0 if sore == "l" else -1.0
        p["dy"] = 0.025 * max(0.0, -sg * s) - 0.006 * abs(c)
        if m.get("carry"):
            _carry(p)


def _limb_dir(flex: float, abd: float, side: float) -> tuple[float, float, float]:
    """Unit direction of a limb hanging down (+y), flexed forward (+z) and abducted outwards (side x)."""
    cb = math.cos(abd)
    return (side * math.sin(abd), cb * math.cos(flex), cb * math.sin(flex))


def _along(a, s: float, d) -> tuple[float, float, float]:
    return (a[0] + s * d[0], a[1] + s * d[1], a[2] + s * d[2])


def skeleton(pr: dict, p: dict) -> np.ndarray:
    """3-D joints [20, 3] in body units, pelvis centre at the origin; x = the subject's left, y down,
    z = the subject's forward. Rows 0..16 are COCO-17, 17 pelvis centre, 18 neck, 19 head centre.

    Plain Python floats (a few dozen scalars; NumPy's per-call cost would dominate)."""
    J = [None] * 20
    lean = p["lean"]
    up = (0.0, -math.cos(lean), math.sin(lean))
    origin = (0.0, 0.0, 0.0)
    J[PELVIS] = origin
    J[NECK] = _along(origin, pr["torso"], up)
    J[HEAD] = _along(J[NECK], pr["neck"] + pr["head_h"], up)
    hh, hw = pr["head_h"], pr["head_w"]
    hx, hy, hz = J[HEAD]
    J[0] = (hx + 0.0, hy + 0.1 * hh, hz + 0.8 * hw)
    J[1] = (hx + 0.35 * hw, hy + -0.2 * hh, hz + 0.7 * hw)
    J[2] = (hx + -0.35 * hw, hy + -0.2 * hh, hz + 0.7 * hw)
    J[3] = (hx + 0.9 * hw, hy + 0.0, hz + 0.0)
    J[4] = (hx + -0.9 * hw, hy + 0.0, hz + 0.0)
    nx, ny, nz = J[NECK]
    for sd, sg, sh, el, wr, hp, kn, an in (("l", 1.0, 5, 7, 9, 11, 13, 15), ("r", -1.0, 6, 8, 10, 12, 14, 16)):
        J[sh] = (nx + sg * pr["shoulder"] / 2, ny + 0.0, nz + 0.0)
        J[el] = _along(J[sh], pr["upper_arm"], _limb_dir(p[f"sf{sd}"], p[f"sa{sd}"], sg))
        J[wr] = _along(J[el], pr["forearm"], _limb_dir(p[f"sf{sd}"] + p[f"el{sd}"], p[f"sa{sd}"], sg))
        J[hp] = (sg * pr["hip"] / 2, 0.0, 0.0)
        J[kn] = _along(J[hp], pr["thigh"], _limb_dir(p[f"hf{sd}"], p[f"ha{sd}"], sg))
        J[an] = _along(J[kn], pr["shin"], _limb_dir(p[f"hf{sd}"] - p[f"kn{sd}"], p[f"ha{sd}"], sg))
    return np.array(J)


def project(J: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic view after turning the body by ``yaw`` about the vertical: (xy [N, 2], depth [N]).

    yaw = 0 faces the camera (the subject's left on the image's right); depth grows toward the camera.
    """
    cy, sy = math.cos(yaw), math.sin(yaw)
    xy = np.stack([J[:, 0] * cy + J[:, 2] * sy, J[:, 1]], 1)
    depth = -J[:, 0] * sy + J[:, 2] * cy
    return xy, depth


def subject_sprites(sid: int, pr: dict, app: dict, p: dict, root: np.ndarray, scale: float,
                    camera: tuple[float, np.ndarray], base_depth: float):
    """Sprites and image keypoints of subject ``sid`` (1-based) at one time.

    root: pelvis position in scene pixels; camera: (zoom z, offset e) mapping scene -> image as
    ``z * S + e``. Returns (sprites, keypoints [17, 2] image px, joint depth [20] px, torso-depth).
    """
    z, e = camera
    J = skeleton(pr, p)
    xy, depth = project(J, p["yaw"])
    img = z * (root + scale * xy) + e  # [20, 2]
    depth = scale * depth
    sprites = []
    key0 = (sid - 1) * PARTS_PER_SUBJECT + 1
    P, D = img.tolist(), depth.tolist()  # Python floats: the per-part math below is scalar
    yaw = p["yaw"]
    # silhouette half-width factor of an elliptic cylinder with depth/width ratio rho, seen at yaw
    rho = pr["depth_ratio"]
    f_torso = math.sqrt(math.cos(yaw) ** 2 + (rho * math.sin(yaw)) ** 2)
    shirt = _tex(app["shirt"], app["shirt_pat"], app["shade"])
    pants = _tex(app["pants"], app["pants_pat"], app["shade"])
    for part in range(len(PART_NAMES)):
        ja, jb = _PART_JOINTS[part]
        tex = shirt
        if part == HEADP:
            spine = (P[NECK][0] - P[PELVIS][0], P[NECK][1] - P[PELVIS][1])
            n = math.hypot(spine[0], spine[1])
            dx, dy = (spine[0] / n, spine[1] / n) if n > 1e-9 else (0.0, -1.0)
            A = np.array([[z * dx, -z * dy], [z * dy, z * dx]])
            hh, hw = pr["head_h"] * scale, pr["head_w"] * scale
            hair = ("u", 0.25 * hh, 0.35 * hh, app["hair"])
            sprites.append(Sprite(key0 + part, A, np.array(P[HEAD]), "ellipse", 0.0, hh, hw, 0.0,
                                  _tex(app["skin"], None, 0.12, hair),
                                  base_depth + D[HEAD] + _DEPTH_BIAS[part], sid))
            continue
        L = scale * pr[_PART_LENGTH[part]]
        bone = (P[jb][0] - P[ja][0], P[jb][1] - P[ja][1])
        n = math.hypot(bone[0], bone[1])
        dx, dy = (bone[0] / n, bone[1] / n) if n > 1e-9 else (0.0, 1.0)
        wscale = z * (f_torso if part == TORSO else 1.0)
        # local units are scene pixels: u along the bone in [0, L], v across; A maps them to the image
        A = np.array([[bone[0] / L, -wscale * dy], [bone[1] / L, wscale * dx]])
        if part == TORSO:
            r0, r1, cap = pr["r_hip"], pr["r_shoulder"], 0.35
        elif part in (LUA, RUA):
            r0, r1, cap = pr["r_upper_arm"], pr["r_forearm"] * 1.1, 1.0
        elif part in (LFA, RFA):
            r0, r1, cap = pr["r_forearm"], pr["r_forearm"] * 0.8, 1.0
            tex = _tex(app["shirt"], app["shirt_pat"], app["shade"], ("u", app["sleeve"] * L, 2.0, app["skin"]))
        elif part in (LTH, RTH):
            r0, r1, cap, tex = pr["r_thigh"], pr["r_shin"] * 1.1, 1.0, pants
        else:
            r0, r1, cap = pr["r_shin"], pr["r_shin"] * 0.75, 1.0
            tex = _tex(app["pants"], app["pants_pat"], app["shade"], ("u", app["trouser"] * L, 2.0, app["skin"]))
        r0, r1 = r0 * scale, r1 * scale
        dep = base_depth + 0.5 * (D[ja] + D[jb]) + _DEPTH_BIAS[part]
        sprites.append(Sprite(key0 + part, A, np.array(P[ja]), "capsule", L, r0, r1, cap, tex, dep, sid))
    return sprites, img[:17].copy(), depth, img
