"""hybrid CLI end to end on a tiny synthetic dataset, and its bad-input errors (exit 2, one line)."""

import json
import pathlib

import numpy as np
import pytest

from neurosim.cli import main

TINY = ["--set", "epochs=1", "--set", "batches_per_epoch=2", "--set", "batch_size=2",
        "--set", "model.search_size=32", "--set", "model.ann_channels=[4,8,8]", "--set", "model.snn_channels=[4,8,8]"]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> pathlib.Path:
    from benchmarks_data.synth import SynthConfig, synth_dataset

    out = tmp_path_factory.mktemp("hybrid") / "dataset"
    cfg = SynthConfig(width=64, height=48, n_frames=40, fps=240.0, target_size_px=(10, 14), scale_range=(0.8, 1.2),
                      n_distractors=1, subframes=1)
    synth_dataset(out, n_sequences=3, seed=0, config=cfg, test_fraction=0.34)
    return out


@pytest.fixture(scope="module")
def tiny_run(tiny_dataset, tmp_path_factory) -> pathlib.Path:
    run = tmp_path_factory.mktemp("hybrid") / "run"
    assert main(["train", "--dataset", str(tiny_dataset), "-o", str(run), "-q", *TINY]) == 0
    return run


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _one_line_error(capsys, code, *words):
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("neurosim: error:"), err
    for w in words:
        assert w in err, err


def test_train_eval_track_export_end_to_end(tiny_dataset, tiny_run, tmp_path, capsys):
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["model"]["search_size"] == 32
    assert (tiny_run / "checkpoint.safetensors").is_file()
    rec = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rec) == 1 and np.isfinite(rec[0]["loss"])
    if _has_tensorboard():
        assert any((tiny_run / "tb").iterdir())

    # resume: one more epoch continues from the saved step
    assert main(["train", "--dataset", str(tiny_dataset), "-o", str(tiny_run), "--resume", "-q",
                 *TINY, "--set", "epochs=2"]) == 0
    rec = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rec] == [0, 1] and rec[1]["step"] == 4

    out = tmp_path / "eval"
    capsys.readouterr()
    assert main(["eval", str(tiny_run), "--dataset", str(tiny_dataset), "-o", str(out), "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["trackers"]) == {tiny_run.name, "static_box", "csrt", "kcf", "mil"}  # the baselines beside it
    name, scores = tiny_run.name, summary["trackers"][tiny_run.name]
    assert 0.0 <= scores["auc"] <= 1.0 and scores["steps_per_second"] > 0
    for f in ("scores.json", "success.png", "precision.png", "table.md"):
        assert (out / f).is_file()
    test_seq = json.loads((tiny_dataset / "index.json").read_text())["splits"]["test"][0]
    boxes = np.loadtxt(out / "results" / name / f"{test_seq}.txt", delimiter=",")
    assert boxes.ndim == 2 and boxes.shape[1] == 4

    seq = tiny_dataset / "sequences" / f"{test_seq}.h5"
    video = tmp_path / "track.mp4"
    assert main(["track", str(tiny_run), str(seq), "-o", str(video), "-q"]) == 0
    assert video.stat().st_size > 0
    first = np.loadtxt(tmp_path / "track.txt", delimiter=",")
    assert first.shape[1] == 4
    # determinism: the same run and sequence give identical boxes
    assert main(["track", str(tiny_run), str(seq), "-o", str(tmp_path / "again.mp4"), "-q"]) == 0
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "again.txt", delimiter=","), first)
    # model settings reach the tracker, as in eval; other settings are refused with nothing written
    assert main(["track", str(tiny_run), str(seq), "-o", str(tmp_path / "ann.mp4"), "-q", "--set", "model.variant=ann_only"]) == 0
    assert not np.array_equal(np.loadtxt(tmp_path / "ann.txt", delimiter=","), first)
    capsys.readouterr()
    _one_line_error(capsys, main(["track", str(tiny_run), str(seq), "-o", str(tmp_path / "no.mp4"), "--set", "epochs=3"]),
                    "model settings")
    assert not (tmp_path / "no.mp4").exists() and not (tmp_path / "no.txt").exists()

    intnet = tmp_path / "intnet"
    assert main(["export", str(tiny_run), "-o", str(intnet), "-q"]) == 0
    from neurosim.intnet import load, run_reference

    net = load(intnet)
    assert set(net.inputs) == {"frame", "events"}
    rng = np.random.default_rng(0)
    outs = run_reference(net, {k: rng.integers(0, 3, (spec.steps, *spec.shape)) for k, spec in net.inputs.items()})
    assert outs["snn_corr"].shape[0] == net.inputs["events"].steps
    pytest.importorskip("chip_models.cli")
    capsys.readouterr()
    assert main(["chip", "estimate", str(intnet), "--json", "-q"]) == 0


