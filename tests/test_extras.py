"""A plain install gives the event simulator and the file formats; every other part names its extra.

The CLI runs in a subprocess in which the optional packages cannot be imported (a finder at the
front of ``sys.meta_path`` refuses them, as if they were not installed).
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tomllib

import cv2
import h5py
import numpy as np
import pytest

from neurosim.errors import MissingExtraError
from neurosim.extras import OPTIONAL, ensure_installed, missing_extra, require, translate_missing

ROOT = pathlib.Path(__file__).resolve().parents[1]
EVERY_OPTIONAL = ["torch", "brian2", "norse", "dask", "distributed", "tensorboard", "sklearn", "matplotlib", "nir"]

# python -c RUN_WITHOUT BLOCKED ARGS...: `neurosim ARGS` with the comma-separated modules unimportable.
RUN_WITHOUT = """
import sys
blocked = set(sys.argv[1].split(","))

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from neurosim.cli import main
sys.exit(main(sys.argv[2:]))
"""


def neurosim_without(blocked: list[str], *args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN_WITHOUT, ",".join(blocked), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def write_video(path: pathlib.Path, frames: int = 12, width: int = 64, height: int = 48) -> None:
    """A bright square moving right over a dark background (MJPG .avi)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    for i in range(frames):
        frame = np.full((height, width, 3), 40, np.uint8)
        cv2.rectangle(frame, (5 + 3 * i, 10), (20 + 3 * i, 30), (220, 220, 220), -1)
        writer.write(frame)
    writer.release()


