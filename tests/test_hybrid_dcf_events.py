"""The online target model's event channels (hybrid.dcf ``event_weight``, model.target_events):
per-pixel counts against a plain loop, the channels in closed form, a target that only the events
show, and which hybrid variants use them."""

import dataclasses

import numpy as np
import pytest

from hybrid.data import Track
from hybrid.dcf import DCFParams, DCFTracker, event_features, hann
from neurosim.errors import ParameterError

EVENT = [("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")]


def test_event_counts_are_the_events_per_pixel_and_polarity_of_the_interval():
    w, h = 13, 7
    rng = np.random.default_rng(0)
    ev = np.zeros(500, dtype=EVENT)
    ev["t"] = np.sort(rng.integers(0, 1000, 500))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, w, 500), rng.integers(0, h, 500), rng.integers(0, 2, 500)
    track = Track("t", np.zeros((2, h, w), np.uint8), np.array([0, 1000]), ev, None, None, w, h)
    counts = track.event_counts(200, 700)
    expect = np.zeros((2, h, w))
    for e in ev:
        if 200 <= e["t"] < 700:
            expect[0 if e["p"] > 0 else 1, e["y"], e["x"]] += 1
    assert counts.dtype == np.float32 and counts.shape == (2, h, w)
    np.testing.assert_array_equal(counts, expect)


def test_uniform_on_events_give_a_unit_channel_and_an_empty_one():
    """n ON events on every pixel: each 4×4 cell holds 16n, E_ON = log(1 + 16n) everywhere, E_OFF = 0,
    so after the joint scaling the ON channel is w·window and the OFF channel 0."""
    n_px, region = 64, 32
    counts = np.zeros((2, n_px, n_px), np.float32)
    counts[0] = 3.0
    window = hann(region // 4)
    out = event_features(counts, np.array([32.0, 32.0]), 24.0, region, window, 0.3)
    e = np.log1p(16 * 3.0)
    np.testing.assert_allclose(out[0], 0.3 * window * e / np.sqrt(e * e + 1e-3), rtol=1e-5)
    np.testing.assert_array_equal(out[1], 0)


def square_counts(h, w, x, y, side) -> np.ndarray:
    c = np.zeros((2, h, w), np.float32)
    c[0, y : y + side, x + side // 2 : x + side] = 4  # leading half ON, trailing half OFF
    c[1, y : y + side, x : x + side // 2] = 4
    return c


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_a_target_only_the_events_show_is_followed_with_event_channels_and_held_without(weight):
    """Frames of uniform grey (no gradient, no intensity pattern) and a square moving 3 px per frame
    in the events: with event channels the filter follows it; with frame features alone it holds."""
    h, w, side = 120, 160, 24
    grey = np.full((h, w), 128, np.uint8)
    tracker = DCFTracker(DCFParams(event_weight=weight, scales=1))
    x, y = 40, 50
    tracker.init(grey, np.array([x, y, side, side], np.float64), square_counts(h, w, x, y, side))
    for k in range(1, 9):
        box = tracker.update(grey, square_counts(h, w, x + 3 * k, y + k, side))
    truth = np.array([x + 24, y + 8])
    if weight > 0:
        np.testing.assert_allclose(box[:2], truth, atol=1.5)
    else:
        np.testing.assert_array_equal(box[:2], [x, y])


@pytest.mark.parametrize("since_aps", [True, False])
def test_a_search_between_aps_frames_takes_the_events_since_the_aps_frame(since_aps):
    """Uniform grey frames, the square only in the events: an event-frame search (relocate) given
    the events since the APS frame finds the square where they show it, 6 px on; without them it
    searches with the APS frame's events and stays within a pixel of where the square was then."""
    h, w, side = 120, 160, 24
    grey = np.full((h, w), 128, np.uint8)
    tracker = DCFTracker(DCFParams(event_weight=0.3, scales=1))
    x, y = 40, 50
    tracker.init(grey, np.array([x, y, side, side], np.float64), square_counts(h, w, x, y, side))
    for k in range(1, 4):
        tracker.update(grey, square_counts(h, w, x + 3 * k, y, side))
    at_aps = tracker.centre.copy()
    tracker.relocate(grey, square_counts(h, w, x + 15, y, side) if since_aps else None)
    if since_aps:
        np.testing.assert_allclose(tracker.centre - at_aps, [6, 0], atol=1.0)
    else:
        np.testing.assert_allclose(tracker.centre, at_aps, atol=1.0)


def test_the_first_frame_without_events_learns_zero_event_channels():
    tracker = DCFTracker(DCFParams(event_weight=0.3))
    frame = np.random.default_rng(0).integers(0, 255, (90, 120)).astype(np.uint8)
    tracker.init(frame, np.array([40.0, 30.0, 20.0, 20.0]))
    assert tracker.model_x.shape[0] == DCFParams().orientations + 3
    np.testing.assert_array_equal(tracker.model_x[-2:], 0)


def test_the_full_hybrid_uses_the_events_and_no_attention_is_full_without_them():
    """On a moving square with events: ``full`` with target_events = 0 and ``no_attention`` give the
    same boxes bit for bit; ``full`` with target_events > 0 tracks differently (event frames off in
    both: tests/test_hybrid_event_frames.py covers them)."""
    pytest.importorskip("torch")
    import sys

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from test_hybrid_baselines import moving_square
    from test_hybrid_dcf import with_random_events

    from hybrid.checkpoint import load_model
    from hybrid.track import track_sequence

    track = with_random_events(moving_square(n_frames=8), 20_000, seed=2)
    boxes = {}
    for name, variant, weight in (("full", "full", 0.3), ("full0", "full", 0.0), ("no_attention", "no_attention", 0.3)):
        model = load_model("default", variant)
        model.cfg = dataclasses.replace(model.cfg, target_events=weight, event_frames_hz=0.0)
        boxes[name] = track_sequence(model, track).boxes
    np.testing.assert_array_equal(boxes["full0"], boxes["no_attention"])
    assert not np.array_equal(boxes["full"], boxes["full0"])


def test_config_ranges():
    pytest.importorskip("torch")
    from hybrid.model import ModelConfig

    with pytest.raises(ParameterError, match="target_events"):
        ModelConfig(target_events=-1.0).check()
    with pytest.raises(ParameterError, match="event_weight"):
        DCFTracker(DCFParams(event_weight=11.0))
    assert ModelConfig(target_events=0.0).check().target_events == 0.0
