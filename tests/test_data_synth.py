"""The procedural high-speed tracking benchmark: exact boxes, long-exposure APS frames,
determinism per seed, difficulty (fast motion between APS frames)."""

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


def test_dataset_is_deterministic_and_aps_frames_are_long_exposures(tmp_path):
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
    frames = np.stack([f for _, f in src]).astype(np.float64)
    # boxes: one per input frame, the renderer's exact boxes
    t, xywh = src.boxes
    np.testing.assert_array_equal(seq.boxes_t, t)
    np.testing.assert_array_equal(seq.boxes_xywh, xywh)
    # APS: every 8th frame (30 Hz), the mean of the 5 input frames centred on it
    assert len(seq.frames) == 4
    np.testing.assert_array_equal(seq.frame_t, t[::8])
    for j, k in enumerate(range(0, 32, 8)):
        lo, hi = max(k - 2, 0), min(k + 2, 31)
        np.testing.assert_array_equal(seq.frames[j], np.clip(np.rint(frames[lo:hi + 1].mean(0)), 0, 255).astype(np.uint8))
        assert seq.frame_exposure_us[j] == pytest.approx((hi - lo + 1) * 1e6 / 240.0)
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


def test_bad_configuration():
    with pytest.raises(ParameterError, match="240"):
        SynthConfig(fps=120).check()
    with pytest.raises(ParameterError, match="fit"):
        SynthConfig(width=40, height=40).check()
