"""hmore train's additions for issue 18: the validation pass is logged, the CPU budget stops a run with a
checkpoint and resumes, and the training samples carry the full flow, the exact subject motion, the person
prior and the classical start as the model options need them."""
from __future__ import annotations

import csv
import math
import os

import numpy as np
import torch

from hmore.train import find_checkpoints, load_config, train, VAL_COLUMNS

TINY_MODEL = {"feature_dim": 32, "hidden_dim": 32, "context_dim": 16, "corr_levels": 2, "corr_radius": 2,
              "attention_heads": 2, "psi_dim": 32, "psi_heads": 2, "psi_layers": 2, "iters": 2}
OPTIONS = {"flow_target": "full", "flow_init": "dis_medium", "refine_dim": 8, "person_prior": True}


def cfg(out, model=None, **kw):
    over = {"out": str(out), "steps": 4, "batch_size": 2, "crop": [64, 72], "warmup_steps": 4, "num_workers": 0,
            "tensorboard": False, "quiet": True, "checkpoint_every": 2, "lr_warmup": 0}
    over.update(kw)
    over.update({f"model.{k}": v for k, v in {**TINY_MODEL, **(model or {})}.items()})
    return load_config(None, over)


def rows(out):
    with open(os.path.join(out, "log.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_validation_pass_is_logged(tmp_path):
    c = cfg(tmp_path / "run", OPTIONS, val_every=2, val_pairs=2,
            warmup_data=[{"source": "synthetic", "weight": 1.0}, {"source": "photos", "weight": 1.0}])
    train(c)
    r = rows(c.out)
    assert [int(x["step"]) for x in r] == [1, 2, 3, 4]
    for x in r:
        logged = [x[k] for k in VAL_COLUMNS]
        if int(x["step"]) % 2:
            assert logged == [""] * len(VAL_COLUMNS)
        else:  # every val metric of both sets, finite and in range
            v = dict(zip(VAL_COLUMNS, map(float, logged)))
            assert all(math.isfinite(a) for a in v.values()), v
            assert all(0.0 <= v[f"val_{s}_iou"] <= 1.0 for s in ("synthetic", "photos"))
            assert all(v[k] >= 0 for k in v)
        assert float(x["cpu_seconds"]) > 0


def test_cpu_budget_stops_with_a_checkpoint_and_resumes(tmp_path):
    c = cfg(tmp_path / "run", steps=6, budget_cpu_seconds=1e-3, checkpoint_every=100)
    res = train(c)
    assert res["step"] == 1 and res.get("budget_reached")
    assert [s for s, _ in find_checkpoints(c.out)] == [1]
    c2 = cfg(tmp_path / "run", steps=6, budget_cpu_seconds=0.0, checkpoint_every=100)
    res = train(c2, resume=True)
    assert res["step"] == 6
    steps = [int(x["step"]) for x in rows(c.out)]
    assert steps == [1, 2, 3, 4, 5, 6]
    cpu = [float(x["cpu_seconds"]) for x in rows(c.out)]
    assert cpu == sorted(cpu)  # carried across the resumption, not restarted from 0


def test_samples_carry_full_flow_exact_motion_prior_and_start():
    from hmore.data.mix import MixedPairs, PriorPolicy
    from hmore.data.synthetic import SyntheticConfig, render_pair

    ds = MixedPairs([{"source": "synthetic"}], crop=(64, 72), seed=3, prior=PriorPolicy(segmenter=0.0, corrupt=1.0),
                    flow_init="dis_medium")
    s = ds[0]
    m = s["mask0"]
    assert torch.equal(s["full_flow"] * m, s["world_flow"] * m)
    assert s["full_valid"].all() and s["has_flow"]
    # off the body the full flow is the background layer's motion: the camera moves, so it is not 0
    assert s["full_flow"][:, ~m[0]].abs().max() > 0
    assert s["subject_motion"].shape == (2,) and torch.isfinite(s["subject_motion"]).all()
    assert s["prior0"].shape == (1, 64, 72) and s["prior_valid"]
    assert set(np.unique(s["prior0"].numpy())) <= {0.0, 1.0}
    assert s["flow_init"].shape == (2, 64, 72)
    none = MixedPairs([{"source": "synthetic"}], crop=(64, 72), seed=3, prior=PriorPolicy(segmenter=0.0, corrupt=0.0))
    t = none[0]
    assert not t["prior_valid"] and not t["prior0"].any() and "flow_init" not in t


def test_prior_policy_is_validated():
    import pytest

    from hmore.data.mix import PriorPolicy

    with pytest.raises(ValueError, match="prior.segmenter"):
        PriorPolicy(segmenter=1.5)
    with pytest.raises(ValueError, match="segmenter \\+ corrupt"):
        PriorPolicy(segmenter=0.6, corrupt=0.6)
    with pytest.raises(ValueError, match="config prior: unknown key 'segmentor'"):
        load_config(None, {"prior.segmentor": 0.5})


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path):
    import pytest

    a = cfg(tmp_path / "a", {"person_prior": True}, steps=2)
    train(a)
    ck = find_checkpoints(a.out)[0][1]
    b = cfg(tmp_path / "b", {"person_prior": True, "prior_skip": True}, steps=1, init_from=ck, lr=0.0,
            weight_decay=0.0)
    train(b)
    import hmore

    src = hmore.get_model("hmore", weights=ck).state_dict()
    got = hmore.get_model("hmore", weights=find_checkpoints(b.out)[0][1]).state_dict()
    assert all(torch.equal(src[k], got[k]) for k in src)  # lr 0: the loaded weights, unchanged
    assert float(got["prior_alpha"]) == 1.0  # the new parameter keeps its initialisation
    c = cfg(tmp_path / "c", {"person_prior": True, "feature_dim": 16, "attention_heads": 2}, steps=1, init_from=ck)
    with pytest.raises(ValueError, match="init_from .*another shape"):
        train(c)
    d = cfg(tmp_path / "d", steps=1, init_from=str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        train(d)
