"""jAER AEDAT 2.0 / 3.1 reading (cross-checked with tonic's independent AER readers), box
files and ``neurosim data import``; on files made here, on the fixtures of tests/data and on the
real recordings of ../shared/data."""

from __future__ import annotations

import json
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest
import tonic.io

from benchmarks_data.recordings import read_box_file, read_jaer
from neurosim.errors import InputError
from sim_events.formats.sequence import read_sequence

PROJECT = pathlib.Path(__file__).resolve().parents[1]
W, H = 346, 260


def _events(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, W, n)
    y = rng.integers(0, H, n)
    p = rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 2_000_000, n))
    return x, y, t, p


def _write_aedat2(path: pathlib.Path, x, y, t, p, aps_every: int = 0) -> np.ndarray:
    """An AEDAT 2.0 DAVIS346 file as jAER writes it; APS samples interleaved every
    ``aps_every`` events. Returns the mask of DVS entries among all written entries."""
    addr = ((H - 1 - y).astype(np.uint32) << 22) | ((W - 1 - x).astype(np.uint32) << 12) | (p.astype(np.uint32) << 11)
    ts = t.astype(np.uint32)
    if aps_every:
        k = np.arange(0, len(addr), aps_every)
        aps = (np.uint32(1) << 31) | (np.uint32(5) << 22) | (np.uint32(7) << 12) | np.uint32(0x3FF)
        addr = np.insert(addr, k, aps)
        ts = np.insert(ts, k, ts[k])
        dvs = np.ones(len(addr), bool)
        dvs[k + np.arange(len(k))] = False
    else:
        dvs = np.ones(len(addr), bool)
    rec = np.empty(len(addr), dtype=[("a", ">u4"), ("t", ">u4")])
    rec["a"], rec["t"] = addr, ts
    header = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
              b"# AEChip: eu.seebetter.ini.chips.davis.DAVIS346B\r\n# End of ASCII Header\r\n")
    path.write_bytes(header + rec.tobytes())
    return dvs


def _polarity_packet(x, y, t, p, valid=None, overflow: int = 0) -> bytes:
    n = len(x)
    valid = np.ones(n, np.uint32) if valid is None else valid.astype(np.uint32)
    data = (x.astype(np.uint32) << 17) | (y.astype(np.uint32) << 2) | (p.astype(np.uint32) << 1) | valid
    ev = np.empty(n, dtype=[("d", "<u4"), ("t", "<u4")])
    ev["d"], ev["t"] = data, t.astype(np.uint32)
    head = struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, n, n, int(valid.sum()))
    return head + ev.tobytes()


AEDAT31_HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DAVIS346\r\n#!END-HEADER\r\n"


def test_aedat2_matches_tonic_reader(tmp_path):
    x, y, t, p = _events(5000)
    f = tmp_path / "rec.aedat"
    dvs = _write_aedat2(f, x, y, t, p, aps_every=97)
    rec = read_jaer(f)
    assert (rec.width, rec.height) == (W, H)
    _, _, ref = tonic.io.read_davis_346(str(f))
    ref = ref[dvs]
    assert len(rec.events) == len(ref) == 5000
    for name in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(rec.events[name].astype(np.int64), ref[name].astype(np.int64))
    # and equal to what was encoded
    np.testing.assert_array_equal(rec.events["x"], x)
    np.testing.assert_array_equal(rec.events["p"], p.astype(bool))


def test_aedat2_unwraps_32bit_timestamps(tmp_path):
    x, y, _, p = _events(4)
    t = np.array([2**31 - 20, 2**31 - 5, 2**31 + 10, 2**32 + 3], dtype=np.int64)  # as uint32: wraps after 2nd
    f = tmp_path / "wrap.aedat"
    _write_aedat2(f, x, y, t % (2**32), p)
    rec = read_jaer(f)
    d = np.diff(rec.events["t"])
    np.testing.assert_array_equal(d, np.diff(t))