def test_train_on_two_datasets_draws_windows_from_both(tiny_dataset, tmp_path):
    from hybrid.train import TrainConfig, make_windows
    from neurosim.config import from_dict

    cfg = from_dict(TrainConfig, {"model": {"search_size": 32}})
    one = make_windows(tiny_dataset, cfg)
    two = make_windows([tiny_dataset, tiny_dataset], cfg)
    assert len(two) == 2 * len(one)
    run = tmp_path / "two"
    assert main(["train", "--dataset", str(tiny_dataset), "--dataset", str(tiny_dataset), "-o", str(run), "-q", *TINY]) == 0
    assert json.loads((run / "config.json").read_text())["dataset"] == [str(tiny_dataset)] * 2


def test_run_without_checkpoint_is_an_error(tiny_dataset, tmp_path, capsys):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    _one_line_error(capsys, main(["eval", str(empty), "--dataset", str(tiny_dataset), "-o", str(tmp_path / "e")]), "checkpoint")
    assert not (tmp_path / "e").exists()
    _one_line_error(capsys, main(["track", str(empty), str(tmp_path / "x.h5"), "-o", str(tmp_path / "t.mp4")]))
    assert not (tmp_path / "t.mp4").exists()
    _one_line_error(capsys, main(["export", str(tmp_path / "missing"), "-o", str(tmp_path / "i")]), "does not exist")
    assert not (tmp_path / "i").exists()


def test_dataset_of_wrong_format_is_an_error(tiny_run, tmp_path, capsys):
    bad = tmp_path / "bad_dataset"
    bad.mkdir()
    (bad / "index.json").write_text('{"hello": 1}')
    _one_line_error(capsys, main(["train", "--dataset", str(bad), "-o", str(tmp_path / "r")]), "dataset")
    assert not (tmp_path / "r").exists()
    _one_line_error(capsys, main(["eval", str(tiny_run), "--dataset", str(bad), "-o", str(tmp_path / "e")]), "dataset")
    _one_line_error(capsys, main(["train", "--dataset", str(tmp_path / "nope"), "-o", str(tmp_path / "r")]), "does not exist")
    notseq = tmp_path / "seq.h5"
    notseq.write_text("not hdf5")
    _one_line_error(capsys, main(["track", str(tiny_run), str(notseq), "-o", str(tmp_path / "t.mp4")]), "seq.h5")
    assert not (tmp_path / "t.mp4").exists()


def test_first_box_outside_the_image_is_an_error(tiny_dataset, tiny_run, tmp_path, capsys):
    seq = sorted((tiny_dataset / "sequences").glob("*.h5"))[0]
    for box in ("500,500,10,10", "-5,3,10,10", "3,3,0,10", "1,2,3"):
        _one_line_error(capsys, main(["track", str(tiny_run), str(seq), "-o", str(tmp_path / "t.mp4"), f"--box={box}"]), "box")
        assert not (tmp_path / "t.mp4").exists() and not (tmp_path / "t.txt").exists()


def test_unknown_variant_is_a_parameter_error(tiny_dataset, tmp_path, capsys):
    _one_line_error(capsys, main(["train", "--dataset", str(tiny_dataset), "-o", str(tmp_path / "r"),
                                  "--set", "model.variant=bogus"]), "variant")


def test_tracking_fit_keeps_the_best_train_split_candidate(tiny_dataset, tiny_run, tmp_path):
    """fit_tracking tracks the train split per (τ_ann, α_frame, α_hold) and writes the best
    candidate into a copy of the run; the copy, scored by the independent eval path (neurosim
    eval), gives the fit's AUC."""
    from hybrid.checkpoint import load_model, model_weights
    from hybrid.tune import fit_tracking

    out = tmp_path / "fitted"
    res = fit_tracking(tiny_run, tiny_dataset, out, alphas=(0.1, 0.9), holds=(1.0, 0.9), ann_temperatures=(1.0, 0.1),
                       split="train", say=lambda *a: None)
    assert len(res["scores"]) == 8
    best = max(res["scores"], key=lambda a: res["scores"][a]["auc"])
    assert [res[k] for k in ("alpha_frame", "alpha_hold", "ann_temperature")] == \
        [res["scores"][best][k] for k in ("alpha_frame", "alpha_hold", "ann_temperature")]
    fitted = load_model(out)
    assert fitted.cfg.ann_temperature == res["ann_temperature"]
    assert float(fitted.tcf.alphas[0]) == pytest.approx(res["alpha_frame"], abs=1e-6)
    assert float(fitted.tcf.alphas[1]) == pytest.approx(res["alpha_hold"], abs=1e-6)
    assert fitted.tcf.hold_is_one == (res["alpha_hold"] == 1.0)
    before, after = model_weights(tiny_run), model_weights(out)
    assert set(before) == set(after)
    assert all(torch_equal(before[k], after[k]) for k in before if k not in ("tcf.logit_frame", "tcf.logit_hold"))
    ev = tmp_path / "ev"
    assert main(["eval", str(out), "--dataset", str(tiny_dataset), "--split", "train", "-o", str(ev), "--json", "-q"]) == 0
    scores = json.loads((ev / "scores.json").read_text())["trackers"]
    assert next(iter(scores.values()))["auc"] == pytest.approx(res["scores"][best]["auc"], abs=1e-12)


