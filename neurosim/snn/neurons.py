"""Spiking neurons: one generic pure step function with typed parameters and state.

Every neuron of neurosim — norse's LIF (``LIFCell``, with synaptic current) and LIFBox
(``LIFBoxCell``, without), integrate-and-fire, the STBP neuron and the non-spiking leaky
integrator readout — is :func:`neuron_step` with different :class:`NeuronParams`. One step
with input ``x`` (explicit Euler, ``dt`` in seconds, rates ``tau_*_inv`` in 1/s), in this
order (norse's order and float arithmetic)::

    synaptic current (tau_syn_inv given):  i⁺ = i + x;  drive = i⁺;  i ← i⁺ + (−dt·tau_syn_inv)·i⁺
    otherwise:                             drive = x
    refractory (counter > 0):              drive = 0 and no spike
    k = dt·tau_mem_inv
    leak:     v' = v + k·((v_leak − v) + r·drive)        (NIR LIF: tau·dv/dt = (v_leak − v) + r·I)
    no leak:  v' = v + k·(r·drive)                        (NIR IF with r_IF = tau_mem_inv·r)
    spike:    z = [v' − v_th > 0]  (strict; surrogate gradient by name, see surrogate.py)
    reset:    "value": v = (1 − z)·v' + z·v_reset;  "subtract": v = v' − z·v_th
    non-spiking (LI readout): output v', v = v'
    counter:  refractory_steps where z, else max(counter − 1, 0)

The reset is not detached (as in norse's feed-forward LIF), so gradients flow through it.
The STBP neuron ``u_t = τ·u_{t−1}·(1 − o_{t−1}) + W∗x_t`` is the leaky form with
``dt·tau_mem_inv = 1 − τ`` and ``r = 1/(1 − τ)`` (see :func:`stbp_params`).

Shapes: ``x`` is (B, C, ...) for one step; per-channel parameters are (C,) tensors. The
multi-step fast path with the same arithmetic is :func:`neurosim.snn.fused.neuron_sequence`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from neurosim.errors import ParameterError
from neurosim.snn.surrogate import check_surrogate, spike

RESETS = ("value", "subtract")
Value = float | torch.Tensor


class NeuronParams(NamedTuple):
    """Parameters of the generic neuron (norse names and units; defaults: norse LIFBox).

    ``tau_mem_inv``/``tau_syn_inv`` in 1/s (``None`` syn: no synaptic current); voltages in
    the model's units; ``r`` input resistance; ``leak`` False gives integrate-and-fire;
    ``spiking`` False gives a leaky-integrator readout; ``refractory_steps`` time steps.
    Tensors may be 0-d or per channel (C,).
    """

    tau_mem_inv: Value = 100.0
    tau_syn_inv: Optional[Value] = None
    v_leak: Value = 0.0
    v_th: Value = 1.0
    v_reset: Value = 0.0
    r: Value = 1.0
    leak: bool = True
    reset: str = "value"
    spiking: bool = True
    refractory_steps: int = 0
    surrogate: str = "superspike"
    alpha: Optional[float] = None
    dt: float = 1e-3


class NeuronState(NamedTuple):
    """Membrane ``v``; synaptic current ``i`` and refractory ``counter`` (None when unused)."""

    v: torch.Tensor
    i: Optional[torch.Tensor] = None
    counter: Optional[torch.Tensor] = None


# ------------------------------------------------------------------------ named constructors


def lif_params(tau_mem_inv: Value = 100.0, tau_syn_inv: Value = 200.0, **kw) -> NeuronParams:
    """norse ``LIFCell`` (current-based LIF): defaults tau_syn⁻¹ = 200/s, tau_mem⁻¹ = 100/s."""
    return NeuronParams(tau_mem_inv=tau_mem_inv, tau_syn_inv=tau_syn_inv, **kw)


def lif_box_params(tau_mem_inv: Value = 100.0, **kw) -> NeuronParams:
    """norse ``LIFBoxCell`` (LIF without synaptic current)."""
    return NeuronParams(tau_mem_inv=tau_mem_inv, tau_syn_inv=None, **kw)


def if_params(v_th: Value = 1.0, dt: float = 1e-3, **kw) -> NeuronParams:
    """Integrate-and-fire: ``v' = v + r·x`` (no leak), then threshold and reset."""
    return NeuronParams(tau_mem_inv=1.0 / dt, leak=False, v_th=v_th, dt=dt, **kw)


def li_params(tau_mem_inv: Value = 100.0, tau_syn_inv: Optional[Value] = None, **kw) -> NeuronParams:
    """Leaky integrator (no spikes): the membrane ``v'`` is the output (readout layers)."""
    return NeuronParams(tau_mem_inv=tau_mem_inv, tau_syn_inv=tau_syn_inv, spiking=False, **kw)


