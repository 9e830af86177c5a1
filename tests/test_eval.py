"""hmore eval: the metrics on hand-computed cases, the classical methods and zero flow on tiny synthetic pairs,
the end-to-end command with a random-init model (JSON/CSV/PNG), the real-clip path, and bad input by name."""
from __future__ import annotations

import argparse
import csv
import json
import math
import os

import cv2
import numpy as np
import pytest
import torch

from hmore import evaluate as ev
from hmore.data.format import write_clip
from hmore.data.synthetic import SyntheticConfig, SyntheticPairs, render_clip


def flow_of(u, v=None):
    """[H, W] arrays (v default 0) -> [1, 2, H, W] float32."""
    u = torch.as_tensor(u, dtype=torch.float32)
    v = torch.zeros_like(u) if v is None else torch.as_tensor(v, dtype=torch.float32)
    return torch.stack([u, v])[None]


# ------------------------------------------------------------------------------------------ metrics
def test_body_flow_counts_epe_px1_px3():
    pred = flow_of([[3.0, 0.5], [0.0, 0.0]], [[4.0, 0.0], [2.0, 9.0]])  # errors vs 0: 5, 0.5, 2, 9
    gt = torch.zeros_like(pred)
    valid = torch.tensor([[[[True, True], [True, False]]]])  # the error of 9 is off the body
    c = ev.body_flow_counts(pred, gt, valid)
    assert c["pixels"] == 3
    assert c["epe_sum"] == pytest.approx(5 + 0.5 + 2)
    assert (c["lt1"], c["lt3"]) == (1, 2)
    assert ev.endpoint_error(pred, gt)[0, 1, 1] == pytest.approx(9.0)


def test_leakage_outside_dilated_mask():
    mask = torch.zeros(1, 1, 15, 15, dtype=torch.bool)
    mask[0, 0, 7, 7] = True
    flow = flow_of(np.full((15, 15), 3.0), np.full((15, 15), 4.0))  # |flow| = 5 everywhere ...
    flow[:, :, 5:10, 5:10] = 100.0  # ... except on the 5x5 block the 2 px dilation covers: not counted
    s, n = ev.leakage_counts(flow, mask, dilation=2)
    assert n == 15 * 15 - 25
    assert s / n == pytest.approx(5.0)
    s1, n1 = ev.leakage_counts(flow, mask, dilation=1)  # a 3x3 block: 16 of the large values leak in
    assert n1 == 15 * 15 - 9 and s1 == pytest.approx(5.0 * (n1 - 16) + 100 * math.sqrt(2) * 16)


def _line(x, H=20, W=30):
    m = torch.zeros(1, 1, H, W, dtype=torch.bool)
    m[0, 0, 5:15, x] = True
    return m


def test_boundary_f_score_perfect_none_and_shifted():
    b = _line(10)
    assert ev.f_score(ev.boundary_counts(b, b)) == (1.0, 1.0, 1.0)
    none = ev.boundary_counts(torch.zeros_like(b), b)
    assert none["edge_pixels"] == 0 and ev.f_score(none) == (0.0, 0.0, 0.0)
    assert ev.f_score(ev.boundary_counts(_line(12), b))[2] == 1.0  # 2 px away: within the tolerance
    assert ev.f_score(ev.boundary_counts(_line(13), b))[2] == 0.0  # 3 px away: not
    # an edge line on the boundary's 2 px shift plus a stray line: P = 1/2, R = 1, F = 2/3
    c = ev.boundary_counts(_line(12) | _line(20), b)
    assert c == {"edge_matched": 10, "edge_pixels": 20, "boundary_matched": 10, "boundary_pixels": 10}
    assert ev.f_score(c) == pytest.approx((0.5, 1.0, 2 / 3))
    # the tolerance is Euclidean: 2 px straight above the line's end is within it, (1, 2) px away is not
    e = torch.zeros_like(b)
    e[0, 0, 3, 10] = True
    assert ev.boundary_counts(e, b)["edge_matched"] == 1
    e = torch.zeros_like(b)
    e[0, 0, 3, 11] = True
    assert ev.boundary_counts(e, b)["edge_matched"] == 0


