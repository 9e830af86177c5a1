"""hmore eval's additions for issue 18: the real-photo test split, the DIS x MediaPipe pipeline, the frames-only
run of a person-prior model, and the person-map IoU, on hand-checkable cases."""
from __future__ import annotations

import pytest
import torch

from hmore import evaluate as ev
from hmore.models import HMoRe, HMoReConfig

TINY = dict(feature_dim=32, hidden_dim=32, context_dim=16, corr_levels=2, corr_radius=2, attention_heads=2,
            psi_dim=32, psi_heads=2, psi_layers=2, iters=2)


def test_map_iou_counts_by_hand():
    a = torch.zeros(1, 1, 2, 3, dtype=torch.bool)
    b = torch.zeros(1, 1, 2, 3, dtype=torch.bool)
    a[0, 0, 0, :2] = True  # 2 pixels
    b[0, 0, 0, 1:] = True  # 2 pixels, 1 shared
    assert ev.map_iou_counts(a, b) == (1, 3)


def test_dis_mediapipe_is_dis_inside_the_mask(monkeypatch):
    import hmore.data.segment as seg

    H, W = 64, 72
    g = torch.Generator().manual_seed(0)
    f0 = torch.rand(1, 3, H, W, generator=g)
    f1 = torch.roll(f0, 2, dims=3)
    prior = torch.zeros(1, 1, H, W)
    prior[..., 10:40, 20:50] = 0.9
    monkeypatch.setattr(seg, "batch_person_prior", lambda frames: prior)
    world, local, smap = ev._Runner("dis_mediapipe")({"frame0": f0, "frame1": f1})
    dis, _, none = ev._Runner("dis_medium")({"frame0": f0, "frame1": f1})
    m = prior > 0.5
    assert none is None and torch.equal(smap, m)
    assert torch.equal(world, dis * m)
    v_s = dis[:, :, m[0, 0]].mean(-1)
    assert torch.allclose(local, (world - v_s[:, :, None, None]) * m, atol=1e-5)


def test_photo_split_ground_truth_is_the_ceiling():
    r = ev.evaluate_photos(None, pairs=2, size=(64, 64), methods=("gt", "dis_medium", "zero"), progress=False)
    assert r["kind"] == "photos"
    gt = r["methods"]["gt"]
    assert gt["world_epe"] == 0 and gt["local_epe"] == 0 and gt["map_iou"] == 1.0 and gt["background_leakage"] == 0
    assert r["methods"]["zero"]["world_epe"] > 0
    assert r["methods"]["dis_medium"]["map_iou"] != r["methods"]["dis_medium"]["map_iou"]  # NaN: DIS has no map


def test_frames_only_method_is_run_only_for_a_prior_model(monkeypatch):
    import hmore.data.segment as seg

    monkeypatch.setattr(seg, "batch_person_prior", lambda frames: torch.ones(frames.shape[0], 1, *frames.shape[2:]))
    torch.manual_seed(0)
    plain = HMoRe(HMoReConfig(**TINY))
    r = ev.evaluate_synthetic(plain, pairs=1, size=(64, 64), methods=("hmore", "hmore_frames_only"), progress=False)
    assert list(r["methods"]) == ["hmore"]
    torch.manual_seed(0)
    prior_model = HMoRe(HMoReConfig(person_prior=True, refine_dim=4, **TINY))
    torch.nn.init.normal_(prior_model.refine.out.weight, std=0.5)
    r = ev.evaluate_synthetic(prior_model, pairs=1, size=(64, 64), methods=("hmore", "hmore_frames_only"),
                              progress=False)
    assert list(r["methods"]) == ["hmore", "hmore_frames_only"]
    assert r["methods"]["hmore"]["world_epe"] != r["methods"]["hmore_frames_only"]["world_epe"]


def test_table_and_files_hold_the_photo_split(tmp_path):
    res = {"photos": ev.evaluate_photos(None, pairs=1, size=(64, 64), methods=("gt", "zero"), progress=False)}
    assert "Real-photo test split" in ev.format_table(res) and "map IoU" in ev.format_table(res)
    paths = ev.write_results(res, str(tmp_path / "out"))
    assert "csv_photos" in paths and open(paths["csv_photos"]).read().startswith("method,")


def test_photos_count_is_checked(tmp_path):
    import argparse

    a = argparse.Namespace(out=str(tmp_path / "o"), device="cpu", methods=["zero"], weights="none", pairs=1,
                           size=[64, 64], seed_base=0, batch_size=1, iters=None, quiet=True, photos=-1, real=None,
                           real_max_pairs=None)
    with pytest.raises(ValueError, match="--photos"):
        ev.run_eval(a)
