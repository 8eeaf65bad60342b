"""Cross-checks of neurosim's float LIF against brian2 (the trusted simulator).

brian2 runs the same population with the numpy code-generation target and explicit Euler
(``method='euler'``; brian2 would otherwise pick ``exact``, which differs), dimensionless::

    dv/dt    = (v_leak - v + isyn) * tau_mem_inv : 1
    disyn/dt = -isyn * tau_syn_inv               : 1      (with synaptic current)
    threshold 'v > v_th', reset 'v = v_reset'

The input of step k is added to ``isyn`` (or set as ``x`` without synaptic current) by
``run_regularly(..., when='start')``, i.e. before the Euler update of that step — which is
norse's order (synaptic input through ``on_pre`` would arrive one step later). brian2
reserves the name ``i`` (the neuron index), hence ``isyn``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from neurosim.errors import ParameterError
from neurosim.snn.neurons import NeuronParams, neuron_step


@dataclasses.dataclass
class CrosscheckResult:
    """Outcome of :func:`crosscheck_brian2`: spike mismatches and max |Δv| over all steps."""

    neurons: int
    steps: int
    synaptic: bool
    spikes_brian2: int
    spikes_neurosim: int
    spike_mismatches: int
    max_abs_dv: float
    seconds_brian2: float
    seconds_neurosim: float


def run_brian2(inputs: np.ndarray, p: NeuronParams) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``p`` (LIF with or without synaptic current) in brian2 on ``inputs`` (T, N).

    Returns (spikes (T, N) bool, membrane after reset (T, N) float64).
    """
    import brian2 as b2

    if not p.leak or not p.spiking or p.reset != "value" or p.refractory_steps or p.r != 1.0:
        raise ParameterError("the brian2 cross-check covers the LIF with value reset, r = 1, no refractory period")
    T, N = inputs.shape
    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    b2.defaultclock.dt = p.dt * b2.second
    namespace = {
        "tau_mem_inv": float(p.tau_mem_inv) / b2.second, "v_leak": float(p.v_leak), "v_th": float(p.v_th),
        "v_reset": float(p.v_reset), "inp": b2.TimedArray(np.asarray(inputs, np.float64), dt=p.dt * b2.second),
    }
    if p.tau_syn_inv is not None:
        namespace["tau_syn_inv"] = float(p.tau_syn_inv) / b2.second
        eqs = "dv/dt = (v_leak - v + isyn) * tau_mem_inv : 1\ndisyn/dt = -isyn * tau_syn_inv : 1"
        code = "isyn += inp(t, i)"
    else:
        eqs = "dv/dt = (v_leak - v + x) * tau_mem_inv : 1\nx : 1"
        code = "x = inp(t, i)"
    group = b2.NeuronGroup(N, eqs, threshold="v > v_th", reset="v = v_reset", method="euler", namespace=namespace)
    group.v = float(p.v_leak)
    group.run_regularly(code, when="start")
    vmon = b2.StateMonitor(group, "v", record=True, when="end")
    smon = b2.SpikeMonitor(group)
    net = b2.Network(group, vmon, smon)
    net.run(T * p.dt * b2.second, namespace=namespace)
    spikes = np.zeros((T, N), bool)
    steps = np.round(np.asarray(smon.t / b2.second) / p.dt).astype(np.int64)
    spikes[steps, np.asarray(smon.i)] = True
    return spikes, np.asarray(vmon.v).T.copy()


def run_neurosim(inputs: np.ndarray, p: NeuronParams, dtype: torch.dtype = torch.float64):
    """The same population with :func:`neuron_step` in ``dtype``: (spikes (T, N), v (T, N))."""
    x = torch.as_tensor(inputs, dtype=dtype)
    state, zs, vs = None, [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            z, state = neuron_step(x[t][None], state, p)
            zs.append(z[0])
            vs.append(state.v[0])
    return torch.stack(zs).numpy() > 0, torch.stack(vs).numpy().astype(np.float64)


def crosscheck_brian2(
    neurons: int = 1000, steps: int = 1000, synaptic: bool = True, seed: int = 0, scale: float | None = None
) -> CrosscheckResult:
    """Drive ``neurons`` norse-default LIFs with uniform random input in brian2 and neurosim."""
    import time

    if neurons < 1 or steps < 1:
        raise ParameterError("neurons and steps must be ≥ 1")
    rng = np.random.default_rng(seed)
    p = NeuronParams(tau_mem_inv=100.0, tau_syn_inv=200.0 if synaptic else None)
    scale = scale if scale is not None else (0.6 if synaptic else 3.0)
    inputs = rng.uniform(0.0, scale, size=(steps, neurons))
    t0 = time.perf_counter()
    zb, vb = run_brian2(inputs, p)
    t1 = time.perf_counter()
    zn, vn = run_neurosim(inputs, p)
    t2 = time.perf_counter()
    return CrosscheckResult(
        neurons, steps, synaptic, int(zb.sum()), int(zn.sum()), int((zb != zn).sum()),
        float(np.abs(vb - vn).max()), round(t1 - t0, 3), round(t2 - t1, 3),
    )
