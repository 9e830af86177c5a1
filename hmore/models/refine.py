"""The full-resolution refinement head [ours, ``HMoReConfig.refine_dim``]: Φ works at 1/8 and upsamples
bilinearly, Ψ's subject map is a 1/8 dot product, so both blur a silhouette over ~8 px, exactly where world
flow must go from the body's motion to 0. A few dilated convolutions at full resolution look at the frame,
the photometric residual of the current flow (frame 2 warped back by it, minus frame 1: large where the flow
is wrong, e.g. where the background's motion bled onto the body), the flow, the person prior and the map,
and output a correction of the flow and of the map's logits. The output layer starts at zero, so an
untrained head changes nothing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .subject_motion import PRIOR_CHANNELS

__all__ = ["RefineHead", "backward_warp"]

FLOW_SCALE = 8.0  # px: flow inputs divided by this, as Ψ does


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image [B, C, H, W]`` sampled at ``p + flow(p)`` (bilinear, borders replicated): frame 2 brought back
    to frame 1 by a forward flow ``[B, 2, H, W]`` px."""
    B, _, H, W = flow.shape
    ys, xs = torch.meshgrid(torch.arange(H, device=flow.device, dtype=flow.dtype),
                            torch.arange(W, device=flow.device, dtype=flow.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(W - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(H - 1, 1)) - 1.0
    return F.grid_sample(image, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=True)


class RefineHead(nn.Module):
    """``forward(image1, image2 [B, 3, H, W] in [-1, 1], flow [B, 2, H, W] px, logits [B, 1, H, W],
    prior [B, 2, H, W] | None)`` -> ``(flow + d_flow, logits + d_logits)``.

    Inputs (detached: the head corrects, it does not steer Φ through them): frame 1, the photometric
    residual ``warp(frame 2, flow) - frame 1``, ``flow / 8``, the map's logits, the prior planes (when the
    model has a prior). Layers: 3x3 convs with dilations 1, 2, 4, 8, 1 (receptive field 33 px), ReLU, ``dim``
    channels; the last (to 3 channels) is zero-initialised."""

    def __init__(self, dim: int, person_prior: bool):
        super().__init__()
        cin = 3 + 3 + 2 + 1 + (PRIOR_CHANNELS if person_prior else 0)
        layers, c = [], cin
        for dil in (1, 2, 4, 8, 1):
            layers += [nn.Conv2d(c, dim, 3, padding=dil, dilation=dil), nn.ReLU(inplace=True)]
            c = dim
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(dim, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.person_prior = person_prior

    def forward(self, image1, image2, flow, logits, prior=None):
        f = flow.detach()
        planes = [image1, backward_warp(image2, f) - image1, f / FLOW_SCALE, logits.detach()]
        if self.person_prior:
            planes.append(prior)
        d = self.out(self.body(torch.cat(planes, 1)))
        return flow + d[:, :2], logits + d[:, 2:]
