"""The one written definition of neurosim's integer arithmetic.

Every integer path — quantized inference (``neurosim.quant.to_integer``), integer neurons
(``neurosim.snn``) and the C++ chip kernels (``chip_models``) — follows these rules, and the
Python and C++ implementations are bit-exact. In the style of gemmlowp, the arithmetic is
defined once, apart from any kernel:

Values and scales
    A real tensor ``r`` is stored as integers ``q`` with a power-of-two scale:
    ``r = q * 2**(-frac_bits)``. Weights and activations are int8 ([-128, 127]); spikes are
    0/1; accumulators are int32; membranes are saturating ``MEMBRANE_BITS``-bit integers.

Multiply-accumulate
    ``acc = saturate(bias + sum(w * x), 32)`` with int8 ``w, x`` and int32 ``bias``: the sum is
    exact and only the final value (bias included) is saturated to int32. Kernels sum at most
    ``MAX_FAN_IN = 2**16`` products in one int32 accumulator (longer rows are cut into chunks
    whose int32 results are added in int64; conv layers refuse larger fan-ins). The bound: int8
    products lie in [-128·127, 128·128], so a signed int32 sum is exact for K ≤ 131071
    (131072·128·128 = 2**31 already overflows); the VNNI kernels sum u8·s8 products
    ``(x + 128)·w`` in [-32640, 32385], exact for K ≤ 65793; 2**16 is below both and gives
    ``|sum| ≤ 2**30``. The bias is added in int64 before the saturation, so it does not
    restrict K. The C++ kernels compile these constants from ``cpp/include/neurosim/intmath.h``
    (tested against this module).

Output stage (requantization)
    ``out = saturate(rounding_shift_right(acc, shift), 8)`` with a per-layer ``shift ≥ 0``
    (``shift = frac_w + frac_x - frac_out``). Rounding is half up (towards +inf):
    ``(acc + 2**(shift-1)) >> shift`` with an arithmetic (flooring) shift. A negative shift
    is a left shift. Saturation clamps to the signed range of the bit width.

Leak
    ``floor(v * alpha / 256)`` is ``(v * alpha) >> 8`` (flooring, also for negative ``v``).

All functions take and return int64 numpy arrays (wide enough for every intermediate).
"""

from __future__ import annotations

import numpy as np

MEMBRANE_BITS = 28
ACC_BITS = 32
INT8_MIN, INT8_MAX = -128, 127
MAX_FAN_IN = 1 << 16  # products per int32 accumulator (see "Multiply-accumulate" above)
MIN_SHIFT = -24  # most negative requantization shift: acc << 24 of an int32 acc stays exact in int64


def int_range(bits: int) -> tuple[int, int]:
    """Signed range ``(-2**(bits-1), 2**(bits-1) - 1)`` of a ``bits``-bit integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(x: np.ndarray, bits: int) -> np.ndarray:
    """Clamp ``x`` to the signed ``bits``-bit range."""
    lo, hi = int_range(bits)
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def rounding_shift_right(x: np.ndarray, shift: int) -> np.ndarray:
    """``round_half_up(x / 2**shift)`` for ``shift > 0``; ``x << -shift`` for ``shift < 0``."""
    x = np.asarray(x, dtype=np.int64)
    if shift > 0:
        return (x + (1 << (shift - 1))) >> shift
    if shift < 0:
        return x << (-shift)
    return x.copy()


def floor_shift_right(x: np.ndarray, shift: int) -> np.ndarray:
    """``floor(x / 2**shift)`` (arithmetic shift), ``shift ≥ 0``."""
    return np.asarray(x, dtype=np.int64) >> shift


def requantize(acc: np.ndarray, shift: int, bits: int = 8) -> np.ndarray:
    """Output stage: rounding shift by ``shift`` then saturation to ``bits`` bits."""
    return saturate(rounding_shift_right(acc, shift), bits)


def mac(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``bias + x @ w.T`` exactly, saturated to int32. ``x``: (N, K) int8, ``w``: (M, K) int8 → (N, M)."""
    acc = np.asarray(x, dtype=np.int64) @ np.asarray(w, dtype=np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    return saturate(acc, ACC_BITS)


def leak(v: np.ndarray, alpha: int, beta: int, bits: int = MEMBRANE_BITS) -> np.ndarray:
    """Membrane leak ``saturate(floor(v * alpha / 256) + beta)``; ``alpha`` in [0, 256]."""
    return saturate((np.asarray(v, dtype=np.int64) * alpha >> 8) + beta, bits)
