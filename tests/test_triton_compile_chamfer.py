"""Ahead-of-time compilation of every Triton kernel of the Chamfer family for real GPUs, without a GPU.

The machinery is tests/test_triton_compile.py's (imported, not copied): every op below runs once under the
interpreter (or the JIT on a GPU machine) while each kernel launch is recorded; every distinct
specialization is compiled with ``triton.compile`` to a cubin in worker subprocesses. A kernel that does
not compile fails its case with the compiler's message.

Coverage: every op, forward and backward, with every value of each branch-selecting constexpr (D = 2
fast path and generic D; lengths, weights, squared / plain L2, the split-y path with atomic row minima
(M > 64 points), deterministic segment-sum and atomic scatter backward; offsets or not), in float32 for
sm_80 and sm_90; float16/bfloat16 (only loads and stores differ: accumulation buffers are float32) on
one representative path per op for sm_90. Only the
chamfer module's kernels are compiled here (boundary_chamfer's distance transform belongs to the edge
family's test). Under a minute on 2 cores.
"""
from __future__ import annotations

import pytest
import torch

import test_triton_compile as TCM  # noqa: E402  (skips this module too when triton is missing)

import hmore_kernels.triton.chamfer as C  # noqa: E402

MODULE = C.__name__
DEVICE = TCM.DEVICE
LOWP = (torch.float16, torch.bfloat16)
ops = torch.ops.hmore_triton


def _gen():
    return torch.Generator().manual_seed(0)


def _pts(B, N, D, dtype, g):
    return (torch.rand(B, N, D, generator=g) * 16).to(dtype).to(DEVICE)


def _nn(dt, D, lengths, M=130):
    g = _gen()
    x, y = _pts(1, 5, D, dt, g), _pts(1, M, D, dt, g)  # M > 64: the y range is split, rows merge atomically
    lens = (torch.tensor([4]).to(DEVICE), torch.tensor([M - 3]).to(DEVICE)) if lengths else (None, None)
    ops.nearest_neighbors(x, y, *lens)


def _cd(dt, D, lengths, weights, squared, reduction, bidirectional, deterministic, M=20):
    g = _gen()
    x, y = _pts(2, 7, D, dt, g), _pts(2, M, D, dt, g)
    lens = (torch.tensor([7, 3]).to(DEVICE), torch.tensor([M, 2]).to(DEVICE)) if lengths else (None, None)
    w = (torch.rand(2, 7, generator=g).to(dt).to(DEVICE), torch.rand(2, M, generator=g).to(dt).to(DEVICE)) \
        if weights else (None, None)
    v, ix, iy = ops.chamfer_distance(x, y, *lens, *w, squared, reduction, bidirectional, deterministic)
    ops._chamfer_distance_backward(torch.ones_like(v), x, y, ix, iy, *lens, *w, squared, reduction, bidirectional,
                                   deterministic)


def _map(dt, h=9, w=33, seed=0):
    m = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(seed))
    m[m < 0.5] = 0
    return m.to(dt).to(DEVICE)


def _pc(dt, p, offsets):
    w = _map(dt)
    off = (torch.randn(1, 2, 9, 33, generator=_gen()).to(dt).to(DEVICE)) if offsets else None
    c, m = ops.patch_centroids(w, p, off)
    ops._patch_centroids_backward(torch.ones_like(c), torch.ones_like(m), w, off, c, m, p)


def _pcc(dt, sizes):
    a, b = _map(dt, seed=1), _map(dt, seed=2)
    v = ops.patch_centroid_chamfer(a, b, sizes, 1e-3, "mean")
    ops._patch_centroid_chamfer_backward(torch.ones_like(v), a, b, sizes, 1e-3, "mean")


def _bc():
    a, b = _map(torch.float32, seed=1) > 0, _map(torch.float32, seed=2) > 0
    ops.boundary_chamfer(a, b, "none")


class _Case:
    def __init__(self, id, fn, *args, lowp=False):
        self.id, self.fn, self.args, self.lowp = id, fn, args, lowp

    def run(self):
        self.fn(*self.args)


