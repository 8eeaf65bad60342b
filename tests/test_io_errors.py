"""I/O errors are one line and exit 2 with nothing left behind: outputs that cannot be created
(/proc, /sys, a name too long), a full disk, and a reader that closes stdout early."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def neurosim(*args, cwd, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "neurosim.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, **kw)


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    return lines[0]


@pytest.fixture
def video(tmp_path) -> pathlib.Path:
    """Frames of a bright square moving over a textured background (many events)."""
    rng = np.random.default_rng(0)
    background = rng.integers(20, 120, (96, 128)).astype(np.uint8)
    frames = np.repeat(background[None], 16, axis=0)
    for k in range(16):
        frames[k, 30:60, 4 + 6 * k:34 + 6 * k] = 230
    path = tmp_path / "in.npz"
    np.savez(path, frames=frames, frame_ts=np.arange(16) * 5_000)
    return path


@pytest.mark.parametrize("target", ["/proc/neurosim_x.h5", "/sys/neurosim_x.h5"])
def test_an_output_where_no_file_can_be_created(video, tmp_path, target):
    if not pathlib.Path(target).parent.is_dir():
        pytest.skip(f"{pathlib.Path(target).parent} does not exist here")
    line = one_line(neurosim("events", "simulate", str(video), "-o", target, "-q", cwd=tmp_path))
    assert "cannot create files in" in line and not pathlib.Path(target).exists()


def test_an_output_name_too_long(video, tmp_path):
    line = one_line(neurosim("events", "simulate", str(video), "-o", "x" * 300 + ".h5", "-q", cwd=tmp_path))
    assert "choose a shorter name" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]


@pytest.fixture
def small_disk(tmp_path):
    """A 48 KiB tmpfs (needs root to mount; skips otherwise)."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield small
    subprocess.run(["umount", str(small)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(video, tmp_path, small_disk):
    """One APS frame (12 KB) fits the up-front estimate; the events then fill the disk."""
    line = one_line(neurosim("events", "simulate", str(video), "-o", str(small_disk / "seq.h5"), "-q",
                             "--aps-every", "16", cwd=tmp_path))
    assert "No space left on device" in line and "free disk space" in line
    assert list(small_disk.iterdir()) == []


def test_an_output_larger_than_the_free_space_is_refused_before_any_work(video, tmp_path, small_disk):
    """16 APS frames of 128x96 (196 KB) cannot fit 48 KiB: refused up front, naming the sizes."""
    line = one_line(neurosim("events", "simulate", str(video), "-o", str(small_disk / "seq.h5"), "-q", cwd=tmp_path))
    assert "at least 197 kB of disk" in line and "is free" in line and "--aps-every" in line, line
    assert list(small_disk.iterdir()) == []


def test_a_synthetic_dataset_larger_than_the_free_space_is_refused_before_any_work(tmp_path, small_disk):
    """4 sequences x 30 APS frames of 346x260 (10.8 MB) cannot fit 48 KiB."""
    line = one_line(neurosim("data", "synth", "-o", str(small_disk / "ds"), "--sequences", "4", "--size", "346x260",
                             "-q", cwd=tmp_path))
    assert "120 APS frames" in line and "10.8 MB of disk" in line and "is free" in line, line
    assert list(small_disk.iterdir()) == []


def test_a_sensor_larger_than_the_memory_is_refused_before_any_work(video, tmp_path):
    """Under a 2 GB address-space limit (ulimit -v), a 4000x3000 sensor (about 2.4 GB) is refused."""
    resource = pytest.importorskip("resource")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2_000_000_000, resource.RLIM_INFINITY))

    line = one_line(neurosim("events", "simulate", str(video), "-o", "seq.h5", "-q", "--resize", "4000x3000",
                             cwd=tmp_path, preexec_fn=limit))
    assert "of memory but" in line and "smaller --resize" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]


def test_available_memory_is_bounded_by_the_machine_and_the_address_space_limit():
    from neurosim.resources import available_memory

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available_memory() <= total
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, resource.RLIM_INFINITY)); "
            "from neurosim.resources import available_memory; print(available_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert 0 < int(out.stdout) < 1_500_000_000


