"""FE108 sequence folders with the raw recording (``img/`` + ``events.aedat4`` +
``groundtruth_rect.txt``; sim_events.formats.fe240hz.read_fe108_raw).

The recordings are written by iniVation's own dv-processing (events and APS frames with their
times); ``img/`` holds a stretch of those frames, as FE108's folders do. References: the events
and frame times the recording was written with, and the stretch's known start."""

import json
import shutil

import numpy as np
import pytest

from neurosim.cli import main
from neurosim.errors import InputError
from sim_events.formats import detect_format, read_recording

dv = pytest.importorskip("dv_processing")
cv2 = pytest.importorskip("cv2")

W, H = 64, 48
FRAMES = 12
PERIOD = 25_000  # µs: 40 Hz APS
EXPOSURE = 2_000
T0 = 1_600_000_000_000_000  # DV's absolute µs clock


def frame_t(k):
    return T0 + PERIOD * k + EXPOSURE // 2  # the exposure midpoint of recording frame k


def write_recording(path, seed=0):
    """A DAVIS346-like recording: FRAMES textured APS frames (a bright square moving right) and
    random events over their span; returns (frames, events' t, x, y, p)."""
    rng = np.random.default_rng(seed)
    n = 4000
    t = np.sort(rng.integers(T0 - PERIOD, T0 + PERIOD * (FRAMES + 1), n))
    x, y, p = rng.integers(0, W, n), rng.integers(0, H, n), rng.random(n) < 0.5
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.DAVISConfig("DAVIS346_test", (W, H)))
    store = dv.EventStore()
    for i in range(n):
        store.push_back(int(t[i]), int(x[i]), int(y[i]), bool(p[i]))
    writer.writeEvents(store)
    background = rng.integers(0, 120, (H, W), dtype=np.uint8)
    frames = []
    for k in range(FRAMES):
        img = background.copy()
        img[10:26, 4 + 3 * k : 20 + 3 * k] = 230
        frames.append(img)
        writer.writeFrame(dv.Frame(T0 + PERIOD * k, EXPOSURE, 0, 0, img, dv.FrameSource.SENSOR))
    del writer  # closes the file
    return np.stack(frames), t, x, y, p


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "events.aedat4"
    return path, write_recording(path)


def make_fe108(root, recording, start=3, count=6, boxes_per_frame=1, lossy=False, pair=None):
    """FE108's layout: img/ = recording frames start .. start + count − 1 (1-based names)."""
    path, (frames, *_) = recording
    seq = root / "airplane_mul222"
    (seq / "img").mkdir(parents=True)
    for k in range(count):
        name = seq / "img" / f"{k + 1:04d}.{'jpg' if lossy else 'png'}"
        cv2.imwrite(str(name), cv2.cvtColor(frames[start + k], cv2.COLOR_GRAY2BGR))
    shutil.copy(path, seq / "events.aedat4")
    n = count * boxes_per_frame
    boxes = np.column_stack([4 + 0.5 * np.arange(n), np.full(n, 10.0), np.full(n, 16.0), np.full(n, 16.0)])
    np.savetxt(seq / "groundtruth_rect.txt", boxes, fmt="%.2f", delimiter=",")
    if pair is not None:
        (root / "pair.txt").write_text(f"other_seq 0\nairplane_mul222 {pair}\n")
    return seq, boxes


