"""Mapping an integer network onto the cores of a chip: tiles, placement, routes.

Tiling (per conv2d / linear / pooling layer; ``flatten`` needs no core)
    A core holds ``fan_out`` neurons, each with up to ``fan_in`` inputs, and ``memory_bytes``
    of weights + neuron state. A conv layer (Cin → Cout, kernel kh×kw, Ho·Wo positions) is cut
    into ``k_tiles × m_tiles × p_tiles`` tiles: input channels (each neuron of a tile sees
    ``cin_t·kh·kw ≤ fan_in`` inputs), output channels ``m_t`` and output positions ``p_t``
    (raster order) with ``m_t·p_t ≤ fan_out`` and ``cin_t·kh·kw·m_t`` weight bytes (shared by
    the tile's positions) + ``m_t·p_t·state_bytes_per_neuron`` ≤ ``memory_bytes``. ``m_t`` is as
    large as fits, then ``p_t``; the splits are balanced. A linear layer is a conv with 1×1
    kernel and one position. When the inputs are split (``k_tiles > 1``) every input tile sends
    its int32 partial sums to the first one, which adds them and runs the soma.
Balancing
    Layers are pipelined, so the slowest core sets the frame rate. While spare cores remain, the
    layer whose core has the most estimated work per frame (``steps·P·ceil(K/mac_rows)·
    ceil(M/mac_cols)`` MAC-array cycles, or ``steps·M·P`` soma cycles if more) gets its
    positions spread over twice as many cores (``balance=False`` turns this off).
Placement
    Tiles are laid, in layer order, along a serpentine (boustrophedon) path through the mesh, so
    consecutive tiles of a layer and consecutive layers are neighbours and XY routes stay short.
    Network inputs enter and network outputs leave through an I/O port west of core (0, 0).
Routes
    For every consumer tile, the source neurons it needs (its input channels × the receptive
    fields of its positions) are grouped by the core that produces them: one route per
    (producer, consumer) pair with its neuron list and its XY hop count ``|Δrow| + |Δcol|``.

A network that does not fit raises :class:`~neurosim.errors.CapacityError` naming the layer,
what it needs and what the chip has.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from chip_models.config import ChipConfig
from chip_models.network import layer_shapes, layer_steps
from neurosim.errors import CapacityError
from neurosim.intnet import IntNetwork

IO = -1  # producer id of the network inputs (the I/O port)
IO_CORE = (0, -1)


@dataclasses.dataclass
class Tile:
    """One core's share of a layer. Ranges are half-open; positions index Ho·Wo in raster order."""

    id: int
    layer: str
    k_range: tuple[int, int]  # input channels (linear: input features; pooling: = m_range)
    m_range: tuple[int, int]  # output channels / features
    p_range: tuple[int, int]  # output positions
    fan_in: int  # inputs per neuron
    weight_bytes: int
    state_bytes: int
    core: tuple[int, int] = (0, 0)
    merge_into: int | None = None  # tile that receives this tile's partial sums

    @property
    def neurons(self) -> int:
        return (self.m_range[1] - self.m_range[0]) * (self.p_range[1] - self.p_range[0])

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.state_bytes


@dataclasses.dataclass
class Route:
    """Traffic from producer tile ``src`` (``IO`` for a network input) to consumer tile ``dst``."""

    src: int
    dst: int  # consumer tile, or IO for a network output leaving the chip
    hops: int
    value: str  # the producer value (network input or layer) whose neurons travel
    steps: int  # time steps per frame of that value
    neurons: np.ndarray  # int32 flat indices into the producer value's output
    partial_sums: bool = False  # int32 partial sums of a split-input tile


@dataclasses.dataclass
class LayerMap:
    name: str
    kind: str
    mode: str
    source: str  # the value this layer reads, flatten resolved
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    steps: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int = 0
    tiles: list[int] = dataclasses.field(default_factory=list)
    splits: tuple[int, int, int] = (0, 0, 0)  # k_tiles, m_tiles, p_tiles


