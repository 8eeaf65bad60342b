"""v2e's DVS pixel model (Hu, Liu, Delbruck, CVPR-W 2021; SensorsINI/v2e) re-implemented as a baseline.

v2e itself cannot be installed here (not on PyPI; its repository is unreachable), so its
emulator is re-implemented in numpy, vectorised over pixels and events, for the side-by-side
fidelity benchmark (tests/benchmarks/bench_event_fidelity.py). It follows
``v2ecore/emulator.py`` (``EventEmulator._init``, ``set_dvs_params``, ``generate_events``;
SensorsINI/v2e commit b0ae3bcb) and ``v2ecore/emulator_utils.py`` (``lin_log``,
``rescale_intensity_frame``, ``low_pass_filter``, ``subtract_leak_current``,
``compute_event_map``, ``generate_shot_noise``; commit b7f50279) — the v2e 1.5 series
(``setup.py`` of the stored tree says 1.5.1). Per pixel, frame k at time t_k (s), Δt = t_k − t_{k−1}:

1. **lin-log** (``lin_log``): L = DN·ln(20)/20 for DN ≤ 20, ln(DN) above; rounded to 1e-8.
2. **photoreceptor low-pass** (``rescale_intensity_frame``, ``low_pass_filter``): one IIR
   step per frame, τ = 1/(2π·cutoff_hz), ε = min(1, I·Δt/τ) with I = (DN + 20)/275, so the
   time constant shrinks with intensity; L_p ← (1 − ε)·L_p + ε·L. Current v2e is first order
   ("one pole is nearly always dominant"); ``stages=2`` adds the second cascaded RC stage
   (source follower, same ε, fed by the first stage's previous value) of its earlier versions'
   comment ``(1-eps)*lpLogFrame1 + eps*lpLogFrame0``. No filter when cutoff_hz = 0.
3. **leak** (``subtract_leak_current``): the memorised level drops by
   Δt·leak_rate_hz·n(p)·(1 − jitter·N(0, 1))·θ_on(p), with n(p) = 10^(cov_decades·N(0, 1))
   drawn once (``_init``) and the jitter drawn every frame.
4. **events** (``compute_event_map``, ``generate_events``): D = L_p − L_ref;
   n_on = ⌊max(D, 0)/θ_on⌋, n_off = ⌊max(−D, 0)/θ_off⌋; with M the largest count of any pixel
   this frame, the i-th event of a pixel (i = 1..n) gets t_{k−1} + i·Δt/M — the same M
   linearly spread time stamps for all pixels, as v2e's ``torch.linspace``.
5. **refractory period** (``generate_events``): only when refractory_period_s > Δt/M, as in
   v2e; an event passes if its time minus the pixel's last passed event time exceeds the
   period (last time starts at −period). Passed events only move L_ref.
6. **shot noise** (``generate_shot_noise``): after the signal events, one uniform u per pixel;
   ON if u > 1 − f·θ_on⁰/θ_on(p), OFF if u < f·θ_off⁰/θ_off(p), with
   f = (rate/2)·Δt·(1 − 0.75·I) (fewer in bright pixels; ``SHOT_NOISE_INTEN_FACTOR`` 0.25),
   time stamp t_k; no refractory check; a noise pixel's L_ref is reset to L_p.
7. L_ref += (passed ON)·θ_on − (passed OFF)·θ_off.

Thresholds θ(p) = max(0.01, θ⁰ + σ·N(0, 1)) per pixel, drawn once (ON then OFF).
The first frame only initialises L_p = L_ref = L (no events), as v2e.

Simplifications (stated): numpy on the CPU (no torch/CUDA); float64 throughout (v2e mixes
float32 and float64 tensors); no SuperSloMo interpolation — frames are used as given (v2e's
``--disable_slomo``); times are µs integers (rounded) instead of float32 seconds; within one
time stamp events are ordered ON then OFF, row-major (v2e shuffles them with
``torch.randperm``); a seeded ``numpy.random.Generator`` draws in v2e's order (thresholds,
leak-rate spread, then per frame leak jitter and shot-noise uniforms) but not v2e's torch
numbers; no photoreceptor-noise (``--photoreceptor_noise``), CSDVS, SCIDVS or HDR-input options.

Presets (``set_dvs_params`` at b0ae3bcb): ``clean`` θ 0.2/0.2, σ 0.02, nothing else;
``noisy`` θ 0.2/0.2, σ 0.05, cutoff 30 Hz, leak 0.1 Hz (jitter 0.1, spread 0.1 decades),
shot noise 5 Hz, refractory 0 (earlier v2e versions, e.g. commit 0246dc01, set 10 ms here).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import numpy as np

from sim_events.formats.events import EVENT_DTYPE

LIN_LOG_DN = 20.0
SHOT_NOISE_INTEN_FACTOR = 0.25
ROUNDING = 1e8


@dataclasses.dataclass(frozen=True)
class V2EParams:
    """v2e's ``EventEmulator`` DVS arguments (log_e units, Hz, s)."""

    pos_thres: float = 0.2
    neg_thres: float = 0.2
    sigma_thres: float = 0.02
    cutoff_hz: float = 0.0
    leak_rate_hz: float = 0.0
    shot_noise_rate_hz: float = 0.0
    refractory_period_s: float = 0.0
    leak_jitter_fraction: float = 0.0
    noise_rate_cov_decades: float = 0.0
    stages: int = 1


