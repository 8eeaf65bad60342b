"""Dataset builds from real tracking sequences: boxes vs ground truth, resume after SIGKILL,
Dask LocalCluster vs single process (byte-identical), bad sources reported per sequence."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks_data.build import build_dataset, sequence_seed
from benchmarks_data.loaders import TrackingWindows
from sim_events.formats.sequence import read_sequence
from sim_events.params import preset

PROJECT = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable


def _otb_gt(path: pathlib.Path) -> np.ndarray:
    """OTB groundtruth_rect.txt, parsed here independently: 1-based x y w h -> 0-based."""
    rows = [[float(v) for v in line.replace(",", " ").split()] for line in path.read_text().splitlines() if line.strip()]
    a = np.array(rows)
    a[:, :2] -= 1
    return a


def _vot_gt(path: pathlib.Path) -> np.ndarray:
    """VOT polygons -> axis-aligned (min x, min y, max x - min x, max y - min y)."""
    a = np.array([[float(v) for v in line.split(",")] for line in path.read_text().splitlines() if line.strip()])
    xs, ys = a[:, 0::2], a[:, 1::2]
    return np.stack([xs.min(1), ys.min(1), xs.max(1) - xs.min(1), ys.max(1) - ys.min(1)], axis=1)


def _mini_collection(root: pathlib.Path, shared: pathlib.Path, n_frames: int = 12, copies: int = 1) -> pathlib.Path:
    """Short OTB and VOT sequences made of the first frames of the real ones (symlinks)."""
    for c in range(copies):
        for name, layout in (("Crossing", "otb"), ("bag", "vot")):
            src = shared / "tracking" / name
            dst = root / f"{name}{c}"
            (dst / "img").mkdir(parents=True)
            for f in sorted((src / "img").iterdir())[:n_frames]:
                (dst / "img" / f.name).symlink_to(f)
            ann = "groundtruth_rect.txt" if layout == "otb" else "groundtruth.txt"
            lines = (src / ann).read_text().splitlines()[:n_frames]
            (dst / ann).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def real_dataset(shared_data, tmp_path_factory):
    """The two real sequences (OTB Crossing, VOT bag) built at half size into one dataset."""
    out = tmp_path_factory.mktemp("real") / "ds"
    report = build_dataset(shared_data / "tracking", out, preset("davis346"), aps_rate_hz=30.0, seed=0,
                           resize=None if os.environ.get("NEUROSIM_FULL_SIZE") else (180, 120))
    return out, report


def test_real_sequences_build_and_load_with_ground_truth_boxes(real_dataset, shared_data):
    out, report = real_dataset
    assert report["failed"] == [] and sorted(report["built"]) == ["Crossing", "bag"]
    index = json.loads((out / "index.json").read_text())
    assert {e["name"] for e in index["sequences"]} == {"Crossing", "bag"}
    assert sorted(index["splits"]["train"] + index["splits"]["test"]) == ["Crossing", "bag"]
    gts = {"Crossing": (_otb_gt(shared_data / "tracking/Crossing/groundtruth_rect.txt"), (360, 240)),
           "bag": (_vot_gt(shared_data / "tracking/bag/groundtruth.txt"), (480, 360))}
    ds = TrackingWindows(out, split=None, frames_per_window=1, snn_rate_hz=300.0)
    assert ds.bins_per_frame == 10
    for s, meta in enumerate(ds.sequences):
        gt, (w0, h0) = gts[meta.name]
        scale = np.array([meta.width / w0, meta.height / h0] * 2)
        expected = gt * scale
        # one box per input frame, at t_k = k * 1e6 / 30 fps, equal to the ground truth
        assert meta.box_t.shape == (len(gt),)
        np.testing.assert_allclose(meta.box_t, np.round(np.arange(len(gt)) * 1e6 / 30.0))
        np.testing.assert_allclose(meta.boxes, expected, rtol=0, atol=1e-3)
        # 30 fps input, 30 Hz APS: every input frame is an APS frame
        assert len(meta.frame_t) == len(gt)
        # through the Dataset: frame boxes equal the ground truth, bin boxes interpolate it
        idx = [i for i, (si, _) in enumerate(ds.windows) if si == s]
        for i in idx[:3] + idx[-2:]:
            item = ds[i]
            k = int(ds.windows[i][1])
            np.testing.assert_allclose(item["frame_boxes"][0].numpy(), expected[k], atol=1e-3)
            f = (np.arange(1, 11) / 10.0)[:, None]
            lin = (1 - f) * expected[k] + f * expected[k + 1]
            np.testing.assert_allclose(item["boxes"][0].numpy(), lin, atol=2e-3)
            assert item["frames"].shape == (1, 1, meta.height, meta.width)
            assert item["events"].shape == (1, 10, 2, meta.height, meta.width)
            # the event tensor holds exactly the window's raw events
            assert int(item["events"].sum()) == len(ds.events(i))
    # events were produced for both (the camera and target move)
    assert all(e["events"] > 1000 for e in index["sequences"])


def test_sequence_seed_depends_on_name_and_base_only():
    assert sequence_seed(0, "bag") == sequence_seed(0, "bag")
    assert sequence_seed(0, "bag") != sequence_seed(1, "bag")
    assert sequence_seed(0, "bag") != sequence_seed(0, "Crossing")


def _files(out: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "sequences").iterdir()) if p.suffix in (".h5", ".done")}


def test_killed_build_resumes_to_the_same_dataset(shared_data, tmp_path):
    src = _mini_collection(tmp_path / "src", shared_data, n_frames=16, copies=3)
    cmd = [PY, "-m", "neurosim.cli", "data", "build", str(src), "--resize", "120x90", "--quiet", "--seed", "3"]
    # reference: uninterrupted build
    ref = tmp_path / "ref"
    subprocess.run(cmd + ["-o", str(ref)], check=True, cwd=PROJECT, timeout=300)
    # killed build: SIGKILL as soon as the first sequence is complete
    out = tmp_path / "out"
    proc = subprocess.Popen(cmd + ["-o", str(out)], cwd=PROJECT)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list((out / "sequences").glob("*.done")) if (out / "sequences").is_dir() else []:
            break
        time.sleep(0.01)
    killed = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the build finished before it could be killed"
    assert not (out / "index.json").exists()
    # nothing that looks complete is broken: every NAME.h5 present reads, temp files are hidden
    for p in (out / "sequences").glob("*.h5"):
        read_sequence(p, load_frames=False)
    assert all(p.name.startswith(".") for p in (out / "sequences").iterdir() if p.suffix not in (".h5", ".done"))
    done_before = {p.stem for p in (out / "sequences").glob("*.done")}
    assert 1 <= len(done_before) < 6
    # re-run: completed sequences are skipped, the result equals the uninterrupted build
    res = subprocess.run(cmd + ["-o", str(out), "--json"], check=True, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    report = json.loads(res.stdout)
    assert set(report["skipped"]) == done_before
    assert len(report["built"]) + len(report["skipped"]) == 6
    assert _files(out) == _files(ref)
    assert (out / "index.json").read_bytes() == (ref / "index.json").read_bytes()
    assert not [p for p in (out / "sequences").iterdir() if p.name.startswith(".")]
    # a third run rebuilds nothing
    again = build_dataset(src, out, None, seed=3, resize=(120, 90))  # the CLI default parameters
    assert again["built"] == [] and len(again["skipped"]) == 6


def test_dask_local_cluster_build_is_byte_identical(shared_data, tmp_path):
    src = _mini_collection(tmp_path / "src", shared_data, n_frames=10, copies=1)
    params = preset("davis346")
    one = build_dataset(src, tmp_path / "one", params, seed=7, resize=(120, 90), workers=1)
    from distributed import LocalCluster

    # a 2-worker LocalCluster reached by its address, as a remote cluster would be
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40) as cluster:
        dask = build_dataset(src, tmp_path / "dask", params, seed=7, resize=(120, 90), workers=2,
                             scheduler=cluster.scheduler_address)
    pool = build_dataset(src, tmp_path / "pool", params, seed=7, resize=(120, 90), workers=2)
    assert one["failed"] == [] and dask["failed"] == [] and pool["failed"] == [], (one, dask, pool)
    assert sorted(dask["built"]) == sorted(one["built"]) == ["Crossing0", "bag0"], (one, dask)
    ref = _files(tmp_path / "one")
    assert len(ref) == 4, sorted(ref)
    assert _files(tmp_path / "dask") == ref, "dask build differs from the single-process build"
    assert _files(tmp_path / "pool") == ref, "process-pool build differs from the single-process build"
    assert (tmp_path / "dask" / "index.json").read_bytes() == (tmp_path / "one" / "index.json").read_bytes()


def test_build_bytes_do_not_depend_on_when_python_frees_h5py_objects(tmp_path):
    """A Dask worker samples its task thread's frames every 10 ms and, on a loaded machine, can
    hold them (with the h5py objects they reference) after the frames return. HDF5 placed a
    dataset's cached chunks when its last handle closed, so the same events gave a different
    file (the Dask test failed under load). A profile hook that keeps every frame reproduces
    that without Dask: the build must not change."""
    import cv2

    seq = tmp_path / "src" / "Square"
    (seq / "img").mkdir(parents=True)
    rows = []
    for k in range(6):  # a bright square moving over a gradient (events, flow, APS frames)
        img = np.tile(np.linspace(40, 120, 96, dtype=np.uint8), (72, 1))
        x0, y0 = 10 + 6 * k, 20 + 2 * k
        img[y0:y0 + 24, x0:x0 + 24] = 220
        cv2.imwrite(str(seq / "img" / f"{k + 1:04d}.png"), img)
        rows.append(f"{x0 + 1} {y0 + 1} 24 24")
    (seq / "groundtruth_rect.txt").write_text("\n".join(rows) + "\n")
    params = preset("davis346")
    plain = build_dataset(tmp_path / "src", tmp_path / "plain", params, seed=5)
    held = []

    def keep(frame, event, arg):  # what a sampling profiler may do: keep frames after they return
        if event == "return":
            held.append(frame)

    sys.setprofile(keep)
    try:
        kept = build_dataset(tmp_path / "src", tmp_path / "held", params, seed=5)
    finally:
        sys.setprofile(None)
    assert held
    held.clear()
    assert plain["built"] == kept["built"] == ["Square"] and plain["events"] > 0, (plain, kept)
    assert _files(tmp_path / "held") == _files(tmp_path / "plain"), "h5py object lifetimes changed the file"
