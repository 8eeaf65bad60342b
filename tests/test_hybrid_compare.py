"""`neurosim compare`: seed means and differences against hand-worked values; bad input."""

import json

import numpy as np
import pytest

from neurosim.cli import main


def _eval(folder, trackers):
    """A scores.json as `neurosim eval` writes it: {name: (auc, p20, {sequence: auc})}."""
    folder.mkdir(parents=True)
    t = {n: {"auc": a, "precision_20": p, "per_sequence": {s: {"auc": v, "precision_20": p} for s, v in per.items()}}
         for n, (a, p, per) in trackers.items()}
    (folder / "scores.json").write_text(json.dumps({"trackers": t}))
    return str(folder)


def test_compare_worked_by_hand(tmp_path, capsys):
    e1 = _eval(tmp_path / "s0", {"a": (0.6, 0.9, {"x": 0.8, "y": 0.4}), "b": (0.5, 0.7, {"x": 0.5, "y": 0.5}),
                                 "only_here": (0.1, 0.1, {"x": 0.1, "y": 0.1})})
    e2 = _eval(tmp_path / "s1", {"a": (0.4, 0.7, {"x": 0.6, "y": 0.2}), "b": (0.3, 0.5, {"x": 0.1, "y": 0.5})})
    assert main(["compare", e1, e2, "--base", "a", "-o", str(tmp_path / "out"), "--json", "-q"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["trackers"]["a"]["auc"] == [0.6, 0.4] and r["trackers"]["a"]["auc_mean"] == pytest.approx(0.5)
    assert r["trackers"]["b"]["auc_sd"] == pytest.approx(np.sqrt(0.02))  # sample sd of 0.5, 0.3
    assert r["trackers"]["a"]["precision_20_mean"] == pytest.approx(0.8)
    d = r["differences"]["b"]
    assert d["per_seed"] == pytest.approx([0.1, 0.1]) and d["mean"] == pytest.approx(0.1)
    # seed-averaged per sequence: a (0.7, 0.3), b (0.3, 0.5) -> d = (+0.4, -0.2): mean 0.1, a wins 1 of 2
    b = d["bootstrap"]
    assert b["diff"] == pytest.approx(0.1) and (b["wins"], b["n"]) == (1, 2)
    assert -0.2 - 1e-12 <= b["ci95"][0] <= b["ci95"][1] <= 0.4 + 1e-12
    assert r["left_out"] == ["only_here"]
    assert "| b | +0.100 / +0.100 | +0.100 |" in (tmp_path / "out" / "compare.md").read_text()


def test_compare_bad_input(tmp_path, capsys):
    e1 = _eval(tmp_path / "s0", {"a": (0.6, 0.9, {"x": 0.8}), "b": (0.5, 0.7, {"x": 0.5})})
    e2 = _eval(tmp_path / "s1", {"a": (0.4, 0.7, {"z": 0.6}), "b": (0.3, 0.5, {"z": 0.1})})
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "scores.json").write_text("{not json")
    out = tmp_path / "out"
    for argv, words in (([e1, e2, "--base", "a"], "other sequences"), ([e1, "--base", "c"], "choose --base"),
                        ([e1, str(tmp_path / "junk"), "--base", "a"], "not a scores.json"),
                        ([e1, str(tmp_path / "none"), "--base", "a"], "does not exist")):
        assert main(["compare", *argv, "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_compare_pooled_worked_by_hand(tmp_path, capsys):
    """--pool: two evaluations of other sequences, pooled one vote per sequence."""
    e1 = _eval(tmp_path / "d0", {"a": (0.6, 0.9, {"x": 0.8, "y": 0.4}), "b": (0.5, 0.7, {"x": 0.5, "y": 0.5})})
    e2 = _eval(tmp_path / "d1", {"a": (0.6, 0.7, {"z": 0.6}), "b": (0.1, 0.5, {"z": 0.1})})
    assert main(["compare", e1, e2, "--base", "a", "--pool", "-o", str(tmp_path / "out"), "--json", "-q"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["pooled"] is True
    assert r["trackers"]["a"]["auc_mean"] == pytest.approx(0.6) and r["trackers"]["a"]["sequences"] == 3
    assert r["trackers"]["b"]["auc_mean"] == pytest.approx(1.1 / 3)
    assert r["trackers"]["a"]["precision_20_mean"] == pytest.approx(2.5 / 3)  # per sequence: 0.9, 0.9, 0.7
    d = r["differences"]["b"]
    assert d["per_evaluation"] == pytest.approx([0.1, 0.5])
    # pooled d = (+0.3, -0.1, +0.5): mean 0.7 / 3, a wins 2 of 3
    assert d["mean"] == pytest.approx(0.7 / 3) and d["bootstrap"]["diff"] == pytest.approx(0.7 / 3)
    assert (d["bootstrap"]["wins"], d["bootstrap"]["n"]) == (2, 3)
    assert -0.1 - 1e-12 <= d["bootstrap"]["ci95"][0] <= d["bootstrap"]["ci95"][1] <= 0.5 + 1e-12
    assert "mean over 3 sequences" in (tmp_path / "out" / "compare.md").read_text()
    # one folder twice: its sequences count twice (0:x and 1:x), the mean is unchanged
    assert main(["compare", e1, e1, "--base", "a", "--pool", "--json", "-q"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["differences"]["b"]["bootstrap"]["n"] == 4 and r["differences"]["b"]["mean"] == pytest.approx(0.1)


def test_compare_pooled_bad_input(tmp_path, capsys):
    e1 = _eval(tmp_path / "d0", {"a": (0.6, 0.9, {"x": 0.8, "y": 0.4}), "b": (0.5, 0.7, {"x": 0.5})})
    out = tmp_path / "out"
    assert main(["compare", e1, "--base", "a", "--pool", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "other sequences in one evaluation" in err and len(err.splitlines()) == 1
    assert not out.exists()
