"""Spike-activity attention: event activity weights the ANN's frame evidence (a motion prior).

Choice (measured by the ``no_attention`` ablation): the SNN sees where things moved in the W
event bins just before a frame; regions with spikes get more weight in the ANN's search, so a
moving target stands out against a static background or static look-alikes.

- Activity map: ``a = avgpool_s( mean_{t∈[t_f−W, t_f)} mean_c S¹_t )`` (B, 1, h, w): the mean
  first-layer spike rate of the SNN branch, pooled to the ANN feature grid (s = 2: first-layer stride 2, ANN stride 4).
- Gate: ``A = σ(conv3×3(log(1 + a/ε)))`` (B, 1, h, w), ε = 0.01 (a gain for sparse rates).
- Where the gate acts (``ModelConfig.attention``):

  - ``"response"`` (default): on the ANN's response map, ``R' = R + γ·A`` (γ learnable, init
    2). The soft-argmax weights become ``softmax(R') ∝ exp(R)·exp(γA)``: appearance evidence
    (the frame) times a motion prior (the events), so of two look-alikes the one that moved wins.
  - ``"features"`` (the first design): ``F' = F ⊙ (1 + γ·A)`` (γ init 1). The correlation is
    *normalized* (NCC), so a gain that is nearly constant over a k×k patch cancels out; this
    form can only act at the edges of the active region, and measured ±0 AUC.

The template is taken from ungated features (the target need not move in the first frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SpikeAttention(nn.Module):
    """``R' = R + γ·A`` (``mode="response"``) or ``F' = F ⊙ (1 + γ·A)`` (``mode="features"``),
    ``A = σ(conv(log(1 + pool(rate)/ε)))``."""

    def __init__(self, stride: int, eps: float = 0.01, mode: str = "response"):
        super().__init__()
        self.stride, self.eps, self.mode = stride, eps, mode
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        nn.init.constant_(self.conv.weight, 0.3)
        nn.init.constant_(self.conv.bias, -3.0)
        self.gamma = nn.Parameter(torch.tensor(2.0 if mode == "response" else 1.0))

    def gate(self, spikes: Tensor) -> Tensor:
        """Gate A (B, 1, h, w) from first-layer spikes (W, B, C, H, W) of the bins before the frame."""
        rate = spikes.mean(dim=(0, 2))[:, None]  # (B, 1, H, W)
        a = F.avg_pool2d(rate, self.stride)
        return torch.sigmoid(self.conv(torch.log1p(a / self.eps)))

    def forward(self, features: Tensor, spikes: Tensor) -> Tensor:
        """Gated features (``mode="features"``; unchanged features in ``"response"`` mode)."""
        if self.mode != "features":
            return features
        return features * (1.0 + self.gamma * self.gate(spikes))

    def response(self, response: Tensor, spikes: Tensor) -> Tensor:
        """Response (B, h, w) with the motion prior added (``mode="response"``; unchanged otherwise)."""
        if self.mode != "response":
            return response
        return response + self.gamma * self.gate(spikes)[:, 0]
