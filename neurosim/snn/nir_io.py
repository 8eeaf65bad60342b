"""NIR export and import of feed-forward spiking networks, written with the ``nir`` package.

Only standard NIR nodes are written (``Input``, ``Conv2d``, ``Affine``, ``Linear``,
``Flatten``, ``SumPool2d``, ``AvgPool2d``, ``LIF``, ``CubaLIF``, ``IF``, ``LI``, ``CubaLI``,
``Threshold``, ``Output``), so any NIR reader can load the graph.

Time constants. NIR neurons are continuous-time: ``LIF``: ``tau·dv/dt = (v_leak − v) + r·I``;
``CubaLIF``: ``tau_syn·dI/dt = −I + w_in·S`` and ``tau_mem·dv/dt = (v_leak − v) + r·I``;
``IF``: ``dv/dt = r·I``. neurosim (and norse) integrate with explicit Euler at step ``dt``
with rates ``tau_*_inv`` in 1/s, so the exact correspondence is::

    tau = 1 / tau_mem_inv     tau_syn = 1 / tau_syn_inv     r = r     (seconds, not dt-scaled)
    IF:  r_NIR = tau_mem_inv · r   (neurosim's IF has dt·tau_mem_inv = 1, so r_NIR = r/dt)
    CubaLIF: w_in = 1 — a spike of weight x raises I by x per step (the discrete convention of
    norse's and snntorch's NIR importers)

``dt`` is stored in the graph's metadata (``{"dt": ...}``) and is an argument of the import.
norse 1.1.0's exporter writes ``tau = dt / tau_mem_inv`` (norse issues #411/#412), i.e. its
time constants are ``dt²·`` too small by a factor ``dt`` (1000× at dt = 1 ms);
:func:`repair_norse_export` multiplies them back. :func:`from_norse` converts a norse
network to neurosim, whose :func:`to_nir` then writes the correct graph.

neurosim options NIR has no field for (subtract reset, refractory period, surrogate) are
kept in node metadata; other tools ignore them.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional

import numpy as np
import torch

from neurosim.errors import InputError, ParameterError
from neurosim.snn import layers as L
from neurosim.snn.neurons import Neuron, NeuronParams
from neurosim.snn.sequential import Sequential


def _arr(x: Any, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """Broadcast a scalar or per-channel (C,) value to a neuron array of ``shape``."""
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=dtype)
    if a.ndim == 1 and len(shape) > 1:
        a = a.reshape((-1,) + (1,) * (len(shape) - 1))
    return np.ascontiguousarray(np.broadcast_to(a, shape))


def _neuron_node(m: Neuron, shape: tuple[int, ...]):
    import nir

    p = m.params()
    inv = lambda v: 1.0 / _arr(v, shape)  # noqa: E731
    meta: dict[str, Any] = {"surrogate": p.surrogate, "surrogate_alpha": float(p.alpha) if p.alpha is not None else -1.0}
    if p.reset != "value":
        meta["reset"] = p.reset
    if p.refractory_steps:
        meta["refractory_steps"] = int(p.refractory_steps)
    r, vl, th, vr = (_arr(v, shape) for v in (p.r, p.v_leak, p.v_th, p.v_reset))
    syn = p.tau_syn_inv is not None
    if not p.spiking:
        if syn:
            return nir.CubaLI(tau_syn=inv(p.tau_syn_inv), tau_mem=inv(p.tau_mem_inv), r=r, v_leak=vl, metadata=meta)
        return nir.LI(tau=inv(p.tau_mem_inv), r=r, v_leak=vl, metadata=meta)
    if not p.leak:
        if syn:
            raise ParameterError("an IF neuron with synaptic current has no NIR node: use CubaLIF or drop tau_syn_inv")
        return nir.IF(r=_arr(p.tau_mem_inv, shape) * r, v_threshold=th, v_reset=vr, metadata=meta)
    if syn:
        return nir.CubaLIF(tau_syn=inv(p.tau_syn_inv), tau_mem=inv(p.tau_mem_inv), r=r, v_leak=vl,
                           v_threshold=th, v_reset=vr, w_in=np.ones(shape), metadata=meta)
    return nir.LIF(tau=inv(p.tau_mem_inv), r=r, v_leak=vl, v_threshold=th, v_reset=vr, metadata=meta)


def _pool_out(shape, k, s, pad):
    c, h, w = shape
    return (c, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1)


def to_nir(net: Sequential, input_shape: tuple[int, ...], dt: float = 1e-3):
    """Export ``net`` (feed-forward) to a ``nir.NIRGraph``; ``input_shape`` is one step's (C, H, W) or (N,)."""
    import nir

    shape = tuple(int(s) for s in input_shape)
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(shape))}
    order = ["input"]
    for idx, m in enumerate(net):
        name = f"{idx}_{type(m).__name__.lower()}"
        if isinstance(m, L.Conv2d):
            if len(shape) != 3 or shape[0] != m.in_channels:
                raise ParameterError(f"layer {idx}: Conv2d expects ({m.in_channels}, H, W) input, has {shape}")
            if isinstance(m.padding, str):
                raise ParameterError(f"layer {idx}: give Conv2d padding as numbers for NIR export")
            node = nir.Conv2d(
                input_shape=shape[1:], weight=m.weight.detach().numpy().copy(), stride=m.stride, padding=m.padding,
                dilation=m.dilation, groups=m.groups,
                bias=(m.bias.detach().numpy().copy() if m.bias is not None else np.zeros(m.out_channels, np.float32)),
            )
            h = (shape[1] + 2 * m.padding[0] - m.dilation[0] * (m.kernel_size[0] - 1) - 1) // m.stride[0] + 1
            w = (shape[2] + 2 * m.padding[1] - m.dilation[1] * (m.kernel_size[1] - 1) - 1) // m.stride[1] + 1
            shape = (m.out_channels, h, w)
        elif isinstance(m, L.Linear):
            if shape != (m.in_features,):
                raise ParameterError(f"layer {idx}: Linear expects ({m.in_features},) input, has {shape}: add a Flatten")
            wgt = m.weight.detach().numpy().copy()
            node = nir.Affine(wgt, m.bias.detach().numpy().copy()) if m.bias is not None else nir.Linear(wgt)
            shape = (m.out_features,)
        elif isinstance(m, L.Flatten):
            node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            shape = (int(np.prod(shape)),)
        elif isinstance(m, (L.SumPool2d, L.AvgPool2d)):
            cls = nir.SumPool2d if isinstance(m, L.SumPool2d) else nir.AvgPool2d
            node = cls(kernel_size=np.array([m.kernel_size] * 2), stride=np.array([m.stride] * 2),
                       padding=np.array([m.padding] * 2))
            shape = _pool_out(shape, m.kernel_size, m.stride, m.padding)
        elif isinstance(m, L.Threshold):
            node = nir.Threshold(threshold=_arr(m.threshold, shape))
        elif isinstance(m, Neuron):
            node = _neuron_node(m, shape)
        elif isinstance(m, L.Dropout):
            continue  # identity at inference
        else:
            raise ParameterError(f"layer {idx} ({type(m).__name__}) has no NIR node: use neurosim.snn layers")
        nodes[name] = node
        order.append(name)
    nodes["output"] = nir.Output(output_type=np.array(shape))
    order.append("output")
    edges = list(zip(order[:-1], order[1:]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": float(dt), "source": "neurosim"})


def save_nir(net: Sequential, path: str | pathlib.Path, input_shape: tuple[int, ...], dt: float = 1e-3) -> pathlib.Path:
    """Export ``net`` and write it to ``path`` (HDF5, via ``nir.write``), atomically."""
    import nir

    from neurosim.io import atomic_output

    graph = to_nir(net, input_shape, dt)
    with atomic_output(path) as tmp:
        nir.write(str(tmp), graph)
    return pathlib.Path(path)


def load_graph(path: str | pathlib.Path):
    """Read a NIR file; InputError if it is missing or not NIR."""
    import nir

    from neurosim.io import existing_file

    p = existing_file(path, "NIR file")
    try:
        return nir.read(str(p))
    except Exception as exc:  # h5py / nir raise many kinds
        raise InputError(f"{p} is not a readable NIR file ({type(exc).__name__}: {exc}): export it again") from None


# ---------------------------------------------------------------------------------- import


def _collapse(a: Any) -> float | torch.Tensor:
    """A NIR parameter array → a float (uniform) or a per-channel float64 tensor (C,)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.size == 0:
        raise InputError("a NIR neuron parameter is empty")
    flat = arr.reshape(-1)
    if np.all(flat == flat[0]):
        return float(flat[0])
    per_channel = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    if not np.all(per_channel == per_channel[:, :1]):
        raise ParameterError("NIR neuron parameters vary within a channel: neurosim supports per-channel values only")
    return torch.from_numpy(per_channel[:, 0].copy())


def _meta(node) -> dict[str, Any]:
    out = {}
    for k, v in (getattr(node, "metadata", None) or {}).items():
        v = v.decode() if isinstance(v, bytes) else v
        out[k] = v.item() if isinstance(v, np.generic) or (isinstance(v, np.ndarray) and v.ndim == 0) else v
        if isinstance(out[k], bytes):
            out[k] = out[k].decode()
    return out


def _neuron_from_node(node, dt: float) -> Neuron:
    import nir

    meta = _meta(node)
    inv = lambda v: 1.0 / v if isinstance(v, float) else 1.0 / v  # noqa: E731
    common: dict[str, Any] = {"dt": dt}
    if "surrogate" in meta:
        common["surrogate"] = str(meta["surrogate"])
        alpha = float(meta.get("surrogate_alpha", -1.0))
        common["alpha"] = None if alpha < 0 else alpha
    if "reset" in meta:
        common["reset"] = str(meta["reset"])
    if "refractory_steps" in meta:
        common["refractory_steps"] = int(meta["refractory_steps"])
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        w_in = _collapse(node.w_in)
        if not (isinstance(w_in, float) and w_in == 1.0):
            raise ParameterError("CubaLIF with w_in ≠ 1 is not supported: fold w_in into the preceding weights")
        common["tau_syn_inv"] = inv(_collapse(node.tau_syn))
    if isinstance(node, (nir.LIF, nir.CubaLIF)):
        tau = _collapse(node.tau if isinstance(node, nir.LIF) else node.tau_mem)
        p = NeuronParams(tau_mem_inv=inv(tau), r=_collapse(node.r), v_leak=_collapse(node.v_leak),
                         v_th=_collapse(node.v_threshold), v_reset=_collapse(node.v_reset), **common)
    elif isinstance(node, nir.IF):
        p = NeuronParams(tau_mem_inv=_collapse(node.r), r=1.0, leak=False, v_th=_collapse(node.v_threshold),
                         v_reset=_collapse(node.v_reset), **common)
    else:  # LI, CubaLI
        tau = _collapse(node.tau if isinstance(node, nir.LI) else node.tau_mem)
        p = NeuronParams(tau_mem_inv=inv(tau), r=_collapse(node.r), v_leak=_collapse(node.v_leak), spiking=False,
                         **common)
    p = p._replace(**{k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in p._asdict().items()})
    channels = max((int(v.numel()) for v in p if isinstance(v, torch.Tensor)), default=None)
    return Neuron(p, channels)


def _chain(graph) -> list[str]:
    import nir

    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(starts) != 1:
        raise InputError(f"the NIR graph has {len(starts)} inputs: neurosim imports single-input chains")
    order, cur = [], starts[0]
    while True:
        order.append(cur)
        nxt = succ.get(cur, [])
        if not nxt:
            break
        if len(nxt) > 1:
            raise InputError(f"NIR node {cur!r} feeds {len(nxt)} nodes: neurosim imports feed-forward chains only")
        cur = nxt[0]
        if cur in order:
            raise InputError("the NIR graph has a cycle: recurrent graphs are not supported")
    return order


def _pair(v) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    return (int(a[0]), int(a[-1]))


def from_nir(graph_or_path, dt: Optional[float] = None) -> Sequential:
    """Build a neurosim :class:`Sequential` from a NIR graph (or file). ``dt`` defaults to the graph's."""
    import nir

    graph = load_graph(graph_or_path) if isinstance(graph_or_path, (str, pathlib.Path)) else graph_or_path
    meta = dict(getattr(graph, "metadata", None) or {})
    if dt is None:
        dt = float(np.asarray(meta.get("dt", 1e-3)))
    mods: list[torch.nn.Module] = []
    for name in _chain(graph):
        node = graph.nodes[name]
        if isinstance(node, (nir.Input, nir.Output)):
            continue
        if isinstance(node, nir.Conv2d):
            w = torch.as_tensor(np.asarray(node.weight, np.float32))
            pad = node.padding if isinstance(node.padding, str) else _pair(node.padding)
            m = L.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]), stride=_pair(node.stride),
                         padding=pad, dilation=_pair(node.dilation), groups=int(node.groups), bias=True)
            with torch.no_grad():
                m.weight.copy_(w)
                m.bias.copy_(torch.as_tensor(np.asarray(node.bias, np.float32)).reshape(-1).expand(w.shape[0]))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = torch.as_tensor(np.asarray(node.weight, np.float32))
            m = L.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
            with torch.no_grad():
                m.weight.copy_(w)
                if isinstance(node, nir.Affine):
                    m.bias.copy_(torch.as_tensor(np.asarray(node.bias, np.float32)))
        elif isinstance(node, nir.Flatten):
            m = L.Flatten()
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            if k[0] != k[1] or s[0] != s[1] or p[0] != p[1]:
                raise ParameterError(f"NIR node {name!r}: only square pooling windows are supported")
            m = (L.SumPool2d if isinstance(node, nir.SumPool2d) else L.AvgPool2d)(k[0], s[0], p[0])
        elif isinstance(node, nir.Threshold):
            m = L.Threshold(_collapse(node.threshold))
        elif isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI)):
            m = _neuron_from_node(node, dt)
        else:
            raise InputError(f"NIR node {name!r} of type {type(node).__name__} is not supported by neurosim")
        mods.append(m)
    return Sequential(*mods)


