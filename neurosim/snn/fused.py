"""The fast multi-step path: fused neuron recurrence and binary-spike convolution.

:func:`neuron_sequence` runs the generic neuron of :mod:`neurosim.snn.neurons` over a whole
(T, B, C, ...) sequence in one C++ call (``neurosim._snn.neuron_forward``) and back-propagates
through time with a hand-written adjoint (``neuron_backward``); no autograd graph is built
per step. The arithmetic is the step function's, operation by operation, so both paths give
the same float32 values.

Backward (per element, t = T−1 … 0, ``g_v`` the gradient arriving at the post-reset membrane,
``σ'`` the surrogate at ``v'_t − v_th``)::

    value reset:     g_z = ∂L/∂z_t + g_v·(v_reset − v'_t);  g_v' = g_v·(1 − z_t) + g_z·σ'
    subtract reset:  g_z = ∂L/∂z_t − g_v·v_th;            g_v' = g_v + g_z·σ'
    g_drive = g_v'·k·r  (0 while refractory);  g_v ← g_v'·(1 − k)  (g_v' without leak)
    synaptic:        g_i⁺ = g_drive + g_i·(1 + nks);  ∂L/∂x_t = g_i⁺;  g_i ← g_i⁺
    ∂L/∂v_th = −Σ g_z·σ' (− Σ z·g_v for subtract);  ∂L/∂k = Σ g_v'·((v_leak − v_{t−1}) + r·drive)

:func:`spike_conv2d` is a stride-1 convolution for sparse input, typically 0/1 spikes: the
forward pass and the weight gradient add weight (or gradient) vectors for nonzero inputs only,
so their cost is proportional to the number of spikes instead of the dense size. For a sample
of pure 0/1 spikes and Cout a multiple of 8 the C++ kernel indexes the active inputs and
accumulates in AVX2 registers (gather form); other samples use a scatter form. The input
gradient is the ordinary dense transposed convolution.

The initial state is treated as a constant (no gradient flows into it).

Whole stacks of spiking ``Conv2d → neuron`` blocks (+ a linear head) run faster still as one
fused C++ pass per sample: see :mod:`neurosim.snn.chain` (used by ``Sequential`` automatically).
"""

from __future__ import annotations

from typing import Optional

import torch

from neurosim.errors import ParameterError
from neurosim.snn.neurons import NeuronParams, NeuronState, check_params, coefficients, neuron_step
from neurosim.snn.surrogate import check_surrogate

try:  # the compiled kernels; the pure torch loop is the fallback
    from neurosim import _snn  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - only without the C++ build
    _snn = None

_EMPTY_F = torch.empty(0, dtype=torch.float32)
_EMPTY_U8 = torch.empty(0, dtype=torch.uint8)
_EMPTY_I32 = torch.empty(0, dtype=torch.int32)
_EMPTY_D = torch.empty(0, dtype=torch.float64)


def have_kernels() -> bool:
    """True when the compiled ``neurosim._snn`` module is available."""
    return _snn is not None


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _channels(p: NeuronParams) -> int:
    sizes = {int(getattr(p, n).numel()) for n in ("tau_mem_inv", "v_leak", "v_th", "v_reset", "r", "tau_syn_inv")
             if isinstance(getattr(p, n), torch.Tensor)}
    sizes.discard(1)
    if len(sizes) > 1:
        raise ParameterError(f"per-channel parameters have different sizes {sorted(sizes)}: give all as (C,)")
    return sizes.pop() if sizes else 1


def _table(p: NeuronParams, C: int) -> torch.Tensor:
    """(6, C) float32 table k, v_leak, r, v_th, v_reset, nks of the kernel."""
    c = coefficients(p, torch.float32)
    rows = [t.detach().reshape(-1).expand(C) if t is not None else torch.zeros(C) for t in c]
    return torch.stack(rows).contiguous()


