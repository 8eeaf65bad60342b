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


H, W, SIDE, X, Y, JUMP = 140, 320, 24, 40, 50, 200


def box_after_a_jump(ratio: float, same_texture: bool) -> np.ndarray:
    """The box after a textured square tracked for 5 frames at (X, Y) vanishes and a square, the
    same (``same_texture``) or another, appears JUMP px right, far outside the search region; the
    interval's events show one leave and the other arrive."""
    rng = np.random.default_rng(0)
    texture, other = (rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8) for _ in range(2))
    tracker = DCFTracker(DCFParams(event_weight=0.3, redetect_ratio=ratio, scales=1))
    no_events = np.zeros((2, H, W), np.float32)
    tracker.init(scene(H, W, X, Y, SIDE, texture), np.array([X, Y, SIDE, SIDE], np.float64), no_events)
    for _ in range(5):
        tracker.update(scene(H, W, X, Y, SIDE, texture), no_events)
    events = no_events.copy()
    events[1, Y : Y + SIDE, X : X + SIDE] = 2
    events[0, Y : Y + SIDE, X + JUMP : X + JUMP + SIDE] = 2
    return tracker.update(scene(H, W, X + JUMP, Y, SIDE, texture if same_texture else other), events)


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_a_target_that_jumps_out_of_the_region_is_found_again_on_its_events(ratio):
    """The peak collapses after the jump: with re-detection the tracker is on the target again
    (within 2 px), without it it stays where the target was."""
    box = box_after_a_jump(ratio, same_texture=True)
    if ratio > 0:
        np.testing.assert_allclose(box[:2], [X + JUMP, Y], atol=2.0)
    else:
        assert abs(box[0] - X) < 20


def test_a_moving_thing_that_does_not_look_like_the_target_does_not_take_over():
    """Another texture arrives: its events make it a blob, but its filter peak stays under
    ``redetect_accept`` × the running peak, so the box stays."""
    assert abs(box_after_a_jump(0.5, same_texture=False)[0] - X) < 20


def test_only_the_full_hybrid_re_detects():
    cfg = ModelConfig(target_model="dcf", target_events=0.3, target_redetect=0.5)
    assert make_target_model(cfg, with_events=True).p.redetect_ratio == 0.5
    assert make_target_model(cfg, with_events=False).p.redetect_ratio == 0.0
