"""I/O errors are one line and exit 2 with nothing left behind: outputs that cannot be created
(/proc, /sys, a name too long), a full disk, and a reader that closes stdout early."""

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


def test_a_full_disk_is_one_line_and_leaves_nothing(video, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        line = one_line(neurosim("events", "simulate", str(video), "-o", str(small / "seq.h5"), "-q", cwd=tmp_path))
        assert "No space left on device" in line and "free disk space" in line
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


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
    """SIGTERM while the sequence file is being written: the temporary file is deleted, one line, exit 143."""
    import signal
    import time

    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(20, 120, (260, 346)).astype(np.uint8)[None], 600, axis=0)
    for k in range(600):
        frames[k, 100:160, k // 3:k // 3 + 60] = 230
    np.savez(tmp_path / "big.npz", frames=frames, frame_ts=np.arange(600) * 4166)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurosim.cli", "events", "simulate", "big.npz", "-o", "seq.h5", "-q"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".seq.h5*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.skip("the simulation finished before it could be interrupted")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
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
