"""neurosim.snn: spiking neurons, surrogate gradients, layers, fused multi-step kernels,
integer neuron layers, event encoders, NIR export/import and brian2 cross-checks."""
