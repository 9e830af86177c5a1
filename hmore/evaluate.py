"""``hmore eval``'s public names, kept importable from here: the code is in the package :mod:`hmore.evaluation`
(:mod:`~hmore.evaluation.metrics`, :mod:`~hmore.evaluation.runners`, :mod:`~hmore.evaluation.report`), whose
docstring holds the definitions of the metrics."""
from __future__ import annotations

from .evaluation.metrics import (BOUNDARY_TOLERANCE, DEFINITIONS, EDGE_THRESHOLD, FARNEBACK_PARAMS, LEAKAGE_DILATION,
                                 SEGMENTER_THRESHOLD, SKELETON_ANGLE_DEG, SKELETON_MIN_OFFSET, SKELETON_RANGE,
                                 body_flow_counts, boundary_counts, classical_local_flow, endpoint_error, f_score,
                                 flow_edge_map, leakage_counts, map_iou_counts, skeleton_satisfaction_counts)
from .evaluation.report import format_table, write_results
from .evaluation.runners import (DEFAULT_METHODS, METHODS, REAL_METHODS, _Runner,  # noqa: F401
                                 classical_flow, evaluate_photos, evaluate_real, evaluate_synthetic, load_model, run_eval)

__all__ = [
    "DEFAULT_METHODS", "METHODS", "REAL_METHODS", "FARNEBACK_PARAMS", "LEAKAGE_DILATION", "EDGE_THRESHOLD",
    "BOUNDARY_TOLERANCE", "DEFINITIONS",
    "endpoint_error", "body_flow_counts", "leakage_counts", "flow_edge_map", "boundary_counts", "f_score",
    "classical_local_flow", "skeleton_satisfaction_counts", "classical_flow", "load_model",
    "evaluate_synthetic", "evaluate_photos", "evaluate_real", "map_iou_counts", "format_table", "write_results",
    "run_eval",
]
