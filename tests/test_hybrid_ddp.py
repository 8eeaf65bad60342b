"""Two-process torchrun (DDP, gloo) training matches one process on the same global batch."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

TINY = ["--set", "epochs=1", "--set", "batches_per_epoch=1", "--set", "batch_size=4",
        "--set", "model.search_size=32", "--set", "model.ann_channels=[4,8,8]", "--set", "model.snn_channels=[4,8,8]"]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> pathlib.Path:
    from benchmarks_data.synth import SynthConfig, synth_dataset

    out = tmp_path_factory.mktemp("hybrid_ddp") / "dataset"
    cfg = SynthConfig(width=64, height=48, n_frames=40, fps=240.0, target_size_px=(10, 14), scale_range=(0.8, 1.2),
                      n_distractors=1, subframes=1)
    synth_dataset(out, n_sequences=2, seed=1, config=cfg, test_fraction=0.0)
    return out


def _run(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_process_step_matches_single_process(tiny_dataset, tmp_path):
    from safetensors.numpy import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "neurosim.cli", "train", "--dataset", str(tiny_dataset), "-o", str(single), "-q", *TINY], env)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "neurosim.cli",
          "train", "--dataset", str(tiny_dataset), "-o", str(ddp), "-q", *TINY], env)
    a = json.loads((single / "metrics.jsonl").read_text().splitlines()[0])
    b = json.loads((ddp / "metrics.jsonl").read_text().splitlines()[0])
    assert a["step"] == b["step"] == 1
    for key in ("loss", "ann", "snn", "box"):
        assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key
    wa, wb = load_file(str(single / "checkpoint.safetensors")), load_file(str(ddp / "checkpoint.safetensors"))
    assert wa.keys() == wb.keys()
    moved = 0
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=1e-4, atol=1e-5, err_msg=k)
    # the step changed the weights (so the comparison above is about an update, not the init)
    from hybrid.train import TrainConfig, build_model
    from hybrid.model import ModelConfig

    init = build_model(TrainConfig(model=ModelConfig(search_size=32, ann_channels=(4, 8, 8), snn_channels=(4, 8, 8)))).state_dict()
    moved = sum(not np.allclose(init[k].numpy(), wa[k]) for k in init)
    assert moved > 5
