"""Tests of the correlation family (docs/ops.md §1, §5): corr_volume, corr_pyramid, corr_lookup,
corr_lookup_otf, local_corr, CorrBlock.

Kornia style: per op test_smoke/cardinality, test_against_reference[backend], an outside oracle
(RAFT's own CorrBlock algorithm re-implemented in reference/corr.py with grid_sample; a brute-force
Python loop for local_corr), test_gradcheck (float64), test_opcheck, test_dynamo, test_exception.
The triton backend runs through its interpreter on tiny shapes when there is no GPU; its tests skip
(with the reason) only while hmore_kernels.triton.corr cannot be imported.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hmore_kernels as hk
from hmore_kernels import BackendUnavailable
from hmore_kernels.reference import corr as ref
from common import assert_close, noncontig, tol
from conftest import HAS_GPU, BackendCase, skip_unavailable

FLOATS = (torch.float32, torch.float64)
# Lookups of float32 data: the backends and the reference add the same 4 products, but the on-the-fly
# path pools fmap2 before the dot product where the pyramid pools the volume after it (same value,
# different rounding): 20x the float32 table.
OTF_FACTOR = 20.0


@pytest.fixture
def cb(backend) -> BackendCase:
    """The backend under test. (A guard here once turned any exception raised while importing the Triton
    corr module into a skip; a broken module must fail its tests instead, so there is none.)"""
    return backend


def call(case: BackendCase, op: str, *args, **kwargs):
    return getattr(hk, op)(*args, backend=case.name, **kwargs)


def float_case(case: BackendCase, dtype):
    if dtype == torch.float64 and not case.float64:
        pytest.skip(f"float64 is supported by the reference and cpu backends only (docs/ops.md), not {case.name}")


def randn(gen, *shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, generator=gen, dtype=dtype).to(device)


def coords_for(gen, B, H, W, H2, W2, *, spread=1.0, dtype=torch.float32, device="cpu", avoid_int=False):
    """(x, y) pixel coordinates over [-spread*W2/4, W2*(1+spread/4)], some far outside the image."""
    x = (torch.rand(B, 1, H, W, generator=gen, dtype=torch.float64) * (1 + spread / 2) - spread / 4) * W2
    y = (torch.rand(B, 1, H, W, generator=gen, dtype=torch.float64) * (1 + spread / 2) - spread / 4) * H2
    c = torch.cat([x, y], 1)
    if avoid_int:  # keep every level's taps away from the bilinear kinks (integer positions)
        for _ in range(3):
            c = c + 0.25 * ((c * 8).frac() < 0.05).double()
    return c.to(dtype).to(device)


def shapes(case):
    """(B, D, H1, W1, H2, W2): odd sizes, coarse levels 1 pixel wide, fmap2 sizes != fmap1's."""
    if case.interpreted:
        return [(1, 4, 3, 5, 5, 6), (1, 3, 2, 3, 9, 2)]
    return [(2, 16, 7, 9, 7, 9), (1, 8, 5, 6, 9, 17), (1, 5, 3, 4, 15, 1), (2, 32, 6, 8, 6, 8)]


def vol_case_ok(case):
    if case.name == "triton" and case.interpreted:
        return (1, 4, 3, 5, 4, 6)
    return (2, 16, 9, 11, 8, 13)


