"""Ahead-of-time compilation of the skeleton family's Triton kernels for real GPUs, without a GPU.

Reuses the machinery of tests/test_triton_compile.py (recording every launch under the interpreter,
compiling each distinct specialization with ``triton.compile`` down to a cubin in worker processes): see
its docstring. Every kernel of hmore_kernels/triton/skeleton.py is recorded with every value of its
branch-selecting constexprs (match only / fused offset map; bool / uint8 masks, a float mask being
converted to bytes first) in float32 and float64 (float16/bfloat16 points are converted to float32 before
any kernel, so they reach the float32 specializations), and compiled for sm_80 and sm_90.

The cost must be evaluated with each product rounded on its own (no FMA contraction, which would move
near-ties away from the other backends): the float64 specializations' PTX is checked to hold no
``fma.rn.f64`` (the float32 ones use the same mul_rn calls; the shared worker reports f64 FMAs only).
"""
from __future__ import annotations

import pytest
import torch

import test_triton_compile as TC  # noqa: E402  (skips this module too where Triton cannot run)

import hmore_kernels.triton.skeleton as S  # noqa: E402,F401  (defines torch.ops.hmore_triton.skeleton_*)

DEVICE = TC.DEVICE
ops = torch.ops.hmore_triton
FMA_FREE = ("_match_kernel", "_points_fwd_kernel", "_points_bwd_kernel")


def _points(dt):
    g = torch.Generator().manual_seed(0)
    j = (torch.rand(2, 17, 2, generator=g) * 30).to(dt).to(DEVICE)
    c = torch.rand(2, 17, generator=g).to(dt).to(DEVICE)
    bones = torch.tensor([[0, 1], [1, 2], [5, 11]], device=DEVICE)
    pts, pc, _ = ops.skeleton_points(j, c, bones, 3)
    ops._skeleton_points_backward(torch.ones_like(pts), torch.ones_like(pc), bones, 17, 3)


def _match(dt, mask_dt, fused):
    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(1, 40, 2, generator=g) * 9).to(dt).to(DEVICE)  # 40 points: two BQ = 32 blocks
    conf = torch.rand(1, 40, generator=g).to(dt).to(DEVICE)
    m = torch.zeros(1, 1, 9, 33)
    m[..., 2:7, 5:25] = 1.0
    m = (m.bool() if mask_dt == torch.bool else m.to(mask_dt)).to(DEVICE)
    if fused:
        ops.skeleton_offset_map(pts, pts + 1, conf, m, 1e-4)
    else:
        ops.skeleton_match(pts, conf, m, 1e-4)


class _Case(TC._Case):
    def __init__(self, id, fn, *args):
        super().__init__(id, fn, *args)
        self.lowp = False  # both archs for every case (the file is small)


def _cases():
    cases = []
    for dt in (torch.float32, torch.float64):
        n = TC._name(dt)
        cases.append(_Case(f"skeleton_points-{n}", _points, dt))
        for mask_dt in (torch.bool, torch.uint8, torch.float32):
            for fused in (False, True):
                cases.append(_Case(f"skeleton_{'offset_map' if fused else 'match'}-{n}-{TC._name(mask_dt)}mask",
                                   _match, dt, mask_dt, fused))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Record every case up front (jobs go to the workers at once); yield (compiler, {case id: jobs or
    the exception the op raised})."""
    compiler = TC._Compiler(tmp_path_factory.mktemp("triton_compile_skeleton"))
    per_case = {}
    try:
        for case in CASES:
            try:
                with TC._recording() as specs:
                    case.run()
            except Exception as e:  # reported by that case's test
                per_case[case.id] = e
                continue
            per_case[case.id] = TC._jobs(case, specs)
            compiler.submit(per_case[case.id])
        yield compiler, per_case
    finally:
        compiler.close()


@pytest.mark.parametrize("case", [c.id for c in CASES])
def test_kernels_compile(compiled, case):
    compiler, per_case = compiled
    jobs = per_case[case]
    if isinstance(jobs, Exception):
        raise jobs
    assert jobs, "no kernel launch was recorded"
    failures = TC.compile_failures(compiler, jobs, lambda name: name in FMA_FREE,
                                   "the skeleton cost must round each product on its own (no multiply-add "
                                   "contraction)")
    assert not failures, f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures)
