"""The fused chain path (neurosim.snn.chain): against autograd of dense torch ops and the layer-by-layer path."""

import pytest
import torch

from neurosim.snn import chain
from neurosim.snn import layers as L
from neurosim.snn.neurons import IF, LIF, STBP, LIFBox, neuron_step
from neurosim.snn.sequential import Sequential

pytestmark = pytest.mark.skipif(not chain.available(), reason="chain kernels need the C++ build and AVX2/FMA/BMI2")


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _reference(net, x):
    """Independent reference: dense torch conv2d / linear and one neuron_step per time step, autograd through all."""
    outs, states = [], {}
    for t in range(x.shape[0]):
        h = x[t]
        for i, m in enumerate(net):
            if isinstance(m, L.Conv2d):
                h = torch.nn.functional.conv2d(h, m.weight, m.bias, padding=m.padding)
            elif isinstance(m, L.Flatten):
                h = h.flatten(1)
            elif isinstance(m, L.Linear):
                h = torch.nn.functional.linear(h, m.weight, m.bias)
            else:
                h, states[i] = neuron_step(h, states.get(i), m.params())
        outs.append(h)
    return torch.stack(outs), states


def _loss(y):
    w = torch.linspace(-1.0, 1.0, y.numel()).reshape(y.shape)
    return (y * w).sum() + 0.1 * (y ** 2).sum()


def _grads(net):
    g = [p.grad.clone() if p.grad is not None else None for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return g


CASES = [
    # (T, B, Cin, H, W, blocks [(Cout, k, pad, neuron)], head_out, input density, conv gains);
    # the gains make every spiking layer fire 8-16 % of the time (checked below)
    (6, 3, 2, 12, 10, [(16, 3, 1, LIFBox), (32, 3, 1, LIFBox)], 10, 0.15, (60.0, 30.0)),
    (1, 2, 3, 7, 9, [(8, 3, 0, lambda c: STBP(c, decay=0.6, v_th=0.4))], 5, 0.3, (1.0,)),
    (5, 2, 2, 9, 11, [(8, 5, 2, lambda c: LIFBox(reset="subtract", surrogate="arctan")),
                      (64, 1, 0, lambda c: IF(v_th=0.7, surrogate="rectangle", alpha=2.0))], 0, 0.25, (30.0, 2.0)),
    (4, 3, 1, 6, 6, [(24, 3, 2, LIFBox), (16, 3, 1, lambda c: STBP(c))], 3, 0.3, (15.0, 4.0)),
    (3, 2, 2, 7, 9, [(32, (3, 5), 1, LIFBox), (8, 3, 1, LIFBox)], 4, 0.2, (15.0, 30.0)),
]


def _build(case, seed):
    T, B, Cin, H, W, blocks, head_out, density, gains = case
    torch.manual_seed(seed)
    mods, c, h, w = [], Cin, H, W
    for (cout, k, pad, neuron), gain in zip(blocks, gains):
        conv = L.Conv2d(c, cout, k, padding=pad, spike_input=True if not mods else "auto")
        with torch.no_grad():
            conv.weight.mul_(gain)
            conv.bias.mul_(gain)
        mods += [conv, neuron(cout) if neuron not in (LIFBox,) else LIFBox()]
        kh, kw = k if isinstance(k, tuple) else (k, k)
        c, h, w = cout, h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    if head_out:
        mods += [L.Flatten(), L.Linear(c * h * w, head_out)]
    net = Sequential(*mods)
    x = (torch.rand((T, B, Cin, H, W), generator=torch.Generator().manual_seed(seed + 1)) < density).float()
    return net, x


@pytest.mark.parametrize("case", range(len(CASES)))
def test_chain_matches_dense_autograd_reference(case):
    net, x = _build(CASES[case], seed=case)
    assert chain.match(list(net), x) == len(net)
    with torch.no_grad():  # the test is only meaningful when every layer fires
        h = x
        for m in net:
            h = m.sequence(h)[0] if hasattr(m, "sequence") else m(h)
            if hasattr(m, "sequence"):
                assert 0.05 < float(h.mean()) < 0.25
    y, st = net(x, return_states=True)
    _loss(y).backward()
    g = _grads(net)
    y_ref, st_ref = _reference(net, x)
    _loss(y_ref).backward()
    g_ref = _grads(net)
    assert _rel(y, y_ref) < 1e-5
    for i in st:
        assert _rel(st[i].v, st_ref[i].v) < 1e-5
    for a, b in zip(g, g_ref):
        assert _rel(a, b) < 1e-4, b.shape


@pytest.mark.parametrize("case", range(len(CASES)))
def test_chain_agrees_with_layer_by_layer_path(case):
    net, x = _build(CASES[case], seed=10 + case)
    y, st = net(x, return_states=True)
    _loss(y).backward()
    g = _grads(net)
    with chain.disabled():
        y2, st2 = net(x, return_states=True)
        _loss(y2).backward()
    g2 = _grads(net)
    if CASES[case][6]:  # head: same spikes, summation order of the linear layer differs
        assert _rel(y, y2) < 1e-6
    else:  # spikes: bit-identical (same summation order in the convolution)
        assert torch.equal(y, y2)
    for i in st:
        assert torch.equal(st[i].v, st2[i].v)
    for a, b in zip(g, g2):
        assert _rel(a, b) < 1e-5, b.shape


def test_chain_is_deterministic_and_thread_count_independent():
    net, x = _build(CASES[0], seed=3)
    old = torch.get_num_threads()
    runs = []
    try:
        for threads in (2, 2, 1):
            torch.set_num_threads(threads)
            _loss(net(x)).backward()
            runs.append(_grads(net))
    finally:
        torch.set_num_threads(old)
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))