class _NeuronSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v_th, tau_mem_inv, p: NeuronParams, v0, i0, cnt0, C, S):  # type: ignore[override]
        p = p._replace(v_th=v_th, tau_mem_inv=tau_mem_inv)
        table = _table(p, C)
        T = x.shape[0]
        N = x[0].numel() if T else v0.numel()
        syn, refr = p.tau_syn_inv is not None, p.refractory_steps > 0
        learn_k = ctx.needs_input_grad[2]
        xf = x.contiguous().reshape(-1)
        out = torch.empty_like(xf)
        vpre = torch.empty_like(xf)
        ipre = torch.empty_like(xf) if (syn and learn_k) else _EMPTY_F
        refmask = torch.empty(xf.shape, dtype=torch.uint8) if refr else _EMPTY_U8
        v, i = v0.clone(), (i0.clone() if syn else _EMPTY_F)
        cnt = cnt0.clone() if refr else _EMPTY_I32
        if not syn:
            i = torch.empty(0)
        if not refr:
            cnt = torch.empty(0, dtype=torch.int32)
        _snn.neuron_forward(xf, out, vpre, ipre, refmask, v, i, cnt, table, C, S, syn, p.leak, p.spiking,
                            0 if p.reset == "value" else 1, p.refractory_steps, _threads())
        ctx.p, ctx.C, ctx.S, ctx.shape = p, C, S, x.shape
        ctx.save_for_backward(vpre, ipre, refmask, xf if (learn_k and not syn) else _EMPTY_F, v0, table)
        ctx.mark_non_differentiable(v, i, cnt)
        return out.reshape(x.shape), v, i, cnt

    @staticmethod
    def backward(ctx, gout, _gv, _gi, _gc):  # type: ignore[override]
        vpre, ipre, refmask, xf, v0, table = ctx.saved_tensors
        p, C = ctx.p, ctx.C
        kind, alpha = check_surrogate(p.surrogate, p.alpha)
        gx = torch.empty_like(vpre)
        want_th, want_k = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gth = torch.zeros(C, dtype=torch.float64) if want_th else _EMPTY_D
        gk = torch.zeros(C, dtype=torch.float64) if want_k else _EMPTY_D
        _snn.neuron_backward(gout.contiguous().reshape(-1), vpre, ipre, refmask, xf, v0, table, gx, gth, gk,
                             C, ctx.S, p.tau_syn_inv is not None, p.leak, p.spiking,
                             0 if p.reset == "value" else 1, kind, alpha, _threads())
        g_th = g_tm = None
        if want_th:
            g_th = gth.to(torch.float32).reshape(p.v_th.shape) if p.v_th.numel() == C else gth.sum().float().reshape(p.v_th.shape)
        if want_k:
            g = gk * p.dt
            g_tm = g.to(torch.float32).reshape(p.tau_mem_inv.shape) if p.tau_mem_inv.numel() == C else g.sum().float().reshape(p.tau_mem_inv.shape)
        return gx.reshape(ctx.shape), g_th, g_tm, None, None, None, None, None, None


def _forward_only(x, p: NeuronParams, v0, i0, cnt0, C: int, S: int):
    table = _table(p, C)
    syn, refr = p.tau_syn_inv is not None, p.refractory_steps > 0
    xf = x.contiguous().reshape(-1)
    out = torch.empty_like(xf)
    v, i = v0.clone(), (i0.clone() if syn else torch.empty(0))
    cnt = cnt0.clone() if refr else torch.empty(0, dtype=torch.int32)
    _snn.neuron_forward(xf, out, _EMPTY_F, _EMPTY_F, _EMPTY_U8, v, i, cnt, table, C, S, syn, p.leak, p.spiking,
                        0 if p.reset == "value" else 1, p.refractory_steps, _threads())
    return out.reshape(x.shape), v, i, cnt


