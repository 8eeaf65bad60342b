"""Fidelity metrics: simulated vs real DVS events over one time window (docs/explanation/references.md §1).

:func:`compare` returns

- ``count_ratio`` = N_sim / N_real;
- ``pixel_r_on`` / ``pixel_r_off``: Pearson r between the per-pixel ON (OFF) event counts
  (all W·H pixels);
- ``rate_r``: Pearson r between the event counts in consecutive bins of one frame interval
  (floor((t1 − t0)/Δ) bins from t0; a remainder shorter than Δ joins the last bin);
- ``phase_cv`` (simulated) and ``phase_cv_real``: coefficient of variation (std/mean) of the
  event counts in 8 equal bins of the frame interval, phase = ((t − t_frame) mod Δ)/Δ — flat
  (real DAVIS ≈ 0.04) unless events bunch at frame times;
- ``f1_5ms`` (with ``precision``, ``recall``): each real event, in time order, matches the
  earliest unused simulated event of the same pixel and polarity within ±5 ms (greedy);
  precision = matches/N_sim, recall = matches/N_real, F1 their harmonic mean.

Against real *event frames* (an FE240hz folder: at most one polarity per pixel and window, no
time inside the window; ``sim_events.formats.event_frames``) counts, phases and 5 ms matches do
not exist on the real side. Both sides are then reduced to the same binary activity —
pixel p was ON (OFF) in window j of ``w = 10⁶/rate`` µs — and :func:`compare_event_frames` gives

- ``pixel_activity_r_on`` / ``pixel_activity_r_off``: Pearson r between the per-pixel numbers of
  windows with ON (OFF) activity (all W·H pixels);
- ``window_activity_r``: Pearson r between the numbers of active pixels per window;
- ``activity_ratio``: active (window, pixel, polarity) triples, simulated / real.

Events are structured arrays with fields x, y, t (µs), p (ON = p > 0: bool, 0/1 or ±1).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

PHASE_BINS = 8


def _window(events: np.ndarray, t0: int, t1: int) -> np.ndarray:
    t = events["t"]
    return events[(t >= t0) & (t < t1)]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return float("nan")
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def _pixel_counts(ev: np.ndarray, on: bool, width: int, height: int) -> np.ndarray:
    sel = (ev["p"] > 0) == on
    idx = ev["y"][sel].astype(np.int64) * width + ev["x"][sel].astype(np.int64)
    return np.bincount(idx, minlength=width * height)


def phase_cv(t: np.ndarray, t0: int, frame_interval_us: int, bins: int = PHASE_BINS) -> float:
    """CV of event counts in ``bins`` phase bins of the frame interval (phase of t − t0)."""
    if len(t) == 0:
        return float("nan")
    ph = ((np.asarray(t, dtype=np.int64) - t0) % frame_interval_us) * bins // frame_interval_us
    c = np.bincount(ph, minlength=bins).astype(np.float64)
    return float(c.std() / c.mean())


def match_count(sim: np.ndarray, real: np.ndarray, width: int, tol_us: int = 5000) -> int:
    """Greedy matches of real to simulated events (same pixel and polarity, |Δt| ≤ tol_us)."""
    from sim_events import _dvs

    def keyed(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = (ev["y"].astype(np.int64) * width + ev["x"].astype(np.int64)) * 2 + (ev["p"] > 0)
        t = ev["t"].astype(np.int64)
        order = np.lexsort((t, key))
        return np.ascontiguousarray(key[order]), np.ascontiguousarray(t[order])

    ks, ts = keyed(sim)
    kr, tr = keyed(real)
    return int(_dvs.match_events(ks, ts, kr, tr, int(tol_us)))


def compare(sim_events: np.ndarray, real_events: np.ndarray, width: int, height: int, t0: int, t1: int,
            frame_interval_us: int, tol_us: int = 5000, phase_origin_us: int | None = None) -> dict:
    """All fidelity metrics over [t0, t1) (µs). Rate bins start at t0; phases are measured
    from ``phase_origin_us`` (a frame time; default t0). See module doc."""
    t0, t1, fi = int(t0), int(t1), int(frame_interval_us)
    origin = t0 if phase_origin_us is None else int(phase_origin_us)
    if t1 <= t0 or fi <= 0:
        raise ValueError("need t1 > t0 and a positive frame interval")
    sim = _window(sim_events, t0, t1)
    real = _window(real_events, t0, t1)
    n_sim, n_real = len(sim), len(real)
    n_bins = max((t1 - t0) // fi, 1)  # full frame intervals; the remainder joins the last bin
    edges = t0 + fi * np.arange(n_bins + 1, dtype=np.int64)
    edges[-1] = t1
    rate_sim = np.histogram(sim["t"], edges)[0]
    rate_real = np.histogram(real["t"], edges)[0]
    m = match_count(sim, real, width, tol_us) if n_sim and n_real else 0
    prec = m / n_sim if n_sim else 0.0
    rec = m / n_real if n_real else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {
        "t0_us": t0, "t1_us": t1, "frame_interval_us": fi,
        "sim_events": n_sim, "real_events": n_real,
        "count_ratio": n_sim / n_real if n_real else float("nan"),
        "pixel_r_on": _pearson(_pixel_counts(sim, True, width, height), _pixel_counts(real, True, width, height)),
        "pixel_r_off": _pearson(_pixel_counts(sim, False, width, height), _pixel_counts(real, False, width, height)),
        "rate_r": _pearson(rate_sim, rate_real) if len(edges) > 2 else float("nan"),
        "phase_cv": phase_cv(sim["t"], origin, fi),
        "phase_cv_real": phase_cv(real["t"], origin, fi),
        "f1_5ms" if tol_us == 5000 else f"f1_{tol_us}us": f1,
        "precision": prec, "recall": rec,
    }


TARGETS = {"count_ratio": (0.9, 1.1), "pixel_r_on": (0.93, None), "pixel_r_off": (0.93, None),
           "rate_r": (0.9, None), "phase_cv": (None, 0.10), "f1_5ms": (0.45, None)}


def window_activity(events: np.ndarray, width: int, height: int, t0: int, t1: int,
                    window_us: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct active (window j, polarity, pixel) triples of events in [t0, t1) → (j, on, pixel).

    Window j is ``[t0 + j·w, t0 + (j+1)·w)``; pixel = y·W + x; each triple appears once."""
    ev = _window(events, t0, t1)
    j = np.floor((ev["t"] - t0) / window_us).astype(np.int64)
    key = (j * 2 + (ev["p"] > 0)) * (width * height) + ev["y"].astype(np.int64) * width + ev["x"].astype(np.int64)
    key = np.unique(key)
    return key // (2 * width * height), (key // (width * height)) % 2 == 1, key % (width * height)


