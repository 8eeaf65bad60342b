"""Template extraction and correlation: the response map of a tracking branch.

Shapes: features ``F`` (B, C, h, w) on a grid of stride ``s`` search pixels (cell ``(i, j)``
is centred at pixel ``(s·j + (s−1)/2, s·i + (s−1)/2)``); boxes (B, 4) xywh in search pixels.

- Template: ``Z = bilinear(F, grid)`` sampled on a k×k grid spanning the target box
  (k = ``template_size``, default 3): ``Z`` (B, C, k, k). Sampling is differentiable.
- Response: per-sample normalized cross-correlation of F with Z (zero padding k//2, so
  ``R`` (B, h, w) has the feature grid's shape) times a learnable gain (see Correlation).
- Position: soft-argmax ``p = Σ_ij softmax(R/τ)_ij · c_ij`` (c_ij: cell centres, pixels).
- Label for training: a Gaussian soft label ``G_ij ∝ exp(−|c_ij − p*|² / 2σ²)`` (σ = one
  cell) at the true centre p*; loss = cross entropy between ``softmax(R)`` and ``G``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cell_centers(h: int, w: int, stride: int, device=None) -> tuple[Tensor, Tensor]:
    """Pixel coordinates (x (w,), y (h,)) of the centres of an h×w feature grid."""
    off = (stride - 1) / 2.0
    xs = torch.arange(w, device=device, dtype=torch.float32) * stride + off
    ys = torch.arange(h, device=device, dtype=torch.float32) * stride + off
    return xs, ys


def sample_template(features: Tensor, boxes: Tensor, stride: int, k: int = 3) -> Tensor:
    """Bilinear k×k samples of ``features`` (B, C, h, w) across ``boxes`` (B, 4) → (B, C, k, k)."""
    b, _, h, w = features.shape
    frac = (torch.arange(k, device=features.device, dtype=features.dtype) + 0.5) / k
    px = boxes[:, 0:1] + frac[None] * boxes[:, 2:3] - 0.5  # pixel centres of the k columns
    py = boxes[:, 1:2] + frac[None] * boxes[:, 3:4] - 0.5
    off = (stride - 1) / 2.0
    # pixel → normalized [-1, 1] coordinates of the feature grid (align_corners=True on cells)
    gx = ((px - off) / stride) / max(w - 1, 1) * 2 - 1
    gy = ((py - off) / stride) / max(h - 1, 1) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=True)


def correlate(features: Tensor, template: Tensor) -> Tensor:
    """Per-sample cross-correlation of (..., C, h, w) with (..., C, k, k) → (..., h, w).

    Leading dimensions broadcast (e.g. features (T, B, C, h, w) with one template (B, C, k, k)
    per sequence). Computed as the sum of k² shifted products — for k = 3 and few channels this
    is much faster on CPU than a grouped convolution."""
    c, h, w = features.shape[-3:]
    k = template.shape[-1]
    p = k // 2
    fp = F.pad(features, (p, p, p, p))
    out = None
    for i in range(k):
        for j in range(k):
            term = (fp[..., i : i + h, j : j + w] * template[..., i, j, None, None]).sum(-3)
            out = term if out is None else out + term
    return out / (c * k * k)


def soft_argmax(response: Tensor, stride: int, temperature: float = 1.0) -> Tensor:
    """Expected cell centre under ``softmax(response/τ)``: (..., h, w) → (..., 2) pixels (x, y)."""
    h, w = response.shape[-2:]
    xs, ys = cell_centers(h, w, stride, response.device)
    p = torch.softmax(response.flatten(-2) / temperature, dim=-1).unflatten(-1, (h, w))
    return torch.stack([(p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)], dim=-1)


def response_loss(response: Tensor, centers: Tensor, stride: int, valid: Tensor | None = None) -> Tensor:
    """Cross entropy of ``softmax(response)`` (..., h, w) against Gaussian labels at ``centers`` (..., 2)."""
    h, w = response.shape[-2:]
    xs, ys = cell_centers(h, w, stride, response.device)
    d2 = (xs - centers[..., 0:1]).pow(2)[..., None, :] + (ys - centers[..., 1:2]).pow(2)[..., :, None]
    label = torch.softmax(-d2.flatten(-2) / (2.0 * stride**2), dim=-1)
    ce = -(label * torch.log_softmax(response.flatten(-2), dim=-1)).sum(-1)
    if valid is not None:
        return (ce * valid).sum() / valid.sum().clamp(min=1)
    return ce.mean()


def normalized_correlate(features: Tensor, template: Tensor, eps: float = 1e-3) -> Tensor:
    """Normalized cross-correlation (NCC) in [−1, 1] of (..., C, h, w) with (..., C, k, k).

    ``NCC(p) = Σ (F_p − μ_p)(Z − μ_Z) / (‖F_p − μ_p‖ ‖Z − μ_Z‖ + ε)`` where ``F_p`` is the
    C×k×k patch at p (zero padded) and μ are means over the patch. Since Σ(Z − μ_Z) = 0 the
    numerator is ``correlate(F, Z − μ_Z)``; the patch energies come from box sums of F and F²."""
    c, h, w = features.shape[-3:]
    k = template.shape[-1]
    n = c * k * k
    z0 = template - template.mean(dim=(-3, -2, -1), keepdim=True)
    num = correlate(features, z0) * n
    lead = features.shape[:-3]
    f = features.reshape(-1, c, h, w)
    s1 = F.avg_pool2d(f.sum(1, keepdim=True), k, 1, k // 2, count_include_pad=True) * (k * k)
    s2 = F.avg_pool2d((f * f).sum(1, keepdim=True), k, 1, k // 2, count_include_pad=True) * (k * k)
    energy = (s2 - s1 * s1 / n).clamp(min=0).reshape(*lead, h, w)
    znorm = (z0.pow(2).sum(dim=(-3, -2, -1)) + eps**2).sqrt()[..., None, None]
    return num / ((energy + eps**2).sqrt() * znorm + eps)


class Correlation(nn.Module):
    """Response map ``R = g · NCC(F, Z)`` with a learnable gain ``g`` (init 10, a softmax
    temperature). NCC matches patterns rather than brightness (an untrained network already
    finds its template), and a flat map (e.g. no spikes) gives R = 0; a bias would be useless
    as soft-argmax and loss ignore constant shifts."""

    def __init__(self, gain: float = 10.0):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(float(gain)))

    def forward(self, features: Tensor, template: Tensor) -> Tensor:
        return self.gain * normalized_correlate(features, template)
