"""Tests of the skeleton family (docs/ops.md §4, §5): skeleton_points, skeleton_match, skeleton_offset_map.

Kornia style, as tests/test_edges.py: per op test_smoke, test_cardinality, test_against_reference
[backend], an outside oracle (closed forms for skeleton_points; a brute-force NumPy loop, one pixel and one
point at a time, for the match), test_gradcheck, test_opcheck, test_dynamo, test_exception.

The match is checked for *equality* of indices against the reference and the NumPy loop: every backend
evaluates the cost in the same pinned order (csrc/skeleton/skeleton_kernels.cuh), so ties and near-ties
resolve the same way. Triton runs through its interpreter on CPU tensors without a GPU: tiny maps there.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hmore_kernels as hk
from hmore_kernels.skeleton import BLAZEPOSE33, COCO17
from hmore_kernels.reference import skeleton as ref
from common import assert_close, blob_mask, layout, noncontig, rand
from conftest import BACKEND_PARAMS, HAS_GPU, BackendCase, skip_unavailable

FLOATS = (torch.float32, torch.float64)
LOWP = (torch.float16, torch.bfloat16)

ORACLE_PARAMS = [pytest.param(BackendCase("reference", "cpu"), id="reference")] + [
    p for p in BACKEND_PARAMS if p.values[0].name != "reference"
]


def float_case(case: BackendCase, dtype):
    if dtype == torch.float64 and not case.float64:
        pytest.skip(f"float64 is supported by the reference and cpu backends only (docs/ops.md), not {case.name}")


def call(case: BackendCase, op: str, *args, **kwargs):
    return getattr(hk, op)(*args, backend=case.name, **kwargs)


@pytest.fixture(params=BACKEND_PARAMS + [pytest.param(BackendCase("reference", "cpu"), id="ref")])
def any_backend(request) -> BackendCase:
    skip_unavailable(request.param)
    return request.param


@pytest.fixture(params=("hmore", "hmore_triton"))
def ns(request):
    """The dispatcher namespace to opcheck."""
    if request.param == "hmore":
        skip_unavailable(BackendCase("cpu", "cpu"))
    else:
        skip_unavailable(BackendCase("triton", "cuda" if HAS_GPU else "cpu"))
        import hmore_kernels.triton.skeleton  # noqa: F401  (defines the ops under torch.ops.hmore_triton)
    return request.param


def ns_device(ns):
    return "cuda" if ns == "hmore_triton" and HAS_GPU else "cpu"


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


# ---- inputs --------------------------------------------------------------------------------------
def pose(gen, B, H, W, J=17, dtype=torch.float32, device="cpu", outside=0.15):
    """Random joints [B, J, 2] mostly inside an H x W image (a margin of `outside` beyond each side) and
    confidences [B, J] in [0, 1] with some exact zeros and ones."""
    lo = torch.tensor([-outside * W, -outside * H], dtype=torch.float64)
    span = torch.tensor([(1 + 2 * outside) * W, (1 + 2 * outside) * H], dtype=torch.float64)
    j = torch.rand(B, J, 2, generator=gen, dtype=torch.float64) * span + lo
    c = torch.rand(B, J, generator=gen, dtype=torch.float64)
    if B * J:
        c.view(-1)[:: 7] = 0.0
        c.view(-1)[3:: 11] = 1.0
    return j.to(dtype=dtype, device=device), c.to(dtype=dtype, device=device)


def match_inputs(gen, B, H, W, n=4, dtype=torch.float32, device="cpu"):
    """COCO-17 skeleton points (n per bone), their confidences, a blobby mask."""
    j, c = pose(gen, B, H, W, dtype=torch.float64)
    pts, pc, _ = ref.skeleton_points(j, c, COCO17.bones_tensor(), n)
    m = blob_mask(gen, B, H, W, density=0.6)
    return pts.to(dtype=dtype, device=device), pc.to(dtype=dtype, device=device), m.to(device)


def brute_match(points, conf, mask, eps=1e-4):
    """NumPy, one pixel at a time: argmin of the pinned cost over the points with c > eps, ties (and
    infinite costs) to the lowest index; -1 outside the mask."""
    pts = points.detach().cpu()
    dt = np.float64 if pts.dtype == torch.float64 else np.float32
    P = pts.to(torch.float64 if dt == np.float64 else torch.float32).numpy()
    C = conf.detach().cpu().to(torch.float64).numpy()
    M = mask.detach().cpu()[:, 0].numpy() != 0
    B, Q = P.shape[0], P.shape[1]
    H, W = M.shape[1], M.shape[2]
    out = np.full((B, H, W), -1, np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        for b in range(B):
            w = np.where(C[b] > eps, -np.log(np.minimum(C[b], 1.0 - eps)), np.nan).astype(dt)
            for i in range(H):
                for j in range(W):
                    if not M[b, i, j]:
                        continue
                    dx = dt(j) - P[b, :, 0]
                    dy = dt(i) - P[b, :, 1]
                    cost = np.sqrt(dx * dx + dy * dy) * w  # numpy: every op rounded in dt, sqrt exact
                    best, bi = None, -1
                    for q in range(Q):  # the sequential rule, literally
                        cq = cost[q]
                        if np.isnan(cq):
                            continue
                        if bi < 0 or cq < best:
                            best, bi = cq, q
                    out[b, i, j] = bi
    return torch.from_numpy(out)


def assert_idx_equal(actual, expected, msg):
    assert actual.dtype == torch.int64, f"{msg}: dtype {actual.dtype}"
    assert_close(actual.cpu(), expected.cpu(), msg=msg)


# ================================================================================================
class TestSkeletonPoints:
    def test_smoke(self, backend):
        j = torch.tensor([[[0.0, 0.0], [7.0, 14.0]]], device=backend.device)
        c = torch.tensor([[1.0, 0.3]], device=backend.device)
        pts, pc, bone = call(backend, "skeleton_points", j, c, [(0, 1)])
        assert pts.shape == (1, 8, 2) and pc.shape == (1, 8) and bone.shape == (8,)
        assert bone.dtype == torch.int64 and pts.dtype == torch.float32

    @pytest.mark.parametrize("B,J,E,n", [(2, 17, 16, 8), (0, 17, 16, 8), (3, 5, 0, 4), (1, 0, 0, 3), (2, 4, 3, 1),
                                         (1, 3, 2, 2)])
    def test_cardinality(self, backend, gen, B, J, E, n):
        j, c = pose(gen, B, 20, 30, J=J, device=backend.device)
        bones = [(e % max(J, 1), (e * 3 + 1) % max(J, 1)) for e in range(E)]
        pts, pc, bone = call(backend, "skeleton_points", j, c, bones, n)
        assert pts.shape == (B, E * n, 2) and pc.shape == (B, E * n) and bone.shape == (E * n,)
        assert bone.device == j.device
        assert torch.equal(bone.cpu(), torch.arange(E).repeat_interleave(n))

    def test_closed_form(self, any_backend, gen):
        """n points evenly spaced, ends exactly the joints, confidence linear; n = 1: the midpoint."""
        d = any_backend.device
        j = torch.tensor([[[1.0, 2.0], [8.0, 16.0], [-3.0, 5.0]]], device=d)
        c = torch.tensor([[1.0, 0.0, 0.5]], device=d)
        pts, pc, bone = call(any_backend, "skeleton_points", j, c, [(0, 1), (2, 0)], 8)
        k = torch.arange(8, dtype=torch.float64) / 7
        exp0 = torch.stack([1 + 7 * k, 2 + 14 * k], -1)
        exp1 = torch.stack([-3 + 4 * k, 5 - 3 * k], -1)
        assert_close(pts[0].cpu().double(), torch.cat([exp0, exp1]), atol=1e-5, rtol=1e-6, msg="points")
        assert_close(pc[0].cpu().double(), torch.cat([1 - k, 0.5 + 0.5 * k]), atol=1e-6, rtol=1e-6, msg="conf")
        # the ends are the joints, bit for bit
        for q, jn in ((0, 0), (7, 1), (8, 2), (15, 0)):
            assert torch.equal(pts[0, q], j[0, jn]), f"point {q} is not joint {jn}"
            assert pc[0, q] == c[0, jn]
        mid, mc, _ = call(any_backend, "skeleton_points", j, c, [(0, 1)], 1)
        assert torch.equal(mid[0, 0].cpu(), torch.tensor([4.5, 9.0])) and mc[0, 0].item() == 0.5
        two, _, _ = call(any_backend, "skeleton_points", j, c, [(0, 1)], 2)
        assert torch.equal(two[0].cpu(), j[0, :2].cpu())

    def test_default_bones_and_layouts(self, gen):
        j, c = pose(gen, 2, 20, 30)
        pts, pc, bone = hk.skeleton_points(j, c)  # default: COCO-17's 16 bones, 8 points
        assert pts.shape == (2, 16 * 8, 2)
        p2, _, _ = hk.skeleton_points(j, c, COCO17.bones_tensor(), 8)
        p3, _, _ = hk.skeleton_points(j, c, COCO17)
        assert torch.equal(pts, p2) and torch.equal(pts, p3)
        jb, cb = pose(gen, 1, 20, 30, J=33)
        pb, _, _ = hk.skeleton_points(jb, cb, BLAZEPOSE33, 3)
        assert pb.shape == (1, len(BLAZEPOSE33.bones) * 3, 2)

    @pytest.mark.parametrize("dtype", FLOATS)
    def test_against_reference(self, backend, gen, dtype):
        float_case(backend, dtype)
        for B, J, n in ((2, 17, 8), (3, 17, 5), (1, 17, 1)):
            j, c = pose(gen, B, 40, 50, J=J, dtype=dtype, device=backend.device)
            bones = COCO17.bones_tensor()
            out = call(backend, "skeleton_points", noncontig(j), noncontig(c), bones, n)
            exp = ref.skeleton_points(j, c, bones, n)
            for a, e, name in zip(out, exp, ("points", "conf", "bone")):
                assert_close(a.cpu(), e.cpu(), msg=f"skeleton_points {name} {backend} n={n}")

    def test_gradcheck(self, backend, gen):
        """float64 gradcheck where float64 runs; elsewhere the float32 VJP against the reference's."""
        bones = [(0, 1), (1, 2), (2, 0), (3, 3), (1, 3)]  # a shared joint, a degenerate bone j -> j
        if backend.float64:
            j, c = pose(gen, 2, 10, 10, J=4, dtype=torch.float64)
            j.requires_grad_()
            c.requires_grad_()
            for n in (1, 3):
                assert torch.autograd.gradcheck(
                    lambda a, b: call(backend, "skeleton_points", a, b, bones, n)[:2], (j, c))
        j, c = pose(gen, 2, 10, 10, J=4, device=backend.device)
        gp = torch.randn(2, len(bones) * 4, 2, generator=gen).to(backend.device)
        gc = torch.randn(2, len(bones) * 4, generator=gen).to(backend.device)

        def vjp(fn):
            a, b = j.clone().requires_grad_(), c.clone().requires_grad_()
            return torch.autograd.grad(fn(a, b)[:2], (a, b), (gp, gc))

        got = vjp(lambda a, b: call(backend, "skeleton_points", a, b, bones, 4))
        exp = vjp(lambda a, b: ref.skeleton_points(a, b, torch.tensor(bones), 4))
        for g, e, name in zip(got, exp, ("joints", "conf")):
            assert_close(g.cpu(), e.cpu(), msg=f"grad {name} {backend}")

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        ops = getattr(torch.ops, ns)
        j, c = pose(gen, 2, 10, 12, J=5, device=dev)
        bones = torch.tensor([[0, 1], [1, 2], [3, 4], [2, 2]], device=dev)
        torch.library.opcheck(ops.skeleton_points.default, (j.requires_grad_(), c.requires_grad_(), bones, 3))
        torch.library.opcheck(ops._skeleton_points_backward.default,
                              (torch.randn(2, 12, 2, device=dev), torch.randn(2, 12, device=dev), bones, 5, 3))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        j, c = pose(gen, 2, 10, 12, device=case.device)
        f = torch.compile(lambda a, b: hk.skeleton_points(a, b, backend=case.name, points_per_bone=4), fullgraph=True,
                          backend=compile_backend)
        jj = j.clone().requires_grad_()
        out = f(jj, c)
        exp = ref.skeleton_points(j, c, COCO17.bones_tensor(), 4)
        for a, e in zip(out, exp):
            assert_close(a.detach().cpu(), e.cpu(), msg=f"compiled skeleton_points {case}")
        (g,) = torch.autograd.grad(out[0].sum(), jj)
        assert torch.isfinite(g).all() and g.shape == j.shape

    def test_exception(self, any_backend):
        d = any_backend.device
        j, c = torch.rand(1, 5, 2, device=d), torch.rand(1, 5, device=d)
        sp = lambda *a, **k: call(any_backend, "skeleton_points", *a, **k)  # noqa: E731
        with pytest.raises(ValueError, match=r"joints: expected a 3-D tensor \[B, J, 2\]"):
            sp(torch.rand(1, 5, 3, device=d), c, [(0, 1)])
        with pytest.raises(ValueError, match=r"conf: expected shape \[1, 5\]"):
            sp(j, torch.rand(1, 4, device=d), [(0, 1)])
        with pytest.raises(TypeError, match="joints: expected a floating-point"):
            sp(j.long(), c, [(0, 1)])
        with pytest.raises(TypeError, match="conf: expected dtype"):
            sp(j, c.double(), [(0, 1)])
        with pytest.raises(ValueError, match=r"bones: expected joint indices in \[0, 5\)"):
            sp(j, c, [(0, 5)])
        with pytest.raises(ValueError, match=r"bones: expected joint indices in \[0, 5\)"):
            sp(j, c, torch.tensor([[0, 1], [-1, 2]], device=d))
        with pytest.raises(ValueError, match=r"bones: expected a 2-D tensor \[E, 2\]"):
            sp(j, c, torch.tensor([0, 1, 2], device=d))
        with pytest.raises(TypeError, match="bones: expected an integer tensor"):
            sp(j, c, torch.tensor([[0.0, 1.0]], device=d))
        with pytest.raises(ValueError, match=r"bones: expected \(a, b\) pairs"):
            sp(j, c, [(0, 1, 2)])
        for n in (0, -1, 2.0, True):
            with pytest.raises(ValueError, match="points_per_bone: expected an int >= 1"):
                sp(j, c, [(0, 1)], n)
        with pytest.raises(TypeError, match="joints: expected a torch.Tensor"):
            sp(np.zeros((1, 5, 2), np.float32), c, [(0, 1)])

    def test_exception_dispatcher(self):
        """torch.ops.hmore.* check their inputs too (no crash when the Python checks are bypassed)."""
        skip_unavailable(BackendCase("cpu", "cpu"))
        j, c = torch.rand(1, 5, 2), torch.rand(1, 5)
        with pytest.raises(ValueError, match=r"bones: expected joint indices in \[0, 5\).*got 7"):
            torch.ops.hmore.skeleton_points(j, c, torch.tensor([[0, 7]]), 8)
        with pytest.raises(ValueError, match="points_per_bone"):
            torch.ops.hmore.skeleton_points(j, c, torch.tensor([[0, 1]]), 0)
        with pytest.raises(TypeError, match=r"joints.*Half"):
            torch.ops.hmore.skeleton_points(j.half(), c.half(), torch.tensor([[0, 1]]), 8)
        with pytest.raises(ValueError, match="grad_points: expected shape"):
            torch.ops.hmore._skeleton_points_backward(torch.rand(1, 7, 2), torch.rand(1, 7), torch.tensor([[0, 1]]), 5,
                                                      8)

    @pytest.mark.parametrize("dtype", LOWP)
    def test_low_precision(self, backend, gen, dtype):
        if not backend.low_precision:
            pytest.skip("float16/bfloat16 run on GPU backends only")
        j, c = pose(gen, 2, 40, 50, dtype=dtype, device=backend.device)
        pts, pc, _ = call(backend, "skeleton_points", j, c)
        e, ec, _ = ref.skeleton_points(j.float(), c.float(), COCO17.bones_tensor(), 8)
        assert pts.dtype == dtype
        assert_close(pts.float().cpu(), e.cpu(), atol=0.5, rtol=1e-2, msg=f"{dtype} points")


