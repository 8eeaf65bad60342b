"""The torch Dataset over a dataset folder: event binning, box interpolation, crops, raw
events (tonic), against independent references (per-event loops, np.interp, tonic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks_data.loaders import ConcatWindows, TrackingWindows, bin_events, crop_frames, interpolate_boxes
from benchmarks_data.synth import SynthConfig, synth_dataset
from sim_events.formats.events import make_events
from sim_events.formats.sequence import read_sequence


def test_bin_events_equals_a_per_event_loop():
    rng = np.random.default_rng(0)
    n = 3000
    ev = make_events(rng.integers(0, 40, n), rng.integers(0, 30, n), np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n))
    edges = np.array([1000, 2500, 4000, 7000, 9000])
    x0, y0, w, h = 5, 3, 20, 16
    got = bin_events(ev, edges, w, h, x0, y0)
    ref = np.zeros((4, 2, h, w), np.float32)
    for e in ev:  # the reference: one event at a time
        b = int(np.searchsorted(edges, e["t"], side="right")) - 1
        xx, yy = int(e["x"]) - x0, int(e["y"]) - y0
        if 0 <= b < 4 and 0 <= xx < w and 0 <= yy < h:
            ref[b, int(e["p"]), yy, xx] += 1
    np.testing.assert_array_equal(got, ref)
    assert bin_events(ev[:0], edges, w, h).shape == (4, 2, h, w)


def test_interpolate_boxes_equals_np_interp_and_handles_nan():
    bt = np.array([0, 100, 200, 300])
    boxes = np.array([[0, 0, 10, 10], [10, 20, 12, 14], [np.nan] * 4, [30, 30, 5, 5]], np.float32)
    t = np.array([-50, 0, 25, 50, 100, 150, 200, 250, 300, 400])
    got = interpolate_boxes(bt, boxes, t)
    for c in range(4):
        np.testing.assert_allclose(got[:5, c], np.interp(t[:5], bt[:2], boxes[:2, c]), rtol=1e-6)
    assert np.isnan(got[5]).all() and np.isnan(got[6]).all() and np.isnan(got[7]).all()
    np.testing.assert_array_equal(got[8], boxes[3])
    np.testing.assert_array_equal(got[9], boxes[3])  # held after the last box


def test_crop_frames_pads_with_zeros():
    f = np.arange(2 * 5 * 6, dtype=np.uint8).reshape(2, 5, 6)
    c = crop_frames(f, -2, 3, 4, 4)
    assert c.shape == (2, 4, 4)
    np.testing.assert_array_equal(c[:, :2, 2:], f[:, 3:5, 0:2])
    assert (c[:, :, :2] == 0).all() and (c[:, 2:, :] == 0).all()


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "ds"
    cfg = SynthConfig(width=96, height=72, n_frames=48, target_size_px=(10, 16), n_distractors=1)
    report = synth_dataset(out, n_sequences=2, seed=1, config=cfg, test_fraction=0.5)
    assert report["failed"] == []
    return out


def test_windows_full_frame_match_the_sequence_file(tiny_dataset):
    ds = TrackingWindows(tiny_dataset, split=None, frames_per_window=2, snn_rate_hz=120.0)
    assert ds.bins_per_frame == 4 and len(ds) == 2 * (6 - 2)  # 48 frames / 8 = 6 APS frames each
    item = ds[3]
    s, t0, t1 = ds.window_span(3)
    seq = read_sequence(ds.sequences[s].path)
    k = int(ds.windows[3][1])
    np.testing.assert_array_equal(item["frames"][:, 0].numpy() * 255.0, seq.frames[k:k + 2].astype(np.float32))
    # events of each bin: those with edge_b <= t < edge_b+1, counted by polarity
    ev = seq.events
    edges = np.concatenate([np.linspace(seq.frame_t[k + j], seq.frame_t[k + j + 1], 5)[:4] for j in range(2)] + [[seq.frame_t[k + 2]]])
    edges = np.floor(edges).astype(np.int64)
    for b in range(8):
        sel = (ev["t"] >= edges[b]) & (ev["t"] < edges[b + 1])
        on = int(ev["p"][sel].sum())
        assert int(item["events"][b // 4, b % 4, 1].sum()) == on
        assert int(item["events"][b // 4, b % 4, 0].sum()) == int(sel.sum()) - on
    # boxes at the bin ends, interpolated from the per-input-frame boxes
    np.testing.assert_allclose(item["boxes"].reshape(-1, 4).numpy(),
                               np.stack([np.interp(edges[1:], seq.boxes_t, seq.boxes_xywh[:, c]) for c in range(4)], 1), rtol=1e-5)
    assert item["box_valid"].all()
    # raw events in tonic's layout, usable by tonic transforms
    import tonic.transforms as T

    raw = ds.events(3)
    assert raw.dtype.names == ("x", "y", "t", "p") and len(raw) == int(item["events"].sum())
    frames = T.ToFrame(sensor_size=(96, 72, 2), n_time_bins=3)(raw)
    # (tonic's time binning leaves out the event that sits exactly on its last edge)
    assert frames.shape == (3, 2, 72, 96) and len(raw) - 1 <= frames.sum() <= len(raw)


def test_training_crops_follow_the_target_and_are_reproducible(tiny_dataset):
    full = TrackingWindows(tiny_dataset, split="train", frames_per_window=1, snn_rate_hz=240.0)
    crop = TrackingWindows(tiny_dataset, split="train", frames_per_window=1, snn_rate_hz=240.0, crop=(32, 32), seed=5)
    assert len(crop) == len(full) > 0
    for i in range(len(crop)):
        a, f = crop[i], full[i]
        x0, y0 = (int(v) for v in a["offset"])
        np.testing.assert_allclose(a["boxes"].numpy() + [x0, y0, 0, 0], f["boxes"].numpy(), rtol=1e-6)
        # the crop is the full frame's pixels (zero outside the sensor)
        exp = crop_frames((f["frames"][:, 0].numpy() * 255).astype(np.uint8), x0, y0, 32, 32)
        np.testing.assert_array_equal((a["frames"][:, 0].numpy() * 255).round().astype(np.uint8), exp)
        # the target centre at the first frame lies inside the crop (jitter <= 1/4 crop)
        bx, by, bw, bh = a["frame_boxes"][0].tolist()
        assert 0 <= bx + bw / 2 <= 32 and 0 <= by + bh / 2 <= 32
        assert a["events"].sum() <= f["events"].sum()
    again = TrackingWindows(tiny_dataset, split="train", frames_per_window=1, snn_rate_hz=240.0, crop=(32, 32), seed=5)
    assert torch.equal(again[1]["events"], crop[1]["events"])
    crop.set_epoch(1)
    assert any(not torch.equal(again[i]["offset"], crop[i]["offset"]) for i in range(len(crop)))
    batch = next(iter(torch.utils.data.DataLoader(crop, batch_size=3)))
    assert batch["events"].shape == (3, 1, 8, 2, 32, 32) and batch["boxes"].shape == (3, 1, 8, 4)


def test_concat_windows_are_the_parts_in_order(tiny_dataset):
    kw = dict(frames_per_window=1, snn_rate_hz=240.0, crop=(32, 32), seed=5)
    a, b = TrackingWindows(tiny_dataset, split="train", **kw), TrackingWindows(tiny_dataset, split="test", **kw)
    both = ConcatWindows([a, b])
    assert len(both) == len(a) + len(b)
    assert torch.equal(both[0]["events"], a[0]["events"])
    assert torch.equal(both[len(a)]["events"], b[0]["events"])
    assert torch.equal(both[-1]["boxes"], b[len(b) - 1]["boxes"])
    both.set_epoch(3)
    assert a.epoch == b.epoch == 3
    with pytest.raises(IndexError):
        both[len(both)]
    from neurosim.errors import ParameterError

    other_rate = TrackingWindows(tiny_dataset, split="test", frames_per_window=1, snn_rate_hz=480.0)
    with pytest.raises(ParameterError, match="bins per APS frame"):
        ConcatWindows([a, other_rate])


def test_bad_dataset_and_split_names(tmp_path, tiny_dataset):
    from neurosim.errors import InputError, ParameterError

    with pytest.raises(InputError, match="not a neurosim dataset"):
        TrackingWindows(tmp_path)
    with pytest.raises(ParameterError, match="split"):
        TrackingWindows(tiny_dataset, split="nope")


def test_bin_events_dense_and_sparse_paths_agree_with_histogramdd():
    rng = np.random.default_rng(3)
    edges = np.arange(0, 10_001, 1000)
    for n in (50, 20_000):  # sparse (unique counts) and dense (bincount) paths
        ev = make_events(rng.integers(0, 16, n), rng.integers(0, 12, n), np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n))
        ref, _ = np.histogramdd(np.stack([ev["t"], ev["p"].astype(int), ev["y"], ev["x"]], 1).astype(float),
                                bins=[edges, [0, 1, 2], np.arange(13), np.arange(17)])
        np.testing.assert_array_equal(bin_events(ev, edges, 16, 12), ref.astype(np.float32))
