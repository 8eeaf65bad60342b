"""Quantized momentum SGD (WAGEUBN's optimizer; EOQ's int8 weight updates).

For each parameter with power-of-two range ``s`` (a layer constant; 1 for biases and BN):

    n    = weight.grad·2^7             the CQ integer in units of 2^(1−g) (|n| < 1), already
                                       quantized by the layer; other gradients are CQ'd here
                                       (``g`` bits, ``bn_grad`` for batch-norm γ, β)
    acc  = SQ(acc·2^−m + n, momentum_acc)        momentum β = 2^−m (WAGEUBN: m = 2, β = 1/4)
    lr   = SQ(lr, lr_bits)                        the learning rate itself on a 10-bit grid
    ΔW   = lr·(acc·2^−7·s + weight_decay·W)       lr = 1 moves a weight ≤ ~1 int8 step
    ΔW   = R(ΔW)·C(SR(ΔW/R(ΔW)·2^(k−1)))/2^(k−1)  EOQ only: the update is an int8 × 2^e
    W    = SR onto the stored grid s·2^(1−u), clipped to ±s (weights) — u = 24 (wageubn), 16 (eoq)

With a float scheme it is plain momentum SGD (β = 2^−m) on the raw gradients.
Stochastic rounding uses the ``generator`` given (else torch's global generator).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from neurosim.errors import ParameterError
from neurosim.quant import quantizers as Q
from neurosim.quant.scheme import Scheme, get_scheme


def _param_info(model: nn.Module) -> dict:
    info: dict = {}
    for m in model.modules():
        if hasattr(m, "param_info"):
            info.update(m.param_info())
    return info


class QuantSGD(torch.optim.Optimizer):
    """Momentum SGD with quantized gradients, accumulator, learning rate and stored weights.

    ``model`` is the (converted) module to train, or an iterable of its parameters (then every
    parameter uses scale 1 and is CQ'd here). ``lr`` (default :func:`default_lr`): with constant-
    quantized gradients (wageubn, seg8) it is in "int8 steps" (1.0 moves the weight with the
    largest gradient by about one step of its 8-bit grid; 8 works well); with shift-quantized
    gradients (eoq) it is an ordinary SGD learning rate (0.1 works well).
    """

    def __init__(
        self, model: nn.Module | Iterable[torch.nn.Parameter], scheme: "str | Scheme" = "wageubn", lr: float | None = None,
        weight_decay: float | None = None, generator: torch.Generator | None = None,
    ):
        self.scheme = get_scheme(scheme)
        lr = default_lr(self.scheme) if lr is None else lr
        if not lr > 0:
            raise ParameterError(f"learning rate {lr} must be > 0")
        if isinstance(model, nn.Module):
            self.info = _param_info(model)
            params = [p for p in model.parameters() if p.requires_grad]
        else:
            params = list(model)
            self.info = {}
        wd = self.scheme.weight_decay if weight_decay is None else weight_decay
        super().__init__(params, {"lr": lr, "weight_decay": wd})
        self.generator = generator
        self.bn_params = set()
        if isinstance(model, nn.Module):
            from neurosim.quant.batchnorm import QBatchNorm2d

            for m in model.modules():
                if isinstance(m, QBatchNorm2d):
                    self.bn_params.update(p for p in (m.weight, m.bias) if p is not None)

    def _units(self, p: torch.Tensor, pre_quantized: bool) -> torch.Tensor:
        s = self.scheme
        cq = s.grad_mode == "constant"
        if pre_quantized or s.g is None:
            return p.grad * 2.0**7 if (s.g and cq) else p.grad
        k = s.bn_grad if p in self.bn_params and s.bn_grad else s.g
        if not cq:
            return Q.shift(p.grad, k)
        return Q.constant(p.grad, k, None, self.generator).mul_(2.0**7)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        loss = closure() if closure is not None else None
        s = self.scheme
        beta = s.momentum
        for group in self.param_groups:
            lr = group["lr"]
            if s.lr:
                lr = float(Q.shift(torch.tensor(lr, dtype=torch.float64), s.lr))
            for p in group["params"]:
                if p.grad is None:
                    continue
                scale, pre_q, clip = self.info.get(p, (1.0, False, False))
                n = self._units(p, pre_q)
                st = self.state[p]
                acc = st.get("acc")
                acc = n.clone() if acc is None else acc.mul_(beta).add_(n)
                if s.momentum_acc:
                    acc = Q.shift(acc, s.momentum_acc)
                st["acc"] = acc
                delta = acc * (lr * 2.0**-7 * scale) if (s.g and s.grad_mode == "constant") else acc * lr
                if group["weight_decay"]:
                    delta.add_(p, alpha=lr * group["weight_decay"])
                if s.update:
                    r = Q.pow2_scale(delta)
                    lim = 2.0 ** (s.update - 1)
                    delta = Q.stochastic_round(delta * (lim / r), self.generator).clamp_(-(lim - 1), lim - 1).mul_(r / lim)
                new = p - delta
                if s.u:
                    g = 2.0 ** (s.u - 1) / scale
                    new = Q.stochastic_round(new * g, self.generator).div_(g)
                    if clip:
                        new.clamp_(-scale * (1 - 2.0 ** (1 - s.u)), scale * (1 - 2.0 ** (1 - s.u)))
                p.copy_(new)
        return loss


def default_lr(scheme: "str | Scheme") -> float:
    """A working QuantSGD learning rate: 8.0 for constant-quantized gradients (wageubn, seg8:
    int8 steps), 0.1 for shift-quantized ones (eoq: ordinary SGD units)."""
    return 0.1 if get_scheme(scheme).grad_mode == "shift" else 8.0


def set_cq_range(model: nn.Module, d: int) -> None:
    """Lower the CQ integer range ``d`` of every quantized layer (WAGEUBN's 128 → 32 → 8 → 2 decay)."""
    from neurosim.quant.layers import _QuantMixin

    for m in model.modules():
        if isinstance(m, _QuantMixin):
            if m.scheme.g and not 2 <= d <= 2 ** (m.scheme.g - 1):
                raise ParameterError(f"layer {m.layer_name}: CQ range {d} must be 2..{2 ** (m.scheme.g - 1)}")
            m.cq_range = d


def make_optimizer(model: nn.Module, scheme: "str | Scheme", lr: float | None = None, float_lr: float = 0.05) -> torch.optim.Optimizer:
    """QuantSGD for a quantized scheme; torch SGD (momentum 0.9, ``float_lr``) for ``fp32``."""
    sch = get_scheme(scheme)
    if sch.is_float:
        return torch.optim.SGD(model.parameters(), lr=float_lr, momentum=0.9, weight_decay=sch.weight_decay)
    return QuantSGD(model, sch, lr=lr)
