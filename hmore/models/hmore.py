"""The H-MoRe model: Φ (world flow) + Ψ (subject motion, subject map) -> world and local flow."""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .classical import dis_flow_batch
from .config import HMoReConfig
from .refine import RefineHead
from .subject_motion import SubjectMotionNet, prior_planes
from .world_flow import WorldFlowNet

__all__ = ["HMoRe", "get_model", "load_weights", "default_weights", "MIN_SIZE", "DEFAULT_WEIGHTS"]

PRIOR_CLAMP = 0.05  # config.prior_skip: the prior's logit is bounded by logit(0.95) = 2.94
MIN_SIZE = 64  # px: below this the 1/8 maps are under 8x8 and the coarsest correlation level empties


def _prepare(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [B, 3, H, W], got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected an RGB batch [B, 3, H, W], got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.is_floating_point():
        x = x.float()
    else:
        raise TypeError(f"{name}: expected float in [0, 1] or uint8 in [0, 255], got {x.dtype}")
    if x.shape[-2] < MIN_SIZE or x.shape[-1] < MIN_SIZE:
        raise ValueError(f"{name}: images must be at least {MIN_SIZE}x{MIN_SIZE} (H, W), got {tuple(x.shape[-2:])}")
    return x


def _prepare_prior(prior, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(prior, torch.Tensor):
        raise TypeError(f"prior: expected a torch.Tensor [B, 1, H, W] or None, got {type(prior).__name__}")
    B, _, H, W = like.shape
    if prior.dim() == 3:
        prior = prior.unsqueeze(1)
    if tuple(prior.shape) != (B, 1, H, W):
        raise ValueError(f"prior: expected shape {(B, 1, H, W)} (a person probability per pixel of image1), "
                         f"got {tuple(prior.shape)}")
    if prior.dtype == torch.uint8:
        prior = prior.float() / (255.0 if int(prior.max()) > 1 else 1.0)
    elif prior.dtype == torch.bool or prior.is_floating_point():
        prior = prior.float()
    else:
        raise TypeError(f"prior: expected float in [0, 1], bool or uint8, got {prior.dtype}")
    return prior.to(like.device)


def _prepare_init(flow_init, like: torch.Tensor) -> torch.Tensor:
    B, _, H, W = like.shape
    if not isinstance(flow_init, torch.Tensor) or tuple(flow_init.shape) != (B, 2, H, W) or not flow_init.is_floating_point():
        got = tuple(flow_init.shape) if isinstance(flow_init, torch.Tensor) else type(flow_init).__name__
        raise ValueError(f"flow_init: expected a float tensor {(B, 2, H, W)} (px, frame 1 -> 2), got {got}")
    return flow_init.float().to(like.device)


class HMoRe(nn.Module):
    """H-MoRe: world-local flows for a pair of frames.

    ``model(image1, image2, iters=None, prior=None, flow_init=None, prior_valid=None)``:
        image1, image2: ``[B, 3, H, W]`` RGB, float in [0, 1] or uint8 in [0, 255], any ``H, W >= 64``
            (padded to a multiple of 8 inside by edge replication, outputs cropped back); channels-last
            accepted.
        iters: refinement iterations (default ``config.iters``).
        prior: ``[B, 1, H, W]`` person probability of image1 in [0, 1] (e.g.
            :func:`hmore.data.segment.person_probability`), only for a model with ``config.person_prior``;
            None runs it frames-only. prior_valid: ``[B]`` bool, samples whose prior to use (default all).
        flow_init: ``[B, 2, H, W]`` px starting estimate; by default, with ``config.flow_init`` set, that
            classical method is run on the frames (CPU, no gradient).
    Returns a dict of float32 tensors:
        ``world_flow [B, 2, H, W]`` (px, channel 0 = x), ``local_flow [B, 2, H, W]`` =
        ``(world_flow - subject_motion[:, :, None, None]) * subject_map`` (``* (subject_map > 0.5)`` with
        ``config.world_gate == "hard"`` in eval mode), ``subject_motion [B, 2]`` (px),
        ``subject_map [B, 1, H, W]`` in [0, 1]; with ``config.flow_target == "full"`` also ``full_flow`` (the
        whole scene's flow; ``world_flow = full_flow * subject_map``). In training mode also
        ``world_flow_iters`` (or ``full_flow_iters`` for the full target: the list of ``iters`` upsampled
        flows, the last equal to the output after the refinement head) and ``subject_map_logits``.
    """

    def __init__(self, config: HMoReConfig | None = None):
        super().__init__()
        self.config = config if config is not None else HMoReConfig()
        if not isinstance(self.config, HMoReConfig):
            raise TypeError(f"config: expected an HMoReConfig, got {type(self.config).__name__}")
        self.phi = WorldFlowNet(self.config)
        self.psi = SubjectMotionNet(self.config)
        self.refine = RefineHead(self.config.refine_dim, self.config.person_prior) if self.config.refine_dim else None
        # the prior's own logit added to the map's (config.prior_skip), weighted by a learned scalar
        self.prior_alpha = nn.Parameter(torch.ones(())) if self.config.prior_skip else None
        self.last_corr_mode: str | None = None

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int | None = None, prior=None,
                flow_init=None, prior_valid=None) -> dict:
        cfg = self.config
        iters = cfg.iters if iters is None else iters
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"iters: expected an int >= 1, got {iters!r}")
        x1, x2 = _prepare(image1, "image1"), _prepare(image2, "image2")
        if x1.shape != x2.shape:
            raise ValueError(f"image2: expected the shape of image1 {tuple(x1.shape)}, got {tuple(x2.shape)}")
        if prior is not None and not cfg.person_prior:
            raise ValueError("prior: this model has no person-prior input (config.person_prior is False); pass None")
        if prior is not None:
            prior = _prepare_prior(prior, x1)
        if flow_init is None and cfg.flow_init != "none":
            with torch.no_grad():
                flow_init = dis_flow_batch(image1, image2, cfg.flow_init)
        if flow_init is not None:
            flow_init = _prepare_init(flow_init, x1)
        H, W = x1.shape[-2:]
        ph, pw = (-H) % 8, (-W) % 8
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        x = torch.cat([x1, x2], 0) * 2.0 - 1.0
        if ph or pw:
            x = F.pad(x, pad, mode="replicate")
            flow_init = None if flow_init is None else F.pad(flow_init, pad, mode="replicate")
            prior = None if prior is None else F.pad(prior, pad, mode="replicate")
        x = x.contiguous()  # channels-last input: the encoders' first conv is faster on NCHW here
        B = x1.shape[0]
        planes = prior_planes(prior, prior_valid, x[:B, :1]) if cfg.person_prior else None
        out = self.phi(x[:B], x[B:], iters, keep_iters=self.training, flow_init=flow_init)
        return self._heads(out, x[:B], x[B:], planes, pad, (H, W))

    def _heads(self, out: dict, im1: torch.Tensor, im2: torch.Tensor, planes, pad, size) -> dict:
        """Ψ, the refinement head and the output dict, from Φ's output on padded frames in [-1, 1]."""
        cfg = self.config
        H, W = size
        self.last_corr_mode = out["corr_mode"]
        flow_low = out["flow_low"] * 8.0  # px of the (padded) full image
        if cfg.psi_detach_flow:
            flow_low = flow_low.detach()
        prior_low = F.avg_pool2d(planes, 8) if planes is not None else None
        v_s, logits = self.psi(out["fmap1"], flow_low, prior_low)
        logits = F.interpolate(logits, scale_factor=8, mode="bilinear", align_corners=False)
        if self.prior_alpha is not None:
            p = (planes[:, :1] / planes[:, 1:].clamp_min(1e-6)).clamp(PRIOR_CLAMP, 1 - PRIOR_CLAMP)
            logits = logits + self.prior_alpha * planes[:, 1:] * torch.log(p / (1 - p))  # 0 where no prior
        flows = list(out["flows"])
        if self.refine is not None:
            flows[-1], logits = self.refine(im1, im2, flows[-1], logits, planes)

        def crop(t):
            return t[..., pad[2]:pad[2] + H, pad[0]:pad[0] + W]

        flows = [crop(f) for f in flows]
        logits = crop(logits)
        smap = torch.sigmoid(logits)
        full = cfg.flow_target == "full"
        gate = (smap > 0.5).to(smap.dtype) if cfg.world_gate == "hard" and not self.training else smap
        world = flows[-1] * gate if full else flows[-1]
        local = (world - v_s[:, :, None, None]) * gate
        res = {"world_flow": world, "local_flow": local, "subject_motion": v_s, "subject_map": smap}
        if full:
            res["full_flow"] = flows[-1]
        if self.training:
            res["full_flow_iters" if full else "world_flow_iters"] = flows
            res["subject_map_logits"] = logits
        return res


