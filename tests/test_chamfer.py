"""Tests of the Chamfer family (docs/ops.md §3, §5): nearest_neighbors, chamfer_distance, patch_centroids,
patch_centroid_chamfer, boundary_chamfer.

Kornia style: every op has test_smoke, test_cardinality, test_against_reference[backend],
test_against_oracle, test_gradcheck, test_opcheck, test_dynamo, test_exception. The oracles are libraries
no one here wrote -- SciPy's cKDTree (nearest neighbours, Chamfer, tie resolution through
query_ball_point) and scipy.ndimage.distance_transform_edt (boundary_chamfer) -- plus all-pairs brute
force and hand-written loops of the docs/ops.md §5 formulas (patch ops).

Tile-boundary point counts: the CPU kernel uses tiles of 64 x points and 1024 y points, the Triton kernel
64 x 64; counts 63/64/65, 127/128/129 and 1023/1024/1025 straddle them. Triton runs through its
interpreter without a GPU: small clouds (N <= 70) and maps (<= 16 x 40) there.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hmore_kernels as hk
from hmore_kernels.reference import chamfer as ref
from common import assert_close, blob_mask, rand, tol
from conftest import BACKEND_PARAMS, HAS_GPU, BackendCase, skip_unavailable

scipy_spatial = pytest.importorskip("scipy.spatial")
ndimage = pytest.importorskip("scipy.ndimage")

REDUCTIONS = ("mean", "sum", "none")


@pytest.fixture(params=BACKEND_PARAMS)
def bk(request) -> BackendCase:
    case = request.param
    skip_unavailable(case)
    return case


def call(case: BackendCase, op: str, *args, **kwargs):
    return getattr(hk, op)(*args, backend=case.name, **kwargs)


def f64_ok(case):
    return case.float64


def dtypes_of(case):
    return (torch.float32, torch.float64) if case.float64 else (torch.float32,)


def grad_tol(dtype):
    return tol(dtype, 10.0)


# ---- helpers -------------------------------------------------------------------------------------
def ragged_cloud(gen, B, N, D, *, dtype=torch.float32, device="cpu", integer=None, dup=False):
    """[B, N, D] random points (uniform in [0, 1), or integers in [0, integer]) with lengths [B] that
    include 0, 1 and N; ``dup`` copies some points onto others (exact ties)."""
    if integer is not None:
        x = torch.randint(0, integer + 1, (B, N, D), generator=gen).to(torch.float64)
    else:
        x = torch.rand(B, N, D, generator=gen, dtype=torch.float64)
    if dup and N > 3:
        k = max(1, N // 4)
        src = torch.randint(0, N, (k,), generator=gen)
        dst = torch.randint(0, N, (k,), generator=gen)
        x[:, dst] = x[:, src]
    choices = [N, 0, 1, max(0, N - 1), N // 2]
    lengths = torch.tensor([choices[(b * 7 + N) % len(choices)] if b else N for b in range(B)], dtype=torch.int64)
    return x.to(dtype=dtype, device=device), lengths.to(device)


def kdtree_nn(x, y, xl, yl):
    """SciPy cKDTree oracle: (dist [B, N] squared float64, idx [B, N]); ties resolved to the lowest index
    among all points of y at the nearest distance (found with query_ball_point); 0 / -1 as padding."""
    B, N, _ = x.shape
    dist = np.zeros((B, N))
    idx = np.full((B, N), -1, dtype=np.int64)
    xs, ys = x.detach().cpu().double().numpy(), y.detach().cpu().double().numpy()
    for b in range(B):
        nx, ny = int(xl[b]), int(yl[b])
        if nx == 0 or ny == 0:
            continue
        tree = scipy_spatial.cKDTree(ys[b, :ny])
        d, _ = tree.query(xs[b, :nx], k=1)
        for i in range(nx):
            cand = tree.query_ball_point(xs[b, i], r=d[i] * (1 + 1e-12) + 1e-12)
            # among candidates keep those exactly at the minimum (the ball may include slightly farther ones)
            dd = ((ys[b, cand] - xs[b, i]) ** 2).sum(1)
            best = dd.min()
            idx[b, i] = min(c for c, v in zip(cand, dd) if v == best)
            dist[b, i] = best
    return dist, idx


def kdtree_chamfer(x, y, xl, yl, xw, yw, squared, reduction, bidirectional):
    """The docs/ops.md §5 chamfer_distance built on cKDTree nearest distances (float64)."""
    B = x.shape[0]

    def directed(src, dst, sl, dl, w):
        d2, idx = kdtree_nn(src, dst, sl, dl)
        d = d2 if squared else np.sqrt(d2)
        ww = np.ones_like(d) if w is None else w.detach().cpu().double().numpy().copy()
        ww[idx < 0] = 0.0
        num = (ww * d).sum(1)
        if reduction == "sum":
            return num
        den = ww.sum(1)
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)

    per = directed(x, y, xl, yl, xw)
    if bidirectional:
        per = per + directed(y, x, yl, xl, yw)
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else (per.mean() if B else 0.0)


def cloud_sizes(case):
    if case.interpreted:
        return [(2, 63, 65, 2), (2, 64, 1, 2), (1, 65, 64, 3)]
    return [(3, 63, 65, 2), (2, 64, 129, 2), (2, 128, 127, 3), (2, 129, 1025, 2), (2, 1024, 1023, 2), (2, 70, 90, 1),
            (2, 33, 40, 5)]


# ================================================================================================
class TestNearestNeighbors:
    def test_smoke(self, bk):
        x = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [10.0, 10.0]]])
        y = torch.tensor([[[1.0, 0.0], [3.0, 1.0], [-1.0, 0.0], [3.0, 1.0]]])
        d, i = call(bk, "nearest_neighbors", x, y)
        # x0 ties between y0 and y2 (distance 1): the lowest index wins; x1: y1 (duplicate y3 loses)
        assert i.tolist() == [[0, 1, 1]]
        assert_close(d, torch.tensor([[1.0, 1.0, 49.0 + 81.0]]))

    @pytest.mark.parametrize("shape", [(0, 3, 4, 2), (2, 0, 4, 2), (2, 3, 0, 2), (1, 1, 1, 1), (2, 5, 7, 3)])
    def test_cardinality(self, bk, gen, shape):
        B, N, M, D = shape
        x, y = rand(gen, B, N, D), rand(gen, B, M, D)
        d, i = call(bk, "nearest_neighbors", x, y)
        assert d.shape == (B, N) and i.shape == (B, N) and i.dtype == torch.int64 and d.dtype == torch.float32
        if M == 0:
            assert (i == -1).all() and (d == 0).all()

    @pytest.mark.parametrize("kind", ["uniform", "integer_ties", "duplicates"])
    def test_against_reference(self, bk, gen, kind):
        for dtype in dtypes_of(bk):
            for B, N, M, D in cloud_sizes(bk):
                integer = 6 if kind == "integer_ties" else (4096 if kind == "duplicates" else None)
                x, xl = ragged_cloud(gen, B, N, D, dtype=dtype, integer=integer, dup=kind == "duplicates")
                y, yl = ragged_cloud(gen, B, M, D, dtype=dtype, integer=integer, dup=kind == "duplicates")
                d, i = call(bk, "nearest_neighbors", x, y, xl, yl)
                d0, i0 = ref.nearest_neighbors(x, y, xl, yl)
                msg = f"nearest_neighbors {bk} {kind} {dtype} {(B, N, M, D)}"
                assert_close(i, i0, msg=msg)
                assert_close(d, d0, msg=msg)

    @pytest.mark.parametrize("kind", ["uniform", "pixels4096", "duplicates"])
    def test_against_oracle(self, gen, kind):
        """The reference and cpu backends against SciPy's cKDTree, ties to the lowest index included."""
        cases = [BackendCase("reference", "cpu")] + [p.values[0] for p in BACKEND_PARAMS if p.values[0].name == "cpu"]
        for case in cases:
            if case.name == "cpu":
                skip_unavailable(case)
            for B, N, M, D in [(3, 65, 130, 2), (2, 129, 1025, 2), (2, 40, 50, 3)]:
                integer = {"uniform": None, "pixels4096": 4096, "duplicates": 8}[kind]
                x, xl = ragged_cloud(gen, B, N, D, integer=integer, dup=kind == "duplicates")
                y, yl = ragged_cloud(gen, B, M, D, integer=integer, dup=kind == "duplicates")
                d, i = call(case, "nearest_neighbors", x, y, xl, yl)
                d0, i0 = kdtree_nn(x, y, xl, yl)
                msg = f"nearest_neighbors vs cKDTree {case} {kind} {(B, N, M, D)}"
                assert_close(i, torch.from_numpy(i0), msg=msg)
                assert_close(d.double(), torch.from_numpy(d0), rtol=1e-6, atol=1e-6, msg=msg)

    def test_pixel_ties_far_from_origin(self, bk):
        """Exact ties at pixel coordinates ~4095: |x|^2 + |y|^2 - 2xy in float32 would turn these distances
        into noise; the direct sum keeps them exact, so the lowest index must win."""
        x = torch.tensor([[[4095.0, 4095.0], [4000.0, 17.0]]])
        y = torch.tensor([[[4094.0, 4094.0], [4094.0, 4095.0], [4095.0, 4094.0], [4001.0, 17.0], [3999.0, 17.0]]])
        d, i = call(bk, "nearest_neighbors", x, y)
        assert i.tolist() == [[1, 3]]
        assert d.tolist() == [[1.0, 1.0]]

    def test_exception(self, bk):
        dev = bk.device
        x, y = torch.rand(2, 5, 2, device=dev), torch.rand(2, 6, 2, device=dev)
        with pytest.raises(ValueError, match=r"\bx\b.*3-D"):
            call(bk, "nearest_neighbors", x[0], y)
        with pytest.raises(ValueError, match=r"\by\b.*D = 2"):
            call(bk, "nearest_neighbors", x, torch.rand(2, 6, 3, device=dev))
        with pytest.raises(ValueError, match=r"\by\b.*batch size 2"):
            call(bk, "nearest_neighbors", x, torch.rand(3, 6, 2, device=dev))
        with pytest.raises(TypeError, match=r"\bx\b.*floating"):
            call(bk, "nearest_neighbors", x.long(), y.long())
        with pytest.raises(TypeError, match=r"\by\b.*dtype"):
            call(bk, "nearest_neighbors", x, y.double())
        with pytest.raises(ValueError, match=r"x_lengths.*shape \[2\]"):
            call(bk, "nearest_neighbors", x, y, torch.tensor([1, 2, 3], device=dev))
        with pytest.raises(TypeError, match=r"x_lengths.*int64"):
            call(bk, "nearest_neighbors", x, y, torch.tensor([1, 2], dtype=torch.int32, device=dev))
        if dev == "cpu":  # range checks need the values: done on CPU only (no host sync on a GPU)
            with pytest.raises(ValueError, match=r"y_lengths.*\[0, 6\]"):
                call(bk, "nearest_neighbors", x, y, None, torch.tensor([7, 2]))
            with pytest.raises(ValueError, match=r"x_lengths.*\[0, 5\]"):
                call(bk, "nearest_neighbors", x, y, torch.tensor([-1, 2]))
        with pytest.raises(ValueError, match=r"\by\b.*meta"):
            call(bk, "nearest_neighbors", x, y.to("meta"))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        x, y = rand(gen, 2, 20, 2), rand(gen, 2, 17, 2)
        yl = torch.tensor([17, 4])
        f = torch.compile(lambda a, b, l: hk.nearest_neighbors(a, b, None, l, backend=case.name), fullgraph=True,
                          backend=compile_backend)
        d, i = f(x, y, yl)
        d0, i0 = ref.nearest_neighbors(x, y, None, yl)
        assert_close(i, i0, msg=f"compiled nearest_neighbors {case}")
        assert_close(d, d0, msg=f"compiled nearest_neighbors {case}")

    def test_dispatcher_checks_cpu(self):
        """torch.ops.hmore.* is public: the C++ kernel validates too."""
        skip_unavailable(BackendCase("cpu", "cpu"))
        x, y = torch.rand(2, 5, 2), torch.rand(2, 6, 2)
        with pytest.raises(ValueError, match="y_lengths"):
            torch.ops.hmore.nearest_neighbors(x, y, None, torch.tensor([7, 2]))
        with pytest.raises(ValueError, match=r"\by\b.*D = 2"):
            torch.ops.hmore.nearest_neighbors(x, torch.rand(2, 6, 3))
        with pytest.raises(ValueError, match="x_weights"):
            torch.ops.hmore.chamfer_distance(x, y, None, None, -torch.ones(2, 5), None, True, "mean", True, False)
        with pytest.raises(ValueError, match="reduction"):
            torch.ops.hmore.chamfer_distance(x, y, None, None, None, None, True, "avg", True, False)


