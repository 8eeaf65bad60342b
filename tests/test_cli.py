"""The CLI shell: help, one-line errors with exit code 2, config handling."""

import subprocess
import sys

import pytest

from neurosim.cli import main
from neurosim.config import apply_overrides, parse_value


def test_help_lists_every_group(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("events", "data", "train", "eval", "track", "chip", "demo"):
        assert name in out


def test_unknown_command_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "neurosim.cli", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "invalid choice" in proc.stderr


def test_overrides_parse_toml_literals():
    assert parse_value("0.25") == 0.25 and parse_value("true") is True and parse_value("abc") == "abc"
    assert apply_overrides({"a": {"b": 1}}, ["a.b=2", "c=[1,2]"]) == {"a": {"b": 2}, "c": [1, 2]}


def test_bad_override_is_a_parameter_error():
    from neurosim.errors import ParameterError

    with pytest.raises(ParameterError, match="key=value"):
        apply_overrides({}, ["novalue"])


def test_demo_runs_every_stage_and_writes_its_report(tmp_path):
    import json

    assert main(["demo", "-o", str(tmp_path), "-q"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["stages"]) == ["sim_events", "benchmarks_data", "hybrid", "chip_models"]
    assert summary["stages"]["sim_events"]["events"] > 0
    assert summary["stages"]["chip_models"]["fps"] > 0
    report = (tmp_path / "summary.md").read_text()
    for stage in summary["stages"]:
        assert f"## {stage}" in report
    assert (tmp_path / "chip" / "report.png").is_file()
    from hybrid.demo import real_tracking_folder

    real = summary["stages"]["hybrid"]["real"]
    if real_tracking_folder() is not None:  # the real OTB/VOT sequences, in both regimes, with the baselines
        assert set(real) == {"real30", "real240"}
        for regime in real.values():
            assert {"hybrid (full)", "ANN branch only", "SNN branch only", "csrt", "kcf", "mil", "static_box"} == set(regime["eval"]["trackers"])


def test_demo_refuses_a_file_as_output_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "neurosim.cli", "demo", "-o", str(target)], capture_output=True, text=True)
    assert proc.returncode == 2 and "is a file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
