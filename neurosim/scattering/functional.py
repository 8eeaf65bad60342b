"""Pure functions of scattering imaging: the balance loss, weight regularisation, image metrics.

Shapes: predictions and targets are (B, H, W) or (B, 1, H, W) tensors/arrays in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SOBEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
SMOOTHNESS_KERNELS = (SOBEL, tuple(zip(*SOBEL)), LAPLACIAN)
"""Sobel, Sobelᵀ and the 4-neighbour Laplacian: the kernels of the balance loss."""


def smoothness(prediction: torch.Tensor) -> torch.Tensor:
    """Σ_k ‖k ∗ ŷ‖² per image, averaged over the batch (zero padding, 'same' size).

    ``prediction`` (B, H, W) or (B, 1, H, W); a scalar tensor.
    """
    y = prediction.reshape(-1, 1, *prediction.shape[-2:])
    kernels = torch.tensor(SMOOTHNESS_KERNELS, dtype=y.dtype, device=y.device)[:, None]
    edges = F.conv2d(y, kernels, padding=1)  # cross-correlation; the squared norm is the same
    return edges.pow(2).sum(dim=(1, 2, 3)).mean()


def balance_loss(prediction: torch.Tensor, target: torch.Tensor, smooth_weight: float = 0.008) -> torch.Tensor:
    """LISMU's balance loss ``1024·MSE + λ_s·Σ_k ‖k ∗ ŷ‖²`` (batch mean).

    The MSE is the mean over the pixels of an image (1024·MSE is the per-image sum of
    squares for 32×32 images), then over the batch; λ_s = ``smooth_weight`` trades
    smoothness (large) against sharpness (0; LISMU's fine-tuning).
    """
    mse = (prediction.reshape(target.shape) - target).pow(2).mean()
    loss = 1024.0 * mse
    if smooth_weight:
        loss = loss + smooth_weight * smoothness(prediction)
    return loss


def weight_penalty(module: torch.nn.Module, l1: float = 0.0, l2: float = 0.0, trainable_only: bool = True) -> torch.Tensor:
    """``l1·Σ|w| + l2·Σw²`` over the weight tensors (dim ≥ 2: conv and linear weights, no
    biases or batch-norm parameters) of ``module``; frozen ones left out when ``trainable_only``."""
    total = torch.zeros(())
    for p in module.parameters():
        if p.dim() < 2 or (trainable_only and not p.requires_grad):
            continue
        if l1:
            total = total + l1 * p.abs().sum()
        if l2:
            total = total + l2 * p.pow(2).sum()
    return total


def psnr(prediction: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio per image, dB: ``10·log10(range² / MSE)`` (inf where MSE = 0). (B,)"""
    p, t = _pair(prediction, target)
    mse = ((p - t) ** 2).mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def ssim(prediction: np.ndarray, target: np.ndarray, data_range: float = 1.0, window: int = 7) -> np.ndarray:
    """Structural similarity per image (Wang et al. 2004), (B,).

    Local statistics over ``window``×``window`` uniform windows (valid positions only), sample
    covariances (÷ n − 1), C1 = (0.01·L)², C2 = (0.03·L)²: scikit-image's ``structural_similarity``
    defaults for ``data_range = L``. SSIM = mean over windows of
    ``(2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))``.
    """
    p, t = _pair(prediction, target)
    n = window * window
    mean = lambda a: _box_mean(a, window)  # noqa: E731
    mx, my = mean(p), mean(t)
    cov = n / (n - 1.0)
    vx, vy = cov * (mean(p * p) - mx * mx), cov * (mean(t * t) - my * my)
    vxy = cov * (mean(p * t) - mx * my)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(axis=(1, 2))


def _box_mean(a: np.ndarray, w: int) -> np.ndarray:
    """Mean over every valid w×w window of each (H, W) image of a (B, H, W) stack."""
    c = np.cumsum(np.cumsum(np.pad(a, ((0, 0), (1, 0), (1, 0))), axis=1), axis=2)
    s = c[:, w:, w:] - c[:, :-w, w:] - c[:, w:, :-w] + c[:, :-w, :-w]
    return s / (w * w)


def pearson(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson correlation coefficient of each image pair over its pixels, (B,) (0 for a constant image)."""
    p, t = _pair(prediction, target)
    p = p.reshape(len(p), -1) - p.reshape(len(p), -1).mean(1, keepdims=True)
    t = t.reshape(len(t), -1) - t.reshape(len(t), -1).mean(1, keepdims=True)
    den = np.sqrt((p * p).sum(1) * (t * t).sum(1))
    return np.where(den > 0, (p * t).sum(1) / np.where(den > 0, den, 1.0), 0.0)


def quality(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB), SSIM and Pearson r over a batch of reconstructions."""
    return {"psnr": float(np.mean(psnr(prediction, target))), "ssim": float(np.mean(ssim(prediction, target))),
            "pearson": float(np.mean(pearson(prediction, target)))}


def _pair(prediction, target) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prediction, np.float64)
    t = np.asarray(target, np.float64)
    p = p.reshape(-1, *p.shape[-2:])
    t = t.reshape(-1, *t.shape[-2:])
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
    return p, t
