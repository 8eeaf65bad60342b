"""Event frames between APS frames (hybrid.event_frames, model.event_frames_hz): the integration
against frames that an independent event model (ESIM) turned into events, the step schedule, the
target model's relocation, a fast target that the full hybrid follows between APS frames, and the
contrast C they integrate with (model.event_contrast: the file's thresholds, else fitted online)."""

import dataclasses

import numpy as np
import pytest

from hybrid.data import Track
from hybrid.dcf import DCFParams, DCFTracker
from hybrid.event_frames import ContrastFit, event_frame_steps, frames_per_interval, integrate_events
from neurosim.errors import ParameterError
from sim_events.esim import LOG_EPS, esim_events

cv2 = pytest.importorskip("cv2")
C = 0.25


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth blobs of 20 .. 255 DN about 5 px across."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(20, 256, (h // 5 + 1, w // 5 + 1)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR), 20, 255).astype(np.uint8)


def counts_of(events: np.ndarray, h: int, w: int) -> np.ndarray:
    c = np.zeros((2, h, w), np.float32)
    np.add.at(c, (1 - events["p"].astype(np.intp), events["y"].astype(np.intp), events["x"].astype(np.intp)), 1)
    return c


def test_an_event_frame_is_the_later_frame_to_within_one_threshold_step():
    """ESIM (sim_events.esim, log(DN/255 + ε), exact thresholds, no refractory period) turns frame A
    and frame B (A shifted by 5 px) into events; integrating them onto A with ESIM's own offset
    D = 255·ε gives B to within one threshold step in log intensity at every pixel."""
    a = texture(60, 80, 0)
    b = np.roll(a, 5, axis=1)
    ev = esim_events([(0, a), (10_000, b)], c_on=C, c_off=C, sigma=0.0, refractory_us=0.0)
    rec = integrate_events(a, counts_of(ev, *a.shape), C, dark_dn=255 * LOG_EPS)
    d = 255 * LOG_EPS
    err = np.abs(np.log(rec.astype(np.float64) + d) - np.log(b.astype(np.float64) + d))
    assert len(ev) > 1000
    assert err.max() <= C + 0.5 / 20 + 1e-6  # one step, plus the uint8 rounding at the darkest pixel (20 DN)
    assert np.median(err) < C / 2
    # the APS frame alone is far from B where the texture moved
    assert np.median(np.abs(np.log(a + d) - np.log(b + d))) > 2 * np.median(err)


def test_no_events_give_the_aps_frame_and_on_events_brighten_it():
    frame = np.array([[0, 10, 100, 250]], np.uint8)
    counts = np.zeros((2, 1, 4), np.float32)
    np.testing.assert_array_equal(integrate_events(frame, counts, C), frame)
    counts[0, 0, 2] = 2  # two ON events: (100 + 8)·e^0.5 − 8
    counts[1, 0, 3] = 1  # one OFF event: (250 + 8)·e^−0.25 − 8
    out = integrate_events(frame, counts, C)
    assert out[0, 2] == round(108 * np.exp(0.5) - 8) and out[0, 3] == round(258 * np.exp(-0.25) - 8)
    counts[0, 0, 1] = 40  # saturates
    assert integrate_events(frame, counts, C)[0, 1] == 255


@pytest.mark.parametrize("steps,per,expect", [(33, 8, [4, 8, 12, 16, 20, 24, 28]), (10, 2, [5]), (33, 1, []),
                                              (3, 8, [1, 2]), (1, 8, [])])
def test_event_frames_are_evenly_spaced_inside_the_interval(steps, per, expect):
    np.testing.assert_array_equal(event_frame_steps(steps, per), expect)


def test_frames_per_interval():
    assert frames_per_interval(240.0, 30.0) == 8
    assert frames_per_interval(0.0, 30.0) == 1
    assert frames_per_interval(10.0, 30.0) == 1
    assert frames_per_interval(240.0, 25.0) == 10


@pytest.mark.parametrize("shift", [(6, -3), (-4, 5)])
def test_relocate_moves_to_the_shifted_target_and_learns_nothing(shift):
    frame = texture(160, 200, 1)
    tracker = DCFTracker(DCFParams())
    tracker.init(frame, np.array([80.0, 60.0, 30.0, 30.0]))
    learned = tracker.filter.copy()
    moved = cv2.warpAffine(frame, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (200, 160), borderMode=cv2.BORDER_REFLECT)
    peak = tracker.relocate(moved)
    np.testing.assert_allclose(tracker.centre, [95 + shift[0], 75 + shift[1]], atol=0.5)
    np.testing.assert_array_equal(tracker.filter, learned)
    np.testing.assert_array_equal(tracker.wh, [30.0, 30.0])
    assert peak > 0.5


