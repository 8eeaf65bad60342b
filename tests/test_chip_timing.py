"""The cycle and energy model on a single 256×256 layer, against figures worked out by hand."""

import numpy as np
import pytest

from chip_models.config import load_chip
from chip_models.mapper import map_network
from chip_models.simulate import simulate
from chip_models.timing import estimate
from neurosim.intnet import InputSpec, IntLayer, IntNetwork


def _fc256(mode="ann"):
    layer = IntLayer(name="fc", kind="linear", source="x", mode="ann", weight=np.ones((256, 256), np.int8),
                     bias=np.zeros(256, np.int32), shift=0, activation="none")
    return IntNetwork("fc256", {"x": InputSpec((256,), 0, 1)}, [layer], ["fc"])


def test_single_256x256_layer_cycles_and_energy_by_hand():
    chip = load_chip("generic")  # 72 KB per core: the 64 KB weight tile + 1 KB state fit one core
    mapping = map_network(_fc256(), chip)
    assert len(mapping.tiles) == 1 and mapping.tiles[0].core == (0, 0)
    sim = simulate(mapping, {"x": np.full((1, 256), 2, np.int8)})  # every output = 512 → saturates to 127
    assert (sim.outputs["fc"] == 127).all()
    e = estimate(mapping, sim)

    # By hand, generic preset: 4x32 MAC array, 32 axon bytes/clock, 1 soma update/clock,
    # 1 packet/clock, 4 payload bytes per packet, 1 clock per hop, I/O port west of core (0, 0).
    axon = 256 / 32                       # 256 int8 inputs (not 0/1, so bytes, not spike bits)
    dendrite = (256 / 4) * (256 / 32)     # ceil(K/4)·ceil(M/32) for one position = 512
    soma = 256                            # 256 neurons
    out_packets = 256 / 4                 # 256 int8 outputs, dense, 4 bytes per packet
    router = out_packets + 1 * 1          # + one hop to the I/O port
    busy = axon + dendrite + soma + router
    assert busy == 841
    core = e.cores[0]
    assert (core["axon"], core["dendrite"], core["soma"], core["router"]) == (axon, dendrite, soma, router)
    assert e.frame_interval_cycles == busy  # the I/O port injects only 64 input packets
    assert e.fps == pytest.approx(300e6 / 841)
    assert e.latency_cycles == 841

    macs = 256 * 256
    hops = 64 * 1 + 64 * 1  # input packets I/O → core, output packets core → I/O, one hop each
    energy = macs * 4.6e-12 + hops * 3.0e-12 + 0.1 * 841 / 300e6
    assert e.macs_per_frame == macs and e.sops_per_frame == 0
    assert e.packet_hops_per_frame == hops
    assert e.energy_per_frame_j == pytest.approx(energy, rel=1e-12)
    assert e.mac_utilization == pytest.approx(macs / (512 * 128))


def test_256x256_layer_on_tianjic_splits_by_memory():
    """22 KB per core: each output neuron needs 256 weight bytes + 4 state bytes → 86 per core → 3 cores."""
    mapping = map_network(_fc256(), load_chip("tianjic"))
    assert [t.m_range for t in mapping.tiles] == [(0, 86), (86, 172), (172, 256)]
    assert all(t.memory_bytes <= 22528 for t in mapping.tiles)


def test_snn_dendrite_cycles_follow_activity():
    """Event-driven: an SNN 256×256 layer with 10 active inputs per step costs ceil(10/4)·8 cycles."""
    from neurosim.intneuron import IntLIFParams

    layer = IntLayer(name="fc", kind="linear", source="x", mode="snn", weight=np.ones((256, 256), np.int8),
                     shift=0, neuron=IntLIFParams(v_th=1000))
    net = IntNetwork("snn256", {"x": InputSpec((256,), 0, 4)}, [layer], ["fc"])
    mapping = map_network(net, load_chip("generic"))
    x = np.zeros((4, 256), np.int8)
    x[:, :10] = 1
    e = estimate(mapping, simulate(mapping, {"x": x}))
    assert e.cores[0]["dendrite"] == 4 * 3 * 8
    assert e.sops_per_frame == 4 * 10 * 256
    assert e.cores[0]["axon"] == 4 * 1  # 256 spike bits = 32 bytes per step
