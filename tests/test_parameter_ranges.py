"""Every parameter has a range checked before work starts (issue 16, item 2).

Each case is a value reported to crash, hang or print a traceback: it must now be one stderr
line naming the parameter, exit 2, and no output written. The inputs are tiny or absent, so a
case that started real work instead of failing would show as a wrong exit or an output.
"""

import pathlib

import cv2
import numpy as np
import pytest

from neurosim.cli import main

DATA = pathlib.Path(__file__).parent / "data"


def _video(path: pathlib.Path) -> pathlib.Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (32, 24))
    rng = np.random.default_rng(0)
    for _ in range(4):
        w.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    w.release()
    return path


def _cases():
    """(id, argv template with {tmp}, {video}, {out}; the word the message must contain)."""
    train = ["train", "--dataset", "{tmp}/no_dataset", "-o", "{out}"]
    simulate = ["events", "simulate", "{video}", "-o", "{out}"]
    return [
        ("train-lr-inf", train + ["--set", "lr=inf"], "lr"),
        ("train-lr-nan", train + ["--set", "lr=nan"], "lr"),
        ("train-batches-per-epoch", train + ["--set", "batches_per_epoch=-1"], "batches_per_epoch"),
        ("train-checkpoint-every", train + ["--set", "checkpoint_every=0"], "checkpoint_every"),
        ("train-jitter", train + ["--set", "jitter=-5"], "jitter"),
        ("train-search-size", train + ["--set", "model.search_size=100000"], "model.search_size"),
        ("train-seed", train + ["--seed", "-1"], "seed"),
        ("simulate-leak", simulate + ["--set", "leak_rate_hz=1e15"], "leak_rate_hz"),
        ("simulate-blur", simulate + ["--set", "blur_px=1e9"], "blur_px"),
        ("simulate-shot-noise", simulate + ["--set", "shot_noise_rate_hz=1e12"], "shot_noise_rate_hz"),
        ("simulate-hot-rate", simulate + ["--set", "hot_pixel_rate_hz=inf"], "hot_pixel_rate_hz"),
        ("simulate-resize", simulate + ["--resize", "100000x100000"], "resize"),
        ("simulate-seed", simulate + ["--seed", "-1"], "seed"),
        ("simulate-aps-every", simulate + ["--aps-every", "0"], "aps_every"),
        ("import-width", ["data", "import", "{video}", "-o", "{out}", "--width", "0", "--height", "10"], "--width"),
        ("synth-distractors", ["data", "synth", "-o", "{out}", "--set", "synth.n_distractors=100000"],
         "synth.n_distractors"),
        ("synth-size", ["data", "synth", "-o", "{out}", "--size", "100000x100"], "resize"),
        ("synth-leak", ["data", "synth", "-o", "{out}", "--set", "leak_rate_hz=1e15"], "leak_rate_hz"),
        ("build-scheduler", ["data", "build", "{tmp}", "-o", "{out}", "--scheduler", "junk"], "--scheduler"),
        ("build-fractions", ["data", "build", "{tmp}", "-o", "{out}", "--test-fraction", "0.6", "--val-fraction", "0.5"],
         "--test-fraction"),
        ("compare-t0-nan", ["events", "compare", str(DATA / "scene_sequence.h5"), str(DATA / "dv_davis346.aedat4"),
                            "--t0", "nan"], "--t0"),
        ("eval-max-frames", ["eval", "default", "--dataset", "{tmp}", "-o", "{out}", "--max-frames", "0"], "--max-frames"),
        ("chip-threads", ["chip", "estimate", "reference", "--threads", "100000", "-o", "{out}"], "--threads"),
        ("chip-activity", ["chip", "estimate", "reference", "--activity", "nan", "-o", "{out}"], "--activity"),
        ("demo-seed", ["demo", "-o", "{out}", "--seed", "-1"], "--seed"),
    ]


