"""hmore.models options for real video [issue 18]: the classical warm start (flow_init), the full-flow target,
the person-prior input and the full-resolution refinement head, each on hand-checkable cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hmore.models import HMoReConfig
from hmore.models.classical import classical_flow, dis_flow_batch, gray_u8
from hmore.models.refine import backward_warp
from hmore.models.subject_motion import prior_planes
from hmore.models.world_flow import downsample_flow8, upsample_flow8

# the narrow model and random frames of test_model.py (same architecture and code paths, a fraction of the compute)
from test_model import images, tiny  # noqa: E402


def test_config_validates_the_options():
    for bad in (dict(flow_target="scene"), dict(flow_init="raft"), dict(person_prior=1), dict(refine_dim=-1),
                dict(w_epe_full=-1.0)):
        with pytest.raises(ValueError, match=f"HMoReConfig.{next(iter(bad))}"):
            HMoReConfig(**bad)
    assert {"person_prior", "refine_dim"} <= set(HMoReConfig.ARCH_FIELDS)


def test_untrained_warm_start_returns_the_estimate_exactly():
    # the flow head starts at zero with a classical start: Φ's correction is 0, so the world flow is the
    # given estimate itself, at full resolution (not its 1/8 block mean)
    m = tiny(flow_init="dis_medium").eval()
    x1, x2 = images(2, 64, 80)
    g = torch.Generator().manual_seed(3)
    init = torch.randn(2, 2, 64, 80, generator=g) * 3
    with torch.no_grad():
        o = m(x1, x2, flow_init=init)
    assert torch.allclose(o["world_flow"], init, atol=1e-5)


def test_warm_start_defaults_to_dis_on_the_frames():
    m = tiny(flow_init="dis_medium").eval()
    x1, x2 = images(1, 64, 80)
    g0, g1 = gray_u8(x1), gray_u8(x2)
    want = torch.from_numpy(classical_flow("dis_medium", g0[0], g1[0])).permute(2, 0, 1)[None]
    with torch.no_grad():
        o = m(x1, x2)
    assert torch.allclose(o["world_flow"], want, atol=1e-5)
    assert torch.equal(dis_flow_batch(x1, x2), want)


def test_warm_start_padding_keeps_the_estimate():
    # 70x77 pads to 72x80 inside: the estimate is padded and cropped back with the frames
    m = tiny(flow_init="dis_medium").eval()
    x1, x2 = images(1, 70, 77)
    init = torch.full((1, 2, 70, 77), 1.5)
    with torch.no_grad():
        o = m(x1, x2, flow_init=init)
    assert torch.allclose(o["world_flow"], init, atol=1e-5)


def test_flow_init_shape_is_checked():
    m = tiny(flow_init="dis_medium").eval()
    with pytest.raises(ValueError, match="flow_init"):
        m(*images(1, 64, 80), flow_init=torch.zeros(1, 2, 32, 40))


def test_downsample_then_upsample_of_a_constant_flow():
    f = torch.full((1, 2, 16, 24), 4.0)
    low = downsample_flow8(f)
    assert low.shape == (1, 2, 2, 3) and torch.allclose(low, torch.full_like(low, 0.5))
    assert torch.allclose(upsample_flow8(low), f)


def test_full_target_world_is_full_times_map():
    m = tiny(flow_target="full").eval()
    with torch.no_grad():
        o = m(*images(2, 64, 72))
    assert torch.equal(o["world_flow"], o["full_flow"] * o["subject_map"])
    want = (o["world_flow"] - o["subject_motion"][:, :, None, None]) * o["subject_map"]
    assert torch.equal(o["local_flow"], want)
    m.train()
    o = m(*images(1, 64, 72))
    assert len(o["full_flow_iters"]) == 2 and o["full_flow_iters"][-1] is o["full_flow"]
    assert "world_flow_iters" not in o


def test_prior_planes_by_hand():
    like = torch.zeros(2, 1, 2, 2)
    p = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    planes = prior_planes(p, torch.tensor([True, False]), like)
    assert torch.equal(planes[0, 0], p[0, 0]) and torch.equal(planes[0, 1], torch.ones(2, 2))
    assert torch.equal(planes[1], torch.zeros(2, 2, 2))  # invalid: the frames-only input
    assert torch.equal(prior_planes(None, None, like), torch.zeros(2, 2, 2, 2))


def test_person_prior_input_changes_the_map_and_is_refused_without_the_option():
    m = tiny(person_prior=True, refine_dim=8).eval()
    torch.nn.init.normal_(m.refine.out.weight, std=0.1)  # a head that reads its inputs (trained ones do)
    x1, x2 = images(1, 64, 80)
    prior = torch.zeros(1, 1, 64, 80)
    prior[..., 16:48, 20:60] = 1.0
    with torch.no_grad():
        a = m(x1, x2, prior=prior)["subject_map"]
        b = m(x1, x2)["subject_map"]  # frames-only
        c = m(x1, x2, prior=prior, prior_valid=torch.tensor([False]))["subject_map"]
        d = m(x1, x2, prior=(prior > 0.5))["subject_map"]  # bool prior = the same probabilities
    assert not torch.allclose(a, b)
    assert torch.equal(b, c)  # an invalid prior is no prior
    assert torch.equal(a, d)
    with pytest.raises(ValueError, match="prior"):
        tiny()(x1, x2, prior=prior)
    with pytest.raises(ValueError, match="prior: expected shape"):
        m(x1, x2, prior=torch.zeros(1, 1, 32, 40))


def test_untrained_refinement_head_changes_nothing():
    x1, x2 = images(2, 64, 72)
    m = tiny(refine_dim=8, flow_target="full").eval()
    with torch.no_grad():
        a = m(x1, x2)
        head, m.refine = m.refine, None
        b = m(x1, x2)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_refinement_head_gets_gradients():
    m = tiny(refine_dim=8, flow_target="full", person_prior=True).train()
    x1, x2 = images(1, 64, 72)
    o = m(x1, x2, prior=torch.ones(1, 1, 64, 72))
    (o["full_flow"].square().mean() + o["subject_map_logits"].mean()).backward()
    assert m.refine.out.weight.grad is not None and m.refine.out.weight.grad.abs().sum() > 0


def test_backward_warp_of_an_integer_shift_is_exact():
    img = torch.arange(5 * 7, dtype=torch.float32).reshape(1, 1, 5, 7)
    flow = torch.zeros(1, 2, 5, 7)
    flow[:, 0] = 2.0  # x + 2
    flow[:, 1] = 1.0  # y + 1
    out = backward_warp(img, flow)
    assert torch.equal(out[0, 0, :4, :5], img[0, 0, 1:, 2:])


def test_encode_decode_equals_forward():
    m = tiny().eval()
    x1, x2 = images(2, 64, 80)
    with torch.no_grad():
        a = m.phi(x1 * 2 - 1, x2 * 2 - 1, 3)
        e = m.phi.encode(torch.cat([x1, x2]) * 2 - 1)
        e1 = {k: v[:2] for k, v in e.items()}
        e2 = {"fmap": e["fmap"][2:]}
        b = m.phi.decode(e1, e2, 3)
    assert torch.allclose(a["flow_low"], b["flow_low"], atol=1e-5)


def test_shipped_weights_still_load():
    import hmore

    m = hmore.get_model("hmore", weights="default")
    assert m.config.flow_target in ("world", "full")


def test_hard_gate_keeps_the_whole_flow_on_the_map_at_inference_only():
    m = tiny(flow_target="full", world_gate="hard").eval()
    x1, x2 = images(1, 64, 72)
    with torch.no_grad():
        o = m(x1, x2)
    gate = (o["subject_map"] > 0.5).float()
    assert torch.equal(o["world_flow"], o["full_flow"] * gate)
    assert torch.equal(o["local_flow"], (o["world_flow"] - o["subject_motion"][:, :, None, None]) * gate)
    m.train()
    o = m(x1, x2)
    assert torch.equal(o["world_flow"], o["full_flow"] * o["subject_map"])  # training gates softly


def test_prior_skip_adds_the_clamped_prior_logit_to_the_map():
    cfg = dict(person_prior=True, prior_skip=True)
    m = tiny(**cfg).eval()
    x1, x2 = images(1, 64, 80)
    prior = torch.zeros(1, 1, 64, 80)
    prior[..., 16:48, 20:60] = 1.0
    with torch.no_grad():
        a = m(x1, x2, prior=prior)["subject_map"]
        m.prior_alpha.zero_()
        b = m(x1, x2, prior=prior)["subject_map"]
        frames_only = m(x1, x2)["subject_map"]
    logit = lambda t: torch.log(t / (1 - t))  # noqa: E731
    # the added term is exactly +-logit(0.95) (alpha 1) where the prior is 1 / 0
    want = torch.where(prior > 0.5, torch.tensor(2.944439), torch.tensor(-2.944439))
    assert torch.allclose(logit(a) - logit(b), want, atol=1e-3)
    with torch.no_grad():
        m.prior_alpha.fill_(1.0)
        assert torch.equal(m(x1, x2)["subject_map"], frames_only)  # no prior: no skip
    with pytest.raises(ValueError, match="prior_skip"):
        HMoReConfig(prior_skip=True)