# ================================================================================================
class TestChamferDistance:
    def test_smoke(self, bk):
        x = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])
        y = torch.tensor([[[0.0, 1.0]]])
        # x -> y: d = 1, 5 -> mean 3; y -> x: 1 -> total 4; plain L2: (1 + sqrt 5)/2 + 1
        assert_close(call(bk, "chamfer_distance", x, y), torch.tensor(4.0))
        assert_close(call(bk, "chamfer_distance", x, y, squared=False), torch.tensor((1 + math.sqrt(5)) / 2 + 1))
        assert_close(call(bk, "chamfer_distance", x, y, reduction="sum"), torch.tensor(7.0))
        assert_close(call(bk, "chamfer_distance", x, y, bidirectional=False), torch.tensor(3.0))
        w = torch.tensor([[3.0, 1.0]])
        assert_close(call(bk, "chamfer_distance", x, y, x_weights=w, bidirectional=False), torch.tensor(2.0))

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_cardinality(self, bk, gen, reduction):
        for B, N, M in [(3, 4, 5), (0, 4, 5), (2, 0, 3), (2, 3, 0)]:
            x, y = rand(gen, B, N, 2), rand(gen, B, M, 2)
            v = call(bk, "chamfer_distance", x, y, reduction=reduction)
            assert v.shape == ((B,) if reduction == "none" else ()) and v.dtype == torch.float32
            if N == 0 or M == 0 or B == 0:
                assert (v == 0).all(), "an empty cloud contributes 0"

    @pytest.mark.parametrize("squared", [True, False])
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_against_reference(self, bk, gen, squared, reduction):
        sizes = cloud_sizes(bk)[:2] if bk.interpreted else cloud_sizes(bk)[:4]
        for dtype in dtypes_of(bk):
            for k, (B, N, M, D) in enumerate(sizes):
                x, xl = ragged_cloud(gen, B, N, D, dtype=dtype, integer=8 if k % 2 else None, dup=k % 2 == 1)
                y, yl = ragged_cloud(gen, B, M, D, dtype=dtype, integer=8 if k % 2 else None, dup=k % 2 == 1)
                xw = rand(gen, B, N, dtype=dtype) if k != 1 else None
                yw = rand(gen, B, M, dtype=dtype)
                for bidir in (True, False) if k == 0 else (True,):
                    ins = [t.clone().requires_grad_() for t in (x, y, yw)] + ([xw.clone().requires_grad_()] if xw is not None else [])
                    xi, yi, ywi = ins[:3]
                    xwi = ins[3] if xw is not None else None
                    kw = dict(squared=squared, reduction=reduction, bidirectional=bidir)
                    v = call(bk, "chamfer_distance", xi, yi, xl, yl, xwi, ywi, **kw)
                    v0 = ref.chamfer_distance(*(t.detach().requires_grad_() for t in (x, y)), xl, yl,
                                              None if xw is None else xw.clone().requires_grad_(),
                                              yw.clone().requires_grad_(), **kw)
                    msg = f"chamfer_distance {bk} {dtype} {(B, N, M, D)} {kw}"
                    assert_close(v, v0, msg=msg)
                    gout = torch.rand(v.shape, generator=gen, dtype=torch.float64).to(v.dtype)
                    got = torch.autograd.grad((v * gout).sum(), ins, allow_unused=True)
                    # reference gradients on fresh leaves
                    leaves = [t.detach().clone().requires_grad_() for t in ins]
                    v1 = ref.chamfer_distance(leaves[0], leaves[1], xl, yl, leaves[3] if xw is not None else None, leaves[2], **kw)
                    exp = torch.autograd.grad((v1 * gout).sum(), leaves, allow_unused=True)
                    for name, g, e in zip(("x", "y", "y_weights", "x_weights"), got, exp):
                        if e is None:
                            e = torch.zeros_like(leaves[0]) if name == "x" else e
                        if g is None and e is not None:
                            g = torch.zeros_like(e)
                        if e is None:
                            continue
                        assert_close(g, e, atol=grad_tol(dtype)[0] * max(1.0, float(v0.detach().abs().max())), rtol=grad_tol(dtype)[1],
                                     msg=f"{msg} grad {name}")

    @pytest.mark.parametrize("squared", [True, False])
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_against_oracle(self, gen, squared, reduction):
        """reference and cpu against the same formula built on SciPy's cKDTree."""
        cases = [BackendCase("reference", "cpu"), BackendCase("cpu", "cpu")]
        for case in cases:
            skip_unavailable(case)
            for B, N, M, D, integer in [(4, 65, 129, 2, None), (3, 64, 63, 2, 4096), (2, 20, 30, 3, 5)]:
                x, xl = ragged_cloud(gen, B, N, D, dtype=torch.float64, integer=integer)
                y, yl = ragged_cloud(gen, B, M, D, dtype=torch.float64, integer=integer)
                xw, yw = rand(gen, B, N, dtype=torch.float64), None
                v = call(case, "chamfer_distance", x, y, xl, yl, xw, yw, squared=squared, reduction=reduction)
                e = torch.as_tensor(kdtree_chamfer(x, y, xl, yl, xw, yw, squared, reduction, True), dtype=torch.float64)
                assert_close(v, e, rtol=1e-10, atol=1e-9, msg=f"chamfer vs cKDTree {case} {(B, N, M, D, integer)}")

    def test_zero_distance_gradient(self, bk):
        """Plain L2 at distance 0 (duplicate points): gradient 0, not NaN."""
        x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
        y = torch.tensor([[[1.0, 2.0], [5.0, 4.0]]], requires_grad=True)
        v = call(bk, "chamfer_distance", x, y, squared=False)
        gx, gy = torch.autograd.grad(v, [x, y])
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
        assert gx[0, 0].abs().max() == 0 and gy[0, 0].abs().max() == 0

    def test_gradcheck(self, gen):
        for case in (BackendCase("reference", "cpu"), BackendCase("cpu", "cpu")):
            skip_unavailable(case)
            for squared, reduction in ((True, "mean"), (False, "none"), (True, "sum")):
                x = rand(gen, 2, 9, 2, dtype=torch.float64).requires_grad_()
                y = rand(gen, 2, 7, 2, dtype=torch.float64).requires_grad_()
                xw = rand(gen, 2, 9, dtype=torch.float64, low=0.1).requires_grad_()
                yw = rand(gen, 2, 7, dtype=torch.float64, low=0.1).requires_grad_()
                xl = torch.tensor([9, 4])

                def f(a, b, wa, wb):
                    return call(case, "chamfer_distance", a, b, xl, None, wa, wb, squared=squared, reduction=reduction)

                assert torch.autograd.gradcheck(f, (x, y, xw, yw), eps=1e-6, atol=1e-6, fast_mode=True), f"{case} {squared} {reduction}"

    def test_deterministic(self, gen):
        """The CPU backward scatters serially per batch element: bit-identical across runs and thread counts."""
        skip_unavailable(BackendCase("cpu", "cpu"))
        x = rand(gen, 2, 300, 2).requires_grad_()
        y = rand(gen, 2, 200, 2).requires_grad_()
        outs = []
        threads = torch.get_num_threads()
        try:
            for nt in (1, max(2, threads), 1):
                torch.set_num_threads(nt)
                v = hk.chamfer_distance(x, y, deterministic=True, backend="cpu")
                outs.append((v.detach(), *torch.autograd.grad(v, [x, y])))
        finally:
            torch.set_num_threads(threads)
        for o in outs[1:]:
            for a, b in zip(outs[0], o):
                assert torch.equal(a, b)

    def test_gpu_deterministic_vs_atomic(self, bk, gen):
        """On a GPU the backward's scatter to ``y`` and ``y_weights`` adds with float atomics unless
        deterministic (``deterministic=True``, or ``torch.use_deterministic_algorithms(True)`` with the
        default None), which stable-sorts by neighbour and sums each neighbour's contributions in point
        order. 4096 points per cloud share 16 neighbours, so the atomics really contend (256 adds per
        target). Checks: the deterministic path is bit-identical run to run and through the global switch;
        the atomic path agrees with it within float32 summation error; both agree with the float64
        reference. GPU only: the CPU backward has no atomics (test_deterministic)."""
        if bk.device != "cuda":
            pytest.skip("the atomic scatter exists only on a GPU; the CPU backward is always deterministic")
        B, N, M = 2, 4096, 16
        x = rand(gen, B, N, 2, high=64.0, device=bk.device)
        y = rand(gen, B, M, 2, high=64.0, device=bk.device)
        xw = rand(gen, B, N, low=0.1, device=bk.device)
        yw = rand(gen, B, M, low=0.1, device=bk.device)

        def grads(det, backend=bk.name, dtype=torch.float32, device=bk.device):
            ins = [t.detach().to(device=device, dtype=dtype).requires_grad_() for t in (x, y, xw, yw)]
            v = hk.chamfer_distance(ins[0], ins[1], None, None, ins[2], ins[3], reduction="sum",
                                    deterministic=det, backend=backend)
            return [g.cpu().double() for g in torch.autograd.grad(v, ins)]

        det1, det2 = grads(True), grads(True)
        was = torch.are_deterministic_algorithms_enabled()
        try:
            torch.use_deterministic_algorithms(True)
            det3 = grads(None)
        finally:
            torch.use_deterministic_algorithms(was)
        atomic = grads(False)
        want = grads(None, backend="reference", dtype=torch.float64, device="cpu")
        for name, a, b, c, at, w in zip(("x", "y", "x_weights", "y_weights"), det1, det2, det3, atomic, want):
            assert torch.equal(a, b), f"{name}: deterministic backward differs run to run"
            assert torch.equal(a, c), f"{name}: use_deterministic_algorithms(True) is not the deterministic path"
            scale = w.abs().max().item()
            assert_close(at, a, atol=1e-5 * scale, rtol=1e-5, msg=f"{name}: atomic vs deterministic")
            for path, g in (("deterministic", a), ("atomic", at)):
                assert_close(g, w, atol=1e-5 * scale, rtol=1e-4, msg=f"{name}: {path} vs reference")

    def test_opcheck(self, gen, ns):
        ops = getattr(torch.ops, ns)
        x = rand(gen, 2, 9, 2).requires_grad_()
        y = rand(gen, 2, 11, 2).requires_grad_()
        xl = torch.tensor([9, 3])
        w = rand(gen, 2, 11).requires_grad_()
        torch.library.opcheck(ops.nearest_neighbors.default, (x.detach(), y.detach(), xl, None))
        for args in ((None, w, False, "none", True, False), (None, None, True, "sum", False, True)):
            torch.library.opcheck(ops.chamfer_distance.default, (x, y, xl, None, *args))
        v, ix, iy = ops.chamfer_distance(x.detach(), y.detach(), xl, None, None, w.detach(), False, "none", True, False)
        torch.library.opcheck(ops._chamfer_distance_backward.default,
                              (torch.ones(2), x.detach(), y.detach(), ix, iy, xl, None, None, w.detach(), False, "none", True, False))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        x = rand(gen, 2, 20, 2).requires_grad_()
        y = rand(gen, 2, 17, 2)
        xl = torch.tensor([20, 5])
        f = torch.compile(lambda a, b, l: hk.chamfer_distance(a, b, l, squared=False, backend=case.name), fullgraph=True,
                          backend=compile_backend)
        out = f(x, y, xl)
        assert_close(out, ref.chamfer_distance(x.detach(), y, xl, squared=False), msg=f"compiled chamfer {case}")
        out.backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    def test_exception(self, bk):
        dev = bk.device
        x, y = torch.rand(2, 5, 2, device=dev), torch.rand(2, 6, 2, device=dev)
        with pytest.raises(ValueError, match="reduction.*'avg'"):
            call(bk, "chamfer_distance", x, y, reduction="avg")
        with pytest.raises(ValueError, match=r"x_weights.*\[2, 5\]"):
            call(bk, "chamfer_distance", x, y, x_weights=torch.rand(2, 6, device=dev))
        with pytest.raises(TypeError, match=r"y_weights.*floating"):
            call(bk, "chamfer_distance", x, y, y_weights=torch.ones(2, 6, dtype=torch.int64, device=dev))
        if dev == "cpu":
            with pytest.raises(ValueError, match=r"y_weights.*>= 0"):
                call(bk, "chamfer_distance", x, y, y_weights=-torch.rand(2, 6))
        with pytest.raises(ValueError, match=r"\by\b.*D = 2"):
            call(bk, "chamfer_distance", x, torch.rand(2, 6, 4, device=dev))
        with pytest.raises(ValueError, match=r"y_lengths.*shape \[2\]"):
            call(bk, "chamfer_distance", x, y, None, torch.tensor([[1, 2]], device=dev))


