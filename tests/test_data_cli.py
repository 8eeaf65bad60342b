"""``neurosim data`` verbs: bad sources reported per sequence, exit codes, info, layouts."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from benchmarks_data.index import make_splits, read_split_list
from benchmarks_data.layouts import check_sequence, discover
from neurosim.errors import InputError

PROJECT = pathlib.Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurosim.cli", *args], cwd=PROJECT, capture_output=True, text=True, timeout=300)


def _otb(dst: pathlib.Path, shared: pathlib.Path, n: int, n_boxes: int | None = None, ann: bool = True) -> None:
    src = shared / "tracking" / "Crossing"
    (dst / "img").mkdir(parents=True)
    for f in sorted((src / "img").iterdir())[:n]:
        shutil.copy(f, dst / "img" / f.name)
    if ann:
        lines = (src / "groundtruth_rect.txt").read_text().splitlines()[: n if n_boxes is None else n_boxes]
        (dst / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture()
def bad_collection(shared_data, tmp_path):
    root = tmp_path / "src"
    _otb(root / "good", shared_data, 8)
    _otb(root / "no_annotation", shared_data, 8, ann=False)
    _otb(root / "count_mismatch", shared_data, 8, n_boxes=6)
    _otb(root / "corrupt_frame", shared_data, 8)
    (root / "corrupt_frame" / "img" / "0004.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "empty").mkdir()
    return root


def test_bad_sources_are_reported_per_sequence_and_the_rest_build(bad_collection, tmp_path):
    out = tmp_path / "ds"
    res = _cli("data", "build", str(bad_collection), "-o", str(out), "--resize", "90x60", "--json", "--quiet")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["built"] == ["good"]
    reasons = {f["name"]: f["reason"] for f in report["failed"]}
    assert set(reasons) == {"no_annotation", "count_mismatch", "corrupt_frame", "empty"}
    assert "missing annotation" in reasons["no_annotation"]
    assert "6 boxes" in reasons["count_mismatch"] and "8 frames" in reasons["count_mismatch"]
    assert "0004.jpg" in reasons["corrupt_frame"] and "cannot be decoded" in reasons["corrupt_frame"]
    assert "no images" in reasons["empty"]
    assert all("\n" not in r for r in reasons.values())
    index = json.loads((out / "index.json").read_text())
    assert [e["name"] for e in index["sequences"]] == ["good"]
    assert {f["name"] for f in index["failed"]} == set(reasons)
    # failed sequences leave no sequence file, finished or temporary
    assert sorted(p.name for p in (out / "sequences").iterdir()) == ["good.done", "good.h5"]
    # info shows the dataset
    info = _cli("data", "info", str(out), "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["num_sequences"] == 1 and data["sequences"][0]["input_frames"] == 8
    assert data["sequences"][0]["events"] > 0 and data["sequences"][0]["event_rate_mev_s"] > 0
    assert len(data["failed"]) == 4
    text = _cli("data", "info", str(out))
    assert "good" in text.stdout and "failed: empty" in text.stdout


def test_nothing_buildable_exits_2_with_one_line_and_no_output(bad_collection, tmp_path):
    shutil.rmtree(bad_collection / "good")
    out = tmp_path / "ds"
    res = _cli("data", "build", str(bad_collection), "-o", str(out), "--quiet")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "nothing could be built" in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["data", "build", "/nonexistent/collection", "-o", "OUT"], "does not exist"),
    (["data", "info", "/tmp"], "not a neurosim dataset"),
    (["data", "build", "SRC", "-o", "OUT", "--aps-rate", "0"], "APS rate"),
    (["data", "synth", "-o", "OUT", "--fps", "100"], "below 240"),
    (["data", "build", "SRC", "-o", "OUT", "--preset", "nope"], "preset"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle, bad_collection, tmp_path):
    args = [str(bad_collection) if a == "SRC" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    res = _cli(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and needle in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def test_layouts_discover_nfs_otb_vot_and_videos(tmp_path):
    # NFS: NAME/240/NAME/*.jpg + NAME/240/NAME.txt
    img = np.full((20, 30, 3), 128, np.uint8)
    import cv2

    nfs = tmp_path / "col" / "car_1" / "240" / "car_1"
    nfs.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(nfs / f"{i + 1:05d}.jpg"), img)
    (nfs.parent / "car_1.txt").write_text(
        '1 2 3 12 13 1 0 0 0 "car"\n1 3 3 13 13 2 0 0 0 "car"\n1 4 3 14 13 3 1 0 0 "car"\n')
    vid = tmp_path / "col" / "clip.mp4"
    w = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"mp4v"), 60.0, (30, 20))
    for _ in range(4):
        w.write(img)
    w.release()
    (tmp_path / "col" / "clip.txt").write_text("1 2 3 4\n" * 4)
    specs = {s.name: s for s in discover(tmp_path / "col")}
    assert specs["car_1"].layout == "nfs" and specs["car_1"].fps == 240.0
    n, boxes = check_sequence(specs["car_1"])
    assert n == 3
    np.testing.assert_array_equal(boxes[:2], [[2, 3, 10, 10], [3, 3, 10, 10]])
    assert np.isnan(boxes[2]).all()  # lost = 1
    assert specs["clip"].layout == "video" and specs["clip"].fps is None
    _, vboxes = check_sequence(specs["clip"])
    np.testing.assert_array_equal(vboxes, [[1, 2, 3, 4]] * 4)
    with pytest.raises(InputError, match="does not exist"):
        discover(tmp_path / "missing")
    # both build: NFS at 240 fps -> one APS frame per 8 input frames; the video at its own 60 fps
    from benchmarks_data.build import build_dataset
    from sim_events.formats.sequence import read_sequence

    report = build_dataset(tmp_path / "col", tmp_path / "ds", aps_rate_hz=30.0)
    assert report["failed"] == [] and sorted(report["built"]) == ["car_1", "clip"]
    nfs_seq = read_sequence(tmp_path / "ds" / "sequences" / "car_1.h5")
    np.testing.assert_array_equal(nfs_seq.boxes_t, [0, 4167, 8333])
    assert len(nfs_seq.frames) == 1
    vid_seq = read_sequence(tmp_path / "ds" / "sequences" / "clip.h5")
    np.testing.assert_array_equal(vid_seq.boxes_t, [0, 16667, 33333, 50000])
    np.testing.assert_array_equal(vid_seq.frame_t, [0, 33333])


def test_splits_are_fixed_by_seed_and_order_free(tmp_path):
    names = [f"s{i}" for i in range(10)]
    a = make_splits(names, seed=1, test_fraction=0.2, val_fraction=0.1)
    b = make_splits(list(reversed(names)), seed=1, test_fraction=0.2, val_fraction=0.1)
    assert a == b and len(a["test"]) == 2 and len(a["val"]) == 1 and len(a["train"]) == 7
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(names)
    assert make_splits(names, seed=2) != make_splits(names, seed=1)
    lst = tmp_path / "splits.txt"
    lst.write_text("s1 test\ns2 train # comment\nzz test\n")
    got = read_split_list(lst, names[:4])
    assert got == {"test": ["s1"], "train": ["s2"], "unassigned": ["s0", "s3"]}


def test_synth_cli_takes_scene_settings_and_simulator_overrides(tmp_path):
    out = tmp_path / "synth"
    res = _cli("data", "synth", "-o", str(out), "--sequences", "2", "--frames", "24", "--size", "96x72",
               "--set", "synth.n_distractors=0", "--set", "synth.target_size_px=[10,12]",
               "--set", "contrast_threshold_on=0.3", "--json", "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["built"] == ["synth_000", "synth_001"]
    index = json.loads((out / "index.json").read_text())
    assert index["synth"]["n_distractors"] == 0 and index["synth"]["target_size_px"] == [10, 12]
    assert index["simulator"]["contrast_threshold_on"] == 0.3
    assert index["sensor"] == {"width": 96, "height": 72}
    assert len(index["splits"]["test"]) == 1
    bad = _cli("data", "synth", "-o", str(tmp_path / "bad"), "--set", "synth.bogus=1")
    assert bad.returncode == 2 and "synth.bogus" in bad.stderr and not (tmp_path / "bad").exists()


def test_a_bad_split_list_is_refused_before_anything_is_built(tmp_path):
    src = tmp_path / "src" / "seq" / "img"
    src.mkdir(parents=True)
    import cv2

    for k in range(4):
        frame = np.zeros((48, 64), np.uint8)
        frame[10:20, 5 + 4 * k:15 + 4 * k] = 200
        cv2.imwrite(str(src / f"{k + 1:04d}.png"), frame)
    (src.parent / "groundtruth_rect.txt").write_text("".join(f"{6 + 4 * k},11,10,10\n" for k in range(4)))
    for name, text, why in (("names.json", '{"train": ["seq", "nope"]}', "names 'nope'"),
                            ("broken.json", "{", "not valid JSON"), ("lines.txt", "seq train extra\n", "expected 'NAME SPLIT'")):
        (tmp_path / name).write_text(text)
        res = _cli("data", "build", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "--split-list", str(tmp_path / name), "-q")
        assert res.returncode == 2 and why in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not (tmp_path / "out").exists()
