"""Spike-activity attention: event activity gates the ANN's frame features.

Choice (measured by the ``no_attention`` ablation): the SNN sees where things moved in the W
event bins just before a frame; regions with spikes get more weight in the ANN's search
features, so a moving target stands out against a static background or static look-alikes.

- Activity map: ``a = avgpool_s( mean_{t∈[t_f−W, t_f)} mean_c S¹_t )`` (B, 1, h, w): the mean
  first-layer spike rate of the SNN branch, pooled to the ANN feature grid (s = 2: first-layer stride 2, ANN stride 4).
- Gate: ``A = σ(conv3×3(log(1 + a/ε)))`` (B, 1, h, w), ε = 0.01 (a gain for sparse rates).
- Gated features: ``F' = F ⊙ (1 + γ·A)`` with a learnable γ (init 1), so no activity leaves
  ``F`` nearly unchanged (the conv bias starts at −3, σ(−3) ≈ 0.05).

The template is taken from ungated features (the target need not move in the first frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SpikeAttention(nn.Module):
    """``F' = F ⊙ (1 + γ·σ(conv(log(1 + pool(rate)/ε))))``."""

    def __init__(self, stride: int, eps: float = 0.01):
        super().__init__()
        self.stride, self.eps = stride, eps
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        nn.init.constant_(self.conv.weight, 0.3)
        nn.init.constant_(self.conv.bias, -3.0)
        self.gamma = nn.Parameter(torch.tensor(1.0))

    def gate(self, spikes: Tensor) -> Tensor:
        """Gate A (B, 1, h, w) from first-layer spikes (W, B, C, H, W) of the bins before the frame."""
        rate = spikes.mean(dim=(0, 2))[:, None]  # (B, 1, H, W)
        a = F.avg_pool2d(rate, self.stride)
        return torch.sigmoid(self.conv(torch.log1p(a / self.eps)))

    def forward(self, features: Tensor, spikes: Tensor) -> Tensor:
        return features * (1.0 + self.gamma * self.gate(spikes))
