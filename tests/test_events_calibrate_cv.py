"""Issue 17: the held-out machinery of `events calibrate`, the event-frame background fit and the
ESIM baseline, against hand-worked values; and same seed -> same calibration bytes."""

import numpy as np
import pytest

from neurosim.errors import ParameterError
from sim_events.calibrate import (NOISE_PRIOR_EVENTS, _shrunk, auto_folds, fit_event_frame_background, fold_spans)
from sim_events.esim import LOG_EPS, esim_events
from sim_events.formats import make_events
from sim_events.params import DvsParams


def test_fold_spans_tile_the_recording_with_shared_boundary_frames():
    assert fold_spans(15, 2) == [(0, 7), (7, 14)]
    assert fold_spans(30, 3) == [(0, 10), (10, 19), (19, 29)]  # round(29/3) = 10, round(58/3) = 19
    assert fold_spans(4, 1) == [(0, 3)]
    with pytest.raises(ParameterError, match="at least 4 frames"):
        fold_spans(3, 3)


def test_auto_folds_needs_seven_intervals_per_block():
    assert [auto_folds(n) for n in (4, 14, 15, 21, 22, 30, 300)] == [1, 1, 2, 2, 3, 3, 3]


def test_noise_rates_shrink_towards_the_preset_by_evidence():
    assert _shrunk(1.0, 0.0, 0) == 0.0  # no background events: the preset's rate
    assert _shrunk(1.0, 0.0, NOISE_PRIOR_EVENTS) == pytest.approx(0.5)
    assert _shrunk(0.2, 0.1, 3 * NOISE_PRIOR_EVENTS) == pytest.approx(0.175)  # w = 3/4


def test_event_frame_background_closed_form():
    """10 windows of 1 ms on a 3x1 sensor. Pixel 0: real ON in 5 windows, simulated in 1 →
    excess 4 → λ = −ln(1 − 0.4)/1 ms. Pixel 1: ON excess 2 (< 3): none. Pixel 2: OFF in 6
    windows, none simulated → OFF λ = −ln(1 − 0.6)/1 ms."""
    real = make_events([0] * 5 + [1] * 2 + [2] * 6, [0] * 13, [100, 1100, 2100, 3100, 4100, 5100, 5200] + [
        500 + 1000 * k for k in range(6)], [1] * 7 + [0] * 6)
    sim = make_events([0], [0], [150], [1])
    bg = fit_event_frame_background(real, sim, 3, 1, 0, 10_000, 1000.0)
    assert bg["hot_pixels"] == [0] and bg["off_hot_pixels"] == [2]
    assert bg["hot_pixel_rates_hz"][0] == pytest.approx(-np.log(0.6) / 1e-3)
    assert bg["off_hot_pixel_rates_hz"][0] == pytest.approx(-np.log(0.4) / 1e-3)


def test_off_hot_pixels_fire_off_events_at_their_rate_and_the_stream_stays_sorted():
    """A still 40x30 scene, no other noise: OFF hot pixel 5 at 2 kHz and ON hot pixel 7 at
    1 kHz over 1 s give Poisson counts near 2000 and 1000 (±5σ); chunking by pairs keeps order."""
    from sim_events.params import preset
    from sim_events.simulator import simulate_frames

    p = preset("clean").replace(hot_pixels=[7], hot_pixel_rates_hz=[1000.0], off_hot_pixels=[5],
                                off_hot_pixel_rates_hz=[2000.0])
    frames = [(k * 100_000, np.full((30, 40), 80, np.uint8)) for k in range(11)]
    ev = np.concatenate(list(simulate_frames(iter(frames), 40, 30, p, seed=1)))
    off, on = ev[ev["p"] == 0], ev[ev["p"] == 1]
    assert set(off["x"] + 40 * off["y"]) == {5} and set(on["x"] + 40 * on["y"]) == {7}
    assert abs(len(off) - 2000) < 5 * np.sqrt(2000) and abs(len(on) - 1000) < 5 * np.sqrt(1000)
    assert (np.diff(ev["t"]) >= 0).all()
    again = np.concatenate(list(simulate_frames(iter(frames), 40, 30, p, seed=1)))
    assert again.tobytes() == ev.tobytes()


def test_hot_pixel_rates_need_one_rate_per_listed_pixel():
    with pytest.raises(ParameterError, match="one rate per listed pixel"):
        DvsParams(hot_pixels=[1, 2], hot_pixel_rates_hz=[3.0])
    assert DvsParams(hot_pixels=[1, 2], hot_pixel_rates_hz=[3.0, 0.5]).to_dict()["hot_pixel_rates_hz"] == [3.0, 0.5]


def test_esim_crossings_at_linearly_interpolated_times():
    """One pixel brightening DN 50 → 200 over 40 ms with C = 0.3, no spread: floor(ΔL/C) ON
    events at t_k = t_A + (k·C)/ΔL · 40 ms; a dark pixel 200 → 50 gives the OFF mirror image."""
    a, b = np.array([[50, 200]], np.uint8), np.array([[200, 50]], np.uint8)
    ev = esim_events([(0, a), (40_000, b)], 0.3, 0.3, sigma=0.0, refractory_us=0.0)
    dl = np.log(200 / 255 + LOG_EPS) - np.log(50 / 255 + LOG_EPS)
    n = int(np.floor(dl / 0.3))
    want = np.floor(np.arange(1, n + 1) * 0.3 / dl * 40_000).astype(np.int64)
    on, off = ev[ev["p"]], ev[~ev["p"]]
    assert (on["x"] == 0).all() and (off["x"] == 1).all()
    np.testing.assert_array_equal(on["t"], want)
    np.testing.assert_array_equal(off["t"], want)  # same |ΔL|, same levels
    # a 10 ms refractory period keeps events >= 10 ms apart (the first one always)
    kept = esim_events([(0, a), (40_000, b)], 0.3, 0.3, sigma=0.0, refractory_us=10_000.0)
    assert (np.diff(kept["t"][kept["p"]]) >= 10_000).all() and kept["t"][kept["p"]][0] == want[0]


def test_calibration_is_byte_identical_for_one_seed_and_reports_held_out_blocks(fixture_data, tmp_path):
    from sim_events.calibrate import calibrate, frame_span, write_params_toml
    from sim_events.formats import read_recording

    rec = frame_span(read_recording(fixture_data / "scene_davis346.npz"), 0, 8)  # 9 frames: 2 blocks of 4 intervals
    texts = []
    for k in range(2):
        params, m = calibrate(rec, seed=3, passes=1, folds=2)
        texts.append(write_params_toml(params, tmp_path / f"c{k}.toml", f"cv {m['cv']}").read_bytes())
    assert texts[0] == texts[1]
    assert m["folds"] == 2 and len(m["cv_blocks"]) == 2 and m["cv_blocks"][1]["frames"] == [4, 8]
    assert 0.8 < m["cv"]["count_ratio"] < 1.2


@pytest.mark.parametrize("folds, needle", [("0", "--folds 0 must be >= 1"), ("20", "20 folds need at least 21 frames")])
def test_bad_folds_are_one_line_errors_and_no_output(fixture_data, tmp_path, capsys, folds, needle):
    from neurosim.cli import main

    out = tmp_path / "cal.toml"
    code = main(["events", "calibrate", str(fixture_data / "scene_davis346.npz"), "-o", str(out), "--folds", folds])
    err = capsys.readouterr().err
    lines = [ln.split("\r")[-1] for ln in err.split("\n") if ln.split("\r")[-1].strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("neurosim: error:") and needle in lines[0], err
    assert not out.exists()