def _name(dt):
    return str(dt).split(".")[-1]


def _cases():
    f32 = torch.float32
    cases = [
        _Case("nn-float32-d2-split", _nn, f32, 2, False),
        _Case("nn-float32-d3-lengths", _nn, f32, 3, True, 20),
        # forward: COLS, weights/lengths, squared; backward: NORMALISE, DETERMINISTIC, DIM2
        _Case("cd-float32-d2-sq-mean-bidir-w-len-det", _cd, f32, 2, True, True, True, "mean", True, True),
        _Case("cd-float32-d2-l2-sum-bidir-atomic", _cd, f32, 2, False, False, False, "sum", True, False),
        _Case("cd-float32-d2-sq-none-unidir-w-atomic-split", _cd, f32, 2, False, True, True, "none", False, False,
              130),
        _Case("cd-float32-d3-l2-mean-bidir-w-len-det", _cd, f32, 3, True, True, False, "mean", True, True),
        _Case("cd-float32-d5-sq-sum-bidir-atomic", _cd, f32, 5, False, False, True, "sum", True, False),
        _Case("pc-float32-p8-offsets", _pc, f32, 8, True),
        _Case("pc-float32-p3-nooffsets", _pc, f32, 3, False),
        _Case("pc-float32-p128", _pc, f32, 128, False),
        _Case("pcc-float32", _pcc, f32, [8, 16, 32]),
        _Case("pcc-float32-p3", _pcc, f32, [3]),
        _Case("bc-bool", _bc),
    ]
    for dt in LOWP:
        n = _name(dt)
        cases += [
            _Case(f"nn-{n}-d2", _nn, dt, 2, True, lowp=True),
            _Case(f"cd-{n}-d2-sq-mean-w-det", _cd, dt, 2, True, True, True, "mean", True, True, lowp=True),
            _Case(f"pc-{n}-p8-offsets", _pc, dt, 8, True, lowp=True),
            _Case(f"pcc-{n}", _pcc, dt, [8], lowp=True),
        ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def recorded(request, tmp_path_factory):
    """Runs the selected cases under the recorder, handing each case's jobs (chamfer kernels only) to the
    compile workers at once; yields (compiler, {case id: jobs or the exception the op raised})."""
    selected = {item.callspec.params["case"] for item in request.session.items
                if getattr(item, "callspec", None) and item.function is test_chamfer_kernels_compile}
    compiler = TCM._Compiler(tmp_path_factory.mktemp("triton_compile_chamfer"))
    per_case = {}
    try:
        for case in CASES:
            if case.id not in selected:
                continue
            try:
                with TCM._recording() as specs:
                    case.run()
            except Exception as e:  # reported by that case's test
                per_case[case.id] = e
                continue
            mine = [s for s in specs if s["module"] == MODULE]
            per_case[case.id] = TCM._jobs(case, mine)
            compiler.submit(per_case[case.id])
        yield compiler, per_case
    finally:
        compiler.close()


@pytest.mark.parametrize("case", [c.id for c in CASES])
def test_chamfer_kernels_compile(recorded, case):
    compiler, per_case = recorded
    jobs = per_case[case]
    if isinstance(jobs, Exception):
        raise jobs
    assert jobs, "no chamfer kernel launch was recorded"
    failures = TCM.compile_failures(compiler, jobs)
    assert not failures, f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures)


def test_every_kernel_is_covered(recorded):
    """Every @triton.jit kernel of the module (a *_kernel function) is launched by some case."""
    _, per_case = recorded
    launched = {s["name"] for jobs in per_case.values() if not isinstance(jobs, Exception) for s, _ in jobs}
    kernels = {n for n in dir(C) if n.endswith("_kernel") and n.startswith("_")}
    if len(per_case) < len(CASES):
        pytest.skip("only a subset of the cases was selected")
    assert kernels <= launched, f"kernels never launched: {sorted(kernels - launched)}"
