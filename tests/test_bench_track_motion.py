"""tests/benchmarks/bench_track_motion.py: per-unit displacements and their scores, hand-worked."""

import sys

import numpy as np
import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/benchmarks")
from bench_track_motion import motion_scores, unit_displacements  # noqa: E402


def test_displacements_are_first_to_last_step_of_each_complete_unit():
    bins = 3
    centres = np.array([[0, 0], [1, 0], [2, 0], [2, 0], [2, 1], [2, 5], [9, 9]], float)  # 2 units + 1 stray step
    boxes = np.concatenate([centres - 1, np.full((7, 2), 2.0)], axis=1)  # w = h = 2: centre = x + 1
    gt = boxes.copy()
    gt[4, 0] = np.nan  # the second unit has a missing ground-truth box
    p, g = unit_displacements(boxes, gt, bins)
    np.testing.assert_array_equal(p, [[2, 0]])
    np.testing.assert_array_equal(g, [[2, 0]])


def test_a_perfect_tracker_has_gain_one_and_no_error_and_a_holding_one_errs_by_the_motion():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(50, 2)) * 5
    perfect = motion_scores(true, true)
    assert perfect["kappa"] == 1.0 and perfect["error_tracker_px"] == 0.0 and perfect["corr_x"] == 1.0
    held = motion_scores(np.zeros_like(true), true)
    assert held["error_tracker_px"] == held["error_held_px"] == round(float(np.linalg.norm(true, axis=1).mean()), 2)
    half = motion_scores(true / 2, true)
    assert half["kappa"] == 2.0 and half["error_at_gain"]["0.5"] > half["error_tracker_px"] > 0


def test_eval_boxes_reads_tre_runs_back_with_the_ground_truth_the_harness_scored(tmp_path):
    import json

    from bench_track_motion import eval_boxes

    from benchmarks_data.synth import SynthConfig, synth_dataset
    from hybrid import metrics
    from hybrid.evaluate import evaluate

    ds = tmp_path / "ds"
    synth_dataset(ds, n_sequences=2, seed=0, config=SynthConfig(width=96, height=72, n_frames=48))
    evaluate({}, ds, tmp_path / "eval", split="all", baselines=["static_box"], say=lambda *a: None, starts=3)
    per = json.loads((tmp_path / "eval" / "scores.json").read_text())["trackers"]["static_box"]["per_sequence"]
    runs = eval_boxes(str(tmp_path / "eval"), str(ds), "static_box", 33)
    assert sorted(runs) == sorted(per) and any("@" in name for name in runs)
    for name, (boxes, gt) in runs.items():
        assert metrics.evaluate({name: (boxes, gt)}).auc == pytest.approx(per[name]["auc"], abs=1e-9)