def test_stdout_closed_early_is_not_an_error(tmp_path):
    """`neurosim ... --json | head -c 1`: no BrokenPipeError traceback, exit 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurosim.cli", "chip", "estimate", "reference", "--json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before anything is printed
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_sigterm_leaves_no_partial_output_and_no_traceback(tmp_path):
    """SIGTERM while the sequence file is being written: one line, exit 143, no output and no temporary file."""
    import signal
    import time

    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(20, 120, (130, 173)).astype(np.uint8)[None], 3000, axis=0)
    for k in range(3000):
        frames[k, 50:80, (k // 20) % 140:(k // 20) % 140 + 30] = 230
    np.savez(tmp_path / "big.npz", frames=frames, frame_ts=np.arange(3000) * 4166)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurosim.cli", "events", "simulate", "big.npz", "-o", "seq.h5", "-q"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".seq.h5*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the writer is open: main() runs, so its SIGTERM handler is in place
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode in (0, -signal.SIGTERM) and (tmp_path / "seq.h5").exists():
        pytest.skip("the simulation finished before the signal arrived")
    assert proc.returncode == 143 and err.strip() == "neurosim: terminated", (proc.returncode, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz"]


def test_train_interrupted_before_its_first_checkpoint_leaves_no_run_folder(tmp_path):
    import signal
    import time

    pytest.importorskip("torch")
    assert neurosim("data", "synth", "-o", "ds", "--sequences", "2", "--frames", "24", "--size", "96x72", "-q",
                    cwd=tmp_path).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurosim.cli", "train", "--dataset", "ds", "-o", "run",
                             "--set", "epochs=1", "--set", "batches_per_epoch=500", "-q"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err.strip() == "neurosim: terminated", (proc.returncode, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def _descendants(pid: int) -> set[int]:
    """PIDs of every living process below ``pid`` (from /proc)."""
    parents = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _otb_collection(root: pathlib.Path, n_sequences: int, n_frames: int, size=(120, 160)) -> pathlib.Path:
    import cv2

    rng = np.random.default_rng(0)
    for s in range(n_sequences):
        img = root / f"seq{s}" / "img"
        img.mkdir(parents=True)
        background = rng.integers(20, 120, size).astype(np.uint8)
        for k in range(n_frames):
            frame = background.copy()
            frame[40:70, 5 + k:35 + k] = 230
            cv2.imwrite(str(img / f"{k + 1:04d}.png"), frame)
        (img.parent / "groundtruth_rect.txt").write_text("".join(f"{6 + k},41,30,30\n" for k in range(n_frames)))
    return root


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_workers_do_not_outlive_a_killed_build(tmp_path):
    import signal
    import time

    src = _otb_collection(tmp_path / "src", 4, 150, size=(480, 640))  # a few seconds of work per worker
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurosim.cli", "data", "build", str(src), "-o", "out", "--workers", "2",
                             "--fps", "240", "-q"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while len(_descendants(proc.pid)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # forkserver + 2 workers
    time.sleep(0.5)  # the workers' initializer has run: they are mid-task
    workers = _descendants(proc.pid)
    if proc.poll() is not None or len(workers) < 3:
        pytest.skip("the build ended before its workers could be seen")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(pathlib.Path(f"/proc/{p}").exists() and
                                              "Z" not in pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]
                                              for p in workers if pathlib.Path(f"/proc/{p}/stat").exists()):
        time.sleep(0.1)
    alive = [p for p in workers if pathlib.Path(f"/proc/{p}/stat").exists()
             and pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"worker processes {alive} outlived the killed build"


def test_ctrl_c_of_a_two_worker_build_is_one_line_and_stops_its_workers(tmp_path):
    """SIGINT to the whole process group, as Ctrl-C sends it: no worker tracebacks, no worker left,
    no temporary files; sequences finished before it stay for a re-run to skip."""
    import signal
    import time

    src = _otb_collection(tmp_path / "src", 4, 150, size=(480, 640))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurosim.cli", "data", "build", str(src), "-o", "out", "--workers", "2",
                             "--fps", "240", "-q"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(_descendants(proc.pid)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    workers = _descendants(proc.pid)
    if proc.poll() is not None:
        pytest.skip("the build ended before it could be interrupted")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0 and len(json.loads((tmp_path / "out" / "index.json").read_text())["sequences"]) == 4:
        pytest.skip("the build finished before the interrupt reached it (a loaded machine)")
    assert proc.returncode == 130 and err.strip() == "neurosim: interrupted", (proc.returncode, err)
    time.sleep(1)
    alive = [p for p in workers if pathlib.Path(f"/proc/{p}/stat").exists()
             and pathlib.Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive
    assert not list((tmp_path / "out").rglob(".*.part")) if (tmp_path / "out").exists() else True
