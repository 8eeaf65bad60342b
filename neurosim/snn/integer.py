"""Integer spiking layers: int8 weights, int32 accumulation, the saturating integer LIF.

The arithmetic is defined once in :mod:`neurosim.intmath` and :mod:`neurosim.intneuron`; this
module only batches it. Per time step and sample, for a layer with int8 weight ``w``, int32
bias ``b`` and current shift ``shift``::

    acc     = b + Σ w·x                               (exact, saturated to int32: intmath.mac)
    current = saturate(rounding_shift_right(acc, shift), 32)   (intmath.requantize(acc, shift, 32))
    spikes, state = int_lif_step(current, state, neuron)        (intneuron: Tianjic order)

which is exactly what an ``snn`` layer of :mod:`neurosim.intnet` computes (``run_reference``).
The accumulation runs as one float64 convolution / matmul over all T·B samples: every
product and partial sum of int8 values with fan-in ≤ ``intmath.MAX_FAN_IN`` (2**16) is an
integer below 2**31, so float64 is exact here.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from neurosim.errors import ParameterError
from neurosim.intmath import INT8_MAX, INT8_MIN, MAX_FAN_IN, int_range, requantize, saturate
from neurosim.intnet import IntLayer
from neurosim.intneuron import IntLIFParams, IntLIFState, int_lif_step


def _int_array(x, name: str, lo: int, hi: int) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise ParameterError(f"{name} must be an integer array, got {a.dtype}: quantize it first")
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ParameterError(f"{name} has values outside [{lo}, {hi}]")
    return a


class IntSpikingLayer:
    """An integer conv2d or linear layer followed by the integer LIF (numpy/torch, bit-exact).

    ``weight`` int8 (Cout, Cin, kh, kw) or (out, in); ``bias`` int32 or None; ``shift`` ≥ 0
    right shift of the accumulator into the membrane current; ``neuron`` the soma parameters.
    """

    def __init__(
        self, weight: np.ndarray, bias: Optional[np.ndarray], shift: int, neuron: IntLIFParams,
        stride: int = 1, padding: int = 0,
    ):
        self.weight = _int_array(weight, "weight", INT8_MIN, INT8_MAX)
        if self.weight.ndim not in (2, 4):
            raise ParameterError(f"weight must be (out, in) or (Cout, Cin, kh, kw), got shape {self.weight.shape}")
        cout = self.weight.shape[0]
        lo, hi = int_range(32)
        self.bias = None if bias is None else _int_array(bias, "bias", lo, hi)
        if self.bias is not None and self.bias.shape != (cout,):
            raise ParameterError(f"bias has shape {self.bias.shape} but the layer has {cout} outputs")
        if int(np.prod(self.weight.shape[1:])) > MAX_FAN_IN:
            raise ParameterError(f"fan-in {int(np.prod(self.weight.shape[1:]))} exceeds {MAX_FAN_IN}: split the layer")
        if shift < 0:
            raise ParameterError(f"shift {shift} must be ≥ 0")
        if stride < 1 or padding < 0:
            raise ParameterError(f"stride {stride} must be ≥ 1 and padding {padding} ≥ 0")
        self.shift, self.neuron, self.stride, self.padding = int(shift), neuron, stride, padding
        self.kind = "conv2d" if self.weight.ndim == 4 else "linear"

    def accumulate(self, x: np.ndarray) -> np.ndarray:
        """int32-saturated accumulators of (N, ...) integer inputs: (N, Cout, Ho, Wo) or (N, out)."""
        xt = torch.from_numpy(np.asarray(x, np.float64))
        w = torch.from_numpy(self.weight.astype(np.float64))
        b = None if self.bias is None else torch.from_numpy(self.bias.astype(np.float64))
        if self.kind == "conv2d":
            if xt.ndim != 4 or xt.shape[1] != w.shape[1]:
                raise ParameterError(f"input shape {tuple(xt.shape)} does not fit conv weight {tuple(w.shape)}")
            acc = torch.nn.functional.conv2d(xt, w, b, stride=self.stride, padding=self.padding)
        else:
            if xt.shape[-1] != w.shape[1]:
                raise ParameterError(f"input shape {tuple(xt.shape)} does not fit linear weight {tuple(w.shape)}")
            acc = torch.nn.functional.linear(xt, w, b)
        return saturate(acc.numpy().astype(np.int64), 32)

    def run(self, x: np.ndarray, state: Optional[IntLIFState] = None) -> tuple[np.ndarray, IntLIFState]:
        """Integer input (T, B, ...) → spikes int64 (T, B, ...) and the final state."""
        x = _int_array(x, "input", *int_range(32))
        T, B = x.shape[:2]
        acc = self.accumulate(x.reshape((T * B,) + x.shape[2:]))
        current = requantize(acc, self.shift, 32).reshape((T, B) + acc.shape[1:])
        if state is None:
            state = IntLIFState.zeros(current.shape[1:])
        spikes = np.empty(current.shape, np.int64)
        for t in range(T):
            spikes[t], state = int_lif_step(current[t], state, self.neuron)
        return spikes, state

    def to_intlayer(self, name: str, source: str, frac_bits: int = 0) -> IntLayer:
        """This layer as an ``snn`` layer of :mod:`neurosim.intnet`."""
        return IntLayer(
            name=name, kind=self.kind, source=source, mode="snn", weight=self.weight.astype(np.int8),
            bias=None if self.bias is None else self.bias.astype(np.int32), shift=self.shift,
            stride=self.stride, padding=self.padding, neuron=self.neuron, frac_bits=frac_bits,
        )


def quantize_weight(w: torch.Tensor, frac_bits: int) -> np.ndarray:
    """Round a float weight to int8 with scale 2**−frac_bits (half to even, saturated)."""
    q = np.round(w.detach().cpu().double().numpy() * (1 << frac_bits)) if frac_bits >= 0 else None
    if q is None:
        raise ParameterError(f"frac_bits {frac_bits} must be ≥ 0")
    return saturate(q.astype(np.int64), 8).astype(np.int8)
