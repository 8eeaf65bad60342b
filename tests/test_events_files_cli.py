"""``neurosim events info`` / ``render`` end to end through the CLI shell (exit codes, JSON)."""

import json

import cv2
import numpy as np
import pytest

from neurosim.cli import main
from sim_events.formats.sequence import SequenceWriter


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name, width, height, events, frames", [
    ("davis346_traffic_first_half.npz", 346, 260, 40_050, 30),
    ("dvxplorer_sample.aedat4", 320, 240, 111_954, 0),
    ("nmnist_sample.bin", 34, 34, 4_325, 0),
    ("prophesee_evt3_sample.raw", 1280, 720, None, 0),
])
def test_info_json_on_every_real_format(shared_data, capsys, name, width, height, events, frames):
    code, out, err = _run(capsys, "events", "info", str(shared_data / "events" / name), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["width"], info["height"], info["frames"]) == (width, height, frames)
    if events is not None:
        assert info["events"] == events
    raw_on = None
    if name.endswith(".npz"):
        raw = np.load(shared_data / "events" / name)
        raw_on = float(np.mean(raw["p"] > 0))
        assert info["duration_s"] == pytest.approx((raw["t"][-1] - raw["t"][0]) / 1e6, abs=1e-6)
        assert info["frame_rate_hz"] == pytest.approx(25.0)
        assert info["on_fraction"] == pytest.approx(raw_on, abs=1e-4)
    assert info["event_rate_hz"] == pytest.approx(info["events"] / info["duration_s"], rel=1e-3)


def test_info_text_and_render_of_a_sequence_with_frames_and_boxes(tmp_path, capsys):
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(0)
    n = 4000
    t = np.sort(rng.integers(0, 200_000, n))
    x, y = rng.integers(0, 40, n), rng.integers(0, 30, n)
    with SequenceWriter(path, 80, 60, source="cli test") as w:
        w.add_frames(np.full((5, 60, 80), 100, np.uint8), np.arange(5) * 40_000, exposure_us=500)
        w.add_events(x, y, t, np.ones(n, bool))  # all ON, all in the top-left 40x30
        w.set_boxes(np.arange(5) * 40_000, np.tile([[50.0, 35.0, 20.0, 15.0]], (5, 1)))
    code, out, _ = _run(capsys, "events", "info", str(path))
    assert code == 0 and "80 x 60" in out and "4,000" in out and "5 at 25 Hz" in out and "5 (5 with" in out
    video = tmp_path / "p.mp4"
    code, out, err = _run(capsys, "events", "render", str(path), "-o", str(video), "--fps", "50", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["frames"] == 10 and video.is_file()
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    assert len(frames) == 10
    img = frames[5].astype(int)
    s = summary["width"] // 80  # small sensors are scaled up
    ev_region = img[: 30 * s, : 40 * s]
    assert (ev_region[..., 1] > 150).mean() > 0.2  # ON = green where events fell
    grey = img[40 * s: 50 * s, 5 * s: 30 * s]
    assert np.abs(grey - 60).max() < 25  # 100 dimmed to 60 % elsewhere (mp4v is lossy)
    box_edge = img[35 * s, 55 * s: 65 * s]
    assert (box_edge[:, 2] > 150).all() and (box_edge[:, 1] > 150).all()  # yellow box line


def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path, capsys):
    not_events = tmp_path / "notes.txt"
    not_events.write_text("hello")
    cases = [
        ("events", "info", str(tmp_path / "missing.h5")),
        ("events", "info", str(not_events)),
        ("events", "render", str(not_events), "-o", str(tmp_path / "a.mp4")),
        ("events", "render", str(tmp_path / "missing.raw"), "-o", str(tmp_path / "b.mp4")),
    ]
    for argv in cases:
        code, out, err = _run(capsys, *argv)
        assert code == 2, argv
        assert len(err.strip().splitlines()) == 1 and err.startswith("neurosim: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_render_bad_options_and_unwritable_output(shared_data, tmp_path, capsys):
    src = str(shared_data / "events" / "nmnist_sample.bin")
    for argv in (["-o", str(tmp_path / "x.mp4"), "--fps", "0"],
                 ["-o", str(tmp_path / "x.mp4"), "--window-ms", "-1"],
                 ["-o", str(tmp_path / "x.txt")],
                 ["-o", str(tmp_path / "no" / "such" / "dir.mp4")]):
        code, _, err = _run(capsys, "events", "render", src, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, argv
    assert list(tmp_path.iterdir()) == []
