"""neurosim eval --starts (OTB's temporal robustness evaluation): start frames, sub-sequences, scores."""

import json

import numpy as np
import pytest

from hybrid import metrics
from hybrid.data import Track
from hybrid.evaluate import start_frames
from neurosim.errors import ParameterError

W, H = 64, 48


def sliding_box(n_frames: int = 24, dt_us: int = 33_333) -> Track:
    """Blank frames, a 10 px box moving 2 px a frame, ground truth at every frame."""
    t = np.arange(n_frames, dtype=np.int64) * dt_us
    boxes = np.array([[2 + 2 * k, 10, 10, 10] for k in range(n_frames)], np.float32)
    events = np.zeros(0, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
    return Track("slide", np.zeros((n_frames, H, W), np.uint8), t, events, t.copy(), boxes, W, H)


def test_starts_are_spread_evenly_and_frame_0_comes_first():
    assert start_frames(sliding_box(24), 1) == [0]
    assert start_frames(sliding_box(24), 4) == [0, 6, 12, 18]


def test_a_start_without_a_box_moves_to_the_next_frame_with_one():
    track = sliding_box(24)
    track.boxes_xywh[6:8] = np.nan
    assert start_frames(track, 4) == [0, 8, 12, 18]


def test_runs_shorter_than_two_frames_and_repeated_starts_are_dropped():
    assert start_frames(sliding_box(3), 20) == [0, 1]


@pytest.mark.parametrize("starts", [0, 21])
def test_start_counts_outside_1_to_20_are_refused(starts):
    with pytest.raises(ParameterError, match="1 \\(OPE\\) to 20"):
        start_frames(sliding_box(), starts)


def test_a_sub_track_is_the_sequence_from_that_frame_with_the_same_events_and_boxes():
    track = sliding_box(24)
    sub = track.from_frame(12)
    assert sub.name == "slide@12" and len(sub.frame_t) == 12 and sub.frame_t[0] == track.frame_t[12]
    assert sub.events is track.events and sub.boxes_xywh is track.boxes_xywh
    np.testing.assert_array_equal(sub.box_at(sub.frame_t[:1])[0], [26, 10, 10, 10])
    assert track.from_frame(0) is track


def test_each_start_is_scored_as_its_own_sequence_like_a_sequence_cut_there(tmp_path):
    from benchmarks_data.synth import SynthConfig, synth_dataset
    from hybrid.baselines import StaticBox, track_frames
    from hybrid.data import load_track
    from hybrid.evaluate import evaluate, split_sequences

    ds = tmp_path / "ds"
    synth_dataset(ds, n_sequences=2, seed=0, config=SynthConfig(width=96, height=72, n_frames=48))
    result = evaluate({}, ds, tmp_path / "eval", split="all", baselines=["static_box"], say=lambda *a: None, starts=3)
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    per = scores["trackers"]["static_box"]["per_sequence"]
    assert scores["starts"] == 3 and result["sequences"] == 2 and result["runs_per_tracker"] == len(per) == 6
    for name, path in split_sequences(ds, "all"):
        full = load_track(path, name)
        k = 2 * len(full.frame_t) // 3
        cut = Track(name, full.frames[k:].copy(), full.frame_t[k:].copy(), full.events, full.boxes_t, full.boxes_xywh,
                    full.width, full.height)
        run = track_frames(StaticBox(), cut)
        expected = metrics.evaluate({name: (run.boxes, run.gt)}).auc
        assert per[f"{name}@{k}"]["auc"] == pytest.approx(expected, abs=1e-12)
        assert per[f"{name}@{k}"]["auc"] != pytest.approx(per[name]["auc"])


def test_eval_refuses_a_bad_start_count_before_any_work(tmp_path, capsys):
    from neurosim.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "default", "--dataset", str(tmp_path / "missing"), "-o", str(out), "--starts", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--starts 0" in err[0]
    assert not out.exists()