@dataclasses.dataclass
class Mapping:
    chip: ChipConfig
    net: IntNetwork
    layers: dict[str, LayerMap]
    tiles: list[Tile]
    routes: list[Route]
    shapes: dict[str, tuple[int, ...]]
    steps: dict[str, int]

    def cores_per_layer(self) -> dict[str, int]:
        return {name: len(lm.tiles) for name, lm in self.layers.items() if lm.tiles}

    def summary(self) -> dict:
        used = len(self.tiles)
        return {
            "chip": self.chip.name, "cores_available": self.chip.cores, "cores_used": used,
            "mesh": [self.chip.rows, self.chip.cols],
            "layers": [
                {"name": lm.name, "kind": lm.kind, "mode": lm.mode, "out_shape": list(lm.out_shape),
                 "cores": len(lm.tiles), "splits": dict(zip(("inputs", "outputs", "positions"), lm.splits)),
                 "max_fan_in": max((self.tiles[t].fan_in for t in lm.tiles), default=0),
                 "max_memory_bytes": max((self.tiles[t].memory_bytes for t in lm.tiles), default=0)}
                for lm in self.layers.values() if lm.tiles
            ],
            "routes": len(self.routes),
            "mean_hops": float(np.mean([r.hops for r in self.routes])) if self.routes else 0.0,
        }


def _resolve(net: IntNetwork, name: str) -> str:
    """The producer of value ``name``, skipping flatten layers (they only re-index)."""
    while name not in net.inputs:
        layer = net.layer(name)
        if layer.kind != "flatten":
            return name
        name = layer.source
    return name


def map_network(net: IntNetwork, chip: ChipConfig, balance: bool = True) -> Mapping:
    """Tile, place and route ``net`` on ``chip`` (cores on a rows × cols mesh, routes between them);
    CapacityError when it does not fit. ``mapping.summary()`` gives cores used, mesh, routes, hops."""
    limits: dict[str, int] = {}
    mapping = _map(net, chip, limits, routes=False)
    while balance:
        work = {name: _stage_work(mapping, lm) for name, lm in mapping.layers.items() if lm.tiles}
        worst = max(work, key=work.get)
        lm = mapping.layers[worst]
        p_t = max(mapping.tiles[t].p_range[1] - mapping.tiles[t].p_range[0] for t in lm.tiles)
        if p_t <= 1 or len(mapping.tiles) + len(lm.tiles) > chip.cores:
            break
        limits[worst] = math.ceil(p_t / 2)
        mapping = _map(net, chip, limits, routes=False)
    mapping.routes = _routes(net, mapping.layers, mapping.tiles, mapping.shapes)
    return mapping


def _stage_work(mapping: Mapping, lm: LayerMap) -> float:
    """Estimated busiest-core cycles per frame of a layer (MAC array or soma), before simulation."""
    chip, worst = mapping.chip, 0.0
    for t in lm.tiles:
        tile = mapping.tiles[t]
        m, p = tile.m_range[1] - tile.m_range[0], tile.p_range[1] - tile.p_range[0]
        mac = p * math.ceil(tile.fan_in / chip.mac_rows) * math.ceil(m / chip.mac_cols)
        worst = max(worst, lm.steps * max(mac, m * p / chip.soma_neurons_per_clock))
    return worst