def compare_event_frames(sim_events: np.ndarray, real_events: np.ndarray, width: int, height: int,
                         t0: int, t1: int, rate_hz: float) -> dict[str, float]:
    """Activity metrics of simulated events vs real event frames at ``rate_hz`` over [t0, t1) µs.

    ``t0`` must be a window boundary of the real event frames (their clock)."""
    window_us = 1e6 / rate_hz
    n_windows = int(np.ceil((t1 - t0) / window_us))
    sim_j, sim_on, sim_pix = window_activity(sim_events, width, height, t0, t1, window_us)
    real_j, real_on, real_pix = window_activity(real_events, width, height, t0, t1, window_us)
    out = {"t0_us": int(t0), "t1_us": int(t1), "rate_hz": float(rate_hz), "windows": n_windows,
           "sim_events": int(len(_window(sim_events, t0, t1))), "real_events": int(len(_window(real_events, t0, t1))),
           "activity_ratio": len(sim_j) / max(len(real_j), 1), "active_real": int(len(real_j)),
           "active_sim": int(len(sim_j))}
    for name, on in (("on", True), ("off", False)):
        out[f"pixel_activity_r_{name}"] = _pearson(np.bincount(sim_pix[sim_on == on], minlength=width * height),
                                                   np.bincount(real_pix[real_on == on], minlength=width * height))
    out["window_activity_r"] = _pearson(np.bincount(sim_j, minlength=n_windows), np.bincount(real_j, minlength=n_windows))
    return out


EVENT_FRAME_TARGETS = {"pixel_activity_r_on": 0.8, "pixel_activity_r_off": 0.8}


