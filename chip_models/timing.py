"""Cycle and energy model: cycles per core per phase from the work done, pipelined layers.

Every core runs, for each time step of its layer, the TianjicX phase sequence
Axon → Dendrite (MAC array) → Soma → Router; the phases of one core are sequential, the cores
run in parallel. For a tile with fan-in ``K`` (inputs per neuron), ``M`` output channels and
``P`` positions, per step (``T`` steps per frame, all figures per frame):

* axon:     ``ceil(bytes / axon_bytes_per_clock)``, bytes = ``K·P`` (int8 inputs) or
  ``ceil(K·P / 8)`` when the input holds only 0/1 (spike bits: SNN outputs, event bins);
  pooling reads ``K·M·P`` values.
* dendrite: ANN ``P·ceil(K / mac_rows)·ceil(M / mac_cols)`` (the array takes ``mac_rows`` inputs
  × ``mac_cols`` neurons per clock); SNN, event-driven: ``ceil(A / mac_rows)·ceil(M / mac_cols)``
  with ``A`` the active inputs (nonzero input × position pairs) per step, measured by the
  simulation; pooling ``P·ceil(K / mac_rows)·ceil(M / mac_cols)``.
* soma:     ``ceil(M·P·(1 + s) / soma_neurons_per_clock)``, ``s`` = partial sums merged in
  (split-input tiles).
* router:   ``packets / router_packets_per_clock + max_hops·hop_cycles`` (if it sends any),
  packets = the cheaper of dense (``packet_payload_bytes`` per packet) and sparse (one per
  nonzero value / spike) per route, as measured; partial sums are int32, dense.

Throughput: frames are pipelined through the layers, so the frame interval is the busiest
core's cycles per frame (``max_c Σ_phases``; the I/O port counts as a core that injects the
input packets). ``FPS = clock_hz / interval``.
Latency: along each chain input → output layer, ``Σ_layers s_l + (T - 1)·max_l s_l`` with
``s_l`` the slowest core of layer ``l`` per step (the pipeline fills once, then one step per
slowest stage); the longest chain counts.
Lock-step rounds (how Tianjic runs: cores synchronized per step): a round lasts as long as the
slowest core's step, ``round = max_c busy_c / T_c``; ``rounds_per_frame`` = the largest ``T``;
``lockstep_fps = clock_hz / (round · rounds_per_frame)`` (reported beside the pipelined FPS).
Energy per frame: ``MACs·energy_per_mac + SOPs·energy_per_sop + packet_hops·energy_per_hop +
static_power·interval``; ``SOPs = A·M`` (synaptic operations), pooling operations count as SOPs.
Utilization: MAC array — useful MACs or SOPs / (dendrite cycles · mac_rows · mac_cols); core —
busy cycles / interval.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from chip_models.mapper import IO, Mapping
from chip_models.simulate import SimResult

PHASES = ("axon", "dendrite", "soma", "router")


@dataclasses.dataclass
class Estimate:
    """Result of :func:`estimate`: chip-level figures plus per-layer and per-core tables."""

    chip: str
    network: str
    clock_hz: float
    frames: int
    cores_used: int
    cores_available: int
    frame_interval_cycles: float
    fps: float
    latency_cycles: float
    latency_s: float
    energy_per_frame_j: float
    energy_breakdown_j: dict
    power_w: float
    macs_per_frame: float
    sops_per_frame: float
    packets_per_frame: float
    packet_hops_per_frame: float
    mac_utilization: float
    core_utilization: float
    bottleneck: str
    round_cycles: float
    rounds_per_frame: int
    lockstep_fps: float
    layers: list
    cores: list

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _ceil(a: float, b: float) -> float:
    return float(math.ceil(a / b)) if a > 0 else 0.0


def estimate(mapping: Mapping, sim: SimResult) -> Estimate:
    """Cycles, FPS, latency and energy of ``mapping`` from the work measured in ``sim``.

    Returns an :class:`Estimate`: ``fps`` (pipelined frames per second), ``latency_s``,
    ``energy_per_frame_j``, ``power_w``, MACs / SOPs / packets per frame, utilizations in [0, 1],
    the ``bottleneck`` layer, and per-layer (``layers``) and per-core (``cores``) tables in cycles."""
    chip, net = mapping.chip, mapping.net
    frames = sim.frames
    n = len(mapping.tiles)
    ph = np.zeros((n, 4))
    macs, sops = np.zeros(n), np.zeros(n)
    packets_out, hops_out, max_hops = np.zeros(n), np.zeros(n), np.zeros(n)
    io_packets = io_hops = 0.0
    for i, r in enumerate(mapping.routes):
        p = sim.route_packets[i] / frames
        if r.src == IO:
            io_packets += p
            io_hops += p * r.hops
        else:
            packets_out[r.src] += p
            hops_out[r.src] += p * r.hops
            if p > 0:
                max_hops[r.src] = max(max_hops[r.src], r.hops)
    merges = np.zeros(n)
    for t in mapping.tiles:
        if t.merge_into is not None:
            merges[t.merge_into] += 1
    for t in mapping.tiles:
        lm = mapping.layers[t.layer]
        layer = net.layer(t.layer)
        steps = lm.steps
        m, p, k = t.m_range[1] - t.m_range[0], t.p_range[1] - t.p_range[0], t.fan_in
        spikes_in = sim.binary.get(lm.source, False)
        if layer.kind in ("maxpool", "sumpool"):
            bytes_in = k * m * p
            ph[t.id, 0] = steps * _ceil(bytes_in / 8 if spikes_in else bytes_in, chip.axon_bytes_per_clock)
            ph[t.id, 1] = steps * p * _ceil(k, chip.mac_rows) * _ceil(m, chip.mac_cols)
            sops[t.id] = steps * k * m * p
        else:
            ph[t.id, 0] = steps * _ceil(math.ceil(k * p / 8) if spikes_in else k * p, chip.axon_bytes_per_clock)
            if layer.mode == "ann":
                ph[t.id, 1] = steps * p * _ceil(k, chip.mac_rows) * _ceil(m, chip.mac_cols)
                macs[t.id] = steps * k * m * p
            else:
                a = sim.active_inputs[t.id] / frames  # per frame
                ph[t.id, 1] = steps * _ceil(a / steps, chip.mac_rows) * _ceil(m, chip.mac_cols)
                sops[t.id] = a * m
        ph[t.id, 2] = steps * _ceil(m * p * (1 + merges[t.id]), chip.soma_neurons_per_clock)
        if t.merge_into is not None:
            ph[t.id, 2] = 0.0  # a split-input tile hands its partial sums to the head tile's soma
        if packets_out[t.id] > 0:
            ph[t.id, 3] = packets_out[t.id] / chip.router_packets_per_clock + steps * max_hops[t.id] * chip.hop_cycles
    busy = ph.sum(axis=1)
    io_cycles = io_packets / chip.router_packets_per_clock
    interval = float(max(busy.max(initial=0.0), io_cycles, 1.0))
    bottleneck = "I/O port" if io_cycles >= busy.max(initial=0.0) else \
        f"core {mapping.tiles[int(busy.argmax())].core} ({mapping.tiles[int(busy.argmax())].layer})"

    # latency along chains
    step_time = {}
    for name, lm in mapping.layers.items():
        if lm.tiles:
            step_time[name] = max(busy[t] for t in lm.tiles) / max(lm.steps, 1)
    latency = 0.0
    for out in net.outputs:
        chain, name = [], out
        while name not in net.inputs:
            if name in step_time:
                chain.append(step_time[name])
            name = net.layer(name).source
        if chain:
            latency = max(latency, sum(chain) + (mapping.steps[out] - 1) * max(chain))

    per_step = np.array([busy[t.id] / max(mapping.layers[t.layer].steps, 1) for t in mapping.tiles])
    round_cycles = float(max(per_step.max(initial=0.0), 1.0))
    rounds = max((lm.steps for lm in mapping.layers.values() if lm.tiles), default=1)
    hops_total = float(hops_out.sum() + io_hops)
    e_mac = float(macs.sum()) * chip.energy_per_mac_pj * 1e-12
    e_sop = float(sops.sum()) * chip.energy_per_sop_pj * 1e-12
    e_hop = hops_total * chip.energy_per_hop_pj * 1e-12
    e_static = chip.static_power_w * interval / chip.clock_hz
    energy = e_mac + e_sop + e_hop + e_static
    array = chip.mac_rows * chip.mac_cols
    mac_util = float((macs.sum() + sops.sum()) / max(ph[:, 1].sum() * array, 1.0))

    layers = []
    for name, lm in mapping.layers.items():
        if not lm.tiles:
            continue
        ids = lm.tiles
        layers.append({
            "name": name, "kind": lm.kind, "mode": lm.mode, "cores": len(ids), "steps": lm.steps,
            "cycles_per_frame_max_core": float(busy[ids].max()),
            "phase_cycles_max_core": dict(zip(PHASES, map(float, ph[ids].max(axis=0)))),
            "macs": float(macs[ids].sum()), "sops": float(sops[ids].sum()),
            "packets": float(packets_out[ids].sum()), "packet_hops": float(hops_out[ids].sum()),
            "energy_j": float(macs[ids].sum() * chip.energy_per_mac_pj * 1e-12 + sops[ids].sum() * chip.energy_per_sop_pj
                              * 1e-12 + hops_out[ids].sum() * chip.energy_per_hop_pj * 1e-12),
            "utilization": float(busy[ids].mean() / interval),
        })
    cores = [
        {"core": list(t.core), "layer": t.layer, "neurons": t.neurons, "fan_in": t.fan_in,
         "memory_bytes": t.memory_bytes, **dict(zip(PHASES, map(float, ph[t.id]))), "busy": float(busy[t.id]),
         "macs": float(macs[t.id]), "sops": float(sops[t.id]), "packets": float(packets_out[t.id])}
        for t in mapping.tiles
    ]
    return Estimate(
        chip=chip.name, network=net.name, clock_hz=chip.clock_hz, frames=frames, cores_used=n,
        cores_available=chip.cores, frame_interval_cycles=interval, fps=chip.clock_hz / interval,
        latency_cycles=float(latency), latency_s=float(latency) / chip.clock_hz, energy_per_frame_j=energy,
        energy_breakdown_j={"mac": e_mac, "sop": e_sop, "router": e_hop, "static": e_static},
        power_w=energy * chip.clock_hz / interval, macs_per_frame=float(macs.sum()), sops_per_frame=float(sops.sum()),
        packets_per_frame=float(packets_out.sum() + io_packets), packet_hops_per_frame=hops_total,
        mac_utilization=mac_util, core_utilization=float(busy.mean() / interval), bottleneck=bottleneck,
        round_cycles=round_cycles, rounds_per_frame=int(rounds),
        lockstep_fps=chip.clock_hz / (round_cycles * rounds),
        layers=layers, cores=cores,
    )
