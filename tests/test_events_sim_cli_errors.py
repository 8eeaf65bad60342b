"""Bad input to `neurosim events simulate` (and calibrate/compare): exit 2, one line, no output file."""

import pathlib

import cv2
import numpy as np
import pytest

from neurosim.cli import main


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_rejected(argv, out_path: pathlib.Path, capsys, needle: str):
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    # what a terminal shows: progress bars redraw with \r and are erased before the message
    lines = [ln.split("\r")[-1] for ln in err.split("\n") if ln.split("\r")[-1].strip()]
    assert len(lines) == 1 and lines[0].startswith("neurosim: error:"), err
    assert needle.lower() in lines[0].lower(), lines[0]
    assert not out_path.exists()
    # no temporary leftovers either
    assert not list(out_path.parent.glob(f".{out_path.name}*"))


def write_video(path, n=20, size=(64, 48)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    rng = np.random.default_rng(0)
    for _ in range(n):
        w.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w.release()


def test_missing_path(tmp_path, capsys):
    out = tmp_path / "o.h5"
    assert_rejected(["events", "simulate", str(tmp_path / "nope.mp4"), "-o", str(out)], out, capsys, "does not exist")


def test_not_a_video(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    out = tmp_path / "o.h5"
    assert_rejected(["events", "simulate", str(bad), "-o", str(out)], out, capsys, "not a readable video")


def test_truncated_video(tmp_path, capsys):
    good = tmp_path / "v.mp4"
    write_video(good)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.h5"
    assert_rejected(["events", "simulate", str(cut), "-o", str(out)], out, capsys, "truncated")


def test_zero_frames(tmp_path, capsys):
    src = tmp_path / "empty.npz"
    np.savez(src, frames=np.zeros((0, 20, 30), np.uint8), frame_ts=np.zeros(0, np.int64))
    out = tmp_path / "o.h5"
    assert_rejected(["events", "simulate", str(src), "-o", str(out)], out, capsys, "zero frames")


def test_frames_that_change_size(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, shape in enumerate([(40, 60), (40, 60), (44, 60)]):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 255, shape, dtype=np.uint8))
    out = tmp_path / "o.h5"
    assert_rejected(["events", "simulate", str(folder), "--fps", "30", "-o", str(out)], out, capsys, "size")


def test_timestamps_that_do_not_increase(tmp_path, capsys):
    src = tmp_path / "t.npz"
    np.savez(src, frames=np.zeros((3, 20, 30), np.uint8), frame_ts=np.array([0, 1000, 1000], np.int64))
    out = tmp_path / "o.h5"
    assert_rejected(["events", "simulate", str(src), "-o", str(out)], out, capsys, "increase")


def test_nan_pixels(tmp_path, capsys):
    frames = np.full((4, 20, 30), 100.0, np.float32)
    frames[2, 5, 5] = np.nan
    src = tmp_path / "nan.npz"
    np.savez(src, frames=frames, frame_ts=np.arange(4, dtype=np.int64) * 10_000)
    out = tmp_path / "o.h5"
    assert_rejected(["events", "simulate", str(src), "-o", str(out)], out, capsys, "nan")


def test_unwritable_output(tmp_path, capsys):
    src = tmp_path / "ok.npz"
    np.savez(src, frames=np.zeros((3, 20, 30), np.uint8), frame_ts=np.arange(3, dtype=np.int64) * 10_000)
    out = tmp_path / "missing_dir" / "o.h5"
    assert_rejected(["events", "simulate", str(src), "-o", str(out)], out, capsys, "does not exist")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    code, _, err = run_cli(["events", "simulate", str(src), "-o", str(folder)], capsys)
    assert code == 2 and "folder" in err and folder.is_dir() and not any(folder.iterdir())


@pytest.mark.parametrize("extra,needle", [
    (["--set", "contrast_threshold_on=-0.1"], "contrast_threshold_on"),
    (["--set", "no_such_parameter=1"], "unknown parameter"),
    (["--preset", "davis999"], "preset"),
    (["--aps-every", "0"], "aps_every"),
    (["--seed", "-1"], "seed"),
])
def test_impossible_parameters(tmp_path, capsys, extra, needle):
    src = tmp_path / "ok.npz"
    np.savez(src, frames=np.zeros((3, 20, 30), np.uint8), frame_ts=np.arange(3, dtype=np.int64) * 10_000)
    out = tmp_path / "o.h5"
    assert_rejected(["events", "simulate", str(src), "-o", str(out), *extra], out, capsys, needle)


def test_calibrate_needs_frames_and_events(tmp_path, capsys):
    src = tmp_path / "frames_only.npz"
    np.savez(src, frames=np.zeros((5, 20, 30), np.uint8), frame_ts=np.arange(5, dtype=np.int64) * 10_000)
    out = tmp_path / "cal.toml"
    assert_rejected(["events", "calibrate", str(src), "-o", str(out)], out, capsys, "events")


def test_compare_rejects_different_sensor_sizes(tmp_path, capsys):
    a = tmp_path / "a.npz"
    b = tmp_path / "b.npz"
    for p, w in ((a, 30), (b, 40)):
        np.savez(p, t=np.arange(5, dtype=np.int64), x=np.zeros(5, np.int16), y=np.zeros(5, np.int16),
                 p=np.ones(5, np.int8), width=w, height=20)
    code, _, err = run_cli(["events", "compare", str(a), str(b)], capsys)
    assert code == 2 and "sensor size" in err
