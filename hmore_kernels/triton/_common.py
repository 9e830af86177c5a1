"""What every Triton op family shares: interpreter detection and the op-registration decorator.

On a GPU an op is a :func:`torch.library.triton_op` (its kernels launched through ``wrap_triton`` are
visible to torch.compile; the Python body is the fake kernel). Under ``TRITON_INTERPRET=1``, ``@triton.jit``
yields an InterpretedFunction that ``wrap_triton`` cannot trace: it hands the raw kernel back, so
triton_op's fake kernel (its body run on FakeTensors) would launch the interpreter on FakeTensors. There
the ops are opaque custom ops with the exact C++ schemas, and the family registers its fake kernels
itself. torch 2.13's ``triton_op`` ignores ``schema=`` and infers it from the annotations (``int`` reads
``SymInt``), so annotate every op body precisely.
"""
from __future__ import annotations

import os

import torch
from torch.library import triton_op

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def op_decorator(schemas: dict, ns: str = "hmore_triton"):
    """``@deco(name)`` registers ``fn`` as ``ns::name`` with ``schemas[name]`` (the C++ schema, verbatim)."""

    def deco_for(name):
        qual = f"{ns}::{name}"

        def deco(fn):
            if INTERPRET:
                return torch.library.custom_op(qual, fn, mutates_args=(), schema=schemas[name])
            return triton_op(qual, fn, mutates_args=(), schema=schemas[name])

        return deco

    return deco_for
