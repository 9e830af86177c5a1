"""RAFT-small's feature and context encoders: a 7x7 stride-2 stem, three stages of residual bottleneck
blocks (32, 64, 96 channels; the last two stride 2), a 1x1 projection: ``[B, 3, H, W] -> [B, C, H/8, W/8]``
for H, W multiples of 8 (Teed & Deng, RAFT, ECCV 2020, §3 and its small variant)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallEncoder"]


def _norm(kind: str, channels: int) -> nn.Module:
    # RAFT-small: instance norm in the feature encoder (matching across frames wants per-image
    # statistics), none in the context encoder (its features feed the GRU as they are)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm: expected 'instance', 'batch' or 'none', got {kind!r}")


def _conv(cin: int, cout: int, k: int, norm: str, stride: int = 1) -> nn.Conv2d:
    # no bias before a normalisation: the norm removes any per-channel constant, so a bias there would
    # be a parameter whose gradient is pure rounding noise
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=norm == "none")


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with a quarter of the channels inside, plus a (projected) skip."""

    def __init__(self, cin: int, cout: int, norm: str, stride: int = 1):
        super().__init__()
        mid = cout // 4
        self.body = nn.Sequential(
            _conv(cin, mid, 1, norm), _norm(norm, mid), nn.ReLU(inplace=True),
            _conv(mid, mid, 3, norm, stride), _norm(norm, mid), nn.ReLU(inplace=True),
            _conv(mid, cout, 1, norm), _norm(norm, cout), nn.ReLU(inplace=True),
        )
        self.skip = (nn.Identity() if stride == 1 and cin == cout
                     else nn.Sequential(_conv(cin, cout, 1, norm, stride), _norm(norm, cout)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.skip(x) + self.body(x))


class SmallEncoder(nn.Module):
    """``[B, 3, H, W]`` (normalised to [-1, 1]) -> ``[B, out_dim, H/8, W/8]``; H, W multiples of 8."""

    def __init__(self, out_dim: int, norm: str = "instance", widths=(32, 64, 96)):
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(_conv(3, w1, 7, norm, 2), _norm(norm, w1), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(
            Bottleneck(w1, w1, norm, 1), Bottleneck(w1, w1, norm, 1),
            Bottleneck(w1, w2, norm, 2), Bottleneck(w2, w2, norm, 1),
            Bottleneck(w2, w3, norm, 2), Bottleneck(w3, w3, norm, 1),
        )
        self.proj = nn.Conv2d(w3, out_dim, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stages(self.stem(x)))
