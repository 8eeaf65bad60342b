"""Layers, the fused sequence path, encoders and parameter errors."""

import numpy as np
import pytest
import torch

from neurosim.errors import InputError, ParameterError
from neurosim.snn import layers as L
from neurosim.snn.encode import (EventsToBins, events_to_batch, events_to_bins, first_spike_times, latency_code,
                                 membrane_readout, rate_code, spike_counts)
from neurosim.snn.fused import neuron_sequence, spike_conv2d
from neurosim.snn.neurons import (LIF, IF, Neuron, NeuronParams, STBP, LIFBox, lif_params, neuron_step,
                                  stbp_params)
from neurosim.snn.sequential import Sequential
from neurosim.snn.surrogate import spike


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("padding,cout", [(0, 7), (1, 7), (2, 7), (1, 8), (0, 16), (1, 32), (2, 64)])
def test_spike_conv_matches_dense_conv_forward_and_gradients(padding, cout):
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(10, 5, 11, 9, generator=g) < 0.2).float().requires_grad_()
    conv = torch.nn.Conv2d(5, cout, 3, padding=padding)
    w_out = torch.randn(10, cout, 9 + 2 * padding, 7 + 2 * padding, generator=g)
    y1 = spike_conv2d(s, conv.weight, conv.bias, padding)
    (y1 * w_out).sum().backward()
    g1 = [s.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()]
    s.grad = None
    conv.zero_grad()
    y2 = torch.nn.functional.conv2d(s, conv.weight, conv.bias, padding=padding)
    (y2 * w_out).sum().backward()
    assert _rel(y1, y2) < 1e-6
    for a, b in zip(g1, [s.grad, conv.weight.grad, conv.bias.grad]):
        assert _rel(a, b) < 1e-5


def test_sequential_equals_step_by_step_reference():
    torch.manual_seed(1)
    net = Sequential(L.Conv2d(2, 4, 3, padding=1), LIF(), L.MaxPool2d(2), L.Conv2d(4, 6, 3),
                     STBP(channels=6, learn_threshold=True, learn_leak=True), L.Flatten(), L.Linear(6 * 2 * 2, 3))
    with torch.no_grad():
        net[0].weight.mul_(10)
        net[3].weight.mul_(3)
    assert net[3].spike_input is True  # behind a MaxPool of spikes the input stays binary
    x = (torch.rand(15, 3, 2, 8, 8) < 0.3).float()
    y = net(x)
    (y ** 2).sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    # reference: dense torch ops, one neuron_step per time step, autograd through everything
    s1 = s2 = None
    outs = []
    for t in range(x.shape[0]):
        h = torch.nn.functional.conv2d(x[t], net[0].weight, net[0].bias, padding=1)
        h, s1 = neuron_step(h, s1, net[1].params())
        h = torch.nn.functional.conv2d(torch.nn.functional.max_pool2d(h, 2), net[3].weight, net[3].bias)
        h, s2 = neuron_step(h, s2, net[4].params())
        outs.append(torch.nn.functional.linear(h.flatten(1), net[6].weight, net[6].bias))
    y_ref = torch.stack(outs)
    (y_ref ** 2).sum().backward()
    assert _rel(y, y_ref) < 1e-5
    for a, p in zip(grads, net.parameters()):
        assert _rel(a, p.grad) < 1e-4, p.shape


def test_refractory_and_subtract_reset_in_fused_path():
    p = NeuronParams(tau_mem_inv=0.0, leak=False, v_th=1.0, reset="subtract", refractory_steps=2, dt=1e-3)
    p = p._replace(tau_mem_inv=1000.0)  # IF with dt·tau_mem_inv = 1: v' = v + x
    x = torch.tensor([2.5, 2.5, 2.5, 2.5, 0.0, 0.0, 0.0, 0.0]).reshape(8, 1, 1)
    z, state = neuron_sequence(x, p)
    # v: 2.5 fire -> 1.5 (counter 2); 2 refractory steps (input dropped); 4.0 fire -> 3.0;
    # 2 refractory steps; 3.0 fire -> 2.0; refractory
    assert z.flatten().tolist() == [1, 0, 0, 1, 0, 0, 1, 0]
    assert state.v.item() == 2.0 and state.counter.item() == 1
    zs, st = [], None
    for t in range(8):
        zt, st = neuron_step(x[t], st, p)
        zs.append(zt)
    assert torch.equal(torch.stack(zs), z)


