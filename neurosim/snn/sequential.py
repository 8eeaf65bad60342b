"""``Sequential``: run a whole spike sequence (T, B, ...) through a network in one call.

Synaptic layers process all T·B samples at once (:mod:`neurosim.snn.layers`); every neuron
layer runs its recurrence over all T steps in one fused call (:meth:`Neuron.sequence`).
Plain torch modules (e.g. ``torch.nn.BatchNorm2d``) are applied with time folded into the
batch. Behind a spiking neuron, convolutions are told their input is binary so they use the
spike kernel without checking. When the network starts with spiking ``Conv2d → neuron``
blocks (optionally ``Flatten → Linear`` after them), those run as one fused C++ pass
(:mod:`neurosim.snn.chain`); the rest continues layer by layer.
"""

from __future__ import annotations

import torch

from neurosim.errors import ParameterError
from neurosim.snn import chain
from neurosim.snn.layers import AvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, SumPool2d, Threshold, fold, unfold
from neurosim.snn.neurons import Neuron

_SEQUENCE_AWARE = (Conv2d, Linear, Flatten, MaxPool2d, AvgPool2d, SumPool2d, Dropout, Threshold)
# layers that keep 0/1 spikes 0/1
_KEEPS_BINARY = (Flatten, MaxPool2d)


class Sequential(torch.nn.Sequential):
    """A feed-forward spiking network over (T, B, ...) sequences.

    ``forward(x)`` returns the last layer's output sequence; ``forward(x, return_states=True)``
    also returns the final state of each neuron layer (by index).
    """

    def __init__(self, *modules: torch.nn.Module):
        super().__init__(*modules)
        binary = False
        for m in self:
            if isinstance(m, Conv2d) and binary and m.spike_input == "auto":
                m.spike_input = True
            if isinstance(m, Neuron):
                binary = m.p.spiking
            elif isinstance(m, Threshold):
                binary = True
            elif not isinstance(m, _KEEPS_BINARY):
                binary = False

    def forward(self, x: torch.Tensor, return_states: bool = False):  # type: ignore[override]
        if x.ndim < 3:
            raise ParameterError(f"Sequential expects a sequence (T, B, ...), got shape {tuple(x.shape)}")
        states = {}
        mods = list(self)
        start = chain.match(mods, x)
        if start:  # leading conv → neuron blocks (+ linear head) in one fused C++ pass
            x, states = chain.run(mods[:start], x, want_states=return_states)
        for idx, m in enumerate(mods):
            if idx < start:
                continue
            if isinstance(m, Neuron):
                x, states[idx] = m.sequence(x)
            elif isinstance(m, _SEQUENCE_AWARE):
                x = m(x)
            else:
                x = unfold(m(fold(x)), x.shape[0])
        return (x, states) if return_states else x