def fast_square(aps_every: int = 8, aps_frames: int = 5) -> Track:
    """test_hybrid_baselines' textured square at 240 fps, 2.5 px per input frame (20 px per APS
    interval): APS frames at every ``aps_every``-th input frame, ESIM events from all input frames,
    boxes at every input frame."""
    import sys

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from test_hybrid_baselines import moving_square

    full = moving_square(n_frames=(aps_frames - 1) * aps_every + 1, dt_us=4_167, speed_px=2.5)
    ev = esim_events(zip(full.frame_t.tolist(), full.frames), c_on=C, c_off=C, sigma=0.0, refractory_us=0.0)
    events = np.zeros(len(ev), dtype=full.events.dtype)
    for f in ("x", "y", "t", "p"):
        events[f] = ev[f]
    aps = slice(None, None, aps_every)
    return Track("fast_square", full.frames[aps], full.frame_t[aps], events, full.boxes_t, full.boxes_xywh,
                 full.width, full.height)


def test_the_full_hybrid_follows_a_fast_target_between_aps_frames_on_event_frames():
    """20 px of motion per APS interval: with event frames (240 Hz) the centre error over all steps
    is a fraction of the error without (APS frames only; the same tracker otherwise), the same
    inputs give the same boxes, and no_attention ignores the setting."""
    pytest.importorskip("torch")
    from hybrid.checkpoint import load_model
    from hybrid.track import track_sequence

    track = fast_square()
    errors, boxes = {}, {}
    for name, variant, hz in (("on", "full", 240.0), ("again", "full", 240.0), ("off", "full", 0.0),
                              ("na_on", "no_attention", 240.0), ("na_off", "no_attention", 0.0)):
        model = load_model("default", variant)
        model.cfg = dataclasses.replace(model.cfg, event_frames_hz=hz, target_events=0.0)
        res = track_sequence(model, track)
        boxes[name] = res.boxes
        centre = res.boxes[:, :2] + res.boxes[:, 2:] / 2
        errors[name] = float(np.nanmean(np.linalg.norm(centre - (res.gt[:, :2] + res.gt[:, 2:] / 2), axis=1)))
    assert errors["on"] < 0.4 * errors["off"], errors
    np.testing.assert_array_equal(boxes["on"], boxes["again"])
    np.testing.assert_array_equal(boxes["na_on"], boxes["na_off"])


@pytest.mark.parametrize("event_weight", [0.0, 0.3])
def test_each_event_frame_search_takes_the_events_since_the_aps_frame(event_weight):
    """hybrid.track.event_frame_boxes: with event channels, the filter's events after the last
    event frame of an interval are that frame's, the counts from the APS frame to its time (what
    the event frame integrates); without them the filter keeps none."""
    from hybrid.track import event_frame_boxes

    track = fast_square()
    dcf = DCFTracker(DCFParams(event_weight=event_weight))
    dcf.init(track.frames[0], track.box_at(track.frame_t[:1])[0])
    k = 1
    times = np.linspace(track.frame_t[k], track.frame_t[k + 1], 34)[1:].astype(np.int64)
    _, fresh, counts, until = event_frame_boxes(dcf, track, k, times, np.zeros(4), 8, C)
    last = int(times[np.flatnonzero(fresh)[-1] - 1])
    assert until == last and counts.sum() > 0
    np.testing.assert_array_equal(counts, track.event_counts(int(track.frame_t[k]), last))
    if event_weight:
        np.testing.assert_array_equal(dcf.events, counts)
    else:
        assert dcf.events is None


def test_config_checks():
    pytest.importorskip("torch")
    from hybrid.model import ModelConfig

    with pytest.raises(ParameterError, match="event_frames_hz"):
        ModelConfig(event_frames_hz=-1.0, target_model="dcf").check()
    with pytest.raises(ParameterError, match="event_contrast"):
        ModelConfig(event_contrast=-0.1).check()
    assert ModelConfig(event_contrast=0.0).check().event_contrast == 0.0  # 0: fitted online
    assert ModelConfig(event_frames_hz=240.0, target_model="dcf").check().event_frames_hz == 240.0