def stbp_params(decay: float = 0.5, v_th: Value = 0.5, dt: float = 1e-3, **kw) -> NeuronParams:
    """STBP neuron ``u_t = decay·u_{t−1}·(1 − o_{t−1}) + I_t``, rectangle surrogate (a = 1).

    Mapped to the generic form with ``dt·tau_mem_inv = 1 − decay`` and ``r = 1/(1 − decay)``,
    reset to 0; equal to the STBP recursion up to float rounding.
    """
    if not 0.0 <= decay < 1.0:
        raise ParameterError(f"STBP decay {decay} must be in [0, 1): use if_params for no leak")
    kw.setdefault("surrogate", "rectangle")
    kw.setdefault("alpha", 1.0)
    return NeuronParams(
        tau_mem_inv=(1.0 - decay) / dt, r=1.0 / (1.0 - decay), v_th=v_th, v_reset=0.0, dt=dt, **kw
    )


# ------------------------------------------------------------------------------ validation


def _values(x: Value) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(float(x))


def check_params(p: NeuronParams) -> NeuronParams:
    """Raise ParameterError for impossible parameters; return ``p`` unchanged."""
    if not (isinstance(p.dt, (int, float)) and p.dt > 0 and math.isfinite(p.dt)):
        raise ParameterError(f"dt {p.dt} must be a positive number of seconds (e.g. 1e-3)")
    tm = _values(p.tau_mem_inv)
    if not bool(torch.isfinite(tm).all()) or bool((tm < 0).any()):
        raise ParameterError("tau_mem_inv must be finite and ≥ 0 (a negative time constant is impossible)")
    if p.tau_syn_inv is not None:
        ts = _values(p.tau_syn_inv)
        if not bool(torch.isfinite(ts).all()) or bool((ts <= 0).any()):
            raise ParameterError("tau_syn_inv must be finite and > 0 (a negative time constant is impossible)")
        if bool((ts * p.dt > 1).any()):
            raise ParameterError(f"dt·tau_syn_inv exceeds 1: the Euler step is unstable, use a smaller dt than {p.dt}")
    if p.leak and bool((tm * p.dt > 1).any()):
        raise ParameterError(f"dt·tau_mem_inv exceeds 1: the Euler step is unstable, use a smaller dt than {p.dt}")
    if p.spiking:
        th = _values(p.v_th)
        if not bool(torch.isfinite(th).all()) or bool((th <= 0).any()):
            raise ParameterError("v_th must be > 0 (thresholds ≤ 0 fire on silence): rescale the membrane")
    if p.reset not in RESETS:
        raise ParameterError(f"reset {p.reset!r} is unknown: use 'value' or 'subtract'")
    if not isinstance(p.refractory_steps, int) or p.refractory_steps < 0:
        raise ParameterError(f"refractory_steps {p.refractory_steps} must be an integer ≥ 0")
    check_surrogate(p.surrogate, p.alpha)
    shapes = {tuple(_values(getattr(p, n)).shape) for n in ("tau_mem_inv", "v_leak", "v_th", "v_reset", "r")}
    if p.tau_syn_inv is not None:
        shapes.add(tuple(_values(p.tau_syn_inv).shape))
    shapes.discard(())
    if len(shapes) > 1:
        raise ParameterError(f"per-channel parameters have different shapes {sorted(shapes)}: give all as (C,)")
    return p


# ----------------------------------------------------------------------------- coefficients


class Coefficients(NamedTuple):
    """Per-channel tensors used by both the step and the fused path (same arithmetic)."""

    k: torch.Tensor  # dt·tau_mem_inv
    v_leak: torch.Tensor
    r: torch.Tensor
    v_th: torch.Tensor
    v_reset: torch.Tensor
    nks: Optional[torch.Tensor]  # −dt·tau_syn_inv


def _t(x: Value, dtype: torch.dtype, device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype, device=device)
    return torch.tensor(float(x), dtype=dtype, device=device)


def coefficients(p: NeuronParams, dtype: torch.dtype = torch.float32, device=None) -> Coefficients:
    """``k = dt·tau_mem_inv`` and ``nks = −dt·tau_syn_inv`` computed in ``dtype`` as norse does."""
    nks = None if p.tau_syn_inv is None else -p.dt * _t(p.tau_syn_inv, dtype, device)
    return Coefficients(
        p.dt * _t(p.tau_mem_inv, dtype, device), _t(p.v_leak, dtype, device), _t(p.r, dtype, device),
        _t(p.v_th, dtype, device), _t(p.v_reset, dtype, device), nks,
    )