def test_flow_edge_map_threshold_in_px_per_px():
    u = np.zeros((12, 16), np.float32)
    u[:, 8:] = 2.0  # a 2 px step: Sobel/8 gives 1 px/px on the two columns beside it
    e = ev.flow_edge_map(flow_of(u))
    cols = e[0, 0].any(0).nonzero().flatten().tolist()
    assert cols == [7, 8] and bool(e[0, 0, :, 7:9].all())
    assert not ev.flow_edge_map(flow_of(u * 0.4)).any()  # a 0.8 px step: 0.4 < 0.5
    assert not ev.flow_edge_map(flow_of(np.full((12, 16), 7.0))).any()  # constant flow: no edge


def test_classical_local_flow_subtracts_the_frame_median():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 2, 9, 10, generator=g) + torch.tensor([3.0, -1.0])[None, :, None, None]
    loc = ev.classical_local_flow(f)
    med = np.median(f.numpy().reshape(2, 2, -1), axis=-1)
    np.testing.assert_allclose(loc.numpy(), f.numpy() - med[:, :, None, None], atol=1e-5)


def test_skeleton_satisfaction_counts_by_hand():
    k = torch.zeros(1, 2, 1, 7)
    k[0, 0] = 2.0  # offset (2, 0) ...
    k[0, 0, 0, 5] = 0.3  # ... except a tiny one (not considered)
    u = torch.tensor([[2.0, 2.5, 2.0, 2.0, 0.0, 0.3, 2.0], [0.0, 0.0, 0.4, 1.0, 0.0, 0.0, 0.0]])[None, :, None, :]
    valid = torch.ones(1, 1, 1, 7, dtype=torch.bool)
    valid[..., 6] = False  # unmatched pixel: not considered
    # exact; 1.25x too long; 11.3 deg and 1.02x; 26.6 deg; zero flow
    assert ev.skeleton_satisfaction_counts(u, k, valid) == (2, 5)


# ------------------------------------------------------------------------------------------ methods on data
def test_classical_and_zero_on_tiny_pairs():
    n, size = 4, (96, 96)
    r = ev.evaluate_synthetic(None, pairs=n, size=size, seed_base=7,
                              methods=("dis_ultrafast", "dis_fast", "dis_medium", "farneback", "zero", "gt"),
                              batch_size=3, progress=False)
    assert r["model"] is None and r["settings"]["pairs"] == n
    assert r["config"]["background_motion"] and r["config"]["num_distractors"][1] >= 1
    ds = SyntheticPairs("test", n, SyntheticConfig(height=96, width=96), seed_base=7)
    mags, lmags = [], []
    for i in range(n):
        s = ds[i]
        v = s["flow_valid"][0]
        mags.append(torch.linalg.vector_norm(s["world_flow"], dim=0)[v])
        lmags.append(torch.linalg.vector_norm(s["local_flow"], dim=0)[v])
    zero, gt = r["methods"]["zero"], r["methods"]["gt"]
    assert zero["world_epe"] == pytest.approx(float(torch.cat(mags).double().mean()), rel=1e-6)
    assert zero["local_epe"] == pytest.approx(float(torch.cat(lmags).double().mean()), rel=1e-6)
    assert zero["background_leakage"] == 0 and zero["boundary_f"] == 0
    assert gt["world_epe"] == 0 and gt["local_epe"] == 0 and gt["px1"] == 1 and gt["boundary_f"] > 0.5
    for m in ("dis_ultrafast", "dis_fast", "dis_medium", "farneback"):
        x = r["methods"][m]
        assert all(math.isfinite(x[k]) for k in ("world_epe", "local_epe", "background_leakage", "pairs_per_s"))
        assert 0 <= x["px1"] <= x["px3"] <= 1 and 0 <= x["boundary_f"] <= 1
        assert x["background_leakage"] > 0  # the camera and distractors move: classical flow reports it
        assert x["body_pixels"] == zero["body_pixels"]


