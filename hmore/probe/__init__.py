"""``hmore probe``: does a motion representation help recognise actions and people?

Labelled synthetic clips (:mod:`hmore.probe.data`), the representations compared and their cache
(:mod:`hmore.probe.features`), the classifiers (:mod:`hmore.probe.models`), the metrics
(:mod:`hmore.probe.metrics`) and the run (:func:`hmore.probe.run.run_probe`). See docs/probe.md.

This module stays light (no torch, no OpenCV): the CLI (hmore/cli.py, which owns every parser) imports its
names to build ``hmore probe``'s.
"""
from __future__ import annotations

__all__ = ["TASKS", "METHODS", "SIZE_NAMES"]

TASKS = ("action", "gait")
METHODS = ("rgb", "dis", "dis_masked", "hmore_world", "hmore_world_local", "skeleton_gt", "skeleton_mediapipe")
SIZE_NAMES = ("quick", "full")
