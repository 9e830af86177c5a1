"""Our correlation inside the flow models people already use: torchvision and ptlflow.

    import hmore_kernels.integrations as hki
    model = torchvision.models.optical_flow.raft_small()        # or ptlflow.get_model("raft_small")
    hki.accelerate(model)                                       # in place; returns the model
    flows = model(img1, img2)                                   # same API, same flows
    hki.restore(model)                                          # exactly the stock model again

Covered: torchvision's RAFT (``raft_small``, ``raft_large``; :mod:`.torchvision`) and ptlflow's
RAFT-family models (:data:`hmore_kernels.integrations.ptlflow.COVERED`). Their flows agree with the
stock models to float rounding (the tests require every iteration within 2e-4 px and parameter
gradients within 1e-4 relative). The libraries are optional: this package never imports them.
"""
from __future__ import annotations

from . import ptlflow as _ptlflow
from . import torchvision as _torchvision
from ._common import ATTR, MODES, Acceleration, check_settings

__all__ = ["Acceleration", "accelerate", "accelerated", "restore", "MODES"]

_ADAPTERS = (_torchvision, _ptlflow)


def _covered() -> str:
    tv = ", ".join(_torchvision.MODELS)
    ptl = ", ".join(n for names in _ptlflow.COVERED.values() for n in names)
    return f"torchvision ({tv}) and ptlflow ({ptl})"


def accelerate(model, mode: str = "auto", backend: str = "auto", *, memory_budget: int | None = None):
    """Put :class:`hmore_kernels.CorrBlock` behind ``model``'s correlation, in place; returns ``model``.

    Args:
        model: a torchvision RAFT (``raft_small()``, ``raft_large()``) or a covered ptlflow model
            (``ptlflow.get_model("raft_small")``, ...), weights as they are. Accelerating an
            accelerated model replaces its settings.
        mode: "auto" (default: the all-pairs pyramid when it fits ``memory_budget``, else on the fly),
            "allpairs" (RAFT's pyramid, fastest lookups) or "otf" (no volume: memory O(H*W*D), what
            makes 1088x1920 fit). For a ptlflow model built with ``alternate_corr=True``, "auto" means
            "otf".
        backend: "auto" (default) or a backend name (``hmore_kernels.BACKENDS``), passed to the ops.
        memory_budget: bytes the pyramid may take under "auto" (default: see ``hmore_kernels.CorrBlock``).

    Raises:
        TypeError: ``model`` is not a model this package covers (the message lists those it does).
        ValueError: a bad ``mode``, ``backend`` or ``memory_budget``.
    """
    check_settings(mode, backend, memory_budget)
    adapter = next((a for a in _ADAPTERS if a.matches(model)), None)
    if adapter is None:
        raise TypeError(
            f"model: {type(model).__module__}.{type(model).__qualname__} is not a model hmore_kernels.integrations "
            f"covers; covered: {_covered()}"
        )
    if accelerated(model):
        restore(model)
    rec = Acceleration(adapter.LIBRARY, type(model).__name__, mode, backend, memory_budget)
    adapter.apply(model, rec)
    model.__dict__[ATTR] = rec
    return model


def accelerated(model) -> Acceleration | None:
    """The record of what :func:`accelerate` did to ``model`` (library, settings), or None."""
    return getattr(model, "__dict__", {}).get(ATTR)


def restore(model):
    """Undo :func:`accelerate` exactly: the stock correlation, the stock methods; returns ``model``.

    Raises:
        ValueError: ``model`` is not accelerated.
    """
    rec = accelerated(model)
    if rec is None:
        raise ValueError(f"model: {type(model).__qualname__} is not accelerated (nothing to restore)")
    adapter = next(a for a in _ADAPTERS if a.LIBRARY == rec.library)
    adapter.revert(model, rec)
    del model.__dict__[ATTR]
    return model
