"""Tests of the edge/boundary family (docs/ops.md §2, §5): sobel, gradient_magnitude, mask_boundary,
flow_edges, canny, distance_transform.

Kornia style: every op has the same test methods -- test_smoke, test_cardinality,
test_against_reference[backend], test_against_oracle, test_gradcheck[backend], test_opcheck,
test_dynamo, test_exception (+ test_low_precision on GPU). The reference (pure PyTorch) is itself
checked against libraries no one here wrote: OpenCV, scikit-image, SciPy.

Tolerances come from tests/common.py. Triton runs through its interpreter on CPU tensors when no GPU is
present (see conftest.py), so the triton cases use small shapes and fewer options.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hmore_kernels as hk
from hmore_kernels.reference import edges as ref
from common import (
    GRAD_TOL_FACTOR,
    LAYOUTS,
    assert_close,
    assert_close_lowp,
    blob_mask,
    layout,
    rand,
    randn,
    soft_mask,
    tol,
)
from conftest import BACKEND_PARAMS, HAS_GPU, BackendCase, skip_unavailable

cv2 = pytest.importorskip("cv2")

FLOATS = (torch.float32, torch.float64)
LOWP = (torch.float16, torch.bfloat16)
BORDERS = ("replicate", "reflect101", "zeros")
MODES = ("inner", "outer", "thick")

# The reference is tested against the oracles too; it runs wherever the fast backends do.
ORACLE_PARAMS = [pytest.param(BackendCase("reference", "cpu"), id="reference")] + [
    p for p in BACKEND_PARAMS if p.values[0].name != "reference"
]

# Shapes with B = 0, H = 1, W = 1, 1x1, odd sizes and an empty spatial axis (docs/ops.md: empty in, empty out).
CARD_SHAPES = [(2, 3, 5, 7), (0, 3, 5, 7), (2, 3, 1, 7), (2, 3, 5, 1), (1, 1, 1, 1), (1, 2, 9, 13), (1, 1, 0, 4), (1, 1, 3, 0)]


def image_shapes(case: BackendCase, C=3):
    """Random-input shapes for test_against_reference: odd sizes, 1-pixel-wide/-high, a 1x1."""
    if case.interpreted:
        return [(1, C, 7, 9), (1, C, 1, 6)]
    return [(2, C, 13, 17), (1, C, 1, 9), (1, C, 8, 1), (3, C, 1, 1), (1, C, 32, 33)]


def float_case(case: BackendCase, dtype):
    if dtype == torch.float64 and not case.float64:
        pytest.skip(f"float64 is supported by the reference and cpu backends only (docs/ops.md), not {case.name}")


def call(case: BackendCase, op: str, *args, **kwargs):
    return getattr(hk, op)(*args, backend=case.name, **kwargs)


def to_np(x):
    return x.detach().cpu().numpy()


# ================================================================================================
class TestBackends:
    def test_native_extension_built(self):
        info = hk.build_info()
        assert info["native"] is True, f"hmore_kernels._C is not built, so the cpu backend cannot run: {info.get('reason')}"

    def test_available_backends(self):
        av = hk.available_backends()
        assert set(av) == {"reference", "cpu", "cuda", "triton", "cupy"}
        assert av["reference"] is True
        for name, v in av.items():
            assert v is True or (isinstance(v, str) and v), f"{name}: expected True or a reason, got {v!r}"
        if not HAS_GPU:
            assert av["cuda"] is not True, "cuda reported available without a GPU"

    def test_build_info(self):
        info = hk.build_info()
        for key in ("torch", "triton", "native", "cuda", "cuda_archs", "openmp"):
            assert key in info, f"build_info() lacks {key!r}: {info}"
        assert info["torch"] == torch.__version__
        assert isinstance(info["cuda_archs"], list)
        if info["cuda"]:
            assert info["cuda_archs"], "built with CUDA but no archs listed"

    def test_backend_unavailable_is_runtime_error(self):
        assert issubclass(hk.BackendUnavailable, RuntimeError)

    def test_auto_resolves_to_cpu(self, gen):
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable (test_native_extension_built reports why)")
        from hmore_kernels import _backends

        assert _backends.pick("edges", "sobel", "auto", torch.device("cpu")) == "cpu"
        x = rand(gen, 2, 3, 9, 11)
        assert torch.equal(hk.sobel(x), hk.sobel(x, backend="cpu"))
        assert torch.equal(hk.sobel(x), torch.ops.hmore.sobel(x, True, "replicate"))
        assert torch.equal(hk.gradient_magnitude(x), hk.gradient_magnitude(x, backend="cpu"))
        m = blob_mask(gen, 2, 9, 11)
        assert torch.equal(hk.distance_transform(m), hk.distance_transform(m, backend="cpu"))

    def test_named_backend_unavailable(self):
        x = torch.rand(1, 1, 4, 4)
        if HAS_GPU:
            pytest.skip("this machine has a GPU; the cuda backend on CPU tensors is covered in TestSobel.test_exception")
        with pytest.raises(hk.BackendUnavailable, match=r"(?s)'cuda'.*Available for cpu tensors: .*reference"):
            hk.sobel(x, backend="cuda")
        with pytest.raises(hk.BackendUnavailable, match="cupy"):
            hk.mask_boundary(x > 0.5, backend="cupy")

    def test_unknown_backend(self):
        with pytest.raises(ValueError, match="backend"):
            hk.sobel(torch.rand(1, 1, 4, 4), backend="bogus")
        with pytest.raises(TypeError, match="backend"):
            hk.sobel(torch.rand(1, 1, 4, 4), backend=None)


def check_cuda_on_cpu_tensors(fn):
    """backend="cuda" with CPU tensors: BackendUnavailable naming the backend and the available ones."""
    with pytest.raises(hk.BackendUnavailable, match=r"(?s)'cuda'.*Available for cpu tensors:.*reference"):
        fn("cuda")
    with pytest.raises(ValueError, match="backend"):
        fn("bogus")


# ================================================================================================
class TestSobel:
    def test_smoke(self, backend):
        H, W = 6, 7
        ramp_x = torch.arange(W, dtype=torch.float32).expand(1, 1, H, W).to(backend.device)
        ramp_y = torch.arange(H, dtype=torch.float32)[:, None].expand(1, 1, H, W).to(backend.device)
        g = call(backend, "sobel", ramp_x)
        assert g.shape == (1, 1, 2, H, W) and g.dtype == torch.float32 and g.device.type == backend.device
        # docs/ops.md §5: a ramp of slope 1 gives 1; derivatives point right (x) and down (y).
        assert_close(g[:, :, 0, :, 1:-1], torch.ones(1, 1, H, W - 2, device=backend.device), msg="d/dx of x-ramp")
        assert_close(g[:, :, 1], torch.zeros(1, 1, H, W, device=backend.device), msg="d/dy of x-ramp")
        g = call(backend, "sobel", ramp_y, normalized=False)
        assert_close(g[:, :, 1, 1:-1, :], torch.full((1, 1, H - 2, W), 8.0, device=backend.device), msg="unnormalised d/dy of y-ramp")
        assert_close(g[:, :, 0], torch.zeros(1, 1, H, W, device=backend.device), msg="d/dx of y-ramp")

    @pytest.mark.parametrize("shape", CARD_SHAPES, ids=str)
    def test_cardinality(self, backend, gen, shape):
        x = rand(gen, *shape, device=backend.device)
        out = call(backend, "sobel", x)
        assert out.shape == (shape[0], shape[1], 2, shape[2], shape[3])
        assert out.dtype == x.dtype
        assert_close(out, ref.sobel(x), msg=f"sobel {shape}")

    @pytest.mark.parametrize("layout_kind", LAYOUTS)
    @pytest.mark.parametrize("dtype", FLOATS, ids=str)
    def test_against_reference(self, backend, gen, dtype, layout_kind):
        float_case(backend, dtype)
        for shape in image_shapes(backend):
            x = layout(randn(gen, *shape, dtype=dtype, device=backend.device), layout_kind)
            for normalized in (True, False):
                for border in BORDERS:
                    out = call(backend, "sobel", x, normalized=normalized, border=border)
                    exp = ref.sobel(x.contiguous(), normalized, border)
                    assert_close(out, exp, msg=f"sobel {shape} {layout_kind} normalized={normalized} border={border}")

    @pytest.mark.parametrize("backend", ORACLE_PARAMS)
    @pytest.mark.parametrize("border", BORDERS)
    def test_against_oracle(self, backend, gen, border):
        """cv2.Sobel(ksize=3) / 8 with the matching OpenCV border (CONSTANT = zeros)."""
        skip_unavailable(backend)
        bt = {"replicate": cv2.BORDER_REPLICATE, "reflect101": cv2.BORDER_REFLECT_101, "zeros": cv2.BORDER_CONSTANT}[border]
        shapes = [(7, 9), (1, 6), (5, 1), (1, 1)] if backend.interpreted else [(31, 45), (1, 9), (8, 1), (1, 1), (2, 2)]
        for H, W in shapes:
            x64 = rand(gen, 2, 2, H, W, dtype=torch.float64)
            out = call(backend, "sobel", x64.to(torch.float32).to(backend.device), border=border)
            for b in range(2):
                for c in range(2):
                    img = to_np(x64[b, c].to(torch.float32)).astype(np.float64)
                    gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=bt) / 8
                    gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, borderType=bt) / 8
                    exp = torch.from_numpy(np.stack([gx, gy])).to(torch.float32)
                    assert_close(out[b, c].cpu(), exp, msg=f"sobel vs cv2.Sobel {H}x{W} border={border}")

    def test_gradcheck(self, backend, gen):
        if backend.float64:
            for border in BORDERS:
                for shape in [(1, 2, 4, 5), (1, 1, 1, 3)]:
                    x = rand(gen, *shape, dtype=torch.float64, device=backend.device).requires_grad_()
                    assert torch.autograd.gradcheck(lambda t: call(backend, "sobel", t, border=border), (x,))
        # Backward against autograd through the reference, in the backend's own precision.
        dtype = torch.float64 if backend.float64 else torch.float32
        for border in BORDERS:
            x = rand(gen, 1, 2, 6, 7, dtype=dtype, device=backend.device)
            g = randn(gen, 1, 2, 2, 6, 7, dtype=dtype, device=backend.device)
            assert_close(vjp(lambda t: call(backend, "sobel", t, border=border), x, g),
                         vjp(lambda t: ref.sobel(t, True, border), x, g), dtype=dtype, msg=f"sobel grad border={border}")

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        x = rand(gen, 1, 2, 5, 6, dtype=torch.float32, device=dev, low=-1).requires_grad_()
        for border in BORDERS:
            torch.library.opcheck(getattr(torch.ops, ns).sobel.default, (x, True, border))
        g = randn(gen, 1, 2, 2, 5, 6, device=dev)
        torch.library.opcheck(getattr(torch.ops, ns)._sobel_backward.default, (g, False, "reflect101"))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        x = rand(gen, 1, 2, 6, 7, device=case.device).requires_grad_()
        f = torch.compile(lambda t: hk.sobel(t, border="reflect101", backend=case.name), fullgraph=True, backend=compile_backend)
        out = f(x)
        assert_close(out, ref.sobel(x.detach(), True, "reflect101"), msg=f"compiled sobel {case}")
        out.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()

    def test_exception(self, backend):
        d = backend.device
        with pytest.raises(ValueError, match=r"\bx\b.*4-D"):
            call(backend, "sobel", torch.rand(3, 4, 5, device=d))
        with pytest.raises(TypeError, match=r"\bx\b.*int"):
            call(backend, "sobel", torch.ones(1, 1, 4, 4, dtype=torch.int32, device=d))
        with pytest.raises(ValueError, match="border"):
            call(backend, "sobel", torch.rand(1, 1, 4, 4, device=d), border="reflect")
        with pytest.raises(TypeError, match=r"\bx\b"):
            call(backend, "sobel", np.zeros((1, 1, 4, 4), np.float32))

    def test_exception_cpu(self):
        x = torch.rand(1, 1, 4, 4)
        check_cuda_on_cpu_tensors(lambda b: hk.sobel(x, backend=b))
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable")
        # docs/ops.md: float16/bfloat16 are GPU dtypes; the cpu backend refuses them with a TypeError naming x.
        with pytest.raises(TypeError, match=r"(?i)\bx\b.*(float16|half)"):
            hk.sobel(x.half(), backend="cpu")
        # The dispatcher op checks its inputs too (no crash when the Python checks are bypassed).
        with pytest.raises((ValueError, RuntimeError), match=r"\bx\b"):
            torch.ops.hmore.sobel(torch.rand(4, 4), True, "replicate")
        with pytest.raises((ValueError, RuntimeError), match="border"):
            torch.ops.hmore.sobel(x, True, "bogus")

    @pytest.mark.cuda
    @pytest.mark.parametrize("dtype", LOWP, ids=str)
    def test_low_precision(self, backend, gen, dtype):
        if not backend.low_precision:
            pytest.skip("float16/bfloat16 are GPU dtypes")
        x = randn(gen, 2, 3, 33, 47, dtype=dtype, device=backend.device)
        for border in BORDERS:
            assert_close_lowp(call(backend, "sobel", x, border=border), ref.sobel(x, True, border),
                              ref.sobel(x.double(), True, border), msg=f"sobel {dtype} {border}")


# ------------------------------------------------------------------------------------------------
def vjp(fn, x, g, *extra):
    """Gradient of <fn(x), g> with respect to x."""
    x = x.detach().clone().requires_grad_()
    out = fn(x, *extra)
    (gx,) = torch.autograd.grad(out, x, g)
    return gx


NAMESPACES = ("hmore", "hmore_triton")


@pytest.fixture(params=NAMESPACES)
def ns(request):
    """The dispatcher namespace to opcheck: hmore (CPU tensors) and hmore_triton (interpreted on CPU
    tensors, or on CUDA tensors with a GPU)."""
    if request.param == "hmore":
        skip_unavailable(BackendCase("cpu", "cpu"))
    else:
        skip_unavailable(BackendCase("triton", "cuda" if HAS_GPU else "cpu"))
        import hmore_kernels.triton.edges  # noqa: F401  (defines torch.ops.hmore_triton)
    return request.param


def ns_device(ns):
    return "cuda" if ns == "hmore_triton" and HAS_GPU else "cpu"


@pytest.fixture(params=["cpu-inductor", "triton"])
def dyn(request):
    """(backend, torch.compile backend): the cpu backend under inductor; triton under aot_eager when
    interpreted (inductor cannot generate code for the interpreter), under inductor on a GPU."""
    if request.param == "cpu-inductor":
        case, compile_backend = BackendCase("cpu", "cpu"), "inductor"
    else:
        case = BackendCase("triton", "cuda" if HAS_GPU else "cpu")
        compile_backend = "inductor" if HAS_GPU else "aot_eager"
    skip_unavailable(case)
    torch._dynamo.reset()
    return case, compile_backend


# ================================================================================================
class TestGradientMagnitude:
    def test_smoke(self, backend):
        H, W = 5, 6
        x = (3.0 * torch.arange(W, dtype=torch.float32) + 0 * torch.arange(H, dtype=torch.float32)[:, None])
        x = torch.stack([x, 4.0 * torch.arange(H, dtype=torch.float32)[:, None].expand(H, W)])[None].to(backend.device)
        m = call(backend, "gradient_magnitude", x)
        assert m.shape == (1, 1, H, W) and m.dtype == torch.float32
        # interior: sqrt(3^2 + 4^2) = 5 (Sobel /8 and Scharr /32 both give slope 1 on a ramp)
        assert_close(m[..., 1:-1, 1:-1], torch.full((1, 1, H - 2, W - 2), 5.0, device=backend.device), msg="|grad| of ramps")
        m = call(backend, "gradient_magnitude", x, kernel="scharr", reduce="none")
        assert m.shape == (1, 2, H, W)
        assert_close(m[:, 0, 1:-1, 1:-1], torch.full((1, H - 2, W - 2), 3.0, device=backend.device), msg="scharr ch0")
        assert_close(m[:, 1, 1:-1, 1:-1], torch.full((1, H - 2, W - 2), 4.0, device=backend.device), msg="scharr ch1")

    @pytest.mark.parametrize("shape", CARD_SHAPES, ids=str)
    def test_cardinality(self, backend, gen, shape):
        x = rand(gen, *shape, device=backend.device)
        for reduce, c in (("sum", 1), ("none", shape[1])):
            out = call(backend, "gradient_magnitude", x, reduce=reduce)
            assert out.shape == (shape[0], c, shape[2], shape[3]) and out.dtype == x.dtype
            assert_close(out, ref.gradient_magnitude(x, "sobel", reduce), msg=f"gradient_magnitude {shape} {reduce}")

    @pytest.mark.parametrize("layout_kind", LAYOUTS)
    @pytest.mark.parametrize("dtype", FLOATS, ids=str)
    def test_against_reference(self, backend, gen, dtype, layout_kind):
        float_case(backend, dtype)
        eps_values = (0.0, 1e-3) if backend.interpreted else (0.0, 1e-6, 0.5)
        for shape in image_shapes(backend):
            x = layout(randn(gen, *shape, dtype=dtype, device=backend.device), layout_kind)
            for kernel in ("sobel", "scharr"):
                for reduce in ("sum", "none"):
                    for eps in eps_values:
                        out = call(backend, "gradient_magnitude", x, kernel=kernel, reduce=reduce, eps=eps)
                        exp = ref.gradient_magnitude(x.contiguous(), kernel, reduce, eps)
                        assert_close(out, exp, msg=f"gradient_magnitude {shape} {layout_kind} {kernel} {reduce} eps={eps}")
        # flat image: magnitude exactly 0 (not NaN)
        x = torch.full((1, 2, 5, 6), 0.25, dtype=dtype, device=backend.device)
        assert torch.equal(call(backend, "gradient_magnitude", x), torch.zeros(1, 1, 5, 6, dtype=dtype, device=backend.device))

    @pytest.mark.parametrize("backend", ORACLE_PARAMS)
    @pytest.mark.parametrize("kernel", ("sobel", "scharr"))
    def test_against_oracle(self, backend, gen, kernel):
        """sqrt(cv2.Sobel^2 / 8^2 + ...) and cv2.Scharr / 32, BORDER_REPLICATE, summed over channels."""
        skip_unavailable(backend)
        H, W = (9, 11) if backend.interpreted else (37, 41)
        x = rand(gen, 1, 3, H, W, dtype=torch.float32)
        out = call(backend, "gradient_magnitude", x.to(backend.device), kernel=kernel).cpu()
        s = np.zeros((H, W))
        for c in range(3):
            img = to_np(x[0, c]).astype(np.float64)
            if kernel == "sobel":
                gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8
                gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8
            else:
                gx = cv2.Scharr(img, cv2.CV_64F, 1, 0, borderType=cv2.BORDER_REPLICATE) / 32
                gy = cv2.Scharr(img, cv2.CV_64F, 0, 1, borderType=cv2.BORDER_REPLICATE) / 32
            s += gx**2 + gy**2
        assert_close(out[0, 0], torch.from_numpy(np.sqrt(s)).to(torch.float32), msg=f"gradient_magnitude vs cv2 {kernel}")

    def test_gradcheck(self, backend, gen):
        if backend.float64:
            for kernel in ("sobel", "scharr"):
                for reduce in ("sum", "none"):
                    for eps in (0.0, 0.1):
                        x = rand(gen, 1, 2, 4, 5, dtype=torch.float64, device=backend.device).requires_grad_()
                        assert torch.autograd.gradcheck(
                            lambda t: call(backend, "gradient_magnitude", t, kernel=kernel, reduce=reduce, eps=eps), (x,)
                        ), f"{kernel} {reduce} eps={eps}"
        dtype = torch.float64 if backend.float64 else torch.float32
        atol, rtol = tol(dtype, GRAD_TOL_FACTOR)
        # Ties/zeros: a flat region (magnitude exactly 0 -> gradient 0, never NaN), a step, random.
        x = rand(gen, 1, 2, 6, 7, dtype=dtype, device=backend.device)
        x[:, :, :, :3] = 0.5
        x[:, 1, 3:, :] = 1.0
        for kernel in ("sobel", "scharr"):
            for reduce in ("sum", "none"):
                for eps in (0.0, 1e-3):
                    g = randn(gen, *ref.gradient_magnitude(x, kernel, reduce).shape, dtype=dtype, device=backend.device)
                    got = vjp(lambda t: call(backend, "gradient_magnitude", t, kernel=kernel, reduce=reduce, eps=eps), x, g)
                    exp = vjp(lambda t: ref.gradient_magnitude(t, kernel, reduce, eps), x, g)
                    assert torch.isfinite(got).all(), f"non-finite gradient {kernel} {reduce} eps={eps}"
                    assert_close(got, exp, atol=atol, rtol=rtol, msg=f"gradient_magnitude grad {kernel} {reduce} eps={eps}")
        # constant images: finite gradient; where the magnitude is exactly 0 the gradient is 0 (a
        # non-dyadic constant may leave rounding-level magnitudes, whose gradient is then legitimately nonzero)
        for value in (0.75, 0.7, -3.1):
            c = torch.full((2, 3, 5, 4), value, dtype=dtype, device=backend.device, requires_grad=True)
            m = call(backend, "gradient_magnitude", c)
            assert (m.detach().abs() <= 1e-6 * abs(value)).all(), f"|grad| of a constant image {value}: {m.abs().max()}"
            m.sum().backward()
            assert torch.isfinite(c.grad).all(), f"gradient of |grad| on a constant image {value} is not finite"
            if (m == 0).all():
                assert (c.grad == 0).all(), f"|grad| is 0 on constant {value}, but its gradient is not"

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        ops = getattr(torch.ops, ns)
        x = rand(gen, 1, 2, 5, 6, device=dev).requires_grad_()
        for kernel, reduce, eps in (("sobel", "sum", 0.0), ("scharr", "none", 0.1)):
            torch.library.opcheck(ops.gradient_magnitude.default, (x, kernel, reduce, eps))
            mag = ref.gradient_magnitude(x.detach(), kernel, reduce, eps)
            torch.library.opcheck(ops._gradient_magnitude_backward.default,
                                  (torch.ones_like(mag), x.detach(), mag, kernel, reduce, eps))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        x = rand(gen, 1, 2, 6, 7, device=case.device).requires_grad_()
        f = torch.compile(lambda t: hk.gradient_magnitude(t, kernel="scharr", backend=case.name), fullgraph=True,
                          backend=compile_backend)
        out = f(x)
        assert_close(out, ref.gradient_magnitude(x.detach(), "scharr", "sum", 0.0), msg=f"compiled gradient_magnitude {case}")
        out.sum().backward()
        assert torch.isfinite(x.grad).all()

    def test_exception(self, backend):
        x = torch.rand(1, 2, 4, 4, device=backend.device)
        with pytest.raises(ValueError, match=r"\bx\b.*4-D"):
            call(backend, "gradient_magnitude", x[0])
        with pytest.raises(TypeError, match=r"\bx\b"):
            call(backend, "gradient_magnitude", x.to(torch.int64))
        with pytest.raises(ValueError, match="kernel"):
            call(backend, "gradient_magnitude", x, kernel="prewitt")
        with pytest.raises(ValueError, match="reduce"):
            call(backend, "gradient_magnitude", x, reduce="mean")
        with pytest.raises(ValueError, match="eps"):
            call(backend, "gradient_magnitude", x, eps=-1.0)

    def test_exception_cpu(self):
        x = torch.rand(1, 1, 4, 4)
        check_cuda_on_cpu_tensors(lambda b: hk.gradient_magnitude(x, backend=b))
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable")
        with pytest.raises(TypeError, match=r"(?i)\bx\b.*(bfloat16|bf16)"):
            hk.gradient_magnitude(x.bfloat16(), backend="cpu")
        with pytest.raises((ValueError, RuntimeError), match="reduce"):
            torch.ops.hmore.gradient_magnitude(x, "sobel", "bogus", 0.0)

    @pytest.mark.cuda
    @pytest.mark.parametrize("dtype", LOWP, ids=str)
    def test_low_precision(self, backend, gen, dtype):
        if not backend.low_precision:
            pytest.skip("float16/bfloat16 are GPU dtypes")
        x = randn(gen, 2, 3, 33, 47, dtype=dtype, device=backend.device)
        for kernel in ("sobel", "scharr"):
            for reduce in ("sum", "none"):
                assert_close_lowp(call(backend, "gradient_magnitude", x, kernel=kernel, reduce=reduce),
                                  ref.gradient_magnitude(x, kernel, reduce),
                                  ref.gradient_magnitude(x.double(), kernel, reduce), msg=f"gm {dtype} {kernel} {reduce}")


# ================================================================================================
class TestMaskBoundary:
    def test_smoke(self, backend):
        m = torch.zeros(1, 1, 7, 8, dtype=torch.bool)
        m[0, 0, 2:5, 2:6] = True
        m = m.to(backend.device)
        inner = call(backend, "mask_boundary", m)
        assert inner.dtype == torch.bool and inner.shape == m.shape
        exp_inner = m.clone()
        exp_inner[0, 0, 3, 3:5] = False
        assert_close(inner, exp_inner, msg="inner boundary of a rectangle")
        outer = call(backend, "mask_boundary", m, mode="outer")
        exp_outer = torch.zeros_like(m)
        exp_outer[0, 0, 1:6, 1:7] = True
        exp_outer &= ~m
        assert_close(outer, exp_outer, msg="outer boundary of a rectangle")
        thick = call(backend, "mask_boundary", m, mode="thick", width=2)
        assert_close(thick, ref.mask_boundary(m, "thick", 2), msg="thick width 2")

    @pytest.mark.parametrize("shape", CARD_SHAPES, ids=str)
    def test_cardinality(self, backend, gen, shape):
        B, _, H, W = shape
        m = blob_mask(gen, B, H, W, device=backend.device)
        for mode in MODES:
            out = call(backend, "mask_boundary", m, mode=mode)
            assert out.shape == (B, 1, H, W) and out.dtype == torch.bool
            assert_close(out, ref.mask_boundary(m, mode, 1), msg=f"mask_boundary {shape} {mode}")
        f = m.float()
        out = call(backend, "mask_boundary", f, mode="thick", width=2)
        assert out.shape == (B, 1, H, W) and out.dtype == torch.float32

    @pytest.mark.parametrize("layout_kind", LAYOUTS)
    @pytest.mark.parametrize("dtype", (torch.bool,) + FLOATS, ids=str)
    def test_against_reference(self, backend, gen, dtype, layout_kind):
        float_case(backend, dtype)
        widths = (1, 2) if backend.interpreted else (1, 2, 3, 7)
        for shape in image_shapes(backend, C=1):
            B, _, H, W = shape
            if dtype == torch.bool:
                m = blob_mask(gen, B, H, W, density=0.4, cell=3, device=backend.device)
            else:  # soft masks: random values, and a 0/1 mask as a float (ties everywhere)
                m = torch.cat([soft_mask(gen, B, H, W, dtype=dtype), blob_mask(gen, B, H, W).to(dtype)]).to(backend.device)
            m = layout(m, layout_kind)
            for mode in MODES:
                for width in widths:
                    out = call(backend, "mask_boundary", m, mode=mode, width=width)
                    assert_close(out, ref.mask_boundary(m.contiguous(), mode, width),
                                 msg=f"mask_boundary {shape} {dtype} {layout_kind} {mode} width={width}")

    @pytest.mark.parametrize("backend", ORACLE_PARAMS)
    def test_against_oracle(self, backend, gen):
        """skimage.segmentation.find_boundaries(mask, connectivity=2, mode=...) on blobby masks that
        touch the image border (its reflect border equals replicate for a radius-1 element)."""
        skip_unavailable(backend)
        from skimage.segmentation import find_boundaries

        H, W = (11, 13) if backend.interpreted else (48, 61)
        m = blob_mask(gen, 3, H, W, density=0.45, cell=5)
        m[1, 0, :, -2:] = True  # along a whole side
        m[2, 0, 0, :] = ~m[2, 0, 0, :]  # a ragged first row
        assert m[:, 0, 0, :].any() and m[:, 0, -1, :].any() and m[:, 0, :, 0].any() and m[:, 0, :, -1].any()
        for mode in MODES:
            out = call(backend, "mask_boundary", m.to(backend.device), mode=mode).cpu()
            for b in range(3):
                exp = torch.from_numpy(find_boundaries(to_np(m[b, 0]), connectivity=2, mode=mode))
                assert_close(out[b, 0], exp, msg=f"mask_boundary vs find_boundaries mode={mode} image {b}")

    def test_gradcheck(self, backend, gen):
        if backend.float64:
            for mode in MODES:
                for width in (1, 2):
                    m = soft_mask(gen, 1, 5, 6, device=backend.device).requires_grad_()
                    assert torch.autograd.gradcheck(lambda t: call(backend, "mask_boundary", t, mode=mode, width=width), (m,))
        dtype = torch.float64 if backend.float64 else torch.float32
        # With ties (a 0/1 mask as float, and a quantised one): the gradient of each min/max goes to the
        # first extremal pixel of its window in row-major order, as autograd through the reference does.
        tied = [blob_mask(gen, 2, 6, 7).to(dtype), torch.randint(0, 3, (1, 1, 6, 7), generator=gen).to(dtype) / 2]
        for m in tied:
            m = m.to(backend.device)
            for mode in MODES:
                for width in (1, 2):
                    g = randn(gen, *m.shape, dtype=dtype, device=backend.device)
                    assert_close(vjp(lambda t: call(backend, "mask_boundary", t, mode=mode, width=width), m, g),
                                 vjp(lambda t: ref.mask_boundary(t, mode, width), m, g),
                                 msg=f"mask_boundary grad with ties {mode} width={width}")

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        ops = getattr(torch.ops, ns)
        m = soft_mask(gen, 1, 5, 6, dtype=torch.float32, device=dev).requires_grad_()
        for mode, width in (("inner", 1), ("outer", 2), ("thick", 1)):
            torch.library.opcheck(ops.mask_boundary.default, (m, mode, width))
            torch.library.opcheck(ops._mask_boundary_backward.default, (torch.randn(1, 1, 5, 6, device=dev), m.detach(), mode, width))
        torch.library.opcheck(ops.mask_boundary.default, (blob_mask(gen, 1, 5, 6, device=dev), "thick", 1))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        m = soft_mask(gen, 1, 6, 7, dtype=torch.float32, device=case.device).requires_grad_()
        f = torch.compile(lambda t: hk.mask_boundary(t, mode="thick", width=2, backend=case.name), fullgraph=True,
                          backend=compile_backend)
        out = f(m)
        assert_close(out, ref.mask_boundary(m.detach(), "thick", 2), msg=f"compiled mask_boundary {case}")
        out.sum().backward()
        assert torch.isfinite(m.grad).all()
        mb = m.detach() > 0.5
        assert_close(f(mb), ref.mask_boundary(mb, "thick", 2), msg=f"compiled mask_boundary bool {case}")

    def test_exception(self, backend):
        d = backend.device
        with pytest.raises(ValueError, match=r"mask.*\[B, 1, H, W\]"):
            call(backend, "mask_boundary", torch.zeros(1, 2, 4, 4, dtype=torch.bool, device=d))
        with pytest.raises(ValueError, match="mask"):
            call(backend, "mask_boundary", torch.zeros(4, 4, dtype=torch.bool, device=d))
        with pytest.raises(TypeError, match="mask"):
            call(backend, "mask_boundary", torch.zeros(1, 1, 4, 4, dtype=torch.int32, device=d))
        with pytest.raises(ValueError, match="mode"):
            call(backend, "mask_boundary", torch.zeros(1, 1, 4, 4, dtype=torch.bool, device=d), mode="edge")
        for width in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="width"):
                call(backend, "mask_boundary", torch.zeros(1, 1, 4, 4, dtype=torch.bool, device=d), width=width)

    def test_exception_cpu(self):
        m = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
        check_cuda_on_cpu_tensors(lambda b: hk.mask_boundary(m, backend=b))
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable")
        with pytest.raises((ValueError, RuntimeError), match="width"):
            torch.ops.hmore.mask_boundary(m, "inner", 0)
        with pytest.raises((ValueError, RuntimeError), match="mode"):
            torch.ops.hmore.mask_boundary(m, "bogus", 1)

    @pytest.mark.cuda
    @pytest.mark.parametrize("dtype", LOWP, ids=str)
    def test_low_precision(self, backend, gen, dtype):
        if not backend.low_precision:
            pytest.skip("float16/bfloat16 are GPU dtypes")
        m = soft_mask(gen, 2, 33, 47, dtype=dtype, device=backend.device)
        for mode in MODES:
            assert_close_lowp(call(backend, "mask_boundary", m, mode=mode, width=2), ref.mask_boundary(m, mode, 2),
                              ref.mask_boundary(m.double(), mode, 2), msg=f"mask_boundary {dtype} {mode}")


# ================================================================================================
def step_flow(B, H, W, dtype, device, col=3):
    """u = 1 right of ``col``: the normalised magnitude's max is attained on two whole columns."""
    f = torch.zeros(B, 2, H, W, dtype=dtype)
    f[:, 0, :, col:] = 1.0
    return f.to(device)