def test_simulate_and_info_need_no_optional_package(tmp_path):
    import json

    write_video(tmp_path / "video.avi")
    sim = neurosim_without(EVERY_OPTIONAL, "events", "simulate", "video.avi", "-o", "seq.h5", "--json", cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    summary = json.loads(sim.stdout)
    with h5py.File(tmp_path / "seq.h5", "r") as f:
        t, x, y = f["events/t"][:], f["events/x"][:], f["events/y"][:]
        assert len(t) == summary["events"] > 0 and np.all(np.diff(t) >= 0)
        assert x.max() < 64 and y.max() < 48 and f["frames/data"].shape == (12, 48, 64)
    info = neurosim_without(EVERY_OPTIONAL, "events", "info", "seq.h5", "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["events"] == summary["events"]


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["train", "--dataset", "data", "-o", "out/run"], "train"),
        (["eval", "default", "--dataset", "data", "-o", "out/eval"], "train"),
        (["chip", "estimate", "reference", "-o", "out/report.json", "--plot", "out/report.png"], "chip"),
        (["snn", "crosscheck", "--neurons", "10", "--steps", "10"], "crosscheck"),
        (["quant", "train-digits", "-o", "out/digits"], "train"),
        (["data", "synth", "-o", "out/synth", "--sequences", "1", "--scheduler", "local"], "dask"),
    ],
)
def test_missing_extra_is_one_line_exit_2_no_output(tmp_path, args, extra):
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    result = neurosim_without(EVERY_OPTIONAL, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurosim: error: "), result.stderr
    hint = re.search(r'pip install "neurosim\[([a-z,]+)\]"', lines[0])
    assert hint and extra in hint.group(1).split(","), lines[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_message_names_only_what_is_missing(tmp_path):
    result = neurosim_without(["brian2"], "snn", "crosscheck", "--neurons", "10", "--steps", "10", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ('neurosim: error: neurosim snn crosscheck needs brian2, which is not installed: '
                                     'pip install "neurosim[crosscheck]"')


def test_help_works_without_the_extra(tmp_path):
    result = neurosim_without(EVERY_OPTIONAL, "train", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--dataset" in result.stdout
    assert 'pip install "neurosim[train]"' in result.stdout


def test_demo_runs_the_core_stage_and_skips_the_others(tmp_path):
    import json

    result = neurosim_without(EVERY_OPTIONAL, "demo", "-o", "demo", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert list(summary["stages"]) == ["sim_events"] and summary["stages"]["sim_events"]["events"] > 0
    assert set(summary["skipped"]) == {"benchmarks_data", "hybrid", "chip_models"}
    assert 'neurosim[chip]' in summary["skipped"]["chip_models"]


# ------------------------------------------------------------------------- the Python API


def test_lazy_api_names_the_extra(tmp_path):
    code = RUN_WITHOUT.split("from neurosim.cli")[0] + (
        "import hybrid, sim_events\n"
        "assert callable(sim_events.simulate)\n"
        "from hybrid import load_model\n"
    )
    result = subprocess.run([sys.executable, "-c", code, ",".join(EVERY_OPTIONAL)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ('neurosim.errors.MissingExtraError: hybrid.load_model needs torch, '
                                                      'which is not installed: pip install "neurosim[train]"')


def test_require_and_ensure_installed_name_the_extra():
    assert require("numpy", "x") is np
    ensure_installed(["torch", "nir"], "x")  # installed here: nothing raised
    with pytest.raises(MissingExtraError, match=r'^f needs norse, which is not installed: pip install "neurosim\[crosscheck\]"$'):
        with translate_missing("f"):
            raise ModuleNotFoundError("No module named 'norse'", name="norse")


def test_a_missing_module_behind_another_import_error_is_found():
    # dask.distributed re-raises a missing `distributed` as a plain ImportError
    with pytest.raises(MissingExtraError, match=r'neurosim\[dask\]'):
        with translate_missing("build"):
            try:
                raise ModuleNotFoundError("No module named 'distributed'", name="distributed")
            except ImportError as exc:
                raise ImportError("dask.distributed is not installed") from exc


@pytest.mark.parametrize("name", ["torch._C", "some_other_package"])
def test_other_import_errors_pass_through(name):
    # a missing submodule of an installed package is a broken install, not a missing extra
    with pytest.raises(ModuleNotFoundError) as info:
        with translate_missing("f"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    assert not isinstance(info.value, MissingExtraError)


def test_nir_names_the_extra_of_the_command():
    assert str(missing_extra("nir", "x", "chip")).endswith('pip install "neurosim[chip]"')
    assert str(missing_extra("nir", "x")).endswith('pip install "neurosim[train]" or "neurosim[chip]"')


# ------------------------------------------------------------------------- pyproject


def _requirements(pyproject: dict, extra: str | None = None) -> set[str]:
    """Names a dependency list installs: 'dask[distributed]>=1' -> {'dask', 'distributed'}."""
    deps = pyproject["project"]["dependencies"] if extra is None else pyproject["project"]["optional-dependencies"][extra]
    names = set()
    for dep in deps:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", dep)
        names.add(match.group(1).lower().replace("_", "-"))
        if match.group(1).lower() != "neurosim" and match.group(2):
            names |= {name.strip().lower() for name in match.group(2).split(",")}
    return names


def test_core_dependencies_hold_no_extra():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    core = _requirements(pyproject)
    for extra in ("train", "chip", "dask", "crosscheck"):
        assert not core & _requirements(pyproject, extra), extra
    assert not core & {package for package, _ in OPTIONAL.values()}


def test_each_optional_module_comes_with_the_extras_named_for_it():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    in_all = {e for group in re.findall(r"neurosim\[([^\]]*)\]", " ".join(pyproject["project"]["optional-dependencies"]["all"]))
              for e in group.split(",")}
    for module, (package, extras) in OPTIONAL.items():
        for extra in extras:
            assert package in _requirements(pyproject, extra), f"{package} ({module}) is not in [{extra}]"
            assert extra in in_all, f"[all] does not include [{extra}]"


def test_every_third_party_import_is_core_or_has_an_extra():
    import ast

    core_imports = {"numpy", "h5py", "cv2", "safetensors", "tomli_w", "tomli", "tqdm", "aedat"}  # [project] dependencies
    own = {"neurosim", "sim_events", "benchmarks_data", "hybrid", "chip_models"}
    unknown = set()
    for package in own:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                tops = {name.split(".")[0] for name in names} - own - set(sys.stdlib_module_names)
                unknown |= {f"{top} ({path.relative_to(ROOT)})" for top in tops - core_imports - set(OPTIONAL)}
    assert not unknown, "add to [project] dependencies or to neurosim.extras.OPTIONAL and an extra"
