"""Fake kernels and autograd of the chamfer family, for namespace ``ns`` (hmore or hmore_triton).

Called once ``_C`` has loaded (ns="hmore"), and by hmore_kernels/triton/chamfer.py (ns="hmore_triton",
fake=INTERPRET: triton_op registers its own body as the fake kernel on a GPU).
"""
from __future__ import annotations


def register(ns: str, fake: bool = True, lib=None) -> None:
    pass
