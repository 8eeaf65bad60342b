"""Inputs that used to be accepted with exit 0 and a wrong answer: now one line, exit 2."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from neurosim.cli import main

DATA = pathlib.Path(__file__).resolve().parent / "data"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def network(tmp_path, capsys) -> pathlib.Path:
    pytest.importorskip("torch")
    assert main(["quant", "train-digits", "-o", str(tmp_path / "q"), "--set", "epochs=1", "--set", "width=8",
                 "--set", "train_images=200", "-q"]) == 0
    assert main(["quant", "export", str(tmp_path / "q"), "-o", str(tmp_path / "net"), "-q"]) == 0
    capsys.readouterr()
    return tmp_path / "net"


@pytest.mark.parametrize("edit, why", [
    (lambda d: d.update(format_version=99), "format_version 99"),
    (lambda d: d["layers"][0].update(shift=-3), "shift -3 is outside [0, 31]"),
    (lambda d: d["layers"][0].update(source="nowhere"), "source 'nowhere'"),
    (lambda d: d["layers"][0].pop("kind"), "malformed"),
])
def test_an_impossible_network_json_is_refused(network, tmp_path, capsys, edit, why):
    doc = json.loads((network / "network.json").read_text())
    edit(doc)
    (network / "network.json").write_text(json.dumps(doc))
    assert main(["chip", "estimate", str(network), "-o", str(tmp_path / "r.json")]) == 2
    assert why in _one_line(capsys)
    assert not (tmp_path / "r.json").exists()


def test_hot_pixels_outside_the_sensor_are_refused(tmp_path, capsys):
    shutil.copy(DATA / "scene_davis346.npz", tmp_path / "in.npz")
    with np.load(tmp_path / "in.npz") as d:
        h, w = d["frames"].shape[1:]
    assert main(["events", "simulate", str(tmp_path / "in.npz"), "-o", str(tmp_path / "s.h5"),
                 "--set", f"hot_pixels=[{w * h}]", "-q"]) == 2
    assert "outside the" in _one_line(capsys) and not (tmp_path / "s.h5").exists()
    assert main(["events", "simulate", str(tmp_path / "in.npz"), "-o", str(tmp_path / "s.h5"),
                 "--set", f"hot_pixels=[{w * h - 1}]", "-q"]) == 0


@pytest.mark.parametrize("split", ["test", "all"])
def test_tune_never_fits_on_test_sequences(tmp_path, capsys, split):
    """`tune --split test` (or `all`, which holds the test split) is refused before anything is tracked."""
    pytest.importorskip("torch")
    from benchmarks_data.synth import SynthConfig, synth_dataset

    synth_dataset(tmp_path / "ds", n_sequences=2, seed=0, test_fraction=0.5,
                  config=SynthConfig(width=64, height=48, n_frames=16, target_size_px=(10, 12), n_distractors=0))
    assert main(["tune", "default", "--dataset", str(tmp_path / "ds"), "--split", split, "-o", str(tmp_path / "t"),
                 "-q"]) == 2
    assert "would fit parameters on the test sequences" in _one_line(capsys)
    assert not (tmp_path / "t").exists()
