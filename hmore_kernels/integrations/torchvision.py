"""torchvision's RAFT (``torchvision.models.optical_flow.raft_small`` / ``raft_large``) with our correlation.

torchvision's ``RAFT`` owns a ``corr_block`` submodule with two methods: ``build_pyramid(fmap1, fmap2)``
once per forward and ``index_pyramid(centroids_coords)`` once per iteration. :func:`apply` swaps that
submodule for :class:`HMoReCorrBlock`, which has the same attributes (``num_levels``, ``radius``,
``out_channels``), the same checks and the same output, and keeps the stock block aside so that
:func:`revert` puts the very same object back. The stock block has no parameters or buffers, so the
model's ``state_dict`` is the same before, during and after.

This module never imports torchvision: it recognises the classes by the module they were defined in.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import Acceleration, class_from, make_block

LIBRARY = "torchvision"
_RAFT_MODULE = "torchvision.models.optical_flow.raft"
MODELS = ("raft_small", "raft_large")


def matches(model) -> bool:
    return class_from(model, _RAFT_MODULE) and hasattr(model, "corr_block")


def _check_stock_block(model):
    block = model.corr_block
    cls = type(block)
    if cls.__module__ != _RAFT_MODULE or cls.__name__ != "CorrBlock":
        raise TypeError(
            f"model: torchvision RAFT with a corr_block of type {cls.__module__}.{cls.__name__}; only the stock "
            f"{_RAFT_MODULE}.CorrBlock is covered (a custom block may compute something else)"
        )


class HMoReCorrBlock(nn.Module):
    """torchvision's ``CorrBlock`` interface on :class:`hmore_kernels.CorrBlock`.

    ``build_pyramid(fmap1, fmap2)``: ``[B, D, H, W]`` each (same shape, H and W at least
    ``2 ** num_levels``, torchvision's own check); ``index_pyramid(centroids_coords)``: ``[B, 2, H, W]``
    (x, y) pixels -> ``[B, num_levels * (2r+1)^2, H, W]`` in the features' dtype, taps in RAFT's order.
    """

    def __init__(self, stock: nn.Module, rec: Acceleration):
        super().__init__()
        self.num_levels = stock.num_levels
        self.radius = stock.radius
        self.out_channels = stock.out_channels
        # Kept out of the module tree (no parameters anyway), so named_modules() and state_dict() of the
        # accelerated model list exactly what the stock model lists.
        self.__dict__["_stock"] = stock
        self.__dict__["_rec"] = rec
        self.__dict__["_block"] = None

    @property
    def mode(self) -> str | None:
        """The resolved mode of the last pyramid ("allpairs" or "otf"), None before the first forward."""
        return None if self._block is None else self._block.mode

    def build_pyramid(self, fmap1: torch.Tensor, fmap2: torch.Tensor) -> None:
        if fmap1.shape != fmap2.shape:
            raise ValueError(
                f"fmap2: expected the shape of fmap1 {tuple(fmap1.shape)}, got {tuple(fmap2.shape)}"
            )
        # The same limit as torchvision's block, so the accelerated model accepts exactly the inputs the
        # stock one does (ours would also run on smaller maps).
        min_size = 2 ** self.num_levels
        if any(s < min_size for s in fmap1.shape[-2:]):
            raise ValueError(
                f"fmap1: H and W of the feature maps must be at least {min_size} (images at least "
                f"{8 * min_size}), got {tuple(fmap1.shape[-2:])}"
            )
        self.__dict__["_block"] = make_block(fmap1, fmap2, self.num_levels, self.radius, self._rec)

    def index_pyramid(self, centroids_coords: torch.Tensor) -> torch.Tensor:
        if self._block is None:
            raise RuntimeError("index_pyramid: build_pyramid(fmap1, fmap2) must be called first")
        return self._block(centroids_coords)

    def extra_repr(self) -> str:
        return f"num_levels={self.num_levels}, radius={self.radius}, mode={self._rec.mode!r}, backend={self._rec.backend!r}"


def apply(model, rec: Acceleration) -> None:
    _check_stock_block(model)
    stock = model.corr_block
    model.corr_block = HMoReCorrBlock(stock, rec)
    rec.undo = {"corr_block": stock}


def revert(model, rec: Acceleration) -> None:
    model.corr_block = rec.undo["corr_block"]