def test_classical_flow_recovers_a_pure_translation():
    g = np.random.default_rng(0)
    img = cv2.GaussianBlur((g.random((80, 96)) * 255).astype(np.uint8), (0, 0), 2.0)
    img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
    shifted = np.roll(img, 2, axis=1)  # content moves +2 px in x
    for m in ("dis_medium", "farneback"):
        f = ev.classical_flow(m, img, shifted)
        assert f.shape == (80, 96, 2) and f.dtype == np.float32
        assert np.median(f[20:60, 20:76, 0]) == pytest.approx(2.0, abs=0.2)


# ------------------------------------------------------------------------------------------ end to end
def _args(**kw):
    from hmore.cli import build_parser

    p = build_parser()
    q = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)][0].choices["eval"]
    argv = ["eval"]
    for k, v in kw.items():
        argv.append("--" + k.replace("_", "-"))
        argv += [str(x) for x in v] if isinstance(v, (list, tuple)) else ([] if v is True else [str(v)])
    return p.parse_args(argv), q


def test_every_option_has_help_and_a_shown_default():
    _, q = _args()
    for a in q._actions:
        if a.dest != "help":
            assert a.help, a.dest
    assert "(default: 200)" in q.format_help()


def test_end_to_end_random_model_writes_json_csv_png(tmp_path, capsys):
    out = tmp_path / "ev"
    a, _ = _args(weights="none", pairs=3, size=(64, 80), methods=["hmore", "dis_fast", "zero"], iters=1,
                 batch_size=2, out=out, device="cpu", quiet=True)
    assert a.func(a) == 0
    printed = capsys.readouterr().out
    assert "hmore" in printed and "dis_fast" in printed and "world EPE" in printed
    res = json.loads((out / "eval.json").read_text())
    syn = res["synthetic"]
    assert list(syn["methods"]) == ["hmore", "dis_fast", "zero"]
    assert syn["settings"]["size"] == [64, 80] and syn["settings"]["iters"] == 1
    assert syn["model"]["weights"].startswith("none") and syn["model"]["parameters"] > 0
    from hmore.provenance import git_commit, machine

    assert syn["environment"]["commit"] == git_commit() and syn["environment"]["machine"] == machine("cpu")
    h = syn["methods"]["hmore"]
    assert h["world_epe"] > 0 and 0 <= h["boundary_f"] <= 1 and h["pairs_per_s"] > 0
    assert syn["methods"]["zero"]["boundary_f"] == 0
    with open(out / "eval_synthetic.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["hmore", "dis_fast", "zero"]
    assert float(rows[0]["world_epe"]) == pytest.approx(h["world_epe"])
    png = cv2.imread(str(out / "eval.png"))
    assert png is not None and png.shape[1] > png.shape[0]
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temporary file left


def test_real_path_on_a_written_clip(tmp_path):
    root = tmp_path / "clips"
    write_clip(str(root / "a"), render_clip(3, 3, SyntheticConfig(height=64, width=72)))
    r = ev.evaluate_real([str(root)], "none", methods=("hmore", "dis_medium", "zero"), iters=1, progress=False)
    assert r["clips"] == [str(root / "a")]
    for m in ("hmore", "dis_medium", "zero"):
        x = r["methods"][m]
        assert x["pairs"] == 2 and x["considered_pixels"] > 0 and list(x["per_clip"]) == r["clips"]
        assert 0 <= x["skeleton_satisfaction"] <= 1
    assert r["methods"]["zero"]["skeleton_satisfaction"] == 0
    assert math.isnan(r["methods"]["zero"]["flow_on_person"])  # 0 / 0: written as null
    assert 0 < r["methods"]["dis_medium"]["flow_on_person"] < 1
    paths = ev.write_results({"real": r}, str(tmp_path / "o"))
    assert json.loads(open(paths["json"]).read())["real"]["methods"]["zero"]["flow_on_person"] is None
    with open(paths["csv_real"], newline="") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert "skeleton sat." in ev.format_table({"real": r})


def test_chart_draws_a_png_and_names_a_missing_matplotlib(monkeypatch):
    import sys

    from hmore.evaluation.report import _chart_png

    panels = [("world EPE", ["hmore", "zero"], [1.5, 3.0]), ("F", ["hmore", "zero"], [0.4, float("nan")])]
    img = cv2.imdecode(np.frombuffer(_chart_png(panels), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] > img.shape[0] and (img < 250).any()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(RuntimeError, match="needs matplotlib"):
        _chart_png(panels)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw, name", [
    ({"methods": ("hmore", "raft")}, "methods"),
    ({"methods": ()}, "methods"),
    ({"methods": ("zero", "zero")}, "methods"),
    ({"pairs": 0}, "pairs"),
    ({"pairs": 2.5}, "pairs"),
    ({"batch_size": 0}, "batch_size"),
    ({"size": (64,)}, "size"),
    ({"size": (48, 64)}, "size"),  # smaller than the model accepts
    ({"iters": 0}, "iters"),
])
def test_bad_synthetic_arguments_are_named(kw, name):
    args = {"methods": ("zero",), "pairs": 1, "progress": False}
    if "size" in kw:
        args["methods"] = ("hmore",)
        args["pairs"] = 1
    args.update(kw)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        ev.evaluate_synthetic("none", **args)


