"""hmore.models: shapes, dtypes and layouts at odd sizes, the world/local identity, gradients to every
parameter, backend agreement (reference vs the fused ops), corr modes, torch.compile, get_model."""
from __future__ import annotations

import pytest
import torch

import hmore
from hmore.models import HMoRe, HMoReConfig

# a narrow model: the same architecture and code paths, a fraction of the compute
TINY = dict(feature_dim=32, hidden_dim=32, context_dim=16, corr_levels=2, corr_radius=2, attention_heads=2,
            psi_dim=32, psi_heads=2, psi_layers=2, iters=2)


def tiny(**kw) -> HMoRe:
    torch.manual_seed(0)
    return HMoRe(HMoReConfig(**{**TINY, **kw}))


def images(B=2, H=72, W=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, H, W, generator=g), torch.rand(B, 3, H, W, generator=g)


class TestShapes:
    @pytest.mark.parametrize("H,W", [(64, 64), (65, 97), (100, 131)])
    def test_outputs_eval(self, H, W):
        m = tiny().eval()
        x1, x2 = images(2, H, W)
        with torch.no_grad():
            o = m(x1, x2)
        assert set(o) == {"world_flow", "local_flow", "subject_motion", "subject_map"}
        assert o["world_flow"].shape == (2, 2, H, W) and o["local_flow"].shape == (2, 2, H, W)
        assert o["subject_motion"].shape == (2, 2) and o["subject_map"].shape == (2, 1, H, W)
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in o.values())
        assert ((o["subject_map"] >= 0) & (o["subject_map"] <= 1)).all()

    def test_world_local_identity(self):
        m = tiny().eval()
        with torch.no_grad():
            o = m(*images(2, 70, 77))
        want = (o["world_flow"] - o["subject_motion"][:, :, None, None]) * o["subject_map"]
        assert torch.equal(o["local_flow"], want)

    def test_training_outputs(self):
        m = tiny(iters=3).train()
        o = m(*images(1, 64, 72))
        assert len(o["world_flow_iters"]) == 3
        assert o["world_flow_iters"][-1] is o["world_flow"]
        assert o["subject_map_logits"].shape == (1, 1, 64, 72)
        assert torch.allclose(torch.sigmoid(o["subject_map_logits"]), o["subject_map"])

    def test_uint8_and_channels_last_and_iters(self):
        m = tiny().eval()
        g = torch.Generator().manual_seed(1)
        u1 = torch.randint(0, 256, (1, 3, 64, 80), dtype=torch.uint8, generator=g)
        u2 = torch.randint(0, 256, (1, 3, 64, 80), dtype=torch.uint8, generator=g)
        with torch.no_grad():
            a = m(u1, u2)
            b = m(u1.float() / 255, u2.float() / 255)
            c = m((u1.float() / 255).contiguous(memory_format=torch.channels_last),
                  (u2.float() / 255).contiguous(memory_format=torch.channels_last))
            d = m(u1, u2, iters=4)
        for k in a:
            assert torch.equal(a[k], b[k]), k
            assert torch.allclose(a[k], c[k], atol=1e-5), k
        assert not torch.equal(a["world_flow"], d["world_flow"])

    def test_bad_inputs(self):
        m = tiny().eval()
        x = torch.rand(1, 3, 64, 64)
        with pytest.raises(ValueError, match="at least 64"):
            m(torch.rand(1, 3, 63, 80), torch.rand(1, 3, 63, 80))
        with pytest.raises(ValueError, match="image2"):
            m(x, torch.rand(1, 3, 64, 72))
        with pytest.raises(ValueError, match="image1"):
            m(torch.rand(1, 4, 64, 64), x)
        with pytest.raises(TypeError, match="image1"):
            m(torch.zeros(1, 3, 64, 64, dtype=torch.int16), x)
        with pytest.raises(ValueError, match="iters"):
            m(x, x, iters=0)


