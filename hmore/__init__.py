"""hmore: the H-MoRe model (world-local flows) built on hmore_kernels, plus its data and tools.

``hmore.get_model("hmore", weights=None | path, **overrides)`` builds the model (see :mod:`hmore.models`).
"""
from __future__ import annotations

__version__ = "0.1.0"


def get_model(name: str = "hmore", weights=None, **overrides):
    """See :func:`hmore.models.get_model` (imported lazily: ``import hmore`` stays light for the data tools)."""
    from .models import get_model as _get_model

    return _get_model(name, weights, **overrides)


__all__ = ["get_model", "__version__"]
