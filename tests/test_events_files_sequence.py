"""The sequence HDF5 file: layout (checked with raw h5py), round trips (real recording,
tonic), time windows against brute force, bounded writer memory, and bad input."""

import json

import h5py
import numpy as np
import pytest

from neurosim.errors import InputError, OutputError, ParameterError
from sim_events.formats import load_recording_npz, read_events
from sim_events.formats.sequence import SequenceReader, SequenceWriter, read_sequence, write_sequence


def _random_events(n, seed=0, width=64, height=48, t0=1_000_000_123, span_us=3_000_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + span_us, n))
    return rng.integers(0, width, n), rng.integers(0, height, n), t, rng.random(n) < 0.4


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_layout_matches_design_with_raw_h5py(tmp_path):
    x, y, t, p = _random_events(5000)
    frames = np.random.default_rng(1).integers(0, 256, (3, 48, 64), dtype=np.uint8)
    path = tmp_path / "seq.h5"
    with SequenceWriter(path, 64, 48, source="unit test", simulator={"seed": 7, "contrast_threshold_on": 0.2}) as w:
        w.add_events(x[:2000], y[:2000], t[:2000], p[:2000])
        w.add_frames(frames, [t[0], t[100], t[4000]], exposure_us=[500, 500, 500])
        w.add_events(x[2000:], y[2000:], t[2000:], p[2000:])
        w.set_boxes(np.array([t[0], t[100]]), [[1, 2, 3, 4], [np.nan] * 4])
    with h5py.File(path, "r") as f:
        assert f["events/x"].dtype == np.uint16 and f["events/y"].dtype == np.uint16
        assert f["events/t"].dtype == np.int64 and f["events/p"].dtype == np.uint8
        off = int(f["t_offset"][()])
        np.testing.assert_array_equal(f["events/t"][:] + off, t)
        np.testing.assert_array_equal(f["events/p"][:], p.astype(np.uint8))
        np.testing.assert_array_equal(f["events/x"][:], x)
        assert f["events/t"].chunks is not None and f["events/t"].compression == "gzip"
        # ms_to_idx[k] = index of the first event at or after k ms (relative), brute force
        ms = f["ms_to_idx"][:]
        rel = t - off
        k = np.arange(ms.shape[0])
        np.testing.assert_array_equal(ms, np.searchsorted(rel, k * 1000, side="left"))
        assert ms[-1] == len(t)
        np.testing.assert_array_equal(f["frames/data"][:], frames)
        assert f["frames/t"][:].tolist() == [t[0], t[100], t[4000]]
        assert f["frames/exposure_us"][:].tolist() == [500.0] * 3
        assert f["boxes/xywh"].dtype == np.float32 and np.isnan(f["boxes/xywh"][1]).all()
        a = f.attrs
        assert (a["width"], a["height"], a["format_version"], a["source"]) == (64, 48, 1, "unit test")
        assert json.loads(a["simulator"])["seed"] == 7
        assert a["neurosim_version"]


def test_real_recording_round_trips_and_tonic_toframe_works(shared_data, tmp_path):
    import tonic.transforms as T

    rec = load_recording_npz(shared_data / "events" / "davis346_traffic_first_half.npz")
    path = write_sequence(tmp_path / "traffic.h5", rec)
    back = read_sequence(path)
    np.testing.assert_array_equal(back.events, rec.events)
    np.testing.assert_array_equal(back.frames, rec.frames)
    np.testing.assert_array_equal(back.frame_t, rec.frame_t)
    events, w, h = read_events(path)
    assert (w, h) == (346, 260)
    frames = T.ToFrame(sensor_size=(w, h, 2), time_window=40_000, include_incomplete=True)(events)
    # independent count: the npz's own arrays, binned by pixel and polarity
    raw = np.load(shared_data / "events" / "davis346_traffic_first_half.npz")
    on = np.zeros((h, w), int)
    np.add.at(on, (raw["y"][raw["p"] > 0], raw["x"][raw["p"] > 0]), 1)
    per_pixel_on = frames[:, 1].sum(axis=0)
    assert int(frames.sum()) == 40_050
    np.testing.assert_array_equal(per_pixel_on, on)


def test_time_windows_match_brute_force(tmp_path):
    x, y, t, p = _random_events(20_000, seed=3)
    path = tmp_path / "w.h5"
    with SequenceWriter(path, 64, 48) as w:
        for a in range(0, len(t), 777):
            w.add_events(x[a:a + 777], y[a:a + 777], t[a:a + 777], p[a:a + 777])
    rng = np.random.default_rng(4)
    with SequenceReader(path) as r:
        for _ in range(300):
            t0, t1 = np.sort(rng.integers(t[0] - 5000, t[-1] + 5000, 2))
            if rng.random() < 0.3:
                t0 = int(t[rng.integers(len(t))])
            sel = (t >= t0) & (t < t1)
            ev = r.events(int(t0), int(t1))
            np.testing.assert_array_equal(ev["t"], t[sel])
            np.testing.assert_array_equal(ev["x"], x[sel])
            np.testing.assert_array_equal(ev["p"], p[sel])
    win = read_sequence(path, int(t[10]), int(t[500]))
    assert len(win.events) == np.count_nonzero((t >= t[10]) & (t < t[500]))