# ------------------------------------------------------------------------------------ norse


def from_norse(modules: torch.nn.Sequential | list, dt: float = 1e-3) -> Sequential:
    """Convert a feed-forward norse network (torch Conv2d/Linear/Flatten + norse LIFCell,
    LIFBoxCell, LIBoxCell cells) to neurosim with the same parameters."""
    from norse.torch import LIBoxCell, LIFBoxCell, LIFCell
    from norse.torch.functional.reset import reset_subtract

    out: list[torch.nn.Module] = []
    for m in modules:
        if isinstance(m, torch.nn.Conv2d):
            c = L.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                         dilation=m.dilation, groups=m.groups, bias=m.bias is not None)
            c.load_state_dict(m.state_dict())
            out.append(c)
        elif isinstance(m, torch.nn.Linear):
            c = L.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            c.load_state_dict(m.state_dict())
            out.append(c)
        elif isinstance(m, torch.nn.Flatten):
            out.append(L.Flatten())
        elif isinstance(m, (LIFCell, LIFBoxCell, LIBoxCell)):
            p = m.p
            f = lambda v: float(v) if torch.as_tensor(v).numel() == 1 else torch.as_tensor(v).float()  # noqa: E731
            kw: dict[str, Any] = {"tau_mem_inv": f(p.tau_mem_inv), "v_leak": f(p.v_leak), "dt": float(m.dt)}
            if isinstance(m, LIBoxCell):
                kw["spiking"] = False
            else:
                kw.update(v_th=f(p.v_th), v_reset=f(p.v_reset), surrogate="superspike")
                if getattr(p, "reset_method", None) is reset_subtract:
                    kw["reset"] = "subtract"
            if isinstance(m, LIFCell):
                kw["tau_syn_inv"] = f(p.tau_syn_inv)
            if float(m.dt) != dt:
                raise ParameterError(f"norse cell dt {m.dt} differs from dt {dt}")
            out.append(Neuron(NeuronParams(**kw)))
        else:
            raise ParameterError(f"norse module {type(m).__name__} has no neurosim counterpart")
    return Sequential(*out)