@pytest.mark.parametrize("lossy", [False, True])
def test_img_is_found_in_the_recording_and_timed_by_it(tmp_path, recording, lossy):
    _, (frames, t, x, y, p) = recording
    seq, boxes = make_fe108(tmp_path, recording, start=3, lossy=lossy)
    assert detect_format(seq) == "fe108"
    rec = read_recording(seq)
    assert rec.attrs["format"] == "fe108" and rec.attrs["recording_frame_offset"] == 3
    assert "event_frame_hz" not in rec.attrs  # raw events are not capped
    np.testing.assert_array_equal(rec.frame_t, [frame_t(k) for k in range(3, 9)])
    np.testing.assert_array_equal(rec.boxes_t, rec.frame_t)
    np.testing.assert_allclose(rec.boxes_xywh, boxes, atol=1e-6)
    if not lossy:
        np.testing.assert_array_equal(rec.frames, frames[3:9])
    # every event from one frame interval before the first frame to one after the last, in order
    keep = (t >= frame_t(3) - PERIOD) & (t <= frame_t(8) + PERIOD)
    np.testing.assert_array_equal(rec.events["t"], t[keep])
    np.testing.assert_array_equal(rec.events["x"], x[keep])
    np.testing.assert_array_equal(rec.events["p"], p[keep])
    assert rec.attrs["aps_rate_hz"] == pytest.approx(40.0)


def test_fe108_pair_file_sets_the_start(tmp_path, recording):
    seq, _ = make_fe108(tmp_path, recording, start=2, count=5, pair=2)
    rec = read_recording(seq)
    assert rec.attrs["recording_frame_offset"] == 2
    np.testing.assert_array_equal(rec.frame_t, [frame_t(k) for k in range(2, 7)])


def test_240hz_boxes_are_timed_from_the_first_aps_frame(tmp_path, recording):
    seq, boxes = make_fe108(tmp_path, recording, start=1, count=4, boxes_per_frame=6)
    (seq / "meta.json").write_text(json.dumps({"event_frame_hz": 240}))
    rec = read_recording(seq)
    expected = np.round(frame_t(1) + np.arange(24) * 1e6 / 240).astype(np.int64)
    np.testing.assert_array_equal(rec.boxes_t, expected)


def test_bad_fe108_folders_are_one_line_errors(tmp_path, recording, capsys):
    seq, _ = make_fe108(tmp_path / "a", recording)
    np.savetxt(seq / "groundtruth_rect.txt", [[1, 2, 3, 4]] * 4, delimiter=",")
    with pytest.raises(InputError, match="4 boxes for 6 APS frames"):
        read_recording(seq)
    assert main(["data", "import", str(seq), "-o", str(tmp_path / "a.h5"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4 boxes for 6 APS frames" in err[0] and not (tmp_path / "a.h5").exists()

    seq, _ = make_fe108(tmp_path / "b", recording)
    cv2.imwrite(str(seq / "img" / "0002.png"), np.full((H, W, 3), 255, np.uint8))  # not a recording frame
    for f in sorted((seq / "img").iterdir()):
        cv2.imwrite(str(f), 255 - cv2.imread(str(f)))
    with pytest.raises(InputError, match="not a stretch of the frames"):
        read_recording(seq)

    seq, _ = make_fe108(tmp_path / "c", recording, start=2, count=5, pair=9)
    with pytest.raises(InputError, match="runs past the 12 frames"):
        read_recording(seq)

    seq, _ = make_fe108(tmp_path / "e", recording, start=2, count=1)
    with pytest.raises(InputError, match="holds 1 APS frame: a sequence needs at least 2"):
        read_recording(seq)

    seq, _ = make_fe108(tmp_path / "d", recording)
    cv2.imwrite(str(seq / "img" / "0003.png"), np.zeros((20, 30), np.uint8))
    with pytest.raises(InputError, match="0003.png is 30x20, 0001.png 64x48"):
        read_recording(seq)


def test_data_import_writes_the_raw_events_and_the_tracker_fits_their_contrast(tmp_path, recording):
    seq, _ = make_fe108(tmp_path, recording)
    assert main(["data", "import", str(seq), "-o", str(tmp_path / "DS") + "/", "-q"]) == 0
    back = read_recording(tmp_path / "DS" / "sequences" / "airplane_mul222.h5")
    assert len(back.frames) == 6 and len(back.boxes_t) == 6
    from hybrid.data import event_origin

    assert event_origin(back.attrs) == (None, None)  # raw events: no thresholds given, not capped
