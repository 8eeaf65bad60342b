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
still counted exactly). Linear layers (and, with ``SimOptions(fused=False)``, conv layers) run per tile
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
branch, one thread), then joins the chain's team until it is done (the chain's tasks, one band of
one layer over one block of steps, run as a data flow: the layers of consecutive blocks overlap on
the threads). ``SimOptions(chains=False)`` runs the layers one by one.

Everything that does not depend on the inputs is decided once, in :func:`compile`: the kernel
path (passed to every kernel call; the process-wide :func:`kernels.set_path` is read only as the
default of :class:`SimOptions`), the thread count, the tile groups and their position ranges,
the fused layers' :class:`kernels.LayerCall`, the chains and the route tables, all as named
fields of small dataclasses held by the :class:`SimPlan` (no module-level switches and no caches
keyed by object identity). ``simulate(plan, inputs)`` then runs it; ``simulate(mapping, inputs)``
compiles a plan with the default options first.

The outputs equal :func:`neurosim.intnet.run_reference` bit for bit (tested). The simulation
also records the work each core did (active inputs) and the packets on each route, which
:mod:`chip_models.timing` turns into cycles and energy.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from chip_models import kernels
from chip_models.mapper import LayerMap, Mapping
from neurosim.errors import InputError, ParameterError
from neurosim.intnet import IntLayer

EVENT_DENSITY = 0.5  # default of SimOptions.event_density (see _use_events)


@dataclasses.dataclass
class SimResult:
    """Outputs (int8, (T, *shape)) and the measured work of a run of ``frames`` frames."""

    outputs: dict[str, np.ndarray]
    frames: int
    active_inputs: np.ndarray  # per tile: active (nonzero) input × position pairs over the run (SNN tiles; 0 for ANN)
    route_packets: np.ndarray  # per route, summed over the run
    binary: dict[str, bool] = dataclasses.field(default_factory=dict)  # value → only 0/1 (sent as spike bits)
    values: dict[str, np.ndarray] | None = None


# ------------------------------------------------------------------------------ the plan


@dataclasses.dataclass(frozen=True)
class SimOptions:
    """How a mapped network is run (every choice gives the same bits, work and packets).

    ``path``: kernel path (:data:`kernels.PATHS` or ``"auto"``; None = the process default,
    :func:`kernels.get_path`). ``threads``: kernel threads (0 = all CPUs; None = the process
    default, :func:`kernels.get_threads`). ``chains``: SNN chains in one C++ call. ``fused``: conv
    layers whole in one C++ call (False: per tile group, im2col + dense MAC or event-driven).
    ``event_density``: 0/1 inputs of the per-tile-group kernels run event-driven below this
    fraction of active inputs (see :func:`_use_events`). ``chain_first_stage``: how a chain's
    first stage accumulates (:func:`kernels.snn_chain`'s ``first_stage``: ``auto``, ``spans`` or
    ``rows``)."""

    path: str | None = None
    threads: int | None = None
    chains: bool = True
    fused: bool = True
    event_density: float = EVENT_DENSITY
    chain_first_stage: str = "auto"


@dataclasses.dataclass(frozen=True)
class TileGroup:
    """Tiles of a layer with the same input and output ranges: they share their weights, so one
    kernel call runs all of them (rows = the cores' positions)."""

    k_range: tuple[int, int]  # input channels (linear: input features)
    m_range: tuple[int, int]  # output channels
    tiles: np.ndarray  # int64 tile indices
    starts: np.ndarray  # int64 first output position of each tile
    stops: np.ndarray  # int64 past-last output position of each tile