def test_aedat31_matches_tonic_and_skips_other_packets(tmp_path):
    x, y, t, p = _events(3000, seed=1)
    valid = np.ones(3000, bool)
    valid[::50] = False
    f = tmp_path / "rec31.aedat"
    f.write_bytes(AEDAT31_HEADER + _polarity_packet(x[:1000], y[:1000], t[:1000], p[:1000], valid[:1000])
                  + _polarity_packet(x[1000:], y[1000:], t[1000:], p[1000:], valid[1000:]))
    rec = read_jaer(f)
    version, start, _ = tonic.io.read_aedat_header_from_file(str(f))
    raw = tonic.io.get_aer_events_from_file(str(f), version, start)[valid]
    a = raw["address"].astype(np.int64)
    np.testing.assert_array_equal(rec.events["x"], (a >> 17) & 0x7FFF)
    np.testing.assert_array_equal(rec.events["y"], (a >> 2) & 0x7FFF)
    np.testing.assert_array_equal(rec.events["p"], ((a >> 1) & 1).astype(bool))
    np.testing.assert_array_equal(rec.events["t"], raw["timeStamp"].astype(np.int64))
    np.testing.assert_array_equal(rec.events["x"], x[valid])
    assert (rec.width, rec.height) == (W, H)
    # a frame packet (type 2) in between is skipped; ts_overflow extends the clock
    frame_pkt = struct.pack("<hhiiiiii", 2, 1, 24, 12, 0, 2, 2, 2) + bytes(48)
    g = tmp_path / "mixed.aedat"
    g.write_bytes(AEDAT31_HEADER + _polarity_packet(x[:10], y[:10], t[:10], p[:10]) + frame_pkt
                  + _polarity_packet(x[10:20], y[10:20], t[10:20], p[10:20], overflow=1))
    rec2 = read_jaer(g)
    assert len(rec2.events) == 20
    np.testing.assert_array_equal(rec2.events["t"][10:], t[10:20] + (1 << 31))
    # truncated packet
    h = tmp_path / "trunc.aedat"
    h.write_bytes(g.read_bytes()[:-7])
    with pytest.raises(InputError, match="truncated"):
        read_jaer(h)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "neurosim.cli", *args], cwd=PROJECT, capture_output=True, text=True, timeout=120)


