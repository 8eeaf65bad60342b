"""The integer neuron reference (neurosim.intneuron) against closed-form cases written by hand,
and the integer spiking layer against the integer network reference."""

import numpy as np
import pytest

from neurosim.errors import ParameterError
from neurosim.intnet import InputSpec, IntNetwork, run_reference
from neurosim.intneuron import IntLIFParams, IntLIFState, int_lif_step
from neurosim.snn.integer import IntSpikingLayer

VMAX, VMIN = (1 << 27) - 1, -(1 << 27)  # 28-bit membrane


def run(p, inputs, v0=0, counter0=0):
    """Run one neuron; returns lists of spikes, membranes and counters after each step."""
    state = IntLIFState(np.array([v0], np.int64), np.array([counter0], np.int64))
    zs, vs, cs = [], [], []
    for x in inputs:
        z, state = int_lif_step(np.array([x], np.int64), state, p)
        zs.append(int(z[0]))
        vs.append(int(state.v[0]))
        cs.append(int(state.counter[0]))
    return zs, vs, cs


def test_saturates_at_the_top():
    p = IntLIFParams(v_th=VMAX)  # can never fire: v > VMAX is impossible
    zs, vs, _ = run(p, [100, 1 << 26, 1 << 26, 5], v0=VMAX - 50)
    assert vs == [VMAX, VMAX, VMAX, VMAX] and zs == [0, 0, 0, 0]


def test_saturates_at_the_bottom():
    p = IntLIFParams(v_th=10)
    zs, vs, _ = run(p, [-100, -(1 << 27), -1], v0=VMIN + 30)
    assert vs == [VMIN, VMIN, VMIN] and zs == [0, 0, 0]


def test_fires_only_strictly_above_threshold():
    p = IntLIFParams(v_th=10, v_reset=0)
    zs, vs, _ = run(p, [10, 0, 1])
    assert zs == [0, 0, 1] and vs == [10, 10, 0]


def test_reset_to_value():
    zs, vs, _ = run(IntLIFParams(v_th=10, v_reset=3), [15, 2])
    assert zs == [1, 0] and vs == [3, 5]


def test_reset_by_subtracting_threshold():
    zs, vs, _ = run(IntLIFParams(v_th=10, reset_mode="subtract"), [25, 0, 1])
    # 25 > 10 -> 15; 15 > 10 -> 5; 6
    assert zs == [1, 1, 0] and vs == [15, 5, 6]


def test_reset_by_subtracting_a_constant():
    zs, vs, _ = run(IntLIFParams(v_th=10, reset_mode="constant", reset_constant=7), [15, 0])
    assert zs == [1, 0] and vs == [8, 8]


def test_subtract_reset_from_saturated_membrane():
    zs, vs, _ = run(IntLIFParams(v_th=1000, reset_mode="subtract"), [1 << 27], v0=VMAX - 1)
    assert zs == [1] and vs == [VMAX - 1000]


def test_refractory_counting():
    p = IntLIFParams(v_th=10, v_reset=0, refractory_steps=2)
    zs, vs, cs = run(p, [20, 50, 50, 50, 50])
    # step 0 fires (counter 2); steps 1, 2 are refractory (input dropped, counter 1, 0);
    # step 3 integrates 50 and fires again (counter 2); step 4 refractory
    assert zs == [1, 0, 0, 1, 0]
    assert cs == [2, 1, 0, 2, 1]
    assert vs == [0, 0, 0, 0, 0]


def test_refractory_neuron_still_leaks():
    p = IntLIFParams(v_th=100, v_reset=64, leak_alpha=128, refractory_steps=1)
    zs, vs, cs = run(p, [200, 7, 0])
    # fire -> reset 64 -> leak floor(64*128/256) = 32; refractory: 32 -> 16 (input 7 dropped); then 8
    assert zs == [1, 0, 0] and vs == [32, 16, 8] and cs == [1, 0, 0]


def test_leak_rounds_negative_membranes_down():
    p = IntLIFParams(v_th=100, leak_alpha=128, leak_beta=0)
    _, vs, _ = run(p, [-5])
    assert vs == [-3]  # floor(-5 * 128 / 256) = floor(-2.5) = -3 (not -2)
    _, vs, _ = run(p, [5])
    assert vs == [2]  # floor(2.5) = 2
    _, vs, _ = run(IntLIFParams(v_th=100, leak_alpha=200, leak_beta=-1), [-7])
    assert vs == [-7]  # floor(-7 * 200 / 256) = floor(-5.47) = -6, then + (-1) = -7
    _, vs, _ = run(IntLIFParams(v_th=100, leak_alpha=255, leak_beta=0), [-1, 0])
    assert vs == [-1, -1]  # floor(-255/256) = -1: a tiny negative membrane never decays to 0


def test_leak_beta_saturates():
    _, vs, _ = run(IntLIFParams(v_th=VMAX, leak_alpha=256, leak_beta=1000), [0], v0=VMAX - 10)
    assert vs == [VMAX]


def test_bad_parameters_raise():
    for kw in ({"reset_mode": "zero"}, {"leak_alpha": 300}, {"refractory_steps": 16}, {"v_th": 1 << 28}):
        with pytest.raises(ParameterError):
            IntLIFParams(**kw)


# ---------------------------------------------------------------- integer spiking layer


def test_linear_layer_hand_case():
    # acc = bias + w·x = 3 + (2·1 + (-1)·1) = 4 (step 0), then 3 + 2 = 5 (step 1); shift 1 -> 2, 3 (half up: 2.5 -> 3)
    layer = IntSpikingLayer(np.array([[2, -1]], np.int8), np.array([3], np.int32), 1, IntLIFParams(v_th=4, v_reset=0))
    x = np.array([[[1, 1]], [[1, 0]], [[0, 0]]])  # (T=3, B=1, 2)
    z, state = layer.run(x)
    # v: 2 (no spike), 2 + 3 = 5 > 4 fire -> 0, then current round_half_up(3/2) = 2 -> 2
    assert z[:, 0, 0].tolist() == [0, 1, 0]
    assert state.v.tolist() == [[2]]


def test_conv_layer_matches_integer_network_reference():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, size=(4, 2, 3, 3)).astype(np.int8)
    b = rng.integers(-500, 500, size=4).astype(np.int32)
    neuron = IntLIFParams(v_th=300, reset_mode="subtract", leak_alpha=230, leak_beta=-2, refractory_steps=1)
    layer = IntSpikingLayer(w, b, 3, neuron, padding=1)
    x = rng.integers(0, 2, size=(6, 3, 2, 8, 8))  # (T, B, C, H, W) spikes
    z, _ = layer.run(x)
    assert 0.02 < z.mean() < 0.9
    net = IntNetwork("one", {"in": InputSpec((2, 8, 8))}, [layer.to_intlayer("conv", "in")], ["conv"])
    for bi in range(3):
        ref = run_reference(net, {"in": x[:, bi].astype(np.int8)})["conv"]
        assert np.array_equal(ref, z[:, bi])


def test_layer_rejects_bad_weights_and_shapes():
    with pytest.raises(ParameterError):
        IntSpikingLayer(np.array([[200]]), None, 0, IntLIFParams())
    with pytest.raises(ParameterError):
        IntSpikingLayer(np.array([[1.5]]), None, 0, IntLIFParams())
    layer = IntSpikingLayer(np.ones((3, 4), np.int8), None, 0, IntLIFParams())
    with pytest.raises(ParameterError):
        layer.run(np.ones((2, 1, 5), np.int64))