def test_surrogates_by_name():
    x = torch.tensor([-1.0, -0.2, 0.3, 2.0], requires_grad=True)
    for name, expected in {
        "superspike": 1 / (x.abs() + 1) ** 2,
        "fast_sigmoid": 1 / (25 * x.abs() + 1) ** 2,
        "rectangle": (x.abs() < 0.5).float(),
        "arctan": 1.0 / (1 + (np.pi / 2 * 2 * x) ** 2),
    }.items():
        x.grad = None
        z = spike(x, name)
        z.sum().backward()
        assert z.tolist() == [0, 0, 1, 1]
        assert torch.allclose(x.grad, expected.detach())


def test_dropout_mask_is_shared_over_time_and_pooling():
    d = L.Dropout(0.5)
    y = d(torch.ones(7, 4, 3, 5, 5))
    assert torch.equal(y[0], y[6]) and 0 < (y[0] == 0).float().mean() < 1
    x = torch.ones(2, 1, 1, 4, 4)
    assert L.SumPool2d(2)(x).flatten().tolist() == [4.0] * 8
    assert L.AvgPool2d(2)(x).flatten().tolist() == [1.0] * 8


# ------------------------------------------------------------------------------ encoders


def _events(xs, ys, ts, ps):
    ev = np.zeros(len(xs), dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
    ev["x"], ev["y"], ev["t"], ev["p"] = xs, ys, ts, ps
    return ev


def test_events_to_bins_by_hand():
    ev = _events([0, 3, 3, 1, 2], [0, 1, 1, 2, 0], [100, 999, 1000, 2500, 5000], [1, 0, 0, 1, 1])
    b = events_to_bins(ev, (4, 3), bin_us=1000, n_bins=3, t_start=0)
    assert b.shape == (3, 2, 3, 4)
    assert b[0, 1, 0, 0] == 1 and b[0, 0, 1, 3] == 1 and b[1, 0, 1, 3] == 1 and b[2, 1, 2, 1] == 1
    assert b.sum() == 4  # the event at 5000 µs is outside the 3 ms window
    ev2 = _events([3, 3], [1, 1], [10, 20], [0, 0])
    assert events_to_bins(ev2, (4, 3), 1000, 1, 0)[0, 0, 1, 3] == 2
    assert EventsToBins((4, 3), 1000, 1)(ev2, 0)[0, 0, 1, 3] == 1
    batch = events_to_batch([ev, ev2], (4, 3), 1000, 3, t_starts=[0, 0])
    assert batch.shape == (3, 2, 2, 3, 4)
    with pytest.raises(InputError):
        events_to_bins(ev, (3, 3), 1000, 3)  # x = 3 outside a width-3 sensor
    with pytest.raises(InputError):
        events_to_bins(np.zeros(3), (4, 3), 1000, 3)


def test_frame_codes_and_decoders():
    f = torch.tensor([[0.0, 0.5, 1.0]])
    lat = latency_code(f, 5)
    assert first_spike_times(lat).tolist() == [[5, 2, 0]]  # never / middle / first step
    r = rate_code(torch.full((2, 1000), 0.3), 20, generator=torch.Generator().manual_seed(0))
    assert abs(spike_counts(r).mean().item() / 20 - 0.3) < 0.01
    v = torch.tensor([[1.0], [3.0], [2.0]])
    assert membrane_readout(v, "max").item() == 3 and membrane_readout(v, "last").item() == 2
    with pytest.raises(InputError):
        rate_code(torch.tensor([1.5]), 3)


# ----------------------------------------------------------------------- parameter errors


@pytest.mark.parametrize("kw", [
    {"tau_mem_inv": -5.0}, {"tau_syn_inv": -200.0}, {"v_th": 0.0}, {"v_th": -1.0}, {"dt": -1e-3},
    {"reset": "zero"}, {"refractory_steps": -1}, {"surrogate": "nope"}, {"tau_mem_inv": 5000.0},
    {"v_th": torch.ones(3), "v_leak": torch.zeros(4)},
])
def test_bad_parameters_raise_parameter_error(kw):
    with pytest.raises(ParameterError):
        Neuron(NeuronParams(**kw))


def test_mismatched_shapes_raise_parameter_error():
    with pytest.raises(ParameterError, match="channels"):
        LIFBox(channels=4)(torch.zeros(2, 3, 5, 5))
    with pytest.raises(ParameterError):
        Neuron(NeuronParams(v_th=torch.ones(3)), channels=4)
    with pytest.raises(ParameterError):
        L.Conv2d(2, 4, 3)(torch.zeros(5, 2, 3, 8, 8))
    with pytest.raises(ParameterError):
        L.Linear(10, 2)(torch.zeros(5, 2, 9))
    with pytest.raises(ParameterError):
        stbp_params(decay=1.0)
    with pytest.raises(ParameterError):
        neuron_sequence(torch.zeros(3, 2, 5), NeuronParams(v_th=torch.ones(4)))


def test_event_bins_match_tonic_to_frame_on_real_nmnist(shared_data):
    import tonic
    from tonic.io import read_mnist_file

    ev = read_mnist_file(str(shared_data / "events" / "nmnist_sample.bin"),
                         dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    ref = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), time_window=10000)(ev)
    ours = events_to_bins(ev, (34, 34), 10000, ref.shape[0], t_start=int(ev["t"].min()))
    assert ref.sum() > 4000
    assert np.array_equal(ours, ref)