def broadcast_channels(t: torch.Tensor, ndim: int, channel_dim: int = 1) -> torch.Tensor:
    """View a (C,) tensor so it broadcasts over a tensor of ``ndim`` dims with channels at ``channel_dim``."""
    if t.ndim == 0:
        return t
    return t.reshape((t.shape[0],) + (1,) * (ndim - channel_dim - 1))


def initial_state(x: torch.Tensor, p: NeuronParams) -> NeuronState:
    """Resting state for a step input like ``x``: ``v = v_leak``, ``i = 0``, counter 0."""
    vl = broadcast_channels(_t(p.v_leak, x.dtype, x.device), x.ndim)
    v = torch.zeros_like(x) + vl
    i = torch.zeros_like(x) if p.tau_syn_inv is not None else None
    c = torch.zeros(x.shape, dtype=torch.int32, device=x.device) if p.refractory_steps > 0 else None
    return NeuronState(v, i, c)


# ------------------------------------------------------------------------------- the step


def neuron_step(
    x: torch.Tensor, state: Optional[NeuronState], p: NeuronParams
) -> tuple[torch.Tensor, NeuronState]:
    """One Euler step of the generic neuron (module docstring). Returns (spikes or v', state).

    ``x``: (B, C, ...) input current; per-channel parameters broadcast over dim 1.
    """
    if state is None:
        state = initial_state(x, p)
    c = coefficients(p, x.dtype, x.device)
    c = Coefficients(*(None if t is None else broadcast_channels(t, x.ndim) for t in c))
    if c.nks is not None:
        i_new = state.i + x
        drive = i_new
        i_next = i_new + c.nks * i_new
    else:
        drive, i_next = x, None
    refractory = None
    if p.refractory_steps > 0 and state.counter is not None:
        refractory = state.counter > 0
        drive = torch.where(refractory, torch.zeros_like(drive), drive)
    if p.leak:
        v_new = state.v + c.k * ((c.v_leak - state.v) + c.r * drive)
    else:
        v_new = state.v + c.k * (c.r * drive)
    if not p.spiking:
        return v_new, NeuronState(v_new, i_next, state.counter)
    z = spike(v_new - c.v_th, p.surrogate, p.alpha)
    if refractory is not None:
        z = z * (~refractory).to(z.dtype)
    if p.reset == "value":
        v_next = (1 - z) * v_new + z * c.v_reset
    else:
        v_next = (1 - z) * v_new + z * (v_new - c.v_th)
    counter = state.counter
    if p.refractory_steps > 0:
        prev = state.counter if state.counter is not None else torch.zeros(x.shape, dtype=torch.int32)
        counter = torch.where(z > 0, torch.full_like(prev, p.refractory_steps), (prev - 1).clamp_min(0))
    return z, NeuronState(v_next, i_next, counter)


# --------------------------------------------------------------------------------- module


