"""Files and folders the tools write follow the user's umask (0644/0755 under 022, 0640/0750 under 027).

Each umask runs the writers in a fresh process (``subprocess`` sets the umask before Python
starts), then every path under the output folder is checked against the mode a plain
``open``/``mkdir`` would give. Atomic writes go through temporary files (mkstemp: 0600,
mkdtemp: 0700), so without ``neurosim.io``'s mode fix these checks fail.
"""

import os
import pathlib
import stat
import subprocess
import sys

import pytest

# The writers: CLI verbs on tiny inputs, in one process per umask.
WRITERS = r'''
import pathlib, sys
import numpy as np
from neurosim.cli import main

frames = np.full((8, 24, 32), 20, np.uint8)
for k in range(8):
    frames[k, 6:14, 2 + 3 * k:10 + 3 * k] = 200
np.savez("in.npz", frames=frames, frame_ts=np.arange(8) * 10_000)
verbs = [
    ["events", "simulate", "in.npz", "-o", "seq.h5", "-q"],
    ["events", "render", "seq.h5", "-o", "preview.mp4"],
    ["data", "synth", "-o", "synth", "--sequences", "2", "--frames", "24", "--size", "96x72", "--quiet"],
    ["chip", "estimate", "reference", "--chip", "tianjic", "-o", "chip/report.json", "--plot", "chip/report.png"],
    ["quant", "train-digits", "-o", "qrun", "--set", "epochs=1", "--set", "width=8", "--set", "train_images=200", "-q"],
    ["quant", "export", "qrun", "-o", "qnet"],
    ["demo", "-o", "demo_out", "--no-real"],
]
pathlib.Path("chip").mkdir()
for argv in verbs:
    if main(argv) != 0:
        sys.exit(f"neurosim {' '.join(argv)} failed")

# library writers the verbs above do not reach
from sim_events.calibrate import write_params_toml
from sim_events.params import DvsParams
from neurosim import intnet
from neurosim.io import atomic_folder
import shutil
intnet.save(intnet.load("qnet"), "direct_net")  # safetensors alone creates 0600 files
write_params_toml(DvsParams(), "params.toml")
src = pathlib.Path("private_run")
src.mkdir(mode=0o700)
(src / "weights.bin").write_bytes(b"x")
(src / "weights.bin").chmod(0o600)
with atomic_folder("copied_run") as tmp:  # what `neurosim tune` does with a run folder
    shutil.copytree(src, tmp, dirs_exist_ok=True)
shutil.rmtree(src)
'''


def _modes(root: pathlib.Path) -> dict[str, int]:
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = pathlib.Path(d) / name
            out[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return out


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_every_written_file_and_folder_follows_the_umask(tmp_path, umask, file_mode, dir_mode):
    res = subprocess.run([sys.executable, "-c", WRITERS], cwd=tmp_path, umask=umask,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    modes = _modes(tmp_path)
    expected = {"seq.h5", "preview.mp4", "synth/index.json", "synth/sequences/synth_000.h5", "chip/report.json",
                "chip/report.md", "chip/report.png", "qrun/checkpoint.safetensors", "qnet/network.json",
                "demo_out/preview.mp4", "demo_out/sequence.h5", "demo_out/summary.md", "demo_out/hybrid/intnet",
                "params.toml", "copied_run/weights.bin",
                "direct_net/tensors.safetensors"}
    assert expected <= modes.keys(), sorted(expected - modes.keys())
    assert not [p for p in modes if ".part" in p], "temporary files were left behind"
    wrong = {p: oct(m) for p, m in modes.items()
             if m != (dir_mode if (tmp_path / p).is_dir() else file_mode)}
    assert not wrong, f"modes other than {oct(file_mode)}/{oct(dir_mode)} under umask {oct(umask)}: {wrong}"


def test_umask_is_read_without_being_changed():
    from neurosim.io import current_umask, file_mode, folder_mode

    before = os.umask(0o027)
    try:
        assert current_umask() == 0o027 and file_mode() == 0o640 and folder_mode() == 0o750
        assert current_umask() == 0o027
    finally:
        os.umask(before)
