"""neurosim's float LIF against brian2 (numpy target, Euler): same spikes, same membrane."""

import pytest

from neurosim.snn.reference import crosscheck_brian2


@pytest.mark.parametrize("synaptic", [True, False])
def test_lif_matches_brian2_1000_neurons_1000_steps(synaptic):
    r = crosscheck_brian2(neurons=1000, steps=1000, synaptic=synaptic, seed=3)
    assert r.spikes_brian2 > 10_000  # the input drives real spiking, not a silent population
    assert r.spike_mismatches == 0
    assert r.max_abs_dv <= 1e-5