def _map(net: IntNetwork, chip: ChipConfig, limits: dict[str, int], routes: bool = True) -> Mapping:
    shapes, steps = layer_shapes(net), layer_steps(net)
    layers: dict[str, LayerMap] = {}
    tiles: list[Tile] = []
    for layer in net.layers:
        in_shape = shapes[layer.source]
        lm = LayerMap(layer.name, layer.kind, layer.mode, _resolve(net, layer.source), in_shape,
                      shapes[layer.name], steps[layer.name])
        layers[layer.name] = lm
        if layer.kind == "flatten":
            continue
        if layer.kind in ("conv2d", "linear"):
            w = layer.weight
            if layer.kind == "conv2d":
                lm.kernel, lm.stride, lm.padding = (w.shape[2], w.shape[3]), layer.stride, layer.padding
            cin, cout = (w.shape[1], w.shape[0])
            positions = int(np.prod(lm.out_shape[1:])) if layer.kind == "conv2d" else 1
            per_ch = lm.kernel[0] * lm.kernel[1]
            extra = 256 if (layer.mode == "ann" and layer.activation == "lut") else 0
            new = _tile_layer(layer.name, cin, cout, positions, per_ch, True, extra, chip, len(tiles),
                              limits.get(layer.name))
        else:  # pooling: depthwise, kernel k×k, no weights
            k = layer.kernel
            lm.kernel, lm.stride = (k, k), k
            c = lm.out_shape[0]
            new = _tile_layer(layer.name, c, c, int(np.prod(lm.out_shape[1:])), k * k, False, 0, chip, len(tiles),
                              limits.get(layer.name))
        lm.tiles = [t.id for t in new]
        lm.splits = _splits(new)
        if len(tiles) + len(new) > chip.cores:
            raise CapacityError(
                f"network {net.name} does not fit chip {chip.name}: layer {layer.name} needs {len(new)} cores but only "
                f"{chip.cores - len(tiles)} of {chip.cores} are left ({len(tiles)} used by earlier layers); "
                f"use more chips (--set chips=N), a bigger preset or a smaller network"
            )
        tiles.extend(new)
    _place(tiles, chip)
    return Mapping(chip, net, layers, tiles, _routes(net, layers, tiles, shapes) if routes else [], shapes, steps)


def _splits(tiles: list[Tile]) -> tuple[int, int, int]:
    return tuple(len({getattr(t, f) for t in tiles}) for f in ("k_range", "m_range", "p_range"))  # type: ignore[return-value]


