"""Synaptic layers for spike sequences (T, B, ...): the synaptic work is batched over all T·B.

Each layer folds time into the batch (``(T, B, ...) → (T·B, ...)``), applies one ordinary
operation to the whole sequence and unfolds. :class:`Conv2d` uses the binary-spike kernel
(:func:`neurosim.snn.fused.spike_conv2d`) when its input is 0/1 spikes (stride 1, no
dilation, no groups): then forward and weight-gradient work scale with the spike count.
``spike_input="auto"`` checks the input once per call; :class:`~neurosim.snn.sequential.Sequential`
sets it to True behind spiking neurons.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurosim.errors import ParameterError
from neurosim.snn.fused import spike_conv2d


def fold(x: torch.Tensor) -> torch.Tensor:
    """(T, B, ...) → (T·B, ...)."""
    if x.ndim < 2:
        raise ParameterError(f"a spike sequence needs shape (T, B, ...), got {tuple(x.shape)}")
    return x.reshape((x.shape[0] * x.shape[1],) + tuple(x.shape[2:]))


def unfold(y: torch.Tensor, T: int) -> torch.Tensor:
    """(T·B, ...) → (T, B, ...)."""
    return y.reshape((T, y.shape[0] // T) + tuple(y.shape[1:]))


def is_binary(x: torch.Tensor) -> bool:
    """True when every element of ``x`` is 0 or 1 (one early-exit pass in C++ when available)."""
    from neurosim.snn.fused import _snn

    if _snn is not None and x.dtype == torch.float32 and x.device.type == "cpu" and x.is_contiguous():
        return bool(_snn.is_binary(x.reshape(-1)))
    return bool(((x == 0) | (x == 1)).all())


class Conv2d(torch.nn.Conv2d):
    """2-d convolution over a sequence (T, B, Cin, H, W) → (T, B, Cout, H', W')."""

    def __init__(self, *args, spike_input: bool | str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if spike_input not in (True, False, "auto"):
            raise ParameterError(f"spike_input {spike_input!r} must be True, False or 'auto'")
        self.spike_input = spike_input

    def _sparse_ok(self) -> bool:
        return (
            self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1
            and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
            and self.padding[0] == self.padding[1]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.ndim != 5 or x.shape[2] != self.in_channels:
            raise ParameterError(
                f"Conv2d expects (T, B, {self.in_channels}, H, W) spikes, got shape {tuple(x.shape)}"
            )
        xf = fold(x)
        sparse = self._sparse_ok() and x.dtype == torch.float32 and (
            self.spike_input is True or (self.spike_input == "auto" and is_binary(xf))
        )
        if sparse:
            y = spike_conv2d(xf, self.weight, self.bias, self.padding[0])
        else:
            y = super().forward(xf)
        return unfold(y, x.shape[0])


class Linear(torch.nn.Linear):
    """Linear layer over (T, B, ..., in_features) → (T, B, ..., out_features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.shape[-1] != self.in_features:
            raise ParameterError(f"Linear expects {self.in_features} input features, got shape {tuple(x.shape)}")
        return F.linear(x, self.weight, self.bias)


class Flatten(torch.nn.Module):
    """(T, B, C, H, W) → (T, B, C·H·W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], -1)


class _Pool(torch.nn.Module):
    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0):
        super().__init__()
        if kernel_size < 1:
            raise ParameterError(f"pooling kernel_size {kernel_size} must be ≥ 1")
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool):
    """Max pooling per time step (on spikes: an OR over the window)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold(F.max_pool2d(fold(x), self.kernel_size, self.stride, self.padding), x.shape[0])


class AvgPool2d(_Pool):
    """Average pooling per time step (NIR ``AvgPool2d``; zero padding counted)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold(F.avg_pool2d(fold(x), self.kernel_size, self.stride, self.padding), x.shape[0])


class SumPool2d(_Pool):
    """Sum pooling per time step (NIR ``SumPool2d``): the window sum of the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        y = F.avg_pool2d(fold(x), k, self.stride, self.padding, divisor_override=1)
        return unfold(y, x.shape[0])


class Dropout(torch.nn.Module):
    """Dropout with one mask per sequence, shared by all time steps (drops whole spike trains)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ParameterError(f"dropout probability {p} must be in [0, 1)")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Threshold(torch.nn.Module):
    """Stateless spike generator (NIR ``Threshold``): ``z = [x − threshold > 0]`` with a surrogate."""

    def __init__(self, threshold: float | torch.Tensor = 1.0, surrogate: str = "superspike", alpha: float | None = None):
        super().__init__()
        from neurosim.snn.surrogate import check_surrogate

        check_surrogate(surrogate, alpha)
        t = torch.as_tensor(threshold, dtype=torch.float32)
        self.register_buffer("threshold", t.clone(), persistent=False)
        self.surrogate, self.alpha = surrogate, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from neurosim.snn.neurons import broadcast_channels
        from neurosim.snn.surrogate import spike

        th = broadcast_channels(self.threshold.to(x.dtype), x.ndim, channel_dim=2)
        return spike(x - th, self.surrogate, self.alpha)
