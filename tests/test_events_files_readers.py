"""Event-file readers on the real files of shared/data/events and the fixtures of tests/data,
checked against independent decoders (tonic's N-MNIST loop, a from-the-spec EVT3/EVT2 decoder
written here, expelliarmus, the raw npz arrays) and the facts in shared/data/README.md."""

import numpy as np
import pytest

from neurosim.errors import InputError
from sim_events.formats import EVENT_DTYPE, detect_format, load_recording_npz, read_events, read_recording, to_tonic


def _evt3_reference(path):
    """Plain-Python EVT3 decoder following Prophesee's format description (16-bit words)."""
    data = path.read_bytes()
    start = 0
    while data[start:start + 1] == b"%":
        start = data.index(b"\n", start) + 1
    words = np.frombuffer(data[start:start + (len(data) - start) // 2 * 2], dtype="<u2").tolist()
    out = []
    y = x_base = pol = 0
    t_high = t_low = 0
    for w in words:
        kind = w >> 12
        if kind == 0x0:
            y = w & 0x7FF
        elif kind == 0x2:
            out.append((w & 0x7FF, y, (t_high << 12) | t_low, (w >> 11) & 1))
        elif kind == 0x3:
            x_base, pol = w & 0x7FF, (w >> 11) & 1
        elif kind in (0x4, 0x5):
            bits = 12 if kind == 0x4 else 8
            mask = w & ((1 << bits) - 1)
            for i in range(bits):
                if mask >> i & 1:
                    out.append((x_base + i, y, (t_high << 12) | t_low, pol))
            x_base += bits
        elif kind == 0x6:
            t_low = w & 0xFFF
        elif kind == 0x8:
            t_high = w & 0xFFF
    return np.array(out, dtype=np.int64)


def _raw_words(path, dtype):
    data = path.read_bytes()
    start = 0
    while data[start:start + 1] == b"%":
        start = data.index(b"\n", start) + 1
    return np.frombuffer(data[start:], dtype=dtype)


def test_prophesee_evt3_matches_spec_decoder_and_readme(shared_data):
    path = shared_data / "events" / "prophesee_evt3_sample.raw"
    assert detect_format(path) == "prophesee"
    events, width, height = read_events(path)
    assert events.dtype == EVENT_DTYPE
    assert (width, height) == (1280, 720)  # README: 1280x720 (the header names a gen4.1 sensor)
    assert 210_000 < len(events) < 230_000  # README: ~220k events
    ref = _evt3_reference(path)
    ref = ref[np.argsort(ref[:, 2], kind="stable")]
    assert len(ref) == len(events)
    for k, name in enumerate("xyt"):
        np.testing.assert_array_equal(events[name], ref[:, k])
    np.testing.assert_array_equal(events["p"], ref[:, 3] == 1)
    assert np.all(np.diff(events["t"]) >= 0)
    assert 0.4 < events["p"].mean() < 0.6
    # TIME_HIGH words run 2861..2863 only, so the recording spans < 3 * 4096 µs
    assert events["t"][-1] - events["t"][0] < 3 * 4096


def test_prophesee_evt3_addresses_agree_with_expelliarmus(shared_data):
    from expelliarmus import Wizard

    from sim_events.formats.prophesee import decode_evt3

    path = shared_data / "events" / "prophesee_evt3_sample.raw"
    ours = decode_evt3(_raw_words(path, "<u2"))  # stream order, before sorting by t
    theirs = Wizard(encoding="evt3").read(path)
    assert len(ours) == len(theirs)
    np.testing.assert_array_equal(ours["x"], theirs["x"])
    np.testing.assert_array_equal(ours["y"], theirs["y"])
    np.testing.assert_array_equal(ours["p"], theirs["p"] == 1)
    # expelliarmus 1.7 adds 4096 µs at every backward TIME_LOW step (11 in this file): its
    # times differ from the format's by whole multiples of 4096 µs, never otherwise
    diff = theirs["t"] - ours["t"]
    assert np.all(diff % 4096 == 0) and diff.max() == 11 * 4096


def test_prophesee_evt2_decoder_agrees_with_expelliarmus_writer(shared_data, tmp_path):
    from expelliarmus import Wizard

    events, _, _ = read_events(shared_data / "events" / "prophesee_evt3_sample.raw")
    sub = events[:20000]
    arr = np.zeros(len(sub), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    arr["t"], arr["x"], arr["y"], arr["p"] = sub["t"], sub["x"], sub["y"], sub["p"]
    out = tmp_path / "evt2.raw"
    Wizard(encoding="evt2").save(out, arr)
    back, width, height = read_events(out)  # our numpy EVT2 decoder
    np.testing.assert_array_equal(back, sub)
    theirs = Wizard(encoding="evt2").read(out)
    np.testing.assert_array_equal(back["t"], theirs["t"])
    assert width > sub["x"].max() and height > sub["y"].max()


def test_nmnist_matches_tonic_and_readme(shared_data):
    import tonic.io

    path = shared_data / "events" / "nmnist_sample.bin"
    events, width, height = read_events(path)
    assert (width, height) == (34, 34)
    assert len(events) == 4325  # README
    ref = tonic.io.read_mnist_file(str(path), dtype=tonic.io.events_struct)
    for name in "xytp":
        np.testing.assert_array_equal(events[name], ref[name].astype(events[name].dtype))
    assert np.all(np.diff(events["t"]) >= 0)


def test_nmnist_overflow_marker_advances_time(tmp_path):
    # event (x=1,y=2,ON,t=5), overflow marker (y=240), event (x=3,y=4,OFF,t=7): t = 7 + 8192
    raw = bytes([1, 2, 0x80, 0, 5, 0, 240, 0, 0, 0, 3, 4, 0x00, 0, 7])
    (tmp_path / "s.bin").write_bytes(raw)
    ev, _, _ = read_events(tmp_path / "s.bin")
    assert ev.tolist() == [(1, 2, 5, True), (3, 4, 7 + 8192, False)]


def test_aedat4_matches_readme_and_tonic(shared_data):
    import tonic.io

    path = shared_data / "events" / "dvxplorer_sample.aedat4"
    rec = read_recording(path)
    assert (rec.width, rec.height) == (320, 240)
    assert len(rec.events) == 111_954  # README
    assert (rec.events["t"][-1] - rec.events["t"][0]) / 1e6 == pytest.approx(0.59, abs=0.01)
    assert rec.frames is None  # the sample has no frames
    ref = tonic.io.read_aedat4(str(path))
    np.testing.assert_array_equal(rec.events["x"], ref["x"])
    np.testing.assert_array_equal(rec.events["t"], ref["t"].astype(np.int64))
    assert 0.4 < rec.events["p"].mean() < 0.6


def test_recording_npz_matches_raw_arrays(shared_data):
    path = shared_data / "events" / "davis346_traffic_first_half.npz"
    rec = load_recording_npz(path)
    raw = np.load(path)
    assert (rec.width, rec.height) == (346, 260)
    assert len(rec.events) == 40_050  # README
    np.testing.assert_array_equal(rec.events["t"], raw["t"])
    np.testing.assert_array_equal(rec.events["p"], raw["p"] == 1)  # +1/-1 -> bool
    np.testing.assert_array_equal(rec.frames, raw["frames"])
    assert rec.frames.shape == (30, 260, 346)
    np.testing.assert_array_equal(rec.frame_ts, raw["frame_ts"])
    assert np.all(rec.frame_exposure_us == 500.0)
    assert np.median(np.diff(rec.frame_t)) == 40_000  # 25 Hz APS


def test_to_tonic_and_toframe_on_every_real_file(shared_data):
    import tonic.transforms as T

    for name in ("dvxplorer_sample.aedat4", "nmnist_sample.bin", "davis346_traffic_first_half.npz"):
        events, w, h = read_events(shared_data / "events" / name)
        frames = T.ToFrame(sensor_size=(w, h, 2), n_time_bins=3)(to_tonic(events))
        assert frames.shape == (3, 2, h, w)
        assert abs(int(frames.sum()) - len(events)) <= 1  # tonic may drop the very last event
    legacy = np.zeros(3, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<u8"), ("p", "i1")])
    legacy["p"] = [1, -1, 1]
    assert to_tonic(legacy)["p"].tolist() == [True, False, True]


@pytest.mark.parametrize("name, content, message", [
    ("missing.raw", None, "does not exist"),
    ("notes.txt", b"hello", "not a supported event file"),
    ("broken.h5", b"garbage that is not HDF5", "does not start like a .h5 file"),
    ("short.bin", b"\x01\x02\x03", "not a whole number of 5-byte"),
    ("noheader.raw", b"\x00\x01\x02\x03", "does not start like a .raw"),
    ("nohead2.raw", b"% Date 2020\n% end\n\x00\x00", "naming its encoding"),
    ("old.aedat", b"#!AER-DAT3.1\r\n", "AEDAT 2/3"),
    ("bad.aedat4", b"#!AER-DAT4.0\r\n\x00\x00\x00\x00garbage", "corrupt or truncated"),
    ("bad.npz", b"PK\x03\x04garbage", "not a readable .npz"),
])
def test_bad_event_files_raise_one_line_input_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_events(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert str(path.name) in str(err.value)


def test_truncated_real_files_raise_input_errors(shared_data, tmp_path):
    for name in ("dvxplorer_sample.aedat4", "davis346_traffic_first_half.npz", "nmnist_sample.bin"):
        data = (shared_data / "events" / name).read_bytes()
        cut = tmp_path / name
        cut.write_bytes(data[: len(data) // 2 + 1])
        with pytest.raises(InputError):
            read_events(cut)


def test_aedat4_with_frames_written_by_dv_processing(tmp_path):
    """AEDAT4 events + APS frames (grey and BGR) written by iniVation's own dv-processing."""
    dv = pytest.importorskip("dv_processing")
    rng = np.random.default_rng(0)
    n = 500
    t = np.sort(rng.integers(10_000, 60_000, n))
    x, y, pol = rng.integers(0, 64, n), rng.integers(0, 48, n), rng.random(n) < 0.5
    path = tmp_path / "davis.aedat4"
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.DAVISConfig("DAVIS346_test", (64, 48)))
    store = dv.EventStore()
    for i in range(n):
        store.push_back(int(t[i]), int(x[i]), int(y[i]), bool(pol[i]))
    writer.writeEvents(store)
    grey = [rng.integers(0, 256, (48, 64), dtype=np.uint8) for _ in range(3)]
    for k, img in enumerate(grey):
        writer.writeFrame(dv.Frame(20_000 * k + 1000, 500, 0, 0, img, dv.FrameSource.SENSOR))
    del writer  # closes the file
    rec = read_recording(path)
    assert (rec.width, rec.height) == (64, 48)
    np.testing.assert_array_equal(rec.events["t"], t)
    np.testing.assert_array_equal(rec.events["x"], x)
    np.testing.assert_array_equal(rec.events["p"], pol)
    np.testing.assert_array_equal(rec.frames, np.stack(grey))
    np.testing.assert_array_equal(rec.frame_exposure_us, [500.0] * 3)
    np.testing.assert_array_equal(rec.frame_t, [1250, 21250, 41250])  # exposure midpoints


def test_aedat4_colour_frames_become_luminance(tmp_path):
    import cv2

    dv = pytest.importorskip("dv_processing")
    bgr = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "colour.aedat4"
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.FrameOnlyConfig("cam", (64, 48)))
    writer.writeFrame(dv.Frame(1000, bgr))
    del writer
    rec = read_recording(path)
    assert len(rec.events) == 0 and rec.frames.shape == (1, 48, 64)
    np.testing.assert_array_equal(rec.frames[0], cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))


def test_evt3_hand_made_words_vectors_and_rollover():
    from sim_events.formats.prophesee import decode_evt3

    def word(kind, value):
        return (kind << 12) | value

    words = [
        word(0x2, 5),                    # ADDR_X before any TIME_HIGH: no valid time, dropped
        word(0x8, 4095), word(0x6, 10),  # t = 4095 * 4096 + 10
        word(0x0, 7),                    # y = 7
        word(0x2, (1 << 11) | 100),      # ON event at x = 100
        word(0x3, 200),                  # vector base x = 200, OFF
        word(0x4, 0b100000000101),       # x = 200, 202, 211; base -> 212
        word(0x5, 0b10000001),           # x = 212, 219; base -> 220
        word(0x8, 0), word(0x6, 3),      # TIME_HIGH wraps 4095 -> 0: + 2**24 µs
        word(0x0, 9), word(0x2, 1),      # OFF event at (1, 9)
        word(0xA, 0), word(0xE, 0),      # trigger / others: no CD events
    ]
    ev = decode_evt3(np.array(words, dtype=np.uint16))
    t1 = 4095 * 4096 + 10
    t2 = (1 << 24) + 3
    assert ev.tolist() == [
        (100, 7, t1, True),
        (200, 7, t1, False), (202, 7, t1, False), (211, 7, t1, False),
        (212, 7, t1, False), (219, 7, t1, False),
        (1, 9, t2, False),
    ]


def test_raw_header_variants_give_encoding_and_size(tmp_path):
    from sim_events.formats.prophesee import raw_encoding_and_size, read_raw_header

    (tmp_path / "a.raw").write_bytes(b"% camera_integrator_name Prophesee\n% format EVT3;height=720;width=1280\n% end\n\x00\x00")
    fields, n = read_raw_header(tmp_path / "a.raw")
    assert raw_encoding_and_size(fields) == ("evt3", (1280, 720)) and n == len(b"% camera_integrator_name Prophesee\n% format EVT3;height=720;width=1280\n% end\n")
    assert raw_encoding_and_size({"evt": "2.0", "geometry": "640x480"}) == ("evt2", (640, 480))
    assert raw_encoding_and_size({"evt": "3.0"}) == ("evt3", None)
    # a geometry that the events contradict is an error; a plugin-name guess is not
    words = np.array([(0x8 << 12), (0x6 << 12) | 1, (0x0 << 12) | 600, (0x2 << 12) | 900], dtype="<u2")
    (tmp_path / "g.raw").write_bytes(b"% evt 3.0\n% geometry 640x480\n" + words.tobytes())
    with pytest.raises(InputError, match="outside the 640x480 sensor"):
        read_events(tmp_path / "g.raw")
    (tmp_path / "p.raw").write_bytes(b"% evt 3.0\n% plugin_name hal_plugin_gen31\n" + words.tobytes())
    ev, w, h = read_events(tmp_path / "p.raw")
    assert ev.tolist() == [(900, 600, 1, False)] and (w, h) == (901, 601)
    (tmp_path / "odd.raw").write_bytes(b"% evt 3.0\n" + words.tobytes() + b"\x00")
    with pytest.raises(InputError, match="partial EVT3 word"):
        read_events(tmp_path / "odd.raw")


# --------------------------------------------------------------------------------------------
# The same checks on the small fixtures of tests/data (always present, also in a plain clone).
# Each fixture holds part of scene_davis346.npz's events, written by another writer; the truth
# is that recording's arrays read with plain numpy (tests/data/README.md).


@pytest.fixture(scope="module")
def scene(fixture_data):
    with np.load(fixture_data / "scene_davis346.npz") as d:
        return {k: d[k] for k in d.files}


def _assert_events_equal(events, scene, sel):
    for name in "xyt":
        np.testing.assert_array_equal(events[name].astype(np.int64), scene[name][sel].astype(np.int64))
    np.testing.assert_array_equal(events["p"], scene["p"][sel] > 0)


def test_fixture_recording_npz_matches_its_arrays(fixture_data, scene):
    rec = load_recording_npz(fixture_data / "scene_davis346.npz")
    assert detect_format(fixture_data / "scene_davis346.npz") == "npz"
    assert (rec.width, rec.height) == (48, 36) and rec.frames.shape == (16, 36, 48)
    _assert_events_equal(rec.events, scene, slice(None))
    np.testing.assert_array_equal(rec.frames, scene["frames"])
    np.testing.assert_array_equal(rec.frame_t, scene["frame_ts"])
    assert np.all(np.diff(rec.events["t"]) >= 0) and np.median(np.diff(rec.frame_t)) == 40_000  # 25 Hz APS


def test_fixture_sequence_h5_holds_the_recordings_first_frames_and_boxes(fixture_data, scene):
    from sim_events.formats.sequence import read_sequence

    path = fixture_data / "scene_sequence.h5"
    assert detect_format(path) == "sequence"
    seq = read_sequence(path)
    sel = scene["t"] < scene["frame_ts"][4]
    _assert_events_equal(seq.events, scene, sel)
    np.testing.assert_array_equal(seq.frames, scene["frames"][:5])
    np.testing.assert_array_equal(seq.frame_t, scene["frame_ts"][:5])
    assert len(seq.boxes_t) == 5 and np.isfinite(seq.boxes_xywh).all()
    assert np.all((seq.boxes_xywh[:, 2:] >= 10) & (seq.boxes_xywh[:, 2:] <= 22))  # the scene's sprite sizes


def test_fixture_aedat4_written_by_dv_processing_matches_the_recording_and_tonic(fixture_data, scene):
    import tonic.io

    path = fixture_data / "dv_davis346.aedat4"
    rec = read_recording(path)
    assert detect_format(path) == "aedat4" and (rec.width, rec.height) == (48, 36)
    _assert_events_equal(rec.events, scene, scene["t"] < scene["frame_ts"][3])
    np.testing.assert_array_equal(rec.frames, scene["frames"][:4])
    np.testing.assert_array_equal(rec.frame_exposure_us, [1000.0] * 4)
    np.testing.assert_array_equal(rec.frame_t, scene["frame_ts"][:4] + 500)  # exposure midpoints
    ref = tonic.io.read_aedat4(str(path))
    np.testing.assert_array_equal(rec.events["x"], ref["x"])
    np.testing.assert_array_equal(rec.events["t"], ref["t"].astype(np.int64))


def test_fixture_evt2_written_by_expelliarmus_matches_the_recording(fixture_data, scene):
    from expelliarmus import Wizard

    path = fixture_data / "expelliarmus_evt2.raw"
    events, width, height = read_events(path)
    sel = scene["t"] < 100_000
    _assert_events_equal(events, scene, sel)
    assert (width, height) == (640, 480)  # the header names only a gen3 plugin: its sensor size
    theirs = Wizard(encoding="evt2").read(path)
    np.testing.assert_array_equal(events["t"], theirs["t"])


def test_fixture_evt3_written_by_expelliarmus_matches_spec_decoder_and_recording(fixture_data, scene):
    from expelliarmus import Wizard

    path = fixture_data / "expelliarmus_evt3.raw"
    events, width, height = read_events(path)
    assert detect_format(path) == "prophesee" and (width, height) == (1280, 720)
    ref = _evt3_reference(path)
    ref = ref[np.argsort(ref[:, 2], kind="stable")]
    for k, name in enumerate("xyt"):
        np.testing.assert_array_equal(events[name], ref[:, k])
    period = scene["t"] // 4096  # the writer kept one TIME_HIGH period: the busiest one
    sel = period == np.bincount(period).argmax()
    assert sel.sum() == len(events) > 100
    _assert_events_equal(events, scene, sel)
    theirs = Wizard(encoding="evt3").read(path)
    np.testing.assert_array_equal(np.sort(theirs["t"]), events["t"])


def test_fixture_nmnist_matches_tonic_and_the_recording(fixture_data, scene):
    import tonic.io

    path = fixture_data / "nmnist_34x34.bin"
    events, width, height = read_events(path)
    assert detect_format(path) == "nmnist" and (width, height) == (34, 34)
    ref = tonic.io.read_mnist_file(str(path), dtype=tonic.io.events_struct)
    for name in "xytp":
        np.testing.assert_array_equal(events[name], ref[name].astype(events[name].dtype))
    _assert_events_equal(events, scene, (scene["x"] < 34) & (scene["y"] < 34) & (scene["t"] < 300_000))


def test_to_tonic_and_toframe_on_every_fixture(fixture_data):
    import tonic.transforms as T

    for name in ("dv_davis346.aedat4", "nmnist_34x34.bin", "scene_davis346.npz", "expelliarmus_evt3.raw"):
        events, w, h = read_events(fixture_data / name)
        frames = T.ToFrame(sensor_size=(w, h, 2), n_time_bins=3)(to_tonic(events))
        assert frames.shape == (3, 2, h, w)
        assert abs(int(frames.sum()) - len(events)) <= 1  # tonic may drop the very last event


def test_truncated_fixtures_raise_input_errors(fixture_data, tmp_path):
    for name in ("dv_davis346.aedat4", "scene_davis346.npz", "nmnist_34x34.bin", "scene_sequence.h5"):
        data = (fixture_data / name).read_bytes()
        cut = tmp_path / name
        cut.write_bytes(data[: len(data) // 2 + 1])
        with pytest.raises(InputError) as err:
            read_events(cut)
        assert "\n" not in str(err.value)
