"""NVRTC side of the CuPy backend: which kernels each ``csrc/<family>/*_cuda.cu`` source gives, their
parameter types (read from the source itself), and the compilation to a cubin, cached on disk.

Nothing here needs a GPU or a driver: NVRTC is a library (``cupy_backends.cuda.libs.nvrtc``, shipped with
CuPy; ``libnvrtc`` comes from the CUDA toolkit or the ``nvidia-cuda-nvrtc`` wheel), so the tests compile
every kernel of :data:`KERNELS` for sm_80 and sm_90 on a CPU-only machine.

The sources are the very files the extension builds with nvcc (no second copy); their host launchers
(``extern "C"``, ``<<<>>>``) sit behind ``#ifndef __CUDACC_RTC__``, and the C/C++ library headers NVRTC
lacks are stood in for by ``rtc/`` (see ``rtc/hmore_rtc.h``). Options mirror nvcc's defaults (no
``-ftz``, IEEE division and square root, FMA contraction on) so the JIT kernels round like the nvcc build.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
RTC_INCLUDE = _HERE / "rtc"

# The float dtype pairs (storage T, accumulator A) of the edge kernels' dispatch_float.
_TA = (("float", "float"), ("double", "double"), ("__half", "float"), ("__nv_bfloat16", "float"))
_GPU3 = ("float", "__half", "__nv_bfloat16")  # corr / chamfer: float32, float16, bfloat16
_ANY_IN = ("unsigned char", "float", "double", "__half", "__nv_bfloat16")


def _edges():
    out = []
    for t, a in _TA:
        out += [f"sobel_forward_kernel<{t}, {a}>", f"sobel_backward_kernel<{t}, {t}, {a}>",
                f"sobel_backward_kernel<{a}, {t}, {a}>", f"gradmag_forward_kernel<{t}, {a}>",
                f"gradmag_backward_kernel<{t}, {a}>", f"morph_rows_kernel<{t}, {a}>",
                f"boundary_forward_kernel<{t}, {a}>", f"boundary_backward_kernel<{t}, {a}>",
                f"flow_mag_kernel<false, {t}, {a}>", f"flow_mag_kernel<true, {t}, {a}>",
                f"flow_scale_kernel<{t}, {a}>", f"flow_grad_kernel<{t}, {a}>"]
    out += ["morph_rows_kernel<uint8_t, float>", "boundary_forward_kernel<uint8_t, float>"]  # bool masks
    for a in ("float", "double"):
        out += [f"morph_args_kernel<{a}>", f"flow_dot_kernel<{a}>", f"flow_count_kernel<{a}>"]
    return tuple(dict.fromkeys(out))


def _canny():
    nms = ["nms_kernel<unsigned char, int, int>"] + [f"nms_kernel<{t}, double, double>" for t in _ANY_IN[1:]]
    return tuple(nms + ["merge_kernel", "flatten_kernel", "output_kernel"])


def _corr():
    out = []
    for t in _GPU3:
        out += [f"lookup_fwd_kernel<{t}>", f"lookup_bwd_kernel<{t}>", f"otf_fwd_kernel<{t}>", f"otf_bwd_kernel<{t}>",
                f"otf_scatter_kernel<{t}>", f"local_fwd_kernel<{t}>", f"local_bwd_kernel<0, {t}>",
                f"local_bwd_kernel<1, {t}>"]
    return tuple(out + ["unpool_add_kernel"])


def _chamfer():
    out = []
    for t in _GPU3:
        for dc in (2, 3, 0):
            out += [f"pair_kernel<{t}, {dc}, {c}, {r}>" for c in ("true", "false") for r in ("true", "false")]
            out += [f"dir_stats_kernel<{t}, {dc}>", f"dir_grad_kernel<{t}, {dc}>"]
        out += [f"patch_centroids_kernel<{t}>", f"patch_centroids_bwd_kernel<{t}>", f"pcc_scale_kernel<{t}>"]
    return tuple(out + ["unpack_kernel", "segsum_kernel", "pcc_bwd_kernel", "bc_reduce_kernel"])


# source (relative to csrc/) -> every kernel specialisation the CuPy backend may load from it
KERNELS: dict[str, tuple[str, ...]] = {
    "edges/edges_cuda.cu": _edges(),
    "edges/canny_cuda.cu": _canny(),
    "edges/distance_cuda.cu": tuple(f"column_kernel<{t}>" for t in _ANY_IN) + ("row_kernel",),
    "skeleton/skeleton_cuda.cu": tuple(
        f"{k}<{t}>" for t in ("float", "double") for k in ("match_kernel", "points_forward_kernel", "points_backward_kernel")),
    "corr/corr_cuda.cu": _corr(),
    "chamfer/chamfer_cuda.cu": _chamfer(),
}

ARCHS = ("80", "90")  # what the tests compile for (the GPUs this project targets: A100, H100/H200)


def csrc_dir() -> Path:
    """The ``csrc`` folder the extension was built from (the repository's, beside the package)."""
    env = os.environ.get("HMORE_CSRC")
    cands = [Path(env)] if env else []
    cands.append(_HERE.parent.parent / "csrc")
    for c in cands:
        if (c / "sources.txt").is_file():
            return c
    raise FileNotFoundError(
        f"the CUDA sources (csrc/) were not found at {', '.join(map(str, cands))}; the CuPy backend compiles them "
        "at first use: install hmore from a source checkout (pip install -e .) or set HMORE_CSRC")


def cuda_include_dir() -> Path | None:
    """A folder holding ``cuda_fp16.h`` (the toolkit's headers), or None."""
    cands = [os.environ.get(k) for k in ("CUDA_PATH", "CUDA_HOME")]
    cands = [Path(c) / "include" for c in cands if c]
    cands += [Path("/usr/local/cuda/include"), *sorted(Path("/usr/local").glob("cuda-*/include"), reverse=True)]
    try:  # the headers of the nvidia-cuda-runtime wheel (pip installs of the toolkit)
        import nvidia

        for p in nvidia.__path__:
            cands += sorted(Path(p).glob("cu*/include"), reverse=True) + [Path(p) / "cuda_runtime" / "include"]
    except ImportError:
        pass
    for c in cands:
        if (c / "cuda_fp16.h").is_file():
            return c
    return None


def options(arch: str) -> tuple[str, ...]:
    """NVRTC options for ``sm_<arch>``: nvcc's defaults (see the module docstring), our includes."""
    inc = cuda_include_dir()
    if inc is None:
        raise FileNotFoundError(
            "the CUDA headers (cuda_fp16.h) were not found: set CUDA_PATH to a CUDA toolkit, or pip install nvidia-cuda-runtime")
    return ("-std=c++17", f"-arch=sm_{arch}", "-default-device", f"-I{RTC_INCLUDE}", f"-I{csrc_dir()}", f"-I{inc}")


# ---------------------------------------------------------------------------------------------- signatures
@dataclass(frozen=True)
class Param:
    kind: str  # "ptr", "i32", "u32", "i64", "bool", "f32", "f64", or "struct:<Name>"
    name: str
    elem: str = ""  # for "ptr": the pointee's kind after template substitution ("f16", "i64", "void", ...)


_SCALARS = {
    "int": "i32", "int32_t": "i32", "unsigned": "u32", "unsigned int": "u32", "int64_t": "i64", "long long": "i64",
    "long": "i64", "bool": "bool", "float": "f32", "double": "f64", "__half": "f16", "__nv_bfloat16": "bf16",
    "unsigned char": "u8", "uint8_t": "u8",
}

_KERNEL_RE = re.compile(
    r"(?:template\s*<(?P<tp>[^>]*)>\s*)?__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(?P<name>\w+)\s*\(")


def _split_top(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [x.strip() for x in out]


def _declarations(source: str) -> dict[str, tuple[list[str], list[str]]]:
    """kernel name -> (template parameter names, parameter declarations) of every __global__ in source."""
    out = {}
    for m in _KERNEL_RE.finditer(source):
        i, depth = m.end(), 1
        j = i
        while depth:
            depth += {"(": 1, ")": -1}.get(source[j], 0)
            j += 1
        tps = [t.split()[-1] for t in _split_top(m.group("tp"))] if m.group("tp") else []
        out[m.group("name")] = (tps, _split_top(source[i : j - 1]))
    return out


def parse_expression(expr: str) -> tuple[str, list[str]]:
    """``"k<float, 2>"`` -> ``("k", ["float", "2"])``."""
    if "<" not in expr:
        return expr, []
    name, rest = expr.split("<", 1)
    return name.strip(), _split_top(rest.rsplit(">", 1)[0])


def signature(source: str, expr: str) -> tuple[Param, ...]:
    """The parameter kinds of kernel specialisation ``expr``, read from its declaration in ``source``."""
    name, args = parse_expression(expr)
    decls = _declarations(source)
    if name not in decls:
        raise KeyError(f"kernel {name!r} is not declared in this source")
    tps, params = decls[name]
    sub = dict(zip(tps, args))
    out = []
    for p in params:
        toks = p.replace("__restrict__", " ").replace("*", " * ").split()
        pname = toks[-1]
        toks = [t for t in toks[:-1] if t != "const"]
        if "*" in toks:
            base = " ".join(sub.get(t, t) for t in toks[: toks.index("*")])
            out.append(Param("ptr", pname, _SCALARS.get(base, {"ull": "u64", "unsigned long long": "u64"}.get(base, base))))
            continue
        base = " ".join(sub.get(t, t) for t in toks)
        if base in _SCALARS:
            out.append(Param(_SCALARS[base], pname))
        elif re.fullmatch(r"[A-Z]\w*", base):
            out.append(Param(f"struct:{base}", pname))
        else:
            raise ValueError(f"{expr}: cannot marshal parameter {p!r} (type {base!r})")
    return tuple(out)


def read_source(rel: str) -> str:
    return (csrc_dir() / rel).read_text()


# ---------------------------------------------------------------------------------------------- compiling
class NvrtcError(RuntimeError):
    """NVRTC rejected a source: the message holds its log."""


def _nvrtc():
    from cupy_backends.cuda.libs import nvrtc

    return nvrtc


def nvrtc_version() -> tuple[int, int]:
    return tuple(_nvrtc().getVersion())


def compile_cubin(rel: str, arch: str, names: tuple[str, ...] | None = None, extra: str = "") -> tuple[bytes, dict]:
    """Compile ``csrc/<rel>`` for ``sm_<arch>`` with NVRTC: ``(cubin, {expression: lowered name})``.

    ``names`` defaults to ``KERNELS[rel]``; ``extra`` is appended to the source (the tests add
    ``static_assert``s on the layouts the Python side marshals). Raises :class:`NvrtcError` with the log.
    """
    nv = _nvrtc()
    names = KERNELS[rel] if names is None else names
    src = read_source(rel) + extra
    prog = nv.createProgram(src, str(csrc_dir() / rel), [], [])
    try:
        for n in names:
            nv.addNameExpression(prog, n)
        try:
            nv.compileProgram(prog, list(options(arch)))
        except Exception as e:
            raise NvrtcError(f"NVRTC could not compile {rel} for sm_{arch}:\n{nv.getProgramLog(prog)}") from e
        return bytes(nv.getCUBIN(prog)), {n: nv.getLoweredName(prog, n) for n in names}
    finally:
        nv.destroyProgram(prog)


def cache_dir() -> Path:
    base = os.environ.get("HMORE_CUPY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hmore", "cupy")
    return Path(base)


def cached_cubin(rel: str, arch: str) -> tuple[bytes, dict]:
    """:func:`compile_cubin` through a disk cache keyed by everything the cubin depends on (the source and
    every header it can see, the options, the NVRTC version), so an edited source recompiles."""
    key = hashlib.sha256()
    key.update(repr((rel, arch, options(arch), nvrtc_version(), KERNELS[rel])).encode())
    root = csrc_dir()
    for f in sorted(list(root.rglob("*.cu")) + list(root.rglob("*.cuh")) + list(root.rglob("*.h")) + list(RTC_INCLUDE.iterdir())):
        key.update(str(f.relative_to(f.anchor)).encode())
        key.update(f.read_bytes())
    d = cache_dir()
    stem = d / key.hexdigest()
    cub, names = stem.with_suffix(".cubin"), stem.with_suffix(".names")
    if cub.is_file() and names.is_file():
        lowered = dict(line.split("\t", 1) for line in names.read_text().splitlines() if "\t" in line)
        if set(lowered) == set(KERNELS[rel]):
            return cub.read_bytes(), lowered
    data, lowered = compile_cubin(rel, arch)
    d.mkdir(parents=True, exist_ok=True)
    tmp = stem.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, cub)  # atomic: a concurrent process sees the whole cubin or none
    tmp.write_text("".join(f"{k}\t{v}\n" for k, v in lowered.items()))
    os.replace(tmp, names)
    return data, lowered