PRESETS = {
    "clean": V2EParams(),
    "noisy": V2EParams(sigma_thres=0.05, cutoff_hz=30.0, leak_rate_hz=0.1, shot_noise_rate_hz=5.0,
                       refractory_period_s=0.0, leak_jitter_fraction=0.1, noise_rate_cov_decades=0.1),
}


def lin_log(dn: np.ndarray, threshold: float = LIN_LOG_DN) -> np.ndarray:
    """v2e's ``lin_log``: linear below ``threshold`` DN (matching ln at the knee), ln above; 1e-8 rounding."""
    x = np.asarray(dn, np.float64)
    y = np.where(x <= threshold, x * (math.log(threshold) / threshold), np.log(np.maximum(x, threshold)))
    return np.round(y * ROUNDING) / ROUNDING


def intensity01(dn: np.ndarray) -> np.ndarray:
    """v2e's ``rescale_intensity_frame``: (DN + 20)/275, scales the filter rate and shot noise."""
    return (np.asarray(dn, np.float64) + 20.0) / 275.0


def lowpass_eps(dn: np.ndarray, dt_s: float, cutoff_hz: float) -> np.ndarray:
    """IIR update fraction ε = min(1, I·Δt·2π·cutoff_hz) of ``low_pass_filter``."""
    return np.minimum(intensity01(dn) * (dt_s * 2.0 * math.pi * cutoff_hz), 1.0)


@dataclasses.dataclass
class _State:
    lp: list[np.ndarray]
    ref: np.ndarray
    th_on: np.ndarray
    th_off: np.ndarray
    pre_on: np.ndarray
    pre_off: np.ndarray
    rate_spread: np.ndarray
    last_s: np.ndarray
    t_prev_s: float


def _init(lum: np.ndarray, p: V2EParams, rng: np.random.Generator) -> _State:
    n = lum.size
    th_on = np.full(n, float(p.pos_thres))
    th_off = np.full(n, float(p.neg_thres))
    if p.sigma_thres > 0:
        th_on = np.maximum(rng.normal(p.pos_thres, p.sigma_thres, n), 0.01)
        th_off = np.maximum(rng.normal(p.neg_thres, p.sigma_thres, n), 0.01)
    spread = np.ones(n)
    if p.leak_rate_hz > 0:
        spread = np.exp(math.log(10.0) * p.noise_rate_cov_decades * rng.standard_normal(n))
    return _State(lp=[lum.copy() for _ in range(p.stages)], ref=lum.copy(), th_on=th_on, th_off=th_off,
                  pre_on=p.pos_thres / th_on, pre_off=p.neg_thres / th_off, rate_spread=spread,
                  last_s=np.full(n, -float(p.refractory_period_s)), t_prev_s=0.0)


def _lowpass(s: _State, lum: np.ndarray, dn: np.ndarray, dt_s: float, p: V2EParams) -> np.ndarray:
    if p.cutoff_hz <= 0:
        s.lp = [lum] * p.stages
        return lum
    eps = lowpass_eps(dn, dt_s, p.cutoff_hz)
    first = (1.0 - eps) * s.lp[0] + eps * lum
    s.lp = [first] + [(1.0 - eps) * later + eps * earlier for earlier, later in zip(s.lp[:-1], s.lp[1:])]
    return s.lp[-1]