# ================================================================================================
class TestCorrVolume:
    def test_smoke(self, cb, gen):
        f = randn(gen, 1, 4, 3, 5, device=cb.device)
        v = call(cb, "corr_volume", f, f)
        assert v.shape == (1, 3, 5, 3, 5) and v.dtype == torch.float32
        # <f(p), f(p)> / sqrt(D) is the diagonal
        diag = v.reshape(15, 15).diagonal().cpu()
        assert_close(diag, (f.cpu() ** 2).sum(1).reshape(-1) / 2.0, msg="diagonal")

    @pytest.mark.parametrize("shape", [(0, 4, 3, 5, 3, 5), (1, 0, 3, 5, 2, 2), (2, 4, 1, 1, 1, 1), (1, 4, 0, 5, 3, 3)])
    def test_cardinality(self, cb, gen, shape):
        B, D, H1, W1, H2, W2 = shape
        f1 = randn(gen, B, D, H1, W1, device=cb.device)
        f2 = randn(gen, B, D, H2, W2, device=cb.device)
        v = call(cb, "corr_volume", f1, f2)
        assert v.shape == (B, H1, W1, H2, W2)
        assert_close(v.cpu(), ref.corr_volume(f1.cpu(), f2.cpu()), msg=f"{shape}")

    @pytest.mark.parametrize("dtype", FLOATS)
    def test_against_reference(self, cb, gen, dtype):
        float_case(cb, dtype)
        B, D, H1, W1, H2, W2 = vol_case_ok(cb)
        f1 = noncontig(randn(gen, B, D, H1, W1, dtype=dtype, device=cb.device))
        f2 = randn(gen, B, D, H2, W2, dtype=dtype, device=cb.device).to(memory_format=torch.channels_last)
        for scale in (None, 0.37):
            out = call(cb, "corr_volume", f1, f2, scale)
            assert_close(out.cpu(), ref.corr_volume(f1.cpu(), f2.cpu(), scale), dtype=dtype, msg=f"scale={scale}")

    def test_gradcheck(self, cb, gen):
        float_case(cb, torch.float64)
        f1 = randn(gen, 1, 3, 3, 4, dtype=torch.float64).requires_grad_()
        f2 = randn(gen, 1, 3, 4, 2, dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: call(cb, "corr_volume", a, b, 0.7), (f1, f2))

    def test_opcheck(self, gen):
        skip_unavailable(BackendCase("cpu", "cpu"))
        f1, f2 = randn(gen, 2, 4, 3, 5), randn(gen, 2, 4, 4, 2)
        torch.library.opcheck(torch.ops.hmore.corr_volume.default, (f1, f2, None))
        torch.library.opcheck(torch.ops.hmore._corr_volume_backward.default, (randn(gen, 2, 3, 5, 4, 2), f1, f2, 0.5))

    def test_exception(self):
        f = torch.zeros(1, 4, 3, 3)
        with pytest.raises(ValueError, match="fmap1: expected a 4-D"):
            hk.corr_volume(f[0], f)
        with pytest.raises(ValueError, match="fmap2: expected D = 4"):
            hk.corr_volume(f, torch.zeros(1, 5, 3, 3))
        with pytest.raises(ValueError, match="fmap2: expected batch size 1"):
            hk.corr_volume(f, torch.zeros(2, 4, 3, 3))
        with pytest.raises(TypeError, match="fmap1: expected a floating-point"):
            hk.corr_volume(f.long(), f)
        with pytest.raises(TypeError, match="fmap2: expected dtype"):
            hk.corr_volume(f, f.double())
        with pytest.raises(TypeError, match="scale"):
            hk.corr_volume(f, f, "x")


# ================================================================================================
class TestCorrPyramid:
    @pytest.mark.parametrize("dtype", FLOATS)
    def test_against_reference(self, cb, gen, dtype):
        float_case(cb, dtype)
        for B, D, H1, W1, H2, W2 in shapes(cb):
            f1 = randn(gen, B, D, H1, W1, dtype=dtype, device=cb.device)
            f2 = noncontig(randn(gen, B, D, H2, W2, dtype=dtype, device=cb.device))
            out = call(cb, "corr_pyramid", f1, f2, 4)
            exp = ref.corr_pyramid(f1.cpu(), f2.cpu(), 4)
            assert len(out) == 4
            for l, (a, e) in enumerate(zip(out, exp)):
                assert a.shape == (B * H1 * W1, 1, H2 >> l, W2 >> l)
                assert_close(a.cpu(), e, dtype=dtype, msg=f"level {l} of {(B, D, H1, W1, H2, W2)}")

    def test_matches_raft_pyramid(self, cb, gen):
        f1, f2 = randn(gen, 1, 8, 4, 6, device=cb.device), randn(gen, 1, 8, 8, 12, device=cb.device)
        raft = ref.RaftCorrBlock(f1.cpu(), f2.cpu(), 3, 1).corr_pyramid
        for l, (a, e) in enumerate(zip(call(cb, "corr_pyramid", f1, f2, 3), raft)):
            assert_close(a.cpu(), e, msg=f"level {l}")

    def test_gradcheck(self, cb, gen):
        float_case(cb, torch.float64)
        f1 = randn(gen, 1, 2, 2, 3, dtype=torch.float64).requires_grad_()
        f2 = randn(gen, 1, 2, 5, 4, dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: call(cb, "corr_pyramid", a, b, 3), (f1, f2), fast_mode=True)
        # only some levels used: the others get no gradient
        assert torch.autograd.gradcheck(lambda a, b: call(cb, "corr_pyramid", a, b, 3, 0.5)[1], (f1, f2), fast_mode=True)

    def test_opcheck(self, gen):
        skip_unavailable(BackendCase("cpu", "cpu"))
        f1, f2 = randn(gen, 1, 4, 3, 2), randn(gen, 1, 4, 5, 4)
        torch.library.opcheck(torch.ops.hmore.corr_pyramid.default, (f1, f2, 3, None))

    def test_exception(self):
        f = torch.zeros(1, 4, 3, 3)
        with pytest.raises(ValueError, match="num_levels: expected an int >= 1, got 0"):
            hk.corr_pyramid(f, f, 0)
        with pytest.raises(ValueError, match="fmap2: expected D"):
            hk.corr_pyramid(f, torch.zeros(1, 3, 3, 3))


# ================================================================================================
def _pyr(gen, B, D, H1, W1, H2, W2, L, dtype, device):
    f1 = randn(gen, B, D, H1, W1, dtype=dtype, device=device)
    f2 = randn(gen, B, D, H2, W2, dtype=dtype, device=device)
    return f1, f2, ref.corr_pyramid(f1, f2, L)


