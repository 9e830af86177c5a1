"""Labelled synthetic clips for the probe: actions, and persistent identities in several clothing sets.

Everything here is a pure function of the probe's seed (``dataset_seed``) and its :class:`ProbeSize`.

* An **identity** (subject id ``s``) is drawn from ``default_rng([dataset_seed, IDENTITY_STREAM, task, s])``:
  body proportions, standing height, skin and hair, and a personal gait style (stride, cadence, arm swing,
  torso lean; see :func:`hmore.data.synthetic_body.make_motion`). It is the same in every clip of ``s``.
* A **clothing set** ``c`` of ``s`` is ``make_appearance`` drawn from ``default_rng([dataset_seed,
  CLOTHING_STREAM, task, s, c])``, keeping the identity's skin and hair: set 0 is the subject's normal
  clothing ("nm"), sets 1.. are changes of clothing ("cl").
* A **clip** is :func:`hmore.data.synthetic.render_clip` of its own seed, which draws the background
  texture, the camera pan and zoom, the swaying distractors, the viewpoint (yaw), the motion's phase, speed
  and amplitude, and where the person stands; the identity and the clothing are fixed through
  ``subjects=``. Train clips take their seeds from the generator's "train" seed range, test clips from the
  "test" range, so no test clip shares a background seed with a training clip; train and test subjects
  are different ids, so no test clip shows a person a classifier saw.

Tasks:

* ``action``: every class of ``size.actions`` (motions of the generator) performed by training subjects
  (train split) and by other, test subjects (test split); label = the class.
* ``gait``: walking clips of ``size.gait_train_subjects`` training identities (label = the identity) and
  ``size.gait_test_subjects`` test identities, in conditions ``nm`` (clothing set 0), ``cl`` (sets 1..)
  and ``bg`` (clothing set 0, carrying a bag: the left arm held bent). CASIA-B's protocol: the test
  gallery is each test subject's ``nm`` clips, the probes its ``cl`` (and ``bg``) clips.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from hmore.data import synthetic as syn
from hmore.data import synthetic_body as body

from . import TASKS

__all__ = ["ProbeSize", "SIZES", "ClipSpec", "identity", "clothing", "clip_specs", "render_spec", "TASKS",
           "IDENTITY_STREAM", "CLOTHING_STREAM"]

IDENTITY_STREAM, CLOTHING_STREAM = 0x1D, 0xC1
_TASK_ID = {"action": 1, "gait": 2}
_SEED_SHIFT = 20  # a clip's seed: SPLIT_SEED_OFFSET[split] + (dataset_seed << 20) + (task << 18) + index


@dataclass(frozen=True)
class ProbeSize:
    """How big a probe is. Frames are ``height`` x ``width``; flows are taken between frames t and t+1
    for t = 0, stride, 2 stride, ... < frames - 1; the classifiers see every input resized to
    ``input_size`` square; ``seeds`` classifier seeds per representation (the spread is over them)."""

    name: str
    actions: tuple[str, ...]
    action_train_subjects: int
    action_test_subjects: int
    action_train_clips: int  # per class
    action_test_clips: int  # per class
    gait_train_subjects: int
    gait_test_subjects: int
    gait_clips: int  # per subject, condition and clothing set
    clothing_sets: int  # >= 3 (the first is "nm")
    frames: int = 16
    height: int = 128
    width: int = 128
    flow_stride: int = 2
    input_size: int = 32
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    seeds: tuple[int, ...] = (0, 1)

    @property
    def pair_starts(self) -> tuple[int, ...]:
        return tuple(range(0, self.frames - 1, self.flow_stride))


SIZES = {
    # a few minutes on one CPU core for each task
    "quick": ProbeSize("quick", actions=body.ALL_MOTIONS, action_train_subjects=8, action_test_subjects=4,
                       action_train_clips=6, action_test_clips=3, gait_train_subjects=16, gait_test_subjects=8,
                       gait_clips=1, clothing_sets=3, flow_stride=2, seeds=(0, 1)),
    # the numbers for the README (GPU, or ~1.5 h per task on one CPU core; see docs/probe.md for the compute).
    # Three classifier seeds, not five: five put a task past a 3-hour CPU session, and the spread of three
    # already says whether a difference is larger than the seed noise.
    "full": ProbeSize("full", actions=body.ALL_MOTIONS, action_train_subjects=30, action_test_subjects=12,
                      action_train_clips=40, action_test_clips=15, gait_train_subjects=40, gait_test_subjects=20,
                      gait_clips=2, clothing_sets=3, flow_stride=1, input_size=48, epochs=30,
                      seeds=(0, 1, 2)),
}


@dataclass(frozen=True)
class ClipSpec:
    """One labelled clip. ``label``: the class index (action) or the subject id (gait); ``condition``:
    "action", or the gait condition "nm" / "cl" / "bg"."""

    task: str
    split: str
    index: int
    seed: int
    motion: str
    label: int
    subject: int
    clothing: int
    condition: str
    dataset_seed: int = 0

    @property
    def key(self) -> str:
        """A stable id of what the clip shows (its cache file name)."""
        d = {k: v for k, v in asdict(self).items() if k != "index"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:20]


def _check_seed(dataset_seed) -> int:
    if isinstance(dataset_seed, bool) or not isinstance(dataset_seed, (int, np.integer)) or not 0 <= dataset_seed < 1 << 16:
        raise ValueError(f"seed: expected an int in [0, 65535], got {dataset_seed!r}")
    return int(dataset_seed)


def identity(dataset_seed: int, task: str, subject: int) -> dict:
    """The persistent part of subject ``subject``: proportions, height (fraction of the frame), skin, hair and
    gait style (see the module docstring)."""
    rng = np.random.default_rng([_check_seed(dataset_seed), IDENTITY_STREAM, _TASK_ID[task], int(subject)])
    pr = body.make_proportions(rng)
    skin_hair = body.make_appearance(rng)
    style = {"stride": float(rng.uniform(0.8, 1.2)), "cadence": float(rng.uniform(0.85, 1.15)),
             "arm_swing": float(rng.uniform(0.4, 1.6)), "lean": float(math.radians(rng.uniform(0.0, 9.0)))}
    return {"proportions": pr, "height": float(rng.uniform(0.55, 0.8)), "skin": skin_hair["skin"],
            "hair": skin_hair["hair"], "style": style}


def clothing(dataset_seed: int, task: str, subject: int, clothing_set: int) -> dict:
    """Clothing set ``clothing_set`` of ``subject``: a fresh ``make_appearance`` with the identity's skin and hair."""
    rng = np.random.default_rng([_check_seed(dataset_seed), CLOTHING_STREAM, _TASK_ID[task], int(subject),
                                 int(clothing_set)])
    app = body.make_appearance(rng)
    ident = identity(dataset_seed, task, subject)
    app["skin"], app["hair"] = ident["skin"].copy(), ident["hair"].copy()
    return app


