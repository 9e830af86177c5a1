"""Importing torchvision beside a CPU-only torch whose torchvision wheel is the CUDA build.

Used by the tests and benchmarks only (never on ``import hmore_kernels``). On this project's machines
the registry's torchvision 0.28.0 is the CUDA build: its compiled ops (``torchvision._C``) link CUDA
libraries and do not load beside the CPU torch 2.13.0. torchvision swallows that failure, but its
``_meta_registrations`` then registers fake kernels for ``torchvision::nms`` and the import dies with
"operator torchvision::nms does not exist". The RAFT models are pure Python and need none of the
compiled ops. So, only when the plain import fails with exactly that error, declare the two schemas it
registers against (no kernels behind them: calling them raises) and import again. Everywhere the wheel
matches the torch (a CUDA machine, a CPU wheel), the plain import succeeds and nothing is declared.
"""
from __future__ import annotations

import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIB = None  # the torch.library.Library holding the declared schemas (kept alive for the process)


def import_torchvision():
    """``import torchvision``, declaring ``torchvision::nms``/``qnms`` first if the compiled ops cannot load."""
    global _LIB
    try:
        import torchvision

        return torchvision
    except RuntimeError as e:
        if "torchvision::nms" not in str(e) or _LIB is not None:
            raise
    # Drop the half-imported package so the second import starts from scratch.
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    import torch

    _LIB = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        _LIB.define(schema)
    import torchvision

    return torchvision


def import_ptlflow():
    """``import ptlflow`` (it imports torchvision through timm, so that goes first)."""
    import_torchvision()
    import ptlflow

    return ptlflow
