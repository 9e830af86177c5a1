"""CuPy backend: the plain-CUDA kernels of ``csrc/<family>/*_cuda.cu`` JIT-compiled by NVRTC through CuPy,
for a GPU user whose ``hmore_kernels._C`` was built without CUDA (``backend="cupy"``).

- :mod:`._nvrtc`: which kernel specialisations each source gives, their parameter types (read from the
  source), NVRTC compilation to a cubin with a disk cache (``~/.cache/hmore/cupy``, or ``HMORE_CUPY_CACHE``).
- :mod:`._launch`: module loading, argument packing, launches on the current torch stream (tensors cross
  over with DLPack, no copy); a recording launcher for tests without a GPU.
- :mod:`._ops`: the ``torch.ops.hmore_cupy`` namespace (the native schemas, fake kernels and autograd).
- :mod:`.edges`, ...: one module per op family, the work of the extension's ``*_cuda.cpp`` glue.

Family modules are imported on first use (``backend="cupy"``), so importing hmore_kernels never imports
CuPy.
"""
from __future__ import annotations

_REASON = None


def unavailable_reason():
    """None if the CuPy backend can run here, else why not (a str). Computed once."""
    global _REASON
    if _REASON is None:
        _REASON = _find_reason() or ""
    return _REASON or None


def _find_reason():
    try:
        import cupy
    except ImportError:
        return "cupy is not installed (pip install hmore[cupy])"
    try:
        if not cupy.is_available():
            return "cupy is installed but finds no CUDA driver/GPU"
    except Exception as e:  # cupy raises assorted errors without a driver
        return f"cupy finds no usable GPU ({type(e).__name__}: {e})"
    from .. import _backends

    if not _backends.native_loaded():
        return "the cupy backend takes its op schemas from hmore_kernels._C, which is not built"
    from . import _nvrtc

    try:
        _nvrtc.nvrtc_version()
        _nvrtc.csrc_dir()
        _nvrtc.options("90")
    except Exception as e:  # no libnvrtc, no sources, no CUDA headers
        return f"NVRTC cannot compile the kernels here: {e}"
    return None