def neuron_sequence(
    x: torch.Tensor, p: NeuronParams, state: Optional[NeuronState] = None
) -> tuple[torch.Tensor, NeuronState]:
    """Run the neuron over ``x`` (T, B, C, ...) in one call; returns (outputs, final state).

    Uses the C++ kernels for float32 CPU tensors, else loops :func:`neuron_step` (same values).
    Per-channel parameters are (C,) tensors for channel dim 2 of ``x``.
    """
    if x.ndim < 2:
        raise ParameterError(f"a sequence needs shape (T, B, ...), got {tuple(x.shape)}")
    check_params(p)
    C = _channels(p)
    if C > 1 and (x.ndim < 3 or x.shape[2] != C):
        raise ParameterError(f"parameters have {C} channels but the input shape is {tuple(x.shape)} (T, B, C, ...)")
    if _snn is None or x.dtype != torch.float32 or x.device.type != "cpu":
        outs = []
        for t in range(x.shape[0]):
            z, state = neuron_step(x[t], state, p)
            outs.append(z)
        return torch.stack(outs), state
    step_shape = x.shape[1:]
    S = int(torch.tensor(step_shape[2:]).prod().item()) if len(step_shape) > 2 else 1
    syn, refr = p.tau_syn_inv is not None, p.refractory_steps > 0
    if state is None:
        vl = p.v_leak.detach().float() if isinstance(p.v_leak, torch.Tensor) else torch.tensor(float(p.v_leak))
        if vl.numel() == 1:
            v0 = torch.full(step_shape, float(vl))
        else:
            v0 = torch.zeros(step_shape) + vl.reshape((-1,) + (1,) * (len(step_shape) - 2))
        i0 = torch.zeros(step_shape) if syn else _EMPTY_F
        c0 = torch.zeros(step_shape, dtype=torch.int32) if refr else _EMPTY_I32
    else:
        v0 = state.v.detach().float()
        i0 = (state.i.detach().float() if state.i is not None else torch.zeros(step_shape)) if syn else _EMPTY_F
        c0 = ((state.counter.to(torch.int32) if state.counter is not None
               else torch.zeros(step_shape, dtype=torch.int32)) if refr else _EMPTY_I32)
    v0, i0, c0 = v0.contiguous().reshape(-1), i0.contiguous().reshape(-1), c0.contiguous().reshape(-1)
    v_th = p.v_th if isinstance(p.v_th, torch.Tensor) else torch.tensor(float(p.v_th))
    tmi = p.tau_mem_inv if isinstance(p.tau_mem_inv, torch.Tensor) else torch.tensor(float(p.tau_mem_inv))
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or v_th.requires_grad or tmi.requires_grad)
    if needs_grad:
        out, v, i, cnt = _NeuronSequence.apply(x, v_th, tmi, p, v0, i0, c0, C, S)
    else:  # inference: nothing is saved for a backward pass
        out, v, i, cnt = _forward_only(x, p, v0, i0, c0, C, S)
    final = NeuronState(
        v.reshape(step_shape),
        i.reshape(step_shape) if p.tau_syn_inv is not None else None,
        cnt.reshape(step_shape) if p.refractory_steps > 0 else None,
    )
    return out, final


# -------------------------------------------------------------------- binary-spike convolution


class _SpikeConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, weight, bias, padding: int):  # type: ignore[override]
        s = s.contiguous()
        N, _, H, W = s.shape
        Cout, _, kh, kw = weight.shape
        out = torch.empty((N, Cout, H + 2 * padding - kh + 1, W + 2 * padding - kw + 1), dtype=torch.float32)
        wt = weight.detach().permute(1, 2, 3, 0).contiguous()
        b = bias.detach().contiguous() if bias is not None else torch.zeros(Cout)
        _snn.spike_conv_forward(s, wt, b, out, padding, _threads())
        ctx.save_for_backward(s, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        s, weight = ctx.saved_tensors
        g = g.contiguous()
        gs = gw = gb = None
        if ctx.needs_input_grad[0]:
            gs = torch.nn.grad.conv2d_input(s.shape, weight.detach(), g, padding=ctx.padding)
        if ctx.needs_input_grad[1]:
            Cout, Cin, kh, kw = weight.shape
            dwt = torch.empty((Cin, kh, kw, Cout), dtype=torch.float32)
            _snn.spike_conv_wgrad(s, g, dwt, ctx.padding, _threads())
            gw = dwt.permute(3, 0, 1, 2).contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum((0, 2, 3))
        return gs, gw, gb, None


def spike_conv2d(s: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding: int = 0) -> torch.Tensor:
    """``conv2d(s, weight, bias, stride=1, padding)`` for sparse (e.g. 0/1 spike) input ``s`` (N, Cin, H, W).

    Exact up to float summation order for any input; the forward and weight-gradient work
    scale with the number of nonzero inputs (for 1s the multiply is skipped). Falls back to ``torch.nn.functional.conv2d`` without the C++ kernels.
    """
    if _snn is None or s.dtype != torch.float32 or s.device.type != "cpu":
        return torch.nn.functional.conv2d(s, weight, bias, padding=padding)
    return _SpikeConv2d.apply(s, weight, bias, padding)
