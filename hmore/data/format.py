"""The hmore dataset folder: one format for synthetic clips and real annotated videos (docs/dataset.md).

::

    DIR/meta.json                     format "hmore-dataset", version 1, size, frame count, what is present
    DIR/keypoints.json                COCO-style: images (one per frame, with "num_persons"), annotations
                                      (17 COCO keypoints [x, y, v]*17 plus "scores"), categories
    DIR/frames/%06d.png               RGB frames, 8-bit
    DIR/masks/%06d.png                subject mask, 8-bit 0/255 (every frame has one; empty if no person)
    DIR/instances/%06d.png            optional, 16-bit instance ids (0 = background, p+1 = subject p)
    DIR/parts/%06d.png                optional, 16-bit body-part ids (synthetic clips)
    DIR/flow/{world,local,background}/%06d.flo   optional ground truth, frame t -> t+1 (T-1 files)
    DIR/flow/occlusion/%06d.png       optional, 0/255: pixel of frame t not visible in frame t+1
    DIR/flow/subject_motion.json      optional, [T-1][P][2] subject motion v_s per pair

Every file is written atomically (temporary file + ``os.replace``). Reading validates as it goes: a
wrong joint count, a mask or flow of the wrong size, an unreadable file each raise an error that names
the file and the problem.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from hmore_kernels.layouts import COCO17

from ._io import atomic_write_json, read_json, read_png, write_png
from .flow_io import read_flo, write_flo

__all__ = [
    "FORMAT", "VERSION", "FLOW_KINDS", "DatasetReader", "write_clip", "read_clip", "find_datasets",
    "frame_path", "mask_path", "instance_path", "parts_path", "flow_path", "occlusion_path", "make_meta",
    "make_keypoints_json", "person_annotation", "visibility_flags",
]

FORMAT = "hmore-dataset"
VERSION = 1
FLOW_KINDS = ("world", "local", "background")
NUM_JOINTS = COCO17.num_joints
VISIBLE_CONF = 0.5  # COCO v=2 at or above this confidence, v=1 below it


def frame_path(root: str, t: int) -> str:
    return os.path.join(root, "frames", f"{t:06d}.png")


def mask_path(root: str, t: int) -> str:
    return os.path.join(root, "masks", f"{t:06d}.png")


def instance_path(root: str, t: int) -> str:
    return os.path.join(root, "instances", f"{t:06d}.png")


def parts_path(root: str, t: int) -> str:
    return os.path.join(root, "parts", f"{t:06d}.png")


def flow_path(root: str, kind: str, t: int) -> str:
    if kind not in FLOW_KINDS:
        raise ValueError(f"flow kind: expected one of {FLOW_KINDS}, got {kind!r}")
    return os.path.join(root, "flow", kind, f"{t:06d}.flo")


def occlusion_path(root: str, t: int) -> str:
    return os.path.join(root, "flow", "occlusion", f"{t:06d}.png")


def make_meta(width: int, height: int, num_frames: int, source: dict, *, has_instances: bool = False,
              has_parts: bool = False,
              flows=(), has_occlusion: bool = False, has_subject_motion: bool = False, extra: dict | None = None) -> dict:
    meta = {
        "format": FORMAT, "version": VERSION, "layout": COCO17.name,
        "width": int(width), "height": int(height), "num_frames": int(num_frames),
        "frames": "frames/%06d.png", "masks": "masks/%06d.png",
        "has_instances": bool(has_instances), "has_parts": bool(has_parts),
        "has_flow": bool(flows), "flows": list(flows), "has_occlusion": bool(has_occlusion),
        "has_subject_motion": bool(has_subject_motion),
        "source": source,
    }
    if extra:
        meta.update(extra)
    return meta


def visibility_flags(kpts: np.ndarray, conf: np.ndarray, width: int, height: int) -> np.ndarray:
    """COCO ``v`` per joint: 0 if conf is 0 or the joint lies outside the image, 1 if conf < 0.5, else 2.

    Pixel centres are at integer coordinates, so the image spans [-0.5, W-0.5] x [-0.5, H-0.5].
    """
    x, y = kpts[..., 0], kpts[..., 1]
    inside = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5) & np.isfinite(x) & np.isfinite(y)
    v = np.where(conf >= VISIBLE_CONF, 2, 1)
    return np.where(inside & (conf > 0), v, 0).astype(np.int64)


def person_annotation(ann_id: int, image_id: int, track_id: int, kpts: np.ndarray, conf: np.ndarray,
                      width: int, height: int) -> dict:
    """One COCO keypoint annotation. Coordinates are kept exactly (float32 values), even for v=0 joints."""
    kpts = np.asarray(kpts, np.float32).reshape(NUM_JOINTS, 2)
    conf = np.asarray(conf, np.float32).reshape(NUM_JOINTS)
    v = visibility_flags(kpts, conf, width, height)
    flat = []
    for j in range(NUM_JOINTS):
        flat += [float(kpts[j, 0]), float(kpts[j, 1]), int(v[j])]
    lab = kpts[v > 0]
    if len(lab):
        x0, y0 = np.clip(lab.min(0), -0.5, None)
        x1, y1 = np.minimum(lab.max(0), [width - 0.5, height - 0.5])
        bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    return {
        "id": int(ann_id), "image_id": int(image_id), "category_id": 1, "track_id": int(track_id),
        "keypoints": flat, "scores": [float(c) for c in conf], "num_keypoints": int((v > 0).sum()),
        "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0,
    }


def make_keypoints_json(width: int, height: int, frames: list, info: dict | None = None) -> dict:
    """COCO-style keypoints JSON.

    ``frames[t]`` is a dict with ``"persons"``: a list of ``(track_id, kpts [17, 2], conf [17])``, and
    optionally ``"source_frame"`` (index in the source video). Frames with no person get an image entry
    with ``"num_persons": 0`` and no annotation.
    """
    images, anns = [], []
    for t, fr in enumerate(frames):
        img = {"id": t, "file_name": f"frames/{t:06d}.png", "width": int(width), "height": int(height),
               "frame_index": t, "num_persons": len(fr["persons"])}
        if "source_frame" in fr:
            img["source_frame"] = int(fr["source_frame"])
        images.append(img)
        for track, k, c in fr["persons"]:
            anns.append(person_annotation(len(anns), t, track, k, c, width, height))
    return {
        "info": dict(info or {}, description="hmore dataset keypoints (COCO-17 order, x y in pixels, pixel "
                                             "centres at integer coordinates; scores = confidences)"),
        "images": images,
        "annotations": anns,
        "categories": [{
            "id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(COCO17.names),
            "skeleton": [[a + 1, b + 1] for a, b in COCO17.bones],  # 1-based, as COCO's
        }],
    }


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist() if x.size <= 4096 else f"<array {x.shape} {x.dtype}>"
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return repr(x)


def _get(clip, name):
    v = clip.get(name) if isinstance(clip, dict) else getattr(clip, name, None)
    return None if v is None else (np.asarray(v) if not isinstance(v, dict) else v)


def write_clip(root: str, clip, overwrite: bool = False) -> str:
    """Write a synthetic :class:`~hmore.data.synthetic.Clip` (or a dict with the same fields) to ``root``.

    Fields used: ``frames [T,H,W,3] uint8``, ``masks [T,H,W] bool``, ``keypoints [T,P,17,2]``,
    ``confidences [T,P,17]``, and when present ``instances [T,H,W]``, ``world_flow``, ``local_flow``,
    ``background_flow [T-1,H,W,2]``, ``occlusion [T-1,H,W]``, ``subject_motion [T-1,P,2]``, ``meta``.
    Person p is track ``p`` in every frame. ``meta.json`` is written last, so a folder without it is an
    incomplete write. Returns ``root``.
    """
    root = os.fspath(root)
    if os.path.exists(os.path.join(root, "meta.json")):
        if not overwrite:
            raise FileExistsError(f"{root}: already holds a dataset (meta.json); pass overwrite=True")
        shutil.rmtree(root)
    frames = _get(clip, "frames")
    if frames is None or frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"clip.frames: expected [T, H, W, 3] uint8, got {None if frames is None else (frames.shape, frames.dtype)}")
    T, H, W = frames.shape[:3]
    masks = _get(clip, "masks")
    kpts = _get(clip, "keypoints")
    conf = _get(clip, "confidences")
    if masks is None or masks.shape != (T, H, W):
        raise ValueError(f"clip.masks: expected shape {(T, H, W)}, got {None if masks is None else masks.shape}")
    if kpts is None or kpts.ndim != 4 or kpts.shape[0] != T or kpts.shape[2:] != (NUM_JOINTS, 2):
        raise ValueError(f"clip.keypoints: expected [T={T}, P, 17, 2], got {None if kpts is None else kpts.shape}")
    if conf is None or conf.shape != kpts.shape[:3]:
        raise ValueError(f"clip.confidences: expected {kpts.shape[:3]}, got {None if conf is None else conf.shape}")
    inst = _get(clip, "instances")
    if inst is not None and inst.shape != (T, H, W):
        raise ValueError(f"clip.instances: expected shape {(T, H, W)}, got {inst.shape}")
    parts = _get(clip, "parts")
    if parts is not None and parts.shape != (T, H, W):
        raise ValueError(f"clip.parts: expected shape {(T, H, W)}, got {parts.shape}")
    for name, a in (("instances", inst), ("parts", parts)):
        if a is not None and a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"clip.{name}: ids must lie in 0..65535 to be stored as 16-bit PNG")
    flows = {}
    for kind in FLOW_KINDS:
        f = _get(clip, f"{kind}_flow")
        if f is not None:
            if f.shape != (T - 1, H, W, 2):
                raise ValueError(f"clip.{kind}_flow: expected shape {(T - 1, H, W, 2)}, got {f.shape}")
            flows[kind] = f
    occ = _get(clip, "occlusion")
    if occ is not None and occ.shape != (T - 1, H, W):
        raise ValueError(f"clip.occlusion: expected shape {(T - 1, H, W)}, got {occ.shape}")
    sm = _get(clip, "subject_motion")
    if sm is not None and sm.shape != (T - 1, kpts.shape[1], 2):
        raise ValueError(f"clip.subject_motion: expected shape {(T - 1, kpts.shape[1], 2)}, got {sm.shape}")

    for t in range(T):
        write_png(frame_path(root, t), frames[t][..., ::-1])
        write_png(mask_path(root, t), np.where(masks[t] != 0, 255, 0).astype(np.uint8))
        if inst is not None:
            write_png(instance_path(root, t), inst[t].astype(np.uint16))
        if parts is not None:
            write_png(parts_path(root, t), parts[t].astype(np.uint16))
    for kind, f in flows.items():
        for t in range(T - 1):
            write_flo(flow_path(root, kind, t), f[t].astype(np.float32))
    if occ is not None:
        for t in range(T - 1):
            write_png(occlusion_path(root, t), np.where(occ[t], 255, 0).astype(np.uint8))
    if sm is not None:
        atomic_write_json(os.path.join(root, "flow", "subject_motion.json"),
                          [[[float(a) for a in p] for p in s] for s in np.asarray(sm, np.float32)], fsync=False)
    P = kpts.shape[1]
    # a subject whose every joint has confidence 0 is absent from that frame (clips sized for a maximum)
    per_frame = [{"persons": [(p, kpts[t, p], conf[t, p]) for p in range(P) if (conf[t, p] > 0).any()]}
                 for t in range(T)]
    cmeta = _get(clip, "meta")
    atomic_write_json(os.path.join(root, "keypoints.json"),
                      make_keypoints_json(W, H, per_frame, info={"source": "hmore synthetic"}), fsync=False)
    meta = make_meta(W, H, T, {"kind": "synthetic", "generator": "hmore.data.synthetic"},
                     has_instances=inst is not None, has_parts=parts is not None, flows=list(flows), has_occlusion=occ is not None,
                     has_subject_motion=sm is not None,
                     extra={"num_persons": int(P), "synthetic": _json_safe(cmeta) if cmeta is not None else {}})
    atomic_write_json(os.path.join(root, "meta.json"), meta)
    return root


def _parse_keypoints(path: str, data, num_frames: int):
    """Validate a keypoints JSON; return per-frame lists of (track_id, kpts [17,2], conf [17])."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: expected a COCO-style object with 'images' and 'annotations' lists")
    cats = data.get("categories") or []
    for c in cats:
        names = c.get("keypoints")
        if names is not None and len(names) != NUM_JOINTS:
            raise ValueError(f"{path}: category {c.get('id')} lists {len(names)} keypoint names, expected {NUM_JOINTS} (COCO-17)")
    if len(data["images"]) != num_frames:
        raise ValueError(f"{path}: {len(data['images'])} image entries, meta.json says {num_frames} frames")
    expected_persons = {}
    for img in data["images"]:
        i = img.get("id")
        if not isinstance(i, int) or not 0 <= i < num_frames or i in expected_persons:
            raise ValueError(f"{path}: image id {i!r} is not a unique frame index in 0..{num_frames - 1}")
        expected_persons[i] = img.get("num_persons")
    frames = [[] for _ in range(num_frames)]
    for a in data["annotations"]:
        aid, iid = a.get("id"), a.get("image_id")
        if iid not in expected_persons:
            raise ValueError(f"{path}: annotation {aid} refers to image {iid!r}, which is not listed")
        k = a.get("keypoints")
        if not isinstance(k, list) or len(k) != 3 * NUM_JOINTS:
            n = len(k) / 3 if isinstance(k, list) else None
            raise ValueError(f"{path}: annotation {aid} (image {iid}) has {n} keypoints "
                             f"({len(k) if isinstance(k, list) else k!r} values), expected {NUM_JOINTS} joints "
                             f"as [x, y, v] * {NUM_JOINTS} = {3 * NUM_JOINTS} values")
        k = np.asarray(k, dtype=np.float64).reshape(NUM_JOINTS, 3)
        s = a.get("scores")
        if s is None:
            conf = (k[:, 2] > 0).astype(np.float32)
        else:
            if not isinstance(s, list) or len(s) != NUM_JOINTS:
                raise ValueError(f"{path}: annotation {aid} (image {iid}) has {len(s) if isinstance(s, list) else s!r} "
                                 f"scores, expected {NUM_JOINTS}")
            conf = np.asarray(s, dtype=np.float32)
        if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
            raise ValueError(f"{path}: annotation {aid} (image {iid}) has scores outside [0, 1]")
        frames[iid].append((int(a.get("track_id", len(frames[iid]))), k[:, :2].astype(np.float32), conf))
    for t, fr in enumerate(frames):
        fr.sort(key=lambda p: p[0])
        tracks = [p[0] for p in fr]
        if len(set(tracks)) != len(tracks):
            raise ValueError(f"{path}: image {t} has two annotations with the same track_id")
        n = expected_persons[t]
        if n is not None and n != len(fr):
            raise ValueError(f"{path}: image {t} says num_persons={n} but has {len(fr)} annotations")
    return frames


