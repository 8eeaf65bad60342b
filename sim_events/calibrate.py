"""Fit the DVS simulator to a real recording that has APS frames and DVS events.

``calibrate(recording) -> (DvsParams, metrics)``; the recording is a
:class:`~sim_events.formats.Recording` or a path (the ``.npz`` recording layout, AEDAT4 with
frames, a sequence file). The simulator is run on the recording's own frames and its events
are compared with the real ones (:func:`sim_events.metrics.compare`).

The fit has to hold on data it did not see (another stretch of the same camera), so every
choice is made on **held-out blocks in time**: the frames are cut into ``folds`` contiguous
blocks (:func:`fold_spans`); each block is simulated from its own first frame (a fresh
start, as a simulation of unseen frames is) and scored against its real events with
thresholds that were fitted on the *other* blocks only.

What is fitted, and how:

1. **APS read noise** (``aps_read_noise_dn``, ``aps_shot_gain``): σ² = read² + gain·DN,
   least squares over DN bins of the variance of frame-to-frame differences at pixels with
   no real event nearby (3×3) in that interval (differences of two frames: var = 2σ²).
2. **Refractory period**: the 0.5th percentile of the intervals between consecutive events
   of one pixel (any polarity), capped to [0, 5 ms] — an upper bound; the search below
   keeps the preset's value unless the fitted one wins on held-out blocks.
3. **Background activity** at static pixels (frames never change by more than 4σ there or
   in the 3×3 neighbourhood): pixels firing ≥ max(4, 20× the mean) are **hot pixels**
   (listed, with their median rate); the rest give the **shot-noise** rate (2× the OFF
   rate, divided by the mean of the model's intensity factor 2/(1 + DN/64)) and the
   **leak** rate (ON excess over OFF). Both are shrunk towards the preset:
   rate = w·fitted + (1 − w)·preset with w = n/(n + N0), n the background events seen,
   N0 = :data:`NOISE_PRIOR_EVENTS`.
4. **Thresholds** θ_on, θ_off: multiplicative updates θ ← θ·(N_sim/N_real) until the
   simulated ON and OFF counts match the real ones (≤ 2 %). For held-out block k the
   thresholds are rescaled by the count ratio of the other blocks only.
5. **Pixel model** by coordinate search from the preset (``passes`` rounds over
   :data:`SEARCH`): each candidate gets its thresholds (4.), then the cross-validated score
   S = s(pooled) − STABILITY_WEIGHT·std_k(rate r_k), where "pooled" are the metrics of all
   blocks' held-out events together over the whole recording (rate r then has every frame
   interval as a bin, as a check on a whole unseen stretch has) and rate r_k a block's own
   (blocks of ≥ MIN_RATE_BINS intervals only),
   s = r_on + r_off + F1 − PHASE_WEIGHT·phase CV + RATE_WEIGHT·rate r. A candidate
   replaces the current value only if S rises by more than MIN_GAIN and the blocks' own
   scores rise on average: where the evidence is weak the preset's value stays (shrinkage
   towards the preset).
6. **Latency** (0–5 ms, 0.5 ms steps): the shift of the held-out events with the best
   F1 at 5 ms, kept only if it beats no shift by more than LATENCY_MIN_GAIN.

``metrics`` reports the fit on the whole recording (in-sample), the pooled held-out-block
metrics used for the choices (``cv``, ``cv_blocks``) and, with ``holdout=True``, an outer
check that no choice has seen (``holdout``: calibrate on the first half, score the second
half, and the reverse; :func:`holdout_check`). Recordings whose real side is event frames
(FE240hz) go to :func:`calibrate_event_frames`.

The mismatch σ is chosen among a few values by the same score: with a fraction of a second
of data it is not identifiable per pixel, and the result says so (``notes``)."""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import numpy as np

from neurosim.errors import InputError, ParameterError
from sim_events.metrics import compare
from sim_events.params import DvsParams, preset

SEARCH: list[tuple[str, list[Any]]] = [
    ("blur_px", [0.0, 0.4, 0.6, 0.8]),
    ("linlog_dn", [20.0, 40.0, 60.0, 80.0]),
    ("highlight", [(255.0, 0.0), (230.0, 0.3), (200.0, 0.5), (200.0, 1.0), (150.0, 0.5)]),
    ("cutoff_hz", [0.0, 100.0, 300.0]),
    ("threshold_sigma", [0.0, 0.03]),
    ("noise_gate_sigmas", [3.0, 5.0, 8.0]),
]


