"""Synthetic-shape segmentation: the 8-bit segmentation recipe (L1 batch norm) on known masks.

Each image (H×W, one channel) holds a disc (class 1, intensity 1.0) and a square (class 2,
intensity 0.55) on a background of 0 (class 0), all with Gaussian noise of standard deviation
``noise``; the masks are known exactly. A small fully-convolutional network (3×3 convs with
batch norm, a 1×1 classifier) is trained pixel-wise with cross-entropy; the score is the mean
intersection-over-union over the three classes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from neurosim.quant.convert import quantize_model
from neurosim.quant.optim import make_optimizer


def make_shapes(n: int, size: int = 16, noise: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (n, 1, size, size) float32, masks (n, size, size) int64)``, vectorized over images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r = rng.uniform(2.0, size / 5, n)
    cx, cy = rng.uniform(r + 0.5, size - r - 0.5), rng.uniform(r + 0.5, size - r - 0.5)
    disc = (xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2 <= r[:, None, None] ** 2
    half = rng.integers(2, size // 5 + 1, n)
    sx, sy = rng.integers(half, size - half), rng.integers(half, size - half)
    square = (np.abs(xx[None] - sx[:, None, None]) < half[:, None, None]) & (np.abs(yy[None] - sy[:, None, None]) < half[:, None, None])
    mask = np.zeros((n, size, size), np.int64)
    mask[square] = 2
    mask[disc] = 1  # the disc is drawn on top
    img = np.where(mask == 1, 1.0, np.where(mask == 2, 0.55, 0.0)) + rng.normal(0.0, noise, mask.shape)
    return torch.tensor(img[:, None], dtype=torch.float32), torch.tensor(mask)


def fcn(width: int = 16) -> nn.Sequential:
    """conv3×3-BN-ReLU ×3, then a 1×1 conv to 3 classes (fully convolutional)."""
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        nn.Conv2d(w, 3, 1),
    )


def miou(pred: torch.Tensor, mask: torch.Tensor, classes: int = 3) -> float:
    """Mean IoU in percent over ``classes`` (a class absent from both counts as IoU 1)."""
    ious = []
    for c in range(classes):
        p, m = pred == c, mask == c
        union = int((p | m).sum())
        ious.append(1.0 if union == 0 else int((p & m).sum()) / union)
    return 100.0 * float(np.mean(ious))


def train_segmentation(scheme: str, epochs: int = 6, batch_size: int = 16, lr: float = 16.0, float_lr: float = 0.5,
                       n_train: int = 512, n_test: int = 256, seed: int = 0) -> dict:
    """Train :func:`fcn` on synthetic shapes with ``scheme``; returns ``{"scheme", "miou", ...}``."""
    xtr, ytr = make_shapes(n_train, seed=1000 + seed)
    xte, yte = make_shapes(n_test, seed=999)
    torch.manual_seed(seed)
    model = quantize_model(fcn(), scheme)
    opt = make_optimizer(model, scheme, lr=lr, float_lr=float_lr)
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        factor = 1.0 if 2 * ep < epochs else (0.25 if 4 * ep < 3 * epochs else 0.0625)
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * factor
        model.train()
        perm = torch.randperm(n_train, generator=gen)
        for i in range(0, n_train - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(xte).argmax(1)
    return {"scheme": getattr(model, "quant_scheme").name, "miou": miou(pred, yte), "epochs": epochs, "seed": seed}