class TestGradients:
    def test_every_parameter_gets_a_gradient(self):
        from hmore.data.mix import MixedPairs
        from hmore.losses import HMoReLoss

        m = tiny(iters=2).train()
        ds = MixedPairs([{"source": "synthetic"}], crop=(64, 72), seed=1)
        b = torch.utils.data.default_collate([ds[i] for i in range(2)])
        total, _ = HMoReLoss(m.config)(m(b["frame0"], b["frame1"]), b)
        total.backward()
        missing = [n for n, p in m.named_parameters() if p.grad is None or not (p.grad.abs().sum() > 0)]
        assert not missing, missing
        assert any(n.startswith("phi.attention") for n, _ in m.named_parameters())
        assert any(n.startswith("psi.layers") for n, _ in m.named_parameters())

    @pytest.mark.parametrize("mode", ["allpairs", "otf"])
    def test_reference_backend_agrees(self, mode):
        from hmore.data.mix import MixedPairs
        from hmore.losses import HMoReLoss

        ds = MixedPairs([{"source": "synthetic"}], crop=(64, 72), seed=2)
        b = torch.utils.data.default_collate([ds[i] for i in range(2)])
        res = {}
        for backend in ("reference", "auto"):
            m = tiny(backend=backend, corr_mode=mode).train()
            o = m(b["frame0"], b["frame1"])
            total, _ = HMoReLoss(m.config)(o, b)
            total.backward()
            res[backend] = (o, total, {n: p.grad for n, p in m.named_parameters()})
        (o_r, t_r, g_r), (o_a, t_a, g_a) = res["reference"], res["auto"]
        for k in ("world_flow", "local_flow", "subject_motion", "subject_map"):
            assert torch.allclose(o_r[k], o_a[k], atol=1e-4, rtol=1e-4), (k, (o_r[k] - o_a[k]).abs().max())
        assert torch.allclose(t_r, t_a, rtol=1e-4)
        for n in g_r:
            err = (g_r[n] - g_a[n]).norm() / g_r[n].norm().clamp_min(1e-12)
            assert err < 1e-3, (n, float(err))

    def test_corr_modes_agree(self):
        x1, x2 = images(1, 64, 80, seed=3)
        outs = []
        for mode in ("allpairs", "otf"):
            m = tiny(corr_mode=mode).eval()
            with torch.no_grad():
                outs.append(m(x1, x2))
            assert m.last_corr_mode == mode
        assert torch.allclose(outs[0]["world_flow"], outs[1]["world_flow"], atol=1e-4)


def test_torch_compile_runs():
    m = tiny(iters=1).eval()
    x1, x2 = images(1, 64, 64)
    with torch.no_grad():
        want = m(x1, x2)
        got = torch.compile(m)(x1, x2)
    assert torch.allclose(want["world_flow"], got["world_flow"], atol=1e-4)
    assert torch.allclose(want["local_flow"], got["local_flow"], atol=1e-4)


class TestGetModel:
    def test_default_and_overrides(self):
        m = hmore.get_model("hmore", iters=5)
        assert isinstance(m, HMoRe) and m.config.iters == 5 and m.config.feature_dim == 128
        with pytest.raises(ValueError, match="unknown model"):
            hmore.get_model("raft")
        with pytest.raises(ValueError, match="did you mean 'iters'"):
            hmore.get_model("hmore", iter=3)

    def test_weights_round_trip(self, tmp_path):
        from hmore.train import atomic_save

        m = tiny().eval()
        p = tmp_path / "w.pt"
        atomic_save({"model": m.state_dict(), "config": m.config.to_dict()}, str(p))
        m2 = hmore.get_model("hmore", weights=str(p), backend="reference").eval()
        assert m2.config.backend == "reference" and m2.config.feature_dim == 32
        x1, x2 = images(1, 64, 64)
        with torch.no_grad():
            assert torch.allclose(m(x1, x2)["world_flow"], m2(x1, x2)["world_flow"], atol=1e-5)
        with pytest.raises(ValueError, match="feature_dim"):
            hmore.get_model("hmore", weights=str(p), feature_dim=64)
        trunc = tmp_path / "t.pt"
        trunc.write_bytes(p.read_bytes()[:1000])
        with pytest.raises(ValueError, match="t.pt"):
            hmore.get_model("hmore", weights=str(trunc))
        with pytest.raises(FileNotFoundError, match="nope.pt"):
            hmore.get_model("hmore", weights=str(tmp_path / "nope.pt"))


class TestConfig:
    def test_validation(self):
        with pytest.raises(ValueError, match="corr_mode"):
            HMoReConfig(corr_mode="fast")
        with pytest.raises(ValueError, match="attention_heads"):
            HMoReConfig(attention_heads=3)
        with pytest.raises(ValueError, match="gamma"):
            HMoReConfig(gamma=0.0)
        c = HMoReConfig(patch_sizes=[8, 16])
        assert c.patch_sizes == (8, 16)
        assert HMoReConfig.from_dict(c.to_dict()) == c