def _as_recording(recording: Any):
    from sim_events.formats import Recording, read_recording

    rec = recording if isinstance(recording, Recording) else read_recording(recording)
    name = getattr(rec, "source", "") or str(recording)
    if rec.frames is None or rec.frame_t is None or len(rec.frames) < 3:
        raise InputError(f"{name} has no APS frames (or fewer than 3): calibration needs a recording with frames and events")
    if len(rec.events) < 100:
        raise InputError(f"{name} has only {len(rec.events)} events in all: calibration needs a recording with DVS events")
    if np.any(np.diff(rec.frame_t) <= 0):
        raise InputError(f"{name}: frame timestamps do not increase: fix the recording")
    return rec


def _pixel_index(ev: np.ndarray, width: int) -> np.ndarray:
    return ev["y"].astype(np.int64) * width + ev["x"].astype(np.int64)


def _dilate(mask: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def fit_aps_noise(frames: np.ndarray, frame_t: np.ndarray, events: np.ndarray, width: int) -> tuple[float, float]:
    """(read_noise_dn, shot_gain) of σ² = read² + gain·DN from event-free frame differences."""
    h = frames.shape[1]
    pix = _pixel_index(events, width)
    diffs, levels = [], []
    for k in range(len(frames) - 1):
        sel = (events["t"] >= frame_t[k]) & (events["t"] < frame_t[k + 1])
        active = np.zeros(h * width, bool)
        active[pix[sel]] = True
        quiet = ~_dilate(active.reshape(h, width))
        a = frames[k].astype(np.float64)
        b = frames[k + 1].astype(np.float64)
        ok = quiet & (a < 250) & (b < 250) & (a > 2) & (b > 2)
        diffs.append((b - a)[ok])
        levels.append(((a + b) / 2)[ok])
    d = np.concatenate(diffs)
    lv = np.concatenate(levels)
    xs, ys, ws = [], [], []
    for lo in range(0, 250, 16):
        s = (lv >= lo) & (lv < lo + 16)
        if s.sum() < 200:
            continue
        v = d[s]
        mad = np.median(np.abs(v - np.median(v)))
        clip = np.abs(v) <= max(6 * 1.4826 * mad, 3.0)
        xs.append(lv[s].mean())
        ys.append(v[clip].var() / 2.0)
        ws.append(s.sum())
    if len(xs) < 2:
        return 1.5, 0.0
    A = np.stack([np.ones(len(xs)), np.array(xs)], axis=1) * np.sqrt(np.array(ws))[:, None]
    coef, *_ = np.linalg.lstsq(A, np.array(ys) * np.sqrt(np.array(ws)), rcond=None)
    read2, gain = float(coef[0]), float(coef[1])
    if gain < 0:
        gain, read2 = 0.0, float(np.average(ys, weights=ws))
    return float(np.sqrt(max(read2, 0.25))), max(gain, 0.0)


def fit_refractory(events: np.ndarray, width: int) -> float:
    """Refractory period (µs): 0.5th percentile of same-pixel inter-event intervals, in [0, 5000]."""
    pix = _pixel_index(events, width)
    order = np.lexsort((events["t"], pix))
    p, t = pix[order], events["t"][order]
    same = p[1:] == p[:-1]
    isi = (t[1:] - t[:-1])[same]
    if len(isi) < 50:
        return 0.0
    return float(np.clip(np.percentile(isi, 0.5), 0, 5000))


def fit_background(frames: np.ndarray, frame_t: np.ndarray, events: np.ndarray, width: int,
                   read_dn: float, gain: float) -> dict:
    """Hot pixels, shot-noise and leak rates from events at static pixels (see module doc)."""
    h = frames.shape[1]
    f = frames.astype(np.float64)
    sigma = np.sqrt(read_dn ** 2 + gain * f[:-1])
    moving = (np.abs(f[1:] - f[:-1]) > 4 * sigma).any(axis=0)
    static = ~_dilate(moving)
    duration = (frame_t[-1] - frame_t[0]) * 1e-6
    sel = (events["t"] >= frame_t[0]) & (events["t"] < frame_t[-1])
    ev = events[sel]
    pix = _pixel_index(ev, width)
    on = ev["p"] > 0
    cnt = np.bincount(pix, minlength=h * width).reshape(h, width)
    n_static = int(static.sum())
    out = {"static_pixels": n_static, "hot_pixels": [], "hot_pixel_rate_hz": 10.0,
           "shot_noise_rate_hz": 0.0, "leak_rate_hz": 0.0, "background_events": 0}
    if n_static < 100 or duration <= 0:
        return out
    mean = cnt[static].mean()
    hot = static & (cnt >= max(4.0, 20.0 * mean))
    hot_idx = np.flatnonzero(hot.ravel())
    if len(hot_idx):
        out["hot_pixels"] = [int(i) for i in hot_idx]
        out["hot_pixel_rate_hz"] = float(np.median(cnt.ravel()[hot_idx]) / duration)
    bg = static & ~hot
    in_bg = bg.ravel()[pix]
    n_on = int((in_bg & on).sum())
    n_off = int((in_bg & ~on).sum())
    npix = int(bg.sum())
    factor = float(np.mean(2.0 / (1.0 + f[:, bg].mean(axis=0) / 64.0)))
    out["background_events"] = n_on + n_off
    out["shot_noise_rate_hz"] = float(2.0 * n_off / (npix * duration) / max(factor, 1e-6))
    out["leak_rate_hz"] = float(max(0, n_on - n_off) / (npix * duration))
    return out


MIN_RATE_BINS = 8  # a block's own rate r counts only with at least this many frame intervals (fewer: noise)
NOISE_PRIOR_EVENTS = 50.0  # pseudo-count of the preset's noise rates (see module doc, 3.)
RATE_WEIGHT = 0.25
PHASE_WEIGHT = 1.5
STABILITY_WEIGHT = 0.25  # on the spread of the blocks' own held-out rate r
MIN_GAIN = 0.005  # smallest held-out score gain that moves a parameter off its current value
LATENCY_MIN_GAIN = 0.002  # smallest held-out F1 gain that moves the latency off 0


def fold_spans(n_frames: int, folds: int) -> list[tuple[int, int]]:
    """``folds`` contiguous blocks of frame indices (a, b), inclusive, neighbours sharing a frame.

    Block k covers the frame intervals between frames a and b (events in [t_a, t_b)), so the
    blocks tile the recording's span. Example: 15 frames, 2 folds → [(0, 7), (7, 14)]."""
    if folds < 1 or n_frames - 1 < folds:
        raise ParameterError(f"{folds} folds need at least {folds + 1} frames (got {n_frames}): use fewer folds")
    edges = np.round(np.linspace(0, n_frames - 1, folds + 1)).astype(int)
    return [(int(edges[k]), int(edges[k + 1])) for k in range(folds)]


def auto_folds(n_frames: int) -> int:
    """Default number of blocks: at most 3, each of at least 7 frame intervals (a shorter block
    is dominated by its fresh start); 1 (choices in-sample) below 14 intervals."""
    return int(np.clip((n_frames - 1) // 7, 1, 3))


def frame_span(rec, a: int, b: int):
    """The recording restricted to frames a..b (inclusive) and the events in [t_a, t_b]."""
    from sim_events.formats import Recording

    ft = rec.frame_t.astype(np.int64)
    ev = rec.events[(rec.events["t"] >= ft[a]) & (rec.events["t"] <= ft[b])]
    return Recording(events=ev, width=rec.width, height=rec.height, frames=rec.frames[a:b + 1], frame_t=ft[a:b + 1],
                     source=f"{getattr(rec, 'source', '')}[frames {a}-{b}]")


class _Block:
    """Frames a..b of the recording simulated from a fresh start at frame a, vs the real events."""

    def __init__(self, rec, a: int, b: int, seed: int, counter: list[int]):
        self.rec, self.a, self.b, self.seed, self.counter = rec, a, b, seed, counter
        ft = rec.frame_t.astype(np.int64)
        self.t0, self.t1, self.origin = int(ft[a]), int(ft[b]), int(ft[0])
        self.fi = int(np.median(np.diff(ft)))
        self.real = rec.events[(rec.events["t"] >= self.t0) & (rec.events["t"] < self.t1)]
        self.n_on = int((self.real["p"] > 0).sum())
        self.n_off = len(self.real) - self.n_on
        self.bins = max((self.t1 - self.t0) // self.fi, 1)
        self.cache: dict[tuple, list] = {}

    def events(self, params: DvsParams) -> np.ndarray:
        from sim_events.simulator import conditioned_frames, events_from_conditioned

        self.counter[0] += 1
        key = (params.noise_gate_sigmas, params.aps_read_noise_dn, params.aps_shot_gain, params.blur_px,
               params.interpolation, params.flow_preset, params.flow_scale)
        if key not in self.cache:  # gated, blurred frames and their flows depend only on these
            frames = zip((int(t) for t in self.rec.frame_t[self.a:self.b + 1]), self.rec.frames[self.a:self.b + 1])
            self.cache[key] = list(conditioned_frames(frames, self.rec.width, self.rec.height, params))
        chunks = list(events_from_conditioned(self.cache[key], self.rec.width, self.rec.height, params, self.seed))
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=[("x", "u2"), ("y", "u2"), ("t", "i8"), ("p", "u1")])

    def counts(self, ev: np.ndarray) -> tuple[int, int]:
        sel = (ev["t"] >= self.t0) & (ev["t"] < self.t1)
        on = int((ev["p"][sel] > 0).sum())
        return on, int(sel.sum()) - on

    def metrics(self, ev: np.ndarray) -> dict:
        m = compare(ev, self.real, self.rec.width, self.rec.height, self.t0, self.t1, self.fi,
                    phase_origin_us=self.origin)
        if self.bins < MIN_RATE_BINS:
            m["rate_r"] = float("nan")
        return m


def _scaled(params: DvsParams, r_on: float, r_off: float) -> DvsParams:
    return params.replace(
        contrast_threshold_on=float(np.clip(params.contrast_threshold_on * r_on, 0.02, 2.0)),
        contrast_threshold_off=float(np.clip(params.contrast_threshold_off * r_off, 0.02, 2.0)))


class _CrossValidation:
    """The recording cut into blocks; thresholds fitted on counts, candidates scored held out."""

    def __init__(self, rec, folds: int, seed: int):
        self.runs = [0]
        self.blocks = [_Block(rec, a, b, seed, self.runs) for a, b in fold_spans(len(rec.frames), folds)]
        self.whole = _Block(rec, 0, len(rec.frames) - 1, seed, self.runs)

    def fit_thresholds(self, params: DvsParams, iters: int = 4) -> tuple[DvsParams, list[np.ndarray]]:
        """Scale θ_on, θ_off until the simulated ON/OFF counts over all blocks match the real ones."""
        evs = [b.events(params) for b in self.blocks]
        for _ in range(iters):
            r_on, r_off = self._ratio(evs, range(len(self.blocks)))
            if abs(r_on - 1) < 0.02 and abs(r_off - 1) < 0.02:
                break
            params = _scaled(params, r_on, r_off)
            evs = [b.events(params) for b in self.blocks]
        return params, evs

    def _ratio(self, evs: list[np.ndarray], which) -> tuple[float, float]:
        sim = np.array([self.blocks[k].counts(evs[k]) for k in which]).sum(axis=0)
        real = np.array([(self.blocks[k].n_on, self.blocks[k].n_off) for k in which]).sum(axis=0)
        return max(sim[0], 1) / max(real[0], 1), max(sim[1], 1) / max(real[1], 1)

    def held_out(self, params: DvsParams, evs: list[np.ndarray]) -> tuple[list[dict], list[np.ndarray]]:
        """Metrics of each block k simulated with θ rescaled by the other blocks' count ratio."""
        if len(self.blocks) == 1:
            return [self.blocks[0].metrics(evs[0])], evs
        ms, outs = [], []
        for k, blk in enumerate(self.blocks):
            r_on, r_off = self._ratio(evs, [j for j in range(len(self.blocks)) if j != k])
            ev = blk.events(_scaled(params, r_on, r_off))
            ms.append(blk.metrics(ev))
            outs.append(ev)
        return ms, outs

    def pooled(self, held: list[np.ndarray], lat: float = 0.0) -> tuple[list[dict], dict]:
        """(per-block metrics, metrics of all blocks' held-out events over the whole span)."""
        held = [_shifted(ev, lat) for ev in held] if lat else held
        ms = [b.metrics(ev) for b, ev in zip(self.blocks, held)]
        if len(self.blocks) == 1:
            return ms, ms[0]
        parts = [ev[(ev["t"] >= b.t0) & (ev["t"] < b.t1)] for b, ev in zip(self.blocks, held)]
        return ms, self.whole.metrics(np.concatenate(parts))


def score(m: dict) -> float:
    """Calibration objective of one block: r_on + r_off + F1 − PHASE_WEIGHT·phase CV +
    RATE_WEIGHT·rate r (NaN counts as 0)."""
    g = lambda k: float(m.get(k, 0.0)) if np.isfinite(m.get(k, np.nan)) else 0.0  # noqa: E731
    return (g("pixel_r_on") + g("pixel_r_off") + g("f1_5ms") - PHASE_WEIGHT * g("phase_cv")
            + RATE_WEIGHT * g("rate_r"))


def cv_score(ms: list[dict], pooled: dict) -> tuple[float, np.ndarray]:
    """(S, per-block scores): S = score of the pooled held-out prediction (all blocks' held-out
    events against the whole recording, so rate r has all frame intervals as bins) −
    STABILITY_WEIGHT·std_k(rate r_k) over blocks with a rate r."""
    s = np.array([score(m) for m in ms])
    rates = [m["rate_r"] for m in ms if np.isfinite(m.get("rate_r", np.nan))]
    spread = float(np.std(rates)) if len(rates) > 1 else 0.0
    return float(score(pooled) - STABILITY_WEIGHT * spread), s


def _wins(new: tuple[float, np.ndarray], old: tuple[float, np.ndarray]) -> bool:
    """Does ``new`` beat ``old``: pooled score higher by more than MIN_GAIN *and* the blocks'
    own held-out scores higher on average (a gain that only pooling shows stays unproven: the
    current value stays)?"""
    return new[0] - old[0] > MIN_GAIN and float(np.mean(new[1] - old[1])) > 0


def _mean_metrics(ms: list[dict]) -> dict:
    keys = ("count_ratio", "pixel_r_on", "pixel_r_off", "rate_r", "phase_cv", "f1_5ms")
    return {k: float(np.nanmean([m[k] for m in ms])) if any(np.isfinite(m[k]) for m in ms) else float("nan")
            for k in keys}


def _apply(params: DvsParams, name: str, value: Any) -> DvsParams:
    if name == "highlight":
        return params.replace(highlight_knee_dn=value[0], highlight_gain=value[1])
    return params.replace(**{name: value})


def _current(params: DvsParams, name: str) -> Any:
    if name == "highlight":
        return (params.highlight_knee_dn, params.highlight_gain)
    return getattr(params, name)


def _shrunk(fitted: float, prior: float, n_events: float) -> float:
    w = n_events / (n_events + NOISE_PRIOR_EVENTS)
    return float(w * fitted + (1 - w) * prior)


def _shifted(ev: np.ndarray, lat: float) -> np.ndarray:
    out = ev.copy()
    out["t"] = out["t"] + int(lat)
    return out


def calibrate(recording: Any, seed: int = 0, base: DvsParams | None = None, passes: int = 2,
              folds: int | None = None, holdout: bool = False,
              progress: Callable[[str], None] | None = None) -> tuple[DvsParams, dict]:
    """Fit DvsParams to a real recording with frames and events; return (params, metrics).

    Args:
        recording: a Recording or a path with APS frames and events.
        seed: random seed of the simulations.
        base: the starting (and prior) parameters; default the ``davis346`` preset.
        passes: rounds of the coordinate search.
        folds: number of contiguous time blocks for the held-out choices (default
            :func:`auto_folds`; 1 = choose on the whole recording, in-sample).
        holdout: also run :func:`holdout_check` (two more calibrations on the halves).

    Returns:
        ``params`` and ``metrics``: the fidelity metrics of the fitted simulator on the whole
        recording (:func:`sim_events.metrics.compare`, in-sample), ``cv`` (metrics of all
        blocks' held-out events pooled over the recording, for the final choice; these blocks
        guided the choices), ``cv_blocks`` (each block's own), ``cv_score``,
        optionally ``holdout``, the fitted noise figures and ``notes``.
    """
    if not (0 <= int(seed) < 2**63):
        raise ParameterError(f"seed {seed} must be an integer in [0, 2^63)")
    rec = _as_recording(recording)
    say = progress or (lambda msg: None)
    prior = base or preset("davis346")
    w = rec.width
    frames, ft = rec.frames, rec.frame_t.astype(np.int64)
    folds = auto_folds(len(frames)) if folds is None else int(folds)
    read_dn, gain = fit_aps_noise(frames, ft, rec.events, w)
    refractory = fit_refractory(rec.events[(rec.events["t"] >= ft[0]) & (rec.events["t"] < ft[-1])], w)
    bg = fit_background(frames, ft, rec.events, w, read_dn, gain)
    shot = _shrunk(bg["shot_noise_rate_hz"], prior.shot_noise_rate_hz, bg["background_events"])
    leak = _shrunk(bg["leak_rate_hz"], prior.leak_rate_hz, bg["background_events"])
    say(f"APS noise: read {read_dn:.2f} DN, shot gain {gain:.4f}; refractory {refractory:.0f} us; "
        f"{len(bg['hot_pixels'])} hot pixels; shot noise {shot:.4f} Hz, leak {leak:.4f} Hz "
        f"({bg['background_events']} background events); {folds} blocks")
    params = prior.replace(
        aps_read_noise_dn=read_dn, aps_shot_gain=gain, latency_us=0.0,
        hot_pixels=bg["hot_pixels"], hot_pixel_rate_hz=bg["hot_pixel_rate_hz"], hot_pixel_fraction=0.0,
        shot_noise_rate_hz=shot, leak_rate_hz=leak)
    cv = _CrossValidation(rec, folds, seed)

    def evaluate(p: DvsParams):
        p, evs = cv.fit_thresholds(p)
        _, held = cv.held_out(p, evs)
        ms, pooled = cv.pooled(held)
        return p, cv_score(ms, pooled), (ms, pooled), held

    params, best, best_ms, best_held = evaluate(params)
    search = SEARCH + [("refractory_us", [prior.refractory_us, refractory])]
    for p in range(passes):
        improved = False
        for name, values in search:
            for value in values:
                if value == _current(params, name):
                    continue
                cand, s, ms, held = evaluate(_apply(params, name, value))
                if _wins(s, best):
                    params, best, best_ms, best_held, improved = cand, s, ms, held, True
            say(f"pass {p + 1}: {name} = {_current(params, name)} (held-out score {best[0]:.3f})")
        if not improved:
            break
    lat_best, lat_ms = 0.0, best_ms
    f1_zero = f1_best = best_ms[1]["f1_5ms"]
    for lat in np.arange(500.0, 5001.0, 500.0):
        ms = cv.pooled(best_held, lat)
        if ms[1]["f1_5ms"] > f1_best + 1e-4:
            lat_best, lat_ms, f1_best = float(lat), ms, ms[1]["f1_5ms"]
    if f1_best - f1_zero <= LATENCY_MIN_GAIN:
        lat_best, lat_ms = 0.0, best_ms
    ref = cv_score(*lat_ms)
    params = params.replace(latency_us=lat_best)
    say(f"latency {lat_best:.0f} us (held-out score {ref[0]:.3f})")
    final = cv.whole.metrics(cv.whole.events(params))
    final.update({
        "score": score(final), "simulations": cv.runs[0], "folds": folds,
        "cv": _mean_metrics([lat_ms[1]]), "cv_score": ref[0],
        "cv_blocks": [{"frames": [b.a, b.b], **_mean_metrics([m])} for b, m in zip(cv.blocks, lat_ms[0])],
        "aps_read_noise_dn": read_dn, "aps_shot_gain": gain, "refractory_fitted_us": refractory,
        "hot_pixels": len(bg["hot_pixels"]), "static_pixels": bg["static_pixels"],
        "background_events": bg["background_events"],
        "shot_noise_rate_fitted_hz": bg["shot_noise_rate_hz"], "leak_rate_fitted_hz": bg["leak_rate_hz"],
        "frames": int(len(frames)), "source": str(getattr(rec, "source", "")),
        "notes": "cv: held-out blocks that guided the choices (optimistic); holdout: saw no choice. "
                 "threshold_sigma is chosen by the score, not identified per pixel; "
                 "refractory_fitted_us is an upper bound from the shortest same-pixel intervals",
    })
    if holdout:
        final["holdout"] = holdout_check(rec, seed=seed, base=base, passes=passes, progress=say)
    return params, final


def holdout_check(recording: Any, seed: int = 0, base: DvsParams | None = None, passes: int = 2,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Outer check that no choice has seen: calibrate on one half of the frames, simulate the
    other half from a fresh start, compare; both ways round. Returns the mean metrics plus
    ``halves`` (per direction: fit frames, checked frames, metrics); ``{}`` with fewer than
    7 frames (a half needs 3 frames and 2 blocks' worth is not there)."""
    rec = _as_recording(recording)
    n = len(rec.frames)
    if n < 7:
        return {}
    mid = (n - 1) // 2
    halves = [(0, mid), (mid, n - 1)]
    out = []
    for k, (a, b) in enumerate(halves):
        fa, fb = halves[1 - k]
        part = frame_span(rec, fa, fb)
        if len(part.events) < 100:
            return {}
        params, _ = calibrate(part, seed=seed, base=base, passes=passes, holdout=False)
        blk = _Block(rec, a, b, seed, [0])
        m = blk.metrics(blk.events(params))
        out.append({"fit_frames": [fa, fb], "checked_frames": [a, b], **_mean_metrics([m])})
        if progress:
            progress(f"holdout: fit on frames {fa}-{fb}, checked on {a}-{b}: " +
                     ", ".join(f"{k} {v:.3f}" for k, v in _mean_metrics([m]).items()))
    return {**_mean_metrics(out), "halves": out}


def write_params_toml(params: DvsParams, path: str | pathlib.Path, header: str = "") -> pathlib.Path:
    """Write ``params`` as TOML (usable as ``--config`` of ``neurosim events simulate``), atomically."""
    import tomli_w

    from neurosim.io import atomic_output

    text = "".join(f"# {line}\n" for line in header.splitlines()) + tomli_w.dumps(params.to_dict())
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return pathlib.Path(path)


EVENT_FRAME_MIN_WINDOWS = 3  # excess active windows that make a pixel a background source
EVENT_FRAME_SEARCH = ("linlog_dn", [20.0, 10.0, 5.0, 2.0])  # low-light response, chosen on held-out windows


def fit_event_frame_background(real_events: np.ndarray, sim_events: np.ndarray, width: int, height: int,
                               t0: int, t1: int, rate_hz: float) -> dict[str, list]:
    """Per-pixel ON and OFF background that a simulation lacks, from real event frames over [t0, t1).

    With n windows of w = 1/rate_hz s, pixel p was ON-active in a_real(p) real and a_sim(p)
    simulated windows. Where the excess e = a_real − a_sim ≥ EVENT_FRAME_MIN_WINDOWS, p gets
    Poisson ON events at λ = −ln(1 − e/n)/w (a window is active with probability 1 − e^{−λw});
    OFF likewise. This is dark-scene noise, leak and flickering lights, which APS frames that
    are almost black do not show. Returns ``hot_pixels``, ``hot_pixel_rates_hz``,
    ``off_hot_pixels``, ``off_hot_pixel_rates_hz`` (DvsParams fields).
    """
    from sim_events.metrics import window_activity

    w = 1e6 / rate_hz
    n = max(int(np.ceil((t1 - t0) / w)), 1)
    _, r_on, r_pix = window_activity(real_events, width, height, t0, t1, w)
    _, s_on, s_pix = window_activity(sim_events, width, height, t0, t1, w)
    out: dict[str, list] = {}
    for name, pol in (("hot_pixels", True), ("off_hot_pixels", False)):
        excess = (np.bincount(r_pix[r_on == pol], minlength=width * height)
                  - np.bincount(s_pix[s_on == pol], minlength=width * height))
        pix = np.flatnonzero(excess >= EVENT_FRAME_MIN_WINDOWS)
        rates = -np.log1p(-np.minimum(excess[pix] / n, 0.99)) / (w * 1e-6)
        out[name] = [int(i) for i in pix]
        out[name.replace("pixels", "pixel_rates_hz")] = [float(r) for r in np.minimum(rates, 1e4)]
    return out


def calibrate_event_frames(recording: Any, seed: int = 0, base: DvsParams | None = None, fit_fraction: float = 0.5,
                           progress: Callable[[str], None] | None = None) -> tuple[DvsParams, dict]:
    """Fit a recording whose real side is event frames (an FE240hz folder): low-light response
    and per-pixel ON/OFF background.

    The windows are cut at ``fit_fraction``: the first part is for fitting, the rest is held
    out. Inside the fit part, its first half gives the background
    (:func:`fit_event_frame_background`) and its second half scores each ``linlog_dn`` of
    :data:`EVENT_FRAME_SEARCH` (r_on + r_off of pixel activity); a value other than the
    base's must win by MIN_GAIN. The background is then refitted on the whole fit part.
    Returns (params, metrics) with ``fit`` and ``held_out`` activity metrics
    (:func:`sim_events.metrics.compare_event_frames`) of the calibrated simulation and
    ``base_held_out``, those of ``base`` (default the ``davis346`` preset).
    """
    from sim_events.formats import Recording, read_recording
    from sim_events.metrics import compare_event_frames
    from sim_events.simulator import simulate_frames

    rec = recording if isinstance(recording, Recording) else read_recording(recording)
    if rec.attrs.get("format") != "fe240hz" or rec.frames is None or len(rec.frames) < 5:
        raise InputError(f"{rec.source or recording} is not an event-frame recording with APS frames (an FE240hz folder)")
    if not 0 < fit_fraction < 1:
        raise ParameterError(f"fit_fraction {fit_fraction} must lie in (0, 1)")
    say = progress or (lambda msg: None)
    base = base or preset("davis346")
    rate = float(rec.attrs["event_rate_hz"])
    w = 1e6 / rate
    t0, t_end = int(rec.frame_t[0]), int(rec.frame_t[-1])
    n = int((t_end - t0) / w)
    t_fit = t0 + int(round(int(n * fit_fraction) * w))
    t_bg = t0 + int(round(int(n * fit_fraction / 2) * w))
    k_fit = int(np.searchsorted(rec.frame_t, t_fit)) + 1  # frames that cover the fit part

    def run(params: DvsParams, k: int) -> np.ndarray:
        frames = zip((int(t) for t in rec.frame_t[:k]), rec.frames[:k])
        return np.concatenate(list(simulate_frames(frames, rec.width, rec.height, params, seed)))

    def background_only(bg: dict) -> np.ndarray:
        # the background's events do not interact with the pixel model (nor its random
        # streams): simulating them alone over still frames and adding them is exact
        still = preset("clean").replace(leak_rate_hz=0.0, latency_us=base.latency_us, **bg)
        frames = ((int(t), rec.frames[0] * 0) for t in rec.frame_t[:k_fit])
        return np.concatenate(list(simulate_frames(frames, rec.width, rec.height, still, seed)))

    def inner(params: DvsParams) -> tuple[float, np.ndarray]:
        ev = run(params, k_fit)
        bg = fit_event_frame_background(rec.events, ev, rec.width, rec.height, t0, t_bg, rate)
        both = np.concatenate([ev, background_only(bg)])
        m = compare_event_frames(both, rec.events, rec.width, rec.height, t_bg, t_fit, rate)
        return float(np.nan_to_num(m["pixel_activity_r_on"]) + np.nan_to_num(m["pixel_activity_r_off"])), ev

    name, values = EVENT_FRAME_SEARCH
    best_val = getattr(base, name)
    best, best_ev = inner(base)
    for value in values:
        if value == getattr(base, name):
            continue
        s, ev = inner(base.replace(**{name: value}))
        say(f"{name} {value}: held-out (fit part) r_on + r_off {s:.3f}")
        if s > best + MIN_GAIN:
            best, best_val, best_ev = s, value, ev
    tuned = base.replace(**{name: best_val})
    if best_val != getattr(base, name):
        best_ev = run(tuned, k_fit)
    bg = fit_event_frame_background(rec.events, best_ev, rec.width, rec.height, t0, t_fit, rate)
    params = tuned.replace(**bg)  # replaces base's listed hot pixels
    say(f"{name} {best_val}; {len(bg['hot_pixels'])} ON and {len(bg['off_hot_pixels'])} OFF background pixels "
        f"(fit on the first {(t_fit - t0) / 1e6:.2f} s)")
    ev = run(params, len(rec.frames))
    base_ev = run(base, len(rec.frames))
    metrics = {
        "fit": compare_event_frames(ev, rec.events, rec.width, rec.height, t0, t_fit, rate),
        "held_out": compare_event_frames(ev, rec.events, rec.width, rec.height, t_fit, t_end, rate),
        "base_held_out": compare_event_frames(base_ev, rec.events, rec.width, rec.height, t_fit, t_end, rate),
        name: best_val, "inner_score": best,
        "background_pixels_on": len(bg["hot_pixels"]), "background_pixels_off": len(bg["off_hot_pixels"]),
        "fit_windows_end_us": t_fit, "source": str(rec.source),
        "notes": "choices and background use the fit windows only; held_out saw none of them",
    }
    return params, metrics
