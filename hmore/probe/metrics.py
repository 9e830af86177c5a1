"""The probe's metrics (percentages, 0..100).

* :func:`accuracy_at_k`: a clip counts when its true class is among the ``k`` highest scores (ties broken
  toward the lower class index, as ``argsort`` is stable).
* :func:`rank1`: nearest-neighbour identification, CASIA-B style: each probe embedding is matched to the
  gallery embedding of highest cosine similarity (the first one on a tie); a hit when their identities agree.
* :func:`confusion`: counts [true, predicted].
"""
from __future__ import annotations

import numpy as np

__all__ = ["accuracy_at_k", "rank1", "confusion", "spread"]


def _check(name: str, a, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    return a


def accuracy_at_k(scores, labels, k: int = 1) -> float:
    """Percent of rows of ``scores [N, C]`` whose label ``labels [N]`` is among the top ``k``."""
    s, y = _check("scores", scores, 2), _check("labels", labels, 1).astype(np.int64)
    if len(s) != len(y) or len(y) == 0:
        raise ValueError(f"scores/labels: expected the same non-zero number of rows, got {len(s)} and {len(y)}")
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"k: expected 1..{s.shape[1]} (the number of classes), got {k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(100.0 * (top == y[:, None]).any(1).mean())


def rank1(gallery, gallery_ids, probes, probe_ids) -> float:
    """Percent of probes whose nearest gallery embedding (cosine similarity) has the probe's identity."""
    g, p = _check("gallery", gallery, 2).astype(np.float64), _check("probes", probes, 2).astype(np.float64)
    gi, pi = _check("gallery_ids", gallery_ids, 1), _check("probe_ids", probe_ids, 1)
    if len(g) != len(gi) or len(p) != len(pi) or not len(g) or not len(p):
        raise ValueError(f"rank1: expected non-empty gallery/probes with one id each, got {len(g)}/{len(gi)} and "
                         f"{len(p)}/{len(pi)}")
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    nearest = np.argmax(p @ g.T, axis=1)
    return float(100.0 * (gi[nearest] == pi).mean())


def confusion(pred, labels, num_classes: int) -> np.ndarray:
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return m


def spread(values) -> float:
    """Standard deviation over seeds (population, 0 for one seed)."""
    v = np.asarray(values, np.float64)
    return float(v.std()) if len(v) else 0.0
