"""Reading networks for the chip model: integer network folders, NIR graphs, the built-in reference.

Everything becomes a :class:`neurosim.intnet.IntNetwork` (int8 weights, int32 biases,
power-of-two scales ``2**-frac_bits``). :func:`layer_shapes` and :func:`layer_steps` give each
layer's output shape and time steps per frame.

NIR → integer conversion (:func:`from_nir`)
-------------------------------------------
NIR describes continuous-time neurons with float parameters; the chip runs the integer LIF of
:mod:`neurosim.intneuron` with a time step ``dt`` (default 1 ms). Per weight node (``Affine``,
``Linear``, ``Conv2d``) and the neuron node that follows it:

* ``LIF`` (``tau dv/dt = v_leak - v + r·I``), Euler with ``dt``:
  ``v ← (1 - dt/tau)·v + (dt/tau)·v_leak + g·I`` with gain ``g = dt·r/tau``. ``IF``
  (``dv/dt = r·I``) has ``v ← v + dt·r·I`` (``g = dt·r``, no leak). ``g`` is folded into the
  weights and bias. ``dt`` is the graph's ``metadata["dt"]`` when present (neurosim.snn writes
  it), else the ``dt`` argument. Node metadata ``reset = "subtract"`` and ``refractory_steps``
  (written by neurosim.snn) are honoured.
* Membrane scale: ``frac_v = 12 - ceil(log2 v_threshold)`` so the integer threshold lies in
  (2^11, 2^12]; ``v_th = round(v_threshold·2^frac_v)``, ``v_reset = round(v_reset·2^frac_v)``
  (reset mode ``value``), ``leak_alpha = round(256·(1 - dt/tau))``,
  ``leak_beta = round((dt/tau)·v_leak·2^frac_v)``.
* Weights: ``frac_w = floor(log2(127 / max|g·W|))``, ``w = clip(round(g·W·2^frac_w), -128, 127)``;
  bias ``round(g·b·2^(frac_w + frac_x))`` (int32); current shift ``frac_w + frac_x - frac_v``.
  Inputs are spikes/integers (``frac_x = 0``); a spiking layer's output has ``frac_x = 0``.
* A weight node not followed by a neuron becomes an ANN layer (activation ``none``) whose shift
  keeps the worst case ``max_j Σ_k |w_jk|·max|x|`` within int8.
* ``Flatten`` → flatten; ``SumPool2d`` (kernel = stride, no padding) → ``sumpool`` shift 0;
  ``AvgPool2d`` with a power-of-two window → ``sumpool`` with shift ``log2(k²)``.
* Parameters must be the same for every neuron of a layer (one soma configuration per core);
  ``CubaLIF``, ``LI``, ``Threshold``, dilation, groups and asymmetric padding are refused with a
  message naming the node. The integer neuron integrates, fires, resets then leaks (Tianjic
  order), so the discretization differs from NIR's continuous model by up to one step's leak.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np

from neurosim import intnet
from neurosim.errors import InputError
from neurosim.intnet import InputSpec, IntLayer, IntNetwork
from neurosim.intneuron import IntLIFParams


def load_network(spec: str | pathlib.Path, *, dt: float | None = None, steps: int = 1, seed: int = 0) -> IntNetwork:
    """``reference`` (built-in DashNet-like network, weights from ``seed``), an integer network
    folder (``neurosim.intnet.save``, ``neurosim export``) or a ``.nir`` file → IntNetwork.

    NIR import: ``dt`` is the time step in seconds (default: the graph's metadata dt, else 1e-3)
    and ``steps`` the time steps per frame; weights are quantized to int8 with power-of-two scales.
    InputError if the path is missing or neither kind."""
    if str(spec) == "reference":
        from chip_models.reference_net import build_reference

        return build_reference(seed=seed)
    path = pathlib.Path(spec)
    if path.is_dir():
        net = intnet.load(path)
    elif path.suffix.lower() == ".nir" and path.is_file():
        net = read_nir(path, dt=dt, steps=steps)
    elif not path.exists():
        raise InputError(f"network {path} does not exist: give an integer network folder, a .nir file or 'reference'")
    else:
        raise InputError(f"network {path} is neither an integer network folder nor a .nir file: export one first")
    layer_shapes(net)  # validates the graph
    return net


# ------------------------------------------------------------------------------ shapes


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def layer_shapes(net: IntNetwork) -> dict[str, tuple[int, ...]]:
    """Output shape (without time) of every input and layer; InputError on an inconsistent graph."""
    shapes: dict[str, tuple[int, ...]] = {k: tuple(v.shape) for k, v in net.inputs.items()}
    for layer in net.layers:
        if layer.source not in shapes:
            raise InputError(f"layer {layer.name} reads {layer.source!r}, which is not an input or earlier layer: fix the network")
        x = shapes[layer.source]
        where = f"layer {layer.name}"
        if layer.kind == "flatten":
            shapes[layer.name] = (int(np.prod(x)),)
        elif layer.kind in ("maxpool", "sumpool"):
            if len(x) != 3 or layer.kernel < 1:
                raise InputError(f"{where}: pooling needs a (C, H, W) input and kernel ≥ 1")
            shapes[layer.name] = (x[0], x[1] // layer.kernel, x[2] // layer.kernel)
        elif layer.kind == "linear":
            w = layer.weight
            if w is None or w.ndim != 2 or x != (w.shape[1],):
                raise InputError(f"{where}: weight {None if w is None else w.shape} does not match input {x}")
            shapes[layer.name] = (w.shape[0],)
        else:
            w = layer.weight
            if w is None or w.ndim != 4 or len(x) != 3 or x[0] != w.shape[1]:
                raise InputError(f"{where}: weight {None if w is None else w.shape} does not match input {x}")
            ho, wo = (_conv_out(x[i + 1], w.shape[2 + i], layer.stride, layer.padding) for i in range(2))
            if ho < 1 or wo < 1:
                raise InputError(f"{where}: the kernel is larger than the padded input {x}")
            shapes[layer.name] = (w.shape[0], ho, wo)
        if layer.kind in ("conv2d", "linear"):
            if layer.bias is not None and layer.bias.shape != (layer.weight.shape[0],):
                raise InputError(f"{where}: bias has shape {layer.bias.shape}, expected ({layer.weight.shape[0]},)")
            if layer.mode == "ann" and layer.activation == "lut" and (layer.lut is None or layer.lut.shape != (256,)):
                raise InputError(f"{where}: a lut activation needs a 256-entry lut")
    for out in net.outputs:
        if out not in shapes:
            raise InputError(f"network output {out!r} is not a layer: fix the network")
    return shapes


def layer_steps(net: IntNetwork) -> dict[str, int]:
    """Time steps per frame of every input and layer (a layer runs once per step of its source)."""
    steps = {k: int(v.steps) for k, v in net.inputs.items()}
    for layer in net.layers:
        steps[layer.name] = steps[layer.source]
    return steps


# -------------------------------------------------------------------------------- NIR


def read_nir(path: str | pathlib.Path, *, dt: float | None = None, steps: int = 1) -> IntNetwork:
    """Read a NIR file (``nir.write``) and convert it with :func:`from_nir`."""
    import nir

    try:
        graph = nir.read(str(path))
    except Exception as exc:  # h5py / nir raise many types on a damaged file
        raise InputError(f"{path}: cannot read the NIR graph ({type(exc).__name__}: {exc}); write it again with nir.write") from None
    return from_nir(graph, name=pathlib.Path(path).stem, dt=dt, steps=steps)


def _uniform(values: Any, node: str, field: str) -> float:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise InputError(f"NIR node {node}: {field} is empty or not finite")
    if not np.allclose(a, a[0], rtol=1e-6, atol=0):
        raise InputError(f"NIR node {node}: {field} differs between neurons; the chip's soma needs one value per layer")
    return float(a[0])


def _pair(v: Any, node: str, field: str) -> int:
    a = np.atleast_1d(np.asarray(v)).reshape(-1)
    if a.dtype.kind not in "iuf" or not np.all(a == a[0]):
        raise InputError(f"NIR node {node}: {field} {v!r} must be one symmetric integer")
    return int(a[0])


def from_nir(graph: Any, *, name: str = "nir", dt: float | None = None, steps: int = 1) -> IntNetwork:
    """Convert a ``nir.NIRGraph`` (a chain or tree of supported nodes) to an IntNetwork (see module doc).

    ``dt`` (seconds): the graph's ``metadata["dt"]`` if present, else this argument, else 1 ms."""
    import nir

    meta_dt = (getattr(graph, "metadata", None) or {}).get("dt")
    dt = float(np.asarray(meta_dt).reshape(-1)[0]) if meta_dt is not None else (dt if dt is not None else 1e-3)
    if not dt > 0:
        raise InputError(f"the NIR graph's time step dt = {dt} is not positive")

    nodes, edges = graph.nodes, graph.edges
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    succs: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise InputError(f"NIR edge {a} -> {b} names a missing node: fix the graph")
        preds[b].append(a)
        succs[a].append(b)
    for k, p in preds.items():
        if len(p) > 1:
            raise InputError(f"NIR node {k} has {len(p)} inputs; only chains and trees of layers are supported")

    inputs: dict[str, InputSpec] = {}
    layers: list[IntLayer] = []
    outputs: list[str] = []
    value_of: dict[str, str] = {}  # NIR node -> name of the IntNetwork value it produces
    frac_of: dict[str, int] = {}  # IntNetwork value -> frac_bits
    xmax_of: dict[str, int] = {}  # IntNetwork value -> max |value|
    absorbed: set[str] = set()

    order = _topological(nodes, preds)
    for key in order:
        node = nodes[key]
        if key in absorbed:
            continue
        src = value_of.get(preds[key][0]) if preds[key] else None
        if isinstance(node, nir.Input):
            itype = node.input_type
            shape = tuple(int(s) for s in np.asarray(itype["input"] if isinstance(itype, dict) else itype).reshape(-1))
            inputs[key] = InputSpec(shape=shape, frac_bits=0, steps=steps)
            value_of[key], frac_of[key], xmax_of[key] = key, 0, 1
        elif isinstance(node, nir.Output):
            outputs.append(src)
        elif isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            nxt = succs[key][0] if len(succs[key]) == 1 else None
            neuron = nodes[nxt] if nxt is not None and isinstance(nodes[nxt], (nir.LIF, nir.IF)) else None
            layer = _weight_layer(key, node, neuron, nxt, src, frac_of[src], xmax_of[src], dt)
            layers.append(layer)
            out_key = key
            if neuron is not None:
                absorbed.add(nxt)
                out_key = nxt
            value_of[key] = value_of[out_key] = layer.name
            frac_of[layer.name] = layer.frac_bits
            xmax_of[layer.name] = 1 if layer.mode == "snn" else 127
        elif isinstance(node, nir.Flatten):
            layers.append(IntLayer(name=key, kind="flatten", source=src, frac_bits=frac_of[src]))
            value_of[key], frac_of[key], xmax_of[key] = key, frac_of[src], xmax_of[src]
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            k, s, p = (_pair(getattr(node, f), key, f) for f in ("kernel_size", "stride", "padding"))
            if k != s or p != 0:
                raise InputError(f"NIR node {key}: pooling needs stride = kernel and no padding (got {k}, {s}, {p})")
            shift = 0
            if isinstance(node, nir.AvgPool2d):
                shift = int(round(math.log2(k * k)))
                if 2**shift != k * k:
                    raise InputError(f"NIR node {key}: average pooling over {k}x{k} is not a power-of-two division")
            layers.append(IntLayer(name=key, kind="sumpool", source=src, kernel=k, shift=shift,
                                   frac_bits=frac_of[src]))
            value_of[key], frac_of[key], xmax_of[key] = key, frac_of[src], min(127, xmax_of[src] * k * k >> shift)
        elif isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            raise InputError(f"NIR node {key} ({type(node).__name__}) has a synaptic current, which the chip's integer "
                             "LIF soma does not model: export LIF neurons without synaptic current (e.g. lif_box_params)")
        else:
            raise InputError(f"NIR node {key} of type {type(node).__name__} is not supported on the chip model "
                             "(supported: Input, Output, Affine, Linear, Conv2d, LIF, IF, Flatten, SumPool2d, AvgPool2d)")
    if not outputs:
        outputs = [layers[-1].name] if layers else []
    if not layers:
        raise InputError("the NIR graph has no layers: export a network with weights")
    meta = {"source": "nir", "dt_s": dt, "steps": steps}
    return IntNetwork(name=name, inputs=inputs, layers=layers, outputs=outputs, meta=meta)


def _topological(nodes: dict, preds: dict[str, list[str]]) -> list[str]:
    order, done = [], set()
    pending = list(nodes)
    while pending:
        progressed = False
        for k in list(pending):
            if all(p in done for p in preds[k]):
                order.append(k)
                done.add(k)
                pending.remove(k)
                progressed = True
        if not progressed:
            raise InputError(f"the NIR graph has a cycle through {pending[0]}; recurrent graphs are not supported")
    return order


def _weight_layer(key: str, node: Any, neuron: Any, neuron_key: str | None, src: str, frac_x: int, xmax: int,
                  dt: float) -> IntLayer:
    import nir

    w = np.asarray(node.weight, np.float64)
    b = np.asarray(getattr(node, "bias", None), np.float64) if getattr(node, "bias", None) is not None else None
    if b is not None and b.ndim == 0:
        b = np.full(w.shape[0], float(b))
    kind, extra = "linear", {}
    if isinstance(node, nir.Conv2d):
        if w.ndim != 4:
            raise InputError(f"NIR node {key}: Conv2d weight must be (Cout, Cin, kh, kw), got {w.shape}")
        if _pair(node.dilation, key, "dilation") != 1 or int(node.groups) != 1:
            raise InputError(f"NIR node {key}: dilation and groups must be 1 on the chip model")
        padding = node.padding
        if isinstance(padding, str):
            if padding != "valid" and not (padding == "same" and w.shape[2] % 2 == 1):
                raise InputError(f"NIR node {key}: padding {padding!r} is not supported (use an integer)")
            padding = 0 if padding == "valid" else w.shape[2] // 2
        kind, extra = "conv2d", {"stride": _pair(node.stride, key, "stride"), "padding": _pair(padding, key, "padding")}
    elif w.ndim != 2:
        raise InputError(f"NIR node {key}: weight must be 2-D (out, in), got {w.shape}")

    if neuron is None:
        wq, frac_w = _quantize(w, key)
        worst = np.abs(wq.reshape(wq.shape[0], -1).astype(np.int64)).sum(axis=1).max() * xmax
        shift = max(0, math.ceil(math.log2(max(worst, 1) / 127)))
        bias = None if b is None else _bias(b * 2.0 ** (frac_w + frac_x))
        return IntLayer(name=key, kind=kind, source=src, mode="ann", weight=wq, bias=bias, shift=shift,
                        activation="none", frac_bits=frac_w + frac_x - shift, **extra)

    vth = _uniform(neuron.v_threshold, neuron_key, "v_threshold")
    vreset = _uniform(getattr(neuron, "v_reset", 0.0), neuron_key, "v_reset")
    r = _uniform(neuron.r, neuron_key, "r")
    if vth <= 0:
        raise InputError(f"NIR node {neuron_key}: v_threshold must be positive")
    if isinstance(neuron, nir.LIF):
        tau = _uniform(neuron.tau, neuron_key, "tau")
        vleak = _uniform(neuron.v_leak, neuron_key, "v_leak")
        if not tau >= dt:
            raise InputError(f"NIR node {neuron_key}: tau {tau} s is shorter than the time step {dt} s: lower --set dt")
        gain, decay = dt * r / tau, dt / tau
    else:
        gain, decay, vleak = dt * r, 0.0, 0.0
    nmeta = getattr(neuron, "metadata", None) or {}
    reset_mode = "subtract" if str(nmeta.get("reset", "value")) == "subtract" else "value"
    refractory = int(np.asarray(nmeta.get("refractory_steps", 0)).reshape(-1)[0])
    frac_v = 12 - math.ceil(math.log2(vth))
    wq, frac_w = _quantize(w * gain, key)
    bias = None if b is None else _bias(b * gain * 2.0 ** (frac_w + frac_x))
    neuron_p = IntLIFParams(
        v_th=int(round(vth * 2.0**frac_v)), v_reset=int(round(vreset * 2.0**frac_v)), reset_mode=reset_mode,
        leak_alpha=int(round(256 * (1 - decay))), leak_beta=int(round(decay * vleak * 2.0**frac_v)),
        refractory_steps=refractory,
    )
    return IntLayer(name=key, kind=kind, source=src, mode="snn", weight=wq, bias=bias,
                    shift=frac_w + frac_x - frac_v, neuron=neuron_p, frac_bits=0, **extra)


def _quantize(w: np.ndarray, key: str) -> tuple[np.ndarray, int]:
    if not np.all(np.isfinite(w)):
        raise InputError(f"NIR node {key}: weights are not finite")
    peak = float(np.abs(w).max())
    frac = 0 if peak == 0 else math.floor(math.log2(127 / peak))
    return np.clip(np.round(w * 2.0**frac), -128, 127).astype(np.int8), frac


def _bias(b: np.ndarray) -> np.ndarray:
    return np.clip(np.round(b), -(2**31), 2**31 - 1).astype(np.int32)