def spike_flow(B, H, W, dtype, device):
    """v = 1 at one pixel: the max (0.25) is attained exactly 4 times, and the centre has magnitude 0."""
    f = torch.zeros(B, 2, H, W, dtype=dtype)
    f[:, 1, H // 2, W // 2] = 1.0
    return f.to(device)


class TestFlowEdges:
    def test_smoke(self, backend):
        f = step_flow(1, 5, 8, torch.float32, backend.device)
        e = call(backend, "flow_edges", f)
        assert e.shape == (1, 1, 5, 8) and e.dtype == torch.float32
        exp = torch.zeros(1, 1, 5, 8)
        exp[..., 2:4] = 1.0  # normalised to [0, 1], and the max is on both sides of the step
        assert_close(e, exp.to(backend.device), msg="flow_edges of a step")
        m = torch.zeros(1, 1, 5, 8, dtype=torch.bool)
        m[..., 6:] = True  # band of 1 around col 5.5: columns 5..6 -> the step edge at 2..3 is masked out
        e = call(backend, "flow_edges", f, mask=m.to(backend.device), band=1)
        assert_close(e, torch.zeros(1, 1, 5, 8, device=backend.device), msg="flow_edges band excludes the step")

    @pytest.mark.parametrize("shape", CARD_SHAPES, ids=str)
    def test_cardinality(self, backend, gen, shape):
        B, _, H, W = shape
        f = randn(gen, B, 2, H, W, device=backend.device)
        m = blob_mask(gen, B, H, W, device=backend.device)
        for mask, band in ((None, 3), (m, 2), (m, None)):
            out = call(backend, "flow_edges", f, mask=mask, band=band)
            assert out.shape == (B, 1, H, W) and out.dtype == f.dtype
            assert_close(out, ref.flow_edges(f, mask, band, True), msg=f"flow_edges {shape} band={band}")

    @pytest.mark.parametrize("layout_kind", LAYOUTS)
    @pytest.mark.parametrize("dtype", FLOATS, ids=str)
    def test_against_reference(self, backend, gen, dtype, layout_kind):
        float_case(backend, dtype)
        bands = (None, 1, 3) if backend.interpreted else (None, 1, 2, 3, 6)
        for shape in image_shapes(backend, C=2):
            B, _, H, W = shape
            f = layout(randn(gen, *shape, dtype=dtype, device=backend.device), layout_kind)
            masks = [None, layout(blob_mask(gen, B, H, W, device=backend.device), layout_kind),
                     layout(soft_mask(gen, B, H, W, dtype=dtype, device=backend.device), layout_kind)]
            for mask in masks:
                for band in bands if mask is not None else (3,):
                    for normalize in (True, False):
                        out = call(backend, "flow_edges", f, mask=mask, band=band, normalize=normalize)
                        exp = ref.flow_edges(f.contiguous(), None if mask is None else mask.contiguous(), band, normalize)
                        mdesc = "none" if mask is None else str(mask.dtype)
                        assert_close(out, exp, msg=f"flow_edges {shape} {layout_kind} mask={mdesc} band={band} normalize={normalize}")
        # constant flow: all zeros (not NaN), normalised or not
        c = torch.full((2, 2, 5, 6), 1.5, dtype=dtype, device=backend.device)
        for normalize in (True, False):
            assert torch.equal(call(backend, "flow_edges", c, normalize=normalize),
                               torch.zeros(2, 1, 5, 6, dtype=dtype, device=backend.device))

    @pytest.mark.parametrize("backend", ORACLE_PARAMS)
    def test_against_oracle(self, backend, gen):
        """The pinned formula (docs/ops.md §5) computed with OpenCV: cv2.Sobel/8 (replicate), / max, times
        skimage-style thick boundary of width `band` (cv2.dilate - cv2.erode with a (2b+1)^2 square)."""
        skip_unavailable(backend)
        H, W = (9, 12) if backend.interpreted else (40, 52)
        f = randn(gen, 1, 2, H, W)
        mask = blob_mask(gen, 1, H, W, density=0.4, cell=6)
        band = 2
        out = call(backend, "flow_edges", f.to(backend.device), mask=mask.to(backend.device), band=band).cpu()
        s = np.zeros((H, W))
        for c in range(2):
            img = to_np(f[0, c]).astype(np.float64)
            s += (cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8) ** 2
            s += (cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8) ** 2
        mag = np.sqrt(s)
        mag /= mag.max()
        k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
        mu8 = to_np(mask[0, 0]).astype(np.uint8)
        thick = cv2.dilate(mu8, k, borderType=cv2.BORDER_REPLICATE) - cv2.erode(mu8, k, borderType=cv2.BORDER_REPLICATE)
        exp = torch.from_numpy(mag * thick).to(torch.float32)
        assert_close(out[0, 0], exp, msg="flow_edges vs cv2 composition")

    def test_gradcheck(self, backend, gen):
        if backend.float64:
            m = blob_mask(gen, 1, 5, 6, device=backend.device)
            for mask, band in ((None, 3), (m, 1), (m.double(), 2), (m, None)):
                for normalize in (True, False):
                    f = randn(gen, 1, 2, 5, 6, dtype=torch.float64, device=backend.device).requires_grad_()
                    assert torch.autograd.gradcheck(
                        lambda t: call(backend, "flow_edges", t, mask=mask, band=band, normalize=normalize), (f,)
                    ), f"band={band} normalize={normalize}"
        dtype = torch.float64 if backend.float64 else torch.float32
        atol, rtol = tol(dtype, GRAD_TOL_FACTOR)
        # Ties: the max attained twice (a step) or four times (a spike), zero magnitudes, and a constant flow.
        H, W = 6, 7
        m = blob_mask(gen, 1, H, W, device=backend.device)
        for name, f in (("step", step_flow(1, H, W, dtype, backend.device)), ("spike", spike_flow(1, H, W, dtype, backend.device)),
                        ("constant", torch.full((1, 2, H, W), 2.0, dtype=dtype, device=backend.device))):
            for mask in (None, m):
                for normalize in (True, False):
                    g = randn(gen, 1, 1, H, W, dtype=dtype, device=backend.device)
                    got = vjp(lambda t: call(backend, "flow_edges", t, mask=mask, band=2, normalize=normalize), f, g)
                    exp = vjp(lambda t: ref.flow_edges(t, mask, 2, normalize), f, g)
                    assert torch.isfinite(got).all(), f"non-finite flow_edges gradient on {name}"
                    assert_close(got, exp, atol=atol, rtol=rtol, msg=f"flow_edges grad {name} mask={mask is not None} normalize={normalize}")
        for value in (0.5, -0.3, 7.1):
            c = torch.full((2, 2, 5, 4), value, dtype=dtype, device=backend.device, requires_grad=True)
            e = call(backend, "flow_edges", c, normalize=False)
            e.sum().backward()
            assert torch.isfinite(c.grad).all(), f"gradient of flow_edges on a constant flow {value} is not finite"

    @pytest.mark.parametrize("backend", ORACLE_PARAMS)
    @pytest.mark.parametrize("dtype", FLOATS, ids=str)
    def test_constant_flow(self, backend, dtype):
        """docs/ops.md §5: "a constant flow gives all zeros, not NaN" -- for any constant, not only for those
        whose Sobel sums cancel exactly in binary (a stencil that sums w * x in a fixed order leaves
        rounding residue for e.g. 0.7, which normalisation then blows up to 1)."""
        skip_unavailable(backend)
        float_case(backend, dtype)
        for value in (0.5, -0.3, 0.7, 123.456):
            c = torch.full((2, 2, 5, 6), value, dtype=dtype, device=backend.device, requires_grad=True)
            m = torch.ones(2, 1, 5, 6, dtype=torch.bool, device=backend.device)
            m[:, :, :, :3] = False
            for mask in (None, m):
                for normalize in (True, False):
                    e = call(backend, "flow_edges", c, mask=mask, normalize=normalize)
                    assert_close(e, torch.zeros(2, 1, 5, 6, dtype=dtype, device=backend.device), atol=0, rtol=0,
                                 msg=f"flow_edges of a constant flow {value} normalize={normalize} mask={mask is not None}")
                    (gx,) = torch.autograd.grad(e.sum(), c)
                    assert torch.isfinite(gx).all(), f"gradient of flow_edges on a constant flow {value} is not finite"

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        ops = getattr(torch.ops, ns)
        f = randn(gen, 1, 2, 5, 6, device=dev).requires_grad_()
        m = blob_mask(gen, 1, 5, 6, device=dev)
        for mask, band, normalize in ((None, 3, True), (m, 2, True), (m.float(), None, False)):
            torch.library.opcheck(ops.flow_edges.default, (f, mask, band, normalize))
            torch.library.opcheck(ops._flow_edges_backward.default,
                                  (torch.randn(1, 1, 5, 6, device=dev), f.detach(), mask, band, normalize))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        f = randn(gen, 1, 2, 6, 7, device=case.device).requires_grad_()
        m = blob_mask(gen, 1, 6, 7, device=case.device)
        fn = torch.compile(lambda t, mk: hk.flow_edges(t, mask=mk, band=2, backend=case.name), fullgraph=True,
                           backend=compile_backend)
        out = fn(f, m)
        assert_close(out, ref.flow_edges(f.detach(), m, 2, True), msg=f"compiled flow_edges {case}")
        out.sum().backward()
        assert torch.isfinite(f.grad).all()

    def test_exception(self, backend):
        d = backend.device
        f = torch.rand(2, 2, 5, 6, device=d)
        with pytest.raises(ValueError, match=r"flow.*2 channels"):
            call(backend, "flow_edges", torch.rand(2, 3, 5, 6, device=d))
        with pytest.raises(ValueError, match="flow"):
            call(backend, "flow_edges", f[0])
        with pytest.raises(TypeError, match="flow"):
            call(backend, "flow_edges", f.to(torch.int32))
        with pytest.raises(ValueError, match=r"mask.*\[B, 1, H, W\]"):
            call(backend, "flow_edges", f, mask=torch.ones(2, 2, 5, 6, dtype=torch.bool, device=d))
        with pytest.raises(ValueError, match=r"mask.*match flow"):
            call(backend, "flow_edges", f, mask=torch.ones(3, 1, 5, 6, dtype=torch.bool, device=d))
        with pytest.raises(ValueError, match=r"mask.*match flow"):
            call(backend, "flow_edges", f, mask=torch.ones(2, 1, 5, 7, dtype=torch.bool, device=d))
        for band in (0, -2, 2.0):
            with pytest.raises(ValueError, match="band"):
                call(backend, "flow_edges", f, mask=torch.ones(2, 1, 5, 6, dtype=torch.bool, device=d), band=band)
        with pytest.raises(ValueError, match="mask"):
            call(backend, "flow_edges", f, mask=torch.rand(2, 1, 5, 6, device=d, requires_grad=True))

    @pytest.mark.cuda
    def test_exception_mask_device(self, backend):
        if backend.device != "cuda":
            pytest.skip("needs the flow on the GPU")
        f = torch.rand(1, 2, 5, 6, device="cuda")
        with pytest.raises(ValueError, match=r"mask.*cpu"):
            call(backend, "flow_edges", f, mask=torch.ones(1, 1, 5, 6, dtype=torch.bool))

    def test_exception_cpu(self):
        f = torch.rand(1, 2, 4, 4)
        check_cuda_on_cpu_tensors(lambda b: hk.flow_edges(f, backend=b))
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable")
        with pytest.raises((ValueError, RuntimeError), match="mask"):
            torch.ops.hmore.flow_edges(f, torch.ones(2, 1, 4, 4, dtype=torch.bool), 3, True)
        with pytest.raises((ValueError, RuntimeError), match="flow"):
            torch.ops.hmore.flow_edges(torch.rand(1, 3, 4, 4), None, 3, True)

    @pytest.mark.cuda
    @pytest.mark.parametrize("dtype", LOWP, ids=str)
    def test_low_precision(self, backend, gen, dtype):
        if not backend.low_precision:
            pytest.skip("float16/bfloat16 are GPU dtypes")
        f = randn(gen, 2, 2, 33, 47, dtype=dtype, device=backend.device)
        m = blob_mask(gen, 2, 33, 47, device=backend.device)
        for mask in (None, m):
            assert_close_lowp(call(backend, "flow_edges", f, mask=mask), ref.flow_edges(f, mask, 3, True),
                              ref.flow_edges(f.double(), mask, 3, True), msg=f"flow_edges {dtype}")


# ================================================================================================
def smooth_image(gen, B, C, H, W, dtype=torch.uint8, device="cpu"):
    """Random 0..255 images with structure (blurred noise + blocks): many edges, few exact ties."""
    if B * C * H * W == 0:
        return torch.zeros(B, C, H, W, dtype=dtype, device=device)
    x = torch.rand(B, C, max(2, H // 3), max(2, W // 3), generator=gen, dtype=torch.float64) * 255
    x = torch.nn.functional.interpolate(x, size=(H, W), mode="bicubic", align_corners=False).clamp(0, 255).round()
    return x.to(dtype).to(device)


def natural(name):
    skd = pytest.importorskip("skimage.data")
    if name == "camera":
        return skd.camera()  # uint8 gray [H, W]
    return skd.astronaut()  # uint8 RGB [H, W, 3]


def edge_agreement(a: np.ndarray, b: np.ndarray):
    """(pixel agreement, edge agreement = 1 - |a xor b| / |a or b|)."""
    xor = np.logical_xor(a, b).sum()
    union = np.logical_or(a, b).sum()
    return 1.0 - xor / a.size, 1.0 - xor / max(1, union)


CANNY_THRESHOLDS = [(50, 150, False), (100, 200, True), (20.5, 60.7, False), (200, 80, False), (30, 90, True)]


class TestCanny:
    def test_smoke(self, backend):
        img = torch.zeros(1, 1, 9, 10, dtype=torch.uint8)
        img[..., 5:] = 200
        e = call(backend, "canny", img.to(backend.device), 50, 100)
        assert e.shape == (1, 1, 9, 10) and e.dtype == torch.bool
        # OpenCV keeps the step edge on one side (the non-strict >= in its horizontal test).
        exp = cv2.Canny(to_np(img[0, 0]), 50, 100) > 0
        assert_close(e[0, 0].cpu(), torch.from_numpy(exp), msg="canny of a step")
        assert e.any()
        assert not call(backend, "canny", torch.full((1, 1, 6, 6), 7.0, device=backend.device), 1, 2).any()

    @pytest.mark.parametrize("shape", CARD_SHAPES, ids=str)
    def test_cardinality(self, backend, gen, shape):
        B, C, H, W = shape
        C = 3 if C == 3 else 1
        img = smooth_image(gen, B, C, H, W, device=backend.device)
        out = call(backend, "canny", img, 30, 80)
        assert out.shape == (B, 1, H, W) and out.dtype == torch.bool
        assert_close(out, ref.canny(img, 30, 80), msg=f"canny {shape}")

    @pytest.mark.parametrize("layout_kind", LAYOUTS)
    @pytest.mark.parametrize("dtype", (torch.uint8, torch.float32, torch.float64), ids=str)
    def test_against_reference(self, backend, gen, dtype, layout_kind):
        float_case(backend, dtype)
        if backend.interpreted:
            shapes, thresholds = [(1, 1, 12, 14), (1, 3, 9, 11)], CANNY_THRESHOLDS[:2]
        else:
            shapes, thresholds = [(2, 1, 33, 47), (1, 3, 29, 31), (1, 1, 1, 17), (1, 1, 13, 1), (2, 3, 2, 2)], CANNY_THRESHOLDS
        for shape in shapes:
            img = layout(smooth_image(gen, *shape, dtype=dtype, device=backend.device), layout_kind)
            for low, high, l2 in thresholds:
                out = call(backend, "canny", img, low, high, l2_gradient=l2)
                exp = ref.canny(img.contiguous(), low, high, 3, l2)
                # integer-valued inputs: gray and magnitudes are exact in float32 -> identical edges.
                assert_close(out, exp, msg=f"canny {shape} {dtype} {layout_kind} ({low}, {high}, l2={l2})")
        # float RGB with non-integer values: BT.601 weights round differently in float32 and float64,
        # so a pixel may flip where two magnitudes tie exactly; allow 1% of the edge pixels (at least 2).
        if dtype != torch.uint8:
            shape = (1, 3, 9, 11) if backend.interpreted else (1, 3, 29, 31)
            img = smooth_image(gen, *shape, dtype=torch.float64) * 0.987 + 0.3
            img = layout(img.to(dtype).to(backend.device), layout_kind)
            out = to_np(call(backend, "canny", img, 40, 100))
            exp = to_np(ref.canny(img.contiguous(), 40, 100))
            flips, union = np.logical_xor(out, exp).sum(), np.logical_or(out, exp).sum()
            assert exp.sum() > 0 and flips <= max(2, 0.01 * union), (
                f"float RGB canny {dtype} {layout_kind}: {flips} of {union} edge pixels differ ({out.sum()} vs {exp.sum()})"
            )

    @pytest.mark.parametrize("backend", ORACLE_PARAMS)
    @pytest.mark.parametrize("image", ("camera", "astronaut", "astronaut-rgb"))
    def test_against_oracle(self, backend, image):
        """cv2.Canny(gray, low, high, apertureSize=3, L2gradient) on scikit-image's natural images.

        Conventions matched (docs/ops.md §5): 0..255 gray, unnormalised 3x3 Sobel with BORDER_REPLICATE
        (as cv2.Canny does internally), thresholds floored (squared for L2, swapped if low > high),
        L1 magnitude |dx|+|dy| by default, OpenCV's fixed-point tan(22.5°) sector test with its
        strict/non-strict neighbour comparisons, 8-connected hysteresis. RGB: BT.601 weights; the gray
        image for OpenCV is cv2.cvtColor(RGB2GRAY). Required: >= 98% agreement on the edge pixels
        (1 - |ours xor cv2| / |ours or cv2|), which implies >= 98% pixel agreement.
        """
        skip_unavailable(backend)
        arr = natural(image.split("-")[0])
        gray = arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
        if backend.interpreted:  # the interpreter is ~1000x slower: a 64x64 crop around the centre
            cy, cx = gray.shape[0] // 2, gray.shape[1] // 2
            sl = (slice(cy - 32, cy + 32), slice(cx - 32, cx + 32))
            arr, gray = arr[sl], gray[sl]
        if image == "astronaut-rgb":
            inp = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]  # our 3-channel path
        else:
            inp = torch.from_numpy(np.ascontiguousarray(gray))[None, None]
        inp = inp.to(backend.device)
        # The reference's hysteresis (a max-pool per step along the longest chain) takes seconds on 512x512.
        thresholds = CANNY_THRESHOLDS[:2] if backend.interpreted or backend.name == "reference" else CANNY_THRESHOLDS
        for low, high, l2 in thresholds:
            exp = cv2.Canny(gray, low, high, apertureSize=3, L2gradient=l2) > 0
            out = to_np(call(backend, "canny", inp, low, high, l2_gradient=l2))[0, 0]
            px, ed = edge_agreement(out, exp)
            assert px >= 0.98 and ed >= 0.98, (
                f"canny vs cv2.Canny on {image} ({low}, {high}, l2={l2}): pixel agreement {px:.4f}, edge agreement "
                f"{ed:.4f} ({out.sum()} vs {exp.sum()} edge pixels)"
            )
            if image != "astronaut-rgb":  # same gray input: the conventions above give identical edges
                assert ed >= 0.999, f"canny vs cv2.Canny on {image} ({low}, {high}, l2={l2}): edge agreement {ed:.5f}"
            # float input with the same values gives the same edges
            if backend.name != "reference" and not backend.interpreted and image == "camera":
                outf = to_np(call(backend, "canny", inp.float(), low, high, l2_gradient=l2))[0, 0]
                assert (outf == out).all(), "canny: float32 input differs from uint8 input with the same values"

    def test_reference_gray_matches_opencv(self):
        """The reference's BT.601 conversion against cv2.cvtColor(RGB2GRAY), uint8: bit-identical to
        OpenCV 5's 15-bit fixed point (OpenCV 4's 14-bit weights differ by one level on a few pixels)."""
        rng = np.random.default_rng(7)
        for arr in (natural("astronaut"), rng.integers(0, 256, (61, 67, 3), dtype=np.uint8)):
            ours = to_np(ref.to_gray(torch.from_numpy(arr).permute(2, 0, 1)[None]))[0, 0]
            theirs = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY).astype(np.float64)
            if int(cv2.__version__.split(".")[0]) >= 5:
                assert np.array_equal(ours, theirs), f"{int((ours != theirs).sum())} gray pixels differ"
            else:
                assert np.abs(ours - theirs).max() <= 1.0

    def test_gradcheck(self, backend, gen):
        """Not differentiable: requires_grad input is refused (docs/ops.md: say so by raising)."""
        img = rand(gen, 1, 1, 5, 6, device=backend.device, high=255).requires_grad_()
        with pytest.raises(ValueError, match=r"img.*not differentiable"):
            call(backend, "canny", img, 10, 20)

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        ops = getattr(torch.ops, ns)
        for img in (smooth_image(gen, 1, 1, 7, 8, device=dev), smooth_image(gen, 1, 3, 7, 8, dtype=torch.float32, device=dev)):
            torch.library.opcheck(ops.canny.default, (img, 20.0, 60.0, 3, False))
            torch.library.opcheck(ops.canny.default, (img, 20.0, 60.0, 3, True))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        img = smooth_image(gen, 1, 1, 9, 10, device=case.device)
        f = torch.compile(lambda t: hk.canny(t, 30, 90, backend=case.name), fullgraph=True, backend=compile_backend)
        assert_close(f(img), ref.canny(img, 30, 90), msg=f"compiled canny {case}")

    def test_exception(self, backend):
        d = backend.device
        img = torch.zeros(1, 1, 5, 6, dtype=torch.uint8, device=d)
        with pytest.raises(ValueError, match="kernel_size"):
            call(backend, "canny", img, 10, 20, kernel_size=5)
        with pytest.raises(ValueError, match=r"img.*channels"):
            call(backend, "canny", torch.zeros(1, 2, 5, 6, device=d), 10, 20)
        with pytest.raises(ValueError, match="img"):
            call(backend, "canny", img[0], 10, 20)
        with pytest.raises(TypeError, match="img"):
            call(backend, "canny", img.to(torch.int32), 10, 20)
        with pytest.raises(TypeError, match="low"):
            call(backend, "canny", img, "10", 20)
        with pytest.raises(TypeError, match="high"):
            call(backend, "canny", img, 10, None)

    def test_exception_cpu(self):
        img = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
        check_cuda_on_cpu_tensors(lambda b: hk.canny(img, 1, 2, backend=b))
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable")
        with pytest.raises((ValueError, RuntimeError), match="kernel_size"):
            torch.ops.hmore.canny(img, 1.0, 2.0, 5, False)
        with pytest.raises((ValueError, RuntimeError), match="img"):
            torch.ops.hmore.canny(torch.zeros(1, 2, 4, 4), 1.0, 2.0, 3, False)


# ================================================================================================
def check_indices(dist, idx, mask, msg):
    """Indices point to True pixels at exactly the reported distance (-1 where the mask is empty)."""
    dist, idx, mask = dist.cpu(), idx.cpu(), mask.cpu()
    B, _, H, W = mask.shape
    assert idx.shape == (B, 2, H, W) and idx.dtype == torch.int64, f"{msg}: indices {tuple(idx.shape)} {idx.dtype}"
    empty = ~(mask != 0).flatten(1).any(1)
    for b in range(B):
        if empty[b]:
            assert (idx[b] == -1).all(), f"{msg}: image {b} has an empty mask, indices must be -1"
            assert torch.isinf(dist[b]).all(), f"{msg}: image {b} has an empty mask, distances must be inf"
            continue
        y, x = idx[b, 0], idx[b, 1]
        assert ((y >= 0) & (y < H) & (x >= 0) & (x < W)).all(), f"{msg}: index out of range"
        hit = mask[b, 0][y, x] != 0
        assert hit.all(), f"{msg}: {int((~hit).sum())} indices point to False pixels"
        ii, jj = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        d2 = ((y - ii) ** 2 + (x - jj) ** 2).to(torch.float64)
        assert_close(d2.sqrt().to(torch.float32), dist[b, 0], atol=0, rtol=2**-23,
                     msg=f"{msg}: distance to the indexed pixel vs the reported distance")


class TestDistanceTransform:
    def test_smoke(self, backend):
        m = torch.zeros(1, 1, 5, 7, dtype=torch.bool)
        m[0, 0, 1, 2] = True
        d, i = call(backend, "distance_transform", m.to(backend.device), return_indices=True)
        assert d.dtype == torch.float32 and d.shape == (1, 1, 5, 7)
        yy, xx = torch.meshgrid(torch.arange(5.0), torch.arange(7.0), indexing="ij")
        assert_close(d[0, 0].cpu(), ((yy - 1) ** 2 + (xx - 2) ** 2).sqrt(), msg="distance to one pixel")
        assert (i[0, 0] == 1).all() and (i[0, 1] == 2).all()
        d = call(backend, "distance_transform", torch.zeros(2, 1, 3, 4, device=backend.device))
        assert isinstance(d, torch.Tensor) and torch.isinf(d).all(), "empty mask -> inf"

    @pytest.mark.parametrize("shape", CARD_SHAPES, ids=str)
    def test_cardinality(self, backend, gen, shape):
        B, _, H, W = shape
        m = blob_mask(gen, B, H, W, density=0.1, device=backend.device)
        d = call(backend, "distance_transform", m)
        assert isinstance(d, torch.Tensor) and d.shape == (B, 1, H, W) and d.dtype == torch.float32
        d2, i = call(backend, "distance_transform", m, return_indices=True)
        assert i.shape == (B, 2, H, W) and i.dtype == torch.int64
        assert_close(d, ref.distance_transform(m)[0], msg=f"distance_transform {shape}")
        assert_close(d2, d, msg="with/without indices")
        check_indices(d2, i, m, f"distance_transform {shape}")

    @pytest.mark.parametrize("layout_kind", LAYOUTS)
    @pytest.mark.parametrize("dtype", (torch.bool, torch.uint8, torch.float32), ids=str)
    def test_against_reference(self, backend, gen, dtype, layout_kind):
        shapes = [(2, 1, 9, 12), (1, 1, 1, 7)] if backend.interpreted else [(3, 1, 37, 43), (2, 1, 1, 19), (2, 1, 17, 1), (1, 1, 64, 5)]
        for B, _, H, W in shapes:
            m = blob_mask(gen, B, H, W, density=0.08, cell=4, touch_border=False)
            m[0] = False  # an empty image in the batch
            if B > 2:
                m[2] = True  # a full one
            m = m.to(dtype)
            if dtype == torch.float32:
                m = m * rand(gen, *m.shape, low=0.5, high=2.0)  # any nonzero value counts as True
            m = layout(m.to(backend.device), layout_kind)
            d, i = call(backend, "distance_transform", m, return_indices=True)
            rd, _ = ref.distance_transform(m.contiguous(), True)
            assert_close(d, rd, msg=f"distance_transform {dtype} {layout_kind} {(B, H, W)}")
            check_indices(d, i, m, f"distance_transform {dtype} {layout_kind} {(B, H, W)}")

    @pytest.mark.parametrize("backend", ORACLE_PARAMS)
    def test_against_oracle(self, backend, gen):
        """scipy.ndimage.distance_transform_edt(~mask, return_indices=True): equal distances (to float32
        rounding); indices may differ from scipy's on ties, so they are checked for validity instead."""
        skip_unavailable(backend)
        ndi = pytest.importorskip("scipy.ndimage")
        H, W = (10, 13) if backend.interpreted else (57, 71)
        masks = blob_mask(gen, 3, H, W, density=0.05, cell=6, touch_border=False)
        masks[2] = torch.rand(H, W, generator=gen) < 0.02  # scattered points: many exact ties
        masks[2, 0, H // 2, W // 2] = True
        d, i = call(backend, "distance_transform", masks.to(backend.device), return_indices=True)
        for b in range(3):
            sd, si = ndi.distance_transform_edt(~to_np(masks[b, 0]), return_indices=True)
            assert_close(d[b, 0].cpu(), torch.from_numpy(sd).to(torch.float32), atol=0, rtol=2**-23,
                         msg=f"distance_transform vs scipy image {b}")
            # scipy's own indices satisfy the same check (sanity of check_indices on ties)
            check_indices(torch.from_numpy(sd).float()[None, None], torch.from_numpy(si).long()[None], masks[b : b + 1], "scipy")
        check_indices(d, i, masks, "distance_transform vs scipy")

    def test_gradcheck(self, backend):
        """Not differentiable: requires_grad input is refused."""
        with pytest.raises(ValueError, match=r"mask.*not differentiable"):
            call(backend, "distance_transform", torch.rand(1, 1, 4, 4, device=backend.device, requires_grad=True))

    def test_opcheck(self, gen, ns):
        dev = ns_device(ns)
        ops = getattr(torch.ops, ns)
        m = blob_mask(gen, 2, 6, 7, density=0.1, device=dev)
        for mask in (m, m.float()):
            torch.library.opcheck(ops.distance_transform.default, (mask, True))
            torch.library.opcheck(ops.distance_transform.default, (mask, False))

    def test_dynamo(self, gen, dyn):
        case, compile_backend = dyn
        m = blob_mask(gen, 1, 8, 9, density=0.1, device=case.device)
        f = torch.compile(lambda t: hk.distance_transform(t, return_indices=True, backend=case.name), fullgraph=True,
                          backend=compile_backend)
        d, i = f(m)
        assert_close(d, ref.distance_transform(m)[0], msg=f"compiled distance_transform {case}")
        check_indices(d, i, m, f"compiled distance_transform {case}")

    def test_exception(self, backend):
        d = backend.device
        with pytest.raises(ValueError, match=r"mask.*\[B, 1, H, W\]"):
            call(backend, "distance_transform", torch.zeros(1, 2, 4, 4, dtype=torch.bool, device=d))
        with pytest.raises(ValueError, match="mask"):
            call(backend, "distance_transform", torch.zeros(4, 4, dtype=torch.bool, device=d))
        with pytest.raises(TypeError, match="mask"):
            call(backend, "distance_transform", [[True]])

    def test_exception_cpu(self):
        m = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
        check_cuda_on_cpu_tensors(lambda b: hk.distance_transform(m, backend=b))
        if hk.available_backends()["cpu"] is not True:
            pytest.skip("cpu backend unavailable")
        with pytest.raises((ValueError, RuntimeError), match="mask"):
            torch.ops.hmore.distance_transform(torch.zeros(1, 3, 4, 4, dtype=torch.bool), False)
