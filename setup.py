"""Build of record for hmore_kernels._C.

The CPU kernels (C++, OpenMP, -O3) are always built. The CUDA kernels are built when the installed
torch was built with CUDA (or FORCE_CUDA=1), for TORCH_CUDA_ARCH_LIST (default "8.0;9.0").
The source list is csrc/sources.txt, shared with CMakeLists.txt.

Install with:  pip install --no-build-isolation -e .
"""
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_sources():
    kinds = {"cpu": [], "cuda": [], "python": []}
    with open(os.path.join(ROOT, "csrc", "sources.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            kind, path = line.split()
            if kind not in kinds:
                raise SystemExit(f"csrc/sources.txt: unknown kind {kind!r} for {path}")
            kinds[kind].append(path)
    return kinds


def extensions():
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    srcs = read_sources()
    with_cuda = bool(torch.cuda._is_compiled()) or os.environ.get("FORCE_CUDA", "0") == "1"
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    if with_cuda:
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    # -g0: Python's default -g doubles the build time and size for no benefit in a release build.
    # -fno-math-errno: lets GCC vectorise sqrt (nothing here reads errno).
    cxx = ["-O3", "-g0", "-std=c++17", "-fopenmp", "-fno-math-errno", "-DNDEBUG"]
    define_macros = []
    sources = srcs["cpu"] + srcs["python"]
    kwargs = {}
    if with_cuda:
        define_macros += [("HMORE_WITH_CUDA", None), ("HMORE_CUDA_ARCHS", f'"{archs}"')]
        sources += srcs["cuda"]
        kwargs["extra_compile_args"] = {
            "cxx": cxx,
            "nvcc": ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"],
        }
        ext_cls = CUDAExtension
    else:
        kwargs["extra_compile_args"] = {"cxx": cxx}
        ext_cls = CppExtension
    print(
        "hmore_kernels build configuration:\n"
        f"  torch {torch.__version__}, python {sys.version.split()[0]}\n"
        f"  CUDA kernels: {'yes, archs ' + archs if with_cuda else 'no (torch built without CUDA; FORCE_CUDA=1 overrides)'}\n"
        f"  OpenMP: yes (-fopenmp)\n"
        f"  C++ flags: {' '.join(cxx)}\n"
        f"  sources: {len(sources)} files from csrc/sources.txt",
        flush=True,
    )
    return [
        ext_cls(
            "hmore_kernels._C",
            sources=sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_link_args=["-fopenmp"],
            **kwargs,
        )
    ]


def cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    name="hmore",
    version="0.1.0",
    description="Fused GPU kernels for human-motion and optical-flow models, and the H-MoRe model",
    packages=find_packages(include=["hmore_kernels", "hmore_kernels.*", "hmore", "hmore.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.6", "numpy"],
    # cupy: the backend="cupy" path (NVRTC JIT of csrc/*_cuda.cu) for a GPU user whose _C has no CUDA. CUDA 13
    # wheels, like the project's GPU machines (a CUDA 12 system: cupy-cuda12x with nvidia-cuda-nvrtc-cu12 and
    # nvidia-cuda-runtime-cu12 instead; the sources are only compile-tested with NVRTC 13). NVRTC and the
    # headers it needs (cuda_fp16.h) come from the toolkit if there is one, else from these wheels.
    # torchvision / ptlflow: hmore_kernels.integrations; the library never imports these itself.
    extras_require={
        "triton": ["triton>=3.0"],
        "torchvision": ["torchvision>=0.21"],
        "ptlflow": ["ptlflow>=0.4"],
        "cupy": ["cupy-cuda13x>=14", "nvidia-cuda-nvrtc>=13.0", "nvidia-cuda-runtime>=13.0"],
        "test": ["pytest", "scipy", "scikit-image", "opencv-python-headless"],
    },
    # the NVRTC stand-ins for the C/C++ library headers (files without a .py suffix)
    package_data={"hmore_kernels.cupy": ["rtc/*"], "hmore": ["weights/*.pt", "weights/*.json"]},
    entry_points={"console_scripts": ["hmore=hmore.cli:main"]},
    ext_modules=extensions(),
    cmdclass=cmdclass(),
)
