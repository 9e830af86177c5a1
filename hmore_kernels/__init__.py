"""hmore_kernels: fused kernels for human-motion and optical-flow models.

Public API (docs/ops.md): the op families' entry points (each with ``backend=``), plus
:func:`available_backends`, :func:`build_info` and :class:`BackendUnavailable`.
The native ops live under ``torch.ops.hmore``, the Triton ones under ``torch.ops.hmore_triton``.
Families: :mod:`hmore_kernels.edges`, :mod:`hmore_kernels.corr`, :mod:`hmore_kernels.chamfer`,
:mod:`hmore_kernels.skeleton`.
"""
from __future__ import annotations

from . import chamfer, corr, edges, skeleton
from ._backends import BACKENDS, BackendUnavailable, available_backends, build_info, native_loaded
from .chamfer import *  # noqa: F401,F403
from .corr import *  # noqa: F401,F403
from .edges import canny, distance_transform, flow_edges, gradient_magnitude, mask_boundary, sobel
from .skeleton import *  # noqa: F401,F403

__version__ = "0.1.0"


def _register_native():
    # Fake kernels and autograd only once the schemas exist (importing _C registers them); registering
    # against a missing op is torchvision's "operator ... does not exist" crash.
    if not native_loaded():
        return
    from . import _meta_chamfer, _meta_corr, _meta_edges, _meta_skeleton

    for meta in (_meta_edges, _meta_corr, _meta_chamfer, _meta_skeleton):
        meta.register("hmore")


_register_native()

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "available_backends",
    "build_info",
    "canny",
    "distance_transform",
    "flow_edges",
    "gradient_magnitude",
    "mask_boundary",
    "sobel",
    *corr.__all__,
    *chamfer.__all__,
    *skeleton.__all__,
]