def shifted_frames(steps: int = 6, px: int = 3) -> list[np.ndarray]:
    a = texture(80, 100, 0)
    return [np.roll(a, px * i, axis=1) for i in range(steps)]


def fit_over(frames: list[np.ndarray], counts: list[np.ndarray], dark_dn: float) -> float:
    fit = ContrastFit(dark_dn=dark_dn)
    for k in range(1, len(frames)):
        fit.add(frames[k - 1], frames[k], counts[k - 1])
    return fit.contrast(default=-1.0)


@pytest.mark.parametrize("threshold", [0.15, 0.3, 0.5])
def test_the_contrast_fit_is_exact_for_counts_of_a_random_phase_sensor(threshold):
    """Closed form: every pixel brightens by Δ in [C, 2.5 C] and counts n = floor(Δ/C + u), u ~ U(0, 1)
    (a sensor whose reference level sits anywhere in its threshold step): E[n | Δ] = Δ/C and every
    pixel fires, so regressing n on Δ gives C."""
    rng = np.random.default_rng(1)
    log_dn = np.log(np.arange(256) + 8.0)
    frames = [rng.integers(20, 61, (60, 80)).astype(np.uint8)]
    counts = []
    for _ in range(4):
        change = threshold * rng.uniform(1.0, 2.5, frames[0].shape)
        frames.append(np.rint((frames[0] + 8.0) * np.exp(change) - 8.0).astype(np.uint8))
        n = np.floor((log_dn[frames[-1]] - log_dn[frames[-2]]) / threshold + rng.random(frames[0].shape))
        counts.append(np.stack([np.maximum(n, 0), np.maximum(-n, 0)]).astype(np.float32))
        frames.append(frames[0])  # and back: as many OFF events
        n = np.floor((log_dn[frames[-1]] - log_dn[frames[-2]]) / threshold + rng.random(frames[0].shape))
        counts.append(np.stack([np.maximum(n, 0), np.maximum(-n, 0)]).astype(np.float32))
    assert fit_over(frames, counts, dark_dn=8.0) == pytest.approx(threshold, rel=0.02)


@pytest.mark.parametrize("threshold", [0.15, 0.25, 0.4])
def test_the_contrast_fit_reads_the_threshold_of_esim_events_and_a_larger_one_when_they_are_capped(threshold):
    """ESIM's events (an independent event model: exact thresholds, a reference level reset at each
    event, so a pixel that turns back needs a whole step again) fit to within 25 % above their
    threshold; the same events capped at one per pixel per interval (as event frames give them)
    fit to at least 1.3 times more, and no events leave the default."""
    frames = shifted_frames()
    ev = esim_events([(k * 10_000, f) for k, f in enumerate(frames)], c_on=threshold, c_off=threshold, sigma=0.0,
                     refractory_us=0.0)
    counts = [counts_of(ev[(ev["t"] > (k - 1) * 10_000) & (ev["t"] <= k * 10_000)], *frames[0].shape)
              for k in range(1, len(frames))]
    fitted = fit_over(frames, counts, dark_dn=255 * LOG_EPS)
    assert threshold <= fitted <= 1.25 * threshold
    capped = [np.minimum(c, 1) * (np.abs(c[0] - c[1]) > 0) for c in counts]
    assert fit_over(frames, capped, dark_dn=255 * LOG_EPS) >= 1.3 * fitted
    assert fit_over(frames, [np.zeros_like(c) for c in counts], dark_dn=8.0) == -1.0


def test_the_contrast_fit_skips_saturated_pixels_and_clamps():
    before = np.array([[0, 255, 100, 100]], np.uint8)
    after = np.array([[50, 200, 255, 150]], np.uint8)
    counts = np.zeros((2, 1, 4), np.float32)
    counts[0, 0, :3] = 3  # ON events at the three pixels that saturate in one of the frames
    fit = ContrastFit()
    fit.add(before, after, counts)
    assert fit.contrast(default=0.7) == 0.7  # nothing usable yet
    counts[0, 0, 3] = 1  # one ON event where 100 → 150 DN
    fit.add(before, after, counts)
    assert fit.contrast(default=0.7) == pytest.approx(np.log(158 / 108), rel=1e-6)
    counts[0, 0, 3] = 100  # 100 events for that change: C below the lower bound
    fit = ContrastFit()
    fit.add(before, after, counts)
    assert fit.contrast(default=0.7) == 0.05


