"""NIR export/import: exact round trip, correct time constants, norse-built networks."""

import nir
import numpy as np
import pytest
import torch
import norse.torch as norse

from neurosim.errors import ParameterError
from neurosim.snn import layers as L
from neurosim.snn.neurons import IF, LI, LIF, STBP, LIFBox
from neurosim.snn.nir_io import from_nir, from_norse, load_graph, repair_norse_export, save_nir, to_nir
from neurosim.snn.sequential import Sequential


def _net():
    torch.manual_seed(0)
    net = Sequential(
        L.Conv2d(2, 4, 3, padding=1), LIF(), L.SumPool2d(2), L.Conv2d(4, 4, 3), STBP(channels=4, learn_threshold=True),
        L.AvgPool2d(2), L.Flatten(), L.Linear(36, 5), IF(), L.Linear(5, 3), LI(),
    )
    with torch.no_grad():
        net[0].weight.mul_(8.0)
        net[4].v_th.copy_(torch.tensor([0.3, 0.4, 0.5, 0.6]))
        net[7].weight.mul_(4.0)
    return net


def test_round_trip_reproduces_outputs_exactly(tmp_path):
    net = _net()
    x = (torch.rand(12, 3, 2, 16, 16, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    y1, states = net(x, return_states=True)
    path = save_nir(net, tmp_path / "net.nir", (2, 16, 16))
    graph = nir.read(str(path))
    kinds = [type(graph.nodes[n]).__name__ for n in sorted(graph.nodes) if n not in ("input", "output")]
    assert set(kinds) == {"Conv2d", "CubaLIF", "SumPool2d", "LIF", "AvgPool2d", "Flatten", "Affine", "IF", "LI"}
    # correct continuous time constants: tau = 1/tau_inv seconds (norse defaults 100/s and 200/s)
    cuba = graph.nodes["1_neuron"]
    assert np.allclose(cuba.tau_mem, 0.01) and np.allclose(cuba.tau_syn, 0.005) and np.all(cuba.w_in == 1)
    assert np.allclose(graph.nodes["4_neuron"].tau, 1e-3 / 0.5)  # STBP decay 0.5 at dt = 1 ms
    assert graph.nodes["4_neuron"].v_threshold.shape == (4, 6, 6)
    net2 = from_nir(path)
    y2, states2 = net2(x, return_states=True)
    assert states[1][0].abs().sum() > 0 and states[8][0].abs().sum() > 0  # layers are active
    assert torch.equal(y1, y2)
    for k in states:
        assert torch.equal(states[k].v, states2[k].v)


def _norse_model():
    torch.manual_seed(2)
    model = norse.SequentialState(
        torch.nn.Linear(20, 16), norse.LIFCell(norse.LIFParameters(tau_mem_inv=torch.tensor(150.0), tau_syn_inv=torch.tensor(250.0))),
        torch.nn.Linear(16, 8), norse.LIFBoxCell(),
    )
    with torch.no_grad():
        model[0].weight.mul_(2.0)
        model[2].weight.mul_(20.0)
        model[2].bias.fill_(1.0)
    return model


def _norse_outputs(model, x):
    out, state = [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            z, state = model(x[t], state)
            out.append(z)
    return torch.stack(out)


def test_norse_network_imports_with_right_time_constants(tmp_path):
    model = _norse_model()
    x = torch.rand(30, 4, 20, generator=torch.Generator().manual_seed(3)) * 3
    ref = _norse_outputs(model, x)
    assert 0.02 < ref.mean() < 0.9

    # 1) converted and exported by neurosim: exact time constants, same spikes as norse
    path = save_nir(from_norse(list(model)), tmp_path / "norse.nir", (20,))
    g = load_graph(path)
    assert np.allclose(g.nodes["1_neuron"].tau_mem, 1 / 150.0, rtol=1e-12)
    assert np.allclose(g.nodes["1_neuron"].tau_syn, 1 / 250.0, rtol=1e-12)
    assert np.allclose(g.nodes["3_neuron"].tau, 1 / 100.0, rtol=1e-12)
    assert torch.equal(from_nir(path)(x), ref)

    # 2) norse 1.1.0's own export writes tau = dt / tau_inv (1000x too small at dt = 1 ms) ...
    bad = norse.to_nir(model, torch.zeros(1, 20))
    lif_name = next(n for n, v in bad.nodes.items() if isinstance(v, nir.CubaLIF))
    assert np.allclose(bad.nodes[lif_name].tau_mem, 1e-3 / 150.0, rtol=1e-6)
    with pytest.raises(ParameterError, match="unstable"):
        from_nir(bad)  # tau_inv = 150000/s: the Euler step is meaningless
    # ... and after repair_norse_export it imports with the right constants and reproduces norse
    fixed = repair_norse_export(bad)
    assert np.allclose(fixed.nodes[lif_name].tau_mem, 1 / 150.0, rtol=1e-6)
    out = from_nir(fixed)(x)
    assert (out == ref).float().mean() > 0.999


def test_export_rejects_unknown_layers_and_shape_mismatch():
    with pytest.raises(ParameterError):
        to_nir(Sequential(L.Linear(4, 3), LIFBox()), (5,))
    with pytest.raises(ParameterError):
        to_nir(Sequential(L.MaxPool2d(2)), (1, 4, 4))


def test_round_trip_threshold_linear_cubali_and_subtract_reset(tmp_path):
    torch.manual_seed(3)
    from neurosim.snn.neurons import Neuron, NeuronParams

    net = Sequential(
        L.Linear(6, 5, bias=False), L.Threshold(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])),
        L.Linear(5, 4), Neuron(NeuronParams(reset="subtract", refractory_steps=2, v_th=0.3)),
        L.Linear(4, 2), LI(tau_syn_inv=300.0),
    )
    x = torch.rand(10, 3, 6, generator=torch.Generator().manual_seed(0))
    path = save_nir(net, tmp_path / "t.nir", (6,))
    g = load_graph(path)
    assert {type(v).__name__ for v in g.nodes.values()} >= {"Linear", "Threshold", "Affine", "LIF", "CubaLI"}
    net2 = from_nir(path)
    assert net2[3].p.reset == "subtract" and net2[3].p.refractory_steps == 2
    y1, y2 = net(x), net2(x)
    assert y1.abs().sum() > 0 and torch.equal(y1, y2)
