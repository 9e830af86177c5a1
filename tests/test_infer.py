"""Inference: frame sources and their errors, the predictor, `hmore infer` outputs and resume, the shipped
weights' checks, and the CLI frictions (file as --out, panel on a folder of clips, --frame out of range,
help text on every option)."""
from __future__ import annotations

import json
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
              "evaluation.json", "evaluation_synthetic.csv", "evaluation.png"):
        assert (out / f).is_file(), f
    panel = cv2.imread(str(out / "synthetic" / "panel.png"))
    assert panel.shape == (128, 256, 3)  # prediction over ground truth, 4 tiles of 64x64
    ev = json.loads((out / "evaluation.json").read_text())
    assert set(ev["synthetic"]["methods"]) == {"hmore", "dis_medium", "zero"}
    assert "dis_medium" in printed and "pairs/s" in printed
    if bundled_clip() is not None:
        assert (out / "real" / "panel.png").is_file() and (out / "real" / "infer" / "panels.mp4").is_file()
        if mediapipe_available() is None:
            assert "real" in ev and (out / "evaluation_real.csv").is_file()
