"""The fused chain: a whole stack of [spiking Conv2d → neuron] blocks (+ Flatten → Linear) in C++.

:class:`~neurosim.snn.sequential.Sequential` hands its leading modules to this path when they
form a *chain*: blocks ``Conv2d → Neuron`` (stride 1, undilated, ungrouped, zero padding,
``out_channels`` a multiple of 8, 0/1 spike input) whose neurons are spiking LIF/IF/STBP
without synaptic current or refractory period, with fixed (not learnable) parameters and a
``superspike``, ``rectangle`` or ``arctan`` surrogate, optionally followed by ``Flatten →
Linear``. Anything else runs layer by layer (same results).

What is different from the layer-by-layer path is only where the work happens
(``neurosim/cpp/snn_chain.cpp``): each sample is run through all layers by one thread; spikes
are bit masks; per time step every input spike adds its kernel into a current buffer (work ∝
spikes) and each output row goes through the membrane update as soon as its currents are
complete, so the (T, B, C, H, W) currents, membranes and spikes are never built as tensors;
the head adds ``W[:, j]`` for every spike ``j``. A forward pass with gradients keeps the
membranes ``v'_t`` and spike masks in a C++ buffer pool (no fresh allocations per step); the
backward pass then runs the LIF adjoint, the weight gradients (summed over input spikes only)
and the dense input gradient ``g_in = Σ W·g_cur`` per sample (a second backward with
``retain_graph=True`` recomputes the forward). Forward spikes and membranes are bit-identical
to the layer-by-layer path (same summation order); the head output and all gradients agree to
float rounding (≈1e-6 relative); results are deterministic and independent of the thread count
(partial sums over fixed blocks of samples, added in order). Only one chain call runs at a time
per process. Shapes: input (T, B, C, H, W) 0/1 float32; output (T, B, out_features) with a
head, else the last neuron's spikes (T, B, C', H', W').
"""

from __future__ import annotations

from typing import Optional

import torch

from neurosim.snn.layers import Conv2d, Flatten, Linear, is_binary
from neurosim.snn.neurons import Neuron, NeuronState, check_params
from neurosim.snn.surrogate import check_surrogate

try:
    from neurosim import _snn  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - only without the C++ build
    _snn = None

_KINDS = {0, 1, 2}  # superspike, rectangle, arctan (sigmoid has no vector kernel)
_PARAM_NAMES = ("tau_mem_inv", "v_leak", "v_th", "v_reset", "r")


_enabled = True


def available() -> bool:
    """True when the chain path is enabled, compiled, and this CPU has AVX2, FMA, BMI1/2."""
    return _enabled and _snn is not None and hasattr(_snn, "chain_forward") and bool(_snn.chain_supported())


class disabled:
    """Context manager: run networks layer by layer (e.g. to compare against the chain path)."""

    def __enter__(self):
        global _enabled
        self._old, _enabled = _enabled, False
        return self

    def __exit__(self, *exc):
        global _enabled
        _enabled = self._old
        return False


def release_memory() -> None:
    """Free the C++ scratch buffers kept between calls (they are re-created on the next call).

    The chain keeps per-thread scratch (a few MB per layer) and a pool of forward states for
    backward passes (per graph alive: T·B·Σ C·H·W floats of membranes plus spike bit masks)
    so that training steps do not page-fault fresh memory each time.
    """
    if _snn is not None and hasattr(_snn, "chain_release_scratch"):
        _snn.chain_release_scratch()


