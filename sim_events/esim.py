"""ESIM's event model (Rebecq, Gehrig, Scaramuzza, CoRL 2018; rpg_vid2e ``esim_py``) as a baseline.

Re-implemented from the published algorithm (``esim_py`` is not installed here), for the
side-by-side fidelity benchmark (tests/benchmarks/bench_event_fidelity.py). Per pixel p:

- log intensity L = log(DN/255 + ε), ε = 10⁻³ (esim_py's ``log_eps``);
- the reference L_ref(p) starts at the first frame's L;
- between frames A (t_A) and B (t_B), L moves **linearly in time** from L_A to L_B; every
  crossing of a level L_ref ± k·C gives one event at the exact interpolated time
  t = t_A + (level − L_A)/(L_B − L_A)·(t_B − t_A), and moves L_ref to that level;
- per-pixel thresholds C_on(p), C_off(p) = C + σ·N(0, 1), drawn once from the seed, at least
  0.01;
- a crossing within ``refractory_us`` of the pixel's last event makes no event (the reference
  still moves).

No noise, no bandwidth limit, no optical flow (ESIM renders more frames where the motion is
fast; from a fixed set of frames it is linear interpolation, as esim_py on a video).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from sim_events.formats.events import EVENT_DTYPE

LOG_EPS = 1e-3


def esim_events(frames: Iterable[tuple[int, np.ndarray]], c_on: float = 0.2, c_off: float = 0.2,
                sigma: float = 0.03, refractory_us: float = 100.0, seed: int = 0) -> np.ndarray:
    """ESIM events (EVENT_DTYPE, time-sorted, absolute µs) from ``(t_us, frame uint8 (H, W))`` pairs."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    ref = last = th_on = th_off = None
    prev_l = prev_t = None
    for t, frame in frames:
        lum = np.log(np.asarray(frame, np.float64).ravel() / 255.0 + LOG_EPS)
        if ref is None:
            n = lum.size
            th_on = np.maximum(c_on + sigma * rng.standard_normal(n), 0.01)
            th_off = np.maximum(c_off + sigma * rng.standard_normal(n), 0.01)
            ref, last = lum.copy(), np.full(n, np.iinfo(np.int64).min // 2, np.int64)
            prev_l, prev_t, width = lum, int(t), frame.shape[1]
            continue
        out.append(_pair(prev_l, lum, prev_t, int(t), ref, last, th_on, th_off, refractory_us, width))
        prev_l, prev_t = lum, int(t)
    ev = np.concatenate(out) if out else np.empty(0, EVENT_DTYPE)
    return ev[np.argsort(ev["t"], kind="stable")]


def _pair(la: np.ndarray, lb: np.ndarray, ta: int, tb: int, ref: np.ndarray, last: np.ndarray,
          th_on: np.ndarray, th_off: np.ndarray, refractory_us: float, width: int) -> np.ndarray:
    """Events of one frame pair; updates ``ref`` and ``last`` in place."""
    d = lb - la
    n_on = np.where(lb > ref, np.floor((lb - ref) / th_on), 0).astype(np.int64)
    n_off = np.where(lb < ref, np.floor((ref - lb) / th_off), 0).astype(np.int64)
    xs, ys, ts, ps = [], [], [], []
    for n, th, sign in ((n_on, th_on, 1.0), (n_off, th_off, -1.0)):
        for k in range(1, int(n.max(initial=0)) + 1):
            pix = np.flatnonzero(n >= k)
            level = ref[pix] + sign * k * th[pix]
            dd = d[pix]
            frac = np.where(dd != 0, (level - la[pix]) / np.where(dd != 0, dd, 1.0), 1.0)
            t = ta + np.floor(np.clip(frac, 0.0, 1.0) * (tb - ta)).astype(np.int64)
            t = np.minimum(t, tb - 1)
            keep = t - last[pix] >= refractory_us
            last[pix[keep]] = t[keep]
            xs.append(pix[keep] % width)
            ys.append(pix[keep] // width)
            ts.append(t[keep])
            ps.append(np.full(int(keep.sum()), sign > 0))
    ref += n_on * th_on - n_off * th_off
    ev = np.empty(sum(len(t) for t in ts), EVENT_DTYPE)
    if len(ev):
        ev["x"], ev["y"], ev["t"], ev["p"] = np.concatenate(xs), np.concatenate(ys), np.concatenate(ts), np.concatenate(ps)
    return ev


def count_matched(frames: list[tuple[int, np.ndarray]], n_on: int, n_off: int, sigma: float = 0.03,
                  refractory_us: float = 100.0, seed: int = 0, iters: int = 5) -> tuple[float, float]:
    """(C_on, C_off) for which ESIM makes ``n_on`` ON and ``n_off`` OFF events on ``frames``
    (multiplicative updates C ← C·N_sim/N_real from 0.2)."""
    c_on = c_off = 0.2
    for _ in range(iters):
        ev = esim_events(frames, c_on, c_off, sigma, refractory_us, seed)
        on = int(ev["p"].sum())
        c_on *= max(on, 1) / max(n_on, 1)
        c_off *= max(len(ev) - on, 1) / max(n_off, 1)
    return float(c_on), float(c_off)
