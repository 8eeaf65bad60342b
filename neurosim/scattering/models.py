"""LISMU-FCN and LISMU-OCN: speckle (B, 1, 32, 32) → object (B, 1, 32, 32) in (0, 1).

Both are a ``body`` (restored and frozen in transfer) and a ``head`` (the layers fine-tuned
with few samples; an ``nn.Sequential`` that :func:`neurosim.quant.quantize_model` converts and
:func:`neurosim.quant.to_integer` exports), followed by a sigmoid.

- :class:`LismuFCN` (few parameters): fully connected, ``1024 → hidden`` (ReLU, dropout) as the
  body and ``hidden → 1024`` as the head.
- :class:`LismuOCN`: a U-Net body (``widths`` per level, two 3×3 conv + BN + ReLU per level,
  max-pool down, transposed-conv up, skip concatenation, dropout at the bottleneck) and
  LISMU's fine-tuning head: conv 3×3 ``head_channels`` + ReLU, 2×2 max-pool, FC → 1024.

The published OCN uses widths 64-512 and a 64-channel head conv; the defaults here are 1/8 of
that (8-64, head 8) so that training runs in minutes on two CPU cores (docs: the explanation
page). The 2×2 pool before the FC is ours: an FC from 64×32×32 features would alone hold
67 M weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn

ARCHS = ("fcn", "ocn")


class LismuFCN(nn.Module):
    """Fully connected LISMU network; ``hidden`` units, ``dropout`` after the hidden layer."""

    def __init__(self, size: int = 32, hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        n = size * size
        self.size = size
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Sequential(nn.Linear(hidden, n))

    def logits(self, speckle: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output (B, 1, S, S)."""
        return self.head(self.body(speckle)).reshape(-1, 1, self.size, self.size)

    def forward(self, speckle: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(speckle))


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class UNet(nn.Module):
    """U-Net body: (B, 1, S, S) → (B, widths[0], S, S); S divisible by 2^(len(widths) − 1)."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64), dropout: float = 0.1):
        super().__init__()
        self.down = nn.ModuleList(_double_conv(cin, cout) for cin, cout in zip((1, *widths[:-1]), widths))
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(dropout)
        rev = widths[::-1]
        self.up = nn.ModuleList(nn.ConvTranspose2d(a, b, 2, stride=2) for a, b in zip(rev, rev[1:]))
        self.merge = nn.ModuleList(_double_conv(2 * b, b) for b in rev[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.drop(skips.pop())
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return x


class LismuOCN(nn.Module):
    """U-Net body + LISMU's fine-tuning head (conv, pool, FC → S², sigmoid)."""

    def __init__(self, size: int = 32, widths: tuple[int, ...] = (8, 16, 32, 64), head_channels: int = 8,
                 dropout: float = 0.1):
        super().__init__()
        self.size = size
        self.body = UNet(tuple(widths), dropout)
        self.head = nn.Sequential(
            nn.Conv2d(widths[0], head_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(head_channels * (size // 2) ** 2, size * size),
        )

    def logits(self, speckle: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output (B, 1, S, S)."""
        return self.head(self.body(speckle)).reshape(-1, 1, self.size, self.size)

    def forward(self, speckle: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(speckle))


def build_model(arch: str, size: int = 32, hidden: int = 512, widths: tuple[int, ...] = (8, 16, 32, 64),
                head_channels: int = 8, dropout: float = 0.1) -> nn.Module:
    """A LISMU network by name (``fcn`` or ``ocn``)."""
    from neurosim.errors import ParameterError

    if arch == "fcn":
        return LismuFCN(size, hidden, dropout)
    if arch == "ocn":
        if size % 2 ** (len(widths) - 1):
            raise ParameterError(f"size {size} is not divisible by 2^{len(widths) - 1} for {len(widths)} U-Net levels: "
                                 "use fewer widths or another size")
        return LismuOCN(size, tuple(widths), head_channels, dropout)
    raise ParameterError(f"arch {arch!r} is unknown: use one of {', '.join(ARCHS)}")


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in module.parameters())