# ================================================================================================
class TestSkeletonMatch:
    def test_smoke(self, backend):
        d = backend.device
        pts = torch.tensor([[[1.0, 1.0], [6.0, 3.0]]], device=d)
        conf = torch.tensor([[0.9, 0.9]], device=d)
        m = torch.ones(1, 1, 4, 8, dtype=torch.bool, device=d)
        idx = call(backend, "skeleton_match", pts, conf, m)
        assert idx.shape == (1, 4, 8) and idx.dtype == torch.int64
        # equal weights: the nearer point; x <= 3 is nearer (1, 1) at every row
        assert (idx[0, :, :3] == 0).all() and (idx[0, :, 5:] == 1).all()

    def test_cardinality(self, any_backend, gen):
        d = any_backend.device
        f = lambda p, c, m: call(any_backend, "skeleton_match", p, c, m)  # noqa: E731
        assert f(torch.rand(0, 8, 2, device=d), torch.rand(0, 8, device=d),
                 torch.ones(0, 1, 5, 6, dtype=torch.bool, device=d)).shape == (0, 5, 6)
        assert f(torch.rand(2, 8, 2, device=d), torch.rand(2, 8, device=d),
                 torch.ones(2, 1, 0, 6, dtype=torch.bool, device=d)).shape == (2, 0, 6)
        assert f(torch.rand(2, 8, 2, device=d), torch.rand(2, 8, device=d),
                 torch.ones(2, 1, 5, 0, dtype=torch.bool, device=d)).shape == (2, 5, 0)
        out = f(torch.rand(2, 0, 2, device=d), torch.rand(2, 0, device=d),
                torch.ones(2, 1, 5, 6, dtype=torch.bool, device=d))  # Q = 0: all -1
        assert out.shape == (2, 5, 6) and (out == -1).all()
        j, c = pose(gen, 2, 5, 6, device=d)  # E = 0 bones
        pts, pc, _ = call(any_backend, "skeleton_points", j, c, [])
        out = f(pts, pc, torch.ones(2, 1, 5, 6, dtype=torch.bool, device=d))
        assert out.shape == (2, 5, 6) and (out == -1).all()

    @pytest.mark.parametrize("dtype", FLOATS)
    def test_against_reference(self, backend, gen, dtype):
        float_case(backend, dtype)
        shapes = [(1, 9, 13, 3), (2, 1, 7, 2)] if backend.interpreted else [(2, 31, 47, 8), (1, 1, 9, 8), (3, 17, 1, 4),
                                                                             (1, 64, 70, 8)]
        for B, H, W, n in shapes:
            pts, pc, m = match_inputs(gen, B, H, W, n=n, dtype=dtype, device=backend.device)
            out = call(backend, "skeleton_match", pts, pc, m)
            assert_idx_equal(out, ref.skeleton_match(pts, pc, m), f"skeleton_match {backend} {B}x{H}x{W} n={n} {dtype}")

    def test_against_bruteforce(self, any_backend, gen):
        """The NumPy per-pixel loop: random points (some outside the image, some excluded), dense mask."""
        d = any_backend.device
        for dtype in (torch.float32, torch.float64) if any_backend.float64 else (torch.float32,):
            B, H, W, Q = 2, 9, 12, 24
            pts = (rand(gen, B, Q, 2, dtype=torch.float64, low=-0.3, high=1.3) * torch.tensor([W, H])).to(dtype)
            conf = rand(gen, B, Q, dtype=dtype)
            conf[:, ::5] = 1e-4  # == eps: excluded
            conf[:, 1::7] = 1.0  # capped at 1 - eps
            m = blob_mask(gen, B, H, W, density=0.7)
            out = call(any_backend, "skeleton_match", pts.to(d), conf.to(d), m.to(d))
            assert_idx_equal(out, brute_match(pts, conf, m), f"skeleton_match vs NumPy {any_backend} {dtype}")

    def test_ties(self, any_backend):
        """Exact ties go to the lowest index, whatever the order of the points."""
        d = any_backend.device
        H, W = 5, 9
        m = torch.ones(1, 1, H, W, dtype=torch.bool, device=d)
        for order in ((0, 1), (1, 0)):
            xy = torch.tensor([[2.0, 2.0], [6.0, 2.0]])[list(order)]
            conf = torch.tensor([[0.7, 0.7]])
            idx = call(any_backend, "skeleton_match", xy[None].to(d), conf.to(d), m)[0].cpu()
            # column x = 4 is equidistant from both points on every row: the lower index wins
            assert (idx[:, 4] == 0).all(), f"order {order}: {idx[:, 4].tolist()}"
            near_left = 0 if order == (0, 1) else 1
            assert (idx[:, :4] == near_left).all() and (idx[:, 5:] == 1 - near_left).all()
        # duplicated points: the first copy everywhere
        xy = torch.tensor([[[3.0, 1.0], [3.0, 1.0], [3.0, 1.0]]], device=d)
        idx = call(any_backend, "skeleton_match", xy, torch.full((1, 3), 0.5, device=d), m)
        assert (idx == 0).all()
        # confidences above 1 - eps are capped: 1.0 and 0.99995 weigh the same (eps = 1e-4), so a tie
        idx = call(any_backend, "skeleton_match", xy[:, :2], torch.tensor([[0.99995, 1.0]], device=d), m)
        assert (idx == 0).all()
        # symmetric about the pixel diagonally (four points at distance sqrt(2) around the pixel (4, 2))
        sq = torch.tensor([[[5.0, 3.0], [3.0, 3.0], [5.0, 1.0], [3.0, 1.0]]], device=d)
        idx = call(any_backend, "skeleton_match", sq, torch.full((1, 4), 0.5, device=d), m)
        assert idx[0, 2, 4].item() == 0

    def test_confidence_weighting(self, any_backend):
        """A confident far point beats an unsure near one; c <= eps never matches; all low -> -1."""
        d = any_backend.device
        m = torch.ones(1, 1, 1, 11, dtype=torch.bool, device=d)
        xy = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]], device=d)
        # w0 = -log 0.9 = 0.105, w1 = -log 0.1 = 2.30: the switch is at x = 10 * w1 / (w0 + w1) = 9.56
        idx = call(any_backend, "skeleton_match", xy, torch.tensor([[0.9, 0.1]], device=d), m)[0, 0].cpu()
        assert idx.tolist() == [0] * 10 + [1]
        idx = call(any_backend, "skeleton_match", xy, torch.tensor([[1e-4, 0.1]], device=d), m)
        assert (idx == 1).all()
        idx = call(any_backend, "skeleton_match", xy, torch.tensor([[1e-4, 0.0]], device=d), m)
        assert (idx == -1).all()
        idx = call(any_backend, "skeleton_match", xy, torch.tensor([[0.25, 0.2]], device=d), m, eps=0.3)
        assert (idx == -1).all()

    def test_masks(self, any_backend, gen):
        """bool, uint8 and float masks (nonzero = inside), an empty mask, non-contiguous / channels-last."""
        d = any_backend.device
        pts, pc, m = match_inputs(gen, 2, 7, 10, n=2, device=d)
        exp = ref.skeleton_match(pts, pc, m)
        assert ((exp >= 0) == m[:, 0]).all()
        f = lambda mm: call(any_backend, "skeleton_match", pts, pc, mm)  # noqa: E731
        assert_idx_equal(f(m.to(torch.uint8) * 3), exp, "uint8 mask")
        soft = m.float() * rand(gen, 2, 1, 7, 10, low=0.01, high=1.0).to(d)
        assert_idx_equal(f(soft), exp, "float mask")
        assert_idx_equal(f(layout(m.float(), "channels_last")), exp, "channels-last mask")
        assert_idx_equal(f(noncontig(m)), exp, "non-contiguous mask")
        assert (f(torch.zeros_like(m)) == -1).all()
        assert_idx_equal(call(any_backend, "skeleton_match", noncontig(pts.transpose(1, 2)).transpose(1, 2),
                              noncontig(pc), m), exp, "non-contiguous points")

    def test_nan_points(self, any_backend):
        d = any_backend.device
        xy = torch.tensor([[[float("nan"), 1.0], [4.0, 1.0]]], device=d)
        idx = call(any_backend, "skeleton_match", xy, torch.full((1, 2), 0.5, device=d),
                   torch.ones(1, 1, 3, 6, dtype=torch.bool, device=d))
        assert (idx == 1).all()

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        pts, pc, m = match_inputs(gen, 2, 5, 7, n=2, device=dev)
        torch.library.opcheck(getattr(torch.ops, ns).skeleton_match.default, (pts, pc, m, 1e-4))
        torch.library.opcheck(getattr(torch.ops, ns).skeleton_match.default, (pts, pc, m.float(), 0.01))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        pts, pc, m = match_inputs(gen, 2, 6, 9, n=2, device=case.device)
        f = torch.compile(lambda p, c, mm: hk.skeleton_match(p, c, mm, backend=case.name), fullgraph=True,
                          backend=compile_backend)
        assert_idx_equal(f(pts, pc, m), ref.skeleton_match(pts, pc, m), f"compiled skeleton_match {case}")

    def test_exception(self, any_backend):
        d = any_backend.device
        p, c, m = torch.rand(2, 6, 2, device=d), torch.rand(2, 6, device=d), torch.ones(2, 1, 4, 5, dtype=torch.bool,
                                                                                         device=d)
        sm = lambda *a, **k: call(any_backend, "skeleton_match", *a, **k)  # noqa: E731
        with pytest.raises(ValueError, match=r"points: expected a 3-D tensor \[B, Q, 2\]"):
            sm(p[0], c, m)
        with pytest.raises(ValueError, match=r"conf: expected shape \[2, 6\]"):
            sm(p, c[:, :5], m)
        with pytest.raises(TypeError, match="points: expected a floating-point"):
            sm(p.long(), c, m)
        with pytest.raises(ValueError, match=r"mask: expected a 4-D tensor \[B, 1, H, W\]"):
            sm(p, c, m[:, 0])
        with pytest.raises(ValueError, match=r"mask: expected a 4-D tensor \[B, 1, H, W\]"):
            sm(p, c, m.expand(2, 2, 4, 5))
        with pytest.raises(ValueError, match="mask: expected batch size 2"):
            sm(p, c, m[:1])
        with pytest.raises(TypeError, match="mask: expected a bool, uint8 or floating-point"):
            sm(p, c, m.to(torch.int32))
        for eps in (0.0, 0.5, -1e-3, float("nan"), "x"):
            with pytest.raises(ValueError, match=r"eps: expected a float in \(0, 0.5\)"):
                sm(p, c, m, eps)
        for args, name in (((p.clone().requires_grad_(), c, m), "points"), ((p, c.clone().requires_grad_(), m), "conf"),
                           ((p, c, m.float().requires_grad_()), "mask")):
            with pytest.raises(ValueError, match=f"{name}: skeleton_match produces training targets"):
                sm(*args)

    def test_exception_dispatcher(self):
        skip_unavailable(BackendCase("cpu", "cpu"))
        p, c, m = torch.rand(2, 6, 2), torch.rand(2, 6), torch.ones(2, 1, 4, 5, dtype=torch.bool)
        with pytest.raises(ValueError, match="points: skeleton_match produces training targets"):
            torch.ops.hmore.skeleton_match(p.requires_grad_(), c, m, 1e-4)
        with pytest.raises(ValueError, match="eps"):
            torch.ops.hmore.skeleton_match(p.detach(), c, m, 0.7)
        with pytest.raises(ValueError, match="mask: expected batch size 2"):
            torch.ops.hmore.skeleton_match(p.detach(), c, m[:1], 1e-4)
        with pytest.raises(TypeError, match="conf: expected dtype"):
            torch.ops.hmore.skeleton_match(p.detach(), c.double(), m, 1e-4)
        with pytest.raises(TypeError, match=r"points.*Half"):
            torch.ops.hmore.skeleton_match(p.detach().half(), c.half(), m, 1e-4)

    @pytest.mark.parametrize("dtype", LOWP)
    def test_low_precision(self, backend, gen, dtype):
        """float16/bfloat16 points are matched on their float32 values."""
        if not backend.low_precision:
            pytest.skip("float16/bfloat16 run on GPU backends only")
        pts, pc, m = match_inputs(gen, 2, 31, 40, device=backend.device)
        pts, pc = pts.to(dtype), pc.to(dtype)
        out = call(backend, "skeleton_match", pts, pc, m)
        assert_idx_equal(out, ref.skeleton_match(pts.float(), pc.float(), m), f"{dtype} match")


# ================================================================================================
class TestSkeletonOffsetMap:
    def test_smoke(self, backend):
        d = backend.device
        p0 = torch.tensor([[[1.0, 1.0], [6.0, 3.0]]], device=d)
        p1 = p0 + torch.tensor([[[0.5, -1.0], [2.0, 3.0]]], device=d)
        m = torch.ones(1, 1, 4, 8, dtype=torch.bool, device=d)
        m[..., 0, 0] = False
        off, valid = call(backend, "skeleton_offset_map", p0, p1, torch.full((1, 2), 0.8, device=d), m)
        assert off.shape == (1, 2, 4, 8) and valid.shape == (1, 1, 4, 8) and valid.dtype == torch.bool
        assert torch.equal(valid, m)
        assert off[0, :, 0, 0].tolist() == [0.0, 0.0]
        assert off[0, :, 3, 0].tolist() == [0.5, -1.0] and off[0, :, 3, 7].tolist() == [2.0, 3.0]

    def test_cardinality(self, any_backend):
        d = any_backend.device
        f = lambda p, c, m: call(any_backend, "skeleton_offset_map", p, p + 1, c, m)  # noqa: E731
        off, valid = f(torch.rand(0, 4, 2, device=d), torch.rand(0, 4, device=d), torch.ones(0, 1, 3, 5, device=d))
        assert off.shape == (0, 2, 3, 5) and valid.shape == (0, 1, 3, 5)
        off, valid = f(torch.rand(2, 4, 2, device=d), torch.rand(2, 4, device=d), torch.ones(2, 1, 0, 5, device=d))
        assert off.shape == (2, 2, 0, 5) and valid.shape == (2, 1, 0, 5)
        off, valid = f(torch.rand(2, 0, 2, device=d), torch.rand(2, 0, device=d), torch.ones(2, 1, 3, 5, device=d))
        assert off.shape == (2, 2, 3, 5) and (off == 0).all() and not valid.any()

    @pytest.mark.parametrize("dtype", FLOATS)
    def test_against_reference(self, backend, gen, dtype):
        float_case(backend, dtype)
        shapes = [(1, 9, 13, 3)] if backend.interpreted else [(2, 31, 47, 8), (3, 17, 1, 4), (1, 1, 9, 8)]
        for B, H, W, n in shapes:
            p0, pc, m = match_inputs(gen, B, H, W, n=n, dtype=dtype, device=backend.device)
            p1 = p0 + rand(gen, *p0.shape, dtype=dtype, low=-3, high=3).to(backend.device)
            off, valid = call(backend, "skeleton_offset_map", p0, p1, pc, m)
            eo, ev = ref.skeleton_offset_map(p0, p1, pc, m)
            assert_close(valid.cpu(), ev.cpu(), msg=f"valid {backend}")
            assert_close(off.cpu(), eo.cpu(), atol=0, rtol=0, msg=f"offset {backend}")  # the same subtraction
            # consistent with skeleton_match: the offset of the matched point
            idx = call(backend, "skeleton_match", p0, pc, m).cpu()
            assert torch.equal(valid[:, 0].cpu(), idx >= 0)
            k = (p1 - p0).cpu()
            g = torch.stack([k[b][idx[b].clamp_min(0)] for b in range(B)]).permute(0, 3, 1, 2) * valid.cpu()
            assert_close(off.cpu(), g, atol=0, rtol=0, msg="offset == K[idx]")

    def test_translation(self, any_backend, gen):
        """A skeleton moved rigidly by (dx, dy) gives that offset at every matched pixel."""
        p0, pc, m = match_inputs(gen, 2, 8, 11, n=3, device=any_backend.device)
        shift = torch.tensor([1.5, -2.25], device=any_backend.device)
        off, valid = call(any_backend, "skeleton_offset_map", p0, p0 + shift, pc, m)
        v = valid[:, 0]
        assert v.any() and torch.equal(v, m[:, 0].to(v.device))  # every mask pixel has a confident point
        assert torch.allclose(off[:, 0][v], torch.full_like(off[:, 0][v], 1.5), atol=1e-5)
        assert torch.allclose(off[:, 1][v], torch.full_like(off[:, 1][v], -2.25), atol=1e-5)
        assert (off[:, 0][~v] == 0).all() and (off[:, 1][~v] == 0).all()

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        p0, pc, m = match_inputs(gen, 2, 5, 7, n=2, device=dev)
        torch.library.opcheck(getattr(torch.ops, ns).skeleton_offset_map.default, (p0, p0 * 1.5, pc, m, 1e-4))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        p0, pc, m = match_inputs(gen, 2, 6, 9, n=2, device=case.device)
        f = torch.compile(lambda a, b, c, mm: hk.skeleton_offset_map(a, b, c, mm, backend=case.name), fullgraph=True,
                          backend=compile_backend)
        off, valid = f(p0, p0 * 2, pc, m)
        eo, ev = ref.skeleton_offset_map(p0, p0 * 2, pc, m)
        assert_close(off.cpu(), eo.cpu(), msg=f"compiled offset {case}")
        assert_close(valid.cpu(), ev.cpu(), msg=f"compiled valid {case}")

    def test_exception(self, any_backend):
        d = any_backend.device
        p, c, m = torch.rand(2, 6, 2, device=d), torch.rand(2, 6, device=d), torch.ones(2, 1, 4, 5, dtype=torch.bool,
                                                                                         device=d)
        so = lambda *a, **k: call(any_backend, "skeleton_offset_map", *a, **k)  # noqa: E731
        with pytest.raises(ValueError, match=r"points_t1: expected shape \(2, 6, 2\)"):
            so(p, p[:, :5], c, m)
        with pytest.raises(TypeError, match="points_t1: expected dtype"):
            so(p, p.double(), c, m)
        with pytest.raises(ValueError, match=r"points_t: expected a 3-D tensor"):
            so(p[0], p[0], c, m)
        with pytest.raises(ValueError, match="eps"):
            so(p, p, c, m, 0.5)
        with pytest.raises(ValueError, match="points_t1: skeleton_offset_map produces training targets"):
            so(p, p.clone().requires_grad_(), c, m)

    @pytest.mark.parametrize("dtype", LOWP)
    def test_low_precision(self, backend, gen, dtype):
        if not backend.low_precision:
            pytest.skip("float16/bfloat16 run on GPU backends only")
        p0, pc, m = match_inputs(gen, 2, 31, 40, device=backend.device)
        p0, pc = p0.to(dtype), pc.to(dtype)
        off, valid = call(backend, "skeleton_offset_map", p0, p0 + 1, pc, m)
        eo, ev = ref.skeleton_offset_map(p0, p0 + 1, pc, m)
        assert off.dtype == dtype
        assert_close(valid.cpu(), ev.cpu(), msg=f"{dtype} valid")
        assert_close(off.cpu(), eo.cpu(), atol=0, rtol=0, msg=f"{dtype} offset")


def test_no_cost_matrix_on_fast_backends():
    """docs/ops.md: the fast backends never form [B, H*W, Q]. A 1088 x 1920 map with 1024 points would need
    8 GiB for it in float32; the cpu backend runs it in a few row buffers."""
    skip_unavailable(BackendCase("cpu", "cpu"))
    g = torch.Generator().manual_seed(0)
    B, H, W, Q = 1, 1088, 1920, 1024
    pts = torch.rand(B, Q, 2, generator=g) * torch.tensor([W, H])
    conf = torch.rand(B, Q, generator=g)
    m = torch.zeros(B, 1, H, W, dtype=torch.bool)
    m[..., 500:502, :] = True  # two rows: a quick run whatever the memory behaviour
    idx = hk.skeleton_match(pts, conf, m, backend="cpu")
    assert torch.equal(idx, ref.skeleton_match(pts, conf, m))  # the reference only evaluates mask pixels
    assert (idx[:, :500] == -1).all() and (idx[:, 502:] == -1).all() and (idx[:, 500:502] >= 0).all()