@dataclasses.dataclass(frozen=True)
class FusedLayer:
    """A conv layer run whole by :func:`kernels.run_layer`: its call, and (SNN layers) the tile
    groups whose active inputs are counted from the input's nonzero counts."""

    call: kernels.LayerCall
    spike_groups: tuple[TileGroup, ...]


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One layer of the network with its mapping, tile groups and (fused conv layers) call."""

    layer: IntLayer
    mapped: LayerMap | None  # None for flatten (no core)
    groups: tuple[TileGroup, ...]
    fused: FusedLayer | None


@dataclasses.dataclass(frozen=True)
class Chain:
    """SNN conv layers (and max pools) run in one :func:`kernels.snn_chain` call (see
    :func:`_chains`): ``names`` every layer in order, ``convs`` the conv layers, ``calls`` their
    :class:`kernels.LayerCall`, ``pools`` the max-pool size before each conv (0: none), ``spec``
    their C++ arguments made once."""

    names: tuple[str, ...]
    convs: tuple[IntLayer, ...]
    calls: tuple[kernels.LayerCall, ...]
    pools: tuple[int, ...]
    spec: kernels.ChainSpec


@dataclasses.dataclass(frozen=True)
class PartialRoute:
    """A route of int32 partial sums: ``packets_per_step`` packets every step of ``value``."""

    route: int
    value: str
    packets_per_step: int


@dataclasses.dataclass(frozen=True)
class RouteTable:
    """The routes that carry values (not partial sums), as runs of consecutive neurons over the
    per-neuron counts of ``values`` concatenated in that order: route ``routes[g]``'s runs are
    ``run_ptr[g]:run_ptr[g+1]`` of (``starts``, ``stops``); it carries ``values[value_of[g]]``, and
    sent densely it takes ``dense_per_step[g]`` packets per step."""

    values: tuple[str, ...]
    routes: np.ndarray
    run_ptr: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    value_of: np.ndarray
    dense_per_step: np.ndarray
    partial: tuple[PartialRoute, ...]


@dataclasses.dataclass(frozen=True)
class ValueKind:
    """What the network says of a value's 0/1-ness: ``spikes`` (an SNN layer's output), a max pool
    or flatten whose values are some of ``part_of``'s, and the max pools / flattens of it (``parts``)."""

    spikes: bool
    part_of: str | None
    parts: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class CountLayout:
    """Where a run keeps the per-neuron nonzero counts of its values: one int32 array (the count
    arena), value ``v``'s counts (C, H, W) at ``slots[v]`` = (offset, shape). Each value is counted
    once: a fused conv layer counts its output, and its input where it is the first fused conv
    layer that reads it (``counts_input``); a chain counts the same values as its layers would;
    the route values no kernel counts (``uncounted``) are counted after the run. ``tally_early``
    (the routes of the values no chain counts, complete before the chains are joined) and
    ``tally`` (the SNN tiles' active inputs and the other routes) then turn the arena into
    packets and work, one C++ call each (``steps_per_frame``: the steps per frame of each route
    value, in the route table's order)."""

    size: int
    slots: dict[str, tuple[int, tuple[int, ...]]]
    counts_input: frozenset[str]  # fused conv layers that count their input
    uncounted: tuple[str, ...]
    steps_per_frame: np.ndarray
    tally: object  # kernels' C++ Tally: the tiles and the routes of values a chain counts
    tally_early: object  # the routes of the other values (counted while a chain may still run beside)
    chain_slots: dict  # by a chain's first layer: its counts' (start, stop, shape) in the arena (None: not counted)


@dataclasses.dataclass
class SimPlan:
    """A mapped network compiled for :func:`simulate` with ``options`` (path and threads resolved)."""

    mapping: Mapping
    options: SimOptions
    path: str
    threads: int
    layers: dict[str, LayerPlan]
    chains: dict[str, Chain]  # by first layer
    routes: RouteTable
    counts: CountLayout
    values: dict[str, ValueKind]
    sent_values: tuple[str, ...]  # the mapped layers' inputs (SimResult.binary tells which are spikes)
    weights: "_Weights"  # weight slices in each kernel's form, made on first use (per-tile-group kernels)


def compile(mapping: Mapping, options: SimOptions | None = None) -> SimPlan:  # noqa: A001 (the plan's verb)
    """Compile ``mapping`` for :func:`simulate`: the path and threads checked and resolved, tile
    groups, fused-layer calls, chains and route tables made once (ParameterError for a bad option).
    The plan keeps copies of the fused layers' weights and the chains' tables made from them:
    compile again after changing the network's weights."""
    options = options or SimOptions()
    path = kernels.resolve_path(options.path)
    threads = kernels._check_threads(options.threads)
    if not isinstance(options.event_density, (int, float)) or math.isnan(options.event_density):
        raise ParameterError(f"event_density must be a number, not {options.event_density!r}")
    if options.chain_first_stage not in kernels.FIRST_STAGES:
        raise ParameterError(f"chain_first_stage must be one of {sorted(kernels.FIRST_STAGES)}, "
                             f"not {options.chain_first_stage!r}")
    layers = {layer.name: _layer_plan(mapping, layer, options.fused) for layer in mapping.net.layers}
    chains = _chains(mapping, layers, path, options.chain_first_stage) if options.chains and options.fused else {}
    routes = _route_table(mapping)
    counts = _count_layout(mapping, layers, routes, chains)
    sent = tuple(dict.fromkeys(lm.source for lm in mapping.layers.values()))
    return SimPlan(mapping, options, path, threads, layers, chains, routes, counts, _value_kinds(mapping.net), sent,
                   _Weights(path))


