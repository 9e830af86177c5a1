"""Loading and launching the NVRTC-compiled kernels on the current torch stream.

A kernel is named by its source (``"edges/edges_cuda.cu"``) and a specialisation (``"sobel_forward_kernel<float,
float>"``, one of :data:`_nvrtc.KERNELS`). Its parameter kinds come from its declaration in the source
(:func:`_nvrtc.signature`), so every argument is packed with the exact C type the kernel expects (a Python
int handed to an ``int`` parameter is 4 bytes, to an ``int64_t`` 8); tensors cross over with DLPack
(``cupy.from_dlpack``: no copy, the device pointer of the same memory) and ``None`` is a null pointer.
Launches go through the driver API (``cuLaunchKernel``) on ``torch.cuda.current_stream()``.

:class:`Recorder` is a stand-in launcher that checks and records launches instead of running them: the
tests drive the backend's Python code with it on a machine without a GPU.
"""
from __future__ import annotations

import ctypes
import threading

import torch

from . import _nvrtc

_CTYPES = {"i32": ctypes.c_int32, "u32": ctypes.c_uint32, "i64": ctypes.c_int64, "bool": ctypes.c_bool,
           "f32": ctypes.c_float, "f64": ctypes.c_double}
_INTS = ("i32", "u32", "i64")
_LIMITS = {"i32": (-(2**31), 2**31 - 1), "u32": (0, 2**32 - 1), "i64": (-(2**63), 2**63 - 1)}
# pointee kind -> the torch dtypes a tensor handed to it may have ("void": any)
_ELEM_DTYPES = {
    "f32": (torch.float32,), "f64": (torch.float64,), "f16": (torch.float16,), "bf16": (torch.bfloat16,),
    "i32": (torch.int32,), "u32": (torch.int32,), "i64": (torch.int64,), "u64": (torch.int64,),
    "u8": (torch.uint8, torch.bool), "bool": (torch.bool,),
}
_SIG_CACHE: dict = {}
_STRUCTS: dict[str, type] = {}  # struct name -> ctypes.Structure with the C layout (registered by the families)


def signature(rel: str, expr: str):
    key = (rel, expr)
    if key not in _SIG_CACHE:
        if expr not in _nvrtc.KERNELS[rel]:
            raise KeyError(f"{rel}: {expr} is not among the kernels the CuPy backend compiles (_nvrtc.KERNELS)")
        _SIG_CACHE[key] = _nvrtc.signature(_nvrtc.read_source(rel), expr)
    return _SIG_CACHE[key]


def check_args(rel: str, expr: str, args) -> list:
    """Check ``args`` against the kernel's parameters; returns them with scalars converted to ctypes."""
    sig = signature(rel, expr)
    if len(args) != len(sig):
        raise TypeError(f"{expr}: expected {len(sig)} arguments ({', '.join(p.name for p in sig)}), got {len(args)}")
    out = []
    for p, a in zip(sig, args):
        if p.kind == "ptr":
            if a is not None and not isinstance(a, torch.Tensor):
                raise TypeError(f"{expr}: {p.name} is a pointer: expected a tensor or None, got {type(a).__name__}")
            if a is not None:
                ok = _ELEM_DTYPES.get(p.elem)
                if ok is not None and a.dtype not in ok:
                    raise TypeError(f"{expr}: {p.name} points to {p.elem}, got a {a.dtype} tensor")
                if not a.is_contiguous():
                    raise ValueError(f"{expr}: {p.name}: the kernels index contiguous memory, got strides {a.stride()}")
            out.append(a)
        elif p.kind.startswith("struct:"):
            st = _STRUCTS.get(p.kind[7:])
            if st is None or not isinstance(a, st):
                raise TypeError(f"{expr}: {p.name} is a {p.kind[7:]} by value, got {type(a).__name__}")
            out.append(a)
        else:
            if isinstance(a, torch.Tensor):
                raise TypeError(f"{expr}: {p.name} is a {p.kind} scalar, got a tensor")
            if p.kind in _INTS:
                if isinstance(a, float) or not isinstance(a, int):
                    raise TypeError(f"{expr}: {p.name} is an integer ({p.kind}), got {a!r}")
                lo, hi = _LIMITS[p.kind]
                if not lo <= int(a) <= hi:
                    raise ValueError(f"{expr}: {p.name} = {a} does not fit {p.kind}")
            out.append(_CTYPES[p.kind](a))
    return out