def test_second_backward_recomputes_the_forward():
    net, x = _build(CASES[0], seed=4)
    loss = _loss(net(x))
    loss.backward(retain_graph=True)
    g1 = _grads(net)
    loss.backward()  # saved state was released after the first backward: recomputed, same result
    g2 = _grads(net)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_what_the_chain_does_not_take():
    x = (torch.rand(3, 2, 2, 8, 8) < 0.2).float()
    base = [L.Conv2d(2, 8, 3, padding=1), LIFBox(), L.Flatten(), L.Linear(8 * 64, 4)]
    assert chain.match(base, x) == 4
    assert chain.match(base[:2], x) == 2
    assert chain.match(base, x.requires_grad_()) == 0  # input gradient wanted
    x = x.detach()
    assert chain.match(base, x * 0.5) == 0  # not 0/1 spikes
    assert chain.match([L.Conv2d(2, 8, 3, stride=2), LIFBox()], x) == 0
    assert chain.match([L.Conv2d(2, 7, 3), LIFBox()], x) == 0  # Cout not a multiple of 8
    assert chain.match([L.Conv2d(2, 8, 3), LIF()], x) == 0  # synaptic current
    assert chain.match([L.Conv2d(2, 8, 3), LIFBox(surrogate="sigmoid")], x) == 0
    assert chain.match([L.Conv2d(2, 8, 3), STBP(8, learn_threshold=True)], x) == 0
    assert chain.match([L.Conv2d(2, 8, 3, spike_input=False), LIFBox()], x) == 0
    # a network whose tail is not a chain: the chain runs the head blocks, the rest layer by layer
    net = Sequential(L.Conv2d(2, 8, 3, padding=1), LIFBox(), L.MaxPool2d(2), L.Conv2d(8, 8, 3), LIFBox())
    assert chain.match(list(net), x) == 2
    y = net(x)
    with chain.disabled():
        assert torch.equal(y, net(x))


def test_chain_without_biases_and_after_releasing_memory():
    torch.manual_seed(7)
    net = Sequential(L.Conv2d(2, 8, 3, padding=1, bias=False, spike_input=True), LIFBox(),
                     L.Conv2d(8, 16, 3, padding=1, bias=False), LIFBox(), L.Flatten(), L.Linear(16 * 36, 3, bias=False))
    with torch.no_grad():
        net[0].weight.mul_(40)
        net[2].weight.mul_(25)
    x = (torch.rand(5, 2, 2, 6, 6, generator=torch.Generator().manual_seed(8)) < 0.3).float()
    chain.release_memory()
    y = net(x)
    _loss(y).backward()
    g = _grads(net)
    y_ref, _ = _reference(net, x)
    _loss(y_ref).backward()
    g_ref = _grads(net)
    assert _rel(y, y_ref) < 1e-5 and float(y_ref.detach().abs().max()) > 0
    for a, b in zip(g, g_ref):
        assert b.abs().max() > 0 and _rel(a, b) < 1e-4
