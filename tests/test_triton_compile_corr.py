"""Ahead-of-time compilation of every Triton kernel of the corr family for real GPUs, without a GPU.

The machinery is tests/test_triton_compile.py's (imported, not copied): every op runs once under the
interpreter (or the JIT on a GPU machine) on a tiny input while each kernel launch is recorded, and every
distinct specialization is compiled with ``triton.compile`` down to a cubin in worker subprocesses, for
sm_90 always and sm_80 for float32; a kernel that does not compile fails with the compiler's message.

Coverage: every op and backward in float32 with every branch-selecting constexpr (layouts, radius 1 and
4 -- the tile sizes of RAFT's default --, the deterministic and atomic scatters, level chunks with and
without accumulation); float16 and bfloat16 for every kernel they reach, in one option each.
"""
from __future__ import annotations

import pytest
import torch

import test_triton_compile as TTC  # noqa: E402  (tests/ is on sys.path under pytest)

import hmore_kernels.triton.corr as TK  # noqa: E402  (registers torch.ops.hmore_triton.corr_*)

DEVICE = TTC.DEVICE
ops = torch.ops.hmore_triton
LOWP = (torch.float16, torch.bfloat16)


def _feat(B, D, H, W, dt, seed):
    return torch.randn(B, D, H, W, generator=torch.Generator().manual_seed(seed)).to(dt).to(DEVICE)


def _coords(B, H, W, h2, w2):
    c = torch.rand(B, 2, H, W, generator=torch.Generator().manual_seed(3)) * torch.tensor([w2 + 2.0, h2 + 2.0]).view(
        1, 2, 1, 1) - 1.0
    return c.to(DEVICE)


def _volume(dt):
    f1, f2 = _feat(1, 3, 3, 5, dt, 0), _feat(1, 3, 4, 6, dt, 1)
    v = ops.corr_volume(f1, f2, None)
    ops._corr_volume_backward(torch.ones_like(v), f1, f2, None)


def _pyramid(dt):
    f1, f2 = _feat(1, 3, 3, 5, dt, 0), _feat(1, 3, 4, 6, dt, 1)
    p = ops.corr_pyramid(f1, f2, 3, None)
    ops._corr_pyramid_backward([torch.ones_like(p[0]), None, torch.ones_like(p[2])], f1, f2, None)


def _lookup(dt, radius, layout, levels=2):
    f1, f2 = _feat(1, 3, 2, 3, dt, 0), _feat(1, 3, 4, 6, dt, 1)
    p = ops.corr_pyramid(f1, f2, levels, None)
    c = _coords(1, 2, 3, 4, 6)
    out = ops.corr_lookup(p, c, radius, layout, False)
    ops._corr_lookup_backward(torch.ones_like(out), p, c, radius, layout, False)


def _otf(dt, radius, layout, det):
    f1, f2 = _feat(1, 3, 2, 3, dt, 0), _feat(1, 3, 4, 6, dt, 1)
    c = _coords(1, 2, 3, 4, 6)
    out = ops.corr_lookup_otf(f1, f2, c, radius, 2, None, layout, det)
    ops._corr_lookup_otf_backward(torch.ones_like(out), f1, f2, c, radius, 2, None, layout, det)


def _local(dt, d, stride, dil):
    f1, f2 = _feat(1, 3, 4, 5, dt, 0), _feat(1, 3, 4, 5, dt, 1)
    out = ops.local_corr(f1, f2, d, stride, dil, None)
    ops._local_corr_backward(torch.ones_like(out), f1, f2, d, stride, dil, None)


class _Case:
    def __init__(self, id, fn, *args):
        self.id, self.fn, self.args = id, fn, args
        self.lowp = args[0] in LOWP

    def run(self):
        self.fn(*self.args)


def _cases():
    """float32: every kernel and branch constexpr at RAFT's radius 4, compiled for sm_80 and sm_90;
    float16/bfloat16: the ops they reach, sm_90 only. HMORE_TRITON_COMPILE_FULL=1 adds radius 1, the other
    layout/scatter combinations, every op in every dtype, and a 9-level lookup (two launches, the second
    accumulating)."""
    full = TTC.FULL
    f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
    cases = [
        _Case("corr_volume-float32", _volume, f32),
        _Case("corr_pyramid-float32", _pyramid, f32),
        _Case("corr_lookup-float32-r4-raft", _lookup, f32, 4, "raft"),
        _Case("corr_lookup_otf-float32-r4-yx-det", _otf, f32, 4, "yx", True),
        _Case("corr_lookup_otf-float32-r4-raft-atomic", _otf, f32, 4, "raft", False),
        _Case("local_corr-float32-d4-s2-dil2", _local, f32, 4, 2, 2),
        _Case("corr_volume-float16", _volume, f16),
        _Case("corr_lookup-float16-r4-raft", _lookup, f16, 4, "raft"),
        _Case("corr_lookup_otf-float16-r4-raft-atomic", _otf, f16, 4, "raft", False),
        _Case("local_corr-float16-d4-s1-dil1", _local, f16, 4, 1, 1),
        _Case("corr_volume-bfloat16", _volume, bf16),
        _Case("corr_lookup_otf-bfloat16-r4-raft-atomic", _otf, bf16, 4, "raft", False),
    ]
    if full:
        for dt in (f32, f16, bf16):
            n = str(dt).split(".")[-1]
            cases += [
                _Case(f"corr_pyramid-{n}-full", _pyramid, dt),
                _Case(f"corr_lookup-{n}-r1-yx-full", _lookup, dt, 1, "yx"),
                _Case(f"corr_lookup_otf-{n}-r1-raft-det-full", _otf, dt, 1, "raft", True),
                _Case(f"local_corr-{n}-d1-s3-dil1-full", _local, dt, 1, 3, 1),
            ]
        cases.append(_Case("corr_lookup-float32-r1-raft-9levels-full", _lookup, f32, 1, "raft", 9))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def recorded(request, tmp_path_factory):
    """Record every selected case up front and hand its jobs to the compile workers at once."""
    selected = {item.callspec.params["case"] for item in request.session.items
                if getattr(item, "callspec", None) and item.function is test_corr_kernels_compile}
    compiler = TTC._Compiler(tmp_path_factory.mktemp("triton_compile_corr"))
    per_case = {}
    gpu_tiles = TK._TILES_GPU
    TK._TILES_GPU = True  # record (and so compile) the tile sizes a GPU runs, not the interpreter's
    try:
        for case in CASES:
            if case.id not in selected:
                continue
            try:
                with TTC._recording() as specs:
                    case.run()
            except Exception as e:  # reported by that case's test
                per_case[case.id] = e
                continue
            per_case[case.id] = TTC._jobs(case, specs)
            compiler.submit(per_case[case.id])
        yield compiler, per_case
    finally:
        TK._TILES_GPU = gpu_tiles
        compiler.close()


@pytest.mark.parametrize("case", [c.id for c in CASES])
def test_corr_kernels_compile(recorded, case):
    compiler, per_case = recorded
    jobs = per_case[case]
    if isinstance(jobs, Exception):
        raise jobs
    assert jobs, "no kernel launch was recorded"
    assert all(s["module"] == "hmore_kernels.triton.corr" for s, _ in jobs), "a launch outside the corr module"
    failures = TTC.compile_failures(compiler, jobs)
    assert not failures, f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures)