def test_read_sequence_events_window(tmp_path):
    import h5py

    from neurosim.snn.encode import read_sequence_events

    t = np.array([10, 500, 999, 1000, 1500, 2999, 3000, 4200], np.int64)
    path = tmp_path / "seq.h5"
    with h5py.File(path, "w") as f:
        f["events/x"] = np.arange(8, dtype=np.uint16)
        f["events/y"] = np.zeros(8, np.uint16)
        f["events/t"] = t
        f["events/p"] = np.ones(8, np.uint8)
        f["ms_to_idx"] = np.searchsorted(t, np.arange(0, 5001, 1000))
    ev = read_sequence_events(path, 999, 3000)
    assert ev["t"].tolist() == [999, 1000, 1500, 2999] and ev["x"].tolist() == [2, 3, 4, 5]
    with pytest.raises(InputError):
        read_sequence_events(tmp_path / "none.h5", 0, 10)


@pytest.mark.parametrize("cout", [5, 16])
def test_spike_conv_is_exact_for_non_binary_sparse_input(cout):
    g = torch.Generator().manual_seed(4)
    s = torch.rand(4, 4, 7, 7, generator=g) * (torch.rand(4, 4, 7, 7, generator=g) < 0.3)
    s[:2] = (s[:2] > 0).float()  # two binary samples, two with other values
    s.requires_grad_()
    conv = torch.nn.Conv2d(4, cout, 3, padding=1)
    y = spike_conv2d(s, conv.weight, conv.bias, 1)
    assert _rel(y, conv(s)) < 1e-6
    y.sum().backward()
    gw = conv.weight.grad.clone()
    conv.zero_grad()
    conv(s).sum().backward()
    assert _rel(gw, conv.weight.grad) < 1e-5


def test_fused_training_step_is_deterministic():
    def run():
        torch.manual_seed(5)
        net = Sequential(L.Conv2d(2, 8, 3, padding=1), LIF(), L.Conv2d(8, 4, 3, padding=1), LIFBox(), L.Flatten(),
                         L.Linear(4 * 10 * 10, 3))
        with torch.no_grad():
            net[0].weight.mul_(20)
            net[2].weight.mul_(5)
        x = (torch.rand(6, 4, 2, 10, 10, generator=torch.Generator().manual_seed(6)) < 0.2).float()
        net(x).square().sum().backward()
        return [p.grad.clone() for p in net.parameters()]
    a, b = run(), run()
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert a[0].abs().sum() > 0