def repair_norse_export(graph, dt: float = 1e-3):
    """Fix a graph made by norse 1.1.0's ``to_nir``: time constants and 0-d parameters.

    Returns a new graph whose LIF/CubaLIF/LI taus are divided by ``dt`` (so tau = 1/τ⁻¹), and
    whose 0-d parameter arrays become shape (1,) (``nir.write`` cannot store 0-d arrays with
    compression, so norse's graph cannot be written as exported), and drops the batch
    dimension norse puts into the Input/Output shapes (``nir.read`` rejects the mismatch)."""
    import copy

    import nir

    g = copy.deepcopy(graph)
    for name, node in list(g.nodes.items()):  # norse writes the batch dim (1, ...) into Input/Output
        if isinstance(node, nir.Input):
            shape = np.asarray(node.input_type["input"]).reshape(-1)
            if len(shape) > 1 and shape[0] == 1:
                g.nodes[name] = nir.Input(input_type=shape[1:].copy())
        elif isinstance(node, nir.Output):
            shape = np.asarray(node.output_type["output"]).reshape(-1)
            if len(shape) > 1 and shape[0] == 1:
                g.nodes[name] = nir.Output(output_type=shape[1:].copy())
    for node in g.nodes.values():
        for field in ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in", "bias"):
            value = getattr(node, field, None)
            if value is not None and np.ndim(value) == 0 and not isinstance(value, (str, bytes)):
                setattr(node, field, np.asarray(value, np.float64).reshape(1))
    # neuron parameters of size 1: broadcast to the shape the preceding node outputs
    pred = {b: a for a, b in g.edges}
    neuron_types = (nir.LIF, nir.CubaLIF, nir.LI, nir.CubaLI, nir.IF)
    for name in list(g.nodes):
        node = g.nodes[name]
        if not isinstance(node, neuron_types) or name not in pred:
            continue
        shape = (getattr(g.nodes[pred[name]], "output_type", None) or {}).get("output")
        if shape is None or np.asarray(shape).size == 0:
            continue
        shape = tuple(int(v) for v in np.asarray(shape).reshape(-1))
        kw = {f: getattr(node, f) for f in ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in")
              if hasattr(node, f)}
        kw = {f: (np.full(shape, float(np.asarray(v).reshape(-1)[0])) if np.asarray(v).size == 1 else v) for f, v in kw.items()}
        g.nodes[name] = type(node)(**kw, metadata=dict(node.metadata or {}))
    for node in g.nodes.values():
        if isinstance(node, (nir.LIF, nir.LI)):
            node.tau = np.asarray(node.tau, np.float64) / dt
        elif isinstance(node, (nir.CubaLIF, nir.CubaLI)):
            node.tau_mem = np.asarray(node.tau_mem, np.float64) / dt
            node.tau_syn = np.asarray(node.tau_syn, np.float64) / dt
    return g