@pytest.mark.parametrize("argv, needle", [c[1:] for c in _cases()], ids=[c[0] for c in _cases()])
def test_out_of_range_is_one_line_and_nothing_written(argv, needle, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "out"
    video = _video(inputs / "v.mp4") if "{video}" in argv else None
    argv = [a.format(tmp=inputs, video=video, out=out) for a in argv]
    before = sorted(p.name for p in inputs.iterdir())
    code = main(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("neurosim: error:"), captured.err
    assert needle in lines[0] and "Traceback" not in captured.err
    assert not out.exists()
    assert sorted(p.name for p in inputs.iterdir()) == before


def test_message_names_the_bound_and_how_to_raise_it(capsys, tmp_path):
    code = main(["events", "simulate", str(_video(tmp_path / "v.mp4")), "-o", str(tmp_path / "o.h5"),
                 "--set", "leak_rate_hz=1e15"])
    err = capsys.readouterr().err
    assert code == 2
    assert "[0, 10000]" in err and "sim_events/params.py" in err


def test_bounds_accept_the_presets_and_defaults():
    from benchmarks_data.synth import SynthConfig
    from hybrid.train import TrainConfig
    from neurosim.config import from_dict
    from sim_events.params import PRESETS, DvsParams, preset

    for name in PRESETS:
        preset(name)
    DvsParams(leak_rate_hz=1e4, blur_px=50.0)  # the bounds themselves are allowed
    from_dict(TrainConfig, {"model": {"search_size": 1024}, "seed": 2**32 - 1})
    SynthConfig().check()


@pytest.mark.parametrize("kwargs", [{"blur_px": 50.01}, {"jitter_us": float("nan")}, {"refractory_us": -1.0},
                                    {"contrast_threshold_on": 0.0}, {"max_substeps": 5000}])
def test_dvs_params_out_of_range(kwargs):
    from neurosim.errors import ParameterError
    from sim_events.params import DvsParams

    with pytest.raises(ParameterError, match=next(iter(kwargs))):
        DvsParams(**kwargs)


def _dataset(root: pathlib.Path, splits: dict, files: bool = True) -> pathlib.Path:
    import json

    (root / "sequences").mkdir(parents=True)
    if files:
        (root / "sequences" / "a.h5").write_bytes(b"")
    index = {"format": "neurosim-dataset", "format_version": 1, "splits": splits,
             "sequences": [{"name": "a", "file": "sequences/a.h5"}]}
    (root / "index.json").write_text(json.dumps(index))
    return root


@pytest.mark.parametrize("verb", [["eval", "default"], ["train"], ["data", "info"]])
@pytest.mark.parametrize("splits, files, needle", [({"train": ["a"], "test": ["a", "ghost"]}, True, "'ghost'"),
                                                   ({"train": ["a"], "test": ["a"]}, False, "has no file")],
                         ids=["split-names-missing-sequence", "sequence-file-missing"])
def test_dataset_index_checked_up_front(verb, splits, files, needle, tmp_path, capsys):
    data = _dataset(tmp_path / "d", splits, files)
    out = tmp_path / "out"
    argv = verb + ([str(data)] if verb == ["data", "info"] else ["--dataset", str(data), "-o", str(out)])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize("setting, needle", [("mesh_rows=1000000000", "mesh_rows"), ("clock_hz=inf", "clock_hz"),
                                             ("energy_per_mac_pj=nan", "energy_per_mac_pj"),
                                             ("state_bytes_per_neuron=0", "state_bytes_per_neuron")])
def test_chip_parameters_out_of_range(setting, needle, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["chip", "estimate", "reference", "--set", setting, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["quant", "train-digits", "-o", "{out}", "--set", "lr=inf"], "lr"),
    (["quant", "train-digits", "-o", "{out}", "--set", "epochs=0"], "epochs"),
    (["snn", "crosscheck", "--neurons", "100000000"], "neurons"),
], ids=["digits-lr", "digits-epochs", "crosscheck-neurons"])
def test_other_parameter_sets_out_of_range(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([a.format(out=out) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs POSIX resource limits")
def test_out_of_memory_is_one_line_and_nothing_written(tmp_path):
    """A size inside its range that does not fit the memory given: one line, exit 2, no file."""
    import resource
    import subprocess
    import sys

    video, out = _video(tmp_path / "v.mp4"), tmp_path / "o.h5"

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2_500_000_000, 2_500_000_000))

    res = subprocess.run([sys.executable, "-m", "neurosim.cli", "events", "simulate", str(video), "-o", str(out),
                          "--resize", "8192x8192"], capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert res.returncode == 2, res.stderr
    # refused up front by the memory estimate (neurosim.resources); "ran out of memory" if it ever got past it
    assert res.stderr.count("\n") == 1 and ("of memory but" in res.stderr or "ran out of memory" in res.stderr), res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


@pytest.mark.parametrize("argv, says", [
    (["demo", "-o", "{out}", "--config", "{cfg}"], "has no parameters to take from"),
    (["events", "info", "{seq}", "--set", "refractory_us=5"], "has no parameters to take from"),
    (["export", "default", "-o", "{out}", "--set", "model.variant=full"], "has no parameters to take from"),
    (["track", "default", "{seq}", "-o", "{out}.mp4", "--set", "a=1"], "takes only model settings"),
])
def test_set_and_config_are_refused_where_a_verb_has_no_parameters(argv, says, tmp_path, capsys):
    """--set / --config either apply or are refused: a verb without parameters (or, for track, a
    setting that is not a model setting) says so, writes nothing."""
    from neurosim.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text("x = 1\n")
    seq = tmp_path / "seq.h5"
    seq.write_bytes(b"")
    out = tmp_path / "out"
    argv = [a.format(out=out, cfg=cfg, seq=seq) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not out.exists() and not pathlib.Path(f"{out}.mp4").exists()
