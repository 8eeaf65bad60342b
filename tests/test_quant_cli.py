"""`neurosim quant` verbs: train, export, schemes, and one-line errors without partial output."""

import json

from neurosim.cli import main


def test_train_export_and_schemes(tmp_path, capsys):
    run, net = tmp_path / "run", tmp_path / "net"
    assert main(["quant", "train-digits", "-o", str(run), "--set", "epochs=2", "--set", "width=8",
                 "--set", "train_images=400", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scheme"] == "eoq" and summary["test_accuracy"] > 40
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors", "config.json"]
    assert main(["quant", "export", str(run), "-o", str(net), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["agreement"] == 1.0 and (net / "network.json").is_file()
    assert main(["quant", "schemes", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["wageubn"]["u"] == 24 and table["eoq"]["update"] == 8


def test_errors_are_one_line_and_leave_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["quant", "train-digits", "-o", str(run), "--set", "scheme=int3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown quantization scheme 'int3'" in err
    assert main(["quant", "train-digits", "-o", str(run), "--set", "epochs=1", "--set", "arch=cnn-bn",
                 "--set", "scheme=wageubn", "--set", "width=4", "--set", "train_images=64", "-q"]) == 0
    assert main(["quant", "export", str(run), "-o", str(tmp_path / "net")]) == 2
    assert "layer 1 (QBatchNorm2d) has no integer form" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial network folder
    bad = tmp_path / "bad.toml"
    bad.write_text("base = 'eoq'\nw = 40\n")
    assert main(["quant", "schemes", str(bad)]) == 2
    assert "bit width w = 40 is outside 2-32" in capsys.readouterr().err