def _ranges(total: int, parts: int) -> list[tuple[int, int]]:
    size = math.ceil(total / parts)
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def _tile_layer(name: str, cin: int, cout: int, positions: int, per_ch: int, weights: bool, extra_bytes: int,
                chip: ChipConfig, first_id: int, max_positions: int | None = None) -> list[Tile]:
    """Cut one layer into tiles (see the module docstring)."""
    if per_ch > chip.fan_in:
        raise CapacityError(f"layer {name}: one neuron needs fan-in {per_ch} (its kernel alone) but a core of chip "
                            f"{chip.name} has fan-in {chip.fan_in}; use a smaller kernel or a chip with larger cores")
    sb = chip.state_bytes_per_neuron
    cin_t = min(cin, chip.fan_in // per_ch) if weights else 1
    k_tiles = math.ceil(cin / cin_t) if weights else 1
    cin_t = math.ceil(cin / k_tiles) if weights else 1
    wpc = cin_t * per_ch if weights else 0  # weight bytes per output channel
    m_t = min(cout, chip.fan_out, (chip.memory_bytes - extra_bytes) // (wpc + sb))
    if m_t < 1:
        raise CapacityError(f"layer {name}: one output channel needs {wpc + sb + extra_bytes} bytes of weights and state "
                            f"but a core of chip {chip.name} has {chip.memory_bytes}; use a chip with more memory per core")
    m_tiles = math.ceil(cout / m_t)
    m_t = math.ceil(cout / m_tiles)
    p_t = min(positions, chip.fan_out // m_t, (chip.memory_bytes - extra_bytes - wpc * m_t) // (sb * m_t),
              max_positions or positions)
    p_tiles = math.ceil(positions / p_t)
    out = []
    k_ranges = _ranges(cin, k_tiles) if weights else None
    for m_range in _ranges(cout, m_tiles):
        for p_range in _ranges(positions, p_tiles):
            ks = k_ranges if weights else [m_range]
            head = None
            for k_range in ks:
                fan_in = (k_range[1] - k_range[0]) * per_ch if weights else per_ch
                m = m_range[1] - m_range[0]
                tile = Tile(first_id + len(out), name, k_range, m_range, p_range, fan_in,
                            weight_bytes=(fan_in * m if weights else 0) + extra_bytes,
                            state_bytes=m * (p_range[1] - p_range[0]) * sb)
                if head is None:
                    head = tile.id
                else:
                    tile.merge_into = head
                out.append(tile)
    return out


def _place(tiles: list[Tile], chip: ChipConfig) -> None:
    """Serpentine placement: row 0 left→right, row 1 right→left, ..."""
    for i, t in enumerate(tiles):
        r, c = divmod(i, chip.cols)
        t.core = (r, c if r % 2 == 0 else chip.cols - 1 - c)


def _hops(a: tuple[int, int], b: tuple[int, int]) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _owner(value: str, layers: dict[str, LayerMap], tiles: list[Tile], shapes: dict) -> np.ndarray:
    """Producer tile of every output neuron (flat index) of ``value``; IO for network inputs."""
    n = int(np.prod(shapes[value]))
    owner = np.full(n, IO, np.int64)
    if value not in layers:
        return owner
    lm = layers[value]
    positions = int(np.prod(lm.out_shape[1:])) if len(lm.out_shape) == 3 else 1
    grid = owner.reshape(-1, positions)
    for t in lm.tiles:
        tile = tiles[t]
        if tile.merge_into is None:  # the head tile of a split-input group emits the outputs
            grid[tile.m_range[0] : tile.m_range[1], tile.p_range[0] : tile.p_range[1]] = t
    return owner


def _needed(lm: LayerMap, tile: Tile) -> np.ndarray:
    """Flat indices of the source neurons ``tile`` reads."""
    if len(lm.in_shape) == 1 or lm.kind == "linear":
        return np.arange(tile.k_range[0], tile.k_range[1], dtype=np.int64)
    c, h, w = lm.in_shape
    ho, wo = lm.out_shape[1:]
    q = np.arange(tile.p_range[0], tile.p_range[1])
    oy, ox = np.divmod(q, wo)
    mask = np.zeros((h, w), bool)
    for dy in range(lm.kernel[0]):
        for dx in range(lm.kernel[1]):
            y, x = oy * lm.stride - lm.padding + dy, ox * lm.stride - lm.padding + dx
            ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            mask[y[ok], x[ok]] = True
    pix = np.flatnonzero(mask)
    chans = np.arange(tile.k_range[0], tile.k_range[1])
    return (chans[:, None] * (h * w) + pix[None, :]).reshape(-1)


def _routes(net: IntNetwork, layers: dict[str, LayerMap], tiles: list[Tile], shapes: dict) -> list[Route]:
    routes: list[Route] = []
    owners: dict[str, np.ndarray] = {}
    for lm in layers.values():
        if not lm.tiles:
            continue
        if lm.source not in owners:
            owners[lm.source] = _owner(lm.source, layers, tiles, shapes)
        owner = owners[lm.source]
        for t in lm.tiles:
            tile = tiles[t]
            need = _needed(lm, tile)
            src = owner[need]
            order = np.argsort(src, kind="stable")
            src, need = src[order], need[order]
            cuts = np.flatnonzero(np.diff(src)) + 1
            for s_ids, n_ids in zip(np.split(src, cuts), np.split(need, cuts)):
                if len(s_ids) == 0:
                    continue
                s = int(s_ids[0])
                where = IO_CORE if s == IO else tiles[s].core
                routes.append(Route(s, t, _hops(where, tile.core), lm.source, lm.steps, n_ids.astype(np.int32)))
            if tile.merge_into is not None:
                head = tiles[tile.merge_into]
                routes.append(Route(t, head.id, _hops(tile.core, head.core), lm.name, lm.steps,
                                    np.zeros(0, np.int32), partial_sums=True))
    for out in dict.fromkeys(net.outputs):  # outputs leave through the I/O port
        value = _resolve(net, out)
        if value not in layers:
            continue
        owner = _owner(value, layers, tiles, shapes)
        for t in set(owner.tolist()) - {IO}:
            ids = np.flatnonzero(owner == t).astype(np.int32)
            routes.append(Route(t, IO, _hops(tiles[t].core, IO_CORE), value, layers[value].steps, ids))
    return routes
