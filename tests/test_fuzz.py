"""Fuzzing the verbs with bad input (bounded, in-process, well under a minute).

Every case asserts the same contract: exit code 0 or 2; on 2 exactly one stderr line and no
traceback; the inputs' bytes unchanged; nothing new in the work folder except a declared output
of a successful run. Families, one or more per verb family: truncated and bit-flipped real files
for the readers, calibration, tracking, checkpoints, NIR files and evaluation results; random
``--set`` values for the simulator, the synthetic benchmark, training, tuning, int8 training and
the chip model; and outputs that are an input, a device node or a place where no file can be
created.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pathlib
import shutil

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from neurosim.cli import main  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parent / "data"
FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors (the console script exits with the same code)
            code = exc.code
    return code, err.getvalue()


def check_contract(work: pathlib.Path, argv: list[str], outputs: tuple[str, ...] = ()) -> int:
    before = snapshot(work)
    code, err = run(argv)
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    after = snapshot(work)
    changed = {k for k in before if after.get(k) != before[k]}
    assert not changed, (argv, f"inputs changed: {changed}")
    new = set(after) - set(before)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, (argv, err)
        assert not new, (argv, f"files left after a refusal: {new}")
    else:
        assert all(any(n == o or n.startswith(o.rstrip("/") + "/") for o in outputs) for n in new), (argv, new)
    return code


def _mangle(data: bytes, cut: float, flips: list[int]) -> bytes:
    out = bytearray(data[: max(0, int(len(data) * cut))])
    for i in flips:
        if out:
            out[i % len(out)] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize("name", ["dv_davis346.aedat4", "jaer_davis346.aedat", "nmnist_34x34.bin",
                                  "expelliarmus_evt3.raw", "scene_sequence.h5"])
@FUZZ
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 1 << 20), max_size=4))
def test_readers_on_truncated_and_corrupted_files(tmp_path_factory, name, cut, flips):
    work = tmp_path_factory.mktemp("fuzz")
    bad = work / name
    bad.write_bytes(_mangle((DATA / name).read_bytes(), cut, flips))
    check_contract(work, ["events", "info", str(bad), "-q"])
    check_contract(work, ["data", "import", str(bad), "-o", str(work / "imported"), "-q"], outputs=("imported",))


_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**12), 10**12),
                    st.sampled_from(['"text"', "[1, 2]", "[]", "true", "{}", "-0"]))


@FUZZ
@given(key=st.sampled_from(["contrast_threshold_on", "contrast_threshold_off", "refractory_us", "leak_rate_hz",
                            "shot_noise_rate_hz", "cutoff_hz", "blur_px", "seed", "no_such_key"]),
       value=_VALUES)
def test_simulate_with_random_parameter_values(tmp_path_factory, key, value):
    work = tmp_path_factory.mktemp("fuzz")
    shutil.copy(DATA / "scene_davis346.npz", work / "in.npz")
    check_contract(work, ["events", "simulate", str(work / "in.npz"), "-o", str(work / "seq.h5"), "-q",
                          "--set", f"{key}={value}"], outputs=("seq.h5",))


@FUZZ
@given(key=st.sampled_from(["chips", "clock_hz", "energy_per_mac_pj", "cores_per_chip", "no_such_key"]), value=_VALUES)
def test_chip_map_with_random_parameter_values(tmp_path_factory, key, value):
    work = tmp_path_factory.mktemp("fuzz")
    check_contract(work, ["chip", "map", "reference", "-q", "--set", f"{key}={value}"])


@pytest.mark.parametrize("argv", [
    ["events", "simulate", "{npz}", "-o", "{npz}"],
    ["events", "simulate", "{npz}", "-o", "/dev/null"],
    ["events", "simulate", "{npz}", "-o", "/proc/neurosim_fuzz.h5"],
    ["events", "render", "{seq}", "-o", "{seq}"],
    ["events", "render", "{seq}", "-o", "/dev/null"],
    ["data", "import", "{seq}", "-o", "{work}"],
    ["events", "render", "{seq}", "-o", "x" * 300 + ".mp4"],
    ["events", "calibrate", "{npz}", "-o", "{npz}"],
    ["events", "calibrate", "{npz}", "-o", "/dev/null"],
    ["data", "synth", "-o", "/dev/null", "--sequences", "1"],
    ["data", "synth", "-o", "/proc/neurosim_fuzz", "--sequences", "1"],
    ["train", "--dataset", "{work}", "-o", "/dev/null"],
    ["track", "default", "{seq}", "-o", "{seq}"],
    ["track", "default", "{seq}", "-o", "/proc/neurosim_fuzz"],
    ["export", "default", "-o", "{work}"],
    ["export", "default", "-o", "x" * 300],
    ["quant", "train-digits", "-o", "/dev/null"],
    ["chip", "simulate", "reference", "{npz}", "-o", "{npz}"],
    ["chip", "estimate", "reference", "--input", "{npz}", "-o", "{npz}"],
])
def test_outputs_that_are_inputs_device_nodes_or_uncreatable(tmp_path, argv):
    shutil.copy(DATA / "scene_davis346.npz", tmp_path / "in.npz")
    shutil.copy(DATA / "scene_sequence.h5", tmp_path / "seq.h5")
    argv = [a.format(npz=tmp_path / "in.npz", seq=tmp_path / "seq.h5", work=tmp_path) for a in argv] + ["-q"]
    if "/proc/" in " ".join(argv) and not pathlib.Path("/proc").is_dir():
        pytest.skip("no /proc here")
    assert check_contract(tmp_path, argv) == 2
    reason = run(argv)[1]
    assert any(why in reason for why in ("is the input", "not a regular", "cannot create files", "shorter name",
                                         "holds files this command did not write", "not a dataset")), reason


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> pathlib.Path:
    pytest.importorskip("torch")
    from benchmarks_data.synth import SynthConfig, synth_dataset

    ds = tmp_path_factory.mktemp("ds") / "ds"
    synth_dataset(ds, n_sequences=1, seed=0, test_fraction=0.0,
                  config=SynthConfig(width=64, height=48, n_frames=40, target_size_px=(10, 12), n_distractors=0))
    return ds


@pytest.mark.parametrize("part", ["safetensors", "json"])
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 1 << 24), max_size=3))
def test_export_and_eval_of_a_mangled_shipped_model(tmp_path_factory, tiny_dataset, part, cut, flips):
    work = tmp_path_factory.mktemp("fuzz")
    shipped = pathlib.Path(__file__).resolve().parents[1] / "hybrid" / "models" / "default"
    for suffix in (".safetensors", ".json"):
        shutil.copy(shipped.with_suffix(suffix), work / f"m{suffix}")
    target = work / f"m.{part}"
    target.write_bytes(_mangle(target.read_bytes(), cut, flips))
    check_contract(work, ["export", str(work / "m.safetensors"), "-o", str(work / "int"), "-q"], outputs=("int",))
    check_contract(work, ["eval", str(work / "m.safetensors"), "--dataset", str(tiny_dataset), "--split", "all",
                          "--max-frames", "2", "--baselines", "none", "-o", str(work / "ev"), "-q"], outputs=("ev",))


@FUZZ
@given(key=st.sampled_from(["variant", "target_model", "snn_min_confidence", "temperature", "alpha_frame",
                            "search_size", "warmup_bins", "no_such_key"]), value=_VALUES)
def test_eval_with_random_model_settings(tmp_path_factory, tiny_dataset, key, value):
    work = tmp_path_factory.mktemp("fuzz")
    check_contract(work, ["eval", "default", "--dataset", str(tiny_dataset), "--split", "all", "--max-frames", "2",
                          "--baselines", "none", "-o", str(work / "ev"), "-q", "--set", f"model.{key}={value}"],
                   outputs=("ev",))


TRAIN_FAST = ["--set", "epochs=1", "--set", "batches_per_epoch=1", "--set", "batch_size=2"]


@pytest.fixture(scope="module")
def tiny_run(tiny_dataset, tmp_path_factory) -> pathlib.Path:
    run_dir = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--dataset", str(tiny_dataset), "-o", str(run_dir), "-q", *TRAIN_FAST]) in (0, None)
    return run_dir


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(["lr", "quant_lr", "jitter", "start_noise", "grad_clip", "w_box", "checkpoint_every",
                            "seed", "model.snn_tau", "model.alpha_frame", "model.quant_scheme", "no_such_key"]),
       value=_VALUES)
def test_train_with_random_settings(tmp_path_factory, tiny_dataset, key, value):
    work = tmp_path_factory.mktemp("fuzz")
    check_contract(work, ["train", "--dataset", str(tiny_dataset), "-o", str(work / "run"), "-q",
                          "--set", f"{key}={value}", *TRAIN_FAST], outputs=("run",))


@FUZZ
@given(option=st.sampled_from(["--alphas", "--holds", "--ann-temperatures", "--max-sequences"]),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-(10**9), 10**9).map(str),
                       st.sampled_from(["", ",", "a,b", "0.3,,0.5", "1e400"])))
def test_tune_with_random_candidates(tmp_path_factory, tiny_dataset, tiny_run, option, value):
    work = tmp_path_factory.mktemp("fuzz")
    grid = {"--alphas": "0.3", "--holds": "0.98", "--ann-temperatures": "1", "--max-sequences": "1", option: value}
    argv = ["tune", str(tiny_run), "--dataset", str(tiny_dataset), "-o", str(work / "tuned"), "-q"]
    check_contract(work, argv + [f"{k}={v}" for k, v in grid.items()], outputs=("tuned",))


@FUZZ
@given(key=st.sampled_from(["synth.n_distractors", "synth.target_size_px", "synth.speed_px_per_frame",
                            "shot_noise_rate_hz", "no_such_key"]), value=_VALUES)
def test_synth_with_random_settings(tmp_path_factory, key, value):
    work = tmp_path_factory.mktemp("fuzz")
    check_contract(work, ["data", "synth", "-o", str(work / "ds"), "--sequences", "1", "--size", "64x48",
                          "--frames", "8", "-q", "--set", f"{key}={value}"], outputs=("ds",))


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(["scheme", "arch", "width", "lr", "float_lr", "seed", "no_such_key"]), value=_VALUES)
def test_int8_training_with_random_settings(tmp_path_factory, key, value):
    pytest.importorskip("sklearn")
    work = tmp_path_factory.mktemp("fuzz")
    check_contract(work, ["quant", "train-digits", "-o", str(work / "q"), "-q", "--set", f"{key}={value}",
                          "--set", "train_images=32", "--set", "epochs=1"], outputs=("q",))


@FUZZ
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 1 << 20), max_size=3))
def test_calibrate_and_track_on_truncated_and_corrupted_files(tmp_path_factory, cut, flips):
    work = tmp_path_factory.mktemp("fuzz")
    rec = work / "rec.npz"
    rec.write_bytes(_mangle((DATA / "scene_davis346.npz").read_bytes(), cut, flips))
    check_contract(work, ["events", "calibrate", str(rec), "-o", str(work / "cal.toml"), "-q", "--passes", "1"],
                   outputs=("cal.toml",))
    seq = work / "seq.h5"
    seq.write_bytes(_mangle((DATA / "scene_sequence.h5").read_bytes(), cut, flips))
    check_contract(work, ["track", "default", str(seq), "-o", str(work / "track"), "-q"], outputs=("track",))


@FUZZ
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 1 << 16), max_size=3))
def test_nir_info_on_truncated_and_corrupted_files(tmp_path_factory, cut, flips):
    nir = pytest.importorskip("nir")
    import numpy as np

    work = tmp_path_factory.mktemp("fuzz")
    graph = nir.NIRGraph.from_list(nir.Affine(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)),
                                   nir.LIF(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2),
                                           v_threshold=np.ones(2)))
    good = tmp_path_factory.mktemp("nir") / "net.nir"
    nir.write(good, graph)
    bad = work / "net.nir"
    bad.write_bytes(_mangle(good.read_bytes(), cut, flips))
    check_contract(work, ["snn", "nir-info", str(bad), "-q"])


@pytest.fixture(scope="module")
def two_evals(tiny_dataset, tmp_path_factory) -> pathlib.Path:
    """Two 'neurosim eval' folders of the same trackers and sequences, as compare takes them."""
    evals = tmp_path_factory.mktemp("evals")
    for seed in ("s0", "s1"):
        assert main(["eval", "default", "--dataset", str(tiny_dataset), "--split", "all", "--max-frames", "3",
                     "--variants", "full,ann_only", "--baselines", "none", "-o", str(evals / seed), "-q"]) in (0, None)
    return evals


@FUZZ
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 1 << 16), max_size=3))
def test_compare_on_truncated_and_corrupted_scores(tmp_path_factory, two_evals, cut, flips):
    work = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(two_evals, work, dirs_exist_ok=True)
    scores = work / "s1" / "scores.json"
    scores.write_bytes(_mangle(scores.read_bytes(), cut, flips))
    check_contract(work, ["compare", str(work / "s0"), str(work / "s1"), "--base", "full", "-o", str(work / "cmp"),
                          "-q"], outputs=("cmp",))