class DatasetReader:
    """Read one dataset folder, validating as it goes.

    Opening reads and checks ``meta.json`` and ``keypoints.json``; frames, masks and flows are read (and
    checked for size and type) on access. :meth:`validate` checks every file up front.
    """

    def __init__(self, root: str):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"{self.root}: dataset folder not found")
        mpath = os.path.join(self.root, "meta.json")
        meta = read_json(mpath, "dataset meta.json (an incomplete or interrupted write?)")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else None
            raise ValueError(f"{mpath}: not an hmore dataset (format {fmt!r}, expected {FORMAT!r})")
        if meta.get("version") != VERSION:
            raise ValueError(f"{mpath}: dataset version {meta.get('version')!r}, this reader reads version {VERSION}")
        if meta.get("layout", "coco17") != COCO17.name:
            raise ValueError(f"{mpath}: layout {meta.get('layout')!r}, expected {COCO17.name!r}")
        for key in ("width", "height", "num_frames"):
            if not isinstance(meta.get(key), int) or meta[key] < 0:
                raise ValueError(f"{mpath}: {key!r} must be a non-negative integer, got {meta.get(key)!r}")
        self.meta = meta
        self.width, self.height, self.num_frames = meta["width"], meta["height"], meta["num_frames"]
        kpath = os.path.join(self.root, "keypoints.json")
        self._persons = _parse_keypoints(kpath, read_json(kpath, "keypoints JSON"), self.num_frames)
        self.flows = tuple(meta.get("flows") or ())
        for k in self.flows:
            if k not in FLOW_KINDS:
                raise ValueError(f"{mpath}: unknown flow kind {k!r} (known: {FLOW_KINDS})")
        self.has_instances = bool(meta.get("has_instances"))
        self.has_occlusion = bool(meta.get("has_occlusion"))
        self.has_parts = bool(meta.get("has_parts"))
        self._subject_motion = None
        if meta.get("has_subject_motion"):
            spath = os.path.join(self.root, "flow", "subject_motion.json")
            sm = np.asarray(read_json(spath, "subject motion JSON"), dtype=np.float32)
            if sm.ndim != 3 or sm.shape[0] != max(self.num_frames - 1, 0) or sm.shape[2] != 2:
                raise ValueError(f"{spath}: expected [T-1={self.num_frames - 1}][P][2], got shape {sm.shape}")
            self._subject_motion = sm

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return f"DatasetReader({self.root!r}, {self.num_frames} frames {self.width}x{self.height}, flows={list(self.flows)})"

    def _t(self, t: int, n: int | None = None) -> int:
        n = self.num_frames if n is None else n
        if not (isinstance(t, (int, np.integer)) and 0 <= t < n):
            raise IndexError(f"{self.root}: index {t!r} out of range 0..{n - 1}")
        return int(t)

    def _check_size(self, path, img, what):
        if img.shape[:2] != (self.height, self.width):
            raise ValueError(f"{path}: {what} is {img.shape[1]}x{img.shape[0]}, expected "
                             f"{self.width}x{self.height} (meta.json)")

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as ``[H, W, 3]`` uint8 RGB."""
        import cv2

        p = frame_path(self.root, self._t(t))
        img = read_png(p, cv2.IMREAD_UNCHANGED, "frame")
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
            raise ValueError(f"{p}: frame must be an 8-bit colour image, got shape {img.shape}, dtype {img.dtype}")
        self._check_size(p, img, "frame")
        return np.ascontiguousarray(img[..., 2::-1])

    def mask(self, t: int) -> np.ndarray:
        """Subject mask of frame ``t``, ``[H, W]`` bool (empty on frames with no person)."""
        p = mask_path(self.root, self._t(t))
        m = read_png(p, what="mask")
        if m.ndim != 2:
            raise ValueError(f"{p}: mask must be single-channel, got shape {m.shape}")
        self._check_size(p, m, "mask")
        return m > 0

    def instances(self, t: int) -> np.ndarray:
        """Instance ids of frame ``t``, ``[H, W]`` int32 (0 = background, p+1 = subject p)."""
        if not self.has_instances:
            raise ValueError(f"{self.root}: this dataset has no instance maps (meta.json has_instances false)")
        p = instance_path(self.root, self._t(t))
        m = read_png(p, what="instance map")
        if m.ndim != 2:
            raise ValueError(f"{p}: instance map must be single-channel, got shape {m.shape}")
        self._check_size(p, m, "instance map")
        return m.astype(np.int32)

    def parts(self, t: int) -> np.ndarray:
        """Body-part ids of frame ``t``, ``[H, W]`` int32 (synthetic clips; see hmore.data.synthetic.Clip.parts)."""
        if not self.has_parts:
            raise ValueError(f"{self.root}: this dataset has no part maps (meta.json has_parts false)")
        p = parts_path(self.root, self._t(t))
        m = read_png(p, what="part map")
        if m.ndim != 2:
            raise ValueError(f"{p}: part map must be single-channel, got shape {m.shape}")
        self._check_size(p, m, "part map")
        return m.astype(np.int32)

    def num_persons(self, t: int) -> int:
        return len(self._persons[self._t(t)])

    def persons(self, t: int):
        """``(track_ids [P_t] int64, keypoints [P_t, 17, 2] float32, conf [P_t, 17] float32)``, by track id."""
        fr = self._persons[self._t(t)]
        if not fr:
            return np.zeros(0, np.int64), np.zeros((0, NUM_JOINTS, 2), np.float32), np.zeros((0, NUM_JOINTS), np.float32)
        return (np.array([p[0] for p in fr], np.int64), np.stack([p[1] for p in fr]), np.stack([p[2] for p in fr]))

    @property
    def max_track_id(self) -> int:
        ids = [p[0] for fr in self._persons for p in fr]
        return max(ids) if ids else -1

    def flow(self, kind: str, t: int) -> np.ndarray:
        """Ground-truth flow ``kind`` (world, local, background) from frame t to t+1, ``[H, W, 2]`` float32."""
        if kind not in self.flows:
            raise ValueError(f"{self.root}: no {kind!r} flow in this dataset (has {list(self.flows)})")
        p = flow_path(self.root, kind, self._t(t, self.num_frames - 1))
        f = read_flo(p)
        self._check_size(p, f, "flow")
        return f

    def occlusion(self, t: int) -> np.ndarray:
        if not self.has_occlusion:
            raise ValueError(f"{self.root}: this dataset has no occlusion maps")
        p = occlusion_path(self.root, self._t(t, self.num_frames - 1))
        m = read_png(p, what="occlusion map")
        if m.ndim != 2:
            raise ValueError(f"{p}: occlusion map must be single-channel, got shape {m.shape}")
        self._check_size(p, m, "occlusion map")
        return m > 0

    @property
    def subject_motion(self):
        """``[T-1, P, 2]`` float32 or None."""
        return self._subject_motion

    def validate(self) -> None:
        """Read every file once (raises on the first bad one)."""
        for t in range(self.num_frames):
            self.frame(t)
            self.mask(t)
            if self.has_instances:
                self.instances(t)
            if self.has_parts:
                self.parts(t)
        for t in range(self.num_frames - 1):
            for k in self.flows:
                self.flow(k, t)
            if self.has_occlusion:
                self.occlusion(t)


def read_clip(root: str) -> dict:
    """Load a whole dataset folder into arrays (the inverse of :func:`write_clip`).

    Keys: ``frames [T,H,W,3] uint8``, ``masks [T,H,W] bool``, ``keypoints [T,P,17,2]``, ``confidences
    [T,P,17]`` (P = max track id + 1; absent tracks have confidence 0 and keypoints 0), ``num_persons [T]``,
    and when present ``instances``, ``world_flow``/``local_flow``/``background_flow``, ``occlusion``,
    ``subject_motion``, plus ``meta``.
    """
    r = DatasetReader(root)
    T = r.num_frames
    P = max(r.max_track_id + 1, int(r.meta.get("num_persons", 0) or 0))
    out = {
        "frames": np.stack([r.frame(t) for t in range(T)]) if T else np.zeros((0, r.height, r.width, 3), np.uint8),
        "masks": np.stack([r.mask(t) for t in range(T)]) if T else np.zeros((0, r.height, r.width), bool),
        "keypoints": np.zeros((T, P, NUM_JOINTS, 2), np.float32),
        "confidences": np.zeros((T, P, NUM_JOINTS), np.float32),
        "num_persons": np.array([r.num_persons(t) for t in range(T)], np.int64),
        "meta": r.meta,
    }
    for t in range(T):
        ids, k, c = r.persons(t)
        out["keypoints"][t, ids] = k
        out["confidences"][t, ids] = c
    if r.has_instances:
        out["instances"] = np.stack([r.instances(t) for t in range(T)])
    if r.has_parts:
        out["parts"] = np.stack([r.parts(t) for t in range(T)])
    for kind in r.flows:
        out[f"{kind}_flow"] = np.stack([r.flow(kind, t) for t in range(T - 1)])
    if r.has_occlusion:
        out["occlusion"] = np.stack([r.occlusion(t) for t in range(T - 1)])
    if r.subject_motion is not None:
        out["subject_motion"] = r.subject_motion
    return out


def find_datasets(path) -> list[str]:
    """Dataset folders under ``path``: itself if it has meta.json, else its sub-folders that do (sorted).

    ``path`` may also be a list of such paths.
    """
    if isinstance(path, (list, tuple)):
        return [d for p in path for d in find_datasets(p)]
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "meta.json")):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: dataset folder not found")
    subs = sorted(os.path.join(path, d) for d in os.listdir(path)
                  if os.path.isfile(os.path.join(path, d, "meta.json")))
    if not subs:
        raise ValueError(f"{path}: no meta.json here or in its sub-folders (not an hmore dataset)")
    return subs