class TestCorrLookup:
    def test_smoke(self, cb, gen):
        # a one-hot pyramid: the tap that lands exactly on it reads 1
        pyr = [torch.zeros(1, 1, 5, 5, device=cb.device)]
        pyr[0][0, 0, 3, 1] = 1.0  # x = 1, y = 3
        c = torch.tensor([2.0, 2.0], device=cb.device).reshape(1, 2, 1, 1)
        out = call(cb, "corr_lookup", pyr, c, 1)
        # dx = -1, dy = +1 -> raft tap (0)*3 + 2 = 2; yx tap (2)*3 + 0 = 6
        assert out.shape == (1, 9, 1, 1)
        assert out.flatten().cpu().tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
        out_yx = call(cb, "corr_lookup", pyr, c, 1, "yx")
        assert out_yx.flatten().cpu().tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]

    @pytest.mark.parametrize("dtype", FLOATS)
    def test_against_reference(self, cb, gen, dtype):
        float_case(cb, dtype)
        r = 1 if cb.interpreted else 3
        for B, D, H1, W1, H2, W2 in shapes(cb):
            _, _, pyr = _pyr(gen, B, D, H1, W1, H2, W2, 4, dtype, cb.device)
            c = coords_for(gen, B, H1, W1, H2, W2, spread=2.0, dtype=dtype, device=cb.device)
            c[:, :, 0, 0] = torch.tensor([1e6, -3e5], dtype=dtype)  # far outside
            for layout in ("raft", "yx"):
                out = call(cb, "corr_lookup", pyr, c, r, layout)
                exp = ref.corr_lookup(pyr, c, r, layout)
                assert out.dtype == dtype and out.shape == (B, 4 * (2 * r + 1) ** 2, H1, W1)
                assert torch.isfinite(out).all()
                assert_close(out.cpu(), exp.cpu(), dtype=dtype, msg=f"{(B, D, H1, W1, H2, W2)} {layout}")

    def test_noncontiguous(self, cb, gen):
        _, _, pyr = _pyr(gen, 1, 4, 3, 4, 6, 5, 2, torch.float32, cb.device)
        c = coords_for(gen, 1, 3, 4, 6, 5, device=cb.device)
        pyr_nc = [noncontig(p) for p in pyr]
        c_nc = noncontig(c)
        assert_close(call(cb, "corr_lookup", pyr_nc, c_nc, 2).cpu(), ref.corr_lookup(pyr, c, 2).cpu())

    def test_against_raft(self, cb, gen):
        """RAFT's own algorithm (grid_sample on normalised coordinates) where it is finite."""
        B, D, H, W = (1, 4, 8, 9) if cb.interpreted else (2, 32, 12, 17)  # level 3 is 1 pixel high
        r = 1 if cb.interpreted else 4
        f1, f2 = randn(gen, B, D, H, W), randn(gen, B, D, H, W)
        blk = ref.RaftCorrBlock(f1, f2, 4, r)
        c = coords_for(gen, B, H, W, H, W, spread=1.0)
        exp = blk(c)
        out = call(cb, "corr_lookup", [p.to(cb.device) for p in blk.corr_pyramid], c.to(cb.device), r).cpu()
        fin = torch.isfinite(exp)
        assert (~fin).any(), "the test must include a 1-pixel level where RAFT gives NaN"
        assert torch.isfinite(out).all()
        # RAFT normalises by W - 1 and grid_sample un-normalises: a few ulps of the coordinate
        assert_close(out[fin], exp[fin], atol=2e-5, rtol=1e-4, msg="vs RAFT's CorrBlock")

    def test_empty(self, cb, gen):
        # B = 0, and levels of width 0 (W2 >> l == 0): those taps read 0
        _, _, pyr = _pyr(gen, 0, 4, 3, 4, 5, 5, 2, torch.float32, cb.device)
        out = call(cb, "corr_lookup", pyr, torch.zeros(0, 2, 3, 4, device=cb.device), 1)
        assert out.shape == (0, 18, 3, 4)
        _, _, pyr = _pyr(gen, 1, 4, 2, 3, 3, 2, 3, torch.float32, cb.device)
        assert pyr[2].shape[-1] == 0
        c = coords_for(gen, 1, 2, 3, 3, 2, device=cb.device)
        out = call(cb, "corr_lookup", pyr, c, 1)
        assert (out[:, 18:] == 0).all()
        assert_close(out.cpu(), ref.corr_lookup(pyr, c, 1).cpu())

    def test_backward_against_reference(self, cb, gen):
        dtype = torch.float64 if cb.float64 else torch.float32
        B, D, H1, W1, H2, W2 = shapes(cb)[1]
        _, _, pyr = _pyr(gen, B, D, H1, W1, H2, W2, 3, dtype, cb.device)
        c = coords_for(gen, B, H1, W1, H2, W2, spread=1.0, dtype=dtype, device=cb.device, avoid_int=True)
        g = randn(gen, B, 3 * 9, H1, W1, dtype=dtype, device=cb.device)

        def grads(fn):
            p = [t.detach().requires_grad_() for t in pyr]
            cc = c.detach().requires_grad_()
            torch.autograd.backward(fn(p, cc), g)
            # a level with no pixels (W2 >> l == 0) gets no gradient from the reference
            return [t.grad if t.grad is not None else torch.zeros_like(t) for t in p] + [cc.grad]

        got = grads(lambda p, cc: call(cb, "corr_lookup", p, cc, 1))
        exp = grads(lambda p, cc: ref.corr_lookup(p, cc, 1))
        for i, (a, e) in enumerate(zip(got, exp)):
            assert_close(a.cpu(), e.cpu(), dtype=dtype, msg=f"grad {i}")

    def test_gradcheck(self, cb, gen):
        float_case(cb, torch.float64)
        _, _, pyr = _pyr(gen, 1, 2, 2, 3, 5, 6, 3, torch.float64, "cpu")
        pyr = [p.requires_grad_() for p in pyr]
        c = coords_for(gen, 1, 2, 3, 5, 6, spread=1.0, dtype=torch.float64, avoid_int=True).requires_grad_()
        for layout in ("raft", "yx"):
            assert torch.autograd.gradcheck(lambda cc, *p: call(cb, "corr_lookup", list(p), cc, 1, layout), (c, *pyr))

    def test_opcheck(self, gen):
        skip_unavailable(BackendCase("cpu", "cpu"))
        _, _, pyr = _pyr(gen, 1, 3, 2, 3, 5, 4, 2, torch.float32, "cpu")
        c = coords_for(gen, 1, 2, 3, 5, 4)
        torch.library.opcheck(torch.ops.hmore.corr_lookup.default, (pyr, c, 1, "raft", False))
        g = randn(gen, 1, 18, 2, 3)
        torch.library.opcheck(torch.ops.hmore._corr_lookup_backward.default, (g, pyr, c, 1, "yx", True))

    def test_dynamo(self, gen):
        skip_unavailable(BackendCase("cpu", "cpu"))
        torch._dynamo.reset()
        f1, f2, pyr = _pyr(gen, 1, 4, 3, 4, 6, 5, 3, torch.float32, "cpu")
        c = coords_for(gen, 1, 3, 4, 6, 5)
        fn = torch.compile(lambda a, b, cc: hk.corr_lookup(hk.corr_pyramid(a, b, 3), cc, 2), fullgraph=True)
        assert_close(fn(f1, f2, c), ref.corr_lookup(pyr, c, 2))

    def test_exception(self):
        pyr = [torch.zeros(6, 1, 4, 4), torch.zeros(6, 1, 2, 2)]
        c = torch.zeros(1, 2, 2, 3)
        with pytest.raises(ValueError, match="radius: expected an int >= 0, got -1"):
            hk.corr_lookup(pyr, c, -1)
        with pytest.raises(ValueError, match="layout"):
            hk.corr_lookup(pyr, c, 1, "xy")
        with pytest.raises(TypeError, match="pyramid: expected a non-empty list"):
            hk.corr_lookup([], c)
        with pytest.raises(TypeError, match="pyramid: expected a non-empty list"):
            hk.corr_lookup(pyr[0], c)
        with pytest.raises(ValueError, match=r"pyramid\[1\]: expected shape \[6, 1, 2, 2\]"):
            hk.corr_lookup([pyr[0], torch.zeros(6, 1, 3, 2)], c)
        with pytest.raises(ValueError, match=r"pyramid\[1\]: expected shape \[6, 1, 2, 2\]"):
            hk.corr_lookup([pyr[0], torch.zeros(5, 1, 2, 2)], c)
        with pytest.raises(ValueError, match=r"pyramid\[0\]: expected a 4-D"):
            hk.corr_lookup([torch.zeros(6, 4, 4)], c)
        with pytest.raises(ValueError, match="coords: expected shape"):
            hk.corr_lookup(pyr, torch.zeros(1, 2, 3, 3))
        with pytest.raises(ValueError, match="coords: expected shape"):
            hk.corr_lookup(pyr, torch.zeros(1, 3, 2, 3))
        with pytest.raises(TypeError, match="coords: expected a floating-point"):
            hk.corr_lookup(pyr, torch.zeros(1, 2, 2, 3, dtype=torch.long))
        with pytest.raises(TypeError, match=r"pyramid\[1\]: expected dtype"):
            hk.corr_lookup([pyr[0], pyr[1].double()], c)

    def test_exception_cpu(self):
        """The dispatcher op checks too (torch.ops.hmore is public)."""
        skip_unavailable(BackendCase("cpu", "cpu"))
        pyr = [torch.zeros(6, 1, 4, 4), torch.zeros(6, 1, 2, 2)]
        c = torch.zeros(1, 2, 2, 3)
        with pytest.raises(ValueError, match="radius"):
            torch.ops.hmore.corr_lookup(pyr, c, -2, "raft", False)
        with pytest.raises(ValueError, match="layout"):
            torch.ops.hmore.corr_lookup(pyr, c, 1, "zz", False)
        with pytest.raises(ValueError, match=r"pyramid\[1\]"):
            torch.ops.hmore.corr_lookup([pyr[0], torch.zeros(6, 1, 1, 2)], c, 1, "raft", False)
        with pytest.raises(ValueError, match="coords"):
            torch.ops.hmore.corr_lookup(pyr, torch.zeros(2, 2, 2, 3), 1, "raft", False)
        with pytest.raises(ValueError, match="grad"):
            torch.ops.hmore._corr_lookup_backward(torch.zeros(1, 5, 2, 3), pyr, c, 1, "raft", False)


