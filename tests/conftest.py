"""Shared pytest configuration for the hmore_kernels tests.

* Without a GPU, Triton kernels run through the interpreter: ``TRITON_INTERPRET=1`` must be set before
  any kernel module is imported, so it is set here, first thing.
* ``@pytest.mark.cuda`` marks tests that need a CUDA GPU; they are skipped (with a reason) elsewhere.
* ``backend`` fixture / ``BACKEND_PARAMS``: the fast backends of this machine, each with the device its
  tensors live on (cpu and interpreted triton: CPU tensors; cuda and triton on a GPU: CUDA tensors).
  A backend that cannot run here is skipped with the reason ``available_backends()`` gives -- except
  that a missing C++ extension is also reported as a failure by ``test_native_extension_built``.
* ``HMORE_TEST_BACKENDS=reference,cpu,...`` restricts/overrides the list (``reference`` included), which
  is how the tests themselves are validated against the pure-PyTorch reference.
* ``gen`` fixture: a fresh ``torch.Generator`` per test, seeded from the test id (reproducible, and
  independent of test order).
"""
import os

import torch

# torch.cuda.is_available() does not initialise a CUDA context; on the CPU wheel it is just False.
_HAS_GPU = torch.cuda.is_available()
if not _HAS_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import zlib  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402

import hmore_kernels  # noqa: E402

HAS_GPU = _HAS_GPU


@dataclass(frozen=True)
class BackendCase:
    """One backend under test and the device its input tensors are made on."""

    name: str
    device: str

    @property
    def interpreted(self) -> bool:
        """Triton through the (about 1000x slower) interpreter: use small shapes, few cases."""
        return self.name == "triton" and self.device == "cpu"

    @property
    def float64(self) -> bool:
        """docs/ops.md: float64 is supported by the reference and cpu backends (for gradcheck)."""
        return self.name in ("reference", "cpu")

    @property
    def low_precision(self) -> bool:
        """float16/bfloat16 are supported on GPU backends."""
        return self.device == "cuda"

    def __str__(self):
        return f"{self.name}@{self.device}"


def _backend_cases():
    triton_dev = "cuda" if HAS_GPU else "cpu"
    cases = [
        ("cpu", BackendCase("cpu", "cpu"), []),
        ("triton", BackendCase("triton", triton_dev), [pytest.mark.cuda] if HAS_GPU else []),
        ("cuda", BackendCase("cuda", "cuda"), [pytest.mark.cuda]),
    ]
    only = os.environ.get("HMORE_TEST_BACKENDS")
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        extra = [("reference", BackendCase("reference", "cpu"), [])] + (
            [("reference-cuda", BackendCase("reference", "cuda"), [pytest.mark.cuda])] if HAS_GPU else []
        ) + [("cupy", BackendCase("cupy", "cuda"), [pytest.mark.cuda])]  # opt-in (NVRTC JIT, not run on a GPU yet)
        cases = [c for c in extra + cases if c[1].name in wanted]
    return [pytest.param(case, id=cid, marks=marks) for cid, case, marks in cases]


BACKEND_PARAMS = _backend_cases()


def skip_unavailable(case: BackendCase) -> None:
    """Skip (with the reason) when ``case`` cannot run on this machine."""
    if case.device == "cuda" and not HAS_GPU:
        pytest.skip(f"backend {case.name} needs a CUDA GPU; none is visible")
    if case.name == "reference":
        return
    why = hmore_kernels.available_backends()[case.name]
    if why is not True:
        pytest.skip(f"backend {case.name!r} unavailable here: {why}")


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> BackendCase:
    case = request.param
    skip_unavailable(case)
    return case


@pytest.fixture
def gen(request) -> torch.Generator:
    """A fresh CPU generator seeded from the test's id."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped where none is present)")


def pytest_collection_modifyitems(config, items):
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible to torch")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
