"""Inference: frame sources and their errors, the predictor, `hmore infer` outputs and resume, the shipped
weights' checks, and the CLI frictions (file as --out, panel on a folder of clips, --frame out of range,
help text on every option)."""
from __future__ import annotations

import json
import re
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

import hmore
from hmore.cli import build_parser, main
from hmore.data.flow_io import read_flo, read_kitti_png
from hmore.inference import FrameSource, Predictor, infer_to_folder
from hmore.models import DEFAULT_WEIGHTS, HMoRe, HMoReConfig, default_weights, get_model

TINY = {"feature_dim": 32, "hidden_dim": 32, "context_dim": 16, "corr_levels": 2, "corr_radius": 2,
        "attention_heads": 2, "psi_dim": 32, "psi_heads": 2, "psi_layers": 2, "iters": 2}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return HMoRe(HMoReConfig(**TINY)).eval()


def moving_frames(n=5, h=72, w=80):
    """A textured square moving 2 px right per frame on a noise background, RGB uint8."""
    rng = np.random.default_rng(0)
    # smooth textures (blurred noise): a lossy codec keeps them, and flow has something to match
    bg = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 2)
    tex = cv2.GaussianBlur((rng.random((24, 24, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
    out = []
    for t in range(n):
        f = bg.copy()
        f[20:44, 10 + 2 * t:34 + 2 * t] = tex
        out.append(f)
    return out


def write_video(path, frames, fps=10):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f[..., ::-1].copy())
    vw.release()


def write_folder(d, frames):
    os.makedirs(d, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(os.path.join(d, f"{i:04d}.png"), f[..., ::-1])
    return str(d)


# ------------------------------------------------------------------------------------------ sources
def test_frame_sources_agree(tmp_path):
    frames = moving_frames()
    folder = write_folder(tmp_path / "f", frames)
    s = FrameSource(folder)
    assert (s.kind, s.num_frames, s.height, s.width) == ("folder", 5, 72, 80)
    assert all(np.array_equal(a, b) for a, b in zip(s, frames))  # PNG is lossless: exact RGB back
    two = FrameSource([os.path.join(folder, "0000.png"), os.path.join(folder, "0003.png")])
    got = list(two)
    assert two.kind == "images" and np.array_equal(got[1], frames[3])
    write_video(tmp_path / "v.mp4", frames)
    v = FrameSource(str(tmp_path / "v.mp4"))
    vf = list(v)
    assert v.kind == "video" and len(vf) == 5 and vf[0].shape == (72, 80, 3)
    assert np.abs(vf[2].astype(int) - frames[2]).mean() < 8  # lossy codec, same picture
    assert len(list(FrameSource(str(tmp_path / "v.mp4"), max_frames=3))) == 3


@pytest.mark.parametrize("case", ["missing", "empty_video", "not_video", "one_image", "small", "sizes", "bad_png",
                                  "empty_folder"])
def test_frame_source_errors_name_the_file(tmp_path, case):
    frames = moving_frames(3)
    if case == "missing":
        arg, match = str(tmp_path / "nope.mp4"), "nope.mp4: no such file"
    elif case == "empty_video":
        (tmp_path / "e.mp4").write_bytes(b"")
        arg, match = str(tmp_path / "e.mp4"), "e.mp4: is empty"
    elif case == "not_video":
        (tmp_path / "t.mp4").write_text("hello, not a video")
        arg, match = str(tmp_path / "t.mp4"), "t.mp4: (cannot be opened as a video|contains no frames)"
    elif case == "one_image":
        folder = write_folder(tmp_path / "f", frames)
        arg, match = [os.path.join(folder, "0000.png")], "one image makes no pair"
    elif case == "small":
        arg, match = write_folder(tmp_path / "s", [f[:40, :50] for f in frames]), "50x40; H-MoRe needs at least 64x64"
    elif case == "sizes":
        arg = write_folder(tmp_path / "z", [frames[0], frames[1][:64], frames[2]])
        match = "0001.png: is 80x64, the first frame is 80x72"
    elif case == "bad_png":
        folder = write_folder(tmp_path / "b", frames)
        with open(os.path.join(folder, "0001.png"), "wb") as f:
            f.write(b"\x89PNG broken")
        arg, match = folder, "0001.png: cannot be read as an image"
    else:
        os.makedirs(tmp_path / "empty")
        (tmp_path / "empty" / "notes.txt").write_text("x")
        arg, match = str(tmp_path / "empty"), "needs at least 2 images"
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        list(FrameSource(arg))


# ------------------------------------------------------------------------------------------ predictor
def test_predictor_matches_the_model_and_batches_do_not_matter():
    m = tiny_model()
    frames = moving_frames(5)
    src = [f for f in frames]
    p = Predictor(m, device="cpu")
    one = list(p.pairs(src, batch_size=1))
    three = list(p.pairs(src, batch_size=3))
    assert [r.index for r in three] == [0, 1, 2, 3]
    for a, b in zip(one, three):
        np.testing.assert_allclose(a.world_flow, b.world_flow, atol=1e-4)
        np.testing.assert_allclose(a.subject_motion, b.subject_motion, atol=1e-4)
    x0 = torch.from_numpy(np.stack(frames[:1])).permute(0, 3, 1, 2)
    x1 = torch.from_numpy(np.stack(frames[1:2])).permute(0, 3, 1, 2)
    with torch.inference_mode():
        ref = m(x0, x1)
    r = one[0]
    assert r.world_flow.shape == (72, 80, 2) and r.subject_map.shape == (72, 80) and r.subject_motion.shape == (2,)
    np.testing.assert_allclose(r.world_flow, ref["world_flow"][0].permute(1, 2, 0).numpy(), atol=1e-5)
    np.testing.assert_allclose(r.local_flow, ref["local_flow"][0].permute(1, 2, 0).numpy(), atol=1e-5)
    assert list(p.pairs(src, start=3))[0].index == 3


def test_predictor_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        Predictor(tiny_model(), dtype="float16")
    with pytest.raises(ValueError, match="device"):
        Predictor(tiny_model(), device="tpu")
    with pytest.raises(ValueError, match="iters"):
        Predictor(tiny_model(), iters=0)
    with pytest.raises(TypeError, match="model"):
        Predictor(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="frames0"):
        Predictor(tiny_model())(np.zeros((1, 72, 80, 3), np.float32), np.zeros((1, 72, 80, 3), np.uint8))


# ------------------------------------------------------------------------------------------ writer
def test_infer_to_folder_writes_everything_and_resumes(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "in", moving_frames(7))
    m = tiny_model()
    full = infer_to_folder(folder, tmp_path / "full", model=m, batch_size=2, progress=False)
    assert full["pairs_done"] == 6 and full["finished"]
    for sub in ("world", "local"):
        assert sorted(os.listdir(tmp_path / "full" / sub)) == [f"{i:06d}.flo" for i in range(6)]
    for sub in ("world_color", "local_color", "subject_map"):
        assert len(os.listdir(tmp_path / "full" / sub)) == 6
    assert os.path.getsize(tmp_path / "full" / "panels.mp4") > 1000
    assert read_flo(str(tmp_path / "full" / "world" / "000003.flo")).shape == (72, 80, 2)
    rows = (tmp_path / "full" / "subject_motion.csv").read_text().splitlines()
    assert rows[0].startswith("pair,") and len(rows) == 7

    # interrupt after 3 pairs (the 4th pair's first write raises), then resume: same files as the full run
    import hmore.data.flow_io as fio

    real, calls = fio.write_flo, {"n": 0}

    def flaky(path, flow):
        calls["n"] += 1
        if calls["n"] == 7:  # 2 .flo per pair: the 4th pair's world flow
            raise KeyboardInterrupt
        real(path, flow)

    monkeypatch.setattr(fio, "write_flo", flaky)
    with pytest.raises(KeyboardInterrupt):
        infer_to_folder(folder, tmp_path / "cut", model=m, batch_size=2, progress=False)
    monkeypatch.setattr(fio, "write_flo", real)
    st = json.loads((tmp_path / "cut" / "infer.json").read_text())
    assert st["pairs_done"] == 2 and not st["finished"]  # the state is saved once per batch
    assert not (tmp_path / "cut" / "panels.mp4").exists()
    assert not [f for f in os.listdir(tmp_path / "cut" / "world") if f.startswith(".")]  # no temp left
    again = infer_to_folder(folder, tmp_path / "cut", model=m, batch_size=2, progress=False)
    assert again["pairs_done"] == 6 and again["pairs_run"] == 4  # resumed at pair 2, did not redo 0-1
    for sub in ("world", "local"):
        for i in range(6):
            a = read_flo(str(tmp_path / "full" / sub / f"{i:06d}.flo"))
            b = read_flo(str(tmp_path / "cut" / sub / f"{i:06d}.flo"))
            np.testing.assert_allclose(a, b, atol=1e-5)
    assert (tmp_path / "cut" / "subject_motion.csv").read_text() == (tmp_path / "full" / "subject_motion.csv").read_text()

    # another model in the same folder: refused by name, unless --overwrite
    with pytest.raises(ValueError, match="other weights"):
        infer_to_folder(folder, tmp_path / "cut", model=tiny_model(seed=1), progress=False)
    infer_to_folder(folder, tmp_path / "cut", model=tiny_model(seed=1), overwrite=True, progress=False, video=False)


def test_infer_kitti_and_output_errors(tmp_path):
    folder = write_folder(tmp_path / "in", moving_frames(3))
    st = infer_to_folder(folder, tmp_path / "k", model=tiny_model(), kitti=True, video=False, progress=False)
    flow, valid = read_kitti_png(str(tmp_path / "k" / "world" / "000001.png"))
    assert st["pairs_done"] == 2 and flow.shape == (72, 80, 2) and valid.all()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="afile: exists and is a file"):
        infer_to_folder(folder, tmp_path / "afile", model=tiny_model(), progress=False)
    os.makedirs(tmp_path / "busy")
    (tmp_path / "busy" / "x.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        infer_to_folder(folder, tmp_path / "busy", model=tiny_model(), progress=False)
    assert (tmp_path / "busy" / "x.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------ weights
def test_default_weights_load_and_are_checked(tmp_path):
    m = get_model("hmore", weights="default")
    path, man = default_weights()
    assert path == DEFAULT_WEIGHTS and HMoReConfig.from_dict(man["config"], "manifest") == m.config
    assert os.path.getsize(path) <= 25 * 2**20 and man["parameters"] == sum(p.numel() for p in m.parameters())
    # the file loads with weights_only=True (no pickled code) and holds no optimizer state
    ck = torch.load(path, map_location="cpu", weights_only=True)
    assert set(ck) == {"model", "config"}
    # corrupted / truncated copies are refused by name
    for name, mutate in (("flip", lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:]), ("cut", lambda b: b[:-10])):
        p = tmp_path / f"{name}.pt"
        p.write_bytes(mutate(open(path, "rb").read()))
        shutil.copy(os.path.splitext(path)[0] + ".json", tmp_path / f"{name}.json")
        with pytest.raises(ValueError, match=f"{name}.pt: (SHA-256 differs|.* bytes, the manifest records)"):
            default_weights(str(p))


def test_weights_from_another_config_are_refused(tmp_path):
    m = tiny_model()
    p = tmp_path / "w.pt"
    torch.save({"model": m.state_dict(), "config": {**m.config.to_dict(), "hidden_dim": 48}}, p)
    with pytest.raises(ValueError, match="w.pt: parameters do not fit"):
        get_model("hmore", weights=str(p))
    p.write_bytes(open(p, "rb").read()[:200])
    with pytest.raises(ValueError, match="w.pt: cannot be read"):
        get_model("hmore", weights=str(p))


def test_hmore_infer_yields_pairs(tmp_path):
    folder = write_folder(tmp_path / "in", moving_frames(4))
    res = list(hmore.infer(folder, weights=None, device="cpu", batch_size=2, iters=1))
    assert [r.index for r in res] == [0, 1, 2] and res[0].world_flow.dtype == np.float32


# ------------------------------------------------------------------------------------------ CLI
def test_cli_infer_and_its_errors(tmp_path, capsys):
    folder = write_folder(tmp_path / "in", moving_frames(3))
    ck = tmp_path / "tiny.pt"
    torch.save({"model": tiny_model().state_dict(), "config": tiny_model().config.to_dict()}, ck)
    assert main(["infer", folder, "--out", str(tmp_path / "o"), "--weights", str(ck), "--quiet", "--no-video"]) == 0
    assert "2 pairs 80x72 on cpu" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["infer", folder, "--out", str(tmp_path / "file"), "--weights", str(ck), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "file" in err and "exists and is a file" in err and "Traceback" not in err
    assert main(["infer", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o2"), "--weights", str(ck)]) == 2
    assert "none.mp4: no such file" in capsys.readouterr().err


def test_cli_panel_takes_a_synth_folder_and_checks_frame(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["synth", "--out", str(out), "--num-clips", "2", "--frames", "3", "--height", "64", "--width", "64"]) == 0
    capsys.readouterr()
    assert main(["panel", str(out), "--out", str(tmp_path / "p.png")]) == 0
    assert "drawing clip_0000" in capsys.readouterr().err and (tmp_path / "p.png").stat().st_size > 0
    assert main(["panel", str(out), "--clip", "clip_0001", "--out", str(tmp_path / "q.png")]) == 0
    assert main(["panel", str(out), "--out", str(tmp_path / "r.png"), "--frame", "99"]) == 2
    err = capsys.readouterr().err
    assert "--frame 99: out of range" in err and "frames 0..1" in err and "Traceback" not in err
    (tmp_path / "f").write_text("x")
    assert main(["synth", "--out", str(tmp_path / "f")]) == 2
    assert "exists and is a file" in capsys.readouterr().err


def test_every_option_has_help():
    import argparse

    p = build_parser()
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)][0]
    missing = [f"{name} {' '.join(a.option_strings) or a.dest}" for name, sp in subs.choices.items()
               for a in sp._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, missing
    assert {"demo", "infer", "annotate", "synth", "panel", "train"} <= set(subs.choices)


def test_demo_end_to_end_tiny(tmp_path, monkeypatch, capsys):
    """`hmore demo` at toy sizes: every promised file is written and the summary printed."""
    import hmore.demo as demo
    from hmore.data.annotate import bundled_clip, mediapipe_available

    monkeypatch.setattr(demo, "DEMO_SIZE", (64, 64))
    monkeypatch.setattr(demo, "DEMO_FRAMES", 3)
    ck = tmp_path / "tiny.pt"
    torch.save({"model": tiny_model().state_dict(), "config": tiny_model().config.to_dict()}, ck)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--weights", str(ck), "--pairs", "2", "--real-frames", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    for f in ("synthetic/panel.png", "synthetic/infer/panels.mp4", "synthetic/infer/world/000001.flo",
              "photos/panel.png", "evaluation.json", "evaluation_synthetic.csv", "evaluation_photos.csv",
              "evaluation.png"):
        assert (out / f).is_file(), f
    panel = cv2.imread(str(out / "synthetic" / "panel.png"))
    assert panel.shape == (128, 256, 3)  # prediction over ground truth, 4 tiles of 64x64
    ev = json.loads((out / "evaluation.json").read_text())
    # the tiny model has no person prior: its frames-only run would be "hmore" again and is left out
    assert set(ev["synthetic"]["methods"]) == {"hmore", "dis_medium", "dis_mediapipe", "zero"}
    assert set(ev["photos"]["methods"]) == {"hmore", "dis_medium", "dis_mediapipe", "zero"}
    assert ev["synthetic"]["model"]["sha256"]  # the weights' checksum is on record
    assert cv2.imread(str(out / "photos" / "panel.png")).shape == (128, 256, 3)
    assert "dis_medium" in printed and "pairs/s" in printed
    if bundled_clip() is not None:
        assert (out / "real" / "panel.png").is_file() and (out / "real" / "infer" / "panels.mp4").is_file()
        if mediapipe_available() is None:
            assert "real" in ev and (out / "evaluation_real.csv").is_file()


# ------------------------------------------------------------------------------------------ video path, size
DIS_PRIOR = {**TINY, "flow_init": "dis_medium", "flow_target": "full", "refine_dim": 8, "person_prior": True}


def fake_prior(calls=None):
    def fn(frames):  # [B, 3, H, W] in [0, 1] -> [B, 1, H, W]: a made-up "person" = the brighter pixels
        assert frames.dim() == 4 and frames.shape[1] == 3 and float(frames.max()) <= 1.0
        if calls is not None:
            calls.append(frames.shape[0])
        return (frames.mean(1, keepdim=True) > 0.5).float()
    return fn


def count_encodes(m):
    calls, real = [], m.phi.encode

    def encode(images, context=True):
        calls.append(images.shape[0])
        return real(images, context)

    m.phi.encode = encode
    return calls


@pytest.mark.parametrize("cfg", [TINY, DIS_PRIOR], ids=["frames", "dis_full_refine_prior"])
def test_video_path_equals_plain_and_encodes_each_frame_once(cfg):
    torch.manual_seed(0)
    m = HMoRe(HMoReConfig(**cfg)).eval()
    frames = moving_frames(7)
    prior_calls = []
    p = Predictor(m, device="cpu", prior_fn=fake_prior(prior_calls))
    plain = list(p.pairs(frames, batch_size=2))
    enc = count_encodes(m)
    prior_calls.clear()
    vid = list(p.video(frames, batch_size=3))  # chunks of 4 + 3 frames: the carried frame joins the second
    assert [r.index for r in vid] == list(range(6))
    assert sum(enc) == 7 and len(enc) == 2  # 7 frames, each encoded once (plain: 12 frame encodings)
    if cfg.get("person_prior"):
        assert sum(prior_calls) == 7  # the prior once per frame as well
    for a, b in zip(plain, vid):
        for k in ("world_flow", "local_flow", "subject_map", "subject_motion"):
            np.testing.assert_allclose(getattr(a, k), getattr(b, k), atol=1e-5, err_msg=k)
        assert b.flow_low.shape == (2, 9, 10) and a.flow_low is None
    # a prior changes the outputs of a prior model (and "none" runs it frames-only, as model(prior=None))
    if cfg.get("person_prior"):
        x0 = torch.from_numpy(np.stack(frames[:1])).permute(0, 3, 1, 2)
        x1 = torch.from_numpy(np.stack(frames[1:2])).permute(0, 3, 1, 2)
        with torch.inference_mode():
            ref = m(x0, x1)
        none = list(Predictor(m, device="cpu", prior="none").video(frames[:2]))[0]
        np.testing.assert_allclose(none.world_flow, ref["world_flow"][0].permute(1, 2, 0).numpy(), atol=1e-5)


@pytest.mark.parametrize("cfg", [TINY, DIS_PRIOR], ids=["frames", "dis_full_refine_prior"])
def test_warm_start_runs_fewer_iterations_and_resumes(cfg, tmp_path, monkeypatch):
    torch.manual_seed(0)
    m = HMoRe(HMoReConfig(**{**cfg, "iters": 4})).eval()
    frames = moving_frames(6)
    iters, real = [], m.phi.decode

    def decode(e1, e2, n, *a, **kw):
        iters.append((n, kw.get("init_low") is not None))
        return real(e1, e2, n, *a, **kw)

    monkeypatch.setattr(m.phi, "decode", decode)
    p = Predictor(m, device="cpu", prior_fn=fake_prior())
    assert p.warm_iters == 2
    cold = list(p.video(frames, warm_start=False))
    iters.clear()
    warm = list(p.video(frames, batch_size=2, warm_start=True))
    assert iters == [(4, False)] + [(2, True)] * 4  # the first pair starts from zero with all iterations
    for a, b in zip(cold, warm):
        assert a.world_flow.shape == b.world_flow.shape == (72, 80, 2) and b.subject_map.shape == (72, 80)
        assert np.isfinite(b.world_flow).all()
    np.testing.assert_allclose(cold[0].world_flow, warm[0].world_flow, atol=1e-5)
    # hmore infer with warm start, interrupted after 2 pairs and resumed: the chain goes on from the saved
    # 1/8 flow, so the resumed run writes what the uninterrupted one does
    if cfg.get("person_prior"):
        return
    folder = write_folder(tmp_path / "in", frames)
    kw = dict(model=m, batch_size=2, progress=False, video=False, warm_start=True, prior_fn=fake_prior())
    full = infer_to_folder(folder, tmp_path / "full", **kw)
    assert full["settings"]["path"] == "video" and full["settings"]["warm_iters"] == 2
    import hmore.data.flow_io as fio

    real_write, calls = fio.write_flo, {"n": 0}

    def flaky(path, flow):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        real_write(path, flow)

    monkeypatch.setattr(fio, "write_flo", flaky)
    with pytest.raises(KeyboardInterrupt):
        infer_to_folder(folder, tmp_path / "cut", **kw)
    monkeypatch.setattr(fio, "write_flo", real_write)
    assert json.loads((tmp_path / "cut" / "infer.json").read_text())["warm_state_pair"] == 1
    again = infer_to_folder(folder, tmp_path / "cut", **kw)
    assert again["pairs_run"] == 3 and again["pairs_done"] == 5
    for i in range(5):
        np.testing.assert_allclose(read_flo(str(tmp_path / "full" / "world" / f"{i:06d}.flo")),
                                   read_flo(str(tmp_path / "cut" / "world" / f"{i:06d}.flo")), atol=1e-5)
    with pytest.raises(ValueError, match="other path, warm_iters"):  # the plain path is another run
        infer_to_folder(folder, tmp_path / "cut", model=m, progress=False, path="plain")


class ConstantFlow(HMoRe):
    """A stand-in model: world flow (1, 2) px everywhere at whatever size it is run, subject motion (0.5, 0.25),
    subject map 1; records the input it got."""

    def forward(self, image1, image2, iters=None, prior=None, flow_init=None, prior_valid=None):
        self.seen = image1
        B, _, H, W = image1.shape
        world = torch.stack([torch.ones(B, H, W), 2 * torch.ones(B, H, W)], 1)
        v_s = torch.tensor([[0.5, 0.25]]).expand(B, 2)
        smap = torch.ones(B, 1, H, W)
        return {"world_flow": world, "local_flow": (world - v_s[:, :, None, None]) * smap, "subject_motion": v_s,
                "subject_map": smap}


def test_working_size_scales_flows_back_to_the_frame():
    from hmore.inference import working_size

    m = ConstantFlow(HMoReConfig(**TINY)).eval()
    rng = np.random.default_rng(0)
    frames = [(rng.random((128, 144, 3)) * 255).astype(np.uint8) for _ in range(2)]
    p = Predictor(m, device="cpu", size=(64, 96))
    r = list(p.pairs(frames))[0]
    assert tuple(m.seen.shape) == (1, 3, 64, 96)  # the model ran at the working size, on INTER_AREA frames
    np.testing.assert_array_equal(m.seen[0].permute(1, 2, 0).numpy(),
                                  cv2.resize(frames[0], (96, 64), interpolation=cv2.INTER_AREA))
    assert r.world_flow.shape == (128, 144, 2) and r.subject_map.shape == (128, 144)
    # 1 px in x at width 96 is 144/96 = 1.5 px at width 144; 2 px in y at height 64 is 4 px at height 128
    np.testing.assert_allclose(r.world_flow[..., 0], 1.5, atol=1e-6)
    np.testing.assert_allclose(r.world_flow[..., 1], 4.0, atol=1e-6)
    np.testing.assert_allclose(r.subject_motion, [0.75, 0.5], atol=1e-6)
    np.testing.assert_allclose(r.local_flow[..., 0], 0.75, atol=1e-6)
    np.testing.assert_allclose(r.subject_map, 1.0, atol=1e-6)
    assert tuple(list(Predictor(m, device="cpu", size="native").pairs(frames))[0].world_flow[0, 0]) == (1.0, 2.0)
    # the automatic size: a 1080p phone video runs at 456x256, a small clip at its own size
    assert working_size(1080, 1920) == (256, 456) and working_size(1920, 1080) == (456, 256)
    assert working_size(144, 176) == (144, 176) and working_size(144, 176, ("scale", 0.5)) == (72, 88)
    assert Predictor(m, device="cpu").working_size(720, 1280) == (256, 456)


def test_size_errors_name_the_argument(tmp_path, capsys):
    m = tiny_model()
    for size, match in (((32, 64), "size: .*below the model's minimum 64x64"), ((0, 64), "size: expected positive"),
                        ((-8, 64), "size: expected positive"), ("big", "size: expected"), ((64.5, 64), "size: expected two ints")):
        with pytest.raises(ValueError, match=match):
            Predictor(m, device="cpu", size=size)
    with pytest.raises(ValueError, match="scale: expected a positive"):
        Predictor(m, device="cpu", scale=0)
    folder = write_folder(tmp_path / "in", moving_frames(3))
    ck = tmp_path / "tiny.pt"
    torch.save({"model": m.state_dict(), "config": m.config.to_dict()}, ck)
    base = ["infer", folder, "--weights", str(ck), "--quiet", "--no-video"]
    for extra, match in ((["--size", "32", "64"], r"--size: \(32, 64\) is below"), (["--size", "abc"], "--size: expected"),
                         (["--size", "-8", "64"], "--size: expected positive"), (["--scale", "-1"], "--scale: expected"),
                         (["--scale", "0.5", "--size", "64", "64"], "--scale: give --size or --scale")):
        assert main(base + ["--out", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err
        assert re.search(match, err) and "Traceback" not in err, (extra, err)
    assert main(base + ["--out", str(tmp_path / "o"), "--size", "64", "72"]) == 0
    assert "2 pairs 80x72 (model at 72x64) on cpu" in capsys.readouterr().out
    st = json.loads((tmp_path / "o" / "infer.json").read_text())
    assert st["working_size"] == [64, 72] and st["settings"]["size"] == [64, 72]
    assert read_flo(str(tmp_path / "o" / "world" / "000000.flo")).shape == (72, 80, 2)
