"""Dataset format, flow file I/O, flow visualisation and PairDataset (hmore.data; docs/dataset.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from hmore.data import flow_io, viz
from hmore.data.dataset import PairDataset, crop_sample, flip_sample
from hmore.data.format import DatasetReader, find_datasets, read_clip, write_clip
from hmore_kernels.layouts import COCO17

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- flow I/O
class TestFlo:
    def test_round_trip_exact(self, tmp_path):
        f = _rng().normal(0, 30, (7, 11, 2)).astype(np.float32)
        f[0, 0] = [np.nan, np.inf]
        f[1, 1] = [-0.0, np.float32(1e-40)]  # denormal
        p = str(tmp_path / "a.flo")
        flow_io.write_flo(p, f)
        g = flow_io.read_flo(p)
        assert g.dtype == np.float32 and g.shape == f.shape
        assert f.tobytes() == g.tobytes()  # bit-exact, NaN and -0 included

    def test_against_hand_parse(self, tmp_path):
        # an independent reading of the layout: tag, width, height, row-major (u, v) little-endian
        f = _rng(1).normal(0, 5, (3, 5, 2)).astype(np.float32)
        p = str(tmp_path / "b.flo")
        flow_io.write_flo(p, f)
        raw = open(p, "rb").read()
        assert raw[:4] == b"PIEH"
        assert np.frombuffer(raw[:4], "<f4")[0] == 202021.25
        w, h = np.frombuffer(raw[4:12], "<i4")
        assert (w, h) == (5, 3)
        vals = np.frombuffer(raw[12:], "<f4")
        assert vals[0] == f[0, 0, 0] and vals[1] == f[0, 0, 1] and vals[2] == f[0, 1, 0]
        assert vals[2 * 5] == f[1, 0, 0]

    @pytest.mark.skipif(not hasattr(cv2, "readOpticalFlow"), reason="this OpenCV build has no readOpticalFlow")
    def test_against_opencv(self, tmp_path):
        f = _rng(2).normal(0, 5, (9, 4, 2)).astype(np.float32)
        p = str(tmp_path / "c.flo")
        flow_io.write_flo(p, f)
        np.testing.assert_array_equal(cv2.readOpticalFlow(p), f)
        q = str(tmp_path / "d.flo")
        assert cv2.writeOpticalFlow(q, f)
        np.testing.assert_array_equal(flow_io.read_flo(q), f)

    def test_bad_files(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="missing.flo"):
            flow_io.read_flo(str(tmp_path / "missing.flo"))
        p = tmp_path / "bad.flo"
        p.write_bytes(b"NOPE" + b"\0" * 20)
        with pytest.raises(ValueError, match=r"bad.flo: not a .flo file"):
            flow_io.read_flo(str(p))
        flow_io.write_flo(str(p), np.zeros((4, 4, 2), np.float32))
        p.write_bytes(p.read_bytes()[:-3])
        with pytest.raises(ValueError, match=r"bad.flo: .*truncated"):
            flow_io.read_flo(str(p))
        with pytest.raises(ValueError, match=r"\[H, W, 2\]"):
            flow_io.write_flo(str(p), np.zeros((4, 4, 3), np.float32))


def _decode_png16(path):
    """A minimal decoder of non-interlaced 16-bit RGB PNGs (zlib + the five row filters of the PNG spec)."""
    import struct
    import zlib

    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, color, _, _, interlace = hdr
    assert depth == 16 and color == 2 and interlace == 0
    bpp, stride = 6, 6 * w
    raw = zlib.decompress(idat)
    out = np.zeros((h, stride), np.int64)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        cur = np.zeros(stride, np.int64)
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + pred) & 0xFF
        out[y], prev = cur, cur
    return (out[:, 0::2] * 256 + out[:, 1::2]).reshape(h, w, 3)


class TestKitti:
    def test_round_trip_exact_on_grid(self, tmp_path):
        q = _rng(3).integers(-2**15, 2**16 - 2**15, (6, 9, 2))
        q[0, 0] = [-2**15, 2**16 - 1 - 2**15]  # both ends of the range
        f = (q / 64.0).astype(np.float32)
        valid = _rng(4).random((6, 9)) > 0.3
        valid[0, 0] = True
        p = str(tmp_path / "k.png")
        flow_io.write_kitti_png(p, f, valid)
        g, v = flow_io.read_kitti_png(p)
        np.testing.assert_array_equal(v, valid)
        np.testing.assert_array_equal(g[valid], f[valid])
        assert (g[~valid] == 0).all()
        # the file is KITTI's: 16-bit RGB, R = u*64 + 2^15, B = valid (read independently of our reader)
        img = cv2.imread(p, cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint16 and img.shape == (6, 9, 3)
        assert img[0, 0, 2] == 0 and img[0, 0, 1] == 65535 and img[0, 0, 0] == 1
        rgb = _decode_png16(p)  # an independent decoder, in RGB order as KITTI's devkit reads it
        assert rgb.shape == (6, 9, 3)
        np.testing.assert_array_equal(rgb[..., 2] > 0, valid)
        np.testing.assert_array_equal((rgb[..., 0][valid].astype(np.float64) - 2**15) / 64, f[..., 0][valid])
        np.testing.assert_array_equal((rgb[..., 1][valid].astype(np.float64) - 2**15) / 64, f[..., 1][valid])

    def test_quantisation_and_range(self, tmp_path):
        f = np.array([[[0.3, -1.01]]], np.float32)
        p = str(tmp_path / "q.png")
        flow_io.write_kitti_png(p, f)
        g, _ = flow_io.read_kitti_png(p)
        np.testing.assert_array_equal(g, np.round(f * 64) / 64)
        with pytest.raises(ValueError, match="exceeds KITTI"):
            flow_io.write_kitti_png(p, np.full((1, 1, 2), 600.0, np.float32))
        flow_io.write_kitti_png(p, np.full((1, 1, 2), 600.0, np.float32), clip=True)
        assert flow_io.read_kitti_png(p)[0].max() == flow_io.KITTI_RANGE[1]
        nan = np.full((1, 2, 2), np.nan, np.float32)
        flow_io.write_kitti_png(p, nan)
        assert not flow_io.read_kitti_png(p)[1].any()

    def test_bad_files(self, tmp_path):
        p = tmp_path / "x.png"
        cv2.imwrite(str(p), np.zeros((4, 4, 3), np.uint8))
        with pytest.raises(ValueError, match="x.png: a KITTI flow PNG is 3-channel 16-bit"):
            flow_io.read_kitti_png(str(p))
        p.write_bytes(b"garbage")
        with pytest.raises(ValueError, match="x.png: KITTI flow PNG cannot be decoded"):
            flow_io.read_kitti_png(str(p))


# ---------------------------------------------------------------- visualisation
class TestFlowToColor:
    def test_wheel(self):
        w = viz.make_colorwheel()
        assert w.shape == (55, 3)
        # the primaries sit at the ramp starts RY 0, YG 15, GC 21, CB 25, BM 36, MR 49
        for i, c in [(0, (255, 0, 0)), (15, (255, 255, 0)), (21, (0, 255, 0)), (25, (0, 255, 255)),
                     (36, (0, 0, 255)), (49, (255, 0, 255))]:
            assert tuple(w[i]) == c

    def test_zero_is_white_and_shape(self):
        c = viz.flow_to_color(np.zeros((3, 4, 2), np.float32))
        assert c.shape == (3, 4, 3) and c.dtype == np.uint8 and (c == 255).all()
        c = viz.flow_to_color(torch.zeros(2, 3, 4))  # a torch [2, H, W] flow too
        assert c.shape == (3, 4, 3) and (c == 255).all()

    def test_direction_hues_follow_the_wheel(self):
        dirs = {"right": (1, 0), "down": (0, 1), "left": (-1, 0), "up": (0, -1)}
        rgb = {k: viz.flow_to_color(np.array(v, np.float32).reshape(1, 1, 2))[0, 0] for k, v in dirs.items()}
        assert tuple(rgb["right"]) == (255, 0, 0)  # the wheel starts at red
        hue = {k: int(cv2.cvtColor(v.reshape(1, 1, 3), cv2.COLOR_RGB2HSV)[0, 0, 0]) for k, v in rgb.items()}
        # going clockwise on screen (right, down, left, up) walks the wheel red -> yellow -> cyan -> blue
        assert hue["right"] < hue["down"] < hue["left"] < hue["up"], hue
        assert 10 <= hue["down"] <= 35 and 80 <= hue["left"] <= 100 and 115 <= hue["up"] <= 140
        assert len({tuple(v) for v in rgb.values()}) == 4

    def test_normalisation(self):
        f = np.zeros((1, 3, 2), np.float32)
        f[0, 1] = [2, 0]
        f[0, 2] = [4, 0]
        per = viz.flow_to_color(f)
        assert tuple(per[0, 2]) == (255, 0, 0)  # largest radius fully saturated
        assert tuple(viz.flow_to_color(f * 10)[0, 1]) == tuple(per[0, 1])  # per image: scale invariant
        fixed = viz.flow_to_color(f, max_flow=8.0)
        assert fixed[0, 2, 1] > per[0, 2, 1]  # half the radius: paler
        beyond = viz.flow_to_color(f, max_flow=2.0)
        assert tuple(beyond[0, 2]) == (191, 0, 0)  # beyond max_flow: darker (x0.75)
        nan = viz.flow_to_color(np.full((1, 1, 2), np.nan, np.float32))
        assert (nan == 0).all()
        with pytest.raises(ValueError, match="max_flow"):
            viz.flow_to_color(f, max_flow=0.0)


class TestPanels:
    def _inputs(self, h=48, w=64):
        g = _rng(5)
        return (g.integers(0, 256, (h, w, 3), dtype=np.uint8), g.normal(0, 3, (h, w, 2)).astype(np.float32),
                g.normal(0, 1, (h, w, 2)).astype(np.float32), g.random((h, w)) > 0.5)

    def test_png(self, tmp_path):
        fr, wf, lf, m = self._inputs()
        p = str(tmp_path / "panel.png")
        panel = viz.write_panel(p, fr, wf, lf, m)
        img = cv2.imread(p)[..., ::-1]
        assert img.shape == (48, 4 * 64, 3)
        np.testing.assert_array_equal(img, panel)
        assert [f for f in os.listdir(tmp_path)] == ["panel.png"]  # no temporary file left

    def test_mp4(self, tmp_path):
        fr, wf, lf, m = self._inputs(47, 63)  # odd sizes are padded to even
        p = str(tmp_path / "panel.mp4")
        with viz.PanelWriter(p, fps=5, max_flow=5.0) as w:
            for _ in range(4):
                w.add(fr, wf, lf, m)
        cap = cv2.VideoCapture(p)
        n = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            assert img.shape == (48, 4 * 63, 3)  # 47 rows padded to 48
            n += 1
        assert n == 4
        assert os.listdir(tmp_path) == ["panel.mp4"]

    def test_mismatched_tiles(self):
        fr, wf, _, _ = self._inputs()
        with pytest.raises(ValueError, match="world flow is 32x48"):
            viz.make_panel(fr, wf[:, :32])


# ---------------------------------------------------------------- dataset folder
def _clip(T=5, H=40, W=48, P=2, seed=0):
    """A synthetic clip from the generator when it is there, else a hand-made one of the same form."""
    try:
        from hmore.data.synthetic import SyntheticConfig, render_clip

        return render_clip(seed, T, SyntheticConfig(height=H, width=W, num_subjects=P))
    except ImportError:
        g = _rng(seed)
        return {
            "frames": g.integers(0, 256, (T, H, W, 3), dtype=np.uint8),
            "masks": g.random((T, H, W)) > 0.5,
            "instances": g.integers(0, P + 1, (T, H, W)).astype(np.int16),
            "keypoints": g.uniform(0, min(H, W), (T, P, 17, 2)).astype(np.float32),
            "confidences": g.uniform(0.1, 1, (T, P, 17)).astype(np.float32),
            "world_flow": g.normal(0, 2, (T - 1, H, W, 2)).astype(np.float32),
            "local_flow": g.normal(0, 1, (T - 1, H, W, 2)).astype(np.float32),
            "background_flow": g.normal(0, 1, (T - 1, H, W, 2)).astype(np.float32),
            "subject_motion": g.normal(0, 1, (T - 1, P, 2)).astype(np.float32),
            "occlusion": g.random((T - 1, H, W)) > 0.9,
            "meta": {"seed": seed},
        }


def _field(c, k):
    return c[k] if isinstance(c, dict) else getattr(c, k)


@pytest.fixture(scope="module")
def clip():
    return _clip()


@pytest.fixture()
def clip_dir(tmp_path, clip):
    return write_clip(str(tmp_path / "clip"), clip)


class TestFormat:
    def test_round_trip(self, clip, clip_dir):
        d = read_clip(clip_dir)
        for k in ("frames", "masks", "instances", "keypoints", "confidences", "world_flow", "local_flow",
                  "background_flow", "occlusion", "subject_motion"):
            a = np.asarray(_field(clip, k))
            assert d[k].shape == a.shape, k
            np.testing.assert_array_equal(d[k], a.astype(d[k].dtype), err_msg=k)
        meta = json.load(open(os.path.join(clip_dir, "meta.json")))
        assert meta["format"] == "hmore-dataset" and meta["version"] == 1 and meta["has_flow"]
        kj = json.load(open(os.path.join(clip_dir, "keypoints.json")))
        assert kj["categories"][0]["keypoints"] == list(COCO17.names)
        a = kj["annotations"][0]
        assert len(a["keypoints"]) == 51 and len(a["scores"]) == 17 and set(a["keypoints"][2::3]) <= {0, 1, 2}
        assert not [f for _, _, fs in os.walk(clip_dir) for f in fs if ".tmp" in f]

    def test_refuses_to_overwrite(self, clip, clip_dir):
        with pytest.raises(FileExistsError, match="already holds a dataset"):
            write_clip(clip_dir, clip)
        write_clip(clip_dir, clip, overwrite=True)

    def test_no_person_frames_recorded(self, tmp_path, clip):
        c = {k: np.array(_field(clip, k)) for k in ("frames", "masks", "keypoints", "confidences")}
        c["confidences"][2] = 0  # nobody in frame 2
        c["masks"][2] = False
        d = write_clip(str(tmp_path / "c"), c)
        r = DatasetReader(d)
        assert r.num_frames == 5 and r.num_persons(2) == 0 and r.num_persons(1) == len(c["keypoints"][1])
        img = [i for i in json.load(open(os.path.join(d, "keypoints.json")))["images"] if i["id"] == 2][0]
        assert img["num_persons"] == 0
        ds = PairDataset(d, augment=False)
        assert [t for _, t in ds.pairs] == [0, 3] and ds.skipped_frames == [(0, 2)]

    def test_wrong_joint_count(self, clip_dir):
        p = os.path.join(clip_dir, "keypoints.json")
        kj = json.load(open(p))
        kj["annotations"][3]["keypoints"] = kj["annotations"][3]["keypoints"][:48]
        json.dump(kj, open(p, "w"))
        with pytest.raises(ValueError, match=r"keypoints.json: annotation 3 .* has 16.0 keypoints .* expected 17"):
            DatasetReader(clip_dir)

    def test_wrong_score_count_and_range(self, clip_dir):
        p = os.path.join(clip_dir, "keypoints.json")
        kj = json.load(open(p))
        kj["annotations"][0]["scores"] = [0.5] * 33
        json.dump(kj, open(p, "w"))
        with pytest.raises(ValueError, match=r"keypoints.json: annotation 0 .* 33 scores, expected 17"):
            DatasetReader(clip_dir)
        kj["annotations"][0]["scores"] = [1.5] * 17
        json.dump(kj, open(p, "w"))
        with pytest.raises(ValueError, match=r"keypoints.json: .* scores outside \[0, 1\]"):
            DatasetReader(clip_dir)

    def test_corrupt_json(self, clip_dir):
        p = os.path.join(clip_dir, "keypoints.json")
        open(p, "w").write('{"images": [')
        with pytest.raises(ValueError, match="keypoints.json: not valid JSON"):
            DatasetReader(clip_dir)
        os.remove(os.path.join(clip_dir, "meta.json"))
        with pytest.raises(FileNotFoundError, match="meta.json: dataset meta.json"):
            DatasetReader(clip_dir)

    def test_wrong_meta(self, clip_dir):
        p = os.path.join(clip_dir, "meta.json")
        meta = json.load(open(p))
        json.dump(dict(meta, version=2), open(p, "w"))
        with pytest.raises(ValueError, match=r"meta.json: dataset version 2"):
            DatasetReader(clip_dir)
        json.dump(dict(meta, format="coco"), open(p, "w"))
        with pytest.raises(ValueError, match=r"meta.json: not an hmore dataset \(format 'coco'"):
            DatasetReader(clip_dir)
        json.dump(dict(meta, num_frames=3), open(p, "w"))
        with pytest.raises(ValueError, match=r"keypoints.json: 5 image entries, meta.json says 3 frames"):
            DatasetReader(clip_dir)

    def test_mask_wrong_size(self, clip_dir):
        p = os.path.join(clip_dir, "masks", "000001.png")
        cv2.imwrite(p, np.zeros((10, 12), np.uint8))
        r = DatasetReader(clip_dir)
        with pytest.raises(ValueError, match=r"masks/000001.png: mask is 12x10, expected 48x40"):
            r.mask(1)
        with pytest.raises(ValueError, match="000001.png"):
            r.validate()

    def test_unreadable_frame_and_flow(self, clip_dir):
        open(os.path.join(clip_dir, "frames", "000002.png"), "wb").write(b"\x89PNG garbage")
        os.remove(os.path.join(clip_dir, "frames", "000003.png"))
        flow_io.write_flo(os.path.join(clip_dir, "flow", "world", "000000.flo"), np.zeros((4, 4, 2), np.float32))
        r = DatasetReader(clip_dir)
        with pytest.raises(ValueError, match=r"frames/000002.png: frame cannot be decoded"):
            r.frame(2)
        with pytest.raises(FileNotFoundError, match=r"frames/000003.png: frame not found"):
            r.frame(3)
        with pytest.raises(ValueError, match=r"world/000000.flo: flow is 4x4, expected 48x40"):
            r.flow("world", 0)

    def test_find_datasets(self, tmp_path, clip):
        for i in range(2):
            write_clip(str(tmp_path / f"c{i}"), clip)
        assert [os.path.basename(d) for d in find_datasets(str(tmp_path))] == ["c0", "c1"]
        with pytest.raises(ValueError, match="no meta.json"):
            find_datasets(str(tmp_path / "c0" / "frames"))


# ---------------------------------------------------------------- PairDataset
class TestPairDataset:
    def test_item(self, clip_dir, clip):
        ds = PairDataset(clip_dir, augment=False)
        assert len(ds) == 4
        s = ds[1]
        P = np.asarray(_field(clip, "keypoints")).shape[1]
        shapes = {"frame0": (3, 40, 48), "frame1": (3, 40, 48), "keypoints0": (P, 17, 2), "keypoints1": (P, 17, 2),
                  "conf0": (P, 17), "conf1": (P, 17), "mask0": (1, 40, 48), "world_flow": (2, 40, 48),
                  "local_flow": (2, 40, 48), "flow_valid": (1, 40, 48), "occlusion": (1, 40, 48),
                  "subject_motion": (P, 2), "index": (2,)}
        assert {k: tuple(v.shape) for k, v in s.items()} == shapes
        assert s["frame0"].dtype == torch.float32 and 0 <= s["frame0"].min() and s["frame0"].max() <= 1
        assert s["mask0"].dtype == torch.bool and s["flow_valid"].all()
        np.testing.assert_array_equal(s["frame1"].permute(1, 2, 0).numpy() * 255,
                                      np.asarray(_field(clip, "frames"))[2].astype(np.float32))
        np.testing.assert_array_equal(s["world_flow"].permute(1, 2, 0).numpy(), np.asarray(_field(clip, "world_flow"))[1])
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
        assert batch["frame0"].shape == (2, 3, 40, 48)

    def test_flip(self, clip_dir):
        s = PairDataset(clip_dir, augment=False)[0]
        f = flip_sample(s)
        W = 48
        np.testing.assert_array_equal(f["frame0"].numpy(), s["frame0"].flip(-1).numpy())
        np.testing.assert_array_equal(f["world_flow"][0].numpy(), -s["world_flow"][0].flip(-1).numpy())
        np.testing.assert_array_equal(f["world_flow"][1].numpy(), s["world_flow"][1].flip(-1).numpy())
        lw, rw = COCO17.index("left_wrist"), COCO17.index("right_wrist")
        assert torch.equal(f["keypoints0"][:, lw, 0], (W - 1) - s["keypoints0"][:, rw, 0])
        assert torch.equal(f["keypoints0"][:, lw, 1], s["keypoints0"][:, rw, 1])
        assert torch.equal(f["conf1"][:, lw], s["conf1"][:, rw])
        assert torch.equal(f["subject_motion"][:, 0], -s["subject_motion"][:, 0])
        ff = flip_sample(f)  # an involution (keypoint x up to float32 rounding of W-1-x)
        for k in s:
            if k.startswith("keypoints"):
                np.testing.assert_allclose(ff[k].numpy(), s[k].numpy(), atol=1e-5, rtol=0)
            else:
                assert torch.equal(ff[k], s[k]), k
        # the flipped flow still maps the flipped keypoint: a pixel at x moving by u lands at x+u;
        # mirrored, W-1-x moving by -u lands at W-1-(x+u)
        x = 10
        u = s["world_flow"][0, 20, x]
        assert f["world_flow"][0, 20, W - 1 - x] == -u

    def test_crop(self, clip_dir):
        ds = PairDataset(clip_dir, augment=False)
        s = ds[0]
        c = crop_sample(s, 5, 7, 20, 30)
        assert c["frame0"].shape == (3, 20, 30) and c["world_flow"].shape == (2, 20, 30)
        assert torch.equal(c["frame1"], s["frame1"][:, 5:25, 7:37])
        assert torch.equal(c["keypoints0"], s["keypoints0"] - torch.tensor([7.0, 5.0]))
        k = c["keypoints0"]
        inside = (k[..., 0] >= -0.5) & (k[..., 0] <= 29.5) & (k[..., 1] >= -0.5) & (k[..., 1] <= 19.5)
        assert torch.equal(c["conf0"], torch.where(inside, s["conf0"], torch.zeros(())))
        # the dataset crops while loading (before conversion); the result is crop_sample's
        d = PairDataset(clip_dir, crop_size=(20, 30), augment=False)[0]
        e = crop_sample(s, 10, 9, 20, 30)  # the centred window of a 40x48 frame
        assert d.keys() == e.keys() and all(torch.equal(d[k], e[k]) for k in d)

    def test_augmented_items_are_seeded(self, clip_dir):
        a = PairDataset(clip_dir, crop_size=(32, 40), flip_prob=0.5, seed=3)
        b = PairDataset(clip_dir, crop_size=(32, 40), flip_prob=0.5, seed=3)
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert all(torch.equal(x[k], y[k]) for k in x)
            assert x["frame0"].shape == (3, 32, 40) and 0 <= x["frame0"].min() and x["frame0"].max() <= 1
        a.set_epoch(1)
        assert any(not torch.equal(a[i]["frame0"], b[i]["frame0"]) for i in range(len(a)))

    def test_jitter_symmetric_and_asymmetric(self, clip_dir):
        sym = PairDataset(clip_dir, flip_prob=0, jitter_prob=1.0, asymmetric_prob=0.0, seed=1)
        raw = sym.raw(0)
        s = sym[0]
        assert not torch.equal(s["frame0"], raw["frame0"])
        from hmore.data.dataset import color_jitter

        g = np.random.default_rng(0)
        f = sym._draw_jitter(g)
        img = raw["frame0"]
        assert torch.equal(color_jitter(img, f), color_jitter(img.clone(), f))
        ident = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "order": ["hue", "brightness", "contrast", "saturation"]}
        np.testing.assert_allclose(color_jitter(img, ident).numpy(), img.numpy(), atol=1e-5, rtol=0)
        asym = PairDataset(clip_dir, flip_prob=0, jitter_prob=1.0, asymmetric_prob=1.0, seed=1)
        # with the same frame as both inputs, asymmetric jitter gives two different images
        asym.raw = lambda i, window=None: dict(raw, frame1=raw["frame0"].clone())
        sym.raw = asym.raw
        a, b = asym[0], sym[0]
        assert not torch.equal(a["frame0"], a["frame1"]) and torch.equal(b["frame0"], b["frame1"])

    def test_bad_arguments(self, clip_dir):
        with pytest.raises(ValueError, match=r"smaller than crop_size"):
            PairDataset(clip_dir, crop_size=(64, 64))
        with pytest.raises(ValueError, match="flip_prob"):
            PairDataset(clip_dir, flip_prob=2)
        with pytest.raises(FileNotFoundError, match="nowhere"):
            PairDataset(os.path.join(clip_dir, "nowhere"))


# ---------------------------------------------------------------- command line
def _run_cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "hmore", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_cli_synth_and_panel(tmp_path, capsys):
    pytest.importorskip("hmore.data.synthetic")
    from hmore.cli import main

    assert main(["synth", "--out", str(tmp_path / "s"), "--num-clips", "2", "--frames", "3", "--seed", "7",
                 "--height", "48", "--width", "64"]) == 0
    ds = PairDataset(str(tmp_path / "s"), augment=False)
    assert len(ds) == 4 and len(ds.readers) == 2
    assert main(["panel", str(tmp_path / "s" / "clip_0000"), "--out", str(tmp_path / "p.mp4")]) == 0
    assert int(cv2.VideoCapture(str(tmp_path / "p.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    assert main(["panel", str(tmp_path / "s" / "clip_0001"), "--out", str(tmp_path / "p.png")]) == 0
    assert cv2.imread(str(tmp_path / "p.png")).shape == (48, 4 * 64, 3)
    capsys.readouterr()
    assert main(["panel", str(tmp_path / "nowhere"), "--out", str(tmp_path / "q.png")]) == 2
    assert "nowhere: dataset folder not found" in capsys.readouterr().err


def test_python_m_hmore(tmp_path):
    # the module entry point, as a user runs it: one line naming the problem, exit status 2
    r = _run_cli("panel", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.png"))
    assert r.returncode == 2 and "nowhere: dataset folder not found" in r.stderr, r.stderr
