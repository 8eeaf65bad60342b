"""neurosim's LIF / LIFBox against norse's LIFCell / LIFBoxCell: forward values and input gradients."""

import pytest
import torch
from norse.torch import LIFBoxCell, LIFBoxParameters, LIFCell, LIFParameters
from norse.torch.functional.reset import reset_subtract

from neurosim.snn.fused import neuron_sequence
from neurosim.snn.neurons import lif_box_params, lif_params, neuron_step

T, SHAPE = 40, (4, 3, 6, 6)


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _norse_run(cell, x):
    state, zs, vs = None, [], []
    for t in range(x.shape[0]):
        z, state = cell(x[t], state)
        zs.append(z)
        vs.append(state.v)
    return torch.stack(zs), torch.stack(vs)


def _ours_run(p, x):
    state, zs, vs = None, [], []
    for t in range(x.shape[0]):
        z, state = neuron_step(x[t], state, p)
        zs.append(z)
        vs.append(state.v)
    return torch.stack(zs), torch.stack(vs)


CASES = {
    "LIFCell": (lambda: LIFCell(LIFParameters()), lambda: lif_params(), 0.8),
    "LIFCell-tau": (lambda: LIFCell(LIFParameters(tau_mem_inv=torch.tensor(150.0), tau_syn_inv=torch.tensor(300.0),
                                                  v_th=torch.tensor(0.7), v_reset=torch.tensor(-0.1))),
                    lambda: lif_params(tau_mem_inv=150.0, tau_syn_inv=300.0, v_th=0.7, v_reset=-0.1), 0.8),
    "LIFBoxCell": (lambda: LIFBoxCell(LIFBoxParameters()), lambda: lif_box_params(), 4.0),
    "LIFBoxCell-subtract": (lambda: LIFBoxCell(LIFBoxParameters(reset_method=reset_subtract, v_th=torch.tensor(0.8))),
                            lambda: lif_box_params(reset="subtract", v_th=0.8), 4.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_input_gradients_match_norse(case):
    make_norse, make_params, scale = CASES[case]
    g = torch.Generator().manual_seed(7)
    x0 = torch.rand((T,) + SHAPE, generator=g) * scale
    w = torch.randn((T,) + SHAPE, generator=g)
    wv = torch.randn((T,) + SHAPE, generator=g)

    x1 = x0.clone().requires_grad_()
    z1, v1 = _norse_run(make_norse(), x1)
    ((z1 * w).sum() + (v1 * wv).sum()).backward()

    x2 = x0.clone().requires_grad_()
    z2, v2 = _ours_run(make_params(), x2)
    ((z2 * w).sum() + (v2 * wv).sum()).backward()

    assert 0.05 < z1.mean().item() < 0.95
    assert torch.equal(z1, z2)
    assert _rel(v2, v1) <= 1e-5
    assert _rel(x2.grad, x1.grad) <= 1e-5

    # the fused multi-step path: same spikes, same gradients of a spike loss
    x1.grad = None
    z1, _ = _norse_run(make_norse(), x1)
    (z1 * w).sum().backward()
    x3 = x0.clone().requires_grad_()
    z3, _ = neuron_sequence(x3, make_params())
    (z3 * w).sum().backward()
    assert torch.equal(z3, z1)
    assert _rel(x3.grad, x1.grad) <= 1e-5
