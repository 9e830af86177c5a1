"""Attention blocks of H-MoRe [ours, docs/method.md]: self-attention on Φ's 1/8 feature maps (with a 2-D
sinusoidal positional encoding), and the cross-attention layers of Ψ (learned subject queries over
1/8 tokens). Attention runs through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels
on GPU), except Ψ's last layer, whose attention weights are returned to pool the flow."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["positional_encoding_2d", "SelfAttentionBlock", "CrossAttentionLayer"]


def positional_encoding_2d(dim: int, h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sinusoidal 2-D encoding ``[h*w, dim]`` (row-major tokens): half the channels encode x, half y,
    each as sin/cos pairs over geometric frequencies (Transformer's 1/10000^(2i/d)). ``dim % 4 == 0``
    gives the full split; other dims are zero-padded."""
    q = dim // 4
    freq = torch.exp(torch.arange(q, device=device, dtype=torch.float32) * (-math.log(10000.0) / max(q, 1)))
    ys = torch.arange(h, device=device, dtype=torch.float32)[:, None].expand(h, w).reshape(-1, 1) * freq
    xs = torch.arange(w, device=device, dtype=torch.float32)[None, :].expand(h, w).reshape(-1, 1) * freq
    pe = torch.cat([xs.sin(), xs.cos(), ys.sin(), ys.cos()], dim=1)
    if pe.shape[1] < dim:
        pe = F.pad(pe, (0, dim - pe.shape[1]))
    return pe.to(dtype)


class _MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: int):
        super().__init__(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block on a feature map: ``[B, C, h, w] -> [B, C, h, w]``.

    The positional encoding is added to the queries and keys only (values stay pure appearance, so the
    features that go into the correlation are not shifted by position)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        # no key bias: it adds q.b to every logit of a row, which the softmax cancels (a parameter with
        # no gradient but rounding noise)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, mlp_ratio)
        # start close to the identity (residual branches scaled down, not zeroed: a zero projection
        # would stop every gradient to the layers before it), so the blocks refine RAFT's features
        # instead of replacing them at initialisation
        with torch.no_grad():
            for lin in (self.out, self.mlp[-1]):
                lin.weight.mul_(0.1)
                lin.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # [B, N, C]
        pe = positional_encoding_2d(C, h, w, x.device, t.dtype)
        y = self.norm1(t)
        q, k = self.q(y + pe), self.k(y + pe)
        v = self.v(y)
        split = lambda z: z.view(B, -1, self.heads, C // self.heads).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(split(q), split(k), split(v))
        t = t + self.out(a.transpose(1, 2).reshape(B, -1, C))
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(B, C, h, w)


class CrossAttentionLayer(nn.Module):
    """Queries ``[B, Q, d]`` attend over tokens ``[B, N, d]`` (pre-norm, residual, then an MLP).

    ``forward(q, tokens, pe, return_weights=False)`` -> ``q`` or ``(q, weights [B, Q, N])`` (weights
    averaged over heads)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_t = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=False)  # see SelfAttentionBlock
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, mlp_ratio)

    def forward(self, q: torch.Tensor, tokens: torch.Tensor, pe: torch.Tensor, return_weights: bool = False):
        B, Q, d = q.shape
        H = self.heads
        t = self.norm_t(tokens)
        split = lambda z: z.view(B, -1, H, d // H).transpose(1, 2)  # noqa: E731
        qq, kk, vv = split(self.q(self.norm_q(q))), split(self.k(t + pe)), split(self.v(t))
        if return_weights:
            # explicit softmax: Q is tiny (one query per subject), and the weights are needed
            wts = torch.softmax(qq @ kk.transpose(-1, -2) / math.sqrt(d // H), dim=-1)  # [B, H, Q, N]
            a = wts @ vv
        else:
            a = F.scaled_dot_product_attention(qq, kk, vv)
        q = q + self.out(a.transpose(1, 2).reshape(B, Q, d))
        q = q + self.mlp(self.norm2(q))
        return (q, wts.mean(1)) if return_weights else q
