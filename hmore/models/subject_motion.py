"""Ψ, the subject-motion network [paper: 4 cross-attention layers producing v_s from M_w and the frames;
the rest ours, docs/method.md]: one learned query per subject attends over 1/8-resolution tokens built from
Φ's frame-1 features and the world flow. Outputs ``v_s [B, 2]`` and subject-map logits at 1/8.

v_s is the flow pooled by the last layer's attention weights plus a learned correction (zero at
initialisation): the pooling gives Ψ the right inductive bias (the subject's motion is a weighted mean of
its pixels' motion) and keeps v_s in pixel units from the first step."""
from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttentionLayer, positional_encoding_2d
from .config import HMoReConfig

__all__ = ["SubjectMotionNet", "prior_planes", "PRIOR_CHANNELS"]

FLOW_SCALE = 8.0  # px: flow inputs are divided by this so typical motions are O(1) for the embedding


PRIOR_CHANNELS = 2  # the person prior as the networks see it: (probability x valid, valid)


def prior_planes(prior: torch.Tensor | None, valid: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The person prior as input planes ``[B, 2, H, W]``: (probability where valid else 0, valid as 0/1).

    prior: ``[B, 1, H, W]`` person probability in [0, 1] (bool, uint8 0/1 or float) or None (no prior: the
    frames-only model, both planes 0); valid: ``[B]`` bool (default all True when a prior is given): a
    sample whose segmenter gave nothing usable runs frames-only. ``like`` gives B, H, W, dtype, device."""
    B, _, H, W = like.shape
    if prior is None:
        return like.new_zeros(B, PRIOR_CHANNELS, H, W)
    p = prior.to(like.dtype)
    v = torch.ones(B, device=like.device, dtype=like.dtype) if valid is None else valid.to(like.dtype)
    v = v.view(B, 1, 1, 1)
    return torch.cat([p * v, v.expand(B, 1, H, W)], 1)


class SubjectMotionNet(nn.Module):
    """``forward(fmap1 [B, D, h, w], flow_low [B, 2, h, w] (px of the full image), prior_low=None)`` ->
    ``(v_s [B, 2] px, map_logits [B, 1, h, w])``; ``prior_low`` ``[B, 2, h, w]`` (:func:`prior_planes` at 1/8)
    is required when the config has ``person_prior`` and refused otherwise."""

    def __init__(self, cfg: HMoReConfig):
        super().__init__()
        d = cfg.psi_dim
        self.person_prior = cfg.person_prior
        extra = PRIOR_CHANNELS if cfg.person_prior else 0
        self.embed = nn.Sequential(nn.Conv2d(cfg.feature_dim + 3 + extra, d, 1), nn.GELU(), nn.Conv2d(d, d, 3, padding=1))
        self.query = nn.Parameter(torch.randn(1, d) * 0.02)  # one subject per image
        self.layers = nn.ModuleList(CrossAttentionLayer(d, cfg.psi_heads) for _ in range(cfg.psi_layers))
        self.norm = nn.LayerNorm(d)
        self.correction = nn.Linear(d, 2)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)
        self.pixel = nn.Conv2d(d, d, 3, padding=1)
        self.mask_embed = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.scale = d ** -0.5

    def forward(self, fmap1: torch.Tensor, flow: torch.Tensor, prior_low: torch.Tensor | None = None):
        B, _, h, w = fmap1.shape
        f = flow / FLOW_SCALE
        planes = [fmap1, f.to(fmap1.dtype), f.norm(dim=1, keepdim=True).to(fmap1.dtype)]
        if self.person_prior:
            planes.append(prior_low.to(fmap1.dtype))
        x = self.embed(torch.cat(planes, 1))
        tokens = x.flatten(2).transpose(1, 2)  # [B, N, d]
        pe = positional_encoding_2d(tokens.shape[-1], h, w, x.device, tokens.dtype)
        q = self.query.unsqueeze(0).expand(B, -1, -1).to(tokens.dtype)
        for i, layer in enumerate(self.layers):
            if i == len(self.layers) - 1:
                q, wts = layer(q, tokens, pe, return_weights=True)
            else:
                q = layer(q, tokens, pe)
        q = self.norm(q)
        pooled = torch.einsum("bqn,bcn->bqc", wts.float(), flow.flatten(2).float())  # [B, Q, 2] px
        v_s = pooled + self.correction(q).float()
        pix = self.pixel(x)  # [B, d, h, w]
        logits = torch.einsum("bqd,bdhw->bqhw", self.mask_embed(q), pix) * self.scale
        # one subject per image in this model: the first query is the subject
        return v_s[:, 0], logits[:, :1].float()
