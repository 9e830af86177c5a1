"""The ``hmore`` command line (also ``python -m hmore``).

Subcommands:
  annotate VIDEO --out DIR [--max-frames N] [--resume]   annotate a real video offline (MediaPipe)
  synth --out DIR --num-clips N --frames T --seed S       write synthetic clips with exact ground truth
  panel DIR --out FILE.(png|mp4)                          frame | world flow | local flow | mask panels
  train --out DIR [--config FILE] [--steps N] ... [--resume]  train H-MoRe (also under torchrun: DDP)
Errors in the input are reported as one line naming the file, with exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys


def _annotate(a) -> int:
    from hmore.data.annotate import annotate_video

    s = annotate_video(a.video, a.out, max_frames=a.max_frames, resume=a.resume, segment_length=a.segment_length,
                       mask_source=a.mask_source, static=a.static, progress=not a.quiet)
    print(f"{a.out}: {s['frames']} frames ({s['frames_with_person']} with a person); annotated {s['annotated']} "
          f"in {s['seconds']:.1f} s ({s['fps']:.1f} frame/s), reused {s['reused']} from an earlier run")
    return 0


def _synth(a) -> int:
    from hmore.data.format import write_clip
    from hmore.data.synthetic import SyntheticConfig, render_clip

    cfg = SyntheticConfig(height=a.height, width=a.width, num_subjects=a.subjects)
    os.makedirs(a.out, exist_ok=True)
    for i in range(a.num_clips):
        d = os.path.join(a.out, f"clip_{i:04d}")
        if os.path.isfile(os.path.join(d, "meta.json")) and not a.overwrite:
            print(f"{d}: exists, kept (pass --overwrite to redo)")
            continue
        write_clip(d, render_clip(a.seed + i, a.frames, cfg), overwrite=True)
        print(f"{d}: {a.frames} frames {a.width}x{a.height}, seed {a.seed + i}")
    return 0


def _panel(a) -> int:
    import numpy as np

    from hmore.data.format import DatasetReader
    from hmore.data.viz import PanelWriter, draw_keypoints
    from hmore_kernels.layouts import COCO17

    r = DatasetReader(a.dir)
    T = r.num_frames if a.max_frames is None else min(r.num_frames, a.max_frames)
    n = T if not r.flows else max(T - 1, 0)
    if n == 0:
        raise ValueError(f"{a.dir}: nothing to draw ({r.num_frames} frames)")
    max_flow = a.max_flow
    if max_flow is None and r.flows:  # one normalisation for the whole clip so colours compare over time
        radii = [np.hypot(*r.flow(k, t).transpose(2, 0, 1)).max() for k in ("world", "local") if k in r.flows for t in range(n)]
        max_flow = max([x for x in radii if np.isfinite(x) and x > 0] + [1.0])
    if a.out.lower().endswith(".png") and n > 1 and a.frame is None:
        a.frame = 0
    frames = range(n) if a.frame is None else [a.frame]
    with PanelWriter(a.out, fps=a.fps, max_flow=max_flow) as w:
        for t in frames:
            _, k, c = r.persons(t)
            img = draw_keypoints(r.frame(t), k, c, COCO17.bones) if len(k) else r.frame(t)
            w.add(img, r.flow("world", t) if "world" in r.flows else None,
                  r.flow("local", t) if "local" in r.flows else None, r.mask(t))
    print(f"{a.out}: {len(frames)} panel(s)")
    return 0


def _train(a) -> int:
    from hmore.train import TrainingDiverged, load_config, train

    over = {}
    for item in a.set or []:
        if "=" not in item:
            raise ValueError(f"--set: expected KEY=VALUE (e.g. model.iters=8), got {item!r}")
        k, v = item.split("=", 1)
        from hmore.train import _parse_value

        over[k.strip()] = _parse_value(v.strip())
    out = a.out
    if isinstance(a.resume, str):  # --resume DIR
        if out is not None and os.path.abspath(out) != os.path.abspath(a.resume):
            raise ValueError(f"--resume {a.resume} and --out {out} name different runs")
        out = a.resume
    if out is None:
        raise ValueError("--out: required (the run folder)")
    over["out"] = out
    for flag, key in (("steps", "steps"), ("batch_size", "batch_size"), ("checkpoint_every", "checkpoint_every"),
                      ("seed", "seed"), ("num_workers", "num_workers"), ("device", "device")):
        if getattr(a, flag) is not None:
            over[key] = getattr(a, flag)
    if a.crop is not None:
        over["crop"] = list(a.crop)
    if a.quiet:
        over["quiet"] = True
    config = a.config
    if a.resume and config is None and os.path.isfile(os.path.join(out, "config.json")):
        config = os.path.join(out, "config.json")
    cfg = load_config(config, over)
    try:
        r = train(cfg, resume=bool(a.resume))
    except TrainingDiverged as e:
        print(f"hmore train: stopped: {e}", file=sys.stderr)
        return 3
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{out}: trained to step {r['step']}, loss {r['loss']:.4f}; checkpoint {r['checkpoint']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hmore", description="H-MoRe tools: data annotation, synthesis, visualisation")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("annotate", help="annotate a video with MediaPipe pose + segmentation (offline)")
    q.add_argument("video")
    q.add_argument("--out", required=True, help="output dataset folder")
    q.add_argument("--max-frames", type=int, default=None)
    q.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    q.add_argument("--segment-length", type=int, default=32, help="frames per tracking segment / checkpoint")
    q.add_argument("--mask-source", choices=("selfie", "pose"), default="selfie")
    q.add_argument("--static", action="store_true", help="run the pose on every frame independently")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_annotate)
    q = sub.add_parser("synth", help="write synthetic clips (exact flows, masks, keypoints)")
    q.add_argument("--out", required=True)
    q.add_argument("--num-clips", type=int, default=1)
    q.add_argument("--frames", type=int, default=8)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--height", type=int, default=256)
    q.add_argument("--width", type=int, default=256)
    q.add_argument("--subjects", type=int, default=1)
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=_synth)
    q = sub.add_parser("panel", help="write frame | world flow | local flow | mask panels of a dataset folder")
    q.add_argument("dir")
    q.add_argument("--out", required=True, help="FILE.png (one panel) or FILE.mp4 (the whole clip)")
    q.add_argument("--frame", type=int, default=None, help="only this frame (default: all for .mp4, 0 for .png)")
    q.add_argument("--max-frames", type=int, default=None)
    q.add_argument("--max-flow", type=float, default=None, help="flow radius drawn fully saturated (default: clip max)")
    q.add_argument("--fps", type=float, default=10.0)
    q.set_defaults(func=_panel)
    q = sub.add_parser("train", help="train H-MoRe (config file + overrides; resumable; DDP under torchrun)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train H-MoRe. Settings come from TrainConfig's defaults, then --config, then the "
                                   "flags and --set. Multi-process: torchrun --nproc_per_node N -m hmore train ...")
    q.add_argument("--out", default=None, help="run folder: config.json, log.csv, checkpoints/, tb/")
    q.add_argument("--config", default=None, help="a .toml or .json config file (keys of hmore.train.TrainConfig)")
    q.add_argument("--steps", type=int, default=None, help="total optimizer steps (config default: 2000)")
    q.add_argument("--batch-size", type=int, default=None, help="pairs per step per process (config default: 4)")
    q.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), default=None, help="training size (default 128 128)")
    q.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default 500)")
    q.add_argument("--seed", type=int, default=None, help="model-init and data seed (default 0)")
    q.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default 2)")
    q.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default auto)")
    q.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config key, dotted for the model (model.iters=8, model.corr_mode=otf); repeatable")
    q.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                   help="continue the run in --out (or DIR) from its newest checkpoint that loads")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_train)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        print(f"hmore {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hmore {args.command}: interrupted; finished work is kept (annotate: rerun with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