def test_tune_cli_pools_datasets_and_rejects_bad_alphas(tiny_dataset, tiny_run, tmp_path, capsys):
    """`neurosim tune` with a dataset given twice tracks each train sequence twice: the pooled AUC
    of identical copies equals the single dataset's AUC (OTB scores are per-frame means)."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["tune", str(tiny_run), "--dataset", str(tiny_dataset), "--alphas", "0.2,0.8", "--holds", "1,0.95",
                 "-o", str(one), "-q"]) == 0
    assert main(["tune", str(tiny_run), "--dataset", str(tiny_dataset), "--dataset", str(tiny_dataset),
                 "--alphas", "0.2,0.8", "--holds", "1,0.95", "-o", str(two), "-q"]) == 0
    a, b = (json.loads((d / "tune.json").read_text()) for d in (one, two))
    assert len(b["sequences"]) == 2 * len(a["sequences"])
    for alpha in a["scores"]:
        assert b["scores"][alpha]["auc"] == pytest.approx(a["scores"][alpha]["auc"], abs=1e-12)
    capsys.readouterr()
    _one_line_error(capsys, main(["tune", str(tiny_run), "--dataset", str(tiny_dataset), "--alphas", "0.2,1.5",
                                  "-o", str(tmp_path / "bad")]), "--alphas")
    _one_line_error(capsys, main(["tune", str(tiny_run), "--dataset", str(tiny_dataset), "--holds", "1,1.2",
                                  "-o", str(tmp_path / "bad")]), "--holds")
    assert not (tmp_path / "bad").exists()


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_init_from_takes_each_branch_from_its_own_run(tiny_run):
    from hybrid.checkpoint import model_weights
    from hybrid.train import BRANCH_PREFIXES, init_weights
    from neurosim.errors import ParameterError

    full = model_weights(tiny_run)
    ann = init_weights(f"ann:{tiny_run}")
    assert ann and all(k.startswith(BRANCH_PREFIXES["ann"]) for k in ann)
    assert {k for k in full if k.startswith(("ann.", "corr_ann.", "scale_head."))} == set(ann)
    both = init_weights(f"ann:{tiny_run},snn:{tiny_run}")
    assert any(k.startswith("snn.") for k in both) and not any(k.startswith(("tcf.", "attention.")) for k in both)
    assert set(init_weights(str(tiny_run))) == set(full)
    with pytest.raises(ParameterError, match="branch"):
        init_weights(f"tcf:{tiny_run}")


def test_resume_or_init_from_with_other_model_settings_is_a_one_line_error(tiny_dataset, tiny_run, tmp_path, capsys):
    """Weights from a model with other [model] settings (here the ANN template size, which sizes
    the scale head) are refused with a one-line error naming the tensor, for --resume and
    --init-from alike, and --init-from leaves no run folder behind."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    other = [*TINY, "--set", "model.ann_template_size=5"]
    _one_line_error(capsys, main(["train", "--dataset", str(tiny_dataset), "-o", str(run), "--resume", "-q", *other]),
                    "scale_head.weight")
    _one_line_error(capsys, main(["train", "--dataset", str(tiny_dataset), "-o", str(tmp_path / "new"), "-q", *other,
                                  "--init-from", f"ann:{tiny_run}"]), "do not fit this model")
    assert not (tmp_path / "new").exists()


def test_tune_an_ann_only_run_fits_only_the_ann_temperature(tiny_dataset, tmp_path, capsys):
    """An ann_only run has no TCF: `neurosim tune` scores one candidate per --ann-temperatures value,
    writes the best into the copy's config, and refuses --alphas (exit 2, nothing written)."""
    from hybrid.checkpoint import load_model

    run = tmp_path / "ann"
    assert main(["train", "--dataset", str(tiny_dataset), "-o", str(run), "-q", *TINY, "--set", "model.variant=ann_only"]) == 0
    out = tmp_path / "ann_fit"
    assert main(["tune", str(run), "--dataset", str(tiny_dataset), "--ann-temperatures", "1,0.1", "-o", str(out), "-q"]) == 0
    doc = json.loads((out / "tune.json").read_text())
    assert doc["variant"] == "ann_only" and sorted(doc["scores"]) == ["0.1", "1"]
    best = max(doc["scores"].values(), key=lambda v: v["auc"])["ann_temperature"]
    assert doc["ann_temperature"] == best == load_model(out).cfg.ann_temperature
    _one_line_error(capsys, main(["tune", str(run), "--dataset", str(tiny_dataset), "--alphas", "0.2",
                                  "-o", str(tmp_path / "bad")]), "ann_only")
    assert not (tmp_path / "bad").exists()