def test_import_recording_with_boxes(tmp_path):
    x, y, t, p = _events(20000, seed=2)
    f = tmp_path / "rec.aedat"
    _write_aedat2(f, x, y, t, p)
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("# t_us x y w h\n0 10 20 30 40\n1000000, 12.5, 22, 30, 40\n2000000 nan nan nan nan\n")
    out = tmp_path / "seq.h5"
    res = _cli("data", "import", str(f), "--boxes", str(boxes), "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["events"] == 20000 and summary["boxes"] == 3
    seq = read_sequence(out)
    assert (seq.width, seq.height) == (W, H)
    np.testing.assert_array_equal(seq.events["t"], t)
    np.testing.assert_array_equal(seq.events["x"], x)
    np.testing.assert_array_equal(seq.boxes_t, [0, 1_000_000, 2_000_000])
    np.testing.assert_allclose(seq.boxes_xywh[1], [12.5, 22, 30, 40])
    assert np.isnan(seq.boxes_xywh[2]).all()


def test_import_real_aedat4_recording(shared_data, tmp_path):
    """The real AEDAT4 recording imports too (events read by sim_events' reader)."""
    from sim_events.formats import read_events

    real = shared_data / "events" / "dvxplorer_sample.aedat4"
    out4, b4 = tmp_path / "dvx.h5", tmp_path / "b4.txt"
    ev, w, h = read_events(real)
    b4.write_text(f"{int(ev['t'][0])} 5 5 20 20\n")
    res = _cli("data", "import", str(real), "--boxes", str(b4), "-o", str(out4), "--json")
    assert res.returncode == 0, res.stderr
    seq4 = read_sequence(out4)
    assert len(seq4.events) == len(ev) and (seq4.width, seq4.height) == (w, h)


@pytest.mark.parametrize("content, needle", [
    ("0 1 2 3\n", "has 4 values"),
    ("5 1 2 3 4\n3 1 2 3 4\n", "do not increase"),
    ("", "no boxes"),
    ("0 5000 5000 10 10\n", "overlaps"),
])
def test_import_bad_box_file_exits_2_without_output(tmp_path, content, needle):
    x, y, t, p = _events(100)
    f = tmp_path / "rec.aedat"
    _write_aedat2(f, x, y, t, p)
    boxes = tmp_path / "boxes.txt"
    boxes.write_text(content)
    out = tmp_path / "seq.h5"
    res = _cli("data", "import", str(f), "--boxes", str(boxes), "-o", str(out))
    assert res.returncode == 2 and needle in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def test_box_file_reader(tmp_path):
    b = tmp_path / "b.txt"
    b.write_text("10 1 2 3 4\n20,1,2,0,4\n")
    t, xywh = read_box_file(b)
    np.testing.assert_array_equal(t, [10, 20])
    assert np.isnan(xywh[1]).all()  # zero width = absent


def test_import_into_a_dataset_folder_and_load_event_only_windows(tmp_path):
    from benchmarks_data.loaders import TrackingWindows

    ds_dir = tmp_path / "real"
    for k in range(2):
        x, y, t, p = _events(4000, seed=10 + k)
        f = tmp_path / f"rec{k}.aedat"
        _write_aedat2(f, x, y, t, p)
        b = tmp_path / f"b{k}.txt"
        b.write_text(f"{int(t[0])} 10 10 40 30\n{int(t[-1])} 110 60 40 30\n")
        res = _cli("data", "import", str(f), "--boxes", str(b), "-o", str(ds_dir), "--json")
        assert res.returncode == 0, res.stderr
    index = json.loads((ds_dir / "index.json").read_text())
    assert [e["name"] for e in index["sequences"]] == ["rec0", "rec1"]
    assert index["splits"] == {"test": ["rec0", "rec1"]}
    info = _cli("data", "info", str(ds_dir), "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["total_events"] == 8000
    ds = TrackingWindows(ds_dir, split="test", frames_per_window=1, snn_rate_hz=300.0)
    assert len(ds) > 50
    item = ds[5]
    assert not bool(item["has_frames"]) and float(item["frames"].abs().sum()) == 0.0
    assert int(item["events"].sum()) == len(ds.events(5)) > 0
    # boxes interpolate linearly between the two annotated times
    meta = ds.sequences[0]
    tt = item["bin_t"][0].numpy()
    f = (tt - meta.box_t[0]) / (meta.box_t[1] - meta.box_t[0])
    np.testing.assert_allclose(item["boxes"][0, :, 0].numpy(), 10 + 100 * f, rtol=1e-4)
    # re-importing a name replaces its entry
    res = _cli("data", "import", str(tmp_path / "rec0.aedat"), "--boxes", str(tmp_path / "b0.txt"), "-o", str(ds_dir),
               "--split", "val", "--json")
    assert res.returncode == 0
    index = json.loads((ds_dir / "index.json").read_text())
    assert len(index["sequences"]) == 2 and index["splits"] == {"test": ["rec1"], "val": ["rec0"]}


# --------------------------------------------------------------------------------------------
# The fixtures of tests/data: jAER files holding the first 0.1 s of scene_davis346.npz's events
# (tests/data/README.md), read by read_jaer, by tonic and compared with the recording's arrays.


@pytest.fixture(scope="module")
def scene_first_100ms(fixture_data):
    with np.load(fixture_data / "scene_davis346.npz") as d:
        sel = d["t"] < 100_000
        return {k: d[k][sel] for k in "xytp"}


def test_fixture_aedat2_matches_tonic_and_the_recording(fixture_data, scene_first_100ms):
    path = fixture_data / "jaer_davis346.aedat"
    rec = read_jaer(path)
    assert (rec.width, rec.height) == (W, H)
    _, _, ref = tonic.io.read_davis_346(str(path))
    truth = scene_first_100ms
    k = np.arange(0, len(truth["t"]), 50)  # an APS sample precedes every 50th event: tonic keeps them
    dvs = np.ones(len(ref), bool)
    dvs[k + np.arange(len(k))] = False
    ref = ref[dvs]
    assert len(rec.events) == len(ref) == len(truth["t"])
    for name in "xyt":
        np.testing.assert_array_equal(rec.events[name].astype(np.int64), truth[name].astype(np.int64))
        np.testing.assert_array_equal(rec.events[name].astype(np.int64), ref[name].astype(np.int64))
    np.testing.assert_array_equal(rec.events["p"], truth["p"] > 0)


def test_fixture_aedat31_matches_tonic_and_the_recording(fixture_data, scene_first_100ms):
    path = fixture_data / "jaer_davis346_v31.aedat"
    rec = read_jaer(path)
    version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
    assert version == 3.1
    truth = scene_first_100ms
    np.testing.assert_array_equal(rec.events["x"], truth["x"])
    np.testing.assert_array_equal(rec.events["y"], truth["y"])
    np.testing.assert_array_equal(rec.events["t"], truth["t"])
    np.testing.assert_array_equal(rec.events["p"], truth["p"] > 0)
    assert (rec.width, rec.height) == (W, H)


def test_import_fixture_aedat4_with_the_scenes_boxes(fixture_data, tmp_path):
    """``data import`` of the dv-processing AEDAT4 fixture with the boxes of scene_sequence.h5."""
    scene_seq = read_sequence(fixture_data / "scene_sequence.h5")
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("".join(f"{t} {x} {y} {w} {h}\n" for t, (x, y, w, h) in zip(scene_seq.boxes_t[:4], scene_seq.boxes_xywh)))
    out = tmp_path / "seq.h5"
    res = _cli("data", "import", str(fixture_data / "dv_davis346.aedat4"), "--boxes", str(boxes), "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["boxes"] == 4
    seq = read_sequence(out)
    assert (seq.width, seq.height) == (48, 36)
    with np.load(fixture_data / "scene_davis346.npz") as d:
        sel = d["t"] < d["frame_ts"][3]
        np.testing.assert_array_equal(seq.events["t"], d["t"][sel])
        np.testing.assert_array_equal(seq.events["x"], d["x"][sel])
    np.testing.assert_allclose(seq.boxes_xywh, scene_seq.boxes_xywh[:4], rtol=1e-6)
