"""Argument checks shared by the four op families (docs/ops.md, "Common rules").

One copy, used by :mod:`~hmore_kernels.edges`, :mod:`~hmore_kernels.corr`, :mod:`~hmore_kernels.chamfer`
and :mod:`~hmore_kernels.skeleton`, so the messages and limits cannot drift apart. Every check raises
``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, bad value) whose message starts with
the argument's name, then says what was expected and what was given.

Integer limits (:data:`INT_LIMITS`): the schemas take ``int`` (int64), but the kernels index in 32 bits
or size a window from the value, so each integer argument has a largest value the kernels honour. The
same limit is enforced here for every backend (the reference included, so that all backends accept the
same arguments) and repeated by the C++ glue (``csrc/common.h``: ``check_int_arg``) for callers of
``torch.ops.hmore`` directly.
"""
from __future__ import annotations

import math
import numbers

import torch

INT32_MAX = 2**31 - 1

# name -> (limit, why). The C++ glue checks the same numbers (csrc/common.h, csrc/corr/corr.h).
INT_LIMITS = {
    # corr: (2r+1)^2 taps per level and (2d+1)^2 channels are allocated per query pixel; the CUDA and
    # Triton kernels index them in 32 bits. 1024 (4.2M taps) is far past any practical window.
    "radius": (1024, "the window has (2r+1)^2 taps per query pixel"),
    "max_displacement": (1024, "the output has (2d+1)^2 channels"),
    # Level l samples at coords / 2**l; 2**62 is the largest power of two an int64 holds with headroom,
    # and every level past log2(size) is empty anyway.
    "num_levels": (62, "level l is scaled by 2**-l in 64-bit arithmetic"),
    # local_corr: the tap offset d * dilation is a 32-bit int in the kernels (d <= 1024).
    "dilation": (2**20, "the tap offset max_displacement * dilation must fit in 32 bits"),
    "stride": (INT32_MAX, "output pixel i reads fmap1 at i * stride in 32-bit arithmetic"),
    # mask_boundary / flow_edges: the padded row W + 2 * width is indexed in 32 bits.
    "width": (2**30 - 1, "the window 2 * width + 1 is indexed in 32 bits"),
    "band": (2**30 - 1, "the window 2 * band + 1 is indexed in 32 bits"),
    # chamfer: p * p (the coverage denominator and a patch's pixel count) is a 32-bit int on the GPU.
    "patch_size": (46340, "p * p must fit in 32 bits"),
    "patch_sizes": (46340, "p * p must fit in 32 bits"),
    "points_per_bone": (INT32_MAX, "point indices are 32-bit"),
}


# ---------------------------------------------------------------------------------------------- values
def tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")


def check_choice(value, name: str, choices) -> None:
    if isinstance(value, bool) or value not in choices:  # True == 1 would match an int choice
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def check_bool(value, name: str) -> bool:
    """A flag: a Python bool (or a 0-dim bool tensor is refused: it would sync and trace badly)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {value!r} ({type(value).__name__})")
    return value


def check_int(value, name: str, minimum: int, allow_none: bool = False, maximum: int | None = None):
    """An int in ``[minimum, maximum]``; ``maximum`` defaults to :data:`INT_LIMITS` [name] (else 2^31 - 1).

    bool is refused (True is not a size). Returns ``value`` as a plain int (or None).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an int >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    limit, why = INT_LIMITS.get(name, (INT32_MAX, "the kernels index in 32 bits"))
    if maximum is not None:
        limit = maximum
    if value > limit:
        raise ValueError(f"{name}: expected an int <= {limit} ({why}), got {value}")
    return value


def check_float(value, name: str, minimum: float | None = None, allow_none: bool = False, what: str = "a finite float"):
    """A finite real number (int or float, not bool), ``>= minimum`` when given. Returns a float or None."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {what}{' or None' if allow_none else ''}, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ValueError(f"{name}: expected {what}{bound}, got {value!r}")
    return value


def check_same_device(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name}: expected a tensor on {ref.device} like {ref_name}, got {t.device}")


def compiling() -> bool:
    # Data-dependent checks (value ranges) would graph-break under torch.compile; the kernels repeat them.
    return torch.compiler.is_compiling()


def check_values(ok: torch.Tensor, message: str, device_check: bool = True) -> None:
    """A check on the data's values (docs/ops.md: on the host for CPU tensors, ``torch._assert_async`` on a
    GPU, so no host synchronisation). ``ok`` is a 0-dim bool tensor on the data's device."""
    if ok.device.type == "cpu":
        if not compiling() and not bool(ok):
            raise ValueError(message)
    elif device_check:
        torch._assert_async(ok, message)


def deterministic(flag) -> bool:
    if flag is None:
        return torch.are_deterministic_algorithms_enabled()
    return check_bool(flag, "deterministic")