def test_a_fitted_contrast_drives_the_event_frames_from_the_second_interval_on():
    """``event_contrast = 0``: the first interval integrates its events with the typical 0.25 (no
    frame pair seen yet), later ones with the fit of the intervals before; same inputs, same boxes."""
    pytest.importorskip("torch")
    from hybrid.checkpoint import load_model
    from hybrid.track import track_sequence

    track = fast_square()
    boxes = {}
    for name, contrast in (("fixed", 0.25), ("fit", 0.0), ("fit again", 0.0)):
        model = load_model("default", "full")
        model.cfg = dataclasses.replace(model.cfg, event_frames_hz=240.0, target_events=0.0, event_contrast=contrast)
        boxes[name] = track_sequence(model, track).boxes
    first = len(boxes["fixed"]) // len(track.frame_t)  # the steps of one interval
    np.testing.assert_array_equal(boxes["fit"][:first], boxes["fixed"][:first])
    assert not np.array_equal(boxes["fit"][first:], boxes["fixed"][first:])
    np.testing.assert_array_equal(boxes["fit"], boxes["fit again"])


def test_a_simulated_file_says_its_thresholds_and_a_recording_does_not(tmp_path):
    """``neurosim events simulate`` stores its parameters in the file; the tracker's view of the
    file (hybrid.data.load_track) reads the ON / OFF thresholds back. Recordings say none."""
    import json

    from hybrid.data import event_origin, load_track
    from neurosim.cli import main

    frames = tmp_path / "f.npz"
    stack = np.stack(shifted_frames(steps=3))
    np.savez(frames, frames=stack, frame_ts=np.arange(len(stack)) * 10_000)
    seq = tmp_path / "s.h5"
    assert main(["events", "simulate", str(frames), "-o", str(seq), "-q", "--set", "contrast_threshold_on=0.3",
                 "--set", "contrast_threshold_off=0.35"]) == 0
    track = load_track(seq)
    assert track.contrast == (0.3, 0.35) and track.event_frame_hz is None
    recording = {"simulator": json.dumps({"recording": True, "format": "fe240hz", "event_frame_hz": 240.0})}
    assert event_origin(recording) == (None, 240.0)
    assert event_origin({"simulator": json.dumps({"recording": True, "format": "aedat4"})}) == (None, None)
    assert event_origin({"simulator": "{not json"}) == (None, None)
    assert event_origin({"simulator": "[1, 2]"}) == (None, None)
    assert event_origin({"simulator": json.dumps({"event_frame_hz": float("nan"), "params": {
        "contrast_threshold_on": 0.3, "contrast_threshold_off": -1}})}) == (None, None)
    assert event_origin({}) == (None, None)


def test_the_event_frames_contrast_is_the_models_else_the_files_else_the_capped_one_else_fitted():
    from hybrid.track import frame_contrast

    track = fast_square()
    assert frame_contrast(0.4, track) == (0.4, None)
    contrast, fit = frame_contrast(0.0, track)
    assert contrast == 0.25 and isinstance(fit, ContrastFit)
    simulated = dataclasses.replace(track, contrast=(0.3, 0.35))
    assert frame_contrast(0.0, simulated) == ((0.3, 0.35), None)
    assert frame_contrast(0.2, simulated) == (0.2, None)
    capped = dataclasses.replace(track, event_frame_hz=240.0)
    assert frame_contrast(0.0, capped, capped_contrast=0.9) == (0.9, None)
    assert frame_contrast(0.3, capped, capped_contrast=0.9) == (0.3, None)


def test_two_thresholds_integrate_each_polarity_with_its_own():
    frame = np.array([[100, 100]], np.uint8)
    counts = np.zeros((2, 1, 2), np.float32)
    counts[0, 0, 0] = 2  # two ON events: (100 + 8)·e^(2·0.2) − 8
    counts[1, 0, 1] = 2  # two OFF events: (100 + 8)·e^(−2·0.3) − 8
    out = integrate_events(frame, counts, (0.2, 0.3))
    assert out[0, 0] == round(108 * np.exp(0.4) - 8) and out[0, 1] == round(108 * np.exp(-0.6) - 8)
    np.testing.assert_array_equal(integrate_events(frame, counts, (0.25, 0.25)), integrate_events(frame, counts, 0.25))
