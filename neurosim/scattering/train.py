"""Training, head-only transfer (float or int8) and evaluation of LISMU networks.

- :func:`train`: the whole network from scratch with Adam on the balance loss
  (λ_s = ``smooth_weight``, 0.008 as LISMU's pre-training) plus L1/L2 weight penalties.
- :func:`finetune`: LISMU's transfer: restore everything, freeze the body (eval mode: batch
  norm statistics and dropout fixed), train only the head on a few samples with λ_s = 0
  (learning rate ×1/4 at 50 % and ×1/16 at 75 % of the steps: :func:`step_decay`). With
  an int8 ``scheme`` (``eoq``, ``wageubn``) the head is converted by
  :func:`neurosim.quant.quantize_model` and trained by :class:`neurosim.quant.QuantSGD`:
  weights, activations, errors, gradients and updates of the fine-tuned layers on 8-bit grids.
- :func:`reconstruct` and :func:`evaluate`: predictions and PSNR / SSIM / Pearson r.
- :func:`head_to_integer`: the int8 head as a :class:`neurosim.intnet.IntNetwork` (the sigmoid
  as a 256-entry table), run by :func:`neurosim.intnet.run_reference` in pure integers.

Same data, parameters and seed → the same weights bit for bit (single-threaded torch).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from neurosim.errors import ParameterError
from neurosim.scattering.functional import balance_loss, quality, weight_penalty
from neurosim.scattering.models import build_model


@dataclasses.dataclass
class TrainParams:
    """Parameters of :func:`train` (``neurosim scatter train``).

    Attributes:
        arch: ``fcn`` or ``ocn``.
        hidden: FCN hidden units. widths: OCN U-Net channels per level. head_channels: OCN head conv.
        dropout: dropout probability (FCN hidden layer, OCN bottleneck).
        epochs: passes over the data (unless ``steps`` > 0). steps: minibatch steps, 0: from epochs.
        batch_size, lr: Adam minibatch size and learning rate.
        smooth_weight: λ_s of the balance loss (LISMU pre-training: 0.008).
        l1, l2: weight penalties ``l1·Σ|w| + l2·Σw²`` (conv and linear weights).
        seed: initialisation, data order and dropout.
    """

    arch: str = "ocn"
    hidden: int = 512
    widths: list[int] = dataclasses.field(default_factory=lambda: [8, 16, 32, 64])
    head_channels: int = 8
    dropout: float = 0.1
    epochs: int = 12
    steps: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    smooth_weight: float = 0.008
    l1: float = 0.0
    l2: float = 1e-6
    seed: int = 0

    def check(self) -> "TrainParams":
        """Raise ParameterError naming the first value out of :data:`TRAIN_RANGES`."""
        _check(self, TRAIN_RANGES)
        if self.arch not in ("fcn", "ocn"):
            raise ParameterError(f"parameter arch = {self.arch!r} is unknown: use fcn or ocn")
        if not 1 <= len(self.widths) <= 5 or any(not 1 <= w <= 1024 for w in self.widths):
            raise ParameterError(f"parameter widths = {self.widths} must list 1-5 channel counts of 1-1024")
        return self

    def model(self, size: int = 32) -> nn.Module:
        """A freshly initialised network of these parameters (seeded with ``seed``)."""
        torch.manual_seed(self.seed)
        return build_model(self.arch, size, self.hidden, tuple(self.widths), self.head_channels, self.dropout)


@dataclasses.dataclass
class FinetuneParams:
    """Parameters of :func:`finetune` (``neurosim scatter finetune``).

    Attributes:
        samples: fine-tuning samples, the first ones of the data (0: all).
        steps: minibatch steps (LISMU: 3000 at batch 100).
        batch_size: minibatch size (at most ``samples``).
        lr: Adam learning rate (float head).
        scheme: ``fp32`` (float head, Adam) or an int8 scheme of neurosim.quant (``eoq``,
            ``wageubn``: QuantSGD).
        int8_lr: QuantSGD learning rate; unset: ``neurosim.quant.default_lr(scheme)`` (eoq: 0.1
            in SGD units; wageubn: 8 int8 steps).
        smooth_weight: λ_s (LISMU fine-tuning: 0). l1, l2: weight penalties.
        seed: data order and stochastic rounding.
    """

    samples: int = 100
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    scheme: str = "fp32"
    int8_lr: float | None = None
    smooth_weight: float = 0.0
    l1: float = 0.0
    l2: float = 1e-6
    seed: int = 0

    def check(self) -> "FinetuneParams":
        """Raise ParameterError naming the first value out of :data:`FINETUNE_RANGES`."""
        from neurosim.quant.scheme import get_scheme

        _check(self, FINETUNE_RANGES)
        get_scheme(self.scheme)
        return self


# (low, high, low excluded); the upper bounds guard against runaway time and memory.
TRAIN_RANGES: dict[str, tuple[float, float, bool]] = {
    "hidden": (1, 65536, False), "head_channels": (1, 1024, False), "dropout": (0.0, 0.9, False),
    "epochs": (1, 100_000, False), "steps": (0, 10**6, False), "batch_size": (1, 65536, False),
    "lr": (0.0, 10.0, True), "smooth_weight": (0.0, 1e6, False), "l1": (0.0, 1e3, False), "l2": (0.0, 1e3, False),
    "seed": (0, 2**32 - 1, False),
}
FINETUNE_RANGES: dict[str, tuple[float, float, bool]] = {
    "samples": (0, 10**8, False), "steps": (1, 10**6, False), "batch_size": (1, 65536, False),
    "lr": (0.0, 10.0, True), "int8_lr": (0.0, 1000.0, True), "smooth_weight": (0.0, 1e6, False),
    "l1": (0.0, 1e3, False), "l2": (0.0, 1e3, False), "seed": (0, 2**32 - 1, False),
}


def _check(params, ranges) -> None:
    from neurosim.config import check_range

    for name, (low, high, low_open) in ranges.items():
        if getattr(params, name) is None:
            continue
        check_range(name, getattr(params, name), low, high, low_open=low_open,
                    why="to go past the upper bound edit the ranges in neurosim/scattering/train.py")


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(images, np.float32)).reshape(-1, 1, *np.shape(images)[-2:])


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator):
    """Index batches for ``steps`` steps: successive random permutations of range(n)."""
    b = min(batch_size, n)
    perm, at = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if at + b > n:
            perm, at = torch.randperm(n, generator=gen), 0
        yield perm[at : at + b]
        at += b


def train(speckle: np.ndarray, objects: np.ndarray, params: TrainParams, progress: Callable | None = None) -> nn.Module:
    """Train a LISMU network from scratch on speckle → objects (N, S, S); returns it in eval mode."""
    params.check()
    x, y = _tensor(speckle), _tensor(objects)
    model = params.model(x.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    gen = torch.Generator().manual_seed(params.seed)
    n = len(x)
    steps = params.steps or params.epochs * max(n // min(params.batch_size, n), 1)
    model.train()
    it = _batches(n, params.batch_size, steps, gen)
    for idx in (progress(it, total=steps, desc=f"train {params.arch}") if progress else it):
        opt.zero_grad(set_to_none=True)
        loss = balance_loss(model(x[idx]), y[idx], params.smooth_weight) + weight_penalty(model, params.l1, params.l2)
        loss.backward()
        opt.step()
    return model.eval()


def freeze_body(model: nn.Module) -> None:
    """Freeze everything but the head; the body stays in eval mode."""
    for p in model.body.parameters():
        p.requires_grad_(False)
    model.body.eval()


@torch.no_grad()
def features(model: nn.Module, speckle: np.ndarray, batch: int = 256) -> torch.Tensor:
    """The frozen body's output for speckle (N, S, S): the head's input."""
    model.body.eval()
    x = _tensor(speckle)
    return torch.cat([model.body(x[i : i + batch]) for i in range(0, len(x), batch)]) if len(x) else x


def finetune(model: nn.Module, speckle: np.ndarray, objects: np.ndarray, params: FinetuneParams,
             progress: Callable | None = None) -> nn.Module:
    """LISMU transfer: train only ``model.head`` on the first ``samples`` pairs; body frozen.

    With an int8 ``scheme`` the head is converted in place (``quantize_model``) and trained
    with ``QuantSGD``; the body's features are computed once (it is frozen). Returns the model
    in eval mode.
    """
    from neurosim.quant import QuantSGD, get_scheme, quantize_model

    params.check()
    n = params.samples or len(speckle)
    if n > len(speckle):
        raise ParameterError(f"samples = {n} asked, the data has {len(speckle)}: simulate more or ask for fewer")
    torch.manual_seed(params.seed)
    freeze_body(model)
    feats, y = features(model, speckle[:n]), _tensor(objects[:n])
    scheme = get_scheme(params.scheme)
    if scheme.is_float:
        opt = torch.optim.Adam(model.head.parameters(), lr=params.lr)
    else:
        quantize_model(model.head, scheme)
        opt = QuantSGD(model.head, scheme, lr=params.int8_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(params.seed)
    model.head.train()
    it = _batches(n, params.batch_size, params.steps, gen)
    size = y.shape[-1]
    base = [g["lr"] for g in opt.param_groups]
    for step, idx in enumerate(progress(it, total=params.steps, desc=f"finetune {scheme.name}") if progress else it):
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * step_decay(step, params.steps)
        opt.zero_grad(set_to_none=True)
        pred = torch.sigmoid(model.head(feats[idx]).reshape(-1, 1, size, size))
        loss = balance_loss(pred, y[idx], params.smooth_weight) + weight_penalty(model.head, params.l1, params.l2)
        loss.backward()
        opt.step()
    return model.eval()


def step_decay(step: int, steps: int) -> float:
    """Learning-rate factor of fine-tuning: 1, then 1/4 from 50 % and 1/16 from 75 % of the steps."""
    return 1.0 if 2 * step < steps else 0.25 if 4 * step < 3 * steps else 0.0625


@torch.no_grad()
def reconstruct(model: nn.Module, speckle: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predicted objects (N, S, S) float32 of speckle (N, S, S)."""
    model.eval()
    x = _tensor(speckle)
    out = [model(x[i : i + batch]) for i in range(0, len(x), batch)]
    return torch.cat(out).reshape(len(x), *x.shape[-2:]).numpy() if out else np.zeros((0, *x.shape[-2:]), np.float32)


