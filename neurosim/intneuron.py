"""Integer LIF neuron of a Tianjic-class core: the pure integer reference.

One step, in this order, for every neuron (all values int64 numpy arrays, see
:mod:`neurosim.intmath` for the arithmetic):

1. ``refractory = counter > 0``
2. integrate: ``v = saturate(v + input)`` where not refractory (input is dropped otherwise)
3. fire: ``spike = (v > v_th) & ~refractory`` (strictly greater)
4. reset where spiking: ``v = v_reset`` (mode ``value``), ``v = v - v_th`` (``subtract``) or
   ``v = v - reset_constant`` (``constant``), saturated
5. leak, every neuron: ``v = saturate(floor(v * leak_alpha / 256) + leak_beta)``
6. counter: ``refractory_steps`` where spiking, else ``max(counter - 1, 0)``

The membrane saturates at ``MEMBRANE_BITS`` (28) bits; the counter has 4 bits
(``refractory_steps`` ≤ 15). Random and adaptive thresholds of the hardware are not modelled.
The C++ soma kernel of ``chip_models`` implements exactly this.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from neurosim.errors import ParameterError
from neurosim.intmath import MEMBRANE_BITS, int_range, leak, saturate

RESET_MODES = ("value", "subtract", "constant")


@dataclasses.dataclass(frozen=True)
class IntLIFParams:
    """Parameters of the integer LIF soma (all integers, membrane units)."""

    v_th: int = 64
    v_reset: int = 0
    reset_mode: str = "value"
    reset_constant: int = 0
    leak_alpha: int = 256
    leak_beta: int = 0
    refractory_steps: int = 0

    def __post_init__(self) -> None:
        lo, hi = int_range(MEMBRANE_BITS)
        if self.reset_mode not in RESET_MODES:
            raise ParameterError(f"reset_mode {self.reset_mode!r} is unknown: use one of {', '.join(RESET_MODES)}")
        if not 0 <= self.leak_alpha <= 256:
            raise ParameterError(f"leak_alpha {self.leak_alpha} is outside 0..256 (256 means no leak)")
        if not 0 <= self.refractory_steps <= 15:
            raise ParameterError(f"refractory_steps {self.refractory_steps} is outside 0..15 (a 4-bit counter)")
        for name in ("v_th", "v_reset", "reset_constant", "leak_beta"):
            if not lo <= getattr(self, name) <= hi:
                raise ParameterError(f"{name} {getattr(self, name)} does not fit the {MEMBRANE_BITS}-bit membrane")


class IntLIFState(NamedTuple):
    """Membrane ``v`` and refractory ``counter``, int64 arrays of the population's shape."""

    v: np.ndarray
    counter: np.ndarray

    @staticmethod
    def zeros(shape: tuple[int, ...]) -> "IntLIFState":
        return IntLIFState(np.zeros(shape, np.int64), np.zeros(shape, np.int64))


def int_lif_step(
    current: np.ndarray, state: IntLIFState, p: IntLIFParams
) -> tuple[np.ndarray, IntLIFState]:
    """One step of the integer LIF. Returns (spikes as int64 0/1, new state)."""
    refractory = state.counter > 0
    v = np.where(refractory, state.v, saturate(state.v + np.asarray(current, np.int64), MEMBRANE_BITS))
    spike = (v > p.v_th) & ~refractory
    if p.reset_mode == "value":
        reset_v = np.full_like(v, p.v_reset)
    elif p.reset_mode == "subtract":
        reset_v = v - p.v_th
    else:
        reset_v = v - p.reset_constant
    v = np.where(spike, saturate(reset_v, MEMBRANE_BITS), v)
    v = leak(v, p.leak_alpha, p.leak_beta, MEMBRANE_BITS)
    counter = np.where(spike, p.refractory_steps, np.maximum(state.counter - 1, 0))
    return spike.astype(np.int64), IntLIFState(v, counter)
