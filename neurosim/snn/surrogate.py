"""Surrogate gradients of the spike threshold, selectable by name.

The forward pass is always the Heaviside step ``z = [x > 0]`` with ``x = v - v_th`` (strict,
as in norse). The backward pass replaces ``dz/dx`` by a smooth or boxed pseudo-derivative:

=============== ======================================== ================================
name            dz/dx                                    default ``alpha`` / origin
=============== ======================================== ================================
``superspike``  ``1 / (alpha·|x| + 1)²``                 1 — norse ``method="super"``
                                                         (norse ignores its alpha: 1 / (|x|+1)²)
``fast_sigmoid`` ``1 / (alpha·|x| + 1)²``                25 — snntorch ``fast_sigmoid(slope)``
``rectangle``   ``1/alpha`` where ``|x| < alpha/2``      1 — STBP (Wu et al. 2018), a = 1
``arctan``      ``(alpha/2) / (1 + (π/2·alpha·x)²)``     2 — SpikingJelly / snntorch ``ATan``
``sigmoid``     ``alpha·s·(1−s)``, ``s = σ(alpha·x)``    4 — SpikingJelly ``Sigmoid``
=============== ======================================== ================================

The same formulas are in the C++ kernel (``neurosim/cpp/snn.cpp``) used by the fused path.
"""

from __future__ import annotations

import math

import torch

from neurosim.errors import ParameterError

#: name -> (kernel id, default alpha)
SURROGATES: dict[str, tuple[int, float]] = {
    "superspike": (0, 1.0),
    "super": (0, 1.0),
    "fast_sigmoid": (0, 25.0),
    "rectangle": (1, 1.0),
    "arctan": (2, 2.0),
    "sigmoid": (3, 4.0),
}


def check_surrogate(name: str, alpha: float | None) -> tuple[int, float]:
    """Kernel id and the effective ``alpha`` of surrogate ``name``; ParameterError if unknown."""
    if name not in SURROGATES:
        raise ParameterError(f"surrogate {name!r} is unknown: use one of {', '.join(SURROGATES)}")
    kind, default = SURROGATES[name]
    a = default if alpha is None else float(alpha)
    if not a > 0 or not math.isfinite(a):
        raise ParameterError(f"surrogate alpha {alpha} must be a positive number")
    return kind, a


def surrogate_grad(kind: int, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """The pseudo-derivative ``dz/dx`` of kernel ``kind`` at ``x`` (same formulas as the C++)."""
    if kind == 0:
        return 1.0 / (alpha * x.abs() + 1.0) ** 2
    if kind == 1:
        return (x.abs() < 0.5 * alpha).to(x.dtype) / alpha
    if kind == 2:
        return 0.5 * alpha / (1.0 + (math.pi / 2 * alpha * x) ** 2)
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1.0 - s)


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: int, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.kind, ctx.alpha = kind, alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(ctx.kind, x, ctx.alpha), None, None


def spike(x: torch.Tensor, name: str = "superspike", alpha: float | None = None) -> torch.Tensor:
    """Heaviside ``[x > 0]`` with the surrogate gradient ``name`` (see the module table)."""
    kind, a = check_surrogate(name, alpha)
    return _SpikeFn.apply(x, kind, a)
