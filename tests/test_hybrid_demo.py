"""The hybrid demo stage with the shipped model: evaluation + export for the chip stage."""

import pathlib

import pytest


def test_demo_stage_uses_the_shipped_model_and_exports(tmp_path):
    from benchmarks_data.synth import SynthConfig, synth_dataset
    from hybrid import demo
    from hybrid.cli import DEFAULT_MODEL
    from neurosim.intnet import load

    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size < 10_000_000
    ds = tmp_path / "dataset"
    cfg = SynthConfig(width=96, height=72, n_frames=24, fps=240.0, target_size_px=(12, 16), scale_range=(0.9, 1.1),
                      n_distractors=1, subframes=1)
    synth_dataset(ds, n_sequences=2, seed=3, config=cfg, test_fraction=0.5)
    lines = []
    # (the real-video tables: tests/test_cli.py::test_demo_runs_every_stage_and_writes_its_report)
    summary = {"stages": {"benchmarks_data": {"dataset": str(ds)}}, "real_video": False}
    result = demo.run(tmp_path, summary, lines.append, seed=0)
    net = load(result["intnet"])
    assert {"frame", "events"} <= set(net.inputs)
    trackers = result["eval"]["trackers"]
    assert set(trackers) == {"hybrid (full)", "ANN branch only", "SNN branch only", "static_box", "csrt"}
    assert all(0 <= t["auc"] <= 1 for t in trackers.values())
    for p in result["plots"]:
        assert pathlib.Path(p).is_file()
    assert result["real"] == {}
