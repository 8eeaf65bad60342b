"""Bad input to the tracker's verbs: one line naming the problem and the fix, exit 2, nothing written."""

import json
import pathlib

import h5py
import numpy as np
import pytest

pytest.importorskip("torch")

from neurosim.cli import main  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "hybrid" / "models" / "default"


def _dataset(tmp_path: pathlib.Path, boxes: bool) -> pathlib.Path:
    from benchmarks_data.synth import synth_dataset

    ds = tmp_path / "ds"
    synth_dataset(ds, n_sequences=1, seed=0, test_fraction=0.0)
    if not boxes:
        index = json.loads((ds / "index.json").read_text())
        with h5py.File(ds / index["sequences"][0]["file"], "a") as f:
            del f["boxes"]
    return ds


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_sequence_without_boxes_is_refused_by_eval(tmp_path, capsys):
    ds = _dataset(tmp_path, boxes=False)
    assert main(["eval", "default", "--dataset", str(ds), "--split", "all", "-o", str(tmp_path / "ev"), "--baselines", "none"]) == 2
    assert "no ground-truth box" in _one_error_line(capsys)
    assert not (tmp_path / "ev").exists()


def test_an_incompatible_checkpoint_is_one_line(tmp_path, capsys):
    from safetensors.torch import save_file
    import torch

    save_file({"ann.0.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    from neurosim.io import CONTENT_HASH, sha256_file

    doc = json.loads(DEFAULT.with_suffix(".json").read_text())
    (tmp_path / "other.json").write_text(json.dumps({**doc, CONTENT_HASH: sha256_file(tmp_path / "other.safetensors")}))
    ds = _dataset(tmp_path, boxes=True)
    assert main(["eval", str(tmp_path / "other.safetensors"), "--dataset", str(ds), "--split", "all",
                 "-o", str(tmp_path / "ev"), "--baselines", "none"]) == 2
    line = _one_error_line(capsys)
    assert "does not fit its config" in line and "ann.0.weight" in line
    assert not (tmp_path / "ev").exists()


def test_eval_applies_model_settings_and_refuses_others(tmp_path, capsys):
    ds = _dataset(tmp_path, boxes=True)
    assert main(["eval", "default", "--dataset", str(ds), "--split", "all", "-o", str(tmp_path / "ev"), "--baselines", "none",
                 "--set", "epochs=3"]) == 2
    assert "only model settings" in _one_error_line(capsys) and not (tmp_path / "ev").exists()
    boxes = {}
    for target in ("dcf", "template"):
        out = tmp_path / target
        assert main(["eval", "default", "--dataset", str(ds), "--split", "all", "-o", str(out), "--baselines", "none",
                     "--variants", "ann_only", "--set", f"model.target_model={target}", "-q"]) == 0
        boxes[target] = sorted((out / "results").rglob("*.txt"))[0].read_text()
    assert boxes["dcf"] != boxes["template"]  # the override reached the tracker


@pytest.mark.parametrize("setting, named", [("model.alpha_frame=\"x\"", "model.alpha_frame"),
                                            ("model.no_such_key=1", "model.no_such_key"),
                                            ("model.target_events=-1", "model.target_events"),
                                            ("model.target_redetect=2", "model.target_redetect")])
def test_a_bad_model_setting_names_its_full_key(tmp_path, capsys, setting, named):
    ds = _dataset(tmp_path, boxes=True)
    assert main(["eval", "default", "--dataset", str(ds), "--split", "all", "-o", str(tmp_path / "ev"), "--baselines", "none",
                 "--set", setting]) == 2
    line = _one_error_line(capsys)
    assert f"{named} " in line or f"{named}:" in line, line
    assert not (tmp_path / "ev").exists()
