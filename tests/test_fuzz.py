"""The fuzzer's short CI budget (tests/fuzz_ops.py; scripts/fuzz.py runs the full one).

Every backend that runs here (cpu, triton through the interpreter on small shapes, cuda and triton on a
GPU) against the reference: each drawn case must agree within tolerance or be rejected by both with a
ValueError/TypeError naming the argument; and the reference on its own, which must return or refuse,
never crash. The draws are derandomized (the same cases every run), so a failure here is reproducible;
the full budget uses fresh seeds.
"""
import pytest

import fuzz_ops
from conftest import skip_unavailable

# cases per family: cheap on reference/cpu; the interpreter runs a kernel ~1000x slower
BUDGET = {"reference": 150, "cpu": 150, "cuda": 150, "triton": 150}
INTERPRETED_BUDGET = 12


@pytest.mark.parametrize("family", fuzz_ops.FAMILIES)
def test_fuzz_reference(family):
    """The reference alone (run_case compares a backend with the reference, here itself, so agreement
    is given): every drawn case returns or is refused with a ValueError/TypeError naming the argument,
    never another exception. The agreement checks are test_fuzz_backend's."""
    counts, findings = fuzz_ops.fuzz(family, "reference", BUDGET["reference"])
    assert not findings, findings[:5]
    assert counts["agree"] > 0, counts


@pytest.mark.parametrize("family", fuzz_ops.FAMILIES)
def test_fuzz_backend(backend, family):
    skip_unavailable(backend)
    n = INTERPRETED_BUDGET if backend.interpreted else BUDGET[backend.name]
    counts, findings = fuzz_ops.fuzz(family, backend.name, n, small=backend.interpreted)
    assert not findings, findings[:5]
    assert counts["agree"] > 0, counts
