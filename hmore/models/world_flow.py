"""Φ, the world-flow network: RAFT-small with self-attention on the 1/8 features of both frames before
the correlation [paper: RAFT-small + 2 self-attention blocks; placement ours, docs/method.md]. The correlation
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

__all__ = ["WorldFlowNet", "coords_grid", "upsample_flow8", "downsample_flow8"]


def coords_grid(B: int, h: int, w: int, device, dtype=torch.float32) -> torch.Tensor:
    """Pixel coordinates ``[B, 2, h, w]``, channel 0 = x (column), 1 = y (row)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return torch.stack([xs, ys]).unsqueeze(0).expand(B, 2, h, w)


def upsample_flow8(flow: torch.Tensor) -> torch.Tensor:
    """RAFT-small's upsampling: bilinear x8 (``align_corners=True``), values x8 (1/8 px -> px)."""
    h, w = flow.shape[-2:]
    return 8 * F.interpolate(flow, size=(8 * h, 8 * w), mode="bilinear", align_corners=True)


def downsample_flow8(flow: torch.Tensor) -> torch.Tensor:
    """``[B, 2, H, W]`` px flow (H, W multiples of 8) -> ``[B, 2, H/8, W/8]`` in 1/8 px: the 8x8 block mean / 8."""
    return F.avg_pool2d(flow, 8) / 8.0


class WorldFlowNet(nn.Module):
    """``forward(image1, image2, iters, keep_iters=False, flow_init=None)`` with images ``[B, 3, H, W]`` in
    [-1, 1], H and W multiples of 8; ``flow_init`` an optional ``[B, 2, H, W]`` px estimate to start from.

    Returns a dict: ``flow_low [B, 2, H/8, W/8]`` (1/8 px), ``flows`` (list of ``iters`` upsampled
    ``[B, 2, H, W]`` px flows; only the last is kept when ``keep_iters`` is False), ``fmap1 [B, D, H/8, W/8]``
    (frame-1 features after attention, for Ψ), ``corr_mode`` (what CorrBlock resolved to).

    With ``flow_init``, the iterations start from its 1/8 block mean and each upsampled flow is
    ``flow_init + up8(flow_low - init_low)``: the correction is learned at 1/8, the estimate keeps its full
    resolution [ours]. ``encode`` + ``decode`` are ``forward`` split so a video encodes each frame once."""

    def __init__(self, cfg: HMoReConfig):
        super().__init__()
        self.cfg = cfg
        self.fnet = SmallEncoder(cfg.feature_dim, norm="instance")
        self.cnet = SmallEncoder(cfg.hidden_dim + cfg.context_dim, norm="none")
        self.attention = nn.ModuleList(SelfAttentionBlock(cfg.feature_dim, cfg.attention_heads, cfg.attention_mlp_ratio)
                                       for _ in range(cfg.attention_blocks))
        corr_planes = cfg.corr_levels * (2 * cfg.corr_radius + 1) ** 2
        self.update = SmallUpdateBlock(corr_planes, cfg.hidden_dim, cfg.context_dim)
        if cfg.flow_init != "none":
            # refining a classical estimate: an untrained network should leave it as it is (the first
            # steps then improve on it instead of first undoing random corrections)
            nn.init.zeros_(self.update.head[-1].weight)
            nn.init.zeros_(self.update.head[-1].bias)

    def encode(self, images: torch.Tensor, context: bool = True) -> dict:
        """Per-frame encodings of ``[N, 3, H, W]`` frames in [-1, 1]: ``fmap [N, D, H/8, W/8]`` (features after
        attention; instance norm and self-attention act per frame, so frames encode independently) and, with
        ``context``, ``net`` and ``inp`` (the context encoder's hidden state and input, used for the frame a
        pair starts from)."""
        fmap = self.fnet(images)
        for blk in self.attention:
            fmap = blk(fmap)
        enc = {"fmap": fmap}
        if context:
            enc.update(self.encode_context(images))
        return enc

    def decode(self, enc1: dict, enc2: dict, iters: int, keep_iters: bool = False,
               flow_init: torch.Tensor | None = None, init_low: torch.Tensor | None = None) -> dict:
        """The refinement iterations from two encodings (``enc1`` with context). ``flow_init`` ``[B, 2, H, W]``
        px (full resolution, see the class docstring) and/or ``init_low`` ``[B, 2, H/8, W/8]`` 1/8 px (the 1/8
        start; by default the block mean of ``flow_init``)."""
        cfg = self.cfg
        fmap1, fmap2 = enc1["fmap"], enc2["fmap"]
        B = fmap1.shape[0]
        # RAFT correlates in float32 whatever the autocast dtype: the dot products over 128 channels
        # are what the lookups interpolate, and bf16 loses the small differences between neighbours
        corr_fn = hk.CorrBlock(fmap1.float(), fmap2.float(), num_levels=cfg.corr_levels, radius=cfg.corr_radius,
                               mode=cfg.corr_mode, backend=cfg.backend, memory_budget=cfg.corr_memory_budget)
        net, inp = enc1["net"], enc1["inp"]
        h, w = fmap1.shape[-2:]
        coords0 = coords_grid(B, h, w, fmap1.device)
        if init_low is None and flow_init is not None:
            init_low = downsample_flow8(flow_init.float())
        coords1 = coords0 if init_low is None else coords0 + init_low

        def full(low):
            if flow_init is None:
                return upsample_flow8(low)
            return flow_init + upsample_flow8(low - init_low)

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
                flows.append(full(coords1 - coords0))
        if not keep_iters:
            flows = [full(coords1 - coords0)]
        return {"flow_low": coords1 - coords0, "flows": flows, "fmap1": fmap1, "corr_mode": corr_fn.mode}

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int, keep_iters: bool = False,
                flow_init: torch.Tensor | None = None) -> dict:
        B = image1.shape[0]
        enc = self.encode(torch.cat([image1, image2], 0), context=False)
        ctx = self.encode_context(image1)
        enc1 = {"fmap": enc["fmap"][:B], **ctx}
        enc2 = {"fmap": enc["fmap"][B:]}
        return self.decode(enc1, enc2, iters, keep_iters, flow_init)

    def encode_context(self, image1: torch.Tensor) -> dict:
        """The context encoder of the frames pairs start from: ``net`` (tanh, the GRU's initial state) and
        ``inp`` (relu, its input), ``[N, hidden_dim | context_dim, H/8, W/8]``."""
        net, inp = self.cnet(image1).split([self.cfg.hidden_dim, self.cfg.context_dim], dim=1)
        return {"net": torch.tanh(net), "inp": torch.relu(inp)}