# ================================================================================================
NAMESPACES = ("hmore", "hmore_triton")


@pytest.fixture(params=NAMESPACES)
def ns(request):
    """hmore (the C++ CPU ops) and hmore_triton (interpreted on CPU tensors, or on a GPU)."""
    if request.param == "hmore":
        skip_unavailable(BackendCase("cpu", "cpu"))
    else:
        case = BackendCase("triton", "cuda" if HAS_GPU else "cpu")
        skip_unavailable(case)
        if HAS_GPU:
            pytest.skip("opcheck of the Triton ops runs on CPU tensors here; GPU runs use tests/test_triton_compile_chamfer.py")
    return request.param


@pytest.fixture(params=["cpu-inductor", "triton"])
def dyn(request):
    """(backend, torch.compile backend): cpu under inductor; triton under aot_eager when interpreted."""
    if request.param == "cpu-inductor":
        case, compile_backend = BackendCase("cpu", "cpu"), "inductor"
    else:
        case = BackendCase("triton", "cuda" if HAS_GPU else "cpu")
        compile_backend = "inductor" if HAS_GPU else "aot_eager"
    skip_unavailable(case)
    torch._dynamo.reset()
    return case, compile_backend


# ---- patch oracles: plain loops over the docs/ops.md §5 text -------------------------------------------
def loop_patch_centroids(w, p, off=None):
    B, _, H, W = w.shape
    Hp, Wp = -(-H // p), -(-W // p)
    c = torch.zeros(B, Hp, Wp, 2, dtype=torch.float64)
    m = torch.zeros(B, Hp, Wp, dtype=torch.float64)
    for b in range(B):
        for pi in range(Hp):
            for pj in range(Wp):
                ys = range(pi * p, min(pi * p + p, H))
                xs = range(pj * p, min(pj * p + p, W))
                mass = sx = sy = 0.0
                for i in ys:
                    for j in xs:
                        wv = float(w[b, 0, i, j])
                        dx = float(off[b, 0, i, j]) if off is not None else 0.0
                        dy = float(off[b, 1, i, j]) if off is not None else 0.0
                        mass += wv
                        sx += wv * (j + dx)
                        sy += wv * (i + dy)
                m[b, pi, pj] = mass
                if mass > 0:
                    c[b, pi, pj] = torch.tensor([sx / mass, sy / mass])
                else:
                    c[b, pi, pj] = torch.tensor([(xs[0] + xs[-1]) / 2, (ys[0] + ys[-1]) / 2])
    return c, m


def loop_pcc(a, b, patch_sizes, min_mass):
    """[B] float64, straight from docs/ops.md §5."""
    B = a.shape[0]
    out = torch.zeros(B, dtype=torch.float64)
    for bb in range(B):
        total = 0.0
        for p in patch_sizes:
            ca, ma = loop_patch_centroids(a[bb : bb + 1].double(), p)
            cb, mb = loop_patch_centroids(b[bb : bb + 1].double(), p)
            H, W = a.shape[2:]
            terms = []
            for pi in range(ma.shape[1]):
                for pj in range(ma.shape[2]):
                    mA, mB = float(ma[0, pi, pj]), float(mb[0, pi, pj])
                    if not mA + mB > min_mass:
                        continue
                    ys = range(pi * p, min(pi * p + p, H))
                    xs = range(pj * p, min(pj * p + p, W))
                    centre = torch.tensor([(xs[0] + xs[-1]) / 2, (ys[0] + ys[-1]) / 2], dtype=torch.float64)
                    cA = ca[0, pi, pj] if mA > min_mass else centre
                    cB = cb[0, pi, pj] if mB > min_mass else centre
                    rA, rB = min(1.0, mA / p), min(1.0, mB / p)
                    terms.append(rA * rB * float((cA - cB).norm()) + p * abs(rA - rB))
            total += sum(terms) / len(terms) if terms else 0.0
        out[bb] = total / len(patch_sizes)
    return out


def map_shapes(case):
    return [(2, 13, 37), (1, 16, 40)] if case.interpreted else [(2, 13, 37), (1, 16, 40), (2, 33, 65), (1, 1, 9), (3, 8, 8)]


def soft_edges(gen, B, H, W, dtype=torch.float64, sparsity=0.6):
    """Random soft edge map: values in [0, 1] with ~sparsity zeros and an empty top-left 8x8 patch."""
    v = torch.rand(B, 1, H, W, generator=gen, dtype=torch.float64)
    keep = torch.rand(B, 1, H, W, generator=gen, dtype=torch.float64) > sparsity
    v = v * keep
    v[:, :, :8, :8] = 0
    return v.to(dtype)


class TestPatchCentroids:
    def test_smoke(self, bk):
        w = torch.zeros(1, 1, 4, 6)
        w[0, 0, 1, 1] = 2.0
        w[0, 0, 3, 2] = 2.0  # patch (0, 0) at p=4: centroid ((1 + 2)/2, (1 + 3)/2)
        c, m = call(bk, "patch_centroids", w, 4)
        assert c.shape == (1, 1, 2, 2) and m.shape == (1, 1, 2)
        assert_close(m, torch.tensor([[[4.0, 0.0]]]))
        # second patch: empty, partial (columns 4, 5; rows 0..3) -> centre (4.5, 1.5)
        assert_close(c, torch.tensor([[[[1.5, 2.0], [4.5, 1.5]]]]))

    @pytest.mark.parametrize("shape,p", [((2, 1, 5, 7), 2), ((0, 1, 5, 7), 3), ((1, 1, 0, 4), 2), ((1, 1, 3, 3), 8)])
    def test_cardinality(self, bk, gen, shape, p):
        w = rand(gen, *shape)
        c, m = call(bk, "patch_centroids", w, p)
        B, _, H, W = shape
        assert c.shape == (B, -(-H // p), -(-W // p), 2) and m.shape == (B, -(-H // p), -(-W // p))

    def test_against_oracle(self, bk, gen):
        """Against the hand loop (docs/ops.md's definition), with and without offsets, bool weights too."""
        B, H, W = (1, 11, 19) if bk.interpreted else (2, 13, 21)
        for p in (1, 4, 5, 32):
            w = soft_edges(gen, B, H, W, dtype=torch.float32)
            off = (rand(gen, B, 2, H, W, low=-2, high=2))
            for o in (None, off):
                c, m = call(bk, "patch_centroids", w, p, o)
                c0, m0 = loop_patch_centroids(w, p, o)
                assert_close(c.double(), c0, atol=2e-5, rtol=2e-5, msg=f"patch_centroids {bk} p={p} offsets={o is not None}")
                assert_close(m.double(), m0, atol=2e-5, rtol=2e-5, msg=f"mass {bk} p={p}")
        wb = w > 0.5
        c, m = call(bk, "patch_centroids", wb, 4)
        c0, m0 = loop_patch_centroids(wb.double(), 4)
        assert c.dtype == torch.float32
        assert_close(c.double(), c0, atol=1e-5, rtol=1e-5, msg="bool weights")

    def test_against_reference(self, bk, gen):
        for dtype in dtypes_of(bk):
            for B, H, W in map_shapes(bk):
                for p in (3, 8):
                    w = soft_edges(gen, B, H, W, dtype=dtype).requires_grad_()
                    o = rand(gen, B, 2, H, W, dtype=dtype, low=-1, high=1).requires_grad_()
                    c, m = call(bk, "patch_centroids", w, p, o)
                    c0, m0 = ref.patch_centroids(w, p, o)
                    msg = f"patch_centroids {bk} {dtype} {(B, H, W)} p={p}"
                    assert_close(c, c0, msg=msg)
                    assert_close(m, m0, msg=msg)
                    gc, gm = torch.randn_like(c), torch.randn_like(m)
                    g = torch.autograd.grad((c * gc).sum() + (m * gm).sum(), [w, o])
                    g0 = torch.autograd.grad((c0 * gc).sum() + (m0 * gm).sum(), [w, o])
                    for name, a, e in zip(("weights", "offsets"), g, g0):
                        assert_close(a, e, atol=grad_tol(dtype)[0] * 10, rtol=grad_tol(dtype)[1], msg=f"{msg} grad {name}")

    def test_gradcheck(self, gen):
        for case in (BackendCase("reference", "cpu"), BackendCase("cpu", "cpu")):
            skip_unavailable(case)
            w = rand(gen, 1, 1, 7, 9, dtype=torch.float64, low=0.1).requires_grad_()
            o = rand(gen, 1, 2, 7, 9, dtype=torch.float64, low=-1).requires_grad_()
            assert torch.autograd.gradcheck(lambda a, b: call(case, "patch_centroids", a, 4, b), (w, o), fast_mode=True), str(case)

    def test_opcheck(self, gen, ns):
        ops = getattr(torch.ops, ns)
        w = rand(gen, 2, 1, 7, 10, low=0.0).requires_grad_()
        o = rand(gen, 2, 2, 7, 10, low=-1).requires_grad_()
        torch.library.opcheck(ops.patch_centroids.default, (w, 4, o))
        torch.library.opcheck(ops.patch_centroids.default, (w, 3, None))
        c, m = ops.patch_centroids(w.detach(), 4, o.detach())
        torch.library.opcheck(ops._patch_centroids_backward.default,
                              (torch.ones_like(c), torch.ones_like(m), w.detach(), o.detach(), c, m, 4))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        w = soft_edges(gen, 1, 9, 14, dtype=torch.float32).requires_grad_()
        o = rand(gen, 1, 2, 9, 14, low=-1)
        f = torch.compile(lambda a, b: hk.patch_centroids(a, 4, b, backend=case.name), fullgraph=True, backend=compile_backend)
        c, m = f(w, o)
        c0, m0 = ref.patch_centroids(w.detach(), 4, o)
        assert_close(c, c0, msg=f"compiled patch_centroids {case}")
        (c.sum() + m.sum()).backward()
        assert w.grad is not None and torch.isfinite(w.grad).all()

    def test_exception(self, bk):
        dev = bk.device
        w = torch.rand(1, 1, 6, 6, device=dev)
        with pytest.raises(ValueError, match="patch_size.*>= 1"):
            call(bk, "patch_centroids", w, 0)
        with pytest.raises(ValueError, match=r"weights.*\[B, 1, H, W\]"):
            call(bk, "patch_centroids", torch.rand(1, 2, 6, 6, device=dev), 2)
        with pytest.raises(TypeError, match="weights"):
            call(bk, "patch_centroids", w.long(), 2)
        with pytest.raises(ValueError, match=r"offsets.*\[1, 2, 6, 6\]"):
            call(bk, "patch_centroids", w, 2, torch.rand(1, 2, 6, 5, device=dev))


# ================================================================================================
class TestPatchCentroidChamfer:
    def test_smoke(self, bk):
        a = torch.zeros(1, 1, 8, 8)
        a[0, 0, 2, 2] = 1.0
        b = torch.zeros(1, 1, 8, 8)
        b[0, 0, 2, 5] = 1.0
        # one patch, m = 1 each, r = 1/8: (1/64) * 3 + 0
        assert_close(call(bk, "patch_centroid_chamfer", a, b, patch_sizes=[8]), torch.tensor(3.0 / 64))
        # mass only in a: r_a = 1/8, r_b = 0 -> 8 * 1/8
        assert_close(call(bk, "patch_centroid_chamfer", a, torch.zeros_like(a), patch_sizes=[8]), torch.tensor(1.0))
        assert_close(call(bk, "patch_centroid_chamfer", a, a), torch.tensor(0.0))

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_cardinality(self, bk, gen, reduction):
        for shape in [(2, 1, 9, 11), (0, 1, 9, 11), (2, 1, 0, 5)]:
            a, b = rand(gen, *shape), rand(gen, *shape)
            v = call(bk, "patch_centroid_chamfer", a, b, reduction=reduction)
            assert v.shape == ((shape[0],) if reduction == "none" else ()) and v.dtype == torch.float32

    def test_against_oracle(self, bk, gen):
        """The hand loop of the docs/ops.md §5 formula (partial patches, min_mass fallback, mass mismatch)."""
        B, H, W = (2, 13, 21) if not bk.interpreted else (1, 13, 21)
        a = soft_edges(gen, B, H, W, dtype=torch.float32)
        b = soft_edges(gen, B, H, W, dtype=torch.float32, sparsity=0.8)
        a[:, :, 9:, 17:] = 0.0004  # a patch whose mass is below min_mass on its own
        for ps, mm in (([4, 8], 1e-3), ([5], 0.5), ([1, 32], 0.0)):
            v = call(bk, "patch_centroid_chamfer", a, b, patch_sizes=ps, min_mass=mm, reduction="none")
            assert_close(v.double(), loop_pcc(a, b, ps, mm), atol=1e-5, rtol=1e-5, msg=f"pcc vs loop {bk} {ps} {mm}")

    def test_identical_and_monotone_shift(self, bk, gen):
        """Identical maps give 0; shifting a boundary map by 0..6 pixels increases the loss monotonically."""
        H, W = (16, 40) if bk.interpreted else (48, 64)
        mask = torch.zeros(1, 1, H, W, dtype=torch.bool)
        mask[:, :, 3 : H - 3, 6:20] = True
        edge = hk.mask_boundary(mask, backend="reference").float()
        vals = []
        for s in range(7):
            shifted = torch.zeros_like(edge)
            shifted[..., s:] = edge[..., : W - s]
            vals.append(float(call(bk, "patch_centroid_chamfer", edge, shifted, patch_sizes=[4, 8])))
        assert vals[0] == 0.0
        assert all(b > a for a, b in zip(vals, vals[1:])), f"not monotone in the shift: {vals}"

    def test_against_reference(self, bk, gen):
        for dtype in dtypes_of(bk):
            for B, H, W in map_shapes(bk):
                for ps, red in (((8, 16, 32), "mean"), ((3, 5), "none"), ((4,), "sum")):
                    a = soft_edges(gen, B, H, W, dtype=dtype).requires_grad_()
                    b = soft_edges(gen, B, H, W, dtype=dtype, sparsity=0.8).requires_grad_()
                    v = call(bk, "patch_centroid_chamfer", a, b, patch_sizes=ps, reduction=red)
                    v0 = ref.patch_centroid_chamfer(a, b, ps, 1e-3, red)
                    msg = f"pcc {bk} {dtype} {(B, H, W)} {ps} {red}"
                    assert_close(v, v0, msg=msg)
                    g = torch.autograd.grad(v.sum(), [a, b])
                    g0 = torch.autograd.grad(v0.sum(), [a, b])
                    for name, x, e in zip("ab", g, g0):
                        assert_close(x, e, atol=grad_tol(dtype)[0], rtol=grad_tol(dtype)[1], msg=f"{msg} grad {name}")

    def test_identical_gradient_is_zero_not_nan(self, bk, gen):
        a = soft_edges(gen, 1, 16, 16, dtype=torch.float32)
        x, y = a.clone().requires_grad_(), a.clone().requires_grad_()
        v = call(bk, "patch_centroid_chamfer", x, y)
        ga, gb = torch.autograd.grad(v, [x, y])
        assert float(v.detach()) == 0.0 and torch.isfinite(ga).all() and torch.isfinite(gb).all()

    def test_bool_maps(self, bk, gen):
        a = soft_edges(gen, 1, 16, 24, dtype=torch.float32) > 0.5
        b = soft_edges(gen, 1, 16, 24, dtype=torch.float32) > 0.5
        v = call(bk, "patch_centroid_chamfer", a, b, patch_sizes=[4, 8])
        assert v.dtype == torch.float32
        assert_close(v, ref.patch_centroid_chamfer(a.float(), b.float(), (4, 8)))

    def test_gradcheck(self, gen):
        for case in (BackendCase("reference", "cpu"), BackendCase("cpu", "cpu")):
            skip_unavailable(case)
            # masses of 0.3..1 per pixel keep every patch away from the min(1, m/p) kink and the min_mass switch
            a = rand(gen, 2, 1, 7, 11, dtype=torch.float64, low=0.05, high=0.3).requires_grad_()
            b = rand(gen, 2, 1, 7, 11, dtype=torch.float64, low=0.05, high=0.3).requires_grad_()
            for ps, red in (([4, 8], "mean"), ([3], "none")):
                f = lambda x, y: call(case, "patch_centroid_chamfer", x, y, patch_sizes=ps, reduction=red)  # noqa: E731
                assert torch.autograd.gradcheck(f, (a, b), fast_mode=True), f"{case} {ps} {red}"

    def test_opcheck(self, gen, ns):
        ops = getattr(torch.ops, ns)
        a = soft_edges(gen, 2, 9, 12, dtype=torch.float32).requires_grad_()
        b = soft_edges(gen, 2, 9, 12, dtype=torch.float32, sparsity=0.3).requires_grad_()
        torch.library.opcheck(ops.patch_centroid_chamfer.default, (a, b, [4, 8], 1e-3, "mean"))
        torch.library.opcheck(ops.patch_centroid_chamfer.default, (a, b, [3], 0.0, "none"))
        torch.library.opcheck(ops._patch_centroid_chamfer_backward.default,
                              (torch.ones(2), a.detach(), b.detach(), [3, 5], 1e-3, "none"))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        a = soft_edges(gen, 1, 12, 16, dtype=torch.float32).requires_grad_()
        b = soft_edges(gen, 1, 12, 16, dtype=torch.float32)
        f = torch.compile(lambda x, y: hk.patch_centroid_chamfer(x, y, patch_sizes=(4, 8), backend=case.name),
                          fullgraph=True, backend=compile_backend)
        out = f(a, b)
        assert_close(out, ref.patch_centroid_chamfer(a.detach(), b, (4, 8)), msg=f"compiled pcc {case}")
        out.backward()
        assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0

    def test_exception(self, bk):
        dev = bk.device
        a = torch.rand(1, 1, 8, 8, device=dev)
        with pytest.raises(ValueError, match="patch_sizes.*empty"):
            call(bk, "patch_centroid_chamfer", a, a, patch_sizes=[])
        with pytest.raises(ValueError, match="patch_sizes.*>= 1"):
            call(bk, "patch_centroid_chamfer", a, a, patch_sizes=[4, 0])
        with pytest.raises(ValueError, match="min_mass.*>= 0"):
            call(bk, "patch_centroid_chamfer", a, a, min_mass=-1.0)
        with pytest.raises(ValueError, match=r"\bb\b.*like a"):
            call(bk, "patch_centroid_chamfer", a, torch.rand(1, 1, 8, 9, device=dev))
        with pytest.raises(ValueError, match="reduction"):
            call(bk, "patch_centroid_chamfer", a, a, reduction="max")
        with pytest.raises(ValueError, match=r"\ba\b.*\[B, 1, H, W\]"):
            call(bk, "patch_centroid_chamfer", a[0], a[0])
        with pytest.raises(TypeError, match=r"\bb\b"):
            call(bk, "patch_centroid_chamfer", a, a.long())
        with pytest.raises(ValueError, match=r"\bb\b.*meta"):
            call(bk, "patch_centroid_chamfer", a, a.to("meta"))


# ================================================================================================
def brute_boundary_chamfer(a, b):
    """[B] float64 by all pairs of True pixels."""
    out = []
    for bb in range(a.shape[0]):
        pa = torch.nonzero(a[bb, 0]).double()
        pb = torch.nonzero(b[bb, 0]).double()
        if len(pa) == 0 and len(pb) == 0:
            out.append(0.0)
        elif len(pa) == 0 or len(pb) == 0:
            out.append(math.inf)
        else:
            d = torch.cdist(pa, pb, compute_mode="donot_use_mm_for_euclid_dist")
            out.append(float(d.min(1).values.mean() + d.min(0).values.mean()))
    return torch.tensor(out, dtype=torch.float64)


class TestBoundaryChamfer:
    def test_smoke(self, bk):
        a = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
        b = torch.zeros_like(a)
        a[0, 0, 1, 1] = True
        b[0, 0, 4, 5 - 1] = True  # distance sqrt(9 + 9)
        assert_close(call(bk, "boundary_chamfer", a, b), torch.tensor(2 * math.sqrt(18.0)), atol=1e-5)
        assert float(call(bk, "boundary_chamfer", a, a)) == 0.0

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_cardinality(self, bk, gen, reduction):
        for shape in [(3, 1, 6, 9), (0, 1, 6, 9), (2, 1, 0, 3)]:
            a = blob_mask(gen, *shape[:1], *shape[2:]) if shape[0] and shape[2] else torch.zeros(shape, dtype=torch.bool)
            v = call(bk, "boundary_chamfer", a, a, reduction=reduction)
            assert v.shape == ((shape[0],) if reduction == "none" else ()) and v.dtype == torch.float32

    def test_empty_maps(self, bk):
        a = torch.zeros(3, 1, 6, 7, dtype=torch.bool)
        b = torch.zeros_like(a)
        a[1, 0, 2, 3] = True
        b[2, 0, 0, 0] = True
        a[2, 0, 5, 6] = True
        v = call(bk, "boundary_chamfer", a, b, reduction="none")
        assert v[0] == 0.0 and v[1] == math.inf
        assert_close(v[2], torch.tensor(2 * math.hypot(5, 6), dtype=torch.float32))

    def test_against_oracle(self, bk, gen):
        """All pairs, and scipy.ndimage.distance_transform_edt as the distance source."""
        B, H, W = (2, 12, 30) if bk.interpreted else (3, 23, 41)
        a = torch.rand(B, 1, H, W, generator=gen) > 0.9
        b = torch.rand(B, 1, H, W, generator=gen) > 0.95
        v = call(bk, "boundary_chamfer", a, b, reduction="none")
        assert_close(v.double(), brute_boundary_chamfer(a, b), atol=1e-5, rtol=1e-6, msg=f"vs all pairs {bk}")
        edt = []
        for bb in range(B):
            an, bn = a[bb, 0].numpy(), b[bb, 0].numpy()
            da, db = ndimage.distance_transform_edt(~an), ndimage.distance_transform_edt(~bn)
            edt.append(db[an].mean() + da[bn].mean())
        assert_close(v.double(), torch.tensor(edt), atol=1e-5, rtol=1e-6, msg=f"vs distance_transform_edt {bk}")
        for red in ("mean", "sum"):
            exp = brute_boundary_chamfer(a, b)
            exp = exp.mean() if red == "mean" else exp.sum()
            assert_close(call(bk, "boundary_chamfer", a, b, reduction=red).double(), exp, atol=1e-5, rtol=1e-6)

    def test_against_reference(self, bk, gen):
        for B, H, W in map_shapes(bk):
            a = blob_mask(gen, B, H, W)
            a = hk.mask_boundary(a, backend="reference")
            b = torch.roll(a, shifts=(1, 2), dims=(2, 3))
            assert_close(call(bk, "boundary_chamfer", a, b, reduction="none"), ref.boundary_chamfer(a, b, "none"),
                         msg=f"boundary_chamfer {bk} {(B, H, W)}")

    def test_opcheck(self, gen, ns):
        ops = getattr(torch.ops, ns)
        a = torch.rand(2, 1, 7, 9, generator=gen) > 0.8
        b = torch.rand(2, 1, 7, 9, generator=gen) > 0.8
        for red in REDUCTIONS:
            torch.library.opcheck(ops.boundary_chamfer.default, (a, b, red))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        a = torch.rand(2, 1, 8, 12, generator=gen) > 0.8
        b = torch.rand(2, 1, 8, 12, generator=gen) > 0.8
        f = torch.compile(lambda x, y: hk.boundary_chamfer(x, y, backend=case.name), fullgraph=True, backend=compile_backend)
        assert_close(f(a, b), ref.boundary_chamfer(a, b), msg=f"compiled boundary_chamfer {case}")

    def test_exception(self, bk):
        dev = bk.device
        a = torch.rand(1, 1, 6, 6, device=dev) > 0.5
        with pytest.raises(TypeError, match=r"\ba\b.*bool.*no gradient"):
            call(bk, "boundary_chamfer", a.float(), a)
        with pytest.raises(ValueError, match=r"\bb\b.*like a"):
            call(bk, "boundary_chamfer", a, a[..., :5])
        with pytest.raises(ValueError, match=r"\ba\b.*\[B, 1, H, W\]"):
            call(bk, "boundary_chamfer", a[0], a[0])
        with pytest.raises(ValueError, match="reduction"):
            call(bk, "boundary_chamfer", a, a, reduction="avg")


# ================================================================================================
class TestPrunedSearch:
    """The CPU kernel's strip-pruned D = 2 search (auto above ~2^17 pairs) must return exactly what the
    brute-force scan returns: same squared distances bit for bit, same indices (lowest on ties), both
    directions, ragged lengths. HMORE_CHAMFER_CPU_NN=brute|pruned forces a path (read on every call)."""

    @staticmethod
    def _both(monkeypatch, mode, x, y, xl, yl):
        monkeypatch.setenv("HMORE_CHAMFER_CPU_NN", mode)
        d, i = torch.ops.hmore.nearest_neighbors(x, y, xl, yl)
        dr, ir = torch.ops.hmore.nearest_neighbors(y, x, yl, xl)
        v, cx, cy = torch.ops.hmore.chamfer_distance(x, y, xl, yl, None, None, False, "none", True, False)
        return d, i, dr, ir, v, cx, cy

    def _check(self, monkeypatch, x, y, xl=None, yl=None, msg=""):
        p = self._both(monkeypatch, "pruned", x, y, xl, yl)
        b = self._both(monkeypatch, "brute", x, y, xl, yl)
        for k, (u, w) in enumerate(zip(p, b)):
            assert u.dtype == w.dtype and torch.equal(u, w), f"pruned vs brute, output {k}: {msg}"
        d0, i0 = ref.nearest_neighbors(x, y, xl, yl)
        dr0, ir0 = ref.nearest_neighbors(y, x, yl, xl)
        assert torch.equal(p[1], i0) and torch.equal(p[0], d0), f"pruned vs reference x -> y: {msg}"
        assert torch.equal(p[3], ir0) and torch.equal(p[2], dr0), f"pruned vs reference y -> x: {msg}"
        assert torch.equal(p[5], i0) and torch.equal(p[6], ir0), f"chamfer indices vs reference: {msg}"
        return p

    @pytest.fixture(autouse=True)
    def _cpu(self):
        skip_unavailable(BackendCase("cpu", "cpu"))

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("kind", ["uniform", "pixels4096", "grid_ties", "duplicates"])
    def test_against_brute_and_reference(self, monkeypatch, gen, dtype, kind):
        integer = {"uniform": None, "pixels4096": 4096, "grid_ties": 12, "duplicates": 40}[kind]
        for B, N, M in [(5, 700, 650), (2, 1, 300), (1, 2000, 30)]:
            x, xl = ragged_cloud(gen, B, N, 2, dtype=dtype, integer=integer, dup=kind == "duplicates")
            y, yl = ragged_cloud(gen, B, M, 2, dtype=dtype, integer=integer, dup=kind == "duplicates")
            if kind == "uniform":
                x, y = x * 4096, y * 4096
            self._check(monkeypatch, x, y, xl, yl, msg=f"{kind} {dtype} {(B, N, M)}")
            self._check(monkeypatch, x, y, msg=f"{kind} {dtype} {(B, N, M)} full lengths")

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_vertical_and_horizontal_lines(self, monkeypatch, gen, dtype):
        """All points on one column (every strip has x-gap 0: the worst case of an x sweep) or one row,
        with many exact ties; and a line against a scattered cloud."""
        for B, N, M in [(2, 900, 800)]:
            col_x = torch.randint(0, 300, (B, N), generator=gen).to(dtype)
            col_y = torch.randint(0, 300, (B, M), generator=gen).to(dtype)
            x = torch.stack([torch.full_like(col_x, 4095.0), col_x], -1)
            y = torch.stack([torch.full_like(col_y, 4095.0), col_y], -1)
            self._check(monkeypatch, x, y, msg="vertical line")
            self._check(monkeypatch, x.flip(-1), y.flip(-1), msg="horizontal line")
            cloud = torch.randint(3800, 4097, (B, M, 2), generator=gen).to(dtype)
            self._check(monkeypatch, x, cloud, torch.tensor([N, 1]), torch.tensor([0, M]), msg="line vs cloud")

    def test_against_ckdtree(self, monkeypatch, gen):
        monkeypatch.setenv("HMORE_CHAMFER_CPU_NN", "pruned")
        for integer in (None, 4096, 10):
            x, xl = ragged_cloud(gen, 3, 600, 2, dtype=torch.float64, integer=integer)
            y, yl = ragged_cloud(gen, 3, 500, 2, dtype=torch.float64, integer=integer)
            d, i = torch.ops.hmore.nearest_neighbors(x, y, xl, yl)
            d0, i0 = kdtree_nn(x, y, xl, yl)
            assert torch.equal(i, torch.from_numpy(i0)), f"pruned vs cKDTree indices, integer={integer}"
            assert_close(d, torch.from_numpy(d0), rtol=1e-12, atol=1e-12, msg=f"pruned vs cKDTree, integer={integer}")

    def test_non_finite_falls_back(self, monkeypatch, gen):
        """NaN / inf coordinates cannot be sorted into strips: the call must give brute force's answer."""
        x, y = torch.rand(2, 300, 2, generator=gen) * 100, torch.rand(2, 400, 2, generator=gen) * 100
        x[1, 5, 0] = float("nan")
        y[0, 7, 1] = float("inf")
        for xx, yy in ((x, y), (x[1:], y[1:]), (x[:1], y[:1])):  # B = 2 and B = 1 take different paths
            p = self._both(monkeypatch, "pruned", xx, yy, None, None)
            b = self._both(monkeypatch, "brute", xx, yy, None, None)
            for u, w in zip(p, b):
                assert torch.equal(u.nan_to_num(), w.nan_to_num())

    def test_auto_uses_pruned_on_large_clouds(self, monkeypatch, gen):
        """The automatic choice (no env var) on a 2-D cloud above the threshold equals brute force."""
        x = torch.randint(0, 512, (1, 1500, 2), generator=gen).float()
        y = torch.randint(0, 512, (1, 1400, 2), generator=gen).float()
        monkeypatch.delenv("HMORE_CHAMFER_CPU_NN", raising=False)
        auto = torch.ops.hmore.chamfer_distance(x, y, None, None, None, None, False, "none", True, False)
        brute = self._both(monkeypatch, "brute", x, y, None, None)
        assert torch.equal(auto[0], brute[4]) and torch.equal(auto[1], brute[5]) and torch.equal(auto[2], brute[6])