class Neuron(torch.nn.Module):
    """Thin module over :func:`neuron_step` (single step) and the fused sequence path.

    ``learn_threshold`` / ``learn_leak`` make ``v_th`` / ``tau_mem_inv`` trainable, per channel
    when ``channels`` is given (else one shared value).

    - ``module(x, state)`` with ``x`` (B, C, ...): one step, returns ``(out, state)`` like norse.
    - ``module.sequence(x)`` with ``x`` (T, B, C, ...): the whole sequence in one fused call.
    """

    def __init__(
        self, p: NeuronParams = NeuronParams(), channels: Optional[int] = None,
        learn_threshold: bool = False, learn_leak: bool = False,
    ):
        super().__init__()
        check_params(p)
        self.p = p
        self.channels = channels
        for name, learn in (("v_th", learn_threshold), ("tau_mem_inv", learn_leak)):
            value = _t(getattr(p, name), torch.float32, None)
            if channels is not None:
                if value.ndim == 0:
                    value = value.repeat(channels)
                if value.shape != (channels,):
                    raise ParameterError(f"{name} has shape {tuple(value.shape)} but the layer has {channels} channels")
            if learn:
                self.register_parameter(name, torch.nn.Parameter(value.clone()))
            else:
                self.register_buffer(name, value.clone(), persistent=False)

    def params(self) -> NeuronParams:
        """The parameters with the module's (possibly learned) threshold and leak."""
        return self.p._replace(v_th=self.v_th, tau_mem_inv=self.tau_mem_inv)

    def _check_channels(self, x: torch.Tensor, channel_dim: int) -> None:
        if self.channels is not None and (x.ndim <= channel_dim or x.shape[channel_dim] != self.channels):
            raise ParameterError(
                f"neuron layer expects {self.channels} channels at dim {channel_dim}, got input shape {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor, state: Optional[NeuronState] = None):
        self._check_channels(x, 1)
        return neuron_step(x, state, self.params())

    def sequence(self, x: torch.Tensor, state: Optional[NeuronState] = None):
        """Run (T, B, C, ...) at once; returns (outputs (T, B, C, ...), final state)."""
        from neurosim.snn.fused import neuron_sequence

        self._check_channels(x, 2)
        return neuron_sequence(x, self.params(), state)

    def extra_repr(self) -> str:
        p = self.p
        kind = "LI" if not p.spiking else ("IF" if not p.leak else ("CubaLIF" if p.tau_syn_inv is not None else "LIF"))
        return f"{kind}, reset={p.reset}, surrogate={p.surrogate}, channels={self.channels}"


def LIF(channels: Optional[int] = None, **kw) -> Neuron:
    """norse-compatible LIFCell (with synaptic current); keyword arguments are NeuronParams fields
    (defaults tau_mem_inv 100/s, tau_syn_inv 200/s, v_th 1, dt 1 ms).

    A :class:`Neuron` module: ``module(x, state)`` takes one step of ``x`` (B, C, ...) and returns
    ``(out, state)`` (out: spikes 0/1 of the same shape, or the membrane for LI); in a
    :class:`~neurosim.snn.sequential.Sequential`, ``x`` is (T, B, C, ...) and runs fused. ``channels``
    = C gives per-channel thresholds / leaks. Rates ``tau_*_inv`` in 1/s, ``dt`` in s.
    """
    learn = {k: kw.pop(k) for k in ("learn_threshold", "learn_leak") if k in kw}
    return Neuron(lif_params(**kw), channels, **learn)


def LIFBox(channels: Optional[int] = None, **kw) -> Neuron:
    """norse-compatible LIFBoxCell (no synaptic current; tau_mem_inv 100/s by default).

    A :class:`Neuron` module: ``module(x, state)`` takes one step of ``x`` (B, C, ...) and returns
    ``(out, state)`` (out: spikes 0/1 of the same shape, or the membrane for LI); in a
    :class:`~neurosim.snn.sequential.Sequential`, ``x`` is (T, B, C, ...) and runs fused. ``channels``
    = C gives per-channel thresholds / leaks. Rates ``tau_*_inv`` in 1/s, ``dt`` in s.
    """
    learn = {k: kw.pop(k) for k in ("learn_threshold", "learn_leak") if k in kw}
    return Neuron(lif_box_params(**kw), channels, **learn)


def IF(channels: Optional[int] = None, **kw) -> Neuron:
    """Integrate-and-fire neuron (no leak: ``v' = v + r·x``; v_th 1 by default).

    A :class:`Neuron` module: ``module(x, state)`` takes one step of ``x`` (B, C, ...) and returns
    ``(out, state)`` (out: spikes 0/1 of the same shape, or the membrane for LI); in a
    :class:`~neurosim.snn.sequential.Sequential`, ``x`` is (T, B, C, ...) and runs fused. ``channels``
    = C gives per-channel thresholds / leaks. Rates ``tau_*_inv`` in 1/s, ``dt`` in s.
    """
    learn = {k: kw.pop(k) for k in ("learn_threshold",) if k in kw}
    return Neuron(if_params(**kw), channels, **learn)


def LI(channels: Optional[int] = None, **kw) -> Neuron:
    """Leaky-integrator readout: non-spiking, the output is the membrane ``v`` (tau_mem_inv 100/s).

    A :class:`Neuron` module: ``module(x, state)`` takes one step of ``x`` (B, C, ...) and returns
    ``(out, state)`` (out: spikes 0/1 of the same shape, or the membrane for LI); in a
    :class:`~neurosim.snn.sequential.Sequential`, ``x`` is (T, B, C, ...) and runs fused. ``channels``
    = C gives per-channel thresholds / leaks. Rates ``tau_*_inv`` in 1/s, ``dt`` in s.
    """
    return Neuron(li_params(**kw), channels)


def STBP(channels: Optional[int] = None, **kw) -> Neuron:
    """STBP neuron ``u_t = decay·u_{t−1}·(1 − o_{t−1}) + x_t`` (decay 0.5, v_th 0.5, rectangle
    surrogate); ``learn_threshold`` per channel.

    A :class:`Neuron` module: ``module(x, state)`` takes one step of ``x`` (B, C, ...) and returns
    ``(out, state)`` (out: spikes 0/1 of the same shape, or the membrane for LI); in a
    :class:`~neurosim.snn.sequential.Sequential`, ``x`` is (T, B, C, ...) and runs fused. ``channels``
    = C gives per-channel thresholds / leaks. Rates ``tau_*_inv`` in 1/s, ``dt`` in s.
    """
    learn = {k: kw.pop(k) for k in ("learn_threshold", "learn_leak") if k in kw}
    return Neuron(stbp_params(**kw), channels, **learn)
