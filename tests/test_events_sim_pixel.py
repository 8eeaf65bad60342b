"""The DVS pixel model against closed-form cases (crossing times, noise rates, refractory, ...)."""

import numpy as np
import pytest

from sim_events.params import DvsParams, preset
from sim_events.pixel import draw_constants, linlog_lut
from sim_events.simulator import simulate_frames

CLEAN = preset("clean").replace(interpolation=False, initial_offset=0.0)


def run(frames, times, params, seed=0):
    h, w = frames[0].shape
    chunks = list(simulate_frames(zip(times, frames), w, h, params, seed))
    return np.concatenate(chunks) if chunks else np.empty(0)


def test_crossing_times_follow_piecewise_linear_log_intensity():
    # one uniform 4x4 image brightening frame by frame; L(t) is linear between frames, so the
    # k-th ON event falls where L crosses L0 + k*theta (computed here independently)
    dn = np.array([30, 41, 55, 80, 120, 121, 200], dtype=np.uint8)
    times = [1_000_000 + 40_000 * i for i in range(len(dn))]
    frames = [np.full((4, 4), v, np.uint8) for v in dn]
    theta = 0.25
    ev = run(frames, times, CLEAN.replace(contrast_threshold_on=theta, contrast_threshold_off=theta))
    L = np.log(dn.astype(np.float64))
    expected = []
    for k in range(1, 20):
        level = L[0] + k * theta
        i = np.searchsorted(L, level)  # first frame at or above the level
        if i >= len(L):
            break
        frac = (level - L[i - 1]) / (L[i] - L[i - 1])
        expected.append(times[i - 1] + frac * 40_000)
    px = ev[(ev["x"] == 1) & (ev["y"] == 2)]
    assert np.all(px["p"] == 1)
    assert len(px) == len(expected)
    np.testing.assert_allclose(px["t"], np.floor(expected), atol=1.0)
    assert len(ev) == 16 * len(expected)  # every pixel alike (no mismatch, no noise)


def test_off_events_and_lin_log_below_linlog_dn():
    # darkening below DN 20: the response there is linear, log(20) + (DN - 20)/20
    dn = np.array([60, 20, 10, 0], dtype=np.uint8)
    frames = [np.full((2, 2), v, np.uint8) for v in dn]
    times = [40_000 * i for i in range(len(dn))]
    lut = linlog_lut(20.0)
    assert lut[10] == pytest.approx(np.log(20) - 0.5, abs=1e-6)
    assert lut[40] == pytest.approx(np.log(40), abs=1e-6)
    ev = run(frames, times, CLEAN.replace(contrast_threshold_on=0.2, contrast_threshold_off=0.2))
    total_drop = np.log(60) - (np.log(20) - 1.0)
    assert np.all(ev["p"] == 0)
    assert len(ev) == 4 * int(np.floor(total_drop / 0.2 + 1e-9))


def moving_edge(width=64, height=8, speed_px=6.0, n=12, dt=40_000, x0=10.0):
    """A bright half-plane whose left edge moves right at speed_px per frame (area-sampled)."""
    xs = np.arange(width)[None, :]
    frames, times = [], []
    for i in range(n):
        e = x0 + speed_px * i
        cover = np.clip(xs + 1 - e, 0, 1)  # fraction of pixel [x, x+1) right of the edge
        img = 40 + 160 * cover
        frames.append(np.repeat(np.rint(img), height, axis=0).astype(np.uint8))
        times.append(1_000_000 + dt * i)
    return frames, times


