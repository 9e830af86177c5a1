"""Where hmore runs: one resolution of a device argument for training, inference and evaluation."""
from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(spec="auto", name: str = "device", local_rank: int = 0):
    """``"auto"`` / None (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> a
    ``torch.device``; a bare ``"cuda"`` (and "auto" on a GPU) means ``cuda:local_rank`` (the DDP rank's GPU).
    Errors name the argument (``name``): an unknown device, or CUDA asked for where none is available."""
    import torch

    want = "'auto', 'cpu', 'cuda' or 'cuda:N'"
    if spec is None or spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if not isinstance(spec, (str, torch.device)):
        raise ValueError(f"{name}: expected {want}, got {spec!r}")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name}: expected {want}, got {spec!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: expected {want}, got {spec!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}: {str(spec)!r} asked for, but no CUDA GPU is available here")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev
