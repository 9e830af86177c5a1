"""Regression tests of issues 14 and 11: crashes, silent wrong answers, the NaN policy (docs/ops.md, "Non-finite
values and value checks"), the integer-argument limits, and the shared validation layer.

Every test here failed before its fix. Snippets that used to kill the process (SIGFPE, SIGSEGV) run in a
subprocess, so a regression fails this test instead of the whole session. Each backend is compared with
the reference on the same input (``backend`` fixture: cpu, triton through the interpreter, cuda on a GPU).
"""
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hmore_kernels as hk
from hmore_kernels import _validate
from common import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_snippet(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter importing this checkout's hmore_kernels."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def dev(backend):
    return backend.device


# ---------------------------------------------------------------------------------------------- issue 14: crashes
class TestIntegerLimits:
    # Each of these crashed the cpu backend (SIGFPE / SIGSEGV) or gave a wrong shape: Python ints were cut
    # to 32 bits in the C++ glue. Now a ValueError naming the argument and its limit, through the Python
    # API and through the dispatcher op directly.
    CRASHES = {
        "patch_centroids_2^32": "hk.patch_centroids(torch.rand(1, 1, 4, 4), 2**32, backend='cpu')",
        "patch_centroids_2^32+1": "hk.patch_centroids(torch.rand(1, 1, 4, 4), 2**32 + 1, backend='cpu')",
        "patch_centroids_2^31_backward":
            "w = torch.rand(1, 1, 4, 4, requires_grad=True); c, m = hk.patch_centroids(w, 2**31, backend='cpu'); "
            "(c.sum() + m.sum()).backward()",
        "local_corr_stride": "f = torch.randn(1, 4, 5, 5); hk.local_corr(f, f, 1, stride=2**32, backend='cpu')",
        "local_corr_stride+1": "f = torch.randn(1, 4, 5, 5); hk.local_corr(f, f, 1, stride=2**32 + 1, backend='cpu')",
        "local_corr_dilation": "f = torch.randn(1, 4, 5, 5); hk.local_corr(f, f, 1, dilation=2**32 + 1, backend='cpu')",
        "op_patch_centroids": "torch.ops.hmore.patch_centroids(torch.rand(1, 1, 4, 4), 2**32, None)",
        "op_local_corr": "f = torch.randn(1, 4, 5, 5); torch.ops.hmore.local_corr(f, f, 1, 2**32, 1, None)",
    }

    def test_crash_snippets_raise_value_error(self):
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable")
        # One interpreter for all snippets (each start costs seconds of CI); each prints its result
        # before the next runs, so a crash names the snippet that killed the process.
        body = "".join(f"""
try:
    {code}
except ValueError as e:
    print({name!r}, "VALUEERROR", e, flush=True)
else:
    print({name!r}, "NO ERROR", flush=True)
""" for name, code in sorted(self.CRASHES.items()))
        r = run_snippet("import torch, hmore_kernels as hk\n" + body)
        lines = r.stdout.splitlines()
        assert r.returncode == 0, f"the process died (rc {r.returncode}) after {lines[-1:]}: {r.stderr[-2000:]}"
        assert len(lines) == len(self.CRASHES), r.stdout
        for name, line in zip(sorted(self.CRASHES), lines):
            arg = "patch_size" if "patch" in name else ("dilation" if "dilation" in name else "stride")
            assert line.startswith(f"{name} VALUEERROR {arg}: expected an int <="), line

    LIMITS = [
        ("mask_boundary", "width", lambda v: hk.mask_boundary(torch.ones(1, 1, 3, 3, dtype=torch.bool), "inner", v)),
        ("flow_edges", "band", lambda v: hk.flow_edges(torch.randn(1, 2, 3, 3), torch.ones(1, 1, 3, 3, dtype=torch.bool), v)),
        ("corr_pyramid", "num_levels", lambda v: hk.corr_pyramid(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3), v)),
        ("corr_lookup_otf", "radius", lambda v: hk.corr_lookup_otf(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3),
                                                                    torch.zeros(1, 2, 3, 3), v, 1)),
        ("local_corr", "max_displacement", lambda v: hk.local_corr(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3), v)),
        ("patch_centroid_chamfer", "patch_sizes", lambda v: hk.patch_centroid_chamfer(torch.rand(1, 1, 4, 4),
                                                                                     torch.rand(1, 1, 4, 4), [v])),
        ("skeleton_points", "points_per_bone", lambda v: hk.skeleton_points(torch.rand(1, 17, 2), torch.rand(1, 17), None, v)),
    ]

    @pytest.mark.parametrize("backend_name", ["reference", "cpu"])
    @pytest.mark.parametrize("op,arg,call", LIMITS, ids=[l[0] for l in LIMITS])
    def test_same_limit_on_every_backend(self, op, arg, call, backend_name):
        # The limit is enforced before the backend is chosen: the same value is refused with the same
        # message by every backend (before, num_levels > 62 was refused by cpu only, band=2**40 accepted).
        limit = _validate.INT_LIMITS[arg][0]
        big = 2**40 if arg in ("band", "width", "points_per_bone") else limit + 1
        with pytest.raises(ValueError, match=rf"^{arg}: expected an int <= "):
            import functools

            functools.partial(call)(big)

    def test_kernel_glue_limits_match_python(self):
        # csrc/common.h repeats the limits for direct torch.ops.hmore callers.
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable")
        f = torch.randn(1, 2, 3, 3)
        for args, arg in (((f, f, 1025, 1, 1, None), "max_displacement"), ((f, f, 1, 1, 2**20 + 1, None), "dilation")):
            with pytest.raises(ValueError, match=f"{arg}: expected an int <= {_validate.INT_LIMITS[arg][0]}"):
                torch.ops.hmore.local_corr(*args)
        m = torch.ones(1, 1, 3, 3, dtype=torch.bool)
        with pytest.raises(ValueError, match=f"width: expected an int <= {_validate.INT_LIMITS['width'][0]}"):
            torch.ops.hmore.mask_boundary(m, "inner", 2**30)
        with pytest.raises(ValueError, match=f"band: expected an int <= {_validate.INT_LIMITS['band'][0]}"):
            torch.ops.hmore.flow_edges(torch.randn(1, 2, 3, 3), m, 2**40, True)

    def test_bool_is_not_an_int(self):
        with pytest.raises(ValueError, match="width"):
            hk.mask_boundary(torch.ones(1, 1, 3, 3, dtype=torch.bool), "inner", True)


# ---------------------------------------------------------------------------------------------- issue 14: disagreements
def test_corr_pyramid_backward_zero_channels(backend):
    f1 = torch.randn(1, 0, 2, 2, device=dev(backend), requires_grad=True)
    f2 = torch.randn(1, 0, 3, 3, device=dev(backend), requires_grad=True)
    sum(p.sum() for p in hk.corr_pyramid(f1, f2, 2, backend=backend.name)).backward()
    assert f1.grad.shape == f1.shape and f2.grad.shape == f2.shape
    blk = hk.CorrBlock(f1.detach().requires_grad_(), f2.detach().requires_grad_(), 2, 1, mode="allpairs",
                       backend=backend.name)
    blk(torch.zeros(1, 2, 2, 2, device=dev(backend))).sum().backward()


def test_sobel_differences_before_weighting(backend):
    # x[1,0] = x[1,2] = 3e38: the true d/dx at the centre is 0; weighting first overflowed to inf - inf = NaN.
    x = torch.zeros(1, 1, 3, 3, device=dev(backend))
    x[0, 0, 1, 0] = x[0, 0, 1, 2] = 3e38
    out = hk.sobel(x, backend=backend.name)
    assert_close(out.cpu(), hk.sobel(x.cpu(), backend="reference"))
    assert out[0, 0, 0, 1, 1].item() == 0.0
    # a finite image with |d/dx| ~ 1.5e38: the magnitude is inf (the reference's), not 0
    y = torch.zeros(1, 1, 3, 3, device=dev(backend))
    y[0, 0, :, 2], y[0, 0, :, 0] = 1.5e38, -1.5e38
    gm = hk.gradient_magnitude(y, backend=backend.name)
    assert math.isinf(gm[0, 0, 1, 1].item())
    assert_close(gm.cpu(), hk.gradient_magnitude(y.cpu(), backend="reference"))


def test_mask_boundary_nan_soft_mask(backend):
    m = torch.full((1, 1, 3, 3), 0.5, device=dev(backend))
    m[0, 0, 1, 1] = math.nan
    m[0, 0, 0, 0] = 1
    for mode in ("inner", "outer", "thick"):
        out = hk.mask_boundary(m, mode, 1, backend=backend.name).cpu()
        ref = hk.mask_boundary(m.cpu(), mode, 1, backend="reference")
        assert torch.equal(out.isnan(), ref.isnan()), (mode, out, ref)
        assert out.isnan().all(), (mode, out)  # every window holds the NaN pixel


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_lookup_nonfinite_coordinate_gives_nan_taps(backend, value, gen):
    f1 = torch.randn(1, 3, 2, 2, generator=gen).to(dev(backend))
    f2 = torch.randn(1, 3, 4, 4, generator=gen).to(dev(backend))
    c = torch.rand(1, 2, 2, 2, generator=gen).to(dev(backend)) * 3
    c[0, 0, 0, 0] = value
    ref = hk.corr_lookup_otf(f1.cpu(), f2.cpu(), c.cpu(), 1, 2, backend="reference")
    assert ref[0, :, 0, 0].isnan().all()
    otf = hk.corr_lookup_otf(f1, f2, c, 1, 2, backend=backend.name).cpu()
    look = hk.corr_lookup(hk.corr_pyramid(f1, f2, 2, backend=backend.name), c, 1, backend=backend.name).cpu()
    for out in (otf, look):
        assert out[0, :, 0, 0].isnan().all()
        assert_close(out[..., 1:], ref[..., 1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("value", [math.inf, math.nan, 1.25])
def test_empty_level_reads_zero_for_any_coordinate(backend, value, gen):
    # fmap2 4x6 with 4 levels: 4x6, 2x3, 1x1, 0x0. The last level is empty (RAFT's avg_pool2d would raise):
    # its taps read 0 whatever the coordinate, as in the reference and the cpu kernels; the CUDA otf and
    # the Triton lookups used to give NaN there for a non-finite coordinate (0 padding x NaN weight).
    f1 = torch.randn(1, 3, 2, 2, generator=gen).to(dev(backend))
    f2 = torch.randn(1, 3, 4, 6, generator=gen).to(dev(backend))
    c = (torch.rand(1, 2, 2, 2, generator=gen) * 3).to(dev(backend))
    c[0, 1, 1, 1] = value
    r, T = 1, 9
    ref = hk.corr_lookup_otf(f1.cpu(), f2.cpu(), c.cpu(), r, 4, backend="reference")
    assert torch.equal(ref[:, 3 * T:], torch.zeros_like(ref[:, 3 * T:]))
    otf = hk.corr_lookup_otf(f1, f2, c, r, 4, backend=backend.name).cpu()
    look = hk.corr_lookup(hk.corr_pyramid(f1, f2, 4, backend=backend.name), c, r, backend=backend.name).cpu()
    for name, out in (("otf", otf), ("lookup", look)):
        assert torch.equal(out[:, 3 * T:], torch.zeros_like(out[:, 3 * T:])), (name, out[:, 3 * T:])
        assert torch.equal(out.isnan(), ref.isnan()), name
        assert_close(out.nan_to_num(), ref.nan_to_num(), atol=1e-5, rtol=1e-5)
    # The empty level adds nothing to any gradient (finite coordinates, so the other levels' are finite).
    c2 = (torch.rand(1, 2, 2, 2, generator=gen) * 3).to(dev(backend))
    g = torch.randn(1, 4 * T, 2, 2, generator=gen).to(dev(backend))
    grads = []
    for bk in ("reference", backend.name):
        a, b_, cc = (t.detach().clone().requires_grad_(True) for t in (f1, f2, c2))
        (hk.corr_lookup_otf(a, b_, cc, r, 4, backend=bk) * g).sum().backward()
        grads.append([t.grad.cpu() for t in (a, b_, cc)])
    for x, y in zip(*grads):
        assert_close(y, x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("p", [1, 3])
def test_patch_centroids_weight_gradient_precision(backend, p, gen):
    # The fuzzer's open finding: patch_centroids at p = 1 with offsets, weights' gradient 1.7e-3 off the
    # reference. Cause: d c / d w_i = (q_i - c) / m is a cancellation (exactly 0 at p = 1, where c = q);
    # every backend, the reference's autograd included, leaves rounding noise of up to
    # eps * |q| / m there. The contract (patch_centroids' docstring): within 4 * eps * (p - 1 + max|offsets|)
    # / m of the exact gradient per unit of incoming centroid gradient. Checked against float64 with
    # masses down to 1e-6, where the general relative tolerance would fail.
    B, H, W = 2, 7, 9
    w = (torch.rand(B, 1, H, W, generator=gen) * 10.0 ** -torch.randint(0, 7, (B, 1, H, W), generator=gen)).to(dev(backend))
    w[0, 0, 0, :3] = 0.0  # empty pixels (and at p = 1 empty patches: no gradient through the fallback centre)
    off = (torch.randn(B, 2, H, W, generator=gen) * 20).to(dev(backend))
    gc = torch.linspace(-1, 1, B * (-(-H // p)) * (-(-W // p)) * 2).view(B, -(-H // p), -(-W // p), 2)
    gm = torch.linspace(1, -1, gc[..., 0].numel()).view_as(gc[..., 0])

    def wgrad(bk, dtype, device):
        a = w.detach().to(device=device, dtype=dtype).requires_grad_()
        c, m = hk.patch_centroids(a, p, off.to(device=device, dtype=dtype), backend=bk)
        (g,) = torch.autograd.grad((c * gc.to(device, dtype)).sum() + (m * gm.to(device, dtype)).sum(), [a])
        return g.cpu().double(), m.detach().cpu().double()

    exact, mass = wgrad("reference", torch.float64, "cpu")
    if p == 1:  # the centroid is the pixel itself: only the mass term reaches the weights
        assert_close(exact[:, 0], gm.double(), atol=1e-6, rtol=0)  # float64 noise: eps64 * |q| / m
    m_patch = torch.nn.functional.interpolate(mass[:, None], scale_factor=p, mode="nearest")[..., :H, :W]
    bound = 4 * torch.finfo(torch.float32).eps * (p - 1 + off.abs().max().item()) / m_patch.clamp_min(1e-30)
    bound = bound * gc.abs().max().item() + 1e-6 * exact.abs()  # + float32 rounding of the mass term
    for bk in ("reference", backend.name):
        got, _ = wgrad(bk, torch.float32, dev(backend))
        err = (got - exact).abs()
        assert bool((err <= bound).all()), (bk, float((err / bound).max()))
    # not vacuous: on patches of ordinary mass (>= 0.1) it is tighter than the fuzzer's general tolerance
    assert float(bound[m_patch >= 0.1].max()) < 1e-3


@pytest.mark.parametrize("low,high,l2", [(math.inf, 10.0, False), (1.0, -math.inf, False), (math.nan, 10.0, True),
                                         (1.0, math.nan, False)])
def test_canny_nonfinite_thresholds(backend, low, high, l2):
    img = torch.rand(1, 1, 5, 5, device=dev(backend)) * 255
    for b in ("reference", backend.name):
        with pytest.raises(ValueError, match="low|high"):
            hk.canny(img, low, high, l2_gradient=l2, backend=b)


# ---------------------------------------------------------------------------------------------- issue 11: NaN policy
def _clouds(gen, device, B=2, N=40, M=33):
    x = torch.randn(B, N, 2, generator=gen).to(device)
    y = torch.randn(B, M, 2, generator=gen).to(device)
    return x, y


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nonfinite_y_point_is_never_chosen(backend, gen, value):
    x, y = _clouds(gen, dev(backend))
    y[0, 3, 0] = value
    d, i = hk.nearest_neighbors(x, y, backend=backend.name)
    dr, ir = hk.nearest_neighbors(x.cpu(), y.cpu(), backend="reference")
    assert not (ir[0] == 3).any() and not (i.cpu()[0] == 3).any()
    assert torch.equal(i.cpu(), ir)
    assert_close(d.cpu(), dr)
    # the reference used to give every point of batch 0 index -1 and distance 0 (0.245 vs 0.081)
    assert (ir[0] >= 0).all() and torch.isfinite(dr).all()
    # y -> x direction counts y's NaN point: the value is NaN for batch 0 only; one-directional is finite
    for bidir in (True, False):
        v = hk.chamfer_distance(x, y, reduction="none", bidirectional=bidir, backend=backend.name).cpu()
        vr = hk.chamfer_distance(x.cpu(), y.cpu(), reduction="none", bidirectional=bidir, backend="reference")
        assert torch.equal(v.isnan(), vr.isnan()) and bool(v[0].isnan()) == bidir and not v[1].isnan()
        assert_close(v[1], vr[1], atol=1e-5, rtol=1e-5)
        if not bidir:
            assert_close(v, vr, atol=1e-5, rtol=1e-5)


def test_nonfinite_x_point_has_nan_distance_and_index_minus_one(backend, gen):
    x, y = _clouds(gen, dev(backend))
    x[1, 5, 1] = -math.inf
    x[1, 7, 0] = math.nan
    d, i = hk.nearest_neighbors(x, y, backend=backend.name)
    dr, ir = hk.nearest_neighbors(x.cpu(), y.cpu(), backend="reference")
    for dd, ii in ((d.cpu(), i.cpu()), (dr, ir)):
        assert dd[1, 5].isnan() and dd[1, 7].isnan() and ii[1, 5] == -1 and ii[1, 7] == -1
    assert torch.equal(i.cpu(), ir)
    assert_close(d.cpu(), dr)
    # padding past the length is not "a point of the cloud": a NaN there changes nothing
    lengths = torch.tensor([40, 5], device=dev(backend))
    v = hk.chamfer_distance(x, y, x_lengths=lengths, reduction="none", backend=backend.name).cpu()
    assert torch.isfinite(v).all()
    v = hk.chamfer_distance(x, y, reduction="none", backend=backend.name).cpu()
    assert not v[0].isnan() and v[1].isnan()


def test_nan_flow_gives_nan_edges(backend, gen):
    flow = torch.randn(2, 2, 6, 7, generator=gen).to(dev(backend))
    flow[0, 1, 3, 3] = math.nan
    gm = hk.gradient_magnitude(flow, backend=backend.name).cpu()
    ref = hk.gradient_magnitude(flow.cpu(), backend="reference")
    # the 3x3 derivative at a pixel reads its 8 neighbours, not the pixel itself
    ring = torch.ones(3, 3, dtype=torch.bool)
    ring[1, 1] = False
    assert gm[0, 0, 2:5, 2:5][ring].isnan().all() and not gm[0, 0, 3, 3].isnan()
    assert torch.equal(gm.isnan(), ref.isnan()) and ref.isnan().sum() == 8
    assert_close(gm[1], ref[1])
    fe = hk.flow_edges(flow, backend=backend.name).cpu()
    assert fe[0].isnan().all() and torch.isfinite(fe[1]).all()  # a NaN max makes the whole image NaN
    assert_close(fe[1], hk.flow_edges(flow.cpu(), backend="reference")[1])
    fe = hk.flow_edges(flow, normalize=False, backend=backend.name).cpu()
    assert torch.equal(fe.isnan(), gm.isnan())


# ---------------------------------------------------------------------------------------------- issue 11: value checks
class TestValueChecks:
    def test_eps_must_be_a_finite_float(self):
        x = torch.rand(1, 1, 3, 3)
        with pytest.raises(ValueError, match="eps"):
            hk.gradient_magnitude(x, eps=math.nan)
        with pytest.raises(ValueError, match="eps"):
            hk.gradient_magnitude(x, eps=math.inf)
        with pytest.raises(TypeError, match="eps"):
            hk.gradient_magnitude(x, eps=True)

    def test_flags_must_be_bools(self):
        x = torch.rand(1, 1, 3, 3)
        with pytest.raises(TypeError, match="normalized"):
            hk.sobel(x, normalized="no")
        with pytest.raises(TypeError, match="normalize"):
            hk.flow_edges(torch.rand(1, 2, 3, 3), normalize="yes")
        with pytest.raises(TypeError, match="squared"):
            hk.chamfer_distance(torch.rand(1, 3, 2), torch.rand(1, 3, 2), squared=None)

    def test_patch_centroid_chamfer_negative_weights(self):
        a = torch.rand(1, 1, 8, 8)
        b = a.clone()
        b[0, 0, 2, 2] = -0.5
        for bk in ("reference", "cpu"):
            with pytest.raises(ValueError, match="b: expected weights >= 0"):
                hk.patch_centroid_chamfer(a, b, backend=bk)
        # a NaN elsewhere does not hide the negative weight (the CPU check takes the min first)
        b[0, 0, 5, 5] = math.nan
        for bk in ("reference", "cpu"):
            with pytest.raises(ValueError, match="b: expected weights >= 0, got min -0.5"):
                hk.patch_centroid_chamfer(a, b, backend=bk)
        b[0, 0, 2, 2] = 0.5  # NaN alone passes the check (docs/ops.md: NaN propagates by the op's own rules)
        got, want = (hk.patch_centroid_chamfer(a, b, backend=bk) for bk in ("cpu", "reference"))
        assert torch.equal(got.isnan(), want.isnan())

    def test_auto_float64_routing_in_one_place(self):
        # Every family picks its backend through _backends.pick (one definition, no per-family wrapper);
        # chamfer and corr (no float64 GPU kernels) send float64 CUDA tensors to the reference under "auto".
        import inspect

        from hmore_kernels import _backends, chamfer, corr, edges, skeleton

        for mod in (chamfer, corr, edges, skeleton):
            src = inspect.getsource(mod)
            assert mod._pick is _backends.pick and "def _pick" not in src and "_CUDA_AUTO" not in src, mod.__name__
        assert set(_backends.GPU_NO_FLOAT64) == {"corr", "chamfer"}
        gpu = torch.device("cuda")
        for family in ("corr", "chamfer"):
            assert _backends.pick(family, "x", "auto", gpu, torch.float64) == "reference"


def test_warns_loudly_when_native_fails_to_import():
    code = """
        import importlib.abc, sys, warnings
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "hmore_kernels._C":
                    raise ImportError("simulated: undefined symbol _ZN3c10")
        sys.meta_path.insert(0, Block())
        warnings.simplefilter("always")
        import hmore_kernels as hk, torch
        print("AVAILABLE", hk.available_backends()["cpu"])
        print("AUTO", hk.sobel(torch.rand(1, 1, 3, 3)).shape)
    """
    r = run_snippet(code)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" in r.stderr and "simulated: undefined symbol" in r.stderr, r.stderr
    assert "pure-PyTorch reference" in r.stderr
    assert r.stderr.count("RuntimeWarning") == 1, r.stderr  # once
