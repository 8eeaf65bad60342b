"""Quantized Conv2d and Linear: A and W quantized forward, E and G backward, in one autograd function.

Forward (k = scheme bits)::

    A = fixed(x, f_A, a)          f_A = a−1 − round(log2 max|x|)  (training: this batch;
                                  eval: a running max, so eval and export are batch-independent)
    W = s·C(Q(W_stored/s, w))     s = a power-of-two layer constant fixed at conversion
    b = fixed(b, f_A + f_W, 32)   the bias on the accumulator grid (int32)
    y = A ⊛ W + b                 (a float GEMM on integer-valued operands: exact while partial
                                  sums stay below 2^24; eval switches to float64 beyond that)
    y = fixed(y, f_out, a)        last layer only (so its logits are int8 too)

Backward::

    E  = SQ(∂L/∂y, e)             or the flagged int8 format when a batch norm follows
    ∂L/∂x = E ⊛ᵀ W                (straight through the A quantizer)
    G  = CQ(E ⊛ A, g)             grad_mode "constant" (wageubn): ``weight.grad = n·2^(1−g)·2^−7``
    G  = SQ(E ⊛ A, g)             grad_mode "shift" (eoq): magnitude kept

The operands of all three GEMMs are k-bit integers times powers of two; see
:mod:`neurosim.quant.checker` for the proof by inspection.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from neurosim.errors import ParameterError
from neurosim.quant import quantizers as Q
from neurosim.quant.scheme import Scheme

_EMA = 0.1  # running-max momentum of the activation ranges


def _track(layer: nn.Module, buf: str, x: torch.Tensor, bits: int) -> int:
    """Fractional bits for ``x``: from this batch in training (and update the running max), from
    the running max in eval."""
    run = getattr(layer, buf)
    if layer.training:
        m = Q.max_abs(x)
        r = float(run)
        run.fill_(m if r <= 0.0 else (1 - _EMA) * r + _EMA * m)
        return Q.fixed_frac(m, bits)
    return Q.fixed_frac(float(run), bits)


def weight_frac(bits: int, scale: float) -> int:
    """Fractional bits of the weight grid ``scale·2^(1−bits)``."""
    return (bits - 1) - int(round(math.log2(scale)))


def pow2_ceil(x: float) -> float:
    """Smallest power of two ≥ x (1.0 for x ≤ 0)."""
    return 2.0 ** math.ceil(math.log2(x)) if x > 0 else 1.0


class _QGemm(torch.autograd.Function):
    """One quantized GEMM layer (conv2d or linear); ``layer`` holds the scheme and geometry."""

    @staticmethod
    def forward(ctx, x, w, b, layer, f_in):  # noqa: D401
        s: Scheme = layer.scheme
        xq = Q.fixed(x, f_in, s.a) if s.a else x
        wq = Q.weight(w, s.w, float(layer.w_scale)) if s.w else w
        bq = b
        if b is not None and s.a and s.w:
            bq = Q.fixed(b, f_in + weight_frac(s.w, float(layer.w_scale)), 32)
        if layer.training or layer.exact_in_float32():
            y = layer._gemm(xq, wq, bq)
        else:  # eval with a large fan-in: float64 keeps every integer sum exact (bit-exact export)
            y = layer._gemm(xq.double(), wq.double(), bq.double() if bq is not None else None).to(x.dtype)
        if layer.quantize_output and s.a:
            y = Q.fixed(y, _track(layer, "out_max", y, s.a), s.a)
        ctx.layer = layer
        ctx.has_bias = b is not None
        ctx.save_for_backward(xq, wq)
        return y

    @staticmethod
    def backward(ctx, grad):
        layer = ctx.layer
        s: Scheme = layer.scheme
        xq, wq = ctx.saved_tensors
        e = grad
        if s.e:
            e = Q.flagged(grad, s.e) if (layer.error_flagged and s.error_flagged) else Q.shift(grad, s.e)
        gx, gw, gb = layer._gemm_backward(e, xq, wq, ctx.needs_input_grad[0], ctx.has_bias)
        if s.g:
            if s.grad_mode == "shift":
                gw = Q.shift(gw, s.g)
                gb = Q.shift(gb, s.g) if gb is not None else None
            else:
                d = layer.cq_range or s.cq_range
                gw = Q.constant(gw, s.g, d)
                gb = Q.constant(gb, s.g, d) if gb is not None else None
        return gx, gw, gb, None, None


class _QuantMixin:
    """Shared state of QConv2d and QLinear (scheme, weight scale, activation ranges)."""

    scheme: Scheme

    def _setup(self, scheme: Scheme, name: str = "") -> None:
        self.scheme = scheme
        self.layer_name = name
        self.error_flagged = False  # set by quantize_model when a batch norm follows
        self.quantize_output = False  # set by quantize_model on the last GEMM layer
        self.cq_range: int | None = None
        w = self.weight.detach()
        # range: the initial weights, and at least two He standard deviations (room to grow;
        # zero-initialized Fixup layers get a useful grid)
        m = float(w.abs().max()) if w.numel() else 0.0
        scale = pow2_ceil(max(m, 2.0 * math.sqrt(2.0 / max(w[0].numel(), 1))))
        self.register_buffer("w_scale", torch.tensor(scale))
        self.register_buffer("in_max", torch.tensor(0.0))
        self.register_buffer("out_max", torch.tensor(0.0))
        self.project_weights()

    def project_weights(self) -> None:
        """Put the stored weights on the ``u``-bit grid (range ±w_scale)."""
        if self.scheme.u:
            with torch.no_grad():
                self.weight.copy_(Q.weight(self.weight, self.scheme.u, float(self.w_scale)))

    def param_info(self) -> dict:
        """For the optimizer: parameter → (power-of-two scale, grad already CQ'd, clip to range)."""
        info = {self.weight: (float(self.w_scale), bool(self.scheme.g), True)}
        if self.bias is not None:
            info[self.bias] = (float(self.w_scale), bool(self.scheme.g), False)
        return info

    def exact_in_float32(self) -> bool:
        """True when no integer partial sum can reach 2^24 (float32 sums are then exact):
        ``fan_in · 2^(w−1) · 2^(a−1) < 2^24`` (fan-in < 1024 for 8 bits)."""
        s = self.scheme
        if not (s.w and s.a):
            return True
        return self.weight[0].numel() * 2 ** (s.w - 1 + s.a - 1) < 2**24

    def input_frac(self) -> int:
        """Fractional bits of this layer's (eval) input activations."""
        return Q.fixed_frac(float(self.in_max), self.scheme.a)

    def output_frac(self) -> int:
        """Fractional bits of this layer's (eval) quantized output (last layer)."""
        return Q.fixed_frac(float(self.out_max), self.scheme.a)

    def weight_frac(self) -> int:
        return weight_frac(self.scheme.w, float(self.w_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scheme
        if s.is_float:
            return self._gemm(x, self.weight, self.bias)
        f_in = _track(self, "in_max", x, s.a) if s.a else None
        return _QGemm.apply(x, self.weight, self.bias, self, f_in)



def adopt(cls: type, m: nn.Module) -> nn.Module:
    """A new, uninitialised ``cls`` module sharing ``m``'s attributes, parameters and buffers."""
    q = cls.__new__(cls)
    nn.Module.__init__(q)
    q.__dict__.update({k: v for k, v in m.__dict__.items() if k not in ("_parameters", "_buffers", "_modules")})
    q._parameters = dict(m._parameters)
    q._buffers = dict(m._buffers)
    q._modules = dict(m._modules)
    return q

class QConv2d(_QuantMixin, nn.Conv2d):
    """Conv2d trained with quantized A, W (forward) and E, G (backward); see the module docstring."""

    def __init__(self, *args, scheme: Scheme, name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(self.padding, str) or self.padding_mode != "zeros":
            raise ParameterError(f"layer {name or 'conv'}: padding {self.padding!r}/{self.padding_mode} is not supported, use integer zero padding")
        self._setup(scheme, name)

    @classmethod
    def from_float(cls, m: nn.Conv2d, scheme: Scheme, name: str = "") -> "QConv2d":
        """A QConv2d sharing ``m``'s parameter tensors (values projected to the stored grid)."""
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise ParameterError(f"layer {name}: padding {m.padding!r} ({m.padding_mode}) is not supported, use integer zero padding")
        q = adopt(cls, m)
        q._setup(scheme, name)
        return q

    def _gemm(self, x, w, b):
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def _gemm_backward(self, e, xq, wq, need_x, has_bias):
        gx, gw, gb = torch.ops.aten.convolution_backward(
            e, xq, wq, [wq.shape[0]] if has_bias else None, list(self.stride), list(self.padding),
            list(self.dilation), False, [0, 0], self.groups, [need_x, True, has_bias],
        )
        return gx, gw, gb


class QLinear(_QuantMixin, nn.Linear):
    """Linear trained with quantized A, W (forward) and E, G (backward); see the module docstring."""

    def __init__(self, *args, scheme: Scheme, name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._setup(scheme, name)

    @classmethod
    def from_float(cls, m: nn.Linear, scheme: Scheme, name: str = "") -> "QLinear":
        """A QLinear sharing ``m``'s parameter tensors (values projected to the stored grid)."""
        q = adopt(cls, m)
        q._setup(scheme, name)
        return q

    def _gemm(self, x, w, b):
        return F.linear(x, w, b)

    def _gemm_backward(self, e, xq, wq, need_x, has_bias):
        e2 = e.reshape(-1, e.shape[-1])
        gx = (e2 @ wq).reshape(*e.shape[:-1], wq.shape[1]) if need_x else None
        gw = e2.t() @ xq.reshape(-1, xq.shape[-1])
        gb = e2.sum(0) if has_bias else None
        return gx, gw, gb
