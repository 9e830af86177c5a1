"""Helpers shared by every test file: the one tolerance table, assert_close, random inputs, layouts.

Tolerances (``TOL``) are keyed by dtype. float32/float64 are compared to the reference run in the same
dtype. float16/bfloat16 are judged against a float64 reference (``assert_close_lowp``): the backend's
error may be at most twice that of PyTorch doing the same computation in that precision.
"""
from __future__ import annotations

import math

import torch

# dtype -> (atol, rtol). The edge stencils add at most 9 products per output: float32 results agree
# with the float32 reference to ~1e-6 relative; 1e-5 leaves room for a different summation order.
TOL = {
    torch.float64: (1e-12, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-3, 1e-3),  # only a floor: low precision uses assert_close_lowp
    torch.bfloat16: (8e-3, 8e-3),
}

# Gradients of a ratio (flow_edges normalised by the max) and of a square root amplify rounding; the
# backward is compared with this factor on the forward tolerance.
GRAD_TOL_FACTOR = 10.0


def tol(dtype, factor: float = 1.0):
    atol, rtol = TOL[dtype]
    return atol * factor, rtol * factor


def _fmt_index(flat: int, shape) -> tuple:
    idx = []
    for s in reversed(shape):
        idx.append(flat % s if s else 0)
        flat //= s if s else 1
    return tuple(reversed(idx))


def assert_close(actual, expected, *, dtype=None, atol=None, rtol=None, msg: str = "", check_dtype: bool = True):
    """Compare two tensors; on failure report the largest absolute difference, where, and both values.

    Bool/integer tensors must be equal (the message gives the number of mismatches and the first one).
    Floats: |a - e| <= atol + rtol * |e| everywhere; inf/NaN must sit at the same places with the same
    values. ``dtype`` picks the tolerances from ``TOL`` (default: the dtype of ``expected``).
    """
    assert isinstance(actual, torch.Tensor), f"{msg}: expected a tensor, got {type(actual).__name__}"
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{msg}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
    )
    if check_dtype:
        assert actual.dtype == expected.dtype, f"{msg}: dtype {actual.dtype} != expected {expected.dtype}"
    a = actual.detach().cpu()
    e = expected.detach().cpu()
    if a.numel() == 0:
        return
    if not e.is_floating_point():
        bad = a.to(e.dtype) != e
        if bad.any():
            flat = int(bad.flatten().nonzero()[0])
            where = _fmt_index(flat, e.shape)
            raise AssertionError(
                f"{msg}: {int(bad.sum())} of {e.numel()} elements differ; first at {where}: "
                f"actual {a.flatten()[flat].item()} vs expected {e.flatten()[flat].item()}"
            )
        return
    d = dtype if dtype is not None else e.dtype
    if atol is None or rtol is None:
        t_atol, t_rtol = TOL.get(d, TOL[torch.float32])
        atol = t_atol if atol is None else atol
        rtol = t_rtol if rtol is None else rtol
    a = a.to(torch.float64)
    e = e.to(torch.float64)
    fa, fe = torch.isfinite(a), torch.isfinite(e)
    nonfinite_bad = (fa != fe) | (~fe & ~(a.isnan() & e.isnan()) & (a != e))
    if nonfinite_bad.any():
        flat = int(nonfinite_bad.flatten().nonzero()[0])
        raise AssertionError(
            f"{msg}: non-finite mismatch ({int(nonfinite_bad.sum())} elements); first at "
            f"{_fmt_index(flat, e.shape)}: actual {a.flatten()[flat].item()} vs expected {e.flatten()[flat].item()}"
        )
    both = fa & fe
    diff = torch.where(both, (a - e).abs(), torch.zeros_like(a))
    allowed = atol + rtol * e.abs().nan_to_num(0.0, 0.0, 0.0)
    bad = diff > allowed
    if bad.any():
        flat = int(diff.flatten().argmax())
        where = _fmt_index(flat, e.shape)
        raise AssertionError(
            f"{msg}: {int(bad.sum())} of {e.numel()} elements exceed atol={atol:g} rtol={rtol:g}; "
            f"largest |difference| {diff.flatten()[flat].item():.6g} at {where}: "
            f"actual {a.flatten()[flat].item()!r} vs expected {e.flatten()[flat].item()!r}"
        )


