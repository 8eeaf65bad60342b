"""Small training recipes on real data: scikit-learn's bundled handwritten digits (8×8).

Used by the ``neurosim quant train-digits`` verb, the tests and the benchmark. The digits
(1797 images, 16 grey levels, shipped inside scikit-learn: no download) are split once with a
fixed permutation (seed 0) into 1197 training and 600 test images; pixels are scaled to
[0, 1]. The same network is trained in float (torch SGD, momentum 0.9) and with a scheme
(:class:`~neurosim.quant.optim.QuantSGD`), with the same data order for the same seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from neurosim.errors import ParameterError
from neurosim.quant.convert import quantize_model
from neurosim.quant.fixup import BNBasicBlock, FixupBasicBlock, fixup_init
from neurosim.quant.optim import default_lr, make_optimizer
from neurosim.quant.scheme import get_scheme


@dataclasses.dataclass
class DigitsParams:
    """Parameters of ``neurosim quant train-digits``."""

    scheme: str = "eoq"
    arch: str = "cnn"  # cnn | cnn-bn | fixup | resnet-bn
    width: int = 16
    epochs: int = 12
    batch_size: int = 16
    lr: float | None = None  # QuantSGD; None: default_lr(scheme)
    float_lr: float = 0.05  # torch SGD for fp32
    seed: int = 0
    train_images: int = 0  # 0: all 1197 training images; fewer for a quick run

    def check(self) -> "DigitsParams":
        """Raise ParameterError naming the first number out of :data:`DIGITS_RANGES`."""
        from neurosim.config import check_range

        for name, (low, high, low_open) in DIGITS_RANGES.items():
            value = getattr(self, name)
            if value is not None:
                check_range(name, value, low, high, low_open=low_open,
                            why="to go past the upper bound edit DIGITS_RANGES in neurosim/quant/train.py")
        return self


# (low, high, low excluded) of each DigitsParams number; far past any useful digits run.
DIGITS_RANGES: dict[str, tuple[float, float, bool]] = {
    "width": (1, 1024, False), "epochs": (1, 10_000, False), "batch_size": (1, 4096, False),
    "lr": (0.0, 1000.0, True), "float_lr": (0.0, 10.0, True), "seed": (0, 2**32 - 1, False),
    "train_images": (0, 1_000_000, False),
}


def load_digits_split(test_size: int = 600) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)``: x (N, 1, 8, 8) float32 in [0, 1], y int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.tensor(np.random.default_rng(0).permutation(len(y)))
    x, y = x[perm], y[perm]
    return x[test_size:], y[test_size:], x[:test_size], y[:test_size]


def digits_model(arch: str = "cnn", width: int = 16, generator: torch.Generator | None = None) -> nn.Module:
    """The digits networks: ``cnn`` (2 conv + linear, no BN: exportable), ``cnn-bn``, ``fixup``
    (BN-free residual, Fixup init) and ``resnet-bn`` (the same residual net with batch norm)."""
    w = width
    if arch in ("cnn", "cnn-bn"):
        bn = arch == "cnn-bn"
        layers: list[nn.Module] = [nn.Conv2d(1, w, 3, padding=1, bias=not bn)]
        layers += [nn.BatchNorm2d(w)] if bn else []
        layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(w, 2 * w, 3, padding=1, bias=not bn)]
        layers += [nn.BatchNorm2d(2 * w)] if bn else []
        layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * w * 4, 10)]
        return nn.Sequential(*layers)
    if arch == "fixup":
        m = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), FixupBasicBlock(w), FixupBasicBlock(w),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(w * 16, 10),
        )
        return fixup_init(m, generator)
    if arch == "resnet-bn":
        return nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), BNBasicBlock(w), BNBasicBlock(w),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(w * 16, 10),
        )
    raise ParameterError(f"unknown digits architecture {arch!r}: use cnn, cnn-bn, fixup or resnet-bn")


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent (eval mode)."""
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    return float((pred == y).float().mean()) * 100.0


def train_classifier(
    model: nn.Module, scheme: str, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
    lr: float = 1.0, float_lr: float = 0.05, seed: int = 0, progress=None,
) -> nn.Module:
    """Quantize ``model`` with ``scheme`` and train it with cross-entropy; step decay of the lr
    (×1/4 at 50 % and 75 % of the epochs). Same ``seed`` → same data order and rounding draws."""
    if batch_size < 1 or epochs < 1:
        raise ParameterError(f"batch_size {batch_size} and epochs {epochs} must be >= 1")
    torch.manual_seed(seed)
    sch = get_scheme(scheme)
    model = quantize_model(model, sch)
    opt = make_optimizer(model, sch, lr=lr, float_lr=float_lr)
    gen = torch.Generator().manual_seed(seed)
    base = [g["lr"] for g in opt.param_groups]
    epochs_iter = range(epochs) if progress is None else progress(range(epochs), desc=f"train {sch.name}")
    for ep in epochs_iter:
        factor = 1.0 if 2 * ep < epochs else (0.25 if 4 * ep < 3 * epochs else 0.0625)
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * factor
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y) - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def train_digits(params: DigitsParams, progress=None) -> tuple[nn.Module, dict]:
    """Train one digits network; returns the model and ``{"scheme", "arch", "test_accuracy", ...}``."""
    xtr, ytr, xte, yte = load_digits_split()
    if params.train_images < 0 or params.width < 1:
        raise ParameterError(f"train_images {params.train_images} must be >= 0 and width {params.width} >= 1")
    if params.train_images:
        xtr, ytr = xtr[: params.train_images], ytr[: params.train_images]
    gen = torch.Generator().manual_seed(params.seed)
    torch.manual_seed(params.seed)
    model = digits_model(params.arch, params.width, gen)
    model = train_classifier(
        model, params.scheme, xtr, ytr, params.epochs, params.batch_size,
        params.lr if params.lr is not None else default_lr(params.scheme), params.float_lr, params.seed, progress,
    )
    return model, {
        "scheme": get_scheme(params.scheme).name, "arch": params.arch, "seed": params.seed, "epochs": params.epochs,
        "batch_size": params.batch_size, "test_accuracy": accuracy(model, xte, yte), "test_images": len(yte),
    }