def evaluate(model: nn.Module, speckle: np.ndarray, objects: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB), SSIM and Pearson r of the model's reconstructions of ``objects``."""
    return quality(reconstruct(model, speckle), objects)


def sigmoid_table(frac_bits: int) -> np.ndarray:
    """int8 (256,) table: entry v + 128 = min(round_half_up(128·sigmoid(v·2^−frac_bits)), 127),
    the sigmoid on the 7-fractional-bit output grid."""
    v = np.arange(-128, 128, dtype=np.float64) * 2.0**-frac_bits
    return np.minimum(np.floor(128.0 / (1.0 + np.exp(-v)) + 0.5), 127).astype(np.int8)


def head_to_integer(model: nn.Module, example_speckle: np.ndarray, name: str = "lismu-head"):
    """The int8-trained head as an integer network (input: the body's features).

    The head's last layer ends in the 256-entry sigmoid table, so the network's output is
    int8 in [0, 127] with 7 fractional bits: object = output / 128, within 1/256 of the
    quantized model's sigmoid (1/128 above 127.5/128, where the table saturates). Needs a head
    fine-tuned with an 8-bit scheme.
    """
    from neurosim.quant import to_integer

    net = to_integer(model.head.eval(), features(model, example_speckle[:1]), name=name)
    last = net.layers[-1]
    last.lut, last.activation = sigmoid_table(last.frac_bits), "lut"
    last.frac_bits = 7
    net.meta["output"] = "object = value / 128, reshaped to (S, S)"
    return net


def reconstruct_integer(net, model: nn.Module, speckle: np.ndarray) -> np.ndarray:
    """Objects (N, S, S) from the float body and the integer head (``intnet.run_reference``)."""
    from neurosim.intnet import run_reference
    from neurosim.quant import quantize_input

    feats = features(model, speckle)
    out = run_reference(net, {"input": quantize_input(net, feats)})[net.outputs[0]]
    size = int(round(out.shape[-1] ** 0.5))
    return (out.reshape(len(out), size, size) / 128.0).astype(np.float32)
