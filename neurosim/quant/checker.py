"""The "full 8-bit" checker: record every GEMM operand of a training step and test its grid.

A ``TorchDispatchMode`` sees every ATen operator that actually runs, forward and backward,
below autograd, whoever called it (a converted layer, a float layer left behind, a stray
``matmul``). For each GEMM (``convolution``, ``convolution_backward``, ``mm``, ``addmm``,
``bmm``, ``baddbmm``) every matrix operand is inspected: the finest power-of-two grid ``2^e``
on which all its values are integers is found from their float bits, and the operand needs
``b`` bits when its integers lie in ``[−2^(b−1), 2^(b−1) − 1]``. An operand is on the
scheme's grid when ``b`` ≤ the scheme's width (``max(w, a, e)``), or when it is in the
flagged int8 error format (``error_flagged``: values ≥ s are integers × s up to 127, values
< s are multiples of s·2^−7, s a power of two). Weight gradients (the ``G`` path: the
operand of the update) are checked on every Conv2d/Linear weight after the step (≤ ``g`` bits).

The checker relies on nothing the quantizers claim: a path left in float shows up as an
operand needing ~24 bits.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from neurosim.quant.scheme import Scheme, get_scheme

aten = torch.ops.aten
_GEMM_OPERANDS = {
    aten.convolution.default: (0, 1),
    aten.convolution_backward.default: (0, 1, 2),
    aten.mm.default: (0, 1),
    aten.addmm.default: (1, 2),
    aten.bmm.default: (0, 1),
    aten.baddbmm.default: (1, 2),
}
_NAMES = {
    aten.convolution.default: ("input", "weight"),
    aten.convolution_backward.default: ("error", "input", "weight"),
}


def grid_bits(t: torch.Tensor) -> tuple[int, int]:
    """``(bits, e)``: the signed integer width of ``t`` on its finest power-of-two grid ``2^e``.

    An all-zero tensor needs 1 bit; a non-finite one ``(99, 0)``.
    """
    x = t.detach().to(torch.float64).flatten()
    if not bool(torch.isfinite(x).all()):
        return 99, 0
    nz = x[x != 0]
    if nz.numel() == 0:
        return 1, 0
    m, e = torch.frexp(nz)  # nz = m·2^e, 0.5 ≤ |m| < 1, 53-bit mantissa
    mi = (m.abs() * 2.0**53).to(torch.int64)
    low = mi & (-mi)  # lowest set bit
    tz = torch.log2(low.to(torch.float64)).round().to(torch.int64)
    grid = int((e.to(torch.int64) - 53 + tz).min())
    ints = nz * 2.0 ** (-grid)
    hi, lo = float(ints.max()), float(ints.min())
    bits = 1
    while hi > 2.0 ** (bits - 1) - 1 or lo < -(2.0 ** (bits - 1)):
        bits += 1
    return bits, grid


def is_flagged(t: torch.Tensor, k: int = 8) -> bool:
    """True when ``t`` is in the flagged k-bit error format for some power-of-two scale s."""
    x = t.detach().to(torch.float64).flatten()
    if not bool(torch.isfinite(x).all()):
        return False
    m = float(x.abs().max())
    if m == 0.0:
        return True
    top = 2.0 ** (k - 1)
    base = math.floor(math.log2(m)) - (k - 2)
    for se in (base - 1, base, base + 1):
        s = 2.0**se
        u = (x / s).abs()
        big, small = u[u >= 1.0], u[u < 1.0] * top
        if float(u.max()) <= top - 1 and bool((big == big.round()).all()) and bool((small == small.round()).all()):
            return True
    return False


class GemmRecorder(TorchDispatchMode):
    """Records ``(op, operand, shape, bits, flagged)`` for every GEMM operand while active."""

    def __init__(self, flag_bits: int | None = None):
        super().__init__()
        self.flag_bits = flag_bits
        self.records: list[dict] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        idx = _GEMM_OPERANDS.get(func)
        if idx is not None:
            names = _NAMES.get(func, tuple(f"arg{i}" for i in idx))
            for i, name in zip(idx, names):
                t = args[i]
                bits, grid = grid_bits(t)
                flagged = bool(self.flag_bits) and bits > self.flag_bits and is_flagged(t, self.flag_bits)
                self.records.append({
                    "op": str(func.overloadpacket.__name__), "operand": name, "shape": list(t.shape),
                    "bits": bits, "grid_exp": grid, "flagged": flagged,
                })
        return func(*args, **(kwargs or {}))


def check_full_bits(model: nn.Module, scheme: "str | Scheme", step: Callable[[], object]) -> dict:
    """Run ``step()`` (a forward and backward of ``model``) under the recorder and judge it.

    Returns ``{"ok", "bits", "gemm_operands", "flagged_operands", "violations", "gradients"}``: ``ok`` is True when
    every GEMM operand needs ≤ ``bits`` (= max(w, a, e) of the scheme; float schemes: 8) or is
    flagged-format, and every Conv2d/Linear weight gradient needs ≤ ``g`` bits.
    """
    sch = get_scheme(scheme)
    widths = [b for b in (sch.w, sch.a, sch.e) if b]
    limit = max(widths) if widths else 8
    g_limit = sch.g or 8
    for p in model.parameters():
        p.grad = None
    rec = GemmRecorder(flag_bits=sch.e if sch.error_flagged else None)
    with rec:
        step()
    violations = [r for r in rec.records if r["bits"] > limit and not r["flagged"]]
    grads = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
            bits, grid = grid_bits(m.weight.grad)
            grads.append({"layer": name, "bits": bits, "grid_exp": grid, "ok": bits <= g_limit})
    ok = bool(rec.records) and not violations and all(g["ok"] for g in grads)
    return {
        "ok": ok, "bits": limit, "gradient_bits": g_limit, "gemm_operands": len(rec.records),
        "flagged_operands": sum(r["flagged"] for r in rec.records),
        "violations": violations, "gradients": grads,
    }