def _value_kinds(net) -> dict[str, ValueKind]:
    """Every value's :class:`ValueKind` (network inputs and layers)."""
    parts: dict[str, list[str]] = {}
    for l in net.layers:
        if l.kind in ("maxpool", "flatten"):
            parts.setdefault(l.source, []).append(l.name)
    kinds = {name: ValueKind(False, None, tuple(parts.get(name, ()))) for name in net.inputs}
    for l in net.layers:
        kinds[l.name] = ValueKind(l.kind in ("conv2d", "linear") and l.mode == "snn",
                                  l.source if l.kind in ("maxpool", "flatten") else None, tuple(parts.get(l.name, ())))
    return kinds


def _fusable(layer: IntLayer) -> bool:
    return layer.kind == "conv2d" and math.prod(layer.weight.shape[1:]) <= kernels.K_CHUNK


def _layer_plan(mapping: Mapping, layer: IntLayer, fused: bool) -> LayerPlan:
    lm = mapping.layers.get(layer.name)
    by_range: dict[tuple, list[int]] = {}
    for t in (lm.tiles if lm is not None else ()):
        tile = mapping.tiles[t]
        by_range.setdefault((tile.k_range, tile.m_range), []).append(t)
    groups = tuple(TileGroup(k, m, np.array(tl, np.int64),
                             np.array([mapping.tiles[t].p_range[0] for t in tl], np.int64),
                             np.array([mapping.tiles[t].p_range[1] for t in tl], np.int64))
                   for (k, m), tl in by_range.items())
    plan = None
    if fused and _fusable(layer):
        snn = layer.mode == "snn"
        weight = np.array(layer.weight, np.int8)  # (the plan's own copy)
        call = kernels.LayerCall.make(weight, layer.bias, layer.stride, layer.padding, layer.shift,
                                      layer.activation or "none", layer.lut, layer.neuron if snn else None)
        plan = FusedLayer(call, groups if snn else ())
    return LayerPlan(layer, lm, groups, plan)


def _chains(mapping: Mapping, layers: dict[str, LayerPlan], path: str, first_stage: str) -> dict[str, Chain]:
    """The SNN chains of the network, by first layer.

    A chain is an SNN conv layer with M % 8 == 0, then any run of (an optional max pool, a conv
    layer) where each value in between feeds only the next element and is no network output, the
    convs before the last are SNN with M % 8 == 0 (their spikes are whole bytes of the next
    image) and the last is any conv layer; at least two convs. All are fused conv layers."""
    net = mapping.net
    users: dict[str, list] = {}
    for l in net.layers:
        users.setdefault(l.source, []).append(l)

    def only_user(name: str):
        u = users.get(name, [])
        return u[0] if len(u) == 1 and name not in net.outputs else None

    def fused(l) -> bool:
        return layers[l.name].fused is not None

    def spiking_bytes(l) -> bool:  # an SNN conv whose spikes are whole image bytes
        return fused(l) and l.mode == "snn" and l.weight.shape[0] % 8 == 0

    chains, taken = {}, set()
    for first in net.layers:
        if first.name in taken or not spiking_bytes(first):
            continue
        names, convs, pools, cur = [first.name], [first], [0], first
        while spiking_bytes(cur):
            nxt, pool = only_user(cur.name), 0
            if nxt is not None and nxt.kind == "maxpool":
                pool, pool_layer, nxt = nxt.kernel, nxt, only_user(nxt.name)
            if nxt is None or nxt.kind != "conv2d" or not fused(nxt):
                break
            names += [pool_layer.name, nxt.name] if pool else [nxt.name]
            convs.append(nxt)
            pools.append(int(pool))
            cur = nxt
        if len(convs) < 2:
            continue
        calls = [layers[l.name].fused.call for l in convs]
        # (ChainSpec.make raises where first_stage="rows" cannot run)
        spec = kernels.ChainSpec.make(mapping.shapes[first.source], calls, pools, path, first_stage, keep_tables=True)
        chains[first.name] = Chain(tuple(names), tuple(convs), tuple(calls), tuple(pools), spec)
        taken.update(names)
    return chains