def _refractory(n: np.ndarray, last_s: np.ndarray, t_prev_s: float, step_s: float, period_s: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: first passed index i0 (0-based), stride m and passed count of candidate
    times t_prev + (i + 1)·step, i < n, under v2e's sequential "t − last > period" rule."""
    i0 = np.maximum(np.floor((last_s + period_s - t_prev_s) / step_s), 0.0)
    i0 = np.where(t_prev_s + (i0 + 1) * step_s - last_s > period_s, i0, i0 + 1).astype(np.int64)
    m = int(math.floor(period_s / step_s)) + 1
    if (m - 1) * step_s > period_s:
        m -= 1
    count = np.where(n > i0, (n - i0 + m - 1) // m, 0)
    return i0, np.full_like(i0, m), count


def _spread(pix: np.ndarray, first: np.ndarray, stride: np.ndarray, count: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel and 0-based time index of every passed event: first + j·stride, j < count."""
    pix_rep = np.repeat(pix, count)
    start = np.repeat(np.cumsum(count) - count, count)
    j = np.arange(pix_rep.size) - start
    return pix_rep, np.repeat(first, count) + j * np.repeat(stride, count)


def _frame_events(s: _State, dn: np.ndarray, t_s: float, p: V2EParams, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixel, time s, ON) of one frame's events; updates ``s``."""
    dt = t_s - s.t_prev_s
    lp = _lowpass(s, lin_log(dn), dn, dt, p)
    if p.leak_rate_hz > 0:
        jitter = rng.standard_normal(dn.size)
        s.ref = s.ref - dt * p.leak_rate_hz * s.rate_spread * (1.0 - p.leak_jitter_fraction * jitter) * s.th_on
    diff = lp - s.ref
    n_on = np.floor(np.maximum(diff, 0.0) / s.th_on).astype(np.int64)
    n_off = np.floor(np.maximum(-diff, 0.0) / s.th_off).astype(np.int64)
    n = n_on + n_off
    steps = max(int(n.max(initial=0)), 1)
    step = dt / steps
    pix = np.flatnonzero(n)
    if p.refractory_period_s > step:
        first, stride, count = _refractory(n[pix], s.last_s[pix], s.t_prev_s, step, p.refractory_period_s)
        s.last_s[pix[count > 0]] = s.t_prev_s + (first + (count - 1) * stride + 1)[count > 0] * step
    else:
        first, stride, count = np.zeros_like(pix), np.ones_like(pix), n[pix]
    ev_pix, ev_idx = _spread(pix, first, stride, count)
    on = n_on[ev_pix] > 0
    passed = np.bincount(pix, count, dn.size)
    s.ref = s.ref + np.where(n_on > 0, passed, 0.0) * s.th_on - np.where(n_off > 0, passed, 0.0) * s.th_off
    ev_t = s.t_prev_s + (ev_idx + 1) * step
    if p.shot_noise_rate_hz > 0:
        f = (p.shot_noise_rate_hz / 2.0) * dt * ((SHOT_NOISE_INTEN_FACTOR - 1.0) * intensity01(dn) + 1.0)
        u = rng.random(dn.size)
        shot_on, shot_off = u > 1.0 - f * s.pre_on, u < f * s.pre_off
        noise = np.flatnonzero(shot_on | shot_off)
        s.ref[noise] = lp[noise]
        ev_pix = np.concatenate([ev_pix, np.flatnonzero(shot_on), np.flatnonzero(shot_off)])
        ev_t = np.concatenate([ev_t, np.full(int(shot_on.sum() + shot_off.sum()), s.t_prev_s + steps * step)])
        on = np.concatenate([on, np.ones(int(shot_on.sum()), bool), np.zeros(int(shot_off.sum()), bool)])
    s.t_prev_s = t_s
    return ev_pix, ev_t, on


def v2e_events(frames: Iterable[tuple[int, np.ndarray]], params: V2EParams = PRESETS["clean"], seed: int = 0
               ) -> np.ndarray:
    """v2e events (EVENT_DTYPE, time-sorted, absolute µs) from ``(t_us, frame uint8 (H, W))`` pairs.

    Times go to the model in seconds relative to the first frame (as v2e is driven); event
    times are rounded to whole µs and put back on the absolute clock."""
    rng = np.random.default_rng(seed)
    state: _State | None = None
    t0 = width = 0
    out: list[np.ndarray] = []
    for t_us, frame in frames:
        dn = np.asarray(frame, np.float64).ravel()
        if state is None:
            state, t0, width = _init(lin_log(dn), params, rng), int(t_us), frame.shape[1]
            continue
        t_s = (int(t_us) - t0) * 1e-6
        if t_s <= state.t_prev_s:
            raise ValueError(f"frame time {t_us} µs is not later than the previous frame's")
        pix, t, on = _frame_events(state, dn, t_s, params, rng)
        ev = np.empty(pix.size, EVENT_DTYPE)
        ev["x"], ev["y"], ev["p"] = pix % width, pix // width, on
        ev["t"] = t0 + np.round(t * 1e6).astype(np.int64)
        out.append(ev[np.lexsort((~ev["p"], ev["t"]))])
    return np.concatenate(out) if out else np.empty(0, EVENT_DTYPE)


def count_matched(frames: list[tuple[int, np.ndarray]], n_on: int, n_off: int,
                  params: V2EParams = PRESETS["clean"], seed: int = 0, rounds: int = 16,
                  bounds: tuple[float, float] = (0.01, 5.0)) -> V2EParams:
    """``params`` with θ_on, θ_off matched to ``n_on`` ON and ``n_off`` OFF events on ``frames``.

    Bisection in log θ inside ``bounds``, both polarities at once (the ON count falls with θ_on,
    the OFF count with θ_off), ``rounds`` halvings. The multiplicative rule θ ← θ·N_sim/N_real
    (ESIM's count matching here) oscillates on this model: at θ = 0.2 the APS read noise
    makes ~5× the real events, θ → 1 then makes ~0.15×, and so on."""
    lo, hi = np.log([bounds[0]] * 2), np.log([bounds[1]] * 2)
    for _ in range(rounds):
        mid = (lo + hi) / 2
        ev = v2e_events(frames, dataclasses.replace(params, pos_thres=float(np.exp(mid[0])),
                                                    neg_thres=float(np.exp(mid[1]))), seed)
        too_many = np.array([ev["p"].sum() > n_on, (~ev["p"]).sum() > n_off])
        lo, hi = np.where(too_many, mid, lo), np.where(too_many, hi, mid)
    th = np.exp((lo + hi) / 2)
    return dataclasses.replace(params, pos_thres=float(th[0]), neg_thres=float(th[1]))
