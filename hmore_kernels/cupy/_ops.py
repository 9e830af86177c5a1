"""The ``hmore_cupy`` operator namespace: the native ops' schemas (read from ``torch.ops.hmore``, so they
can never drift), a CUDA kernel per op from the family modules, and the native fake kernels and autograd
formulas registered for it -- the same backward ops, now running the NVRTC-compiled backward kernels."""
from __future__ import annotations

import torch

NS = "hmore_cupy"
_LIB = None
_DEFINED: set[str] = set()


def cuda_tensor(t, name, like=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cuda":
        raise ValueError(f"{name}: expected a CUDA tensor, got one on {t.device}")
    if like is not None and t.device != like.device:
        raise ValueError(f"{name}: expected a tensor on {like.device}, got {t.device}")


def schema(op: str) -> str:
    """The native schema of ``hmore::<op>`` without its namespace, e.g. ``"sobel(Tensor x, ...) -> Tensor"``."""
    s = str(getattr(torch.ops.hmore, op).default._schema)
    return s.split("::", 1)[1]


def define_family(ops: dict, register) -> None:
    """Define ``hmore_cupy::<name>`` for every op of a family with its CUDA implementation, then run the
    family's fake/autograd registration (``_meta_<family>.register(ns)``) for the namespace."""
    global _LIB
    if _LIB is None:
        _LIB = torch.library.Library(NS, "DEF")
    for name, fn in ops.items():
        if name in _DEFINED:
            continue
        _LIB.define(schema(name))
        _LIB.impl(name, fn, "CUDA")
        _DEFINED.add(name)
    register(NS)
