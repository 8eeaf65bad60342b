"""Functional simulation of a mapped network, core by core, on the C++ kernels.

For every layer, each core (tile) computes its partial accumulator from its own input slice
(input channels × the receptive fields of its positions) and its weight slice, batched over all
time steps of the run (the accumulation has no state). Tiles that differ only in their
positions share their weights, so one kernel call computes all of them (their rows are
contiguous blocks); tiles with different input or output ranges are separate calls, and
split-input tiles' partial sums are added (int64, then saturated to int32, as
:func:`neurosim.intmath.mac`). Then the soma runs: the ANN output stage, or the integer LIF
step by step (``lif_run``, state carried across all steps). Pooling runs vectorized.

Conv layers run whole (all tiles, all steps) in one C++ call (:func:`kernels.conv_layer`:
accumulation — event-driven, spike-pattern tables or a dense plane for spikes, im2col + the
dense int8 MAC for int8 activations — bias, requantization and the soma fused; see
:func:`_conv_fused` for why this equals the tiles' partial sums and how each tile's work is
still counted exactly). Linear layers (and, with ``FUSED = False``, conv layers) run per tile
group: 0/1 inputs that are sparse run event-driven kernels (linear: the active inputs' fan-out
rows); dense inputs run im2col + the dense int8 MAC (see :func:`_use_events`). All give the
same bits; the timing model charges SNN tiles for their active inputs whichever kernel ran.

Chains of SNN conv layers (an SNN conv with M % 8 == 0, then max pools and conv layers whose
values in between feed nothing else; the reference network's SNN branch ``snn_conv1 → snn_pool →
snn_conv2 → snn_conv3 → snn_xcorr``) run in one C++ call (:func:`kernels.snn_chain`, see
:func:`_chains`): the spikes stay bit-packed between the layers and every count is taken inside
the call. With ``threads`` > 1 each layer of a chain cuts its output rows into that many bands; a
chain on a network input starts at once on ``threads - 1`` helper threads
(:func:`kernels.snn_chain_start`) while the calling thread runs the rest of the network (the ANN
branch, one thread), then joins the chain's team until it is done (the helpers take bands as they
come; one wait per layer and block of up to 255 steps, not per step). ``CHAIN = False`` runs the
layers one by one.

The outputs equal :func:`neurosim.intnet.run_reference` bit for bit (tested). The simulation
also records the work each core did (active inputs) and the packets on each route, which
:mod:`chip_models.timing` turns into cycles and energy.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from chip_models import kernels
from chip_models.mapper import Mapping
from neurosim.errors import InputError

_LAYER_CACHE: dict[str, tuple] = {}
EVENT_DENSITY = 0.5  # event-driven kernels for 0/1 inputs with fewer nonzeros than this (see _use_events)


@dataclasses.dataclass
class SimResult:
    """Outputs (int8, (T, *shape)) and the measured work of a run of ``frames`` frames."""

    outputs: dict[str, np.ndarray]
    frames: int
    active_inputs: np.ndarray  # per tile: active (nonzero) input × position pairs over the run (SNN tiles; 0 for ANN)
    route_packets: np.ndarray  # per route, summed over the run
    binary: dict[str, bool] = dataclasses.field(default_factory=dict)  # value → only 0/1 (sent as spike bits)
    values: dict[str, np.ndarray] | None = None


def check_inputs(mapping: Mapping, inputs: dict[str, np.ndarray]) -> int:
    """Validate ``inputs`` against the network; returns the number of frames."""
    frames = None
    for name, spec in mapping.net.inputs.items():
        if name not in inputs:
            raise InputError(f"input {name!r} of network {mapping.net.name} is missing: the file must have arrays "
                             f"named {', '.join(mapping.net.inputs)}")
        x = np.asarray(inputs[name])
        if x.ndim != len(spec.shape) + 1 or tuple(x.shape[1:]) != tuple(spec.shape):
            raise InputError(f"input {name!r} has shape {x.shape}, the network expects (T, {', '.join(map(str, spec.shape))})")
        if x.dtype.kind not in "iu" or (x.dtype != np.int8 and x.size and (x.min() < -128 or x.max() > 127)):
            raise InputError(f"input {name!r} must be int8 values (-128..127), got {x.dtype}")
        if x.shape[0] % spec.steps:
            raise InputError(f"input {name!r} has {x.shape[0]} steps, not a multiple of its {spec.steps} steps per frame")
        f = x.shape[0] // spec.steps
        if frames is not None and f != frames:
            raise InputError(f"inputs disagree on the number of frames ({frames} vs {f} for {name!r})")
        frames = f
    if not frames:
        raise InputError("the inputs hold no frames")
    return frames


def _cache(mapping: Mapping, name: str) -> dict:
    """A per-mapping cache (layer groups, tile ranges, routes), rebuilt for a new mapping."""
    cached = _LAYER_CACHE.get(name)
    if cached is None or cached[0] is not mapping:
        cached = _LAYER_CACHE[name] = (mapping, {})
    return cached[1]


def _groups(mapping: Mapping, lm) -> dict[tuple, list[int]]:
    """Tiles of a layer grouped by (input range, output range): the position tiles of a group
    share their weights, so one kernel call runs all of them (rows = the cores' positions)."""
    cache = _cache(mapping, "groups")
    if lm.name not in cache:
        groups: dict[tuple, list[int]] = {}
        for t in lm.tiles:
            tile = mapping.tiles[t]
            groups.setdefault((tile.k_range, tile.m_range), []).append(t)
        cache[lm.name] = groups
    return cache[lm.name]


class _Weights:
    """Weight slices of the tile groups in the form each kernel wants, made on first use and
    cached per mapping and kernel path: ``dense`` (packed for dense_mac), ``fanout`` ((K, M)
    rows for spike_accumulate), ``events`` ((C, kh, kw, M) for conv_events)."""

    def __init__(self, mapping: Mapping):
        self.mapping, self.cache = mapping, {}

    def get(self, layer, k_range, m_range, form: str):
        key = (layer.name, k_range, m_range, form)
        if key not in self.cache:
            (k0, k1), (m0, m1) = k_range, m_range
            w = np.asarray(layer.weight, np.int8)[m0:m1, k0:k1]
            if form == "events":
                self.cache[key] = kernels.conv_weights(w)
            else:
                w2 = w.reshape(m1 - m0, -1)
                self.cache[key] = kernels.pack(w2) if form == "dense" else np.ascontiguousarray(w2.T)
        return self.cache[key]


def _prepare(mapping: Mapping) -> _Weights:
    key = (id(mapping), kernels.get_path())
    cached = _LAYER_CACHE.get("weights")
    if cached is None or cached[0] != key or cached[1].mapping is not mapping:
        _LAYER_CACHE["weights"] = (key, _Weights(mapping))
    return _LAYER_CACHE["weights"][1]


def simulate(mapping: Mapping, inputs: dict[str, np.ndarray], keep_values: bool = False,
             threads: int | None = None) -> SimResult:
    """Run the mapped network on ``inputs`` (int8 (T, *shape) per input) core by core.

    ``threads``: like a chip's cores, each fused conv layer's output rows are split over this
    many threads of a persistent C++ pool (default :func:`kernels.get_threads`, all CPUs; ``1``
    = one thread); an SNN chain on a network input runs on ``threads - 1`` helper threads beside
    the rest of the network (which then runs on one thread), and the caller joins it when done.
    Outputs, per-core work and route packets are the same for every count."""
    frames = check_inputs(mapping, inputs)
    threads = kernels._check_threads(threads)
    prep = _prepare(mapping)
    net = mapping.net
    values: dict[str, np.ndarray] = {k: np.ascontiguousarray(inputs[k], np.int8) for k in net.inputs}
    counts: dict[str, np.ndarray] = {}  # value → nonzero count of each of its neurons over the run
    steps: dict[str, int] = {}  # steps of the values a chain kept inside C++ (not in values)
    active = np.zeros(len(mapping.tiles), np.int64)
    binary: dict[str, bool] = {}
    chains = _chains(mapping) if (CHAIN and FUSED and not keep_values) else {}
    done: set[str] = set()
    pending: dict[str, tuple] = {}  # chain's last layer → (chain, its input, ChainPending) while it runs beside
    layer_threads = threads
    if threads > 1:  # chains on network inputs start now on threads - 1 helpers; the rest runs here meanwhile
        for first, chain in chains.items():
            src = net.layer(first).source
            if src in values:
                done.update(chain[0])
                pending[chain[0][-1]] = (chain, values[src], kernels.snn_chain_start(values[src], chain[2], chain[3],
                                                                                     threads))
                layer_threads = 1
    for layer in net.layers:
        if layer.name in done:
            continue
        if layer.source in pending:  # this layer needs a chain's output: join the chain's team until it is done
            _finish_chain(mapping, pending.pop(layer.source), values, counts, steps, active, binary, threads)
        lm = mapping.layers[layer.name]
        x = values[layer.source]
        chain = chains.get(layer.name)
        if chain is not None:
            done.update(chain[0])
            _finish_chain(mapping, (chain, x, _start_chain(chain, x, threads)), values, counts, steps, active, binary,
                          threads)
            continue
        threads_here = layer_threads if pending else threads
        if layer.kind == "flatten":
            values[layer.name] = x.reshape(x.shape[0], -1)
        elif layer.kind in ("maxpool", "sumpool"):
            values[layer.name] = _pool(layer, x)
        elif _fused(layer):
            values[layer.name] = _conv_fused(mapping, lm, layer, x, active, counts, binary, threads_here)
        else:
            values[layer.name] = _weighted(mapping, lm, layer, x, prep, active,
                                           _is_binary(net, layer.source, values, binary))
    for entry in list(pending.values()):
        _finish_chain(mapping, entry, values, counts, steps, active, binary, threads)
    packets = _count_routes(mapping, values, counts, steps)
    outputs = {name: values[name] for name in net.outputs}
    for lm in mapping.layers.values():
        _is_binary(net, lm.source, values, binary)
    return SimResult(outputs, frames, active, packets, binary, values if keep_values else None)


CHAIN = True  # chains of SNN conv layers (and max pools) in one C++ call (kernels.snn_chain); False: layer by layer


def _chains(mapping: Mapping) -> dict[str, tuple]:
    """SNN chains of the network, by first layer, cached per mapping: (layer names in order, the
    conv layers, their :class:`kernels.LayerCall`, the max-pool size before each conv).

    A chain is an SNN conv layer with M % 8 == 0, then any run of (an optional max pool, a conv
    layer) where each value in between feeds only the next element and is no network output, the
    convs before the last are SNN with M % 8 == 0 (their spikes are whole bytes of the next
    image) and the last is any conv layer; at least two convs. All are fused conv layers."""
    cache = _cache(mapping, "chains")
    if "chains" in cache:
        return cache["chains"]
    net = mapping.net
    users: dict[str, list] = {}
    for l in net.layers:
        users.setdefault(l.source, []).append(l)

    def only_user(name: str):
        u = users.get(name, [])
        return u[0] if len(u) == 1 and name not in net.outputs else None

    def spiking_bytes(l) -> bool:  # an SNN conv whose spikes are whole image bytes
        return _fused(l) and l.mode == "snn" and l.weight.shape[0] % 8 == 0

    chains, taken = {}, set()
    for first in net.layers:
        if first.name in taken or not spiking_bytes(first):
            continue
        names, convs, pools, cur = [first.name], [first], [0], first
        while spiking_bytes(cur):
            nxt, pool = only_user(cur.name), 0
            if nxt is not None and nxt.kind == "maxpool":
                pool, pool_layer, nxt = nxt.kernel, nxt, only_user(nxt.name)
            if nxt is None or nxt.kind != "conv2d" or not _fused(nxt):
                break
            names += [pool_layer.name, nxt.name] if pool else [nxt.name]
            convs.append(nxt)
            pools.append(int(pool))
            cur = nxt
        if len(convs) < 2:
            continue
        calls = [_fused_plan(mapping, mapping.layers[l.name], l)[0] for l in convs]
        chains[first.name] = (tuple(names), tuple(convs), calls, pools)
        taken.update(names)
    cache["chains"] = chains
    return chains


def _start_chain(chain: tuple, x: np.ndarray, threads: int = 1):
    """Run an SNN chain (see :func:`_chains`) in one :func:`kernels.snn_chain` call: its
    :class:`kernels.ChainRun`, or None when its input is not 0/1 or a layer's int16 condition
    fails (nothing computed; the layers then run one by one)."""
    names, convs, calls, pools = chain
    return kernels.snn_chain(x, calls, pools, threads)


def _finish_chain(mapping: Mapping, entry: tuple, values: dict, counts: dict, steps: dict, active: np.ndarray,
                  binary: dict, threads: int) -> None:
    """Record what the fused layers would have: the last layer's values, every value's counts,
    each SNN tile's active inputs (from its input's counts); the values in between stay in C++
    (``steps`` only). A declined chain runs layer by layer here."""
    (names, convs, calls, pools), x, run = entry
    if isinstance(run, kernels.ChainPending):
        run = run.join()
    if run is None:
        net = mapping.net
        for name in names:
            layer = net.layer(name)
            src = values[layer.source]
            values[name] = _pool(layer, src) if layer.kind == "maxpool" else \
                _conv_fused(mapping, mapping.layers[name], layer, src, active, counts, binary, threads)
        return
    first = convs[0]
    binary.setdefault(first.source, True)
    counts.setdefault(first.source, run.in_count.reshape(-1))
    for i, layer in enumerate(convs):
        in_count = run.in_count if i == 0 else (run.pool_counts[i] if pools[i] else run.out_counts[i - 1])
        if pools[i]:
            counts[layer.source] = in_count.reshape(-1)
        counts[layer.name] = run.out_counts[i].reshape(-1)
        for idx, args in _fused_plan(mapping, mapping.layers[layer.name], layer)[1]:
            active[idx] += kernels.window_range_sums(in_count, *args)
    for name in names[:-1]:
        steps[name] = x.shape[0]
    values[names[-1]] = run.out


FUSED = True  # whole conv layers in one C++ call (kernels.conv_layer); False: per tile group, im2col / events


def _fused(layer) -> bool:
    """Conv layers run whole (all tiles, all steps) in one :func:`kernels.conv_layer` call: on
    spikes (0/1 inputs) event-driven or through spike-pattern tables, on int8 activations as a
    im2col + the dense int8 MAC, the soma fused."""
    return FUSED and layer.kind == "conv2d" and math.prod(layer.weight.shape[1:]) <= kernels.K_CHUNK


def _conv_fused(mapping: Mapping, lm, layer, x: np.ndarray, active: np.ndarray, counts: dict,
                binary: dict | None = None, threads: int = 1) -> np.ndarray:
    """One conv layer over all steps in one C++ call (accumulation, soma, output).

    The layer's tiles only partition its (input channel, output channel, position) space, so
    their partial sums added up (int64, exact: fan-in ≤ 65536 keeps them inside int32) are the
    layer's sum, computed here in one pass. Each SNN tile's work is counted exactly from the
    input nonzero counts: the active inputs its positions saw in its input-channel range
    (``window_counts``), summed over its positions.
    """
    call, windows = _fused_plan(mapping, lm, layer)
    run = kernels.run_layer(x, call, threads)
    if binary is not None:  # the kernel scanned the input: auto mode runs gemm exactly when it is not 0/1
        binary.setdefault(layer.source, run.mode != "gemm")
    counts.setdefault(layer.source, run.in_count.reshape(-1))
    counts[layer.name] = run.out_count.reshape(-1)
    for idx, args in windows:  # SNN layers: per tile group, the active inputs of its tiles
        active[idx] += kernels.window_range_sums(run.in_count, *args)
    return run.out


def _fused_plan(mapping: Mapping, lm, layer) -> tuple:
    """A fused layer's :class:`kernels.LayerCall` and, for SNN layers, per tile group (tile
    indices, :func:`kernels.window_range_sums` arguments after the counts); cached per mapping."""
    plans = _cache(mapping, "fused")
    plan = plans.get(layer.name)
    if plan is None:
        snn = layer.mode == "snn"
        call = kernels.LayerCall.make(layer.weight, layer.bias, layer.stride, layer.padding, layer.shift,
                                      layer.activation or "none", layer.lut, layer.neuron if snn else None)
        kh, kw = layer.weight.shape[2:]
        windows = []
        for (k_range, _), tl in (_groups(mapping, lm).items() if snn else ()):
            _, idx, starts, stops = _tile_ranges(mapping, tl)
            windows.append((idx, (k_range, kh, kw, layer.stride, layer.padding, starts, stops)))
        plan = plans[layer.name] = (call, tuple(windows))
    return plan


def _is_binary(net, name: str, values: dict, cache: dict) -> bool:
    """Whether value ``name`` holds only 0/1 (spikes): known for SNN outputs (and max/flatten of
    them), known not to when a max pool / flatten of it is not (their values are some of its
    values), measured once for the rest."""
    if name not in cache:
        layer = None if name in net.inputs else net.layer(name)
        if layer is not None and layer.kind in ("conv2d", "linear") and layer.mode == "snn":
            cache[name] = True
        elif layer is not None and layer.kind in ("maxpool", "flatten") and _is_binary(net, layer.source, values, cache):
            cache[name] = True
        elif any(l.source == name and l.kind in ("maxpool", "flatten") and cache.get(l.name) is False
                 for l in net.layers):  # their outputs are some of this value's values: one is not 0/1
            cache[name] = False
        else:
            cache[name] = bool(values[name].size == 0 or values[name].view(np.uint8).max() <= 1)
    return cache[name]


def _use_events(layer, lm, mapping: Mapping, x: np.ndarray, binary: bool) -> bool:
    """Event-driven or dense kernels for this layer and run (same bits either way).

    Only 0/1 inputs (spikes) go event-driven, when fewer than ``EVENT_DENSITY`` of them are
    active: measured on the reference network and a 4× wider variant, the event-driven kernels
    beat im2col + the dense int8 MAC up to about half the inputs active (the im2col copy and the
    small fan-in of a core's tile make the dense path slower than its peak)."""
    return binary and np.count_nonzero(x) < EVENT_DENSITY * x.size


def _weighted(mapping: Mapping, lm, layer, x: np.ndarray, weights: "_Weights", active: np.ndarray,
              binary: bool) -> np.ndarray:
    """One conv2d / linear layer: the tiles' accumulators, then the soma (ANN output stage or LIF)."""
    events = _use_events(layer, lm, mapping, x, binary)
    if events and layer.kind == "conv2d":  # event-driven convolution, accumulators (T, P, M)
        acc = _acc_events(mapping, lm, layer, x, weights, active)
        order = (0, 2, 1)
    else:  # im2col rows, dense int8 MAC or event-driven rows, accumulators (P, T, M)
        acc = _acc_rows(mapping, lm, layer, x, weights, active, events)
        order = (1, 2, 0)
    steps = x.shape[0]
    shape = (steps, *lm.out_shape)
    if layer.mode == "ann":
        q = kernels.output_stage(acc, layer.shift, layer.activation, layer.lut)
        return np.ascontiguousarray(q.transpose(order)).reshape(shape)
    current = np.ascontiguousarray(kernels.current_stage(acc, layer.shift).transpose(order)).reshape(steps, -1)
    n = current.shape[1]
    v, counter = np.zeros(n, np.int32), np.zeros(n, np.int32)
    return kernels.lif_run(current, v, counter, layer.neuron).reshape(shape)


def _start(lm, layer, shape: tuple) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Accumulator array, per-tile bias (None when split inputs are merged in int64) and split flag."""
    split = lm.splits[0] > 1
    acc = np.empty(shape, np.int64 if split else np.int32)
    if split:
        acc[...] = 0 if layer.bias is None else np.asarray(layer.bias, np.int64)
    bias = None if layer.bias is None or split else np.asarray(layer.bias, np.int32)
    return acc, bias, split


def _finish(acc: np.ndarray, split: bool) -> np.ndarray:
    return np.clip(acc, -(2**31), 2**31 - 1).astype(np.int32) if split else acc


def _tile_ranges(mapping: Mapping, tiles: list[int]) -> tuple:
    """(tiles, their indices, first and past-last output positions) as arrays, cached per mapping."""
    cache = _cache(mapping, "tile_ranges")
    entry = cache.get(id(tiles))  # (the lists of _groups live as long as the mapping's cache)
    if entry is None or entry[0] is not tiles:
        entry = cache[id(tiles)] = (tiles, np.array(tiles, np.int64),
                                    np.array([mapping.tiles[t].p_range[0] for t in tiles], np.int64),
                                    np.array([mapping.tiles[t].p_range[1] for t in tiles], np.int64))
    return entry


def _tile_activity(mapping: Mapping, tiles: list[int], per_position: np.ndarray, active: np.ndarray) -> None:
    """Add each tile's active inputs (summed over its positions) to ``active``."""
    _, idx, starts, stops = _tile_ranges(mapping, tiles)
    csum = np.zeros(len(per_position) + 1, np.int64)
    np.cumsum(per_position, out=csum[1:])
    active[idx] += csum[stops] - csum[starts]


def _acc_rows(mapping: Mapping, lm, layer, x: np.ndarray, weights: "_Weights", active: np.ndarray,
              events: bool) -> np.ndarray:
    """Accumulators (P, T, M) from input rows (im2col patches, or the input vector of a linear
    layer): the dense int8 MAC, or event-driven accumulation over the rows' active inputs."""
    steps = x.shape[0]
    snn = layer.mode == "snn"
    positions = int(np.prod(lm.out_shape[1:])) if layer.kind == "conv2d" else 1
    nonzero = np.empty((positions, steps), np.int64) if (snn and layer.kind == "conv2d") else None
    if layer.kind == "conv2d":
        cols = kernels.im2col(x, lm.kernel[0], lm.kernel[1], lm.stride, lm.padding, row_nonzero=nonzero)
    else:
        cols = np.ascontiguousarray(x).reshape(1, steps, -1)
    cout, kfull = layer.weight.shape[0], cols.shape[2]
    per_ch = lm.kernel[0] * lm.kernel[1]
    groups = _groups(mapping, lm)
    acc, bias, split = _start(lm, layer, (positions, steps, cout))
    for (k_range, m_range), tl in groups.items():
        (k0, k1), (m0, m1) = k_range, m_range
        full = (k1 - k0) * per_ch == kfull
        rows = cols.reshape(-1, kfull) if full else \
            np.ascontiguousarray(cols[:, :, k0 * per_ch : k1 * per_ch]).reshape(positions * steps, -1)
        b = None if bias is None else bias[m0:m1]
        direct = len(groups) == 1 and not split  # write straight into acc
        out = acc.reshape(-1, cout) if direct else None
        if events:
            out, _ = kernels.spike_accumulate(rows, weights.get(layer, k_range, m_range, "fanout"), b, out=out)
        else:
            out = kernels.dense_mac(rows, weights.get(layer, k_range, m_range, "dense"), b, out=out)
        if snn:  # active inputs of each tile: the nonzeros of its rows
            per_row = nonzero if (full and nonzero is not None) else np.count_nonzero(rows, axis=1).reshape(positions, steps)
            _tile_activity(mapping, tl, per_row.sum(axis=1), active)
        if direct:
            continue
        if split:
            acc[:, :, m0:m1] += out.reshape(positions, steps, m1 - m0)
        else:
            acc[:, :, m0:m1] = out.reshape(positions, steps, m1 - m0)
    return _finish(acc, split)


def _acc_events(mapping: Mapping, lm, layer, x: np.ndarray, weights: "_Weights", active: np.ndarray) -> np.ndarray:
    """Event-driven convolution straight from the spike maps (no im2col)."""
    steps, cin = x.shape[0], x.shape[1]
    positions, cout = int(np.prod(lm.out_shape[1:])), layer.weight.shape[0]
    groups = _groups(mapping, lm)
    acc, bias, split = _start(lm, layer, (steps, positions, cout))
    # active inputs per position: needed for the SNN tiles' event-driven cycle count only
    row_active = np.empty((steps, positions), np.int64) if layer.mode == "snn" else None
    for (k_range, m_range), tl in groups.items():
        (k0, k1), (m0, m1) = k_range, m_range
        xs = x if (k0, k1) == (0, cin) else np.ascontiguousarray(x[:, k0:k1])
        direct = len(groups) == 1 and not split
        out, _ = kernels.conv_events(xs, weights.get(layer, k_range, m_range, "events"), None if bias is None else bias[m0:m1], lm.stride, lm.padding,
                                     out=acc if direct else None, row_active=row_active)
        if layer.mode == "snn":
            _tile_activity(mapping, tl, row_active.sum(axis=0), active)
        if direct:
            continue
        if split:
            acc[:, :, m0:m1] += out
        else:
            acc[:, :, m0:m1] = out
    return _finish(acc, split)


def _pool(layer, x: np.ndarray) -> np.ndarray:
    """Max pooling over k×k windows (stride k) in C++ (:func:`kernels.max_pool`); sum pooling as k²
    elementwise passes over strided views, then the output stage."""
    k = layer.kernel
    if layer.kind == "maxpool":
        return kernels.max_pool(x, k)
    t, c, h, w = x.shape
    hk, wk = h - h % k, w - w % k
    views = [x[:, :, i:hk:k, j:wk:k] for i in range(k) for j in range(k)]
    out = views[0].astype(np.int32)
    for v in views[1:]:
        out += v
    return kernels.output_stage(out, layer.shift, "none")


def _route_groups(mapping: Mapping) -> dict[str, tuple]:
    """Per value: the routes that carry it (not partial sums), their list lengths, and their neuron
    lists as runs of consecutive neurons (``starts``, ``stops``, route ``r``'s runs at
    ``run_ptr[r]:run_ptr[r+1]``), cached per mapping."""
    cache = _cache(mapping, "routes")
    if "by_value" in cache:
        return cache["by_value"]
    by_value: dict[str, list[int]] = {}
    for i, r in enumerate(mapping.routes):
        if not r.partial_sums:
            by_value.setdefault(r.value, []).append(i)
    groups = {}
    for value, idxs in by_value.items():
        lens = np.array([len(mapping.routes[i].neurons) for i in idxs], np.int64)
        flat = np.concatenate([np.asarray(mapping.routes[i].neurons, np.int64) for i in idxs])
        ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        # each list as runs of consecutive neurons (exact for any list: a run starts wherever the
        # next index is not the previous + 1, and at every route's first neuron)
        first = np.ones(len(flat), bool)
        first[1:] = np.diff(flat) != 1
        first[ptr[:-1][lens > 0]] = True
        run_at = np.flatnonzero(first)
        starts = flat[run_at]
        stops = flat[np.append(run_at[1:], len(flat)) - 1] + 1 if len(flat) else starts
        run_ptr = np.searchsorted(run_at, ptr).astype(np.int64)
        groups[value] = (np.array(idxs), lens, run_ptr, starts, stops)
    cache["by_value"] = groups
    cache["partial"] = [i for i, r in enumerate(mapping.routes) if r.partial_sums]
    return groups


def _flat_routes(mapping: Mapping, counts: list[np.ndarray]) -> tuple:
    """All carried (not partial-sum) routes as one list of runs over the concatenated per-value
    counts (values in :func:`_route_groups` order): route indices, run pointers, global run
    starts / stops, each route's value (position in that order) and dense packets per step;
    cached per mapping for these count sizes."""
    cache = _cache(mapping, "routes")
    sizes = tuple(len(c) for c in counts)
    if cache.get("flat_sizes") != sizes:
        groups = _route_groups(mapping)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        idx, ptr, starts, stops, which, dense = [], [np.zeros(1, np.int64)], [], [], [], []
        runs = 0
        for i, (idxs, lens, run_ptr, st, sp) in enumerate(groups.values()):
            idx.append(idxs)
            ptr.append(run_ptr[1:] + runs)
            runs += int(run_ptr[-1])
            starts.append(st + offsets[i])
            stops.append(sp + offsets[i])
            which.append(np.full(len(idxs), i, np.int64))
            dense.append(-(-lens // mapping.chip.packet_payload_bytes))
        cache["flat"] = tuple(np.concatenate(a).astype(np.int64) for a in (idx, ptr, starts, stops, which, dense))
        cache["flat_sizes"] = sizes
    return cache["flat"]


def _count_routes(mapping: Mapping, values: dict[str, np.ndarray], counts: dict[str, np.ndarray],
                  steps: dict[str, int] | None = None) -> np.ndarray:
    """Packets per route over the run: the cheaper of dense (payload bytes per packet) and
    sparse (one packet per nonzero value, e.g. per spike) for the measured values.

    ``counts`` holds the nonzero count of every neuron over the run for the values the fused
    conv layers saw; the rest are counted here. All routes' sparse counts come from one
    :func:`kernels.range_sums` call over the values' counts concatenated. ``steps`` gives the
    steps of values that are not in ``values`` (kept inside an SNN chain; they all have counts)."""
    steps = steps or {}
    chip = mapping.chip
    packets = np.zeros(len(mapping.routes), np.int64)
    cache = _cache(mapping, "routes")
    order = list(_route_groups(mapping))
    if "partial_step" not in cache:  # per step: partial-sum packets (int32 payloads)
        cache["partial_step"] = [(i, mapping.routes[i].value,
                                  math.ceil(4 * mapping.tiles[mapping.routes[i].src].neurons / chip.packet_payload_bytes))
                                 for i in cache["partial"]]
    for i, value, per_step in cache["partial_step"]:
        packets[i] = per_step * (steps[value] if value in steps else values[value].shape[0])
    if not order:
        return packets
    per_value = []
    for value in order:
        count = counts.get(value)
        per_value.append(kernels.nonzero_counts(values[value]) if count is None else count)
    idx, ptr, starts, stops, which, dense = _flat_routes(mapping, per_value)
    sparse = kernels.range_sums(np.concatenate(per_value), ptr, starts, stops)
    n_steps = np.array([steps[v] if v in steps else values[v].shape[0] for v in order], np.int64)
    packets[idx] = np.minimum(sparse, dense * n_steps[which])
    return packets