def textured_scene(step: int, n_frames: int, speed_px_per_40ms=4.0, size=(96, 128)):
    """A textured bright disc moving right over a textured dark background, rendered every
    ``step`` µs (area-correct sub-pixel shifts via bilinear warps of smooth textures)."""
    import cv2

    rng = np.random.default_rng(5)
    h, w = size
    bg = cv2.GaussianBlur(rng.uniform(20, 70, (h, w + 200)).astype(np.float32), (0, 0), 1.5)
    fg = cv2.GaussianBlur(rng.uniform(120, 240, (h, w + 200)).astype(np.float32), (0, 0), 1.5)
    yy, xx = np.mgrid[0:h, 0:w + 200].astype(np.float32)
    frames, times = [], []
    for i in range(n_frames):
        t = i * step
        dx = speed_px_per_40ms * t / 40_000
        m = np.float32([[1, 0, dx], [0, 1, 0]])
        fg_t = cv2.warpAffine(fg, m, (w + 200, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        disc = np.clip(22 - np.hypot(xx - (30 + dx), yy - h / 2), 0, 1)
        img = (bg * (1 - disc) + fg_t * disc)[:, :w]
        frames.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
        times.append(1_000_000 + t)
    return frames, times


def test_flow_interpolation_matches_a_ten_times_faster_camera():
    # reference: the same scene sampled every 4 ms (no interpolation needed); the 25 Hz run with
    # optical-flow interpolation must place events where the fast run does (F1 at 5 ms), much
    # better than linear interpolation in time
    from sim_events.metrics import compare

    p = CLEAN.replace(contrast_threshold_on=0.3, contrast_threshold_off=0.3, preroll=False)
    fine = run(*textured_scene(4_000, 101), p)
    coarse_frames, coarse_t = textured_scene(40_000, 11)
    f1, phase = {}, {}
    for interp in (True, False):
        ev = run(coarse_frames, coarse_t, p.replace(interpolation=interp))
        m = compare(ev, fine, 128, 96, 1_000_000, 1_400_000, 40_000)
        f1[interp], phase[interp] = m["f1_5ms"], m["phase_cv"]
        assert 0.9 < m["count_ratio"] < 1.1
    assert f1[True] > 0.85 and f1[True] > f1[False] + 0.3  # measured 0.98 vs 0.45
    assert phase[True] < 0.15 < phase[False]  # no frame-locked bunching (measured 0.07 vs 0.44)


def test_events_are_sorted_and_inside_the_frames_span():
    frames, times = moving_edge(n=6)
    ev = run(frames, times, preset("davis346").replace(latency_us=0.0, jitter_us=300.0, shot_noise_rate_hz=5.0))
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["t"].min() >= times[0] and ev["t"].max() < times[-1]


def test_refractory_period_is_respected():
    frames = [np.full((3, 3), v, np.uint8) for v in (20, 250, 20, 250)]
    times = [0, 10_000, 20_000, 30_000]
    p = CLEAN.replace(contrast_threshold_on=0.1, contrast_threshold_off=0.1)
    free = run(frames, times, p)
    held = run(frames, times, p.replace(refractory_us=2_000.0))
    assert len(held) < len(free)
    one = held[(held["x"] == 0) & (held["y"] == 0)]
    assert np.min(np.diff(one["t"])) >= 2_000


def test_threshold_mismatch_is_drawn_once_and_clamped():
    p = DvsParams(contrast_threshold_on=0.3, contrast_threshold_off=0.2, threshold_sigma=0.03)
    c = draw_constants(p, 200, 100, np.random.default_rng(1))
    assert c.th_on.mean() == pytest.approx(0.3, abs=0.002)
    assert c.th_on.std() == pytest.approx(0.03, rel=0.05)
    assert c.th_off.mean() == pytest.approx(0.2, abs=0.002)
    wide = draw_constants(p.replace(threshold_sigma=0.5, threshold_floor=0.05), 50, 50, np.random.default_rng(1))
    assert wide.th_on.min() == pytest.approx(0.05) and wide.th_off.min() == pytest.approx(0.05)


def static_run(params, dn=64, n=101, size=32, dt=100_000, seed=3):
    frames = [np.full((size, size), dn, np.uint8)] * n
    times = [dt * i for i in range(n)]
    return run(frames, times, params, seed), (n - 1) * dt * 1e-6, size * size


def test_shot_noise_rate_is_poisson_and_doubles_in_the_dark():
    p = CLEAN.replace(shot_noise_rate_hz=0.5)
    ev, seconds, npix = static_run(p, dn=64)
    expected = 0.5 * seconds * npix  # rate x 2 / (1 + 64/64) = rate at DN 64
    assert abs(len(ev) - expected) < 4 * np.sqrt(expected)
    assert abs((ev["p"] == 1).mean() - 0.5) < 0.03
    dark, _, _ = static_run(p, dn=0)
    assert abs(len(dark) - 2 * expected) < 4 * np.sqrt(2 * expected)


def test_leak_events_come_at_the_leak_rate():
    p = CLEAN.replace(leak_rate_hz=0.5, leak_sigma=0.0, initial_offset=0.0)
    ev, seconds, npix = static_run(p, n=51)  # 5 s: each pixel's reference drifts 2.5 theta
    assert np.all(ev["p"] == 1)
    per_pixel = np.bincount(ev["y"].astype(int) * 32 + ev["x"], minlength=npix)
    assert np.all(per_pixel == 2)
    one = ev[(ev["x"] == 5) & (ev["y"] == 5)]["t"]
    np.testing.assert_allclose(one, [2_000_000, 4_000_000], atol=200)


def test_hot_pixels_fire_at_their_rate():
    p = CLEAN.replace(hot_pixels=[5 * 32 + 7], hot_pixel_rate_hz=20.0)
    ev, seconds, _ = static_run(p)
    assert set(zip(ev["x"].tolist(), ev["y"].tolist())) == {(7, 5)}
    assert abs(len(ev) - 20 * seconds) < 4 * np.sqrt(20 * seconds)


def test_jitter_spreads_timestamps_by_sigma():
    frames, times = moving_edge(n=8)
    p = CLEAN.replace(contrast_threshold_on=0.3, contrast_threshold_off=0.3)
    a = run(frames, times, p)
    b = run(frames, times, p.replace(jitter_us=500.0))
    assert len(a) == len(b)
    key = lambda e: np.lexsort((e["t"], e["p"], e["x"], e["y"]))  # noqa: E731
    d = b["t"][key(b)].astype(float) - a["t"][key(a)]
    assert 350 < np.std(d) < 650 and np.all(np.diff(b["t"]) >= 0)


def test_photoreceptor_low_pass_delays_events_more_in_the_dark():
    # a step from DN a to 2a over one pair, then constant: with a cutoff the events come later,
    # and later for a dark pixel than for a bright one (f_c grows with intensity)
    def first_event_delay(lo, cutoff):
        frames = [np.full((2, 2), v, np.uint8) for v in [lo, 2 * lo] + [2 * lo] * 6]
        times = [10_000 * i for i in range(len(frames))]
        ev = run(frames, times, CLEAN.replace(contrast_threshold_on=0.6, contrast_threshold_off=0.6, cutoff_hz=cutoff))
        return ev["t"].max()

    assert first_event_delay(100, 0.0) < 10_000
    bright = first_event_delay(120, 50.0)
    dark = first_event_delay(25, 50.0)
    assert 10_000 < bright < dark