def max_abs_error(actual, expected64) -> float:
    a = actual.detach().cpu().to(torch.float64)
    e = expected64.detach().cpu().to(torch.float64)
    if e.numel() == 0:
        return 0.0
    return float((a - e).abs().max())


def assert_close_lowp(actual, torch_same_precision, expected64, *, msg: str = ""):
    """float16/bfloat16: |actual - expected64| <= 2 * |torch_lowp - expected64| (+ one ulp of the range).

    ``torch_same_precision`` is PyTorch (the reference) run in the low precision; ``expected64`` the
    reference in float64 on the same (already rounded) inputs.
    """
    dt = actual.dtype
    assert tuple(actual.shape) == tuple(expected64.shape), f"{msg}: shape {tuple(actual.shape)} != {tuple(expected64.shape)}"
    err_torch = max_abs_error(torch_same_precision, expected64)
    scale = float(expected64.detach().abs().max()) if expected64.numel() else 0.0
    floor = torch.finfo(dt).eps * max(1.0, scale)
    bound = 2.0 * err_torch + floor
    err = max_abs_error(actual, expected64)
    if not err <= bound:
        a = actual.detach().cpu().to(torch.float64)
        e = expected64.detach().cpu().to(torch.float64)
        flat = int((a - e).abs().flatten().argmax())
        raise AssertionError(
            f"{msg}: {dt} error {err:.4g} exceeds 2x PyTorch's own {dt} error ({err_torch:.4g}) + {floor:.3g}; "
            f"at {_fmt_index(flat, e.shape)}: actual {a.flatten()[flat].item()!r} vs float64 {e.flatten()[flat].item()!r}"
        )


# ---- random inputs -------------------------------------------------------------------------------
def rand(gen, *shape, dtype=torch.float32, device="cpu", low=0.0, high=1.0):
    x = torch.rand(*shape, generator=gen, dtype=torch.float64) * (high - low) + low
    return x.to(dtype=dtype, device=device)


def randn(gen, *shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def randint(gen, low, high, *shape, dtype=torch.float32, device="cpu"):
    return torch.randint(low, high, shape, generator=gen).to(dtype=dtype, device=device)


def blob_mask(gen, B, H, W, *, density=0.5, cell=4, device="cpu", touch_border=True):
    """Random blobby bool masks [B, 1, H, W]: smooth noise (a coarse grid upsampled bilinearly)
    thresholded at its ``1 - density`` quantile. With ``touch_border``, one blob is forced onto a corner
    so that the replicate border is exercised."""
    if B * H * W == 0:
        return torch.zeros(B, 1, H, W, dtype=torch.bool, device=device)
    gh, gw = max(2, math.ceil(H / cell) + 1), max(2, math.ceil(W / cell) + 1)
    coarse = torch.rand(B, 1, gh, gw, generator=gen, dtype=torch.float64)
    fine = torch.nn.functional.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=True)
    q = torch.quantile(fine.reshape(B, -1), 1.0 - density, dim=1).view(B, 1, 1, 1)
    m = fine > q
    if touch_border:
        m[:, :, : max(1, H // 4), : max(1, W // 4)] = True
    return m.to(device)


def soft_mask(gen, B, H, W, *, dtype=torch.float64, device="cpu"):
    """Random float mask in [0, 1] with (almost surely) no ties: each window has a unique min/max."""
    return rand(gen, B, 1, H, W, dtype=dtype, device=device)


# ---- layouts -------------------------------------------------------------------------------------
def noncontig(x: torch.Tensor) -> torch.Tensor:
    """A non-contiguous view with the same values (every other element of a wider buffer)."""
    buf = torch.zeros(*x.shape[:-1], 2 * x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    buf[..., 1::2] = x
    y = buf[..., 1::2]
    assert torch.equal(y, x)
    if x.numel() > 1 and x.shape[-1] > 0:
        assert not y.is_contiguous()
    return y


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


LAYOUTS = ("contiguous", "noncontig", "channels_last")


def layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "contiguous":
        return x.contiguous()
    if kind == "noncontig":
        return noncontig(x)
    if kind == "channels_last":
        return channels_last(x)
    raise ValueError(kind)