def meets_targets(metrics: dict) -> dict[str, bool]:
    """Which of issue 2's fidelity targets ``metrics`` reaches."""
    out = {}
    for k, (lo, hi) in TARGETS.items():
        v = metrics.get(k, float("nan"))
        out[k] = bool(np.isfinite(v) and (lo is None or v >= lo) and (hi is None or v <= hi))
    return out


def window_origin(real: Any) -> int:
    """Origin of a comparison window in µs: the real recording's first frame time, else its first event."""
    if real.frame_t is not None and len(real.frame_t):
        return int(real.frame_t[0])
    return int(real.events["t"][0])


def compare_files(sim: Any, real: Any, t0: float | None = None, t1: float | None = None,
                  frame_interval_ms: float | None = None) -> dict:
    """Fidelity metrics of simulated vs real events, from files (``neurosim events compare``).

    Args:
        sim: simulated events: a path of any readable event file
            (:func:`sim_events.read_recording`) or a :class:`~sim_events.formats.events.Recording`.
        real: real events, the same kinds; it sets the sensor size, the time origin (its first
            APS frame, else its first event) and the default frame interval.
        t0: window start in seconds from the origin (default: the origin).
        t1: window end in seconds from the origin (default: the real file's last frame time,
            else just after its last event).
        frame_interval_ms: frame interval of the rate bins and phases in ms (default: median
            interval of the real file's frames, else 40 ms).

    Returns:
        The metrics of :func:`compare` over [t0, t1) (times in absolute µs) plus
        ``meets_targets`` (metric -> bool, :func:`meets_targets`) and ``origin_us`` (the
        origin in absolute µs).

    Raises:
        InputError: the sensor sizes differ or the real file has no events.
        ParameterError: a non-positive frame interval or an empty window.
    """
    from neurosim.errors import InputError, ParameterError
    from sim_events.formats import read_recording

    is_path = (str, os.PathLike)
    sim_rec = read_recording(sim) if isinstance(sim, is_path) else sim
    real_rec = read_recording(real) if isinstance(real, is_path) else real
    sim_name = sim if isinstance(sim, is_path) else (sim_rec.source or "the simulated recording")
    real_name = real if isinstance(real, is_path) else (real_rec.source or "the real recording")
    if (sim_rec.width, sim_rec.height) != (real_rec.width, real_rec.height):
        raise InputError(f"{sim_name} is {sim_rec.width}x{sim_rec.height} but {real_name} is "
                         f"{real_rec.width}x{real_rec.height}: compare files of one sensor size")
    if len(real_rec.events) == 0:
        raise InputError(f"{real_name} has no events: give a real recording with events")
    frame_t = real_rec.frame_t
    if frame_interval_ms is not None:
        if frame_interval_ms <= 0:
            raise ParameterError("--frame-interval-ms must be > 0")
        fi = int(round(frame_interval_ms * 1000))
    elif frame_t is not None and len(frame_t) > 1:
        fi = int(np.median(np.diff(frame_t)))
    else:
        fi = 40000
    origin = window_origin(real_rec)
    start = origin + int(round(t0 * 1e6)) if t0 is not None else origin
    if t1 is not None:
        end = origin + int(round(t1 * 1e6))
    elif frame_t is not None and len(frame_t) > 1:
        end = int(frame_t[-1])
    else:
        end = int(real_rec.events["t"][-1]) + 1
    if end <= start:
        raise ParameterError(f"the window [{start}, {end}) µs is empty: give --t1 after --t0")
    if real_rec.attrs.get("format") == "fe240hz":
        m = compare_event_frames(sim_rec.events, real_rec.events, real_rec.width, real_rec.height, start, end,
                                 real_rec.attrs["event_rate_hz"])
        m["meets_targets"] = {k: bool(m[k] >= v) for k, v in EVENT_FRAME_TARGETS.items()}
        m["origin_us"] = origin
        return m
    m = compare(sim_rec.events, real_rec.events, real_rec.width, real_rec.height, start, end, fi, phase_origin_us=origin)
    m["meets_targets"] = meets_targets(m)
    m["origin_us"] = origin
    return m
