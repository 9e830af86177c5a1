"""HMoReConfig: every architectural and loss choice of the model, saved inside every checkpoint.

docs/method.md marks what the paper states [paper] and what this project chose to fill its gaps [ours]; each
[ours] choice is a field here so a user reproducing the paper can see and change it.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

__all__ = ["HMoReConfig", "unknown_key_error", "config_from_dict"]

_CORR_MODES = ("auto", "allpairs", "otf")
_BACKENDS = ("auto", "reference", "cpu", "cuda", "triton", "cupy")


def unknown_key_error(key: str, valid, where: str) -> ValueError:
    """A ValueError naming an unknown config key and the closest valid one."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return ValueError(f"{where}: unknown key {key!r}{hint}")


@dataclass
class HMoReConfig:
    """The H-MoRe model and its loss. Defaults follow docs/method.md.

    Φ (world flow), RAFT-small [paper]:
        feature_dim (128), hidden_dim (96), context_dim (64), corr_levels (4), corr_radius (3),
        iters (12 refinement iterations; ``model(..., iters=)`` overrides per call).
    Attention on Φ's 1/8 features [ours]: attention_blocks (2, 0 disables), attention_heads (4),
        attention_mlp_ratio (2).
    Ψ (subject motion) [paper: 4 cross-attention layers; the rest ours]: psi_layers (4), psi_dim (96),
        psi_heads (4), psi_detach_flow (True: Ψ's losses do not move Φ through its flow input).
    Options of ours for real video [ours, docs/method.md "Networks"]:
        flow_target ("world": Φ predicts world flow directly, as the paper; "full": Φ predicts the full optical
            flow, scene included, supervised on every pixel where exact flow exists, and world flow = full flow x
            subject map), flow_init ("none"; or a classical method of :mod:`hmore.models.classical`, e.g.
            "dis_medium": Φ starts from that estimate at 1/8 (RAFT's ``flow_init``) and its output is the
            full-resolution estimate plus Φ's upsampled correction), person_prior (False: Ψ and the refinement
            head take a person-probability map, e.g. MediaPipe's selfie mask, as an extra input; ``model(...,
            prior=None)`` runs frames-only), prior_skip (False: with person_prior, the subject map's logits
            also get ``alpha * logit(clamp(prior, 0.05, 0.95))`` at full resolution, alpha learned (starting at 1):
            the prior's sharp silhouette reaches the map directly instead of through Ψ's 1/8 tokens; the clamp
            bounds it to +-2.94 so the network's own logits can overrule a wrong prior), refine_dim (0: off; > 0: channels of a full-resolution head that
            refines the flow and the subject map from the frames, the photometric residual and the prior),
        world_gate ("soft": world and local flow are gated by the subject map itself; "hard": at inference (eval
            mode) by ``subject_map > 0.5``, so a body pixel keeps its whole flow and the silhouette is a clean
            edge; training always gates softly, where the map needs its gradient).
    Correlation: corr_mode ("auto" | "allpairs" | "otf", see ``hmore_kernels.CorrBlock``),
        corr_memory_budget (bytes or None: CorrBlock's default budget); backend ("auto"): passed to every
        ``hmore_kernels`` op the model and the losses call.
    Loss [paper: F + 0.1 G; the rest ours], see :mod:`hmore.losses`:
        w_skeleton (1.0), w_boundary (0.1), w_background (0.05), w_subject_motion (0.1),
        w_subject_map (0.5), w_epe (1.0, only on samples with exact flow), w_local_epe (0.5), w_epe_full (1.0:
        the full-flow EPE over every pixel with exact flow, only with flow_target "full"),
        gamma (0.8, RAFT's weighting over iterations), angle_tol_deg (15), magnitude_range (0.8, 1.2),
        intensity_weight (0.01), min_offset (0.5 px), points_per_bone (8), patch_sizes (8, 16, 32),
        edge_band (3: the band of ``flow_edges`` around the mask boundary; None = whole image),
        background_dilation (8 px); epe_region ("body": the supervised EPE terms average over the body
        pixels of frame 0 (mask0) only, "all": over every pixel with ground truth; world flow is 0 off the
        body, so "all" drowns the body's motion in background zeros and the network learns to output 0 —
        the background term is what suppresses the background).
    """

    # Φ: RAFT-small
    feature_dim: int = 128
    hidden_dim: int = 96
    context_dim: int = 64
    corr_levels: int = 4
    corr_radius: int = 3
    iters: int = 12
    # attention on the 1/8 feature maps
    attention_blocks: int = 2
    attention_heads: int = 4
    attention_mlp_ratio: int = 2
    # Ψ
    psi_layers: int = 4
    psi_dim: int = 96
    psi_heads: int = 4
    psi_detach_flow: bool = True
    # options for real video
    flow_target: str = "world"
    flow_init: str = "none"
    person_prior: bool = False
    prior_skip: bool = False
    refine_dim: int = 0
    world_gate: str = "soft"
    # correlation and ops
    corr_mode: str = "auto"
    corr_memory_budget: int | None = None
    backend: str = "auto"
    # loss
    w_skeleton: float = 1.0
    w_boundary: float = 0.1
    w_background: float = 0.05
    w_subject_motion: float = 0.1
    w_subject_map: float = 0.5
    w_epe: float = 1.0
    w_local_epe: float = 0.5
    w_epe_full: float = 1.0
    epe_region: str = "body"
    gamma: float = 0.8
    angle_tol_deg: float = 15.0
    magnitude_range: tuple = (0.8, 1.2)
    intensity_weight: float = 0.01
    min_offset: float = 0.5
    points_per_bone: int = 8
    patch_sizes: tuple = (8, 16, 32)
    edge_band: int | None = 3
    background_dilation: int = 8

    # fields that change the parameters' shapes: a checkpoint only loads into a model that agrees on them
    ARCH_FIELDS = ("feature_dim", "hidden_dim", "context_dim", "corr_levels", "corr_radius", "attention_blocks",
                   "attention_heads", "attention_mlp_ratio", "psi_layers", "psi_dim", "psi_heads", "person_prior", "prior_skip",
                   "refine_dim")

    def __post_init__(self):
        for name in ("magnitude_range", "patch_sizes"):
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        def bad(name, expect):
            raise ValueError(f"HMoReConfig.{name}: expected {expect}, got {getattr(self, name)!r}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")

        for name in ("feature_dim", "hidden_dim", "context_dim", "corr_levels", "iters", "psi_layers", "psi_dim",
                     "attention_heads", "psi_heads", "attention_mlp_ratio", "points_per_bone"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                bad(name, "an int >= 1")
        for name in ("corr_radius", "attention_blocks", "background_dilation", "refine_dim"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                bad(name, "an int >= 0")
        if self.feature_dim % self.attention_heads:
            bad("attention_heads", f"a divisor of feature_dim={self.feature_dim}")
        if self.psi_dim % self.psi_heads:
            bad("psi_heads", f"a divisor of psi_dim={self.psi_dim}")
        if self.corr_levels > 8:
            bad("corr_levels", "an int in [1, 8] (level l needs a 1/8 map at least 2**l wide)")
        if self.corr_mode not in _CORR_MODES:
            bad("corr_mode", f"one of {_CORR_MODES}")
        if self.backend not in _BACKENDS:
            bad("backend", f"one of {_BACKENDS}")
        if self.corr_memory_budget is not None and (not is_int(self.corr_memory_budget) or self.corr_memory_budget < 0):
            bad("corr_memory_budget", "an int >= 0 (bytes) or None")
        if not isinstance(self.psi_detach_flow, bool):
            bad("psi_detach_flow", "a bool")
        if not isinstance(self.person_prior, bool):
            bad("person_prior", "a bool")
        if not isinstance(self.prior_skip, bool) or (self.prior_skip and not self.person_prior):
            bad("prior_skip", "a bool, True only with person_prior=True")
        if self.flow_target not in ("world", "full"):
            bad("flow_target", "'world' or 'full'")
        if self.world_gate not in ("soft", "hard"):
            bad("world_gate", "'soft' or 'hard'")
        from .classical import DIS_PRESETS

        if self.flow_init != "none" and self.flow_init not in DIS_PRESETS:
            bad("flow_init", f"'none' or one of {tuple(DIS_PRESETS)}")
        # every loss weight (a field named w_*) is checked here, so a new term needs no edit of this list
        weights = [f.name for f in dataclasses.fields(self) if f.name.startswith("w_")]
        for name in weights + ["intensity_weight", "min_offset"]:
            if not is_num(getattr(self, name)) or getattr(self, name) < 0:
                bad(name, "a finite number >= 0")
        if self.epe_region not in ("body", "all"):
            bad("epe_region", "'body' or 'all'")
        if not is_num(self.gamma) or not 0 < self.gamma <= 1:
            bad("gamma", "a number in (0, 1]")
        if not is_num(self.angle_tol_deg) or not 0 <= self.angle_tol_deg < 180:
            bad("angle_tol_deg", "a number of degrees in [0, 180)")
        mr = self.magnitude_range
        if not (isinstance(mr, tuple) and len(mr) == 2 and all(is_num(v) for v in mr) and 0 <= mr[0] <= mr[1]):
            bad("magnitude_range", "a (low, high) pair with 0 <= low <= high")
        ps = self.patch_sizes
        if not (isinstance(ps, tuple) and ps and all(is_int(p) and p >= 1 for p in ps)):
            bad("patch_sizes", "a non-empty tuple of ints >= 1")
        if self.edge_band is not None and (not is_int(self.edge_band) or self.edge_band < 1):
            bad("edge_band", "an int >= 1 or None")

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "HMoReConfig") -> "HMoReConfig":
        return config_from_dict(cls, d, where)

    def replace(self, **changes) -> "HMoReConfig":
        return config_from_dict(type(self), {**self.to_dict(), **changes}, "HMoReConfig")


def config_from_dict(cls, d: dict, where: str):
    """Build dataclass ``cls`` from ``d``, refusing unknown keys (naming the closest valid one)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a table of keys, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    for k in d:
        if k not in names:
            raise unknown_key_error(k, names, where)
    return cls(**d)
