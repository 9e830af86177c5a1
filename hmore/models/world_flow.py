"""Φ, the world-flow network: RAFT-small with self-attention on the 1/8 features of both frames before
the correlation [paper: RAFT-small + 2 self-attention blocks; placement ours, method.md]. The correlation
goes through :class:`hmore_kernels.CorrBlock`, so ``backend=`` and the memory-free mode reach it."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import hmore_kernels as hk

from .attention import SelfAttentionBlock
from .config import HMoReConfig
from .encoders import SmallEncoder
from .update import SmallUpdateBlock

__all__ = ["WorldFlowNet", "coords_grid", "upsample_flow8"]


def coords_grid(B: int, h: int, w: int, device, dtype=torch.float32) -> torch.Tensor:
    """Pixel coordinates ``[B, 2, h, w]``, channel 0 = x (column), 1 = y (row)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0).expand(B, 2, h, w)


def upsample_flow8(flow: torch.Tensor) -> torch.Tensor:
    """RAFT-small's upsampling: bilinear x8 (``align_corners=True``), values x8 (1/8 px -> px)."""
    h, w = flow.shape[-2:]
    return 8 * F.interpolate(flow, size=(8 * h, 8 * w), mode="bilinear", align_corners=True)


class WorldFlowNet(nn.Module):
    """``forward(image1, image2, iters)`` with images ``[B, 3, H, W]`` in [-1, 1], H and W multiples of 8.

    Returns a dict: ``flow_low [B, 2, H/8, W/8]`` (1/8 px), ``flows`` (list of ``iters`` upsampled
    ``[B, 2, H, W]`` px flows; only the last is kept when ``keep_iters`` is False), ``fmap1 [B, D, H/8, W/8]``
    (frame-1 features after attention, for Ψ), ``corr_mode`` (what CorrBlock resolved to)."""

    def __init__(self, cfg: HMoReConfig):
        super().__init__()
        self.cfg = cfg
        self.fnet = SmallEncoder(cfg.feature_dim, norm="instance")
        self.cnet = SmallEncoder(cfg.hidden_dim + cfg.context_dim, norm="none")
        self.attention = nn.ModuleList(SelfAttentionBlock(cfg.feature_dim, cfg.attention_heads, cfg.attention_mlp_ratio)
                                       for _ in range(cfg.attention_blocks))
        corr_planes = cfg.corr_levels * (2 * cfg.corr_radius + 1) ** 2
        self.update = SmallUpdateBlock(corr_planes, cfg.hidden_dim, cfg.context_dim)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int, keep_iters: bool = False,
                flow_init: torch.Tensor | None = None) -> dict:
        cfg = self.cfg
        B = image1.shape[0]
        fmaps = self.fnet(torch.cat([image1, image2], 0))
        for blk in self.attention:
            fmaps = blk(fmaps)
        fmap1, fmap2 = fmaps[:B], fmaps[B:]
        # RAFT correlates in float32 whatever the autocast dtype: the dot products over 128 channels
        # are what the lookups interpolate, and bf16 loses the small differences between neighbours
        corr_fn = hk.CorrBlock(fmap1.float(), fmap2.float(), num_levels=cfg.corr_levels, radius=cfg.corr_radius,
                               mode=cfg.corr_mode, backend=cfg.backend, memory_budget=cfg.corr_memory_budget)
        net, inp = self.cnet(image1).split([cfg.hidden_dim, cfg.context_dim], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        h, w = fmap1.shape[-2:]
        coords0 = coords_grid(B, h, w, image1.device)
        coords1 = coords0 if flow_init is None else coords0 + flow_init
        flows = []
        for _ in range(iters):
            # RAFT detaches the coordinates the lookup uses: gradients flow through the update, not
            # through the sampling positions (which would make the iterations unstable)
            coords1 = coords1.detach()
            corr = corr_fn(coords1)
            flow = coords1 - coords0
            net, delta = self.update(net, inp, corr.to(net.dtype), flow.to(net.dtype))
            coords1 = coords1 + delta.float()
            if keep_iters:
                flows.append(upsample_flow8(coords1 - coords0))
        if not keep_iters or iters == 0:
            flows = [upsample_flow8(coords1 - coords0)]
        return {"flow_low": coords1 - coords0, "flows": flows, "fmap1": fmap1, "corr_mode": corr_fn.mode}
