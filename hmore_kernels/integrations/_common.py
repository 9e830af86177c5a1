"""What the library adapters share: argument checks, the record of an acceleration, and the block put
behind the libraries' correlation interfaces.

Nothing here imports torchvision or ptlflow: an adapter recognises a model by the module its class
was defined in, so ``import hmore_kernels.integrations`` costs nothing when neither library is
installed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._backends import BACKENDS
from ..corr import CorrBlock

MODES = ("auto", "allpairs", "otf")
ATTR = "_hmore_acceleration"  # instance attribute holding the Acceleration record


@dataclass
class Acceleration:
    """What :func:`hmore_kernels.integrations.accelerate` changed in one model, so ``restore`` can undo it.

    library: "torchvision" or "ptlflow"; model: the class name; mode, backend, memory_budget: the
    settings given to :class:`hmore_kernels.CorrBlock`; undo: the adapter's record (the stock
    correlation module, or the names of the methods rebound on the instance).
    """

    library: str
    model: str
    mode: str
    backend: str
    memory_budget: int | None
    undo: dict = field(default_factory=dict)


def check_settings(mode, backend, memory_budget):
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend: expected 'auto' or one of {', '.join(repr(b) for b in BACKENDS)}, got {backend!r}")
    if memory_budget is not None and (
        isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)) or memory_budget < 0
    ):
        raise ValueError(f"memory_budget: expected a number of bytes >= 0 or None, got {memory_budget!r}")


def class_from(model, module_prefix: str) -> bool:
    """True when ``model`` is an instance of a class defined under ``module_prefix`` (any base class)."""
    return any(cls.__module__.startswith(module_prefix) for cls in type(model).__mro__)


def make_block(fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int, radius: int, rec: Acceleration, mode=None):
    """Our :class:`~hmore_kernels.CorrBlock` for one pair of feature maps, with the recorded settings.

    ``mode`` overrides ``rec.mode`` (ptlflow's ``alternate_corr`` asks for the memory-light block).
    """
    block = CorrBlock(
        fmap1, fmap2, num_levels, radius, mode or rec.mode, rec.backend, memory_budget=rec.memory_budget, layout="raft"
    )
    return _CastBlock(block, fmap1.dtype)


class _CastBlock:
    """Calls a CorrBlock and returns the features' dtype, as the stock blocks do.

    Our lookups return float32 for float16/bfloat16 features (float32 accumulation); the stock blocks
    return the features' dtype, which is what the update block that follows expects under autocast.
    """

    def __init__(self, block: CorrBlock, dtype: torch.dtype):
        self.block, self.dtype = block, dtype

    @property
    def mode(self) -> str:
        return self.block.mode

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        out = self.block(coords)
        return out if out.dtype == self.dtype else out.to(self.dtype)
