"""Backends and their selection, shared by every op family (docs/ops.md, "Common rules").

A backend is one implementation of an op: ``reference`` (pure PyTorch), ``cpu`` (the C++ kernels in
``_C``), ``cuda`` (the CUDA kernels in ``_C``, built only with a CUDA torch), ``triton`` (Triton kernels,
on a GPU, or on CPU tensors through ``TRITON_INTERPRET=1``) and ``cupy``. ``"auto"`` picks the fastest
one available for the tensors' device; a backend asked for by name is used or refused with
:class:`BackendUnavailable` -- never silently replaced.
"""
from __future__ import annotations

import importlib
import os
import warnings

import torch

BACKENDS = ("reference", "cpu", "cuda", "triton", "cupy")


class BackendUnavailable(RuntimeError):
    """Raised when a backend asked for by name cannot run here.

    The message names the backend, why it cannot run (not built with CUDA, triton not installed, no
    GPU, tensors on the wrong device) and the backends that can.
    """


def _load_native():
    """(module or None, reason) for the compiled extension."""
    try:
        return importlib.import_module("hmore_kernels._C"), ""
    except ImportError as e:  # not built, or built against another torch: the reference backend still works
        reason = f"the C++ extension hmore_kernels._C failed to import ({type(e).__name__}: {e})"
        # Said once, loudly, at import: otherwise backend="auto" would quietly run the pure-PyTorch
        # reference, 10-800x slower, and nobody would know why training crawls.
        warnings.warn(
            f"hmore_kernels: {reason}. backend='auto' will run the pure-PyTorch reference (10-800x slower) "
            "and backend='cpu'/'cuda' will raise BackendUnavailable. Rebuild with "
            "pip install --no-build-isolation -e .",
            RuntimeWarning,
            stacklevel=2,
        )
        return None, f"{reason}; run pip install --no-build-isolation -e ."


# Resolved once at import, as plain module constants: backend resolution runs inside user code that
# torch.compile traces, and dynamo graph-breaks on lru_cache'd calls that reach importlib.
_NATIVE, _NATIVE_REASON = _load_native()


def _native():
    return _NATIVE, _NATIVE_REASON


def native_loaded() -> bool:
    return _NATIVE is not None


def _triton_version():
    try:
        import triton

        return triton.__version__
    except ImportError:
        return None


_TRITON_VERSION = _triton_version()


def _read_build_info() -> dict:
    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "triton": _TRITON_VERSION}
    if _NATIVE is None:
        info.update(native=False, reason=_NATIVE_REASON, cuda=False, cuda_archs=[], openmp=False)
        return info
    raw = torch.ops.hmore._build_info()
    kv = dict(line.split("=", 1) for line in raw.strip().splitlines() if "=" in line)
    info.update(
        native=True,
        cuda=kv.get("cuda") == "1",
        cuda_archs=[a for a in kv.get("cuda_archs", "").split(";") if a],
        openmp=kv.get("openmp", "0") != "0",
        openmp_version=kv.get("openmp", "0"),
        compiler=kv.get("compiler", ""),
    )
    return info


_BUILD_INFO = _read_build_info()


def build_info() -> dict:
    """How ``_C`` was built: torch/triton versions, CUDA on/off and archs, OpenMP.

    Returns a new dict; ``native`` is False (with ``reason``) when the extension is not built.
    """
    return dict(_BUILD_INFO)


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _cupy_reason():
    from .cupy import unavailable_reason

    return unavailable_reason()


def _reason(backend: str, device: torch.device | None):
    """None if ``backend`` can run on tensors of ``device`` (None = any device), else why not."""
    if backend == "reference":
        return None
    if backend == "cpu":
        if not native_loaded():
            return _native()[1]
        if device is not None and device.type != "cpu":
            return f"the cpu backend runs on CPU tensors, got tensors on {device}"
        return None
    if backend == "cuda":
        if not native_loaded():
            return _native()[1]
        if not _BUILD_INFO["cuda"]:
            return "hmore_kernels._C was built without CUDA (torch has no CUDA, or FORCE_CUDA was not set)"
        if not torch.cuda.is_available():
            return "no GPU is visible to torch"
        if device is not None and device.type != "cuda":
            return f"the cuda backend runs on CUDA tensors, got tensors on {device}"
        return None
    if backend == "triton":
        if _TRITON_VERSION is None:
            return "triton is not installed"
        if device is not None and device.type == "cpu" and not triton_interpreting():
            return "the triton backend runs on CUDA tensors (or on CPU tensors with TRITON_INTERPRET=1), got CPU tensors"
        if device is None and not torch.cuda.is_available() and not triton_interpreting():
            return "no GPU, and TRITON_INTERPRET=1 is not set"
        return None
    if backend == "cupy":
        r = _cupy_reason()
        if r:
            return r
        if device is not None and device.type != "cuda":
            return f"the cupy backend runs on CUDA tensors, got tensors on {device}"
        return None
    return f"unknown backend {backend!r}"


