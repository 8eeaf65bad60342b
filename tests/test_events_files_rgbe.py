"""VisEvent / COESOT sequence folders (sim_events.formats.rgbe), built here from a real DV AEDAT4
recording (tests/data/dv_davis346.aedat4: events + 4 APS frames) in each dataset's layout.

References: the events and frame times that ``read_aedat4`` decodes from the same file, and, for
the event-image path, event images drawn here with plain numpy as the datasets' converters draw
them (white background, ON red, OFF blue)."""

import pathlib
import shutil

import cv2
import numpy as np
import pytest

from neurosim.cli import main
from sim_events.formats import detect_format, read_recording
from sim_events.formats.aedat4 import read_aedat4

DATA = pathlib.Path(__file__).resolve().parent / "data"
RAW = DATA / "dv_davis346.aedat4"


@pytest.fixture(scope="module")
def raw():
    return read_aedat4(RAW)


def _boxes(n: int) -> np.ndarray:
    return np.array([[4 + k, 5 + k, 10, 12] for k in range(n)], np.float64)


def _draw(events: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    img = np.full((*shape, 3), 255, np.uint8)
    img[events["y"][events["p"]], events["x"][events["p"]]] = (0, 0, 255)  # BGR red: ON
    off = ~events["p"]
    img[events["y"][off], events["x"][off]] = (255, 0, 0)  # blue: OFF (drawn last, as the converters do)
    return img


def make_folder(root: pathlib.Path, raw, layout: str, with_raw: bool, corners: bool = False) -> pathlib.Path:
    name = "dvSeq_01" if layout == "visevent" else "seq_02"
    seq = root / name
    frames_dir, events_dir = (seq / "vis_imgs", seq / "event_imgs") if layout == "visevent" else \
        (seq / f"{name}_aps", seq / f"{name}_dvs")
    frames_dir.mkdir(parents=True)
    events_dir.mkdir()
    edges = np.concatenate([[raw.frame_t[0] - 40_000], raw.frame_t])
    for k, frame in enumerate(raw.frames):
        cv2.imwrite(str(frames_dir / f"frame{k:04d}.bmp"), cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
        window = raw.events[(raw.events["t"] > edges[k]) & (raw.events["t"] <= edges[k + 1])]
        cv2.imwrite(str(events_dir / f"frame{k:04d}.bmp"), _draw(window, frame.shape))
    boxes = _boxes(len(raw.frames))
    if corners:
        x, y, w, h = boxes.T
        boxes = np.stack([x, y, x + w, y, x + w, y + h, x, y + h], axis=1)
    np.savetxt(seq / "groundtruth.txt", boxes, fmt="%.1f", delimiter=",")
    np.savetxt(seq / "absent_label.txt", [1, 1, 0, 1], fmt="%d")
    if with_raw:
        shutil.copy(RAW, seq / f"{name}.aedat4")
    return seq


@pytest.mark.parametrize("layout", ["visevent", "coesot"])
def test_a_folder_with_its_raw_recording_gives_the_raw_events_and_frame_times(tmp_path, raw, layout):
    seq = make_folder(tmp_path, raw, layout, with_raw=True, corners=layout == "coesot")
    assert detect_format(seq) == "rgbe"
    rec = read_recording(seq)
    np.testing.assert_array_equal(rec.events, raw.events)
    np.testing.assert_array_equal(rec.frame_t, raw.frame_t)
    np.testing.assert_array_equal(rec.frames, raw.frames)
    np.testing.assert_array_equal(rec.boxes_t, raw.frame_t)
    expected = _boxes(4).astype(np.float32)
    expected[2] = np.nan  # absent_label 0
    np.testing.assert_array_equal(rec.boxes_xywh, expected)


def test_event_images_give_each_frame_interval_the_drawn_pixels_and_polarities(tmp_path, raw):
    seq = make_folder(tmp_path, raw, "visevent", with_raw=False)
    rec = read_recording(seq)
    assert rec.attrs["events_from"] == "event images" and rec.frame_t[1] - rec.frame_t[0] == 40_000
    assert rec.attrs["event_frame_hz"] == 25.0  # at most one event per pixel and image: capped
    edges = np.concatenate([[raw.frame_t[0] - 40_000], raw.frame_t])
    for k in range(4):
        window = raw.events[(raw.events["t"] > edges[k]) & (raw.events["t"] <= edges[k + 1])]
        last = {}  # the polarity each pixel shows in the drawn image: OFF wins
        for x, y, p in zip(window["x"][window["p"]], window["y"][window["p"]], window["p"][window["p"]]):
            last[(x, y)] = True
        off = ~window["p"]
        for x, y in zip(window["x"][off], window["y"][off]):
            last[(x, y)] = False
        mine = rec.events[rec.events["t"] == rec.frame_t[k] - 20_000]
        assert {(int(x), int(y)): bool(p) for x, y, p in zip(mine["x"], mine["y"], mine["p"])} == \
            {(int(x), int(y)): p for (x, y), p in last.items()}


def test_import_writes_a_sequence_file_and_a_wrong_box_count_is_one_line(tmp_path, raw, capsys):
    seq = make_folder(tmp_path, raw, "visevent", with_raw=True)
    assert main(["data", "import", str(seq), "-o", str(tmp_path / "s.h5"), "-q"]) == 0
    back = read_recording(tmp_path / "s.h5")
    assert len(back.events) == len(raw.events) and back.frames.shape == raw.frames.shape
    from hybrid.data import event_origin

    assert event_origin(back.attrs) == (None, None)  # raw events: the tracker fits their contrast
    (seq / "groundtruth.txt").write_text("1,2,3,4\n")
    assert main(["data", "import", str(seq), "-o", str(tmp_path / "t.h5"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 boxes for 4 frames" in err[0] and not (tmp_path / "t.h5").exists()


def test_frames_of_another_size_are_one_line(tmp_path, raw):
    from neurosim.errors import InputError

    seq = make_folder(tmp_path, raw, "coesot", with_raw=False)
    cv2.imwrite(str(seq / "seq_02_aps" / "frame0001.bmp"), np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(InputError, match="frame0001.bmp is 12x10, frame0000.bmp 48x36: every frame"):
        read_recording(seq)
