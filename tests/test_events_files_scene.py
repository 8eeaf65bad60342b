"""The procedural demo scene: determinism, boxes that enclose the rendered target, motion."""

import numpy as np
import pytest

from neurosim.errors import ParameterError
from sim_events.scene import Scene, Sprite, composite, ellipse_mask, fold, noise_texture, random_trajectory, render_scene


def test_same_seed_same_frames_other_seed_other_frames():
    a = render_scene(96, 64, fps=240, n_frames=12, seed=3)
    b = render_scene(96, 64, fps=240, n_frames=12, seed=3)
    c = render_scene(96, 64, fps=240, n_frames=12, seed=4)
    fa, fb, fc = a.frames(), b.frames(), c.frames()
    assert fa.dtype == np.uint8 and fa.shape == (12, 64, 96)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(a.boxes[1], b.boxes[1])
    assert not np.array_equal(fa, fc)


def test_scene_is_a_frame_source():
    s = render_scene(fps=240, n_frames=5, seed=0)
    assert (s.width, s.height, s.num_frames) == (346, 260, 5)
    items = list(s)
    assert [t for t, _ in items] == [0, 4167, 8333, 12500, 16667]
    assert all(f.shape == (260, 346) and f.dtype == np.uint8 for _, f in items)
    t, xywh = s.boxes
    assert t.tolist() == [0, 4167, 8333, 12500, 16667] and xywh.dtype == np.float32


def test_target_box_encloses_exactly_the_pixels_the_target_changes():
    s = render_scene(160, 120, fps=240, n_frames=40, n_objects=3, seed=5)
    target = s.sprites[s.target]
    flat = np.full((120, 160), 128.0, np.float32)
    alone = Scene(flat, [Sprite(target.texture, np.ones_like(target.mask), target.path)], 240.0, 40)
    _, xywh = s.boxes
    for i in (0, 17, 39):
        changed = np.argwhere(alone.frame(i) != 128)
        x, y, w, h = xywh[i]
        (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
        # bilinear sub-pixel placement smears the edge by at most one pixel
        assert x - 1 <= x0 <= x + 1 and y - 1 <= y0 <= y + 1
        assert x + w - 2 <= x1 <= x + w and y + h - 2 <= y1 <= y + h


def test_objects_move_at_their_speed_and_stay_inside():
    s = render_scene(200, 150, fps=240, n_frames=300, seed=1, speed_px_s=(300.0, 300.0))
    for sp in s.sprites:
        step = np.linalg.norm(np.diff(sp.path, axis=0), axis=1)
        # constant speed 300 px/s = 1.25 px per frame, except where a bounce folds the step
        assert np.median(step) == pytest.approx(1.25, abs=1e-6)
        assert step.max() <= 1.25 + 1e-9
        w, h = sp.size
        assert sp.path[:, 0].min() >= 0 and (sp.path[:, 0] + w).max() <= 200
        assert sp.path[:, 1].min() >= 0 and (sp.path[:, 1] + h).max() <= 150


def test_building_blocks():
    np.testing.assert_allclose(fold(np.array([-1.0, 3.0, 12.0, 25.0]), 10.0), [1.0, 3.0, 8.0, 5.0])
    rng = np.random.default_rng(0)
    tex = noise_texture(rng, 30, 40, lo=20, hi=200)
    assert tex.shape == (30, 40) and tex.min() == pytest.approx(20) and tex.max() == pytest.approx(200, abs=1e-3)
    m = ellipse_mask(21, 31)
    assert m[10, 15] == 1.0 and m[0, 0] == 0.0
    path = random_trajectory(rng, 50, 100.0, 80, 60, 10, 10, speed_px_s=200.0)
    assert path.shape == (50, 2)
    frame = composite(np.zeros((60, 80), np.float32), [Sprite(np.full((10, 10), 255, np.float32), np.ones((10, 10), np.float32), np.array([[5.0, 7.0]]))], 0)
    assert frame[7:17, 5:15].min() == 255 and frame.sum() == 255 * 100
    with pytest.raises(ParameterError):
        render_scene(n_frames=0)