def test_writer_memory_is_bounded_over_1000_chunks(tmp_path):
    path = tmp_path / "long.h5"
    buffer_events = 4096
    peak = 0
    rng = np.random.default_rng(5)
    t_next = 0
    with SequenceWriter(path, 64, 48, buffer_events=buffer_events) as w:
        for _ in range(1000):
            n = int(rng.integers(0, 600))
            t = t_next + np.sort(rng.integers(0, 3000, n))
            t_next += 3000
            w.add_events(rng.integers(0, 64, n), rng.integers(0, 48, n), t, rng.random(n) < 0.5)
            peak = max(peak, w.buffered_events)
            assert sum(len(c[0]) for c in w._buf) == w.buffered_events  # nothing else is kept
        total = w.num_events
    assert peak < buffer_events + 600  # never more than one flush threshold + one chunk
    assert total > 100_000  # ~300k events went through a 4k buffer
    with SequenceReader(path) as r:
        assert r.num_events == total
        ms = r._ms
        t_all = r.events()["t"] - r.t_offset
    np.testing.assert_array_equal(ms, np.searchsorted(t_all, np.arange(len(ms)) * 1000))


def test_out_of_order_chunk_raises_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(ParameterError, match="time order"):
        with SequenceWriter(path, 8, 8) as w:
            w.add_events([1], [1], [1000], [1])
            w.add_events([1], [1], [999], [1])
    assert _files(tmp_path) == []
    with pytest.raises(ParameterError, match="not sorted"):
        with SequenceWriter(path, 8, 8) as w:
            w.add_events([1, 2], [1, 1], [1000, 10], [1, 0])
    with pytest.raises(ParameterError, match="outside the 8x8"):
        with SequenceWriter(path, 8, 8) as w:
            w.add_events([8], [1], [1000], [1])
    with pytest.raises(ParameterError, match="do not increase"):
        with SequenceWriter(path, 8, 8) as w:
            w.add_frames(np.zeros((2, 8, 8), np.uint8), [5, 5])
    assert _files(tmp_path) == []


def test_crash_inside_writer_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with SequenceWriter(tmp_path / "s.h5", 8, 8) as w:
            w.add_events([1], [1], [1000], [1])
            raise RuntimeError("simulated crash")
    assert _files(tmp_path) == []


def test_unwritable_output_raises_output_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        SequenceWriter(tmp_path / "missing" / "s.h5", 8, 8)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match="does not exist"):
        SequenceWriter(tmp_path / "a_file" / "s.h5", 8, 8)  # parent is a file
    (tmp_path / "dir.h5").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        SequenceWriter(tmp_path / "dir.h5", 8, 8)
    assert _files(tmp_path) == ["a_file", "dir.h5"]


def test_corrupt_truncated_and_foreign_files_raise_input_error(tmp_path):
    x, y, t, p = _random_events(50_000)
    good = tmp_path / "good.h5"
    with SequenceWriter(good, 64, 48) as w:
        w.add_events(x, y, t, p)
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    for bad, message in ((cut, "corrupt or truncated"), (foreign, "not a neurosim/DSEC sequence"),
                         (garbage, "corrupt or truncated"), (tmp_path / "none.h5", "does not exist")):
        with pytest.raises(InputError, match=message) as err:
            read_sequence(bad)
        assert "\n" not in str(err.value) and bad.name in str(err.value)


def test_same_content_gives_byte_identical_files(tmp_path):
    import time

    x, y, t, p = _random_events(3000)
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for path in paths:
        with SequenceWriter(path, 64, 48, source="s", simulator={"seed": 1}) as w:
            w.add_events(x, y, t, p)
            w.add_frames(np.zeros((2, 48, 64), np.uint8), [t[0], t[10]])
            w.set_boxes(np.array([t[0]]), [[1, 2, 3, 4]])
        time.sleep(1.1)  # HDF5 would record differing modification times if it tracked them
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_dsec_style_file_without_attributes_is_readable(tmp_path):
    """A DSEC events.h5 (events/{x,y,t,p}, t_offset, ms_to_idx; no size attributes)."""
    x, y, t, p = _random_events(4000, width=640, height=480)
    path = tmp_path / "events.h5"
    off = int(t[0]) - 17
    rel = t - off
    with h5py.File(path, "w") as f:
        f["events/x"], f["events/y"] = x.astype(np.uint16), y.astype(np.uint16)
        f["events/t"], f["events/p"] = rel.astype(np.int64), p.astype(np.uint8)
        f["t_offset"] = np.int64(off)
        f["ms_to_idx"] = np.searchsorted(rel, np.arange(rel[-1] // 1000 + 1) * 1000).astype(np.uint64)
    events, w, h = read_events(path)
    assert (w, h) == (int(x.max()) + 1, int(y.max()) + 1)
    np.testing.assert_array_equal(events["t"], t)
    win = read_sequence(path, int(t[100]), int(t[900]))
    np.testing.assert_array_equal(win.events["t"], t[(t >= t[100]) & (t < t[900])])
