"""The procedural high-speed tracking benchmark: exact boxes, APS frames of one 240 fps frame
(or a configured longer exposure), determinism per seed, difficulty (fast motion between APS
frames), look-alike distractors on their own slow paths, frames that localise the target."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks_data.build import sequence_seed
from benchmarks_data.synth import SynthConfig, SynthSequence, synth_dataset
from neurosim.errors import ParameterError
from sim_events.formats.sequence import read_sequence

TINY = SynthConfig(width=96, height=72, n_frames=32, target_size_px=(10, 16), n_distractors=2)


def test_boxes_bound_the_rendered_target_exactly():
    cfg = dataclasses.replace(TINY, n_distractors=0, occluder=False, lighting=0.0, subframes=1, n_frames=40)
    for seed in range(3):
        seq = SynthSequence(cfg, seed)
        seq.background[:] = 0.0  # only the target is non-zero
        _, boxes = seq.boxes
        for k in range(0, cfg.n_frames, 3):
            ys, xs = np.nonzero(seq.frame(k))
            x, y, w, h = boxes[k]
            # bilinear placement at a sub-pixel offset: the lit pixels span [floor(x), ceil(x + w))
            assert np.floor(x) - 1 <= xs.min() <= x + 1 and x + w - 1 <= xs.max() + 1 <= np.ceil(x + w) + 1
            assert np.floor(y) - 1 <= ys.min() <= y + 1 and y + h - 1 <= ys.max() + 1 <= np.ceil(y + h) + 1


def test_scale_changes_and_motion_is_fast_between_aps_frames():
    cfg = SynthConfig()  # the default benchmark
    disp, scale = [], []
    for seed in range(4):
        _, b = SynthSequence(cfg, seed).boxes
        c = b[:, :2] + b[:, 2:] / 2
        aps = c[::8]  # 30 Hz APS from 240 fps
        disp.append(np.linalg.norm(np.diff(aps, axis=0), axis=1).mean())
        area = b[:, 2] * b[:, 3]
        scale.append(np.sqrt(area.max() / area.min()))
    assert np.mean(disp) > 10.0  # px between two APS frames
    assert max(scale) > 1.2  # the target changes size


def _aps_check(seq, src, cfg, n_aps):
    """APS frame j = the mean of the ``aps_exposure_frames`` input frames centred on frame 8j."""
    frames = np.stack([f for _, f in src]).astype(np.float64)
    t, _ = src.boxes
    m = cfg.aps_exposure_frames
    assert len(seq.frames) == n_aps
    np.testing.assert_array_equal(seq.frame_t, t[::8])
    for j, k in enumerate(range(0, cfg.n_frames, 8)):
        lo, hi = max(k - (m - 1) // 2, 0), min(k + m // 2, cfg.n_frames - 1)
        np.testing.assert_array_equal(seq.frames[j], np.clip(np.rint(frames[lo:hi + 1].mean(0)), 0, 255).astype(np.uint8))
        assert seq.frame_exposure_us[j] == pytest.approx((hi - lo + 1) * 1e6 / 240.0)


def test_dataset_is_deterministic_and_aps_frames_are_240fps_frames(tmp_path):
    a = synth_dataset(tmp_path / "a", n_sequences=2, seed=4, config=TINY)
    b = synth_dataset(tmp_path / "b", n_sequences=2, seed=4, config=TINY)
    c = synth_dataset(tmp_path / "c", n_sequences=2, seed=5, config=TINY)
    assert a["failed"] == b["failed"] == c["failed"] == []
    for name in ("synth_000", "synth_001"):
        fa = (tmp_path / "a" / "sequences" / f"{name}.h5").read_bytes()
        assert fa == (tmp_path / "b" / "sequences" / f"{name}.h5").read_bytes()
        assert fa != (tmp_path / "c" / "sequences" / f"{name}.h5").read_bytes()
    seq = read_sequence(tmp_path / "a" / "sequences" / "synth_001.h5")
    src = SynthSequence(TINY, sequence_seed(4, "synth_001"))
    # boxes: one per input frame, the renderer's exact boxes
    t, xywh = src.boxes
    np.testing.assert_array_equal(seq.boxes_t, t)
    np.testing.assert_array_equal(seq.boxes_xywh, xywh)
    # APS (default): every 8th input frame (30 Hz) as it is — one 240 fps frame, 1/240 s exposure
    assert TINY.aps_exposure_frames == 1
    _aps_check(seq, src, TINY, 4)
    np.testing.assert_array_equal(seq.frames[1], src.frame(8))
    # events exist and cover the target's path
    assert len(seq.events) > 1000
    ev = seq.events
    near = 0
    for k in range(0, 32, 4):
        sel = (ev["t"] >= t[k]) & (ev["t"] < t[k] + 4200)
        x, y, w, h = xywh[k]
        inside = (ev["x"][sel] >= x - 4) & (ev["x"][sel] <= x + w + 4) & (ev["y"][sel] >= y - 4) & (ev["y"][sel] <= y + h + 4)
        near += int(inside.sum())
    assert near > 100


def test_long_aps_exposure_is_the_mean_of_the_input_frames_around_it(tmp_path):
    cfg = dataclasses.replace(TINY, aps_exposure_frames=5)
    assert synth_dataset(tmp_path / "a", n_sequences=1, seed=4, config=cfg)["failed"] == []
    seq = read_sequence(tmp_path / "a" / "sequences" / "synth_000.h5")
    _aps_check(seq, SynthSequence(cfg, sequence_seed(4, "synth_000")), cfg, 4)


def test_distractors_look_alike_but_move_on_their_own_slow_paths():
    cfg = SynthConfig()
    for seed in range(3):
        seq = SynthSequence(cfg, seed)
        fps = cfg.fps * cfg.subframes
        target, *others = seq.objects
        assert len(others) == cfg.n_distractors
        v_t = np.diff(target.path, axis=0) * fps  # px/s per sub-frame
        assert 300.0 - 1e-6 <= np.linalg.norm(v_t, axis=1).max() <= 1200.0 + 1e-6
        for d in others:
            assert d.texture.shape[0] > 0 and d.mask.shape == d.texture.shape
            v = np.diff(d.path, axis=0) * fps
            assert np.linalg.norm(v, axis=1).max() <= 120.0 + 1e-6  # slow or at rest
            assert not np.allclose(d.path - d.path[0], target.path - target.path[0], atol=5.0)  # not in lock-step


def test_aps_frames_localise_the_target_better_than_assuming_it_did_not_move():
    """OpenCV normalized template matching (an independent localiser): the target cut from APS
    frame k, searched in the whole APS frame k+1, lands nearer the true centre than frame k's centre."""
    cv2 = pytest.importorskip("cv2")
    cfg = dataclasses.replace(SynthConfig(), n_frames=121)
    err_tm, err_still = [], []
    for seed in range(2):
        seq = SynthSequence(cfg, seed)
        _, b = seq.boxes
        frames = {k: seq.frame(k) for k in range(0, cfg.n_frames, 8)}
        c = b[:, :2] + (b[:, 2:] - 1) / 2
        for k in range(0, cfg.n_frames - 8, 8):
            x, y, w, h = (int(round(v)) for v in b[k])
            tpl = frames[k][y:y + h, x:x + w]
            _, _, _, loc = cv2.minMaxLoc(cv2.matchTemplate(frames[k + 8], tpl, cv2.TM_CCOEFF_NORMED))
            found = np.array([loc[0] + (tpl.shape[1] - 1) / 2, loc[1] + (tpl.shape[0] - 1) / 2])
            err_tm.append(np.linalg.norm(found - c[k + 8]))
            err_still.append(np.linalg.norm(c[k] - c[k + 8]))
    err_tm, err_still = np.array(err_tm), np.array(err_still)
    assert np.mean(err_tm <= 8.0) > 0.5 > np.mean(err_still <= 8.0)
    assert np.median(err_tm) < 0.5 * np.median(err_still)


def test_bad_configuration():
    with pytest.raises(ParameterError, match="240"):
        SynthConfig(fps=120).check()
    with pytest.raises(ParameterError, match="fit"):
        SynthConfig(width=40, height=40).check()
    with pytest.raises(ParameterError, match="distractor_speed_px_s"):
        SynthConfig(distractor_speed_px_s=(100.0, 50.0)).check()
