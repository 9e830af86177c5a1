"""``hmore probe``: does a motion representation help recognise actions and people?

Labelled synthetic clips (:mod:`hmore.probe.data`), the representations compared and their cache
(:mod:`hmore.probe.features`), the classifiers (:mod:`hmore.probe.models`), the metrics
(:mod:`hmore.probe.metrics`) and the run (:func:`hmore.probe.run.run_probe`). See docs/probe.md.

This module stays light (no torch, no OpenCV): the CLI imports it to register its parser.
"""
from __future__ import annotations

__all__ = ["TASKS", "METHODS", "SIZE_NAMES", "add_parser"]

TASKS = ("action", "gait")
METHODS = ("rgb", "dis", "dis_masked", "hmore_world", "hmore_world_local", "skeleton_gt", "skeleton_mediapipe")
SIZE_NAMES = ("quick", "full")


def _main(args) -> int:
    from .run import main

    return main(args)


def add_parser(sub, formatter_class=None) -> None:
    """Register ``hmore probe`` on an argparse sub-parsers object."""
    kw = {"formatter_class": formatter_class} if formatter_class else {}
    q = sub.add_parser("probe", help="action and gait recognition from each motion representation (labelled synthetic clips)",
                       description="Train one small classifier per representation (rgb, DIS flow, DIS in MediaPipe's "
                                   "person mask, H-MoRe world / world+local flow, skeletons from the generator and "
                                   "from MediaPipe) on labelled synthetic clips; score action Acc@1/Acc@5 or gait "
                                   "rank-1 under a change of clothes. Representations are cached (--cache); new "
                                   "weights recompute only H-MoRe's flows. See docs/probe.md.", **kw)
    q.add_argument("--task", required=True, choices=TASKS, help="action or gait")
    q.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help=f"representations, space or comma separated (default: all): {', '.join(METHODS)}")
    q.add_argument("--out", required=True, help="output folder (probe.json, probe.csv, probe.png, confusion.png)")
    q.add_argument("--quick", action="store_true", help="the quick size (same as --size quick)")
    q.add_argument("--size", default="full", choices=SIZE_NAMES, help="quick (minutes on a CPU) or full (the README's numbers; see docs/probe.md for its compute)")
    q.add_argument("--cache", default=None, help="representation cache folder (default: $HMORE_PROBE_CACHE or "
                                                 "~/.cache/hmore/probe)")
    q.add_argument("--weights", default="default", help="H-MoRe weights: 'default' (shipped) or a weights file")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    q.add_argument("--seed", type=int, default=0, help="seed of the labelled clips")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=_main)
