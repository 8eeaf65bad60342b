"""tests/benchmarks/bench_track_interp_bound.py: the line between frame boxes, hand-worked."""

import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/benchmarks")
from bench_track_interp_bound import interpolate_units  # noqa: E402

from hybrid import metrics  # noqa: E402


def test_a_unit_runs_on_the_line_to_the_next_units_first_box_and_the_last_unit_is_held():
    bins = 4
    held = np.repeat(np.array([[0, 0, 2, 2], [4, 8, 2, 6], [9, 9, 2, 2]], float), bins, axis=0)[:11]  # last unit short
    line = interpolate_units(held, bins)
    np.testing.assert_array_equal(line[:4, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(line[:4, 3], [2, 3, 4, 5])
    np.testing.assert_array_equal(line[4:8, 1], [8.0, 8.25, 8.5, 8.75])
    np.testing.assert_array_equal(line[8:], held[8:])


def test_a_target_moving_at_constant_speed_is_matched_exactly_where_the_held_box_lags():
    bins, units = 10, 6
    t = np.arange(bins * units, dtype=float)
    gt = np.stack([3.0 * t, np.zeros_like(t), np.full_like(t, 20.0), np.full_like(t, 20.0)], axis=1)
    held = np.repeat(gt[::bins], bins, axis=0)  # a perfect frame tracker that holds its box
    line = interpolate_units(held, bins)
    np.testing.assert_allclose(line[: bins * (units - 1)], gt[: bins * (units - 1)])
    auc_held = metrics.evaluate({"s": (held, gt)}).auc
    auc_line = metrics.evaluate({"s": (line, gt)}).auc
    assert auc_line > auc_held + 0.2  # 3 px a step on a 20 px box: the held box lags up to 27 px