# ------------------------------------------------------------------------------------------ get_model
# The weights shipped inside the package (trained by `hmore train` with configs/recipe_cpu.toml; see
# docs/model.md) and their manifest: the file's SHA-256 and size, its config, how it was trained.
DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "hmore_default.pt")


def default_weights(path: str = DEFAULT_WEIGHTS) -> tuple[str, dict]:
    """The shipped weights file and its manifest (``<file>.json``), after checking the file's size and
    SHA-256 against the manifest: ``(path, manifest)``. A missing, truncated or replaced file is a
    ``ValueError``/``FileNotFoundError`` naming it (never a download: the weights live in the package)."""
    import json

    man_path = os.path.splitext(path)[0] + ".json"
    for p in (path, man_path):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: the shipped weights are missing from this install of hmore "
                                    f"(reinstall the package)")
    try:
        with open(man_path) as f:
            man = json.load(f)
        want_sha, want_size = man["sha256"], int(man["bytes"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{man_path}: not a weights manifest ({type(e).__name__}: {e})") from None
    size = os.path.getsize(path)
    if size != want_size:
        raise ValueError(f"{path}: {size} bytes, the manifest records {want_size} (truncated or replaced)")
    from ..data._io import sha256_file

    if sha256_file(path) != want_sha:
        raise ValueError(f"{path}: SHA-256 differs from the one its manifest records (corrupted or replaced)")
    return path, man


def load_weights(path: str) -> tuple[dict, dict]:
    """Read a checkpoint (``hmore train``) or a weights file: returns ``(state_dict, config dict)``.

    Loaded with ``weights_only=True`` (no code runs from the file). Errors name the file and the problem."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding objects weights_only refuses
        raise ValueError(f"{path}: cannot be read as H-MoRe weights ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        raise ValueError(f"{path}: not an H-MoRe checkpoint (expected the keys 'model' and 'config')")
    return ck["model"], ck["config"]


def get_model(name: str = "hmore", weights: str | None = None, **overrides) -> HMoRe:
    """Build a model by name (only ``"hmore"``).

    Args:
        weights: None (random initialisation), ``"default"`` (the weights shipped in the package, checked
            against their recorded checksum and config; see :func:`default_weights`) or the path of a
            checkpoint written by ``hmore train`` (any of ``DIR/checkpoints/*.pt``) or a weights file; the
            model takes the file's config.
        **overrides: HMoReConfig fields (e.g. ``iters=8``, ``backend="reference"``, ``corr_mode="otf"``);
            with weights, overriding a field that shapes the parameters to another value is an error.
    """
    if name != "hmore":
        raise ValueError(f"name: unknown model {name!r}; available: 'hmore'")
    if weights is None:
        return HMoRe(HMoReConfig.from_dict(overrides, "get_model overrides"))
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights: expected None or a file path, got {type(weights).__name__}")
    weights = os.fspath(weights)
    manifest = None
    if weights == "default":
        weights, manifest = default_weights()
    state, cfg_dict = load_weights(weights)
    if manifest is not None and manifest.get("config") != cfg_dict:
        raise ValueError(f"{weights}: its config differs from the one its manifest records")
    cfg = HMoReConfig.from_dict(cfg_dict, f"{weights}: config")
    for k, v in overrides.items():
        if k in HMoReConfig.ARCH_FIELDS and getattr(cfg, k) != v:
            raise ValueError(f"{k}: the weights in {weights} were trained with {k}={getattr(cfg, k)!r}; "
                             f"cannot override it to {v!r}")
    cfg = cfg.replace(**overrides)
    model = HMoRe(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{weights}: parameters do not fit the model its config describes ({e})") from None
    return model