def _seed(dataset_seed: int, task: str, split: str, index: int) -> int:
    return syn.SPLIT_SEED_OFFSET[split] + (dataset_seed << _SEED_SHIFT) + (_TASK_ID[task] << 18) + index


def clip_specs(task: str, size: ProbeSize, dataset_seed: int = 0) -> list[ClipSpec]:
    """Every labelled clip of ``task`` at ``size``: train clips first, then test clips (see the module docstring)."""
    if task not in TASKS:
        raise ValueError(f"task: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    ds = _check_seed(dataset_seed)
    rng = np.random.default_rng([ds, 0x5EC5, _TASK_ID[task]])
    specs: list[ClipSpec] = []

    def add(split, motion, label, subject, cloth, cond):
        i = sum(s.split == split for s in specs)
        specs.append(ClipSpec(task, split, i, _seed(ds, task, split, i), motion, int(label), int(subject), int(cloth),
                              cond, ds))

    if task == "action":
        ntr, nte = size.action_train_subjects, size.action_test_subjects
        for split, n_clips, subjects in (("train", size.action_train_clips, range(ntr)),
                                         ("test", size.action_test_clips, range(ntr, ntr + nte))):
            subjects = list(subjects)
            for label, motion in enumerate(size.actions):
                for k in range(n_clips):
                    subject = subjects[(label + k) % len(subjects)]
                    add(split, motion, label, subject, int(rng.integers(size.clothing_sets)), "action")
    else:
        ntr, nte = size.gait_train_subjects, size.gait_test_subjects
        for split, subjects in (("train", range(ntr)), ("test", range(ntr, ntr + nte))):
            for subject in subjects:
                for _ in range(size.gait_clips):
                    for c in range(size.clothing_sets):
                        add(split, "walk", subject, subject, c, "nm" if c == 0 else "cl")
                    add(split, "walk", subject, subject, 0, "bg")
    return specs


def synthetic_config(size: ProbeSize) -> syn.SyntheticConfig:
    """The generator's settings for the probe's clips: training's defaults (camera pan and zoom, swaying
    distractors, procedural backgrounds) at the probe's frame size, one person."""
    return syn.SyntheticConfig(height=size.height, width=size.width, num_subjects=1, motions=body.ALL_MOTIONS)


def render_spec(spec: ClipSpec, size: ProbeSize) -> syn.Clip:
    """Render one labelled clip (deterministic)."""
    ident = identity(spec.dataset_seed, spec.task, spec.subject)
    style = dict(ident["style"])
    if spec.condition == "bg":
        style["carry"] = True
    subj = {"proportions": ident["proportions"], "height": ident["height"], "style": style, "motion": spec.motion,
            "appearance": clothing(spec.dataset_seed, spec.task, spec.subject, spec.clothing)}
    return syn.render_clip(spec.seed, size.frames, synthetic_config(size), subjects=[subj])