# ================================================================================================
class TestCorrLookupOtf:
    @pytest.mark.parametrize("dtype", FLOATS)
    def test_against_allpairs(self, cb, gen, dtype):
        float_case(cb, dtype)
        r = 1 if cb.interpreted else 2
        for B, D, H1, W1, H2, W2 in shapes(cb):
            f1 = randn(gen, B, D, H1, W1, dtype=dtype, device=cb.device)
            f2 = randn(gen, B, D, H2, W2, dtype=dtype, device=cb.device)
            c = coords_for(gen, B, H1, W1, H2, W2, spread=2.0, dtype=dtype, device=cb.device)
            c[:, :, -1, -1] = torch.tensor([-4e7, 2.5e9], dtype=dtype)
            for layout, scale in (("raft", None), ("yx", 0.5)):
                out = call(cb, "corr_lookup_otf", f1, f2, c, r, 4, scale, layout)
                exp = ref.corr_lookup(ref.corr_pyramid(f1, f2, 4, scale), c, r, layout)
                assert out.dtype == dtype
                assert_close(out.cpu(), exp.cpu(), dtype=dtype, atol=tol(dtype, OTF_FACTOR)[0],
                             rtol=tol(dtype, OTF_FACTOR)[1], msg=f"{(B, D, H1, W1, H2, W2)} {layout}")

    def test_backward_against_allpairs(self, cb, gen):
        dtype = torch.float64 if cb.float64 else torch.float32
        B, D, H1, W1, H2, W2 = shapes(cb)[1]
        f1 = randn(gen, B, D, H1, W1, dtype=dtype, device=cb.device)
        f2 = randn(gen, B, D, H2, W2, dtype=dtype, device=cb.device)
        c = coords_for(gen, B, H1, W1, H2, W2, spread=1.0, dtype=dtype, device=cb.device, avoid_int=True)
        g = randn(gen, B, 4 * 9, H1, W1, dtype=dtype, device=cb.device)

        def grads(fn):
            a, b, cc = (t.detach().requires_grad_() for t in (f1, f2, c))
            torch.autograd.backward(fn(a, b, cc), g)
            return a.grad, b.grad, cc.grad

        got = grads(lambda a, b, cc: call(cb, "corr_lookup_otf", a, b, cc, 1, 4))
        exp = grads(lambda a, b, cc: ref.corr_lookup(ref.corr_pyramid(a, b, 4), cc, 1))
        for name, a, e in zip(("fmap1", "fmap2", "coords"), got, exp):
            assert_close(a.cpu(), e.cpu(), dtype=dtype, atol=tol(dtype, 50)[0], rtol=tol(dtype, 50)[1], msg=f"grad {name}")

    def test_deterministic(self, cb, gen):
        """deterministic=True gives bit-identical fmap2 gradients run to run (on a GPU its scatter sorts
        the contributions instead of adding them with float atomics), and both paths -- sorted and
        atomic -- give the reference's gradient. On CPU and through the interpreter both flags run the
        same serial code, so there the repeat is trivially equal and what can fail is the comparison of
        each path with the reference; the atomic-vs-sorted comparison bites on a GPU."""
        f1, f2 = randn(gen, 1, 8, 6, 7, device=cb.device), randn(gen, 1, 8, 6, 7, device=cb.device)
        c = coords_for(gen, 1, 6, 7, 6, 7, device=cb.device)
        g = randn(gen, 1, 2 * 9, 6, 7, device=cb.device)
        res = {True: [], False: []}
        for det in (True, True, False):
            a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
            torch.autograd.backward(call(cb, "corr_lookup_otf", a, b, c, 1, 2, deterministic=det), g)
            res[det].append(b.grad)
        assert torch.equal(res[True][0], res[True][1])
        a, b = f1.cpu().double().requires_grad_(), f2.cpu().double().requires_grad_()
        torch.autograd.backward(ref.corr_lookup_otf(a, b, c.cpu().double(), 1, 2), g.cpu().double())
        for det in (True, False):
            assert_close(res[det][0].cpu().double(), b.grad, atol=1e-4, rtol=1e-4, msg=f"deterministic={det}")

    def test_empty(self, cb, gen):
        f = randn(gen, 0, 4, 3, 5, device=cb.device)
        out = call(cb, "corr_lookup_otf", f, f, torch.zeros(0, 2, 3, 5, device=cb.device), 1, 2)
        assert out.shape == (0, 18, 3, 5)
        # fmap2 3x2: level 1 is 1x1, level 2 is 0x0 -> zeros there
        f1, f2 = randn(gen, 1, 4, 2, 3, device=cb.device), randn(gen, 1, 4, 3, 2, device=cb.device)
        c = coords_for(gen, 1, 2, 3, 3, 2, device=cb.device)
        out = call(cb, "corr_lookup_otf", f1, f2, c, 1, 3)
        assert (out[:, 18:] == 0).all()
        assert_close(out.cpu(), ref.corr_lookup_otf(f1, f2, c, 1, 3).cpu(), atol=1e-5, rtol=1e-4)

    def test_gradcheck(self, cb, gen):
        float_case(cb, torch.float64)
        f1 = randn(gen, 1, 3, 3, 4, dtype=torch.float64).requires_grad_()
        f2 = randn(gen, 1, 3, 5, 7, dtype=torch.float64).requires_grad_()
        c = coords_for(gen, 1, 3, 4, 5, 7, spread=1.0, dtype=torch.float64, avoid_int=True).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b, cc: call(cb, "corr_lookup_otf", a, b, cc, 1, 3), (f1, f2, c))
        assert torch.autograd.gradcheck(lambda a, b, cc: call(cb, "corr_lookup_otf", a, b, cc, 2, 2, 0.3, "yx"), (f1, f2, c),
                                        fast_mode=True)

    def test_opcheck(self, gen):
        skip_unavailable(BackendCase("cpu", "cpu"))
        f1, f2 = randn(gen, 1, 3, 2, 3), randn(gen, 1, 3, 5, 4)
        c = coords_for(gen, 1, 2, 3, 5, 4)
        torch.library.opcheck(torch.ops.hmore.corr_lookup_otf.default, (f1, f2, c, 1, 2, None, "raft", False))
        g = randn(gen, 1, 18, 2, 3)
        torch.library.opcheck(torch.ops.hmore._corr_lookup_otf_backward.default, (g, f1, f2, c, 1, 2, 0.5, "yx", True))

    def test_dynamo(self, gen):
        skip_unavailable(BackendCase("cpu", "cpu"))
        torch._dynamo.reset()
        f1, f2 = randn(gen, 1, 4, 3, 4), randn(gen, 1, 4, 6, 5)
        c = coords_for(gen, 1, 3, 4, 6, 5)
        fn = torch.compile(lambda a, b, cc: hk.corr_lookup_otf(a, b, cc, 2, 3), fullgraph=True)
        assert_close(fn(f1, f2, c), ref.corr_lookup_otf(f1, f2, c, 2, 3), atol=1e-5, rtol=1e-4)

    def test_exception(self):
        f = torch.zeros(1, 4, 3, 3)
        c = torch.zeros(1, 2, 3, 3)
        with pytest.raises(ValueError, match="coords: expected shape"):
            hk.corr_lookup_otf(f, f, torch.zeros(1, 2, 3, 4))
        with pytest.raises(TypeError, match="coords: expected a floating-point"):
            hk.corr_lookup_otf(f, f, c.int())
        with pytest.raises(ValueError, match="radius"):
            hk.corr_lookup_otf(f, f, c, -1)
        with pytest.raises(ValueError, match="num_levels"):
            hk.corr_lookup_otf(f, f, c, 1, 0)
        with pytest.raises(ValueError, match="fmap2: expected batch size"):
            hk.corr_lookup_otf(f, torch.zeros(2, 4, 3, 3), c)
        with pytest.raises(ValueError, match="layout"):
            hk.corr_lookup_otf(f, f, c, layout="dxdy")
        if HAS_GPU:
            with pytest.raises(ValueError, match="on the same device|expected a tensor on"):
                hk.corr_lookup_otf(f, f.cuda(), c)

    def test_exception_cpu(self):
        skip_unavailable(BackendCase("cpu", "cpu"))
        f = torch.zeros(1, 4, 3, 3)
        c = torch.zeros(1, 2, 3, 3)
        with pytest.raises(ValueError, match="coords"):
            torch.ops.hmore.corr_lookup_otf(f, f, torch.zeros(1, 2, 2, 3), 1, 2, None, "raft", False)
        with pytest.raises(ValueError, match="num_levels"):
            torch.ops.hmore.corr_lookup_otf(f, f, c, 1, 0, None, "raft", False)
        with pytest.raises(TypeError, match="fmap1"):
            torch.ops.hmore.corr_lookup_otf(f.half(), f.half(), c, 1, 1, None, "raft", False)


