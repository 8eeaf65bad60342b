"""Integer network format: what ``to_integer`` and the NIR importer produce and ``chip_models`` runs.

An :class:`IntNetwork` is a graph of integer layers. Each layer reads one ``source`` (a
network input or an earlier layer) and runs in ANN mode (int8 activations after the output
stage of :mod:`neurosim.intmath`, then ``relu``/``none``/a 256-entry ``lut``) or SNN mode (the
shifted accumulator is the input current of the integer LIF of :mod:`neurosim.intneuron`;
outputs are 0/1 spikes). Pooling layers: ``maxpool`` (on spikes it is an OR) and ``sumpool``
(sum then ``requantize`` by ``shift``). ``flatten`` reshapes (C, H, W) to (C·H·W,).

Time: every network input has ``steps`` time steps per frame (1 for a frame-rate ANN input,
e.g. 10 for 1 ms event bins around a 100 Hz frame). A layer runs once per step of its source;
SNN layers keep their state across steps. Inputs are int8 (T, C, H, W) arrays.

On disk a network is a folder: ``network.json`` (graph, shapes, shifts, neuron parameters,
scales as ``frac_bits``) and ``tensors.safetensors`` (``<layer>.weight`` int8,
``<layer>.bias`` int32, ``<layer>.lut`` int8).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

from neurosim.errors import InputError, ParameterError
from neurosim.intmath import mac, requantize
from neurosim.intneuron import IntLIFParams, IntLIFState, int_lif_step

LAYER_KINDS = ("conv2d", "linear", "maxpool", "sumpool", "flatten")
FORMAT_VERSION = 1


@dataclasses.dataclass
class InputSpec:
    """A network input: shape (C, H, W) or (N,), scale 2**-frac_bits, time steps per frame."""

    shape: tuple[int, ...]
    frac_bits: int = 0
    steps: int = 1


@dataclasses.dataclass
class IntLayer:
    """One integer layer; ``source`` names a network input or an earlier layer."""

    name: str
    kind: str
    source: str
    mode: str = "ann"  # "ann" or "snn" (conv2d / linear only)
    weight: np.ndarray | None = None  # int8: (Cout, Cin, kh, kw) or (out, in)
    bias: np.ndarray | None = None  # int32: (Cout,) or (out,)
    shift: int = 0  # output-stage right shift (ann), current shift (snn), sumpool shift
    stride: int = 1
    padding: int = 0
    kernel: int = 1  # pooling window
    activation: str = "relu"  # ann: "relu", "none" or "lut"
    lut: np.ndarray | None = None  # int8 (256,), indexed by value + 128
    neuron: IntLIFParams | None = None  # snn
    frac_bits: int = 0  # scale of this layer's output

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ParameterError(f"layer {self.name}: kind {self.kind!r} is unknown, use one of {LAYER_KINDS}")
        if self.mode not in ("ann", "snn"):
            raise ParameterError(f"layer {self.name}: mode {self.mode!r} must be 'ann' or 'snn'")
        if self.mode == "snn" and self.neuron is None:
            raise ParameterError(f"layer {self.name}: an snn layer needs neuron parameters")


@dataclasses.dataclass
class IntNetwork:
    """A graph of integer layers with named inputs; ``outputs`` name the layers returned."""

    name: str
    inputs: dict[str, InputSpec]
    layers: list[IntLayer]
    outputs: list[str]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def layer(self, name: str) -> IntLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


# ------------------------------------------------------------------------------- file I/O

_TENSORS = ("weight", "bias", "lut")


def save(net: IntNetwork, folder: str | pathlib.Path) -> pathlib.Path:
    """Write ``net`` to ``folder`` (network.json + tensors.safetensors)."""
    from safetensors.numpy import save_file

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, layers = {}, []
    for layer in net.layers:
        entry = {}
        for f in dataclasses.fields(layer):
            value = getattr(layer, f.name)
            if f.name in _TENSORS:
                if value is not None:
                    dtype = np.int32 if f.name == "bias" else np.int8
                    tensors[f"{layer.name}.{f.name}"] = np.ascontiguousarray(value, dtype=dtype)
            elif f.name == "neuron":
                entry[f.name] = dataclasses.asdict(value) if value is not None else None
            else:
                entry[f.name] = value
        layers.append(entry)
    doc = {
        "format": "neurosim-intnet", "format_version": FORMAT_VERSION, "name": net.name,
        "inputs": {k: dataclasses.asdict(v) for k, v in net.inputs.items()},
        "layers": layers, "outputs": net.outputs, "meta": net.meta,
    }
    from neurosim.io import CONTENT_HASH, atomic_output, sha256_file

    with atomic_output(folder / "tensors.safetensors") as tmp:  # safetensors itself creates 0600 files
        save_file(tensors, str(tmp))
        doc[CONTENT_HASH] = sha256_file(tmp)
    (folder / "network.json").write_text(json.dumps(doc, indent=1))
    return folder


def load(folder: str | pathlib.Path) -> IntNetwork:
    """Read a network folder written by :func:`save`; InputError names what is wrong."""
    from safetensors.numpy import load_file

    folder = pathlib.Path(folder)
    if not (folder / "network.json").is_file():
        raise InputError(f"{folder} is not an integer network folder (no network.json): export one first")
    from neurosim.io import CONTENT_HASH, verify_sha256

    try:
        doc = json.loads((folder / "network.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{folder}: cannot read the network ({exc}); re-export it") from None
    tensor_file = folder / "tensors.safetensors"
    if tensor_file.exists() and isinstance(doc, dict):
        verify_sha256(tensor_file, doc.get(CONTENT_HASH), folder / "network.json")
    try:
        tensors = load_file(str(tensor_file)) if tensor_file.exists() else {}
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"{folder}: cannot read the network ({exc}); re-export it") from None
    if not isinstance(doc, dict) or doc.get("format") != "neurosim-intnet":
        raise InputError(f"{folder}/network.json is not a neurosim integer network: re-export it")
    version = doc.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise InputError(f"{folder}/network.json has format_version {version!r}; this neurosim reads 1..{FORMAT_VERSION}: "
                         "re-export it with this version (or upgrade neurosim)")
    try:
        layers = []
        for entry in doc["layers"]:
            entry = dict(entry)
            if entry.get("neuron") is not None:
                entry["neuron"] = IntLIFParams(**entry["neuron"])
            for t in _TENSORS:
                entry[t] = tensors.get(f"{entry['name']}.{t}")
            layers.append(IntLayer(**entry))
        inputs = {k: InputSpec(tuple(v["shape"]), v["frac_bits"], v["steps"]) for k, v in doc["inputs"].items()}
        net = IntNetwork(doc["name"], inputs, layers, list(doc["outputs"]), doc.get("meta", {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{folder}/network.json is malformed ({type(exc).__name__}: {exc}): re-export it") from None
    check_network(net, f"{folder}/network.json")
    return net


def check_network(net: IntNetwork, where: str) -> None:
    """InputError naming the first layer whose integer parameters are impossible: a shift outside
    [0, 31] (the output stage is a right shift of an int32), stride or pooling window < 1,
    padding < 0, a source that is neither an input nor an earlier layer, or an output that is no layer."""
    known = set(net.inputs)
    for layer in net.layers:
        bad = None
        if not isinstance(layer.shift, int) or not 0 <= layer.shift <= 31:
            bad = f"shift {layer.shift!r} is outside [0, 31]"
        elif not isinstance(layer.stride, int) or layer.stride < 1 or not isinstance(layer.kernel, int) or layer.kernel < 1:
            bad = f"stride {layer.stride!r} / kernel {layer.kernel!r} must be integers ≥ 1"
        elif not isinstance(layer.padding, int) or layer.padding < 0:
            bad = f"padding {layer.padding!r} must be an integer ≥ 0"
        elif layer.source not in known:
            bad = f"source {layer.source!r} is neither an input nor an earlier layer"
        if bad:
            raise InputError(f"{where}: layer {layer.name}: {bad}: re-export the network")
        known.add(layer.name)
    missing = [o for o in net.outputs if o not in known]
    if missing:
        raise InputError(f"{where}: output {missing[0]!r} is not a layer: re-export the network")


# --------------------------------------------------------------------- reference forward


def run_reference(net: IntNetwork, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``net`` in pure integer numpy: the bit-exact reference every kernel must match.

    ``inputs[name]`` is int8 (T, *shape) with T = that input's ``steps`` (times frames).
    Returns each output layer's values stacked over its steps, int64 (T, *shape).
    """
    values: dict[str, np.ndarray] = {}
    for name, spec in net.inputs.items():
        if name not in inputs:
            raise InputError(f"input {name!r} of network {net.name} is missing")
        x = np.asarray(inputs[name], np.int64)
        if x.shape[1:] != tuple(spec.shape):
            raise InputError(f"input {name!r} has shape {x.shape[1:]}, the network expects {tuple(spec.shape)}")
        values[name] = x
    for layer in net.layers:
        values[layer.name] = _run_layer(layer, values[layer.source])
    return {name: values[name] for name in net.outputs}


