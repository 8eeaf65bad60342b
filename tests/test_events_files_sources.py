"""Frame sources on the real video and tracking folders of shared/data, plus every bad input."""

import tracemalloc

import cv2
import numpy as np
import pytest

from neurosim.errors import InputError, ParameterError
from sim_events.sources import open_frames, read_annotations, read_timestamps


def _luma(bgr):
    """Independent luminance: Rec.601 weights in float, rounded (OpenCV's fixed point is ±1)."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    return np.rint(0.299 * r + 0.587 * g + 0.114 * b)


def _write_pngs(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i + 1}.png"), f)


# ---------------------------------------------------------------------------- real data


def test_real_video_streams_all_frames_with_luminance_and_times(shared_data):
    path = shared_data / "video" / "carphone_pristine.mp4"
    src = open_frames(path)
    assert (src.width, src.height, src.num_frames, src.boxes) == (176, 144, 120, None)
    cap = cv2.VideoCapture(str(path))
    n = 0
    for i, (t, frame) in enumerate(src):
        ok, bgr = cap.read()
        assert ok and frame.dtype == np.uint8 and frame.shape == (144, 176)
        assert np.abs(frame.astype(int) - _luma(bgr)).max() <= 1
        assert abs(t - i * 1e6 / 29.97) < 50  # README: 29.97 fps
        n += 1
    assert n == 120  # README: 120 frames


def test_real_video_resize_uses_inter_area_and_fps_override(shared_data):
    path = shared_data / "video" / "carphone_pristine.mp4"
    src = open_frames(path, fps=240, resize="88x72")
    assert (src.width, src.height) == (88, 72)
    full = open_frames(path)
    frames = [f for _, f in zip(range(3), src)]
    fulls = [f for _, f in zip(range(3), full)]
    assert [t for t, _ in frames] == [0, 4167, 8333]
    for (_, small), (_, big) in zip(frames, fulls):
        np.testing.assert_array_equal(small, cv2.resize(big, (88, 72), interpolation=cv2.INTER_AREA))


def test_otb_crossing_boxes_match_groundtruth(shared_data):
    folder = shared_data / "tracking" / "Crossing"
    src = open_frames(folder, fps=30)
    assert (src.width, src.height, src.num_frames) == (360, 240, 120)  # README
    gt = np.loadtxt(folder / "groundtruth_rect.txt", delimiter="\t")
    t, xywh = src.boxes
    assert xywh.dtype == np.float32 and t.dtype == np.int64 and len(t) == 120
    np.testing.assert_allclose(xywh[:, :2], gt[:, :2] - 1)  # 1-based -> 0-based
    np.testing.assert_allclose(xywh[:, 2:], gt[:, 2:])
    np.testing.assert_array_equal(t, np.round(np.arange(120) * 1e6 / 30).astype(np.int64))
    frames = list(src)
    assert len(frames) == 120 and frames[0][1].shape == (240, 360)
    # resize scales boxes with the image
    half = open_frames(folder, fps=30, resize=(180, 120))
    np.testing.assert_allclose(half.boxes[1], xywh * 0.5, rtol=1e-6)


def test_vot_bag_polygons_become_enclosing_boxes(shared_data):
    folder = shared_data / "tracking" / "bag"
    src = open_frames(folder, timestamps=np.arange(196) * 33_333)
    assert (src.width, src.height, src.num_frames) == (480, 360, 196)  # README
    poly = np.loadtxt(folder / "groundtruth.txt", delimiter=",").reshape(-1, 4, 2)
    t, xywh = src.boxes
    np.testing.assert_allclose(xywh[:, 0], poly[:, :, 0].min(1), rtol=1e-6)
    np.testing.assert_allclose(xywh[:, 1], poly[:, :, 1].min(1), rtol=1e-6)
    np.testing.assert_allclose(xywh[:, 0] + xywh[:, 2], poly[:, :, 0].max(1), rtol=1e-5)
    np.testing.assert_allclose(xywh[:, 1] + xywh[:, 3], poly[:, :, 1].max(1), rtol=1e-5)
    np.testing.assert_array_equal(t, np.arange(196) * 33_333)


def test_real_recording_npz_is_a_frame_source(shared_data):
    path = shared_data / "events" / "davis346_traffic_first_half.npz"
    raw = np.load(path)
    src = open_frames(path)
    got = list(src)
    assert src.num_frames == 30 and (src.width, src.height) == (346, 260)
    np.testing.assert_array_equal(np.stack([f for _, f in got]), raw["frames"])
    assert [t for t, _ in got] == raw["frame_ts"].tolist()


# ---------------------------------------------------------------------------- formats


def test_nfs_annotation_folder(tmp_path):
    frames = [np.full((20, 30, 3), 10 * i, np.uint8) for i in range(4)]
    _write_pngs(tmp_path / "seq" / "seq", frames)
    (tmp_path / "seq" / "seq.txt").write_text(
        '1 3 4 13 10 1 0 0 0 "car"\n1 4 4 14 10 2 0 0 0 "car"\n1 0 0 0 0 3 1 0 0 "car"\n1 6 5 16 11 4 0 1 0 "car"\n')
    src = open_frames(tmp_path / "seq", fps=240)
    t, xywh = src.boxes
    assert t.tolist() == [0, 4167, 8333, 12500]
    np.testing.assert_array_equal(xywh[[0, 1, 3]], [[3, 4, 10, 6], [4, 4, 10, 6], [6, 5, 10, 6]])
    assert np.isnan(xywh[2]).all()  # lost = 1


def test_annotation_formats_and_absent_targets(tmp_path):
    (tmp_path / "groundtruth_rect.txt").write_text("1,2,3,4\nNaN,NaN,NaN,NaN\n5 6 0 0\n")
    _, xywh = read_annotations(tmp_path / "groundtruth_rect.txt")
    np.testing.assert_array_equal(xywh[0], [0, 1, 3, 4])
    assert np.isnan(xywh[1:]).all()
    (tmp_path / "groundtruth.txt").write_text("0\n1,1,5,1,5,4,1,4\n")
    _, xywh = read_annotations(tmp_path / "groundtruth.txt")
    assert np.isnan(xywh[0]).all()
    np.testing.assert_array_equal(xywh[1], [1, 1, 4, 3])


def test_timestamps_file_integers_are_us_decimals_are_seconds(tmp_path):
    (tmp_path / "us.txt").write_text("0\n4167\n# comment\n8333\n")
    (tmp_path / "s.txt").write_text("0.0\n0.004167\n0.008333\n")
    assert read_timestamps(tmp_path / "us.txt").tolist() == [0, 4167, 8333]
    assert read_timestamps(tmp_path / "s.txt").tolist() == [0, 4167, 8333]
    _write_pngs(tmp_path / "img", [np.zeros((8, 8, 3), np.uint8)] * 3)
    src = open_frames(tmp_path / "img", timestamps=tmp_path / "s.txt")
    assert [t for t, _ in src] == [0, 4167, 8333]
    (tmp_path / "img" / "timestamps.txt").write_text("10\n20\n35\n")  # picked up without --fps
    assert [t for t, _ in open_frames(tmp_path / "img")] == [10, 20, 35]


def test_npz_colour_and_float_frames(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    np.savez_compressed(tmp_path / "rgb.npz", frames=rgb, frame_ts=np.array([0, 10, 20]))
    got = [f for _, f in open_frames(tmp_path / "rgb.npz")]
    for f, ref in zip(got, rgb):
        assert np.abs(f.astype(int) - _luma(ref[..., ::-1])).max() <= 1  # npz colour is RGB
    fl = np.linspace(0, 255, 3 * 4 * 5).reshape(3, 4, 5)
    np.savez(tmp_path / "f.npz", frames=fl, frame_ts=np.array([0, 1, 2]))
    got = np.stack([f for _, f in open_frames(tmp_path / "f.npz")])
    np.testing.assert_array_equal(got, np.rint(fl).astype(np.uint8))


def test_video_source_memory_stays_flat_over_a_long_video(tmp_path):
    path = tmp_path / "long.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for i in range(600):
        w.write(np.roll(frame, i, axis=1))
    w.release()
    src = open_frames(path)
    tracemalloc.start()
    n = 0
    for _, f in src:
        n += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 600
    whole = 600 * 120 * 160  # bytes the whole video would take as uint8 luminance
    assert peak < whole / 20  # a handful of frames at most, not the video


def test_npz_source_streams_frames(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (400, 120, 160), dtype=np.uint8)
    np.savez(tmp_path / "big.npz", frames=frames, frame_ts=np.arange(400) * 1000)
    src = open_frames(tmp_path / "big.npz")
    tracemalloc.start()
    got = 0
    for i, (t, f) in enumerate(src):
        assert t == i * 1000 and np.array_equal(f, frames[i])
        got += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got == 400 and peak < frames.nbytes / 20


# ---------------------------------------------------------------------------- bad input


def _err(fn, *args, **kwargs):
    with pytest.raises((InputError, ParameterError)) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _iterate(src):
    for _ in src:
        pass


def test_missing_path(tmp_path):
    msg = _err(open_frames, tmp_path / "nope.mp4")
    assert "nope.mp4" in msg and "does not exist" in msg


def test_not_a_video(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 100)
    msg = _err(open_frames, tmp_path / "notes.mp4")
    assert "notes.mp4" in msg and "not a readable video" in msg


def test_truncated_mp4_is_refused_at_open(shared_data, tmp_path):
    data = (shared_data / "video" / "carphone_pristine.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert "not a readable video" in _err(open_frames, tmp_path / "cut.mp4")


def test_truncated_avi_is_detected_while_streaming(tmp_path):
    w = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(50):
        w.write(np.full((48, 64, 3), i * 5, np.uint8))
    w.release()
    data = (tmp_path / "v.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.6)])
    src = open_frames(tmp_path / "cut.avi")
    msg = _err(_iterate, src)
    assert "cut.avi" in msg and "truncated" in msg


def test_zero_frames(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "zero frames" in _err(open_frames, tmp_path / "empty.mp4")
    w = cv2.VideoWriter(str(tmp_path / "none.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    w.release()
    assert "zero readable frames" in _err(open_frames, tmp_path / "none.avi")
    np.savez(tmp_path / "none.npz", frames=np.zeros((0, 4, 4), np.uint8), frame_ts=np.zeros(0, np.int64))
    assert "zero frames" in _err(open_frames, tmp_path / "none.npz")
    (tmp_path / "emptydir").mkdir()
    assert "holds no images" in _err(open_frames, tmp_path / "emptydir", fps=30)


def test_frames_that_change_size(tmp_path):
    folder = tmp_path / "imgs"
    _write_pngs(folder, [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)])
    src = open_frames(folder, fps=30)
    msg = _err(_iterate, src)
    assert "3.png" in msg and "one size" in msg


def test_timestamps_that_do_not_increase(tmp_path):
    _write_pngs(tmp_path / "img", [np.zeros((8, 8, 3), np.uint8)] * 3)
    (tmp_path / "ts.txt").write_text("0\n100\n100\n")
    msg = _err(open_frames, tmp_path / "img", timestamps=tmp_path / "ts.txt")
    assert "ts.txt" in msg and "does not increase" in msg
    np.savez(tmp_path / "back.npz", frames=np.zeros((3, 4, 4), np.uint8), frame_ts=np.array([0, 50, 20]))
    assert "does not increase" in _err(open_frames, tmp_path / "back.npz")


def test_timestamp_count_differs_from_frame_count(tmp_path):
    _write_pngs(tmp_path / "img", [np.zeros((8, 8, 3), np.uint8)] * 3)
    (tmp_path / "ts.txt").write_text("0\n100\n")
    assert "one time per image" in _err(open_frames, tmp_path / "img", timestamps=tmp_path / "ts.txt")
    np.savez(tmp_path / "n.npz", frames=np.zeros((3, 4, 4), np.uint8), frame_ts=np.array([0, 1]))
    assert "one time per frame" in _err(open_frames, tmp_path / "n.npz")


def test_nan_pixels(tmp_path):
    frames = np.zeros((3, 4, 4), np.float32)
    frames[2, 1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", frames=frames, frame_ts=np.array([0, 1, 2]))
    src = open_frames(tmp_path / "nan.npz")
    msg = _err(_iterate, src)
    assert "frame 2" in msg and "NaN" in msg


def test_image_folder_needs_fps_or_timestamps(tmp_path):
    _write_pngs(tmp_path / "img", [np.zeros((8, 8, 3), np.uint8)] * 2)
    assert "--fps" in _err(open_frames, tmp_path / "img")
    assert "--fps" in _err(open_frames, tmp_path / "img", fps=-3)


def test_corrupt_image_and_bad_resize(tmp_path):
    _write_pngs(tmp_path / "img", [np.zeros((8, 8, 3), np.uint8)] * 2)
    (tmp_path / "img" / "3.png").write_bytes(b"\x89PNG broken")
    src = open_frames(tmp_path / "img", fps=30)
    assert "3.png" in _err(_iterate, src)
    assert "WIDTHxHEIGHT" in _err(open_frames, tmp_path / "img", fps=30, resize="big")


def test_npz_without_frames_or_with_pickles(tmp_path):
    np.savez(tmp_path / "ev.npz", t=np.arange(3))
    assert "no 'frames'" in _err(open_frames, tmp_path / "ev.npz")
    np.savez(tmp_path / "obj.npz", frames=np.array([None, 1], dtype=object), frame_ts=np.arange(2))
    assert "never loaded" in _err(open_frames, tmp_path / "obj.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    assert "not a readable .npz" in _err(open_frames, tmp_path / "bad.npz")


def test_box_count_must_match_images(tmp_path):
    _write_pngs(tmp_path / "seq" / "img", [np.zeros((8, 8, 3), np.uint8)] * 3)
    (tmp_path / "seq" / "groundtruth_rect.txt").write_text("1 1 2 2\n1 1 2 2\n")
    assert "2 boxes for 3 images" in _err(open_frames, tmp_path / "seq", fps=30)


def test_npz_wrong_dtype_or_fortran_order(tmp_path):
    np.savez(tmp_path / "u16.npz", frames=np.zeros((2, 4, 4), np.uint16), frame_ts=np.arange(2))
    assert "save them as uint8" in _err(open_frames, tmp_path / "u16.npz")
    np.savez(tmp_path / "f.npz", frames=np.asfortranarray(np.zeros((2, 4, 5), np.uint8)), frame_ts=np.arange(2))
    assert "Fortran order" in _err(open_frames, tmp_path / "f.npz")


def test_box_wholly_outside_the_image(tmp_path):
    _write_pngs(tmp_path / "seq" / "img", [np.zeros((8, 8, 3), np.uint8)] * 2)
    (tmp_path / "seq" / "groundtruth_rect.txt").write_text("1 1 2 2\n20 1 2 2\n")
    msg = _err(open_frames, tmp_path / "seq", fps=30)
    assert "frame 2" in msg and "outside the 8x8 image" in msg