def test_bad_real_and_command_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"^folders: .*no such folder"):
        ev.evaluate_real([str(tmp_path / "missing")], methods=("zero",), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^folders: .*meta.json"):
        ev.evaluate_real(str(tmp_path / "empty"), methods=("zero",), progress=False)
    with pytest.raises(ValueError, match=r"^methods: "):
        ev.evaluate_real(str(tmp_path / "empty"), methods=("gt",), progress=False)
    with pytest.raises(ValueError, match=r"^weights: .*no such file"):
        ev.load_model(str(tmp_path / "nope.pt"))
    f = tmp_path / "afile"
    f.write_text("x")
    a, _ = _args(out=f, methods=["zero"], pairs=1, quiet=True)
    with pytest.raises(ValueError, match=r"^--out .*exists and is a file; expected a folder"):
        a.func(a)
    a, _ = _args(out=tmp_path / "o", methods=["zero", "sift"], pairs=1, quiet=True)
    with pytest.raises(ValueError, match=r"^--methods: unknown method 'sift'"):
        a.func(a)


def test_a_module_passed_in_runs_in_eval_mode_and_gets_its_mode_back():
    import hmore

    net = hmore.get_model("hmore", feature_dim=32, hidden_dim=32, context_dim=16, corr_levels=2, corr_radius=2,
                          attention_heads=2, psi_dim=32, psi_heads=2, psi_layers=2, iters=1)
    net.train()
    seen = []
    net.register_forward_pre_hook(lambda m, a: seen.append(m.training))
    r = ev.evaluate_synthetic(net, pairs=2, size=(64, 64), methods=("hmore",), batch_size=2, progress=False)
    assert seen and not any(seen) and net.training
    assert r["model"]["weights"] == "<module>" and r["settings"]["iters"] == 1
    assert set(r["methods"]["hmore"]) >= {"world_epe", "local_epe", "boundary_f", "pairs_per_s"}


def test_the_info_of_load_model_is_passed_along_not_remembered():
    tiny = dict(feature_dim=32, hidden_dim=32, context_dim=16, corr_levels=2, corr_radius=2, attention_heads=2,
                psi_dim=32, psi_heads=2, psi_layers=2, iters=1)
    net, info = ev.load_model("none", "cpu", **tiny)
    kw = dict(pairs=1, size=(64, 64), methods=("hmore",), progress=False)
    assert ev.evaluate_synthetic(net, **kw)["model"]["weights"] == "<module>"  # no record kept beside the module
    r = ev.evaluate_synthetic(net, model_info=info, **kw)
    assert r["model"] == info and r["model"]["weights"].startswith("none") and r["settings"]["iters"] == 1
    with pytest.raises(ValueError, match=r"^model_info: only with a module"):
        ev.evaluate_synthetic("none", model_info=info, **kw)
    with pytest.raises(ValueError, match=r"^model_info: expected the dict"):
        ev.evaluate_photos(net, model_info=("x",), **kw)
