"""ptlflow's RAFT-family models with our correlation.

ptlflow's models build their correlation through a module-level function,
``get_corr_block(fmap1, fmap2, num_levels, radius, alternate_corr)``, called from ``forward``. Patching
that module global would change every model of that family in the process, accelerated or not. So
:func:`apply` rebinds, on the one instance given, each method that calls ``get_corr_block``: a copy of
the function (same code, closure and defaults) whose globals are the module's with ``get_corr_block``
replaced by ours. The class, the module and every other instance stay stock; :func:`revert` deletes
the instance attributes, which leaves exactly the class's own methods. Parameters are not touched.

Covered: the models whose correlation module is RAFT's all-pairs pyramid (``avg_pool2d`` 2x2 levels,
``1/sqrt(D)`` scale) plus the windowed bilinear lookup with RAFT's tap order; see ``COVERED``.

This module never imports ptlflow: it recognises the classes by the module they were defined in.
"""
from __future__ import annotations

import inspect
import sys
import types

from ._common import Acceleration, make_block

LIBRARY = "ptlflow"

# model module -> the ptlflow model names it registers. Each of these calls its family's
# get_corr_block, whose CorrBlock is RAFT's algorithm line for line (the files differ in comments, the
# default number of levels, and how the scale is spelt) -- checked by tests/test_integrations.py.
COVERED = {
    "ptlflow.models.raft.raft": ("raft", "raft_small"),
    "ptlflow.models.gma.gma": ("gma",),
    "ptlflow.models.skflow.skflow": ("skflow",),
    "ptlflow.models.rapidflow.rapidflow": ("rapidflow", "rapidflow_it1", "rapidflow_it2", "rapidflow_it3", "rapidflow_it6"),
    "ptlflow.models.rpknet.rpknet": ("rpknet",),
}

# Families ptlflow also ships with a get_corr_block or a CorrBlock, and why they are not covered.
NOT_COVERED = {
    "ccmr, ccmr_p, ms_raft_p, sea_raft(_s/_m/_l)": "RAFT's block too, and the same mechanism works (a one-off "
    "forward check agreed to 4e-5 px), but one forward of these takes 6-20 s on a 2-core CPU: too slow to "
    "test in CI, and nothing untested is called covered",
    "matchflow, matchflow_raft": "needs the QuadTreeAttention extension, which does not build without CUDA",
    "flowformer(++), craft, gmflownet, dip, memflow, videoflow, dpflow, separableflow, ...": "a different "
    "correlation (cost-memory transformers, cross-attention, patch matching, 3-D cost volumes)",
}


def matches(model) -> bool:
    return any(cls.__module__ in COVERED for cls in type(model).__mro__)


def _model_module(model):
    for cls in type(model).__mro__:
        if cls.__module__ in COVERED:
            return sys.modules[cls.__module__]
    raise TypeError(f"model: {type(model).__qualname__} is not one of the covered ptlflow models")


def _our_get_corr_block(stock, rec: Acceleration):
    """Our replacement for one family's ``get_corr_block``, with that function's own defaults."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(stock).parameters.items()
        if p.default is not inspect.Parameter.empty
    }

    def get_corr_block(fmap1, fmap2, num_levels=defaults.get("num_levels", 4), radius=defaults.get("radius", 4),
                       alternate_corr=False):
        # alternate_corr=True is the model asking for the memory-light block (ptlflow's
        # IterativeCorrBlock or the alt_cuda_corr extension): under mode="auto" that is our "otf".
        mode = "otf" if (alternate_corr and rec.mode == "auto") else None
        return make_block(fmap1, fmap2, num_levels, radius, rec, mode)

    return get_corr_block


def apply(model, rec: Acceleration) -> None:
    module = _model_module(model)
    stock = getattr(module, "get_corr_block", None)
    if not callable(stock):
        raise TypeError(f"model: {module.__name__} has no get_corr_block (an unexpected ptlflow version)")
    ours = _our_get_corr_block(stock, rec)
    rebound = []
    for name in dir(type(model)):
        fn = inspect.getattr_static(type(model), name, None)
        if not isinstance(fn, types.FunctionType) or "get_corr_block" not in fn.__code__.co_names:
            continue
        if fn.__globals__.get("get_corr_block") is not stock:
            continue  # a method from another module with a get_corr_block of its own
        g = dict(fn.__globals__)
        g["get_corr_block"] = ours
        copy = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
        copy.__kwdefaults__ = fn.__kwdefaults__
        copy.__qualname__ = fn.__qualname__
        copy.__doc__ = fn.__doc__
        model.__dict__[name] = types.MethodType(copy, model)
        rebound.append(name)
    if not rebound:
        raise TypeError(
            f"model: no method of {type(model).__qualname__} calls {module.__name__}.get_corr_block "
            f"(an unexpected ptlflow version)"
        )
    rec.undo = {"methods": rebound}


def revert(model, rec: Acceleration) -> None:
    for name in rec.undo["methods"]:
        model.__dict__.pop(name, None)
