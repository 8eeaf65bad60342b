"""The quantizers of integer training, as small pure torch functions (docs/explanation/references.md §3).

Notation (k = bit width, all scales are powers of two):

* ``Q(x, k) = round(x·2^(k−1)) / 2^(k−1)``: direct quantization onto the grid ``2^(1−k)``.
  Rounding is half up (``floor(x + 1/2)``), the rule of :mod:`neurosim.intmath`.
* ``C(x, k) = clip(x, −1 + 2^(1−k), 1 − 2^(1−k))``: the symmetric k-bit range.
* ``R(x) = 2^round(log2 max|x|)``: a per-tensor power-of-two scale (1 for an all-zero tensor).
* ``SR(x) = floor(x + u)``, ``u ~ U[0, 1)``: stochastic rounding (unbiased).
* ``SQ(x, k) = R(x)·C(Q(x/R(x), k), k)``: shift quantization (errors, BN statistics,
  accumulators). The clip is C, so the result is exactly a k-bit integer times
  ``R(x)·2^(1−k)`` (the reference clips to ±1; ±1 itself would need k+1 bits).
* ``CQ(g, k, d) = clip(SR(d·g/R(g)), ±(d−1))·2^(1−k)·2^−7``: constant quantization of weight
  gradients. ``d = 2^(k−1)`` by default; the integer ``n`` no longer depends on ``|g|`` (the
  learning rate sets the step). For k = 8, d = 128 the value is ``n·2^−14`` as in WAGEUBN.
* ``flagged(e, k)``: the WAGEUBN error format after batch norm. ``s = R(e)/2^(k−1)``,
  ``u = e/s``; where ``|u| < 1`` the value is ``Q(|u|, k)`` (a fine fraction), elsewhere
  ``round(|u|)`` clipped to ``2^(k−1) − 1``; the sign is kept. An int8 plus a flag bit.
* ``fixed(x, frac, k)``: ``clip(round(x·2^frac), −2^(k−1), 2^(k−1) − 1)·2^−frac``: a k-bit
  integer with a fixed power-of-two scale (activations; matches ``intmath.requantize``).

All functions take and return float tensors of the same shape; none builds autograd graphs
(callers wrap them in straight-through functions).
"""

from __future__ import annotations

import math

import torch


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 1/2)``: the rounding of :func:`neurosim.intmath.rounding_shift_right`."""
    return torch.floor(x + 0.5)


def max_abs(x: torch.Tensor) -> float:
    """``max|x|`` in one pass (0.0 for an empty tensor)."""
    if not x.numel():
        return 0.0
    lo, hi = torch.aminmax(x.detach())
    return max(-float(lo), float(hi))


def pow2_exponent(x: torch.Tensor) -> int:
    """``round(log2 max|x|)`` as a Python int (0 for an all-zero or non-finite tensor)."""
    m = max_abs(x)
    if not (m > 0.0) or not math.isfinite(m):
        return 0
    return int(math.floor(math.log2(m) + 0.5))


def pow2_scale(x: torch.Tensor) -> float:
    """R(x) = 2^round(log2 max|x|), a power of two (1.0 for an all-zero tensor)."""
    return 2.0 ** pow2_exponent(x)


def direct(x: torch.Tensor, k: int) -> torch.Tensor:
    """Q(x, k) = round(x·2^(k−1))/2^(k−1) (no clipping)."""
    s = 2.0 ** (k - 1)
    return (x * s).add_(0.5).floor_().div_(s)


def clip(x: torch.Tensor, k: int) -> torch.Tensor:
    """C(x, k) = clip(x, −1 + 2^(1−k), 1 − 2^(1−k))."""
    lim = 1.0 - 2.0 ** (1 - k)
    return x.clamp(-lim, lim)


def weight(x: torch.Tensor, k: int, scale: float = 1.0) -> torch.Tensor:
    """``scale·C(Q(x/scale, k), k)``: k-bit weights of a layer whose range is ±``scale`` (a power of two)."""
    s = 2.0 ** (k - 1) / scale
    lim = 2.0 ** (k - 1) - 1
    return (x * s).add_(0.5).floor_().clamp_(-lim, lim).div_(s)


def fixed(x: torch.Tensor, frac: int, k: int) -> torch.Tensor:
    """k-bit integer times 2^−frac: ``clip(round(x·2^frac), −2^(k−1), 2^(k−1)−1)·2^−frac``."""
    s = 2.0**frac
    return (x * s).add_(0.5).floor_().clamp_(-(2.0 ** (k - 1)), 2.0 ** (k - 1) - 1).div_(s)


def shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """SQ(x, k) = R(x)·C(Q(x/R(x), k), k): a k-bit integer times R(x)·2^(1−k)."""
    return weight(x, k, pow2_scale(x))


def stochastic_round(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """SR(x) = floor(x + u), u ~ U[0, 1): unbiased rounding to integers."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.floor(u.add_(x))


def constant(g: torch.Tensor, k: int, d: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """CQ(g, k, d) = clip(SR(d·g/R(g)), ±(d−1))·2^(1−k)·2^−7 (the gradient of the update).

    ``d`` (default ``2^(k−1)``, at most that) is the integer range; lowering it during training
    (128 → 32 → 8 → 2) is WAGEUBN's second learning-rate decay.
    """
    d = 2 ** (k - 1) if d is None else d
    n = stochastic_round(g * (d / pow2_scale(g)), generator).clamp_(-(d - 1), d - 1)
    return n.mul_(2.0 ** (1 - k - 7))


def flagged(e: torch.Tensor, k: int = 8) -> torch.Tensor:
    """WAGEUBN error after batch norm: ``s = R(e)/2^(k−1)``, ``u = e/s``; ``|u|<1 → Q(|u|, k)``, else
    ``min(round(|u|), 2^(k−1)−1)``; sign kept; returned in the units of ``e`` (times ``s``)."""
    top = 2.0 ** (k - 1)
    s = pow2_scale(e) / top
    a = torch.abs(e).mul_(1.0 / s)
    m = (a < 1.0).to(a.dtype).mul_(top - 1).add_(1.0)  # grid: 2^(1-k) below 1, 1 above (the flag bit)
    q = a.mul_(m).add_(0.5).floor_().div_(m).clamp_(max=top - 1)
    return q.copysign_(e).mul_(s)


def fixed_frac(max_abs: float, k: int) -> int:
    """Fractional bits of a k-bit fixed grid for data of magnitude ``max_abs``: ``k−1 − round(log2 max_abs)``."""
    if not (max_abs > 0.0) or not math.isfinite(max_abs):
        return k - 1
    return (k - 1) - int(math.floor(math.log2(max_abs) + 0.5))
