"""Fixup: batch-norm-free residual networks (EOQ trains these with int8 updates).

A Fixup basic block (Zhang et al. 2019, docs/explanation/references.md §3)::

    out = relu( x + scale·conv2(relu(conv1(x + b1a) + b1b) + b2a) + b2b )

with scalar biases ``b*`` (init 0) and a scalar multiplier ``scale`` (init 1). Initialization
for ``L`` blocks of ``m = 2`` layers: ``conv1`` He-normal scaled by ``L^(−1/(2m−2)) = L^(−1/2)``,
``conv2`` zero, the classifier zero. The scalars stay float when quantized (like the residual
addition); the convolutions become int8 GEMMs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class FixupBasicBlock(nn.Module):
    """A residual block without batch norm (same channels in and out, stride 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x + self.bias1a) + self.bias1b)
        out = self.conv2(out + self.bias2a)
        return F.relu(x + out * self.scale + self.bias2b)


class BNBasicBlock(nn.Module):
    """The batch-norm counterpart: ``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


def fixup_init(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Apply Fixup initialization to every :class:`FixupBasicBlock` and zero the last Linear."""
    blocks = [m for m in model.modules() if isinstance(m, FixupBasicBlock)]
    n_blocks = max(len(blocks), 1)
    with torch.no_grad():
        for b in blocks:
            w = b.conv1.weight
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            std = math.sqrt(2.0 / fan_in) * n_blocks ** (-0.5)
            w.copy_(torch.randn(w.shape, generator=generator) * std)
            b.conv2.weight.zero_()
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if linears:
            linears[-1].weight.zero_()
            if linears[-1].bias is not None:
                linears[-1].bias.zero_()
    return model