def _run_layer(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    """Apply one layer to all T steps of ``x`` (T, ...); SNN state carries across steps."""
    if layer.kind == "flatten":
        return x.reshape(x.shape[0], -1)
    if layer.kind in ("maxpool", "sumpool"):
        return np.stack([_pool(layer, xt) for xt in x])
    acc = np.stack([_accumulate(layer, xt) for xt in x])
    if layer.mode == "ann":
        return _activate(layer, requantize(acc, layer.shift, 8))
    current = requantize(acc, layer.shift, 32)
    state = IntLIFState.zeros(current.shape[1:])
    spikes = []
    for it in current:
        s, state = int_lif_step(it, state, layer.neuron)
        spikes.append(s)
    return np.stack(spikes)


def _accumulate(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    """int32 accumulator of one step: (Cout, Ho, Wo) for conv2d, (out,) for linear."""
    if layer.kind == "linear":
        return mac(x.reshape(1, -1), layer.weight, layer.bias)[0]
    w = np.asarray(layer.weight, np.int64)
    cout, cin, kh, kw = w.shape
    cols, (ho, wo) = im2col(x, kh, kw, layer.stride, layer.padding)
    return mac(cols, w.reshape(cout, -1), layer.bias).T.reshape(cout, ho, wo)


def im2col(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Patches of ``x`` (C, H, W), zero-padded: (Ho·Wo, C·kh·kw) in (c, i, j) order, and (Ho, Wo)."""
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    view = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::stride, ::stride][:, :ho, :wo]
    return view.transpose(1, 2, 0, 3, 4).reshape(ho * wo, c * kh * kw), (ho, wo)


def _pool(layer: IntLayer, x: np.ndarray) -> np.ndarray:
    k = layer.kernel
    c, h, w = x.shape
    win = x[:, : h - h % k, : w - w % k].reshape(c, h // k, k, w // k, k)
    if layer.kind == "maxpool":
        return win.max(axis=(2, 4))
    return requantize(win.sum(axis=(2, 4)), layer.shift, 8)


def _activate(layer: IntLayer, q: np.ndarray) -> np.ndarray:
    if layer.activation == "relu":
        return np.maximum(q, 0)
    if layer.activation == "lut":
        return np.asarray(layer.lut, np.int64)[q + 128]
    return q