def _route_table(mapping: Mapping) -> RouteTable:
    """The route table of :class:`RouteTable`: each route's neuron list as runs of consecutive
    neurons (exact for any list: a run starts wherever the next index is not the previous + 1,
    and at every route's first neuron)."""
    payload = mapping.chip.packet_payload_bytes
    by_value: dict[str, list[int]] = {}
    partial = []
    for i, r in enumerate(mapping.routes):
        if r.partial_sums:
            partial.append(PartialRoute(i, r.value, math.ceil(4 * mapping.tiles[r.src].neurons / payload)))
        else:
            by_value.setdefault(r.value, []).append(i)
    offset, runs = 0, 0
    idx, ptr, starts, stops, which, dense = [], [np.zeros(1, np.int64)], [], [], [], []
    for i, (value, idxs) in enumerate(by_value.items()):
        lens = np.array([len(mapping.routes[r].neurons) for r in idxs], np.int64)
        flat = np.concatenate([np.asarray(mapping.routes[r].neurons, np.int64) for r in idxs])
        first_of = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        first = np.ones(len(flat), bool)
        first[1:] = np.diff(flat) != 1
        first[first_of[:-1][lens > 0]] = True
        run_at = np.flatnonzero(first)
        st = flat[run_at]
        sp = flat[np.append(run_at[1:], len(flat)) - 1] + 1 if len(flat) else st
        run_ptr = np.searchsorted(run_at, first_of).astype(np.int64)
        idx.append(np.array(idxs, np.int64))
        ptr.append(run_ptr[1:] + runs)
        runs += int(run_ptr[-1])
        starts.append(st + offset)
        stops.append(sp + offset)
        which.append(np.full(len(idxs), i, np.int64))
        dense.append(-(-lens // payload))
        offset += math.prod(mapping.shapes[value])
    cat = [np.concatenate(a).astype(np.int64) if a else np.zeros(0, np.int64)
           for a in (idx, ptr, starts, stops, which, dense)]
    return RouteTable(tuple(by_value), *cat, tuple(partial))


def _count_layout(mapping: Mapping, layers: dict[str, LayerPlan], routes: RouteTable,
                  chains: dict[str, Chain]) -> CountLayout:
    """The :class:`CountLayout` of a plan: slots for the fused conv layers' inputs and outputs and
    for the route values (in the route table's order first, so that its runs index the arena)."""
    net = mapping.net
    fused = [lp for lp in layers.values() if lp.fused is not None]
    names = list(routes.values) + [v for lp in fused for v in (lp.layer.source, lp.layer.name)]
    slots, offset = {}, 0
    for v in dict.fromkeys(names):
        shape = tuple(mapping.shapes[v])
        slots[v], offset = (offset, shape), offset + math.prod(shape)
    counted = {lp.layer.name for lp in fused}  # (a fused conv layer counts its output)
    counts_input = set()
    for lp in fused:
        if lp.layer.source not in counted:
            counted.add(lp.layer.source)
            counts_input.add(lp.layer.name)
    per_frame = np.array([net.inputs[_root_input(net, v)].steps for v in routes.values], np.int64)

    def span(value: str) -> tuple:
        start, shape = slots[value]
        return start, start + math.prod(shape), shape

    chain_slots = {first: ([span(c.source) if (i == 0 or chain.pools[i]) and c.name in counts_input else None
                            for i, c in enumerate(chain.convs)], [span(c.name) for c in chain.convs])
                   for first, chain in chains.items()}
    chain_counted = {v for first, chain in chains.items() for v in (*chain.names, chain.convs[0].source)
                     if v != chain.convs[0].source or chain.convs[0].name in counts_input}
    late = np.array([routes.values[v] in chain_counted for v in routes.value_of], bool)
    return CountLayout(offset, slots, frozenset(counts_input), tuple(v for v in routes.values if v not in counted),
                       per_frame, _tally_tables(mapping, fused, slots, routes, late, offset),
                       _tally_tables(mapping, [], slots, routes, ~late, offset), chain_slots)


def _tally_tables(mapping: Mapping, fused: list, slots: dict, routes: RouteTable, which: np.ndarray,
                  size: int) -> "kernels.Tally":
    """A C++ Tally of a plan: a window group per SNN tile group of the fused layers ``fused`` (over
    its input's slot), and the entries ``which`` (bool per entry) of the route table, whose runs
    index the arena (the route values' slots come first)."""
    tally = kernels.Tally(size, len(mapping.tiles), len(mapping.routes))
    for lp in fused:
        layer = lp.layer
        (offset, shape), (kh, kw) = slots[layer.source], layer.weight.shape[2:]
        for g in lp.fused.spike_groups:
            tally.add_windows(offset, *shape, *g.k_range, kh, kw, layer.stride, layer.padding, g.starts, g.stops,
                              g.tiles)
    picked = np.flatnonzero(which)
    if len(picked):
        runs = [np.arange(routes.run_ptr[g], routes.run_ptr[g + 1]) for g in picked]
        ptr = np.concatenate([[0], np.cumsum([len(r) for r in runs])]).astype(np.int64)
        idx = np.concatenate(runs).astype(np.int64)
        tally.set_routes(ptr, routes.starts[idx], routes.stops[idx], routes.routes[picked], routes.value_of[picked],
                         routes.dense_per_step[picked], len(routes.values))
    return tally


def _root_input(net, value: str) -> str:
    """The network input that ``value`` is computed from (every layer keeps its source's steps)."""
    while value not in net.inputs:
        value = net.layer(value).source
    return value


class _Weights:
    """Weight slices of the tile groups in the form each per-tile-group kernel wants, made on
    first use for the plan's path: ``dense`` (packed for dense_mac), ``fanout`` ((K, M) rows for
    spike_accumulate), ``events`` ((C, kh, kw, M) for conv_events)."""

    def __init__(self, path: str):
        self.path, self.cache = path, {}

    def get(self, layer: IntLayer, group: TileGroup, form: str):
        key = (layer.name, group.k_range, group.m_range, form)
        if key not in self.cache:
            (k0, k1), (m0, m1) = group.k_range, group.m_range
            w = np.asarray(layer.weight, np.int8)[m0:m1, k0:k1]
            if form == "events":
                self.cache[key] = kernels.conv_weights(w)
            else:
                w2 = w.reshape(m1 - m0, -1)
                self.cache[key] = kernels.pack(w2, self.path) if form == "dense" else np.ascontiguousarray(w2.T)
        return self.cache[key]


# ------------------------------------------------------------------------------ the run


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


@dataclasses.dataclass
class _Run:
    """What a run accumulates: the values, the count arena (see :class:`CountLayout`), per-tile
    active inputs and the 0/1 flags of the values."""

    values: dict[str, np.ndarray]
    arena: np.ndarray
    active: np.ndarray
    binary: dict[str, bool]

    def slot(self, plan: SimPlan, value: str) -> np.ndarray:
        """The arena's counts of ``value`` (C, H, W) (a view)."""
        offset, shape = plan.counts.slots[value]
        return self.arena[offset : offset + math.prod(shape)].reshape(shape)


@dataclasses.dataclass
class _PendingChain:
    chain: Chain
    x: np.ndarray
    job: object  # kernels.ChainPending, kernels.ChainRun or None (declined)


def simulate(plan: SimPlan | Mapping, inputs: dict[str, np.ndarray], keep_values: bool = False,
             threads: int | None = None) -> SimResult:
    """Run a compiled plan (or a mapping, compiled with the default :class:`SimOptions`) on
    ``inputs`` (int8 (T, *shape) per input) core by core.

    ``threads`` (default: the plan's): like a chip's cores, each fused conv layer's output rows
    are split over this many threads of a persistent C++ pool (``1`` = one thread); an SNN chain
    on a network input runs on ``threads - 1`` helper threads beside the rest of the network
    (which then runs on one thread), and the caller joins it when done. Outputs, per-core work
    and route packets are the same for every count and option."""
    if isinstance(plan, Mapping):
        plan = compile(plan, SimOptions(threads=threads))
    mapping, net = plan.mapping, plan.mapping.net
    threads = plan.threads if threads is None else kernels._check_threads(threads)
    if threads > 1:  # the pool's threads wake up while the run is prepared here
        kernels.wake_threads(threads - 1)
    frames = check_inputs(mapping, inputs)
    # (the arena is not cleared here: every slot has one writer, and each kernel clears its counts
    # first, off this thread where it runs beside it)
    run = _Run({k: kernels._c(inputs[k], np.int8) for k in net.inputs}, np.empty(plan.counts.size, np.int32),
               np.zeros(len(mapping.tiles), np.int64), {})
    chains = {} if keep_values else plan.chains
    done: set[str] = set()
    pending: dict[str, _PendingChain] = {}  # by the chain's last layer, while it runs beside
    layer_threads = threads
    if threads > 1:  # chains on network inputs start now on threads - 1 helpers; the rest runs here meanwhile
        for chain in chains.values():
            x = run.values.get(chain.convs[0].source)
            if x is not None:
                done.update(chain.names)
                job = chain.spec.start(x, threads, threads - 1, _chain_buffers(plan, chain, run, x.shape[0]))
                pending[chain.names[-1]] = _PendingChain(chain, x, job)
                layer_threads = 1
    for layer in net.layers:
        if layer.name in done:
            continue
        if layer.source in pending:  # this layer needs a chain's output: join the chain's team until it is done
            _finish_chain(plan, pending.pop(layer.source), run, threads)
        x = run.values[layer.source]
        chain = chains.get(layer.name)
        if chain is not None:
            done.update(chain.names)
            job = chain.spec.run(x, threads, run=_chain_buffers(plan, chain, run, x.shape[0]))
            _finish_chain(plan, _PendingChain(chain, x, job), run, threads)
            continue
        lp = plan.layers[layer.name]
        if layer.kind == "flatten":
            run.values[layer.name] = x.reshape(x.shape[0], -1)
        elif layer.kind in ("maxpool", "sumpool"):
            run.values[layer.name] = _pool(layer, x, plan.path)
        elif lp.fused is not None:
            run.values[layer.name] = _conv_fused(plan, lp, x, run, layer_threads if pending else threads)
        else:
            run.values[layer.name] = _weighted(plan, lp, x, run.active,
                                               _is_binary(plan, layer.source, run.values, run.binary))
    packets = _tally_early(plan, run, frames)  # (here, while a chain may still run beside)
    for entry in list(pending.values()):
        _finish_chain(plan, entry, run, threads)
    plan.counts.tally.run(run.arena, plan.counts.steps_per_frame * frames, run.active, packets, threads)
    outputs = {name: run.values[name] for name in net.outputs}
    for name in plan.sent_values:
        _is_binary(plan, name, run.values, run.binary)
    return SimResult(outputs, frames, run.active, packets, run.binary, run.values if keep_values else None)


def _chain_buffers(plan: SimPlan, chain: Chain, run: _Run, steps: int) -> kernels.ChainRun:
    """The chain's output and counts, the counts in the arena where its layers would count them."""
    arena = run.arena
    ins, outs = plan.counts.chain_slots[chain.names[0]]
    return chain.spec.run_buffers(steps, [None if s is None else arena[s[0] : s[1]].reshape(s[2]) for s in ins],
                                  [arena[s[0] : s[1]].reshape(s[2]) for s in outs])


def _finish_chain(plan: SimPlan, entry: _PendingChain, run: _Run, threads: int) -> None:
    """The chain's last value (its counts are in the arena already; the values in between stay in
    C++). A declined chain runs layer by layer here (counting the same values)."""
    chain, result = entry.chain, entry.job
    if isinstance(result, kernels.ChainPending):
        result = result.join()
    if result is None:
        for name in chain.names:  # (a declined chain wrote no counts: the layers count them here)
            layer = plan.layers[name].layer
            src = run.values[layer.source]
            run.values[name] = _pool(layer, src, plan.path) if layer.kind == "maxpool" else \
                _conv_fused(plan, plan.layers[name], src, run, threads)
        return
    run.binary.setdefault(chain.convs[0].source, True)
    run.values[chain.names[-1]] = result.out


def _conv_fused(plan: SimPlan, lp: LayerPlan, x: np.ndarray, run: _Run, threads: int) -> np.ndarray:
    """One conv layer over all steps in one C++ call (accumulation, soma, output), counting its
    output (and its input, where it is the value's counter) into the arena.

    The layer's tiles only partition its (input channel, output channel, position) space, so
    their partial sums added up (int64, exact: fan-in ≤ 65536 keeps them inside int32) are the
    layer's sum, computed here in one pass. Each SNN tile's work is counted exactly from the
    input nonzero counts after the run (:func:`_tally`).
    """
    layer = lp.layer
    in_count = run.slot(plan, layer.source) if layer.name in plan.counts.counts_input else None
    result = kernels.run_layer(x, lp.fused.call, threads, plan.path, in_count, run.slot(plan, layer.name))
    # the kernel scanned the input: auto mode runs gemm exactly when it is not 0/1
    run.binary.setdefault(layer.source, result.mode != "gemm")
    return result.out


def _is_binary(plan: SimPlan, name: str, values: dict, cache: dict) -> bool:
    """Whether value ``name`` holds only 0/1 (spikes): known for SNN outputs (and max/flatten of
    them), known not to when a max pool / flatten of it is not (their values are some of its
    values), measured once for the rest."""
    if name not in cache:
        kind = plan.values[name]
        if kind.spikes or (kind.part_of is not None and _is_binary(plan, kind.part_of, values, cache)):
            cache[name] = True
        elif any(cache.get(p) is False for p in kind.parts):  # some of this value's values are not 0/1
            cache[name] = False
        else:
            cache[name] = bool(values[name].size == 0 or values[name].view(np.uint8).max() <= 1)
    return cache[name]


def _use_events(plan: SimPlan, x: np.ndarray, binary: bool) -> bool:
    """Event-driven or dense kernels for this layer and run (same bits either way).

    Only 0/1 inputs (spikes) go event-driven, when fewer than ``event_density`` of them are
    active: measured on the reference network and a 4× wider variant, the event-driven kernels
    beat im2col + the dense int8 MAC up to about half the inputs active (the im2col copy and the
    small fan-in of a core's tile make the dense path slower than its peak)."""
    return binary and np.count_nonzero(x) < plan.options.event_density * x.size


def _weighted(plan: SimPlan, lp: LayerPlan, x: np.ndarray, active: np.ndarray, binary: bool) -> np.ndarray:
    """One conv2d / linear layer: the tiles' accumulators, then the soma (ANN output stage or LIF)."""
    layer, lm = lp.layer, lp.mapped
    events = _use_events(plan, x, binary)
    if events and layer.kind == "conv2d":  # event-driven convolution, accumulators (T, P, M)
        acc = _acc_events(plan, lp, x, active)
        order = (0, 2, 1)
    else:  # im2col rows, dense int8 MAC or event-driven rows, accumulators (P, T, M)
        acc = _acc_rows(plan, lp, x, active, events)
        order = (1, 2, 0)
    steps = x.shape[0]
    shape = (steps, *lm.out_shape)
    if layer.mode == "ann":
        q = kernels.output_stage(acc, layer.shift, layer.activation, layer.lut, path=plan.path)
        return np.ascontiguousarray(q.transpose(order)).reshape(shape)
    current = kernels.current_stage(acc, layer.shift, path=plan.path)
    current = np.ascontiguousarray(current.transpose(order)).reshape(steps, -1)
    n = current.shape[1]
    v, counter = np.zeros(n, np.int32), np.zeros(n, np.int32)
    return kernels.lif_run(current, v, counter, layer.neuron, path=plan.path).reshape(shape)


def _start(lp: LayerPlan, shape: tuple) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Accumulator array, per-tile bias (None when split inputs are merged in int64) and split flag."""
    layer = lp.layer
    split = lp.mapped.splits[0] > 1
    acc = np.empty(shape, np.int64 if split else np.int32)
    if split:
        acc[...] = 0 if layer.bias is None else np.asarray(layer.bias, np.int64)
    bias = None if layer.bias is None or split else np.asarray(layer.bias, np.int32)
    return acc, bias, split


def _finish(acc: np.ndarray, split: bool) -> np.ndarray:
    return np.clip(acc, -(2**31), 2**31 - 1).astype(np.int32) if split else acc


def _tile_activity(group: TileGroup, per_position: np.ndarray, active: np.ndarray) -> None:
    """Add each tile's active inputs (summed over its positions) to ``active``."""
    csum = np.zeros(len(per_position) + 1, np.int64)
    np.cumsum(per_position, out=csum[1:])
    active[group.tiles] += csum[group.stops] - csum[group.starts]


def _acc_rows(plan: SimPlan, lp: LayerPlan, x: np.ndarray, active: np.ndarray, events: bool) -> np.ndarray:
    """Accumulators (P, T, M) from input rows (im2col patches, or the input vector of a linear
    layer): the dense int8 MAC, or event-driven accumulation over the rows' active inputs."""
    layer, lm = lp.layer, lp.mapped
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
    acc, bias, split = _start(lp, (positions, steps, cout))
    for g in lp.groups:
        (k0, k1), (m0, m1) = g.k_range, g.m_range
        full = (k1 - k0) * per_ch == kfull
        rows = cols.reshape(-1, kfull) if full else \
            np.ascontiguousarray(cols[:, :, k0 * per_ch : k1 * per_ch]).reshape(positions * steps, -1)
        b = None if bias is None else bias[m0:m1]
        direct = len(lp.groups) == 1 and not split  # write straight into acc
        out = acc.reshape(-1, cout) if direct else None
        if events:
            out, _ = kernels.spike_accumulate(rows, plan.weights.get(layer, g, "fanout"), b, out=out, path=plan.path)
        else:
            out = kernels.dense_mac(rows, plan.weights.get(layer, g, "dense"), b, out=out, path=plan.path)
        if snn:  # active inputs of each tile: the nonzeros of its rows
            per_row = nonzero if (full and nonzero is not None) else np.count_nonzero(rows, axis=1).reshape(positions, steps)
            _tile_activity(g, per_row.sum(axis=1), active)
        if direct:
            continue
        if split:
            acc[:, :, m0:m1] += out.reshape(positions, steps, m1 - m0)
        else:
            acc[:, :, m0:m1] = out.reshape(positions, steps, m1 - m0)
    return _finish(acc, split)


def _acc_events(plan: SimPlan, lp: LayerPlan, x: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Event-driven convolution straight from the spike maps (no im2col)."""
    layer, lm = lp.layer, lp.mapped
    steps, cin = x.shape[0], x.shape[1]
    positions, cout = int(np.prod(lm.out_shape[1:])), layer.weight.shape[0]
    acc, bias, split = _start(lp, (steps, positions, cout))
    # active inputs per position: needed for the SNN tiles' event-driven cycle count only
    row_active = np.empty((steps, positions), np.int64) if layer.mode == "snn" else None
    for g in lp.groups:
        (k0, k1), (m0, m1) = g.k_range, g.m_range
        xs = x if (k0, k1) == (0, cin) else np.ascontiguousarray(x[:, k0:k1])
        direct = len(lp.groups) == 1 and not split
        out, _ = kernels.conv_events(xs, plan.weights.get(layer, g, "events"), None if bias is None else bias[m0:m1],
                                     lm.stride, lm.padding, out=acc if direct else None, row_active=row_active,
                                     path=plan.path)
        if layer.mode == "snn":
            _tile_activity(g, row_active.sum(axis=0), active)
        if direct:
            continue
        if split:
            acc[:, :, m0:m1] += out
        else:
            acc[:, :, m0:m1] = out
    return _finish(acc, split)


def _pool(layer: IntLayer, x: np.ndarray, path: str) -> np.ndarray:
    """Max pooling over k×k windows (stride k) in C++ (:func:`kernels.max_pool`); sum pooling as k²
    elementwise passes over strided views, then the output stage."""
    k = layer.kernel
    if layer.kind == "maxpool":
        return kernels.max_pool(x, k, path)
    t, c, h, w = x.shape
    hk, wk = h - h % k, w - w % k
    views = [x[:, :, i:hk:k, j:wk:k] for i in range(k) for j in range(k)]
    out = views[0].astype(np.int32)
    for v in views[1:]:
        out += v
    return kernels.output_stage(out, layer.shift, "none", path=path)


def _tally_early(plan: SimPlan, run: _Run, frames: int) -> np.ndarray:
    """Packets per route over the run (the cheaper of dense, payload bytes per packet, and sparse,
    one packet per nonzero value, e.g. per spike, for the measured values) for the routes of the
    values no chain counts (the rest, and the fused SNN tiles' active inputs, come from
    ``plan.counts.tally`` once the chains are joined; :class:`CountLayout`), after counting the
    route values no kernel counted."""
    layout, table = plan.counts, plan.routes
    for v in layout.uncounted:
        kernels.nonzero_counts(run.values[v], plan.path, out=run.slot(plan, v).reshape(-1))
    packets = np.zeros(len(plan.mapping.routes), np.int64)
    net = plan.mapping.net
    for p in table.partial:
        packets[p.route] = p.packets_per_step * net.inputs[_root_input(net, p.value)].steps * frames
    layout.tally_early.run(run.arena, layout.steps_per_frame * frames, run.active, packets, 1)
    return packets
