"""hmore: the H-MoRe model (world-local flows) built on hmore_kernels, plus its data and tools.

``hmore.get_model("hmore", weights=None | "default" | path, **overrides)`` builds the model (see
:mod:`hmore.models`); ``hmore.infer(video_or_folder_or_two_images)`` runs it (see :mod:`hmore.inference`).
"""
from __future__ import annotations

__version__ = "0.1.0"


def get_model(name: str = "hmore", weights=None, **overrides):
    """See :func:`hmore.models.get_model` (imported lazily: ``import hmore`` stays light for the data tools)."""
    from .models import get_model as _get_model

    return _get_model(name, weights, **overrides)


def infer(inputs, weights="default", **kwargs):
    """See :func:`hmore.inference.infer`: yields world flow, local flow, subject motion and subject map per
    consecutive pair of a video, a folder of frames or two images."""
    from .inference import infer as _infer

    return _infer(inputs, weights, **kwargs)


__all__ = ["get_model", "infer", "__version__"]