def available_backends() -> dict:
    """Backend name -> True, or the reason (a str) it cannot run on this machine."""
    out = {}
    for b in BACKENDS:
        r = _reason(b, None)
        out[b] = True if r is None else r
    return out


# ---------------------------------------------------------------------------------------------- picking
# backend="auto" on a GPU, per op, until GPU benchmarks decide; ops not listed take "cuda".
# corr: cuBLAS (through at::baddbmm) for the volume and pyramid; the CUDA lookup keeps its window reads in
# L1; Triton loads 32-channel chunks of D in the memory-free lookup and local_corr where the CUDA kernels
# loop over D with scalar loads.
# chamfer: CUDA's column minimum is warp-level instructions (Triton's goes through shared memory);
# Triton's patch tiles are coalesced across patches; CUDA's distance transform is O(H*W) where Triton's
# row pass is O(W^2) per row.
GPU_AUTO = {
    "corr_lookup_otf": "triton", "local_corr": "triton",
    "patch_centroids": "triton", "patch_centroid_chamfer": "triton",
}

# Families whose GPU kernels (CUDA and Triton) have no float64 path: under "auto", float64 CUDA tensors
# go to the reference instead of a TypeError. The edge and skeleton GPU kernels run float64 natively
# (edges_cuda.cpp, skeleton_cuda.cpp and their Triton twins dispatch on kDouble / tl.float64).
GPU_NO_FLOAT64 = ("corr", "chamfer")


def ops(backend: str):
    """The op namespace of a resolved backend."""
    if backend == "cupy":
        return torch.ops.hmore_cupy
    return torch.ops.hmore_triton if backend == "triton" else torch.ops.hmore


def _load_cupy(family: str) -> None:
    # the hmore_cupy ops of a family are defined on first use (importing hmore_kernels never imports cupy)
    if family == "edges":
        from .cupy import edges as _  # noqa: F401
    elif family == "corr":
        from .cupy import corr as _  # noqa: F401
    elif family == "chamfer":
        from .cupy import chamfer as _  # noqa: F401
    else:
        from .cupy import skeleton as _  # noqa: F401


def _load_triton(family: str, op: str) -> None:
    # The Triton ops are defined on first use, so importing hmore_kernels never imports triton. Plain
    # import statements (not importlib, which torch.compile refuses to trace) of a module already loaded.
    try:
        if family == "edges":
            from .triton import edges as _  # noqa: F401
        elif family == "corr":
            from .triton import corr as _  # noqa: F401
        elif family == "chamfer":
            from .triton import chamfer as _  # noqa: F401
        else:
            from .triton import skeleton as _  # noqa: F401
    except ImportError as e:
        raise BackendUnavailable(
            f"{op}: backend 'triton' is unavailable: the Triton {family} module cannot be imported ({e})"
        ) from e


def pick(family: str, op: str, backend: str, device: torch.device, dtype: torch.dtype | None = None) -> str:
    """The backend that runs ``op`` (of ``family``: "edges", "corr", "chamfer", "skeleton") on tensors of
    ``device`` and ``dtype``; the one place where a backend is chosen. Every op has every backend.

    ``"auto"``: on CPU tensors the C++ kernel, else the reference; on CUDA tensors :data:`GPU_AUTO`'s
    choice for the op, then the other GPU backend, then cupy, then the reference; float64 CUDA tensors of
    the :data:`GPU_NO_FLOAT64` families go to the reference (docs/ops.md: float64 is for reference and cpu,
    i.e. gradcheck). A backend named explicitly is used or refused with :class:`BackendUnavailable`, never
    replaced. The Triton or CuPy module of the family is imported when it is picked.
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a str, got {type(backend).__name__}")
    if backend == "auto":
        if device.type == "cuda" and dtype == torch.float64 and family in GPU_NO_FLOAT64:
            b = "reference"
        elif device.type == "cuda":
            first = GPU_AUTO.get(op, "cuda")
            b = "reference"
            # a plain loop: this runs inside code that torch.compile traces
            for g in (first, "triton" if first == "cuda" else "cuda", "cupy"):
                if _reason(g, device) is None:
                    b = g
                    break
        else:
            b = "cpu" if _reason("cpu", device) is None else "reference"
    else:
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected 'auto' or one of {', '.join(BACKENDS)}, got {backend!r}")
        why = _reason(backend, device)
        if why is not None:
            ok = [g for g in BACKENDS if _reason(g, device) is None]
            raise BackendUnavailable(
                f"{op}: backend {backend!r} is unavailable: {why}. Available for {device.type} tensors: {', '.join(ok)}"
            )
        b = backend
    if b == "triton":
        _load_triton(family, op)
    elif b == "cupy":
        _load_cupy(family)
    return b
