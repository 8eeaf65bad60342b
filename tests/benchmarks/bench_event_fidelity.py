"""Side-by-side fidelity of event simulators on every real recording here; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_event_fidelity.py [--seed 0]

Simulators, all from the same APS frames and scored by the same metrics
(:mod:`sim_events.metrics`):

- ``neurosim_preset``: the ``davis346`` preset, uncalibrated;
- ``neurosim_calibrated``: ``sim_events.calibrate.calibrate`` (held-out time blocks inside the
  fit part) on the fit part only;
- ``esim``: ESIM's published model re-implemented (:mod:`sim_events.esim`: linear
  interpolation in log intensity, exact crossing times, per-pixel thresholds σ 0.03,
  100 µs refractory) with C_on, C_off matched to the fit part's ON/OFF counts;
- ``v2e_model_*``: "v2e model (re-implemented)": v2e's DVS pixel model re-implemented
  (:mod:`sim_events.v2e_model`; v2e itself is not installable here, see bench_v2e.py) —
  ``clean`` and ``noisy`` as v2e's presets (nothing fitted) and ``tuned``: clean with θ_on, θ_off
  matched to the fit part's ON/OFF counts (bisection in log θ,
  :func:`sim_events.v2e_model.count_matched`; bench_v2e.py's multiplicative rule oscillates);
- ``v2e``: the real v2e's figures on the traffic recording, quoted from docs/results/events.md
  (labelled ``quoted``), not re-run.

Recordings (``../shared/data``):

1. ``traffic``: DAVIS346 traffic, fit on frames 0–14, scored on frames 15–29 simulated from a
   fresh start (and the reverse: fit 15–29, score 0–14 — frame 0 is the camera's start-up).
2. ``street``: DAVIS346 street AEDAT4 (4 APS frames): scored over its 3 frame intervals with
   the parameters fitted on all 30 traffic frames (another scene: nothing was fitted on it),
   and in-sample (calibrated on the street file itself, labelled).
3. ``fe240hz``: the dove recording's 560 APS frames vs its 240 Hz event frames, activity
   metrics on the second half of the windows; ``neurosim_calibrated`` is
   ``calibrate_event_frames`` fitted on the first half; ESIM at C = 0.2 (esim_py's usual value;
   counts do not exist on the real side); the v2e model's presets only (no counts to tune on).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
KEYS = ("count_ratio", "pixel_r_on", "pixel_r_off", "rate_r", "phase_cv", "f1_5ms")
V2E_QUOTED = {"count_ratio": 0.73, "pixel_r_on": 0.72, "pixel_r_off": 0.77, "rate_r": None, "phase_cv": 1.6,
              "f1_5ms": 0.19, "source": "quoted from docs/results/events.md (v2e tuned, traffic frames 15-29)"}


def _round(m: dict, keys=KEYS) -> dict:
    return {k: (round(float(m[k]), 3) if m.get(k) is not None and np.isfinite(m[k]) else None) for k in keys}


def _frames(rec, a: int, b: int) -> list[tuple[int, np.ndarray]]:
    return [(int(rec.frame_t[i]), rec.frames[i]) for i in range(a, b + 1)]


def _neurosim(rec, a: int, b: int, params, seed: int) -> np.ndarray:
    from sim_events.simulator import simulate_frames

    return np.concatenate(list(simulate_frames(iter(_frames(rec, a, b)), rec.width, rec.height, params, seed)))


def _score(ev, rec, a: int, b: int) -> dict:
    from sim_events.metrics import compare

    ft = rec.frame_t
    return _round(compare(ev, rec.events, rec.width, rec.height, int(ft[a]), int(ft[b]), int(np.median(np.diff(ft))),
                          phase_origin_us=int(ft[0])))


def _esim_fitted(rec, a: int, b: int, seed: int) -> tuple[float, float]:
    from sim_events.esim import count_matched

    ft = rec.frame_t
    ev = rec.events[(rec.events["t"] >= ft[a]) & (rec.events["t"] < ft[b])]
    return count_matched(_frames(rec, a, b), int(ev["p"].sum()), int((~ev["p"]).sum()), seed=seed)


def _v2e_tuned(rec, a: int, b: int, seed: int):
    from sim_events.v2e_model import PRESETS, count_matched

    ft = rec.frame_t
    ev = rec.events[(rec.events["t"] >= ft[a]) & (rec.events["t"] < ft[b])]
    return count_matched(_frames(rec, a, b), int(ev["p"].sum()), int((~ev["p"]).sum()), PRESETS["clean"], seed)


def _v2e_rows(rec, a: int, b: int, seed: int, tuned=None, tuned_name: str = "v2e_model_tuned") -> dict:
    """v2e model (re-implemented): presets and, given, count-matched thresholds, scored on frames a..b."""
    from sim_events.v2e_model import PRESETS, v2e_events

    rows = {f"v2e_model_{k}": _score(v2e_events(_frames(rec, a, b), PRESETS[k], seed), rec, a, b) for k in PRESETS}
    if tuned is not None:
        rows[tuned_name] = _v2e_scored(rec, a, b, seed, tuned)
    return rows


def _v2e_scored(rec, a: int, b: int, seed: int, params) -> dict:
    from sim_events.v2e_model import v2e_events

    return {**_score(v2e_events(_frames(rec, a, b), params, seed), rec, a, b),
            "pos_neg_thres": [round(params.pos_thres, 3), round(params.neg_thres, 3)]}


def traffic(seed: int) -> dict:
    from sim_events.calibrate import calibrate, frame_span
    from sim_events.esim import esim_events
    from sim_events.formats import read_recording
    from sim_events.params import preset

    rec = read_recording(DATA / "events" / "davis346_traffic_first_half.npz")
    out = {}
    for (fa, fb), (ha, hb) in (((0, 14), (15, 29)), ((15, 29), (0, 14))):
        params, fit = calibrate(frame_span(rec, fa, fb), seed=seed)
        c = _esim_fitted(rec, fa, fb, seed)
        out[f"fit_{fa}_{fb}_score_{ha}_{hb}"] = {
            "neurosim_preset": _score(_neurosim(rec, ha, hb, preset("davis346"), seed), rec, ha, hb),
            "neurosim_calibrated": _score(_neurosim(rec, ha, hb, params, seed), rec, ha, hb),
            "neurosim_calibrated_cv_blocks": _round(fit["cv"]),
            "esim": {**_score(esim_events(_frames(rec, ha, hb), *c, seed=seed), rec, ha, hb), "c_on_off": [round(x, 3) for x in c]},
            **_v2e_rows(rec, ha, hb, seed, _v2e_tuned(rec, fa, fb, seed)),
        }
    out["fit_0_14_score_15_29"]["v2e"] = V2E_QUOTED
    return out


def street(seed: int) -> dict:
    from sim_events.calibrate import calibrate
    from sim_events.esim import esim_events
    from sim_events.formats import read_recording
    from sim_events.params import preset

    rec = read_recording(DATA / "events" / "davis346_street_sample.aedat4")
    traffic_rec = read_recording(DATA / "events" / "davis346_traffic_first_half.npz")
    n = len(rec.frames) - 1
    on_traffic, _ = calibrate(traffic_rec, seed=seed)
    self_fit, _ = calibrate(rec, seed=seed)
    c_traffic = _esim_fitted(traffic_rec, 0, len(traffic_rec.frames) - 1, seed)
    c_self = _esim_fitted(rec, 0, n, seed)
    return {
        "frames": len(rec.frames), "real_events_in_span": int(((rec.events["t"] >= rec.frame_t[0]) & (rec.events["t"] < rec.frame_t[-1])).sum()),
        "neurosim_preset": _score(_neurosim(rec, 0, n, preset("davis346"), seed), rec, 0, n),
        "neurosim_calibrated_on_traffic": _score(_neurosim(rec, 0, n, on_traffic, seed), rec, 0, n),
        "esim_thresholds_from_traffic": _score(esim_events(_frames(rec, 0, n), *c_traffic, seed=seed), rec, 0, n),
        "in_sample_neurosim_calibrated_on_street": _score(_neurosim(rec, 0, n, self_fit, seed), rec, 0, n),
        "in_sample_esim_count_matched_on_street": _score(esim_events(_frames(rec, 0, n), *c_self, seed=seed), rec, 0, n),
        **_v2e_rows(rec, 0, n, seed, _v2e_tuned(traffic_rec, 0, len(traffic_rec.frames) - 1, seed),
                    "v2e_model_thresholds_from_traffic"),
        "in_sample_v2e_model_count_matched_on_street": _v2e_scored(rec, 0, n, seed, _v2e_tuned(rec, 0, n, seed)),
    }


def fe240hz(seed: int) -> dict:
    from sim_events.calibrate import calibrate_event_frames
    from sim_events.esim import esim_events
    from sim_events.formats import read_recording
    from sim_events.metrics import compare_event_frames
    from sim_events.v2e_model import PRESETS, v2e_events

    rec = read_recording(DATA / "tracking_real" / "fe240hz" / "dove_mul111_0")
    _, m = calibrate_event_frames(rec, seed=seed)
    keys = ("activity_ratio", "pixel_activity_r_on", "pixel_activity_r_off", "window_activity_r")
    t_fit, t_end = m["fit_windows_end_us"], int(rec.frame_t[-1])
    esim = esim_events(_frames(rec, 0, len(rec.frames) - 1), 0.2, 0.2, seed=seed)
    v2e = {f"v2e_model_{k}": _round(compare_event_frames(v2e_events(_frames(rec, 0, len(rec.frames) - 1), p, seed),
                                                         rec.events, rec.width, rec.height, t_fit, t_end,
                                                         rec.attrs["event_rate_hz"]), keys) for k, p in PRESETS.items()}
    return {
        "scored_windows_us": [t_fit, t_end],
        "neurosim_preset": _round(m["base_held_out"], keys),
        "neurosim_calibrated": _round(m["held_out"], keys),
        "neurosim_calibrated_fit_part": _round(m["fit"], keys),
        "esim_c_0.2": _round(compare_event_frames(esim, rec.events, rec.width, rec.height, t_fit, t_end,
                                                  rec.attrs["event_rate_hz"]), keys),
        **v2e,
    }


def main() -> None:
    import cv2

    cv2.setNumThreads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    start = time.perf_counter()
    out = {"seed": args.seed, "traffic": traffic(args.seed), "street": street(args.seed), "fe240hz": fe240hz(args.seed)}
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
