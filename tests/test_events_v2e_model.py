"""v2e's DVS model re-implemented (sim_events.v2e_model): hand-worked cases and a loop transcription of v2e."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim_events.v2e_model import PRESETS, V2EParams, count_matched, lin_log, v2e_events

SHARP = V2EParams(sigma_thres=0.0)  # θ = 0.2 exactly, no noise, no filter


def _const(values, shape=None) -> np.ndarray:
    return np.asarray(values, np.uint8).reshape(shape or (1, len(values)))


def test_lin_log_is_linear_below_20_dn_and_ln_above():
    assert lin_log(np.array([0.0]))[0] == 0.0
    assert lin_log(np.array([10.0]))[0] == pytest.approx(10 * math.log(20) / 20, abs=1e-8)
    assert lin_log(np.array([20.0]))[0] == pytest.approx(math.log(20), abs=1e-8)
    assert lin_log(np.array([100.0]))[0] == pytest.approx(math.log(100), abs=1e-8)


def test_step_gives_floor_dlog_over_theta_events_spread_linearly():
    # pixel 0: 30 -> 120 DN, ln 4 = 1.386 -> 6 ON; pixel 1: 30 -> 45, ln 1.5 = 0.405 -> 2 ON;
    # pixel 2: 120 -> 30 -> 6 OFF. M = 6: time stamps t0 + i * 10 ms / 6, i = 1..6.
    frames = [(1000, _const([30, 30, 120])), (11000, _const([120, 45, 30]))]
    ev = v2e_events(frames, SHARP)
    spread = [1000 + round(i * 10000 / 6) for i in range(1, 7)]
    p0, p1, p2 = (ev[ev["x"] == x] for x in range(3))
    assert p0["t"].tolist() == spread and p0["p"].all()
    assert p1["t"].tolist() == spread[:2] and p1["p"].all()
    assert p2["t"].tolist() == spread and not p2["p"].any()
    assert (np.diff(ev["t"]) >= 0).all()


def test_remainder_stays_and_no_events_without_change():
    # 30 -> 120 leaves 1.386 - 6 * 0.2 = 0.186 below θ; holding 120 makes nothing, 120 -> 130 adds
    # ln(130/120) = 0.080: 0.266 -> one more ON event at the frame time (M = 1).
    frames = [(0, _const([30])), (10000, _const([120])), (20000, _const([120])), (30000, _const([130]))]
    ev = v2e_events(frames, SHARP)
    assert len(ev) == 7 and ev["t"][-1] == 30000 and ev["p"].all()


def test_refractory_period_suppresses_and_leaves_the_reference():
    # 6 candidates 1.667 ms apart; with 2.5 ms refractory (last starts at -2.5 ms) events pass at
    # i = 1, 3, 5 (t > last + 2.5 ms). The reference moves by 3θ only, so holding the frame gives
    # floor((1.386 - 0.6)/0.2) = 3 more events, 3.33 ms apart (> 2.5 ms: all pass).
    p = dataclasses.replace(SHARP, refractory_period_s=0.0025)
    frames = [(0, _const([30])), (10000, _const([120])), (20000, _const([120]))]
    ev = v2e_events(frames, p)
    assert ev["t"].tolist() == [1667, 5000, 8333, 13333, 16667, 20000]


def test_lowpass_step_response_matches_one_minus_exp():
    # 80 -> 235 DN at t = 0, then held; 0.1 ms frames, cutoff 10 Hz: τ = 1/(2π·10) s scaled by the
    # intensity factor I = (235 + 20)/275 (v2e's shorter time constant for brighter pixels).
    theta, dt_us, n = 0.01, 100, 400
    p = dataclasses.replace(SHARP, pos_thres=theta, neg_thres=theta, cutoff_hz=10.0)
    frames = [(0, _const([80], (1, 1)))] + [(k * dt_us, _const([235], (1, 1))) for k in range(1, n + 1)]
    ev = v2e_events(frames, p)
    tau_eff = 1 / (2 * math.pi * 10.0) / ((235 + 20) / 275)
    dlog = math.log(235 / 80)
    t_s = np.arange(1, n + 1) * dt_us * 1e-6
    expected = np.floor(dlog * (1 - np.exp(-t_s / tau_eff)) / theta)
    counted = np.searchsorted(ev["t"], np.arange(1, n + 1) * dt_us, side="right")
    assert ev["p"].all() and counted[-1] > 0.9 * dlog / theta
    assert np.abs(counted - expected).max() <= 1



def test_two_stage_lowpass_step_response_matches_the_cascade():
    # stages=2: two equal RC stages, the second fed by the first's previous value (one frame late):
    # 1 - (1 + t'/τ)·exp(-t'/τ) with t' = t - Δt.
    theta, dt_us, n = 0.01, 100, 600
    p = dataclasses.replace(SHARP, pos_thres=theta, neg_thres=theta, cutoff_hz=10.0, stages=2)
    frames = [(0, _const([80], (1, 1)))] + [(k * dt_us, _const([235], (1, 1))) for k in range(1, n + 1)]
    ev = v2e_events(frames, p)
    tau_eff = 1 / (2 * math.pi * 10.0) / ((235 + 20) / 275)
    t_s = np.arange(0, n) * dt_us * 1e-6
    expected = np.floor(math.log(235 / 80) * (1 - (1 + t_s / tau_eff) * np.exp(-t_s / tau_eff)) / theta)
    counted = np.searchsorted(ev["t"], np.arange(1, n + 1) * dt_us, side="right")
    assert np.abs(counted - expected).max() <= 1 and counted[-1] > 80

def test_leak_makes_one_on_event_after_theta_over_rate():
    # leak 1 Hz, θ 0.2: the reference falls by Δt·1 Hz·θ per frame, one ON event per pixel after 1 s.
    p = dataclasses.replace(SHARP, leak_rate_hz=1.0)
    frames = [(k * 10000, np.full((4, 5), 100, np.uint8)) for k in range(106)]
    ev = v2e_events(frames, p)
    assert len(ev) == 20 and ev["p"].all()
    assert ev["t"].min() >= 990000 and ev["t"].max() <= 1010000


def test_shot_noise_rate_falls_with_intensity():
    # per pixel and frame P(event) = rate·Δt·(1 - 0.75·I): I = 20/275 at 0 DN, 1 at 255 DN.
    p = dataclasses.replace(SHARP, shot_noise_rate_hz=5.0)
    for dn, inten in ((0, 20 / 275), (255, 1.0)):
        frames = [(k * 10000, np.full((100, 100), dn, np.uint8)) for k in range(51)]
        ev = v2e_events(frames, p, seed=3)
        mean = 100 * 100 * 50 * 5.0 * 0.01 * (1 - 0.75 * inten)
        assert abs(len(ev) - mean) < 4 * math.sqrt(mean)
        assert abs(ev["p"].mean() - 0.5) < 0.03


def _loop_reference(frames, p: V2EParams, th_on, th_off):
    """v2e's generate_events transcribed with its loop over the M iterations (no noise/leak)."""
    lum = lin_log(frames[0][1].astype(np.float64))
    ref, last, t_prev, t0 = lum.copy(), np.full(lum.shape, -p.refractory_period_s), 0.0, frames[0][0]
    out = []
    for t_us, frame in frames[1:]:
        t = (t_us - t0) * 1e-6
        diff = lin_log(frame.astype(np.float64)) - ref
        n_on = np.floor(np.maximum(diff, 0) / th_on)
        n_off = np.floor(np.maximum(-diff, 0) / th_off)
        m = max(int(max(n_on.max(), n_off.max())), 1)
        ts = t_prev + (np.arange(m) + 1) * (t - t_prev) / m
        fin_on, fin_off = np.zeros(lum.shape), np.zeros(lum.shape)
        for i in range(int(max(n_on.max(), n_off.max()))):
            on, off = n_on >= i + 1, n_off >= i + 1
            if p.refractory_period_s > (t - t_prev) / m:
                on = on * ts[i] - last > p.refractory_period_s
                off = off * ts[i] - last > p.refractory_period_s
                last = np.where(on | off, ts[i], last)
            fin_on += on
            fin_off += off
            for y, x in zip(*np.nonzero(on)):
                out.append((int(x), int(y), t0 + round(ts[i] * 1e6), True))
            for y, x in zip(*np.nonzero(off)):
                out.append((int(x), int(y), t0 + round(ts[i] * 1e6), False))
        ref = ref + fin_on * th_on - fin_off * th_off
        t_prev = t
    return sorted(out, key=lambda e: (e[2], not e[3], e[1], e[0]))