def check_geometry(expr: str, grid, block, smem: int):
    grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
    if not (1 <= grid[0] < 2**31 and 1 <= grid[1] <= 65535 and 1 <= grid[2] <= 65535):
        raise ValueError(f"{expr}: grid {grid} is outside the CUDA limits")
    if not (all(b >= 1 for b in block) and block[0] * block[1] * block[2] <= 1024 and block[2] <= 64):
        raise ValueError(f"{expr}: block {block} is outside the CUDA limits")
    if not 0 <= smem <= 48 * 1024:
        raise ValueError(f"{expr}: {smem} bytes of dynamic shared memory (the kernels assume the 48 KiB default)")
    return grid, block


class GpuLauncher:
    """Runs launches on the GPU: modules compiled (or read from the disk cache) on first use per device."""

    def __init__(self):
        self._modules = {}
        self._lock = threading.Lock()

    def _function(self, rel: str, expr: str, device: torch.device):
        import cupy

        idx = device.index if device.index is not None else torch.cuda.current_device()
        key = (rel, idx)
        with self._lock:
            if key not in self._modules:
                with cupy.cuda.Device(idx):
                    major, minor = torch.cuda.get_device_capability(idx)
                    cubin, lowered = _nvrtc.cached_cubin(rel, f"{major}{minor}")
                    mod = cupy.cuda.function.Module()
                    mod.load(cubin)
                self._modules[key] = (mod, lowered, {})
            mod, lowered, funcs = self._modules[key]
            if expr not in funcs:
                funcs[expr] = mod.get_function(lowered[expr])
            return funcs[expr]

    def __call__(self, rel, expr, grid, block, args, smem=0, *, device):
        import cupy
        from cupy_backends.cuda.api import driver

        packed = check_args(rel, expr, args)
        grid, block = check_geometry(expr, grid, block, smem)
        fn = self._function(rel, expr, device)
        stream = torch.cuda.current_stream(device).cuda_stream
        # The DLPack exchange names torch's current stream as the consumer, so torch inserts no wait.
        with cupy.cuda.Device(device.index if device.index is not None else torch.cuda.current_device()), \
                cupy.cuda.ExternalStream(stream):
            params, keep = pack(packed, _dlpack_pointer)
            driver.launchKernel(fn.ptr, *grid, *block, smem, stream, ctypes.addressof(params), 0)
        del keep  # the views and ctypes values lived until the launch had read them


def _dlpack_pointer(t: torch.Tensor):
    """(device pointer, keep-alive) of a tensor through DLPack: a zero-copy CuPy view of the same memory (CuPy
    has no bfloat16: its int16 view has the same bytes)."""
    import cupy

    arr = cupy.from_dlpack(t.view(torch.int16) if t.dtype == torch.bfloat16 else t)
    return arr.data.ptr, arr


def pack(packed, pointer_of):
    """cuLaunchKernel's ``kernelParams``: an array of pointers, one per argument, to the argument's bytes.

    ``packed`` is :func:`check_args`' output (ctypes scalars and structs, tensors, None = null);
    ``pointer_of(tensor)`` gives ``(device address, object to keep alive)``. Returns ``(array, keep)``:
    ``keep`` holds everything the array points into, until the launch.
    """
    keep, slots = [], []
    for a in packed:
        if a is None:
            a = ctypes.c_void_p(0)
        elif isinstance(a, torch.Tensor):
            ptr, owner = pointer_of(a)
            keep.append(owner)
            a = ctypes.c_void_p(ptr)
        keep.append(a)
        slots.append(ctypes.cast(ctypes.pointer(a), ctypes.c_void_p))
    params = (ctypes.c_void_p * max(1, len(slots)))(*slots)
    keep.append(params)
    return params, keep


class Recorder:
    """Checks every launch like :class:`GpuLauncher` (argument count and types, pointee dtypes, geometry)
    and records ``(expr, grid, block, smem, args)`` instead of running it."""

    def __init__(self):
        self.launches = []

    def __call__(self, rel, expr, grid, block, args, smem=0, *, device):
        check_args(rel, expr, args)
        grid, block = check_geometry(expr, grid, block, smem)
        self.launches.append((expr, grid, block, smem, list(args)))


_LAUNCHER = None


def launcher():
    global _LAUNCHER
    if _LAUNCHER is None:
        _LAUNCHER = GpuLauncher()
    return _LAUNCHER


def set_launcher(obj):
    """Replace the launcher (tests: a :class:`Recorder`); returns the previous one."""
    global _LAUNCHER
    prev, _LAUNCHER = _LAUNCHER, obj
    return prev
