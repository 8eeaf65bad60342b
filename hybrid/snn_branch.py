"""SNN branch: a spiking CNN (STBP neurons) on event bins at the SNN rate, state across bins.

Input: event counts X (T, B, 2, S, S) (ON/OFF channels, one bin per SNN step, 1 ms at
1 kHz). Layers: spiking conv3×3(2→c1, stride 2) → spiking conv3×3(c1→c2, stride 2) →
spiking conv3×3(c2→C), each followed by an STBP neuron (docs/explanation/references.md §2):

    u_t = τ · u_{t−1} · (1 − o_{t−1}) + W ∗ x_t,   o_t = [u_t > θ]

(rectangle surrogate for ∂o/∂u in training). Membranes carry over all T bins of a call.
The output spikes feed a leaky trace ``r_t = λ·r_{t−1} + o_t`` (λ = ``trace_decay``), the
SNN's feature map at step t, stride 4 like the ANN's. The first layer's spikes (stride 2) are
also returned: the attention module reads their rate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

STRIDE = 4
FIRST_STRIDE = 2


def leaky_trace(spikes: Tensor, decay: float) -> Tensor:
    """``r_t = decay·r_{t−1} + s_t`` over the first axis of (T, ...)."""
    out, r = [], torch.zeros_like(spikes[0])
    for s in spikes:
        r = decay * r + s
        out.append(r)
    return torch.stack(out)


class SpikingBackbone(nn.Module):
    """(T, B, 2, S, S) event bins → (first-layer spikes, output spikes (T, B, C, S/4, S/4)).

    Built from ``neurosim.snn`` (spiking Conv2d + STBP neurons, run by its multi-step
    ``Sequential``: convolutions batched over T·B, membrane recurrences fused).
    """

    def __init__(self, channels=(8, 16, 16), tau: float = 0.5, threshold: float = 0.5):
        super().__init__()
        from neurosim.snn.layers import Conv2d
        from neurosim.snn.neurons import STBP
        from neurosim.snn.sequential import Sequential

        c1, c2, c3 = channels
        self.first = Sequential(Conv2d(2, c1, 3, stride=2, padding=1, spike_input=False), STBP(c1, decay=tau, v_th=threshold))
        self.rest = Sequential(
            Conv2d(c1, c2, 3, stride=2, padding=1, spike_input=False), STBP(c2, decay=tau, v_th=threshold),
            Conv2d(c2, c3, 3, padding=1, spike_input=False), STBP(c3, decay=tau, v_th=threshold),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        first = self.first(x)
        return first, self.rest(first)


def build_snn(channels=(8, 16, 16), tau: float = 0.5, threshold: float = 0.5) -> nn.Module:
    """The spiking backbone built from ``neurosim.snn`` layers."""
    return SpikingBackbone(channels, tau, threshold)
