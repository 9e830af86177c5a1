"""RAFT-small's update operator: motion encoder, convolutional GRU, flow head (RAFT §3.3, small variant:
one 3x3 ConvGRU, hidden 96, no convex upsampling mask)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallUpdateBlock"]


class SmallMotionEncoder(nn.Module):
    """Correlation taps ``[B, L*(2r+1)^2, h, w]`` and flow ``[B, 2, h, w]`` -> ``[B, 82, h, w]`` (80
    learned channels plus the flow itself, so the GRU always sees the current estimate)."""

    def __init__(self, corr_planes: int):
        super().__init__()
        self.corr = nn.Sequential(nn.Conv2d(corr_planes, 96, 1), nn.ReLU(inplace=True))
        self.flow = nn.Sequential(nn.Conv2d(2, 64, 7, padding=3), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(nn.Conv2d(128, 80, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, corr, flow):
        return torch.cat([self.fuse(torch.cat([self.corr(corr), self.flow(flow)], 1)), flow], 1)


class ConvGRU(nn.Module):
    def __init__(self, hidden: int, inp: int):
        super().__init__()
        self.zr = nn.Conv2d(hidden + inp, 2 * hidden, 3, padding=1)
        self.q = nn.Conv2d(hidden + inp, hidden, 3, padding=1)

    def forward(self, h, x):
        z, r = torch.sigmoid(self.zr(torch.cat([h, x], 1))).chunk(2, dim=1)
        q = torch.tanh(self.q(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


class SmallUpdateBlock(nn.Module):
    """One refinement: ``(hidden [B, Hd, h, w], context [B, C, h, w], corr, flow) -> (hidden, delta_flow)``."""

    def __init__(self, corr_planes: int, hidden_dim: int, context_dim: int):
        super().__init__()
        self.encoder = SmallMotionEncoder(corr_planes)
        self.gru = ConvGRU(hidden_dim, 82 + context_dim)
        self.head = nn.Sequential(nn.Conv2d(hidden_dim, 128, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(128, 2, 3, padding=1))

    def forward(self, net, inp, corr, flow):
        net = self.gru(net, torch.cat([inp, self.encoder(corr, flow)], 1))
        return net, self.head(net)