def _conv_ok(m: Conv2d) -> bool:
    return (m._sparse_ok() and m.out_channels % 8 == 0 and m.spike_input is not False
            and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu")


def _neuron_ok(m: Neuron, channels: int) -> bool:
    p = m.params()
    if not p.spiking or p.tau_syn_inv is not None or p.refractory_steps != 0:
        return False
    try:
        check_params(p)
        kind, _ = check_surrogate(p.surrogate, p.alpha)
    except Exception:
        return False  # the layer-by-layer path raises the proper error
    if kind not in _KINDS:
        return False
    for name in _PARAM_NAMES:
        v = getattr(p, name)
        if isinstance(v, torch.Tensor):
            if v.requires_grad and torch.is_grad_enabled():
                return False  # learnable threshold/leak: the layer-by-layer path has their gradients
            if v.numel() not in (1, channels):
                return False
    return True


def match(modules: list, x: torch.Tensor) -> int:
    """Number of leading ``modules`` that form a chain for input ``x`` (0: none)."""
    if not available() or x.ndim != 5 or x.dtype != torch.float32 or x.device.type != "cpu" or x.requires_grad:
        return 0
    if x.shape[0] == 0 or x.shape[1] == 0:
        return 0
    n, shape = 0, tuple(x.shape[2:])
    while n + 1 < len(modules) and isinstance(modules[n], Conv2d) and isinstance(modules[n + 1], Neuron):
        conv = modules[n]
        if not _conv_ok(conv) or shape[0] != conv.in_channels or not _neuron_ok(modules[n + 1], conv.out_channels):
            break
        kh, kw = conv.kernel_size
        pad = conv.padding[0]
        ho, wo = shape[1] + 2 * pad - kh + 1, shape[2] + 2 * pad - kw + 1
        if ho < 1 or wo < 1:
            break
        shape = (conv.out_channels, ho, wo)
        n += 2
    if n == 0:
        return 0
    first = modules[0]
    if not (first.spike_input is True or is_binary(x.contiguous())):
        return 0
    if (n + 1 < len(modules) and isinstance(modules[n], Flatten) and isinstance(modules[n + 1], Linear)
            and modules[n + 1].in_features == shape[0] * shape[1] * shape[2]
            and modules[n + 1].weight.dtype == torch.float32):
        n += 2
    return n


def _threads() -> int:
    return max(1, torch.get_num_threads())


class _Plan:
    """Shapes and kernel-layout tensors of one chain call."""

    def __init__(self, modules: list, x: torch.Tensor):
        from neurosim.snn.fused import _table

        self.T, self.B = int(x.shape[0]), int(x.shape[1])
        self.convs = [modules[i] for i in range(0, len(modules), 2) if isinstance(modules[i], Conv2d)]
        self.neurons = [modules[i + 1] for i in range(0, 2 * len(self.convs), 2)]
        self.head: Optional[Linear] = modules[-1] if isinstance(modules[-1], Linear) else None
        spec, alphas, self.nps, self.shapes = [], [], [], []
        c, h, w = x.shape[2:]
        for conv, neuron in zip(self.convs, self.neurons):
            kh, kw = conv.kernel_size
            pad = conv.padding[0]
            ho, wo = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
            p = neuron.params()
            kind, alpha = check_surrogate(p.surrogate, p.alpha)
            cout = conv.out_channels
            spec.append([c, h, w, cout, kh, kw, pad, ho, wo, int(p.leak), 0 if p.reset == "value" else 1, kind, 0])
            alphas.append(alpha)
            self.nps.append(_table(p, cout)[:5].contiguous())
            self.shapes.append((cout, ho, wo))
            c, h, w = cout, ho, wo
        self.spec = torch.tensor(spec, dtype=torch.int64)
        self.alpha = torch.tensor(alphas, dtype=torch.float32)
        self.out_features = self.head.out_features if self.head is not None else 0


def _forward(x, plan: _Plan, want_states: bool, states: list, params, save: bool):
    """One chain_forward call; returns (output, saved-state handle or -1, tensors for the backward)."""
    nl = len(plan.convs)
    ws = [params[2 * i].detach() for i in range(nl)]
    bs = [params[2 * i + 1].detach().contiguous() if params[2 * i + 1] is not None
          else torch.zeros(plan.convs[i].out_channels) for i in range(nl)]
    wt = [w.flip(3).permute(1, 2, 3, 0).contiguous() for w in ws]  # [Cin][kh][kw−1−kx][Cout]
    T, B = plan.T, plan.B
    x = x.contiguous()
    hb = None
    if plan.head is not None:
        hw, hb = params[2 * nl], params[2 * nl + 1]
        head_fwd = hw.detach().contiguous()  # (O, C·H·W); the kernel rearranges it
        out = torch.empty((T, B, plan.out_features), dtype=torch.float32)
    else:
        head_fwd = torch.empty(0)
        out = torch.empty((T, B) + plan.shapes[-1], dtype=torch.float32)
    vfin = [torch.empty((B,) + s, dtype=torch.float32) for s in plan.shapes] if want_states else []
    handle = _snn.chain_forward(x.reshape(-1), plan.spec, plan.alpha, wt, bs, plan.nps, head_fwd.reshape(-1),
                                plan.out_features, out.reshape(-1), [v.reshape(-1) for v in vfin], T, B,
                                _threads(), save)
    if hb is not None:
        out = out + hb.detach()
    states.extend(vfin)
    return out, handle, (x, wt, bs)


class _SavedState:
    """Handle of the forward state kept in C++ (membranes v'_t and spike masks) for the backward pass.

    The buffers come from a pool that persists between calls (so a training loop does not
    page-fault tens of MB of fresh memory per step); they are handed back after the backward
    pass or when the autograd graph is dropped.
    """

    def __init__(self, handle: int):
        self.handle = handle

    def release(self) -> None:
        if self.handle >= 0 and _snn is not None:
            _snn.chain_release_saved(self.handle)
        self.handle = -1

    def __del__(self) -> None:
        self.release()


class _Chain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plan: _Plan, want_states: bool, states: list, *params):  # type: ignore[override]
        out, handle, kernel = _forward(x, plan, want_states, states, params, save=True)
        if plan.head is not None:  # (autograd checks it was not modified in place before the backward)
            ctx.save_for_backward(params[2 * len(plan.convs)])
        ctx.saved_state = _SavedState(handle)
        ctx.plan, ctx.kernel = plan, kernel
        ctx.has_bias = [p is not None for p in params]
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        plan: _Plan = ctx.plan
        x, wt, bs = ctx.kernel
        head_w = ctx.saved_tensors[0].detach().contiguous() if plan.head is not None else torch.empty(0)
        nl = len(plan.convs)
        wb = [w.flip(2).permute(1, 2, 3, 0).contiguous() for w in wt]  # -> [kh][kw][Cout][Cin], kx upright
        dwt = [torch.empty_like(w) for w in wt]
        db = [torch.empty_like(b) for b in bs]
        dhead = torch.empty(head_w.shape, dtype=torch.float32) if plan.head is not None else torch.empty(0)
        _snn.chain_backward(x.reshape(-1), plan.spec, plan.alpha, wt, wb, bs, plan.nps, head_w.reshape(-1),
                            plan.out_features, g.contiguous().reshape(-1), dwt, db,
                            dhead.reshape(-1), plan.T, plan.B, _threads(), ctx.saved_state.handle)
        ctx.saved_state.release()  # a second backward (retain_graph) recomputes the forward instead
        grads: list = []
        for i in range(nl):
            grads.append(dwt[i].flip(2).permute(3, 0, 1, 2).contiguous() if ctx.needs_input_grad[4 + 2 * i] else None)
            grads.append(db[i] if ctx.has_bias[2 * i + 1] and ctx.needs_input_grad[5 + 2 * i] else None)
        if plan.head is not None:
            gw = dhead if ctx.needs_input_grad[4 + 2 * nl] else None
            gb = g.sum((0, 1)) if ctx.has_bias[2 * nl + 1] and ctx.needs_input_grad[5 + 2 * nl] else None
            grads += [gw, gb]
        return (None, None, None, None, *grads)


def run(modules: list, x: torch.Tensor, want_states: bool = False):
    """Run the chain ``modules`` (as found by :func:`match`) on ``x`` (T, B, C, H, W).

    Returns (output, {index within modules: NeuronState}) — the output is the head's
    (T, B, out_features) or the last neuron's spikes (T, B, C, H', W').
    """
    plan = _Plan(modules, x)
    params: list = []
    for conv in plan.convs:
        params += [conv.weight, conv.bias]
    if plan.head is not None:
        params += [plan.head.weight, plan.head.bias]
    states_out: list = []
    if torch.is_grad_enabled() and any(p is not None and p.requires_grad for p in params):
        out = _Chain.apply(x, plan, want_states, states_out, *params)
    else:  # inference: nothing is kept for a backward pass
        out = _forward(x, plan, want_states, states_out, params, save=False)[0]
    states = {}
    if want_states:
        for i, v in enumerate(states_out):
            states[2 * i + 1] = NeuronState(v, None, None)
    return out, states