# ================================================================================================
def local_corr_loop(f1, f2, d, stride, dil, scale):
    """Brute force: one dot product per output pixel and tap."""
    B, D, H, W = f1.shape
    Ho, Wo = math.ceil(H / stride), math.ceil(W / stride)
    out = torch.zeros(B, (2 * d + 1) ** 2, Ho, Wo, dtype=torch.float64)
    f1, f2 = f1.double(), f2.double()
    for i in range(Ho):
        for j in range(Wo):
            y, x = i * stride, j * stride
            for dy in range(-d, d + 1):
                for dx in range(-d, d + 1):
                    yy, xx = y + dy * dil, x + dx * dil
                    if 0 <= yy < H and 0 <= xx < W:
                        out[:, (dy + d) * (2 * d + 1) + dx + d, i, j] = (f1[:, :, y, x] * f2[:, :, yy, xx]).sum(1) * scale
    return out


class TestLocalCorr:
    @pytest.mark.parametrize("dtype", FLOATS)
    def test_against_loop(self, cb, gen, dtype):
        float_case(cb, dtype)
        cases = [(1, 3, 5, 6, 1, 1, 1)] if cb.interpreted else [
            (2, 8, 9, 11, 3, 1, 1), (1, 5, 7, 10, 2, 2, 1), (1, 4, 9, 8, 2, 3, 2), (1, 3, 1, 6, 1, 1, 3), (1, 6, 4, 4, 0, 1, 1)]
        for B, D, H, W, d, s, dil in cases:
            f1 = randn(gen, B, D, H, W, dtype=dtype, device=cb.device)
            f2 = noncontig(randn(gen, B, D, H, W, dtype=dtype, device=cb.device))
            for scale in (None, 1.0):
                out = call(cb, "local_corr", f1, f2, d, s, dil, scale)
                sc = 1 / math.sqrt(D) if scale is None else scale
                exp = local_corr_loop(f1.cpu(), f2.cpu(), d, s, dil, sc).to(dtype)
                assert_close(out.cpu(), exp, dtype=dtype, msg=f"{(B, D, H, W, d, s, dil, scale)}")
                assert_close(out.cpu(), ref.local_corr(f1.cpu(), f2.cpu(), d, s, dil, scale), dtype=dtype)

    def test_empty(self, cb, gen):
        f = randn(gen, 0, 3, 4, 5, device=cb.device)
        assert call(cb, "local_corr", f, f, 2, 2).shape == (0, 25, 2, 3)

    def test_backward_against_reference(self, cb, gen):
        dtype = torch.float64 if cb.float64 else torch.float32
        f1, f2 = randn(gen, 1, 5, 7, 9, dtype=dtype, device=cb.device), randn(gen, 1, 5, 7, 9, dtype=dtype, device=cb.device)
        for d, s, dil in ((2, 1, 1), (1, 2, 2), (3, 3, 1)):
            g = randn(gen, *ref.local_corr(f1, f2, d, s, dil).shape, dtype=dtype, device=cb.device)
            res = []
            for fn in (lambda a, b: call(cb, "local_corr", a, b, d, s, dil), lambda a, b: ref.local_corr(a, b, d, s, dil)):
                a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
                torch.autograd.backward(fn(a, b), g)
                res.append((a.grad, b.grad))
            for k in range(2):
                assert_close(res[0][k].cpu(), res[1][k].cpu(), dtype=dtype, msg=f"grad {k} {(d, s, dil)}")

    def test_gradcheck(self, cb, gen):
        float_case(cb, torch.float64)
        f1 = randn(gen, 1, 3, 5, 6, dtype=torch.float64).requires_grad_()
        f2 = randn(gen, 1, 3, 5, 6, dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: call(cb, "local_corr", a, b, 2, 2, 1), (f1, f2), fast_mode=True)
        assert torch.autograd.gradcheck(lambda a, b: call(cb, "local_corr", a, b, 1, 1, 2, 1.0), (f1, f2), fast_mode=True)

    def test_opcheck(self, gen):
        skip_unavailable(BackendCase("cpu", "cpu"))
        f1, f2 = randn(gen, 1, 3, 5, 6), randn(gen, 1, 3, 5, 6)
        torch.library.opcheck(torch.ops.hmore.local_corr.default, (f1, f2, 2, 2, 1, None))
        torch.library.opcheck(torch.ops.hmore._local_corr_backward.default, (randn(gen, 1, 9, 5, 6), f1, f2, 1, 1, 2, 1.0))

    def test_dynamo(self, gen):
        skip_unavailable(BackendCase("cpu", "cpu"))
        torch._dynamo.reset()
        f1, f2 = randn(gen, 1, 3, 5, 6), randn(gen, 1, 3, 5, 6)
        fn = torch.compile(lambda a, b: hk.local_corr(a, b, 2, stride=2), fullgraph=True)
        assert_close(fn(f1, f2), ref.local_corr(f1, f2, 2, 2))

    def test_exception(self):
        f = torch.zeros(1, 4, 3, 3)
        with pytest.raises(ValueError, match="max_displacement: expected an int >= 0, got -1"):
            hk.local_corr(f, f, -1)
        with pytest.raises(ValueError, match="stride: expected an int >= 1, got 0"):
            hk.local_corr(f, f, 1, 0)
        with pytest.raises(ValueError, match="dilation: expected an int >= 1, got 0"):
            hk.local_corr(f, f, 1, 1, 0)
        with pytest.raises(ValueError, match="fmap2: expected spatial size"):
            hk.local_corr(f, torch.zeros(1, 4, 3, 4), 1)
        with pytest.raises(ValueError, match="fmap2: expected D"):
            hk.local_corr(f, torch.zeros(1, 3, 3, 3), 1)
        skip_unavailable(BackendCase("cpu", "cpu"))
        with pytest.raises(ValueError, match="stride"):
            torch.ops.hmore.local_corr(f, f, 1, 0, 1, None)


