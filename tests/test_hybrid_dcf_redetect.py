"""Re-detection on event blobs (hybrid.dcf ``redetect_ratio``, model.target_redetect): the blobs in
closed form, and a target that jumps out of the search region, found again where its events are
only when re-detection is on."""

import numpy as np
import pytest

from hybrid.dcf import DCFParams, DCFTracker, event_blobs
from hybrid.model import ModelConfig
from hybrid.track import make_target_model


def test_event_blobs_are_the_densest_target_sized_boxes_first():
    counts = np.zeros((2, 60, 100), np.float32)
    counts[0, 10:20, 10:20] = 1  # 100 events in a 10×10 box
    counts[1, 30:40, 60:70] = 3  # 300 events: the densest blob
    blobs = event_blobs(counts, np.array([10.0, 10.0]), 4)
    np.testing.assert_allclose(blobs, [[65.5, 35.5], [15.5, 15.5]], atol=0.51)
    assert len(event_blobs(counts, np.array([10.0, 10.0]), 1)) == 1
    assert event_blobs(np.zeros((2, 60, 100), np.float32), np.array([10.0, 10.0]), 4).shape == (0, 2)


def scene(h: int, w: int, x: int, y: int, side: int, texture: np.ndarray) -> np.ndarray:
    """A grey frame with the textured square target at (x, y)."""
    frame = np.full((h, w), 128, np.uint8)
    frame[y : y + side, x : x + side] = texture
    return frame


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_a_target_that_jumps_out_of_the_region_is_found_again_on_its_events(ratio):
    """A textured square tracked for 5 frames at (40, 50) jumps 200 px right, far outside the
    search region; the interval's events show it leave and arrive. The peak collapses: with
    re-detection the tracker is on it again (within 2 px), without it stays where it was."""
    h, w, side = 140, 320, 24
    texture = np.random.default_rng(0).integers(0, 256, (side, side)).astype(np.uint8)
    tracker = DCFTracker(DCFParams(event_weight=0.3, redetect_ratio=ratio, scales=1))
    x, y = 40, 50
    no_events = np.zeros((2, h, w), np.float32)
    tracker.init(scene(h, w, x, y, side, texture), np.array([x, y, side, side], np.float64), no_events)
    for _ in range(5):
        tracker.update(scene(h, w, x, y, side, texture), no_events)
    events = no_events.copy()
    events[1, y : y + side, x : x + side] = 2  # the target left ...
    events[0, y : y + side, x + 200 : x + 200 + side] = 2  # ... and arrived here
    box = tracker.update(scene(h, w, x + 200, y, side, texture), events)
    if ratio > 0:
        np.testing.assert_allclose(box[:2], [x + 200, y], atol=2.0)
    else:
        assert abs(box[0] - x) < 20


def test_only_the_full_hybrid_re_detects():
    cfg = ModelConfig(target_model="dcf", target_events=0.3, target_redetect=0.5)
    assert make_target_model(cfg, with_events=True).p.redetect_ratio == 0.5
    assert make_target_model(cfg, with_events=False).p.redetect_ratio == 0.0


def test_a_moving_thing_that_does_not_look_like_the_target_does_not_take_over():
    """The target vanishes and another textured square moves in far away: its events make it a
    blob, but its filter peak stays under ``redetect_accept`` × the running peak, so the box stays."""
    h, w, side = 140, 320, 24
    rng = np.random.default_rng(0)
    texture, other = (rng.integers(0, 256, (side, side)).astype(np.uint8) for _ in range(2))
    tracker = DCFTracker(DCFParams(event_weight=0.3, redetect_ratio=0.5, scales=1))
    x, y = 40, 50
    no_events = np.zeros((2, h, w), np.float32)
    tracker.init(scene(h, w, x, y, side, texture), np.array([x, y, side, side], np.float64), no_events)
    for _ in range(5):
        tracker.update(scene(h, w, x, y, side, texture), no_events)
    events = no_events.copy()
    events[1, y : y + side, x : x + side] = 2
    events[0, y : y + side, x + 200 : x + 200 + side] = 2
    box = tracker.update(scene(h, w, x + 200, y, side, other), events)
    assert abs(box[0] - x) < 20