NODE_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "v_threshold", "v_reset", "v_leak", "w_in", "threshold")


def describe_nir(graph_or_path: Any) -> dict[str, Any]:
    """The nodes, edges and metadata of a NIR graph as plain data (``neurosim snn nir-info``).

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a NIR file (HDF5).

    Returns:
        ``{"path", "nodes", "edges", "metadata"}``: ``nodes`` is a list of ``{"name", "type"}``
        dicts with each time constant / threshold present (``tau``, ``tau_mem``, ``tau_syn`` in
        seconds, ``r``, ``v_threshold``, ``v_reset``, ``v_leak``, ``w_in``, ``threshold``): one
        number when uniform, else ``[min, max]``; ``weight_shape`` and ``output_shape`` where
        the node has them. ``edges`` are ``[source, target]`` pairs; ``path`` is None for a graph.
    """
    is_path = isinstance(graph_or_path, (str, pathlib.Path))
    graph = load_graph(graph_or_path) if is_path else graph_or_path
    rows = []
    for name, node in graph.nodes.items():
        row: dict = {"name": name, "type": type(node).__name__}
        for field in NODE_FIELDS:
            if hasattr(node, field) and getattr(node, field) is not None:
                a = np.asarray(getattr(node, field), np.float64)
                row[field] = float(a.reshape(-1)[0]) if np.all(a == a.reshape(-1)[0]) else [float(a.min()), float(a.max())]
        if hasattr(node, "weight"):
            row["weight_shape"] = list(np.asarray(node.weight).shape)
        out = (getattr(node, "output_type", None) or {}).get("output")
        if out is not None:
            row["output_shape"] = [int(s) for s in np.asarray(out).reshape(-1)]
        rows.append(row)
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in (graph.metadata or {}).items()}
    meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in meta.items()}
    return {"path": graph_or_path if is_path else None, "nodes": rows, "edges": [list(e) for e in graph.edges],
            "metadata": meta}
