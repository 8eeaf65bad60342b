"""neurosim.snn: spiking neurons, surrogate gradients, layers, fused multi-step kernels,
integer neuron layers, event encoders, NIR export/import and brian2 cross-checks.

One import for the spiking core (norse-like)::

    import torch
    from neurosim import snn

    net = snn.Sequential(snn.Conv2d(2, 8, 3, padding=1), snn.LIF(8), snn.SumPool2d(2),
                         snn.Flatten(), snn.Linear(8 * 16 * 16, 10), snn.LI())
    y = net(x)                        # x (T, B, 2, 32, 32) → y (T, B, 10); T time steps of dt
    snn.save_nir(net, "net.nir", input_shape=(2, 32, 32), dt=1e-3)

Public names (imported on first use: ``from neurosim import snn`` loads no torch):

- Neurons (torch modules, state carried over time steps): :func:`LIF` (with synaptic
  current), :func:`LIFBox` (without), :func:`IF`, :func:`LI` (non-spiking readout),
  :func:`STBP`; the pure step :func:`neuron_step` with :class:`NeuronParams` /
  :class:`NeuronState` and the parameter helpers :func:`lif_params`, :func:`if_params`.
- Layers applied at every time step: :class:`Sequential`, :class:`Conv2d`, :class:`Linear`,
  :class:`Flatten`, :class:`MaxPool2d`, :class:`AvgPool2d`, :class:`SumPool2d`.
- NIR: :func:`to_nir` / :func:`save_nir`, :func:`load_graph` / :func:`from_nir`,
  :func:`describe_nir` (``neurosim snn nir-info``).
- :func:`crosscheck_brian2` (``neurosim snn crosscheck``; needs ``neurosim[crosscheck]``),
  :func:`events_to_bins` (events → (T, 2, H, W) count frames).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurosim._lazy import attach

_LAZY = {
    "LIF": "neurosim.snn.neurons",
    "LIFBox": "neurosim.snn.neurons",
    "IF": "neurosim.snn.neurons",
    "LI": "neurosim.snn.neurons",
    "STBP": "neurosim.snn.neurons",
    "neuron_step": "neurosim.snn.neurons",
    "lif_params": "neurosim.snn.neurons",
    "if_params": "neurosim.snn.neurons",
    "NeuronParams": "neurosim.snn.neurons",
    "NeuronState": "neurosim.snn.neurons",
    "Sequential": "neurosim.snn.sequential",
    "Conv2d": "neurosim.snn.layers",
    "Linear": "neurosim.snn.layers",
    "Flatten": "neurosim.snn.layers",
    "MaxPool2d": "neurosim.snn.layers",
    "AvgPool2d": "neurosim.snn.layers",
    "SumPool2d": "neurosim.snn.layers",
    "to_nir": "neurosim.snn.nir_io",
    "save_nir": "neurosim.snn.nir_io",
    "load_graph": "neurosim.snn.nir_io",
    "from_nir": "neurosim.snn.nir_io",
    "describe_nir": "neurosim.snn.nir_io",
    "crosscheck_brian2": "neurosim.snn.reference",
    "events_to_bins": "neurosim.snn.encode",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY)

if TYPE_CHECKING:
    from neurosim.snn.encode import events_to_bins
    from neurosim.snn.layers import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, SumPool2d
    from neurosim.snn.neurons import IF, LI, LIF, STBP, LIFBox, NeuronParams, NeuronState, if_params, lif_params, neuron_step
    from neurosim.snn.nir_io import describe_nir, from_nir, load_graph, save_nir, to_nir
    from neurosim.snn.reference import crosscheck_brian2
    from neurosim.snn.sequential import Sequential
