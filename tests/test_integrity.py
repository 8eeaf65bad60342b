"""Checkpoints and exports carry the SHA-256 of their tensor file, verified on load: a flipped
byte inside the weights is one line and exit 2, not silently wrong answers."""

import json
import pathlib
import shutil

import pytest

from neurosim.cli import main
from neurosim.errors import InputError
from neurosim.io import CONTENT_HASH, sha256_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "hybrid" / "models" / "default"


def flip_last_byte(path: pathlib.Path) -> None:
    """Flip one bit of the last byte: inside the tensor data, past the safetensors header."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def shipped_copy(tmp_path) -> pathlib.Path:
    for suffix in (".safetensors", ".json"):
        shutil.copy(DEFAULT.with_suffix(suffix), tmp_path / f"model{suffix}")
    return tmp_path / "model.safetensors"


def test_the_shipped_model_records_its_hash():
    doc = json.loads(DEFAULT.with_suffix(".json").read_text())
    assert doc[CONTENT_HASH] == sha256_file(DEFAULT.with_suffix(".safetensors"))


def test_a_flipped_weight_byte_is_refused_on_load(shipped_copy, tmp_path, capsys):
    pytest.importorskip("torch")
    from hybrid.checkpoint import load_model

    load_model(shipped_copy)  # intact: loads
    flip_last_byte(shipped_copy)
    with pytest.raises(InputError, match="SHA-256"):
        load_model(shipped_copy)
    assert main(["export", str(shipped_copy), "-o", str(tmp_path / "int")]) == 2
    assert "does not match the SHA-256 recorded in" in one_line(capsys)
    assert not (tmp_path / "int").exists()


def test_files_written_before_hashes_still_load(shipped_copy):
    pytest.importorskip("torch")
    from hybrid.checkpoint import load_model

    cfg = shipped_copy.with_suffix(".json")
    doc = json.loads(cfg.read_text())
    del doc[CONTENT_HASH]
    cfg.write_text(json.dumps(doc))
    load_model(shipped_copy)


def test_a_saved_and_shipped_run_records_the_hash_of_what_it_wrote(tmp_path):
    torch = pytest.importorskip("torch")
    from hybrid.checkpoint import WEIGHTS, load_model, save_checkpoint, ship

    model = load_model("default")
    save_checkpoint(tmp_path / "run", model, {"model": dataclasses_asdict(model.cfg)})
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc[CONTENT_HASH] == sha256_file(tmp_path / "run" / WEIGHTS)
    shipped = ship(tmp_path / "run", tmp_path / "shipped")
    assert json.loads(shipped.with_suffix(".json").read_text())[CONTENT_HASH] == sha256_file(shipped)
    reloaded = load_model(shipped)
    for (k, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), k


def dataclasses_asdict(cfg):
    import dataclasses

    return dataclasses.asdict(cfg)


def test_a_flipped_byte_in_an_integer_network_is_refused(tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["export", "default", "-o", str(tmp_path / "int"), "-q"]) == 0
    capsys.readouterr()
    flip_last_byte(tmp_path / "int" / "tensors.safetensors")
    assert main(["chip", "estimate", str(tmp_path / "int"), "--set", "chips=4", "-o", str(tmp_path / "r.json")]) == 2
    assert "SHA-256" in one_line(capsys)
    assert not (tmp_path / "r.json").exists()


def test_a_flipped_byte_in_a_digits_run_is_refused(tmp_path, capsys):
    pytest.importorskip("torch")
    run = tmp_path / "qrun"
    assert main(["quant", "train-digits", "-o", str(run), "--set", "epochs=1", "--set", "width=8",
                 "--set", "train_images=200", "-q"]) == 0
    capsys.readouterr()
    flip_last_byte(run / "checkpoint.safetensors")
    assert main(["quant", "export", str(run), "-o", str(tmp_path / "qnet")]) == 2
    assert "SHA-256" in one_line(capsys)
    assert not (tmp_path / "qnet").exists()