@pytest.mark.parametrize("refractory_s", [0.0, 0.003, 0.012])
def test_vectorised_events_equal_the_loop_transcription(refractory_s):
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (6, 8))
    frames = [(5000 + 10000 * k, np.clip(base + rng.integers(-90, 90, (6, 8)) * (k % 3), 0, 255).astype(np.uint8))
              for k in range(8)]
    p = V2EParams(sigma_thres=0.03, refractory_period_s=refractory_s)
    th = np.random.default_rng(11)  # the thresholds the model draws for seed 11: ON then OFF
    th_on = np.maximum(th.normal(0.2, 0.03, 48), 0.01).reshape(6, 8)
    th_off = np.maximum(th.normal(0.2, 0.03, 48), 0.01).reshape(6, 8)
    ev = v2e_events(frames, p, seed=11)
    got = sorted(zip(ev["x"].tolist(), ev["y"].tolist(), ev["t"].tolist(), ev["p"].tolist()),
                 key=lambda e: (e[2], not e[3], e[1], e[0]))
    assert len(got) > 50
    assert got == _loop_reference(frames, p, th_on, th_off)


def test_same_seed_same_bytes_and_seed_matters():
    rng = np.random.default_rng(0)
    frames = [(20000 * k, rng.integers(0, 256, (12, 16)).astype(np.uint8)) for k in range(6)]
    a = v2e_events(frames, PRESETS["noisy"], seed=5)
    b = v2e_events(frames, PRESETS["noisy"], seed=5)
    c = v2e_events(frames, PRESETS["noisy"], seed=6)
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


def test_count_matching_hits_the_counts():
    rng = np.random.default_rng(1)
    frames = [(40000 * k, rng.integers(10, 250, (20, 20)).astype(np.uint8)) for k in range(6)]
    clean = v2e_events(frames, PRESETS["clean"])
    n_on, n_off = int(clean["p"].sum()) // 2, int((~clean["p"]).sum()) // 2
    tuned = count_matched(frames, n_on, n_off)
    assert tuned.pos_thres > 0.2 and tuned.neg_thres > 0.2
    ev = v2e_events(frames, tuned)
    assert abs(ev["p"].sum() / n_on - 1) < 0.02 and abs((~ev["p"]).sum() / n_off - 1) < 0.02