# ================================================================================================
class _TinyRaft(torch.nn.Module):
    """A RAFT-small-shaped step: features from two conv layers, a correlation block, a conv update."""

    def __init__(self, D=32, levels=4, radius=3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.enc1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.enc2 = torch.nn.Conv2d(16, D, 3, padding=1)
        self.upd = torch.nn.Conv2d(levels * (2 * radius + 1) ** 2, 2, 3, padding=1)
        for p in self.parameters():
            with torch.no_grad():
                fan_in = p[0].numel() if p.dim() > 1 else 10
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
        self.levels, self.radius = levels, radius

    def forward(self, img1, img2, block, iters=2):
        f1 = self.enc2(F.relu(self.enc1(img1)))
        f2 = self.enc2(F.relu(self.enc1(img2)))
        corr_fn = block(f1, f2)
        B, _, H, W = f1.shape
        ys, xs = torch.meshgrid(torch.arange(H, dtype=f1.dtype), torch.arange(W, dtype=f1.dtype), indexing="ij")
        coords = torch.stack([xs, ys])[None].repeat(B, 1, 1, 1).to(f1.device)
        outs = []
        for _ in range(iters):
            corr = corr_fn(coords)
            coords = coords + 2.0 * torch.tanh(self.upd(corr))
            outs.append(coords)
        return torch.stack(outs)


class TestCorrBlock:
    @pytest.mark.parametrize("mode", ["allpairs", "otf"])
    def test_raft_step(self, cb, gen, mode):
        """Same flow and parameter gradients as RAFT's CorrBlock algorithm (fmaps [2, 32, H, W], two
        coordinate updates). Sizes keep every level >= 2 pixels, where RAFT's sampler is finite."""
        H, W, L = (8, 8, 3) if cb.interpreted else (16, 24, 4)
        net = _TinyRaft(levels=L).to(cb.device)
        img1, img2 = randn(gen, 2, 3, H, W, device=cb.device), randn(gen, 2, 3, H, W, device=cb.device)

        def run(block):
            net.zero_grad()
            out = net(img1, img2, block)
            out.square().mean().backward()
            return out.detach().cpu(), [p.grad.detach().cpu().clone() for p in net.parameters()]

        got, g_got = run(lambda a, b: hk.CorrBlock(a, b, L, 3, mode=mode, backend=cb.name))
        exp, g_exp = run(lambda a, b: ref.RaftCorrBlock(a, b, L, 3))
        assert torch.isfinite(exp).all()
        assert_close(got, exp, atol=1e-4, rtol=1e-4, msg="coords after 2 iterations")
        for i, (a, e) in enumerate(zip(g_got, g_exp)):
            assert_close(a, e, atol=1e-4, rtol=1e-3, msg=f"grad of parameter {i}")

    def test_raft_interface(self, gen):
        f1, f2 = randn(gen, 1, 8, 16, 16), randn(gen, 1, 8, 16, 16)
        blk = hk.CorrBlock(f1, f2, num_levels=4, radius=2)
        c = coords_for(gen, 1, 16, 16, 16, 16)
        out = blk(c)
        assert out.shape == (1, 4 * 25, 16, 16) and out.dtype == torch.float32
        assert_close(out, ref.RaftCorrBlock(f1, f2, 4, 2)(c), atol=2e-5, rtol=1e-4)

    def test_mode_auto(self, gen):
        f1, f2 = randn(gen, 1, 4, 8, 8), randn(gen, 1, 4, 8, 8)
        need = hk.corr.pyramid_bytes(f1, f2, 4)
        assert need == 64 * (64 + 16 + 4 + 1) * 4
        assert hk.CorrBlock(f1, f2, memory_budget=need).mode == "allpairs"
        assert hk.CorrBlock(f1, f2, memory_budget=need - 1).mode == "otf"
        assert hk.CorrBlock(f1, f2).mode == "allpairs"  # 21 KB: fits any machine
        c = coords_for(gen, 1, 8, 8, 8, 8)
        a = hk.CorrBlock(f1, f2, memory_budget=0, radius=2)(c)
        b = hk.CorrBlock(f1, f2, mode="allpairs", radius=2)(c)
        assert_close(a, b, atol=1e-5, rtol=1e-4)

    def test_exception(self):
        f = torch.zeros(1, 4, 3, 3)
        with pytest.raises(ValueError, match="mode"):
            hk.CorrBlock(f, f, mode="fast")
        with pytest.raises(ValueError, match="radius"):
            hk.CorrBlock(f, f, radius=-1)
        with pytest.raises(ValueError, match="num_levels"):
            hk.CorrBlock(f, f, num_levels=0)
        with pytest.raises(ValueError, match="memory_budget"):
            hk.CorrBlock(f, f, memory_budget=-5)
        with pytest.raises(BackendUnavailable):
            hk.CorrBlock(f, f, mode="allpairs", backend="cuda" if not HAS_GPU else "cupy")
