"""The probe's classifiers: one small network per input kind, trained the same way for every representation.

* :class:`FrameCNN` (dense inputs ``[B, T, C, S, S]``): a 2-D CNN applied to every time step (4 conv
  blocks, 16-32-64-64 channels, max-pooled between), a temporal convolution over the per-step features, then mean + max pooling
  over time -> a 64-d embedding -> a linear head.
* :class:`STGCN` (skeletons ``[B, T, 17, 3]``): three spatio-temporal graph-convolution blocks over the
  COCO-17 graph (Yan et al., AAAI 2018, "ST-GCN": a graph convolution with the normalised adjacency, then a
  temporal convolution), 32-64-64 channels, pooled over joints and time -> the same 64-d embedding and head.

:func:`train` fits either on labelled examples with one recipe (AdamW, cosine learning rate, cross-entropy,
``epochs``, batch size, seed); :func:`embed` returns the L2-normalised embeddings, :func:`predict` the
class scores.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FrameCNN", "STGCN", "make_classifier", "prepare_dense", "prepare_skeleton", "train", "embed", "predict",
           "EMBED_DIM"]

EMBED_DIM = 64
FLOW_SCALE = 0.5  # px of the input grid -> network units (flows of a few px)


def prepare_dense(x: np.ndarray, method: str) -> np.ndarray:
    """A dense representation [T, C, S, S] -> the network's input (float32, about unit scale)."""
    x = x.astype(np.float32)
    return (x - 0.5) * 2.0 if method == "rgb" else x / FLOW_SCALE


def prepare_skeleton(sk: np.ndarray, height: int) -> np.ndarray:
    """[T, 17, 3] keypoints (px) + confidence -> [T, 17, 5] (x, y, confidence, dx, dy): centred on the clip's
    mean hip centre and divided by the frame height (keeping the motion across the frame; where a joint is
    not seen, confidence 0, its position is the centre). dx, dy: displacement to the next frame."""
    sk = sk.astype(np.float32)
    xy, c = sk[..., :2], sk[..., 2:3]
    hips = xy[:, 11:13]
    w = c[:, 11:13]
    centre = (hips * w).sum((0, 1)) / max(float(w.sum()), 1e-6) if w.sum() > 0 else np.full(2, height / 2.0, np.float32)
    xy = np.where(c > 0, (xy - centre) / float(height), 0.0)
    d = np.zeros_like(xy)
    both = (c[1:] > 0) & (c[:-1] > 0)
    d[:-1] = np.where(both, xy[1:] - xy[:-1], 0.0) * 10.0
    return np.concatenate([xy * 2.0, c, d], -1).astype(np.float32)


class FrameCNN(nn.Module):
    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(in_ch, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2), block(32, 64),
                                      nn.MaxPool2d(2), block(64, 64), nn.AdaptiveAvgPool2d(1))
        self.temporal = nn.Sequential(nn.Conv1d(64, 64, 3, padding=1), nn.BatchNorm1d(64), nn.ReLU(inplace=True))
        self.embed = nn.Linear(128, EMBED_DIM)
        self.head = nn.Linear(EMBED_DIM, num_classes)

    def embedding(self, x):
        B, T = x.shape[:2]
        f = self.features(x.flatten(0, 1)).flatten(1).view(B, T, -1).transpose(1, 2)  # [B, 64, T]
        f = self.temporal(f)
        return self.embed(torch.cat([f.mean(2), f.amax(2)], 1))

    def forward(self, x):
        return self.head(F.relu(self.embedding(x)))


def coco_adjacency() -> torch.Tensor:
    """Symmetrically normalised adjacency (with self loops) of COCO-17's bones, plus nose-shoulder links
    (COCO's skeleton leaves the head unattached)."""
    from hmore_kernels.layouts import COCO17

    A = torch.eye(17)
    for a, b in tuple(COCO17.bones) + ((0, 5), (0, 6)):
        A[a, b] = A[b, a] = 1.0
    d = A.sum(1).rsqrt()
    return d[:, None] * A * d[None, :]


class _GCNBlock(nn.Module):
    def __init__(self, i, o, A, stride=1):
        super().__init__()
        self.register_buffer("A", A)
        self.gcn = nn.Conv2d(i, o, 1)
        self.tcn = nn.Sequential(nn.BatchNorm2d(o), nn.ReLU(inplace=True), nn.Conv2d(o, o, (5, 1), (stride, 1), (2, 0)),
                                 nn.BatchNorm2d(o))
        self.res = (nn.Identity() if i == o and stride == 1 else
                    nn.Sequential(nn.Conv2d(i, o, 1, (stride, 1)), nn.BatchNorm2d(o)))

    def forward(self, x):  # [B, C, T, V]
        y = torch.einsum("bctv,vw->bctw", self.gcn(x), self.A)
        return F.relu(self.tcn(y) + self.res(x))


class STGCN(nn.Module):
    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()
        A = coco_adjacency()
        self.bn = nn.BatchNorm1d(in_ch * 17)
        self.blocks = nn.Sequential(_GCNBlock(in_ch, 32, A), _GCNBlock(32, 64, A, 2), _GCNBlock(64, 64, A))
        self.embed = nn.Linear(128, EMBED_DIM)
        self.head = nn.Linear(EMBED_DIM, num_classes)

    def embedding(self, x):  # [B, T, V, C]
        B, T, V, C = x.shape
        x = self.bn(x.permute(0, 2, 3, 1).reshape(B, V * C, T)).view(B, V, C, T).permute(0, 2, 3, 1)  # [B, C, T, V]
        f = self.blocks(x)
        return self.embed(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))

    def forward(self, x):
        return self.head(F.relu(self.embedding(x)))


def make_classifier(kind: str, in_ch: int, num_classes: int) -> nn.Module:
    if kind == "dense":
        return FrameCNN(in_ch, num_classes)
    if kind == "skeleton":
        return STGCN(in_ch, num_classes)
    raise ValueError(f"kind: expected 'dense' or 'skeleton', got {kind!r}")


def train(kind: str, x: np.ndarray, y: np.ndarray, num_classes: int, *, epochs: int, batch_size: int, lr: float,
          seed: int, device: str = "cpu", progress=None) -> nn.Module:
    """Fit a classifier of ``kind`` on ``x [N, ...]`` with labels ``y [N]`` in [0, num_classes)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, np.int64))
    in_ch = xt.shape[2] if kind == "dense" else xt.shape[-1]
    model = make_classifier(kind, in_ch, num_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    n = len(xt)
    steps = epochs * max(1, -(-n // batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs two examples
                continue
            loss = F.cross_entropy(model(xt[idx].to(device)), yt[idx].to(device), label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress()
    return model.eval()


@torch.no_grad()
def _batched(fn, x: np.ndarray, device: str, bs: int = 64) -> np.ndarray:
    xt = torch.from_numpy(np.ascontiguousarray(x))
    return torch.cat([fn(xt[i:i + bs].to(device)).float().cpu() for i in range(0, len(xt), bs)]).numpy()


def predict(model: nn.Module, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Class scores [N, classes]."""
    return _batched(model.eval(), x, device)


def embed(model: nn.Module, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """L2-normalised embeddings [N, EMBED_DIM]."""
    e = _batched(model.eval().embedding, x, device)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
