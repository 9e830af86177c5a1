"""``hmore train``: the H-MoRe training loop, readable top to bottom (torchvision's
references/optical_flow/train.py is the model): config -> data -> model -> step -> log -> checkpoint.

The recipe [ours] (docs/model.md): no pretrained RAFT weights can be downloaded, so Φ starts from scratch.
Stage 1 (``warmup_steps``) trains on synthetic pairs with exact flow only, without the skeleton and
boundary constraints (our analogue of RAFT's FlyingChairs pre-training). Stage 2 trains on ``data`` (a
weighted mix of synthetic pairs and annotated real clips) with every term of :class:`HMoReLoss`, the
supervised EPE applied only to samples that have exact flow.

Runs resume exactly: sample n of the run is a function of (seed, n) (:mod:`hmore.data.mix`), and a
checkpoint holds the model, optimizer, scheduler, step and every RNG state. Checkpoints are written
atomically (temporary file, fsync, rename, fsync of the folder), so a ``kill -9`` at any moment leaves
only complete checkpoints under their final names.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .data._io import atomic_write_bytes as _atomic_write_bytes
from .models.config import HMoReConfig, config_from_dict, unknown_key_error
from .provenance import git_commit

__all__ = ["TrainConfig", "load_config", "train", "TrainingDiverged", "find_checkpoints", "latest_checkpoint",
           "atomic_save", "LOG_COLUMNS"]

from .losses import HMoReLoss  # noqa: E402  (the loss declares its terms; the log's columns follow)

TERMS = HMoReLoss.TERMS
# the validation pass (TrainConfig.val_every): per val set, body world-flow EPE (px), background leakage (px)
# and the subject map's IoU with the true mask, pooled over the set (hmore.evaluation.metrics' definitions)
VAL_SETS = ("synthetic", "photos")
VAL_METRICS = ("epe", "leakage", "iou")
VAL_COLUMNS = tuple(f"val_{s}_{m}" for s in VAL_SETS for m in VAL_METRICS)
LOG_COLUMNS = (("step", "loss") + TERMS + ("stage", "lr", "grad_norm", "pairs_per_s", "seconds", "cpu_seconds")
               + VAL_COLUMNS)
CHECKPOINT_FORMAT = "hmore-checkpoint-v1"
# keys that may differ between a run and its resumption (they do not change what the run computes)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "num_workers", "quiet", "tensorboard", "log_every",
                     "val_every", "val_pairs", "budget_cpu_seconds")


class TrainingDiverged(RuntimeError):
    """A loss term or the gradient became NaN or Inf; the last good checkpoint is left untouched."""


@dataclass
class TrainConfig:
    """One training run. Written, resolved, to ``OUT/config.json``.

    out: run folder (log.csv, checkpoints/, tb/, config.json).
    steps (2000), batch_size (4; per process under DDP), crop ((128, 128): training size; synthetic pairs
        are rendered at it), seed (0: model init and data).
    warmup_steps (500): stage 1 length (no skeleton/boundary terms); 0 skips it.
    warmup_data: stage-1 sources (default synthetic only), as ``data``.
    data: stage-2 sources, a list of ``{"source": "synthetic" | "photos" | FOLDER, "weight": w}``.
    prior: :class:`hmore.data.mix.PriorPolicy` fields (how each sample's person prior is made), used when
        ``model.person_prior`` is on.
    val_every (0: off): a validation pass every that many steps (and at the last step) on ``val_pairs`` (16)
        pairs of each val set (synthetic val split; photo composites of role "val", never the test photos) at
        the crop size: ``val_<set>_epe|leakage|iou`` in log.csv and TensorBoard.
    init_from ("": random initialisation): a checkpoint or weights file whose parameters start a new run
        (fine-tuning: a fresh optimizer and schedule). Parameters the new model adds (a new option's) keep
        their initialisation and are listed on stderr; a parameter of another shape, or one the model does not
        have, is an error. Ignored when resuming (the run's own checkpoint has everything).
    budget_cpu_seconds (0: off): stop, with a checkpoint, once the training process has used this much CPU
        time (carried across resumptions; ``cpu_seconds`` in log.csv): recipes compared at an equal budget on a
        shared machine, where wall time also counts the other processes' load.
    synthetic: SyntheticConfig overrides (e.g. ``{"max_speed": 6.0}``).
    lr (4e-4), weight_decay (1e-4), lr_warmup (100 steps of linear ramp), lr_decay (0.1: the factor the
        learning rate decays by, exponentially, over ``steps``), grad_clip (1.0).
    checkpoint_every (500), keep_checkpoints (3: older ones are deleted), log_every (1: log.csv rows).
    num_workers (2): DataLoader workers (0 = load in the training process).
    device ("auto": CUDA when available), amp ("auto": bf16 autocast on CUDA, off on CPU; "bf16" | "off"),
    compile (False: torch.compile the model), channels_last (False), tensorboard (True), quiet (False).
    model: HMoReConfig fields.
    """

    out: str = "runs/hmore"
    steps: int = 2000
    batch_size: int = 4
    crop: tuple = (128, 128)
    seed: int = 0
    warmup_steps: int = 500
    warmup_data: list = field(default_factory=lambda: [{"source": "synthetic", "weight": 1.0}])
    data: list = field(default_factory=lambda: [{"source": "synthetic", "weight": 1.0}])
    synthetic: dict = field(default_factory=dict)
    prior: dict = field(default_factory=dict)
    val_every: int = 0
    val_pairs: int = 16
    budget_cpu_seconds: float = 0.0
    init_from: str = ""
    lr: float = 4e-4
    weight_decay: float = 1e-4
    lr_warmup: int = 100
    lr_decay: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 1
    num_workers: int = 2
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    channels_last: bool = False
    tensorboard: bool = True
    quiet: bool = False
    model: dict = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.crop, list):
            self.crop = tuple(self.crop)
        if isinstance(self.model, HMoReConfig):
            self.model = {k: v for k, v in self.model.to_dict().items()}

        def bad(name, expect):
            raise ValueError(f"config {name}: expected {expect}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for name, lo in (("steps", 1), ("batch_size", 1), ("checkpoint_every", 1), ("keep_checkpoints", 1),
                         ("log_every", 1), ("warmup_steps", 0), ("lr_warmup", 0), ("num_workers", 0), ("seed", 0),
                         ("val_every", 0), ("val_pairs", 1)):
            if not is_int(getattr(self, name)) or getattr(self, name) < lo:
                bad(name, f"an int >= {lo}")
        if not (isinstance(self.crop, tuple) and len(self.crop) == 2 and all(is_int(v) and v >= 64 for v in self.crop)):
            bad("crop", "(height, width), ints >= 64")
        for name in ("lr", "weight_decay", "grad_clip", "budget_cpu_seconds"):
            if not is_num(getattr(self, name)) or getattr(self, name) < 0:
                bad(name, "a finite number >= 0")
        if not is_num(self.lr_decay) or not 0 < self.lr_decay <= 1:
            bad("lr_decay", "a number in (0, 1]")
        if self.amp not in ("auto", "bf16", "off"):
            bad("amp", "'auto', 'bf16' or 'off'")
        if not isinstance(self.device, str):
            bad("device", "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if not isinstance(self.init_from, str):
            bad("init_from", "a checkpoint path or ''")
        for name in ("compile", "channels_last", "tensorboard", "quiet"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "true or false")
        if not isinstance(self.synthetic, dict):
            bad("synthetic", "a table of SyntheticConfig fields")
        if not isinstance(self.prior, dict):
            bad("prior", "a table of PriorPolicy fields (segmenter, corrupt)")
        self.prior_policy()  # validates the prior table
        self.model_config()  # validates the model table (unknown keys, values)

    def prior_policy(self):
        from .data.mix import PriorPolicy

        return config_from_dict(PriorPolicy, dict(self.prior), "config prior")

    def model_config(self) -> HMoReConfig:
        return config_from_dict(HMoReConfig, dict(self.model), "config model")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["crop"] = list(self.crop)
        d["model"] = self.model_config().to_dict()
        return d


# ------------------------------------------------------------------------------------------ config
def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare word: a string ("otf", a path)


def _set_dotted(d: dict, key: str, value, where: str):
    parts = key.split(".")
    top = {f.name for f in dataclasses.fields(TrainConfig)}
    if parts[0] not in top:
        raise unknown_key_error(parts[0], top, where)
    if len(parts) == 1:
        d[parts[0]] = value
    elif len(parts) == 2 and parts[0] in ("model", "synthetic", "prior"):
        d.setdefault(parts[0], {})
        if parts[0] == "model":
            names = {f.name for f in dataclasses.fields(HMoReConfig)}
            if parts[1] not in names:
                raise unknown_key_error(parts[1], names, f"{where} model")
        d[parts[0]] = {**d[parts[0]], parts[1]: value}
    else:
        raise ValueError(f"{where}: cannot set {key!r} (only model.<field>, synthetic.<field> and prior.<field> are nested)")


def read_config_file(path: str) -> dict:
    """A ``.toml`` or ``.json`` config file as a dict; errors name the file and the problem."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: config file does not exist")
    try:
        if path.endswith(".toml"):
            import tomllib

            with open(path, "rb") as f:
                return tomllib.load(f)
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"{path}: not a valid {'TOML' if path.endswith('.toml') else 'JSON'} config ({e})") from None


def load_config(path: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """TrainConfig from a config file (optional) plus ``overrides`` (dotted keys: ``model.iters``)."""
    d: dict = {}
    if path:
        raw = read_config_file(path)
        for k, v in raw.items():
            if isinstance(v, dict) and k in ("model", "synthetic", "prior"):
                for kk, vv in v.items():
                    _set_dotted(d, f"{k}.{kk}", vv, path)
            else:
                _set_dotted(d, k, v, path)
    for k, v in (overrides or {}).items():
        _set_dotted(d, k, v, "override")
    return config_from_dict(TrainConfig, d, path or "config")


# ------------------------------------------------------------------------------------------ files
def atomic_write_bytes(path: str, data: bytes) -> None:
    """The data tools' atomic write (temporary file, fsync, rename, fsync of the folder)."""
    _atomic_write_bytes(path, data, fsync=True)


def atomic_save(obj, path: str) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def find_checkpoints(out: str) -> list[tuple[int, str]]:
    """``(step, path)`` of ``out/checkpoints/step_*.pt``, newest first (temporary files are ignored)."""
    found = []
    for p in glob.glob(os.path.join(out, "checkpoints", "step_*.pt")):
        m = re.fullmatch(r"step_(\d+)\.pt", os.path.basename(p))
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def latest_checkpoint(out: str, warn=print):
    """The newest checkpoint of ``out`` that loads: ``(step, path, checkpoint dict)`` or None."""
    for step, p in find_checkpoints(out):
        try:
            ck = torch.load(p, map_location="cpu", weights_only=True)
            if not (isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT and "model" in ck):
                raise ValueError("not an hmore training checkpoint")
            return step, p, ck
        except Exception as e:
            warn(f"{p}: skipped, does not load ({type(e).__name__}: {e})")
    return None


def _versions() -> dict:
    import hmore
    import hmore_kernels

    v = {"torch": str(torch.__version__), "hmore": hmore.__version__, "hmore_kernels": hmore_kernels.__version__,
         "python": sys.version.split()[0], "numpy": np.__version__}
    try:
        import triton

        v["triton"] = str(triton.__version__)
    except ImportError:
        pass
    return v


def _rng_state(device) -> dict:
    npst = np.random.get_state()
    st = {"torch": torch.get_rng_state(), "python": random.getstate(),
          "numpy": {"keys": torch.from_numpy(npst[1].astype(np.int64)), "pos": int(npst[2]),
                    "has_gauss": int(npst[3]), "cached": float(npst[4])}}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device) -> None:
    torch.set_rng_state(st["torch"])
    # python's state comes back from the weights-only loader as lists; random.setstate wants tuples
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


class CsvLog:
    """``out/log.csv``: one row per logged step, flushed as written; on resume, rows after the resumed
    step (written after the checkpoint the run restarts from) are dropped, atomically."""

    def __init__(self, path: str, resume_step: int | None):
        self.path = path
        if resume_step is not None and os.path.isfile(path):
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
            buf = io.StringIO()
            w = csv.DictWriter(buf, LOG_COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            atomic_write_bytes(path, buf.getvalue().encode())
        elif not os.path.isfile(path) or resume_step is None:
            atomic_write_bytes(path, (",".join(LOG_COLUMNS) + "\n").encode())
        self.f = open(path, "a", newline="")
        # "raise": a value without a column is a bug to hear about, not to drop (old rows rewritten above may
        # carry retired columns; those are ignored)
        self.w = csv.DictWriter(self.f, LOG_COLUMNS, extrasaction="raise")

    def write(self, row: dict) -> None:
        self.w.writerow(row)
        self.f.flush()

    def close(self) -> None:
        self.f.close()


# ------------------------------------------------------------------------------------------ the run
def _fmt(x: float) -> str:
    return f"{x:.9g}"


def _lr_lambda(cfg: TrainConfig):
    # linear ramp over lr_warmup steps, then exponential decay reaching lr_decay at the last step
    rate = math.log(cfg.lr_decay) / max(cfg.steps, 1)

    def f(step: int) -> float:
        ramp = min(1.0, (step + 1) / cfg.lr_warmup) if cfg.lr_warmup else 1.0
        return ramp * math.exp(rate * step)

    return f


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _loader(cfg: TrainConfig, sources, start_step: int, rank: int, world: int, device):
    from .data.mix import MixedPairs, StepSampler

    mcfg = cfg.model_config()
    ds = MixedPairs(sources, crop=cfg.crop, seed=cfg.seed, synthetic=cfg.synthetic,
                    prior=cfg.prior_policy() if mcfg.person_prior else None, flow_init=mcfg.flow_init)
    g = torch.Generator()
    g.manual_seed(cfg.seed)
    return torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, sampler=StepSampler(cfg.batch_size, start_step, rank, world),
        num_workers=cfg.num_workers, pin_memory=device.type == "cuda", generator=g,
        persistent_workers=cfg.num_workers > 0, prefetch_factor=2 if cfg.num_workers > 0 else None,
    )


def model_inputs(batch: dict, mcfg: HMoReConfig) -> dict:
    """The keyword inputs of ``HMoRe.forward`` a batch carries beyond the frames (the person prior and
    the classical start, when the model takes them)."""
    kw = {}
    if mcfg.person_prior and "prior0" in batch:
        kw.update(prior=batch["prior0"], prior_valid=batch.get("prior_valid"))
    if mcfg.flow_init != "none" and "flow_init" in batch:
        kw["flow_init"] = batch["flow_init"]
    return kw


def validation_sets(cfg: TrainConfig, mcfg: HMoReConfig) -> dict:
    """The fixed val batches of a run: ``{set name: batch dict}`` with ``frame0/1``, ``mask0``, ``world_flow``,
    ``flow_valid`` and, for a person-prior model, ``prior0`` from the segmenter a user runs at inference.
    Synthetic: the generator's val split (seeds disjoint from training and test) with its default config
    (the test split's; a run's synthetic overrides do not change it, so recipes compare); photos: :class:`hmore.data.photos.PhotoPairs` of role
    "val" (photos set aside from training; never the held-out test photos)."""
    from .data.photos import PhotoPairs
    from .data.synthetic import SyntheticConfig, SyntheticPairs

    H, W = cfg.crop
    # the generator's defaults, as the test split: the same val pairs for every recipe, whatever its
    # synthetic overrides (photo backgrounds, speeds), so runs compare
    sets = {"synthetic": SyntheticPairs("val", cfg.val_pairs, SyntheticConfig(height=H, width=W)),
            "photos": PhotoPairs("val", cfg.val_pairs, H, W)}
    out = {}
    for name, ds in sets.items():
        items = [ds[i] for i in range(len(ds))]
        b = {k: torch.stack([it[k] for it in items]) for k in ("frame0", "frame1", "mask0", "world_flow", "flow_valid")}
        if mcfg.person_prior:
            from .data.segment import batch_person_prior

            b["prior0"] = batch_person_prior(b["frame0"])
        out[name] = b
    return out


@torch.no_grad()
def validate(model, sets: dict, device, batch_size: int = 8) -> dict:
    """``{"val_<set>_epe" | "_leakage" | "_iou": value}`` of ``model`` (switched to eval mode and back) on
    :func:`validation_sets`' batches: body world-flow EPE and background leakage as ``hmore eval`` defines
    them, and the IoU of ``subject_map > 0.5`` with ``mask0``, each pooled over the set."""
    from .evaluation.metrics import body_flow_counts, leakage_counts

    was = model.training
    model.eval()
    res = {}
    try:
        for name, b in sets.items():
            e = n = leak = nl = inter = union = 0.0
            N = b["frame0"].shape[0]
            for i in range(0, N, batch_size):
                sl = {k: v[i:i + batch_size].to(device) for k, v in b.items()}
                kw = {"prior": sl["prior0"]} if "prior0" in sl else {}
                o = model(sl["frame0"], sl["frame1"], **kw)
                c = body_flow_counts(o["world_flow"].float(), sl["world_flow"], sl["flow_valid"] & sl["mask0"])
                e, n = e + c["epe_sum"], n + c["pixels"]
                ls, lp = leakage_counts(o["world_flow"].float(), sl["mask0"])
                leak, nl = leak + ls, nl + lp
                pm, tm = o["subject_map"] > 0.5, sl["mask0"].bool()
                inter, union = inter + float((pm & tm).sum()), union + float((pm | tm).sum())
            res[f"val_{name}_epe"] = e / max(n, 1)
            res[f"val_{name}_leakage"] = leak / max(nl, 1)
            res[f"val_{name}_iou"] = inter / union if union else 1.0
    finally:
        model.train(was)
    return res


def train(cfg: TrainConfig, resume: bool = False, progress: bool | None = None) -> dict:
    """Run (or resume) a training run. Returns ``{"step", "loss", "checkpoint", "out"}``.

    Raises :class:`TrainingDiverged` (NaN/Inf loss or gradient: names the step and the term, writes no
    checkpoint), FileNotFoundError / ValueError for bad data or config (naming the file or key)."""
    from .losses import HMoReLoss
    from .models import HMoRe

    world, rank, local_rank = _dist_info()
    distributed = world > 1
    from .device import resolve_device

    device = resolve_device(cfg.device, "config device", local_rank)
    out = cfg.out
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if rank == 0 else (lambda *a: None)

    # ---- the run's config: new, or the saved one when resuming
    cfg_path = os.path.join(out, "config.json")
    resume_from = None
    if resume:
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{cfg_path}: nothing to resume (no config.json in {out})")
        saved = load_config(cfg_path)
        changed = [k for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES + ("out",) and saved.to_dict()[k] != v]
        if changed:
            k = changed[0]
            raise ValueError(f"{k}: the run in {out} was started with {k}={saved.to_dict()[k]!r}; a resumed run "
                             f"cannot change it to {cfg.to_dict()[k]!r} (only {', '.join(RESUMABLE_CHANGES)} may change)")
        for k in RESUMABLE_CHANGES:
            setattr(saved, k, getattr(cfg, k))
        saved.out = out
        cfg = saved
        resume_from = latest_checkpoint(out, warn=say)
        if resume_from is None:
            say(f"{out}: no checkpoint loads; starting from step 0")
    elif os.path.isfile(cfg_path) and find_checkpoints(out):
        raise FileExistsError(f"{out}: already holds a run (config.json and checkpoints); pass --resume to continue "
                              "it or choose another --out")
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"{out}: exists and is not a folder (--out must be a folder)")
    mcfg = cfg.model_config()
    from .data.mix import parse_sources

    stage2_sources = parse_sources(cfg.data)  # checks the folders before any work starts
    stage1_sources = parse_sources(cfg.warmup_data)

    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if rank == 0:
        os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
        atomic_write_bytes(cfg_path, (json.dumps(cfg.to_dict(), indent=2) + "\n").encode())

    # ---- model, optimiser, schedule (the same initial weights on every rank: seeded identically)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (1 << 32))
    random.seed(cfg.seed)
    model = HMoRe(mcfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    step = 0
    if cfg.init_from and resume_from is None:
        from .models import load_weights

        state, _ = load_weights(cfg.init_from)  # names the file when it is missing or not a checkpoint
        own = model.state_dict()
        extra = [k for k in state if k not in own]
        bad_shape = [k for k in state if k in own and own[k].shape != state[k].shape]
        if extra or bad_shape:
            k = (extra or bad_shape)[0]
            raise ValueError(f"init_from {cfg.init_from}: parameter {k!r} "
                             f"{'is not in this model' if extra else 'has another shape in this model'}")
        missing = [k for k in own if k not in state]
        model.load_state_dict(state, strict=False)
        say(f"{out}: initialised from {cfg.init_from}" + (f"; new parameters: {', '.join(missing)}" if missing else ""))
    if resume_from is not None:
        step, path, ck = resume_from
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"], device)
        say(f"{out}: resuming from {path} (step {step})")
    net = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(net) if cfg.compile else net
    loss_fn = HMoReLoss(mcfg)
    use_amp = device.type == "cuda" and cfg.amp in ("auto", "bf16")

    log = CsvLog(os.path.join(out, "log.csv"), step if resume else None) if rank == 0 else None
    tb = None
    if rank == 0 and cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(os.path.join(out, "tb"), purge_step=step + 1 if resume else None)
        except ImportError as e:
            say(f"tensorboard unavailable ({e}); logging to log.csv only")

    def save(step_done: int) -> str:
        path = os.path.join(out, "checkpoints", f"step_{step_done:08d}.pt")
        atomic_save({
            "format": CHECKPOINT_FORMAT, "step": step_done, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": _rng_state(device), "config": mcfg.to_dict(),
            "train_config": cfg.to_dict(), "commit": git_commit(), "versions": _versions(), "time": time.time(),
            "cpu_seconds": cpu_base + time.process_time() - cpu_t0,
        }, path)
        for _, old in find_checkpoints(out)[cfg.keep_checkpoints:]:
            try:
                os.remove(old)
            except OSError:
                pass
        return path

    show = (not cfg.quiet) if progress is None else progress
    bar = None
    if rank == 0 and show:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)

    last = {"step": step, "loss": float("nan"), "checkpoint": resume_from[1] if resume_from else None, "out": out}
    # the training process's CPU time, carried across resumptions: the fair budget on a shared machine
    # (wall time counts other processes' load); the validation pass is included
    cpu_base = float(resume_from[2].get("cpu_seconds", 0.0)) if resume_from else 0.0
    cpu_t0 = time.process_time()
    val_sets = None
    t_last = time.perf_counter()
    model.train()
    try:
        for stage, stage_end, sources in (("warmup", min(cfg.warmup_steps, cfg.steps), stage1_sources),
                                          ("main", cfg.steps, stage2_sources)):
            if step >= stage_end:
                continue
            loader = iter(_loader(cfg, sources, step, rank, world, device))
            while step < stage_end:
                batch = {k: v.to(device, non_blocking=True) for k, v in next(loader).items()}
                im1, im2 = batch["frame0"], batch["frame1"]
                if cfg.channels_last:
                    im1, im2 = im1.contiguous(memory_format=torch.channels_last), im2.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    outputs = fwd(im1, im2, **model_inputs(batch, mcfg))
                total, terms = loss_fn(outputs, batch, constraints=stage == "main")
                # one device-to-host sync for every term together; names are looked up only on failure
                checked = (("loss", total), *terms.items())
                finite = bool(torch.isfinite(torch.stack([v.detach().float() for _, v in checked])).all())
                bad = [] if finite else [k for k, v in checked if not torch.isfinite(v)]
                if distributed:  # every rank stops together, whichever rank saw the NaN
                    flag = torch.tensor([float(bool(bad))], device=device)
                    torch.distributed.all_reduce(flag)
                    if flag.item() and not bad:
                        bad = ["loss (on another rank)"]
                if bad:
                    name = next((k for k in bad if k != "loss"), bad[0])
                    val = float(terms[name]) if name in terms else float(total)
                    raise TrainingDiverged(f"step {step + 1}: loss term {name!r} is {val} (stage {stage}); no "
                                           f"checkpoint was written for it, the last good one is kept")
                opt.zero_grad(set_to_none=True)
                total.backward()
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
                if not torch.isfinite(gnorm):
                    raise TrainingDiverged(f"step {step + 1}: the gradient norm is {float(gnorm)} (stage {stage}); "
                                           "no checkpoint was written for it, the last good one is kept")
                opt.step()
                sched.step()
                step += 1
                over = bool(cfg.budget_cpu_seconds) and cpu_base + time.process_time() - cpu_t0 >= cfg.budget_cpu_seconds
                if distributed and cfg.budget_cpu_seconds:  # rank 0's clock decides, every rank stops together
                    flag = torch.tensor([float(over)], device=device)
                    torch.distributed.broadcast(flag, 0)
                    over = bool(flag.item())
                now = time.perf_counter()
                pairs_s = cfg.batch_size * world / max(now - t_last, 1e-9)
                t_last = now
                logged_total = total.detach()
                if distributed:  # log the whole batch's values: the mean over ranks (equal local batches)
                    names = sorted(terms)
                    vec = torch.stack([logged_total] + [terms[k].float() for k in names])
                    torch.distributed.all_reduce(vec)
                    vec /= world
                    logged_total, terms = vec[0], dict(zip(names, vec[1:]))
                if rank == 0:
                    total = logged_total
                    vals = {k: float(v) for k, v in terms.items()}
                    row = {"step": step, "loss": _fmt(total.item()), **{k: _fmt(v) for k, v in vals.items()}, "stage": stage,
                           "lr": _fmt(opt.param_groups[0]["lr"]), "grad_norm": _fmt(float(gnorm)),
                           "pairs_per_s": f"{pairs_s:.3f}", "seconds": f"{time.time():.3f}",
                           "cpu_seconds": f"{cpu_base + time.process_time() - cpu_t0:.3f}"}
                    if cfg.val_every and (step % cfg.val_every == 0 or step == cfg.steps):
                        if val_sets is None:
                            val_sets = validation_sets(cfg, mcfg)
                        vres = validate(model, val_sets, device)
                        row.update({k: _fmt(v) for k, v in vres.items()})
                        if tb is not None:
                            for k, v in vres.items():
                                tb.add_scalar(k.replace("val_", "val/", 1), v, step)
                        say(f"step {step}: " + " ".join(f"{k[4:]}={v:.3f}" for k, v in vres.items()))
                    if step % cfg.log_every == 0 or step == cfg.steps or VAL_COLUMNS[0] in row:
                        log.write(row)
                        if tb is not None:
                            tb.add_scalar("loss/total", total.item(), step)
                            for k, v in vals.items():
                                tb.add_scalar(f"loss/{k}", v, step)
                            tb.add_scalar("lr", opt.param_groups[0]["lr"], step)
                            tb.add_scalar("pairs_per_s", pairs_s, step)
                    if bar is not None:
                        bar.set_postfix_str(" ".join([f"loss={total.item():.3f}"] + [f"{k}={v:.3f}" for k, v in vals.items()]
                                                     + [f"{pairs_s:.1f}pairs/s"]), refresh=False)
                        bar.update(1)
                    last.update(step=step, loss=total.item())
                    if step % cfg.checkpoint_every == 0 or step == cfg.steps or over:
                        last["checkpoint"] = save(step)
                if over:
                    say(f"{out}: CPU budget of {cfg.budget_cpu_seconds:g} s reached at step {step}; stopping")
                    last["budget_reached"] = True
                    break
            if last.get("budget_reached"):
                break
    except torch.cuda.OutOfMemoryError as e:
        raise RuntimeError(f"out of GPU memory at step {step + 1} (batch {cfg.batch_size}, crop {cfg.crop}): use a "
                           f"smaller --batch-size or --crop, or the memory-free correlation (--set model.corr_mode=otf)"
                           f" [{str(e).splitlines()[0]}]") from None
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        if tb is not None:
            tb.close()
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return last
