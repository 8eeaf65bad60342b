"""Baseline trackers in the evaluation harness (hybrid.baselines): timing, holding, OpenCV parity."""

import json

import numpy as np
import pytest

from hybrid import metrics
from hybrid.baselines import BASELINES, OpenCVTracker, StaticBox, make_baseline, parse_baselines, track_frames
from hybrid.data import Track
from neurosim.errors import ParameterError

cv2 = pytest.importorskip("cv2")

W, H, SIDE = 120, 90, 20


def moving_square(n_frames: int = 24, dt_us: int = 33_333, speed_px: float = 2.0, seed: int = 0) -> Track:
    """A textured square crossing a textured background; ground truth at every frame."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 120, (H, W)).astype(np.uint8)
    background = cv2.GaussianBlur(background, (5, 5), 0)
    patch = rng.integers(150, 255, (SIDE, SIDE)).astype(np.uint8)
    frames, boxes = [], []
    for k in range(n_frames):
        x, y = int(round(10 + speed_px * k)), int(round(30 + 0.5 * speed_px * k))
        f = background.copy()
        f[y : y + SIDE, x : x + SIDE] = patch
        frames.append(f)
        boxes.append([x, y, SIDE, SIDE])
    t = np.arange(n_frames, dtype=np.int64) * dt_us
    events = np.zeros(0, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
    return Track("square", np.stack(frames), t, events, t.copy(), np.asarray(boxes, np.float32), W, H)


def test_step_times_are_the_hybrids_bin_ends_and_the_static_box_holds():
    track = moving_square(n_frames=5, dt_us=10_000)
    res = track_frames(StaticBox(), track, snn_rate_hz=1000.0)
    # 100 Hz frames at 1 kHz: T = 10 bins per interval; bin ends t_k + floor(b*dt/T), b = 1..10
    expected = np.concatenate([k * 10_000 + np.arange(1, 11) * 1_000 for k in range(5)])
    np.testing.assert_array_equal(res.times, expected)
    assert res.steps == 50 and res.frames == 5
    np.testing.assert_array_equal(res.boxes, np.tile([10.0, 30.0, SIDE, SIDE], (50, 1)))
    np.testing.assert_allclose(res.gt, track.box_at(expected))


def test_opencv_box_is_held_over_each_frame_interval_and_equals_opencv_run_directly():
    track = moving_square(n_frames=12)
    res = track_frames(make_baseline("csrt"), track, snn_rate_hz=300.0)
    direct = cv2.TrackerCSRT_create()
    direct.init(cv2.cvtColor(track.frames[0], cv2.COLOR_GRAY2BGR), (10, 30, SIDE, SIDE))
    per_frame = [np.array([10.0, 30.0, SIDE, SIDE])]
    for f in track.frames[1:]:
        ok, rect = direct.update(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
        assert ok
        per_frame.append(np.array(rect, float))
    steps = 10  # 30 Hz frames at 300 Hz
    np.testing.assert_allclose(res.boxes, np.repeat(np.stack(per_frame), steps, axis=0))


@pytest.mark.parametrize("name", ["csrt", "kcf", "mil"])
def test_opencv_trackers_follow_a_moving_target_and_beat_a_static_box(name):
    track = moving_square()
    static = metrics.evaluate({"s": (lambda r: (r.boxes, r.gt))(track_frames(StaticBox(), track))})
    res = track_frames(make_baseline(name), track)
    sc = metrics.evaluate({"s": (res.boxes, res.gt)})
    assert static.auc < 0.35
    assert sc.auc > static.auc + 0.2, (name, sc.auc, static.auc)


def test_each_baseline_is_reproducible_in_a_fresh_process():
    """Same frames, same seed → the same boxes, bit for bit, across processes."""
    import subprocess
    import sys

    code = ("import sys, hashlib; sys.path.insert(0, 'tests'); from test_hybrid_baselines import *; "
            "print(hashlib.sha256(b''.join(track_frames(make_baseline(n), moving_square()).boxes.tobytes() "
            "for n in ('mil', 'csrt', 'kcf', 'mil'))).hexdigest())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].strip()) == 64


def test_mil_boxes_do_not_depend_on_what_ran_before_in_the_process():
    """MIL draws from C rand(): without seeding it, the 2nd and 3rd runs differ from the 1st."""
    first = track_frames(make_baseline("mil"), moving_square()).boxes
    _ = [track_frames(make_baseline("mil"), moving_square(n_frames=5)) for _ in range(2)]
    again = track_frames(make_baseline("mil"), moving_square()).boxes
    other_seed = track_frames(make_baseline("mil", seed=7), moving_square()).boxes
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_seed)


def test_lost_target_holds_the_last_box():
    track = moving_square(n_frames=6)
    track.frames[2:] = 0  # the target vanishes: whatever OpenCV reports, boxes stay finite and inside
    res = track_frames(OpenCVTracker("kcf"), track)
    assert np.isfinite(res.boxes).all()
    assert (res.boxes[:, 2] >= 2).all() and (res.boxes[:, 0] + res.boxes[:, 2] / 2 <= W).all()


def test_names_are_checked():
    assert parse_baselines("csrt, static_box,csrt") == ["csrt", "static_box"]
    assert parse_baselines("none") == [] and parse_baselines(None) == []
    with pytest.raises(ParameterError, match="unknown"):
        parse_baselines("siamfc")
    with pytest.raises(ParameterError, match="unknown"):
        make_baseline("tld")
    assert set(BASELINES) == {"static_box", "csrt", "kcf", "mil"}


def test_csrt_on_a_real_otb_sequence_beats_the_static_box(shared_data):
    """OTB Crossing (real video, 120 frames): CSRT through the harness is far above a static box."""
    seq = shared_data / "tracking" / "Crossing"
    frames = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((seq / "img").glob("*.jpg"))])
    gt = np.loadtxt(seq / "groundtruth_rect.txt", delimiter=None, ndmin=2)
    gt[:, :2] -= 1  # OTB boxes are 1-based
    t = np.arange(len(frames), dtype=np.int64) * 33_333
    events = np.zeros(0, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
    track = Track("Crossing", frames, t, events, t.copy(), gt.astype(np.float32), frames.shape[2], frames.shape[1])
    csrt = track_frames(make_baseline("csrt"), track)
    static = track_frames(StaticBox(), track)
    auc = {n: metrics.evaluate({"c": (r.boxes, r.gt)}).auc for n, r in (("csrt", csrt), ("static", static))}
    assert auc["csrt"] > 0.5 and auc["csrt"] > auc["static"] + 0.2, auc


def test_evaluate_runs_baselines_alone_through_the_harness(tmp_path):
    from benchmarks_data.synth import SynthConfig, synth_dataset
    from hybrid.evaluate import evaluate
    from hybrid.results import read_boxes

    ds = tmp_path / "ds"
    synth_dataset(ds, n_sequences=2, seed=0, config=SynthConfig(width=96, height=72, n_frames=48))
    result = evaluate({}, ds, tmp_path / "eval", split="all", baselines=["static_box", "csrt"], say=lambda *a: None)
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())["trackers"]
    assert set(scores) == {"static_box", "csrt"} and scores["csrt"]["run"] == "baseline:csrt"
    assert result["sequences"] == 2
    for name in scores:
        files = sorted((tmp_path / "eval" / "results" / name).glob("*.txt"))
        assert len(files) == 2 and read_boxes(files[0]).shape[1] == 4


def test_eval_refuses_an_unknown_baseline_before_any_work(tmp_path, capsys):
    from neurosim.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "default", "--dataset", str(tmp_path / "missing"), "-o", str(out), "--baselines", "csrt,siamfc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "siamfc" in err[0] and "static_box" in err[0]
    assert not out.exists()
