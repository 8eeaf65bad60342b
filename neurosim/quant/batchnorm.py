"""Quantized batch norm: WAGEUBN's and the square-root-free L1 form (docs/explanation/references.md §3).

Per channel, over (N, H, W), with straight-through gradients for every quantizer::

    μ  = SQ(mean x, bn_mean)
    σ  = SQ(sqrt(mean (x − μ)²) + 2^−15, bn_std)      (wageubn)
    σ  = SQ(mean |x − μ| + 1e−3, bn_std)               (l1: no square root)
    x̂  = fixed((x − μ)/σ, f, bn_xhat)                 f from max|x̂| (training) / running max (eval)
    γ, β = SQ(·, bn_param)                             (wageubn)
    γ, β = 2·C(Q(·/2, bn_param))                       (l1: range ±2)
    y  = γ·x̂ + β

Backward: the error entering the batch norm (∂L/∂y) is SQ-quantized to ``e_bn`` bits; autograd
then differentiates the formulas above. The error leaving it reaches the conv before it,
which quantizes it (flagged int8 for ``wageubn``). Moving averages are float and quantized
when read (eval). γ/β gradients are quantized by the optimizer (``bn_grad`` bits).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from neurosim.quant import quantizers as Q
from neurosim.quant.layers import _track, adopt
from neurosim.quant.scheme import Scheme

_DIMS = (0, 2, 3)


class _STE(torch.autograd.Function):
    """Forward ``fn(x)``, backward identity (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


class _GradQuant(torch.autograd.Function):
    """Forward identity, backward ``fn(grad)``."""

    @staticmethod
    def forward(ctx, x, fn):
        ctx.fn = fn
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.fn(g), None


def ste(x: torch.Tensor, fn) -> torch.Tensor:
    """``fn(x)`` with a straight-through gradient."""
    return _STE.apply(x, fn)


def grad_quant(x: torch.Tensor, fn) -> torch.Tensor:
    """``x`` whose incoming gradient is replaced by ``fn(gradient)``."""
    return _GradQuant.apply(x, fn)


class QBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with the quantized statistics, x̂, γ, β and errors of a scheme."""

    @classmethod
    def from_float(cls, m: nn.BatchNorm2d, scheme: Scheme, name: str = "") -> "QBatchNorm2d":
        """A QBatchNorm2d sharing ``m``'s parameters and running statistics."""
        q = adopt(cls, m)
        q.scheme = scheme
        q.layer_name = name
        q.register_buffer("xhat_max", torch.tensor(0.0))
        if scheme.batchnorm == "l1":
            q.register_buffer("running_dev", torch.ones(m.num_features))
        return q

    def param_info(self) -> dict:
        """For the optimizer: γ, β use scale 1 (range ±2 for l1), gradients CQ'd to ``bn_grad`` bits."""
        info = {}
        if self.weight is not None:
            info[self.weight] = (1.0, False, False)
            info[self.bias] = (1.0, False, False)
        return info

    def _param(self, p: torch.Tensor) -> torch.Tensor:
        k = self.scheme.bn_param
        if not k:
            return p
        if self.scheme.batchnorm == "l1":
            return ste(p, lambda t: Q.weight(t, k, 2.0))
        return ste(p, lambda t: Q.shift(t, k))

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantized (μ, σ) of this batch and x̂ = (x − μ)/σ (unquantized); updates the running statistics."""
        s = self.scheme
        l1 = s.batchnorm == "l1"
        if l1:
            mu = x.mean(_DIMS)
        else:
            var, mu = torch.var_mean(x, _DIMS, correction=0)
        muq = Q.shift(mu, s.bn_mean) if s.bn_mean else mu
        if l1:
            xc = x - muq.view(1, -1, 1, 1)
            dev = xc.abs().mean(_DIMS).add_(1e-3)
        else:
            dev = (var + (mu - muq) ** 2).sqrt_().add_(2.0**-15)  # RMS about the quantized mean
        m = self.momentum if self.momentum is not None else 0.1
        self.running_mean.mul_(1 - m).add_(mu, alpha=m)
        if l1:
            self.running_dev.mul_(1 - m).add_(dev, alpha=m)
        else:
            n = x.numel() / x.shape[1]
            self.running_var.mul_(1 - m).add_(var * (n / max(n - 1, 1)), alpha=m)
        self.num_batches_tracked += 1
        if s.bn_std:
            dev = Q.shift(dev, s.bn_std)
        inv = dev.reciprocal()
        if l1:
            xhat = xc.mul_(inv.view(1, -1, 1, 1))
        else:
            xhat = torch.addcmul((-muq * inv).view(1, -1, 1, 1), x, inv.view(1, -1, 1, 1))
        return inv, xhat

    def _eval_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scheme
        mu = Q.shift(self.running_mean, s.bn_mean) if s.bn_mean else self.running_mean
        dev = self.running_dev + 1e-3 if s.batchnorm == "l1" else torch.sqrt(self.running_var) + 2.0**-15
        return mu, (Q.shift(dev, s.bn_std) if s.bn_std else dev)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"QBatchNorm2d {self.layer_name}: expected (N, C, H, W) input, got shape {tuple(x.shape)}")
        if self.affine:
            gamma, beta = self._param(self.weight), self._param(self.bias)
        else:
            gamma = beta = None
        if self.training:
            return _BNTrain.apply(x, gamma, beta, self)
        mu, dev = self._eval_stats()
        xhat = (x - mu.view(1, -1, 1, 1)) / dev.view(1, -1, 1, 1)
        if self.scheme.bn_xhat:
            xhat = Q.fixed(xhat, _track(self, "xhat_max", xhat, self.scheme.bn_xhat), self.scheme.bn_xhat)
        if gamma is None:
            return xhat
        return torch.addcmul(beta.view(1, -1, 1, 1), xhat, gamma.view(1, -1, 1, 1))


_DIMS = (0, 2, 3)


class _BNTrain(torch.autograd.Function):
    """Training-mode quantized batch norm with a closed-form backward.

    With ``g`` = SQ(∂L/∂y, e_bn), ``d = γ·g``, x̂ = (x − μ)/σ (unquantized, straight through):
    ``∂L/∂x = (d − mean d − t·mean(d·x̂))/σ`` with ``t = x̂`` (σ = RMS) or
    ``t = sign(x̂) − mean sign(x̂)`` (σ = mean absolute deviation, L1); ``∂L/∂γ = Σ g·x̂_q``,
    ``∂L/∂β = Σ g``.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, bn):
        s = bn.scheme
        with torch.no_grad():
            inv, xhat = bn._stats(x)
        xq = Q.fixed(xhat, _track(bn, "xhat_max", xhat, s.bn_xhat), s.bn_xhat) if s.bn_xhat else xhat
        y = xq if gamma is None else torch.addcmul(beta.view(1, -1, 1, 1), xq, gamma.view(1, -1, 1, 1))
        ctx.bn = bn
        ctx.save_for_backward(xhat, xq, inv, gamma)
        return y

    @staticmethod
    def backward(ctx, g):
        bn = ctx.bn
        s = bn.scheme
        xhat, xq, inv, gamma = ctx.saved_tensors
        if s.e_bn:
            g = Q.shift(g, s.e_bn)
        n = g.numel() / g.shape[1]
        sum_g = g.sum(_DIMS)
        sum_gx = (g * xhat).sum(_DIMS)
        dgamma = dbeta = None
        if gamma is not None:
            dbeta = sum_g
            dgamma = (g * xq).sum(_DIMS) if xq is not xhat else sum_gx
            gam = gamma
        else:
            gam = torch.ones_like(inv)
        # dx = (γ·g − mean(γ·g) − t·mean(γ·g·x̂))·inv, per channel constants folded
        a = gam * inv
        m1 = gam * sum_g / n
        m2 = gam * sum_gx / n
        if s.batchnorm == "l1":
            sg = torch.sign(xhat)
            ms = sg.sum(_DIMS) / n
            c = (ms * m2 - m1) * inv
            dx = torch.addcmul(c.view(1, -1, 1, 1), g, a.view(1, -1, 1, 1)).addcmul_(sg, (-m2 * inv).view(1, -1, 1, 1))
        else:
            dx = torch.addcmul((-m1 * inv).view(1, -1, 1, 1), g, a.view(1, -1, 1, 1))
            dx.addcmul_(xhat, (-m2 * inv).view(1, -1, 1, 1))
        return dx, dgamma, dbeta, None
