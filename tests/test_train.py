"""hmore train: a short overfit drives the loss down, resume reproduces the uninterrupted loss trace,
kill -9 never leaves a checkpoint that fails to load, NaN stops the run naming the term, bad config and
data are refused by name, and 2-process DDP (gloo) makes the first update of one process on the
combined batch."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hmore.train import TrainingDiverged, find_checkpoints, latest_checkpoint, load_config, train

TINY_MODEL = {"feature_dim": 32, "hidden_dim": 32, "context_dim": 16, "corr_levels": 2, "corr_radius": 2,
              "attention_heads": 2, "psi_dim": 32, "psi_heads": 2, "psi_layers": 2, "iters": 2}


def cfg(out, **kw):
    over = {"out": str(out), "steps": 4, "batch_size": 2, "crop": [64, 72], "warmup_steps": 2, "num_workers": 0,
            "tensorboard": False, "quiet": True, "checkpoint_every": 2, "lr_warmup": 0}
    over.update(kw)
    over.update({f"model.{k}": v for k, v in TINY_MODEL.items()})
    return load_config(None, over)


def losses(out):
    with open(os.path.join(out, "log.csv"), newline="") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f)]


def test_overfit_one_batch_drives_the_loss_down():
    from hmore.data.mix import MixedPairs
    from hmore.losses import HMoReLoss
    from hmore.models import HMoRe, HMoReConfig

    torch.manual_seed(0)
    m = HMoRe(HMoReConfig(**TINY_MODEL)).train()
    ds = MixedPairs([{"source": "synthetic"}], crop=(64, 72), seed=5)
    b = torch.utils.data.default_collate([ds[i] for i in range(2)])
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    lf = HMoReLoss(m.config)
    trace = []
    for _ in range(40):
        total, _ = lf(m(b["frame0"], b["frame1"]), b)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        trace.append(float(total))
    assert min(trace[-5:]) < 0.6 * trace[0], trace


def rows(out):
    with open(os.path.join(out, "log.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _marker_rng(seed: int) -> dict:
    """RNG states no run of this test reaches by itself: a resumed run that holds them restored them."""
    import random

    import numpy as np

    g = torch.Generator().manual_seed(seed)
    st = np.random.RandomState(seed).get_state()
    return {"torch": g.get_state(), "python": random.Random(seed).getstate(),
            "numpy": {"keys": torch.from_numpy(st[1].astype(np.int64)), "pos": int(st[2]), "has_gauss": int(st[3]),
                      "cached": float(st[4])}}


def _same_rng(a: dict, b: dict) -> bool:
    return (torch.equal(a["torch"], b["torch"]) and list(a["python"][1]) == list(b["python"][1])
            and torch.equal(a["numpy"]["keys"], b["numpy"]["keys"]) and a["numpy"]["pos"] == b["numpy"]["pos"])


def test_resume_after_kill_continues_the_same_trace(tmp_path, capsys):
    """Interrupted at step 3 (the process killed), then resumed: the run restarts at step 3 from the step-3
    checkpoint (model, optimizer, scheduler, RNG) and its log equals the uninterrupted run's. A run that
    restarts from scratch, or ignores any of the four states, fails here."""
    from hmore.train import atomic_save

    keep = {"steps": 6, "checkpoint_every": 1, "keep_checkpoints": 6}  # every checkpoint kept: 3 must survive
    ref = tmp_path / "ref"
    train(cfg(ref, **keep))
    run = tmp_path / "run"
    train(cfg(run, **keep))
    # simulate the interruption: killed right after its step-3 checkpoint (steps 4.. never happened)
    for step, p in find_checkpoints(str(run)):
        if step > 3:
            os.remove(p)
    assert [s for s, _ in find_checkpoints(str(run))] == [3, 2, 1]
    kept = rows(run)[:3]
    # rows a killed run wrote after its last checkpoint: the resumed run must drop them
    bad = [dict(r, loss="999") for r in rows(run)[3:]]
    with open(os.path.join(run, "log.csv"), "a", newline="") as f:
        csv.DictWriter(f, list(kept[0])).writerows(bad)
    # the training step draws no random numbers (the uninterrupted run's checkpoints 3 and 4 hold the same
    # RNG states), so the step-4 checkpoint of the resumed run holds exactly the RNG states it resumed with:
    # replace the step-3 ones by a marker a fresh process never holds
    ck3_path = dict((s, p) for s, p in find_checkpoints(str(run)))[3]
    ref_ck = {s: torch.load(p, weights_only=True) for s, p in find_checkpoints(str(ref))}
    assert _same_rng(ref_ck[3]["rng"], ref_ck[4]["rng"])
    ck3 = torch.load(ck3_path, weights_only=True)
    ck3["rng"] = _marker_rng(1234)
    assert not _same_rng(ck3["rng"], ref_ck[3]["rng"])
    atomic_save(ck3, ck3_path)
    stamp3 = os.stat(ck3_path).st_mtime_ns
    capsys.readouterr()

    res = train(cfg(run, **keep), resume=True)

    assert res["step"] == 6
    # resumed at step 3: steps 1-3 were not run again (their log rows, timestamps included, and their
    # checkpoints are the interrupted run's), steps 4-6 were run once each
    got = rows(run)
    assert [int(r["step"]) for r in got] == [1, 2, 3, 4, 5, 6]
    assert got[:3] == kept
    assert os.stat(ck3_path).st_mtime_ns == stamp3
    assert f"resuming from {ck3_path} (step 3)" in capsys.readouterr().err
    # model + optimizer (Adam's moments and step count) + scheduler: the trace and the learning rates of
    # steps 4-6 equal the uninterrupted run's (a fresh optimizer changes step 5's loss, a fresh scheduler
    # step 4's lr), and so do the final states
    assert losses(run) == losses(ref)
    assert [r["lr"] for r in got] == [r["lr"] for r in rows(ref)]
    ck = {s: torch.load(p, weights_only=True) for s, p in find_checkpoints(str(run))}
    assert sorted(ck) == [1, 2, 3, 4, 5, 6]
    assert float(ck[6]["optimizer"]["state"][0]["step"]) == 6
    assert ck[6]["scheduler"]["last_epoch"] == ref_ck[6]["scheduler"]["last_epoch"] == 6
    for k, v in ref_ck[6]["optimizer"]["state"].items():
        for name, t in v.items():
            assert torch.equal(ck[6]["optimizer"]["state"][k][name], t), (k, name)
    for k, t in ref_ck[6]["model"].items():
        assert torch.equal(ck[6]["model"][k], t), k
    # RNG: the states the run continued with are the checkpoint's
    assert _same_rng(ck[4]["rng"], ck3["rng"])


def test_kill9_never_leaves_a_broken_checkpoint(tmp_path):
    out = tmp_path / "k"
    conf = cfg(out, steps=200, checkpoint_every=1, warmup_steps=0)
    cfile = tmp_path / "c.json"
    import json

    cfile.write_text(json.dumps({k: v for k, v in conf.to_dict().items() if k != "out"}))
    cmd = [sys.executable, "-m", "hmore", "train", "--config", str(cfile), "--out", str(out)]

    def newest() -> int:
        found = find_checkpoints(str(out))
        return found[0][0] if found else 0

    for attempt, delay in enumerate((0.0, 0.7, 1.3, 0.4)):
        s0 = newest()
        err = tmp_path / f"stderr{attempt}.txt"
        with open(err, "w") as ef:
            p = subprocess.Popen(cmd + (["--resume"] if attempt else []), stdout=subprocess.DEVNULL, stderr=ef)
        # kill once this attempt is writing checkpoints (one per step), at a different moment each time
        t0 = time.time()
        while time.time() - t0 < 120 and p.poll() is None and newest() <= s0:
            time.sleep(0.05)
        # the kill must land in a live run that has written a checkpoint of its own (a run that crashed on
        # resume, or a kill during start-up, would prove nothing about the writer)
        assert p.poll() is None, f"attempt {attempt}: the run ended before the kill:\n{err.read_text()[-2000:]}"
        assert newest() > s0, f"attempt {attempt}: no checkpoint after step {s0} within 120 s"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        for _, path in find_checkpoints(str(out)):
            ck = torch.load(path, map_location="cpu", weights_only=True)
            assert ck["step"] == int(os.path.basename(path)[5:13])
    assert find_checkpoints(str(out)), "no checkpoint was written before the kills"
    # a checkpoint truncated under its final name (a disk fault, not our writer) is skipped on resume
    newest_step, newest = find_checkpoints(str(out))[0]
    broken = os.path.join(os.path.dirname(newest), f"step_{newest_step + 1:08d}.pt")
    with open(newest, "rb") as f:
        data = f.read()
    with open(broken, "wb") as f:
        f.write(data[: len(data) // 2])
    warned = []
    step, path, _ = latest_checkpoint(str(out), warn=warned.append)
    assert path == newest and step == newest_step and "skipped" in warned[0]


def test_nan_stops_naming_step_and_term(tmp_path, monkeypatch):
    out = tmp_path / "nan"
    train(cfg(out, steps=2))
    before = {p: os.path.getmtime(p) for _, p in find_checkpoints(str(out))}
    assert before, "no checkpoint to leave untouched: the check below would be vacuous"
    from hmore import losses as L

    orig = L.HMoReLoss.forward

    def poisoned(self, outputs, batch, constraints=True):
        total, terms = orig(self, outputs, batch, constraints)
        terms["background"] = terms["background"] * float("nan")
        return total + terms["background"], terms

    monkeypatch.setattr(L.HMoReLoss, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 3: loss term 'background' is nan"):
        train(cfg(out, steps=4), resume=True)
    assert {p: os.path.getmtime(p) for _, p in find_checkpoints(str(out))} == before


def test_bad_config_and_data(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        load_config(None, {"batch_sise": 2})
    with pytest.raises(ValueError, match="did you mean 'iters'"):
        load_config(None, {"model.itres": 2})
    f = tmp_path / "c.toml"
    f.write_text('steps = 3\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError, match=r"c\.toml: unknown key 'learning_rate'"):
        load_config(str(f))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(cfg(tmp_path / "r", data=[{"source": str(tmp_path / "nowhere")}]))
    with pytest.raises(ValueError, match="crop"):
        load_config(None, {"crop": [32, 64]})
    r = subprocess.run([sys.executable, "-m", "hmore", "train", "--out", str(tmp_path / "x"), "--set", "model.bogus=1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "model.bogus" not in r.stdout and "unknown key 'bogus'" in r.stderr


def test_ddp_first_update_equals_one_process_on_the_combined_batch(tmp_path):
    import json

    base = cfg(tmp_path / "unused", steps=1, warmup_steps=0)
    cfile = tmp_path / "c.json"
    cfile.write_text(json.dumps({k: v for k, v in base.to_dict().items() if k != "out"}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "hmore", "train",
                          "--config", str(cfile), "--out", str(tmp_path / "ddp"), "--batch-size", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "hmore", "train", "--config", str(cfile), "--out", str(tmp_path / "one"),
                          "--batch-size", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    a = torch.load(find_checkpoints(str(tmp_path / "ddp"))[0][1], weights_only=True)["model"]
    b = torch.load(find_checkpoints(str(tmp_path / "one"))[0][1], weights_only=True)["model"]
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    # Adam's first step moves every parameter by about lr * g / (|g| + eps) (lr = 4e-4): where a gradient
    # is near 0, the rounding of the all-reduce vs the one-process sum shifts that ratio; 5% of one step
    worst_ok = 0.05 * base.lr
    assert worst < worst_ok, worst
    la, lb = losses(tmp_path / "ddp"), losses(tmp_path / "one")
    assert float(la[0][1]) == pytest.approx(float(lb[0][1]), rel=1e-6)
