"""hmore probe: labelled clips, the representation cache, the metrics, the run and the CLI's errors."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch

from hmore.data import synthetic as syn
from hmore.data import synthetic_body as body
from hmore.probe import METHODS, SIZE_NAMES, TASKS
from hmore.probe import data as pdata
from hmore.probe import metrics
from hmore.probe.data import SIZES, ProbeSize, clip_specs, clothing, identity, render_spec
from hmore.probe.features import FAMILY, FeatureCache

torch.set_num_threads(1)

TINY = ProbeSize("tiny", actions=("walk", "wave", "squat"), action_train_subjects=2, action_test_subjects=1,
                 action_train_clips=2, action_test_clips=1, gait_train_subjects=3, gait_test_subjects=2,
                 gait_clips=1, clothing_sets=3, frames=6, height=64, width=64, flow_stride=3, input_size=16,
                 epochs=2, batch_size=4, seeds=(0, 1))


def test_constants_agree():
    from hmore.probe.features import METHODS as M2

    assert tuple(SIZES) == SIZE_NAMES and M2 == METHODS and set(FAMILY) == set(METHODS)
    assert TASKS == ("action", "gait")
    assert len(SIZES["quick"].actions) >= 8 and SIZES["quick"].frames >= 16 and SIZES["quick"].height >= 128
    assert SIZES["full"].clothing_sets >= 3 and len(SIZES["full"].seeds) >= 3


# ---- labelled generator -----------------------------------------------------------------------
def test_identity_persists_across_clothing():
    a = identity(0, "gait", 3)
    b = identity(0, "gait", 3)
    assert a["proportions"] == b["proportions"] and a["style"] == b["style"] and a["height"] == b["height"]
    assert identity(0, "gait", 4)["proportions"] != a["proportions"]
    sets = [clothing(0, "gait", 3, c) for c in range(3)]
    for c in sets:  # clothes change; skin and hair are the person's
        np.testing.assert_array_equal(c["skin"], a["skin"])
        np.testing.assert_array_equal(c["hair"], a["hair"])
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.allclose(sets[i]["shirt"], sets[j]["shirt"])
            assert not np.allclose(sets[i]["pants"], sets[j]["pants"])


def test_render_spec_fixes_identity_and_clothing(monkeypatch):
    seen = []
    real = syn.render_clip

    def spy(seed, T, cfg, subjects=None):
        seen.append(subjects[0])
        return real(seed, T, cfg, subjects=subjects)

    monkeypatch.setattr(syn, "render_clip", spy)
    specs = [s for s in clip_specs("gait", TINY) if s.subject == 0]
    assert {s.clothing for s in specs} == {0, 1, 2} and {s.condition for s in specs} == {"nm", "cl", "bg"}
    clips = [render_spec(s, TINY) for s in specs]
    for s in seen:
        assert s["proportions"] == seen[0]["proportions"] and s["height"] == seen[0]["height"]
        assert {k: v for k, v in s["style"].items() if k != "carry"} == seen[0]["style"]
    assert [bool(s["style"].get("carry")) for s in seen] == [c == "bg" for c in (x.condition for x in specs)]
    shirts = [tuple(s["appearance"]["shirt"]) for s, sp in zip(seen, specs)]
    assert len({sh for sh, sp in zip(shirts, specs)}) == 3  # three clothing sets
    # the rendered body is the same size in every clip (same proportions and height): compare bone lengths
    def thigh(c):
        k = c.keypoints[0, 0]
        return np.hypot(*(k[11] - k[13]))
    assert all(c.masks.any() for c in clips)
    assert max(thigh(c) for c in clips) - min(thigh(c) for c in clips) < 0.35 * thigh(clips[0])


def _trajectory(motion, seed=11, T=12):
    cfg = syn.SyntheticConfig(height=96, width=96, num_subjects=1, motions=body.ALL_MOTIONS, background_motion=False)
    ident = identity(0, "action", 0)
    c = syn.render_clip(seed, T, cfg, subjects=[{"proportions": ident["proportions"], "height": 0.7,
                                                 "appearance": clothing(0, "action", 0, 0), "motion": motion}])
    k = c.keypoints[:, 0].astype(np.float64)
    return k - k[:, 11:13].mean(1, keepdims=True)  # pose relative to the hips


def test_classes_differ_in_their_motion():
    assert len(body.ALL_MOTIONS) >= 8 and set(body.MOTIONS) < set(body.ALL_MOTIONS)
    tr = {m: _trajectory(m) for m in body.ALL_MOTIONS}
    for m, a in tr.items():  # every class moves
        assert np.abs(a - a[0]).max() > 1.5, m
    names = list(tr)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = np.abs(tr[a] - tr[b]).mean()
            assert d > 0.5, (a, b, d)
    # and a class is not one fixed trajectory: another seed varies phase, speed, viewpoint
    assert np.abs(_trajectory("kick", seed=12) - tr["kick"]).mean() > 0.5


@pytest.mark.parametrize("size", ["quick", "full"])
@pytest.mark.parametrize("task", TASKS)
def test_splits_disjoint_by_subject_and_background(task, size):
    specs = clip_specs(task, SIZES[size])
    tr = [s for s in specs if s.split == "train"]
    te = [s for s in specs if s.split == "test"]
    assert tr and te
    assert not {s.subject for s in tr} & {s.subject for s in te}
    assert not {s.seed for s in tr} & {s.seed for s in te}
    assert len({s.seed for s in specs}) == len(specs)  # every clip its own background
    lo, span = syn.SPLIT_SEED_OFFSET, syn.SPLIT_SEED_SPAN
    assert all(lo["train"] <= s.seed < lo["train"] + span for s in tr)
    assert all(lo["test"] <= s.seed < lo["test"] + span for s in te)
    if task == "action":
        assert {s.label for s in te} == set(range(len(SIZES[size].actions)))
    else:
        for subject in {s.subject for s in te}:
            conds = {s.condition for s in te if s.subject == subject}
            assert conds == {"nm", "cl", "bg"}
            assert len({s.clothing for s in te if s.subject == subject}) >= 3


def test_labelled_set_is_a_pure_function_of_its_seed():
    a, b = clip_specs("action", TINY, 5), clip_specs("action", TINY, 5)
    assert a == b and [s.key for s in a] == [s.key for s in b]
    assert [s.key for s in clip_specs("action", TINY, 6)] != [s.key for s in a]
    c1, c2 = render_spec(a[0], TINY), render_spec(a[0], TINY)
    np.testing.assert_array_equal(c1.frames, c2.frames)
    np.testing.assert_array_equal(c1.keypoints, c2.keypoints)
    with pytest.raises(ValueError, match="seed"):
        clip_specs("action", TINY, -1)
    with pytest.raises(ValueError, match="valid tasks: action, gait"):
        clip_specs("dance", TINY)


def test_generator_defaults_untouched():
    assert syn.SyntheticConfig().motions == ("walk", "run", "wave", "jump", "turn")
    with pytest.raises(ValueError, match="subject motion 'fly'"):
        syn.render_clip(0, 2, syn.SyntheticConfig(height=32, width=32), subjects=[{"motion": "fly"}])
    with pytest.raises(ValueError, match="subjects must be a list"):
        syn.render_clip(0, 2, syn.SyntheticConfig(height=32, width=32), subjects=[{}, {}])
    with pytest.raises(ValueError, match="style"):
        body.make_motion(np.random.default_rng(0), "walk", 4.0, 40.0, style={"swagger": 1})


# ---- the cache ------------------------------------------------------------------------------------
def _perturbed_weights(src, dst):
    d = torch.load(src, map_location="cpu", weights_only=False)
    k = next(k for k, v in d["model"].items() if v.dtype.is_floating_point and v.numel() > 10)
    d["model"][k] = d["model"][k] + 1e-3
    torch.save(d, dst)


def test_cache_reuse_and_weights_invalidate_only_hmore(tmp_path):
    from hmore.models import default_weights

    wa, wb = str(tmp_path / "a.pt"), str(tmp_path / "b.pt")
    shutil.copyfile(default_weights()[0], wa)
    _perturbed_weights(wa, wb)
    methods = ["rgb", "dis", "hmore_world", "hmore_world_local", "skeleton_gt"]
    if _has_mediapipe():
        methods += ["dis_masked", "skeleton_mediapipe"]
    specs = clip_specs("action", TINY)[:2]
    cache = str(tmp_path / "cache")

    def run(weights):
        fc = FeatureCache(TINY, cache, weights=weights)
        out = {m: [] for m in methods}
        for s in specs:  # clip by clip, as run_probe asks (one read per family and clip)
            for m in methods:
                out[m].append(fc.get(m, s))
        return fc, out

    fc1, out1 = run(wa)
    fams = {FAMILY[m] for m in methods}
    assert dict(fc1.computed) == {f: 2 for f in fams}
    assert out1["hmore_world"][0].shape == (len(TINY.pair_starts), 2, 16, 16)
    assert out1["hmore_world_local"][0].shape == (len(TINY.pair_starts), 4, 16, 16)
    assert out1["skeleton_gt"][0].shape == (TINY.frames, 17, 3)
    fc2, out2 = run(wa)  # a rerun: nothing computed
    assert sum(fc2.computed.values()) == 0 and dict(fc2.reused) == {f: 2 for f in fams}
    for m in methods:
        for x, y in zip(out1[m], out2[m]):
            np.testing.assert_array_equal(x, y)
    fc3, out3 = run(wb)  # other weights: only H-MoRe's flows again
    assert dict(fc3.computed) == {"hmore": 2}
    assert not np.array_equal(out3["hmore_world"][0], out1["hmore_world"][0])
    # no temporary files left; a damaged entry is recomputed, not trusted
    files = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs]
    assert files and all(f.endswith(".npz") for f in files)
    p = fc3.path("dis", specs[0])
    with open(p, "wb") as f:
        f.write(b"garbage")
    fc4 = FeatureCache(TINY, cache, weights=wa)
    np.testing.assert_array_equal(fc4.get("dis", specs[0]), out1["dis"][0])
    assert dict(fc4.computed) == {"dis": 1}
    with pytest.raises(ValueError, match="valid methods"):
        fc4.get("optical_flow", specs[0])


def _has_mediapipe():
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return False
    return True


# ---- metrics --------------------------------------------------------------------------------------
def test_accuracy_at_k():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.7, 0.2], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 1, 2])
    assert metrics.accuracy_at_k(scores, labels, 1) == 50.0  # rows 0 and 2
    assert metrics.accuracy_at_k(scores, labels, 2) == 75.0  # + row 1 (second best)
    assert metrics.accuracy_at_k(scores, labels, 3) == 100.0
    with pytest.raises(ValueError, match="k"):
        metrics.accuracy_at_k(scores, labels, 4)
    with pytest.raises(ValueError, match="rows"):
        metrics.accuracy_at_k(scores, labels[:3], 1)
    np.testing.assert_array_equal(metrics.confusion([0, 1, 1], [0, 0, 1], 2), [[1, 1], [0, 1]])


def test_rank1_nearest_neighbour():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    gids = np.array([10, 20, 30])
    probes = np.array([[5.0, 0.4], [0.1, 2.0], [0.2, -1.0], [-3.0, 0.5]])  # scale does not matter (cosine)
    pids = np.array([10, 20, 30, 30])
    # probe 2 points down: nearest by cosine is gallery 0 (10) -> a miss; the others hit
    assert metrics.rank1(gallery, gids, probes, pids) == 75.0
    assert metrics.rank1(gallery, gids, probes[:2], pids[:2]) == 100.0
    with pytest.raises(ValueError, match="rank1"):
        metrics.rank1(gallery, gids[:2], probes, pids)
    assert metrics.spread([50.0, 60.0]) == 5.0 and metrics.spread([40.0]) == 0.0


# ---- the run and the CLI ---------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_run_probe_tiny(tmp_path, task):
    from hmore.probe.run import format_table, run_probe

    out = tmp_path / "out"
    doc = run_probe(task, str(out), methods="rgb,skeleton_gt,hmore_world_local", size=TINY,
                    cache_dir=str(tmp_path / "cache"), device="cpu", quiet=True)
    on_disk = json.loads((out / "probe.json").read_text())
    assert on_disk["task"] == task and on_disk["size"] == "tiny"
    from hmore.provenance import git_commit, machine

    assert on_disk["commit"] == git_commit() and on_disk["compute"]["machine"] == machine("cpu")
    assert list(on_disk["methods"]) == ["rgb", "skeleton_gt", "hmore_world_local"]
    main = "acc1" if task == "action" else "rank1_cl"
    for r in on_disk["methods"].values():
        assert 0.0 <= r[main] <= 100.0 and r["spread"] >= 0.0 and len(r["per_seed"][main]) == 2
    files = {"probe.json", "probe.csv", "probe.png"} | ({"confusion.png"} if task == "action" else set())
    assert set(os.listdir(out)) == files
    assert "hmore_world_local" in format_table(doc)
    assert (out / "probe.csv").read_text().splitlines()[0].startswith(f"method,{main},{main}_spread")


def _cli(args, capsys):
    from hmore.cli import main

    try:
        rc = main(args)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    return rc, capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    out = tmp_path / "o"
    rc, err = _cli(["probe", "--task", "dance", "--out", str(out), "--quick"], capsys)
    assert rc == 2 and "action" in err and "gait" in err
    rc, err = _cli(["probe", "--task", "action", "--methods", "rgb", "flownet", "--out", str(out), "--quick"], capsys)
    assert rc == 2 and "'flownet'" in err and all(m in err for m in METHODS)
    (tmp_path / "afile").write_text("x")
    rc, err = _cli(["probe", "--task", "gait", "--out", str(tmp_path / "afile"), "--quick"], capsys)
    assert rc == 2 and "--out" in err and "is a file" in err
    rc, err = _cli(["probe", "--task", "gait", "--out", str(tmp_path / "afile" / "sub"), "--quick"], capsys)
    assert rc == 2 and "--out" in err
    rc, err = _cli(["probe", "--task", "gait", "--out", str(out), "--quick", "--weights", str(tmp_path / "no.pt"),
                    "--cache", str(tmp_path / "c")], capsys)
    assert rc == 2 and "no.pt" in err
    rc, err = _cli(["probe", "--task", "gait", "--out", str(out), "--quick", "--device", "tpu"], capsys)
    assert rc == 2 and "--device" in err
    assert not out.exists() and not (tmp_path / "c").exists()  # nothing written by a refused run
