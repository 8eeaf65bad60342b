"""The import-direction rule (``.importlinter``): kept by the repository, and broken arrows fail.

Arrows point one way: hybrid -> benchmarks_data -> sim_events -> neurosim, and
chip_models -> neurosim. import-linter reads every import, those inside functions too.
"""

from __future__ import annotations

import configparser
import pathlib
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ["neurosim", "sim_events", "benchmarks_data", "hybrid", "chip_models"]

# Runs lint-imports on the packages found first on PYTHONPATH. An editable install puts a
# finder in front of sys.path that always answers with the repository's files; it is dropped
# so that a copy of the packages in a temporary folder is what gets analysed.
LINT = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
from importlinter.cli import lint_imports
sys.exit(lint_imports(no_cache=True, no_logo=True))
"""


def lint(root: pathlib.Path) -> subprocess.CompletedProcess:
    """lint-imports with ``root``'s .importlinter on ``root``'s packages."""
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=root, env={"PYTHONPATH": str(root), "PATH": ""},
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def tree_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """The packages' .py files and .importlinter, copied into a temporary folder."""
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            target = tmp_path / source.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    shutil.copyfile(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


def add_line(path: pathlib.Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_repository_keeps_the_import_rule():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_rule_covers_every_package():
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    roots = config["importlinter"]["root_packages"].split()
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["scikit-build"]["wheel"]
    assert sorted(roots) == sorted(wheel["packages"]) == sorted(PACKAGES)


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("chip_models/__init__.py", "import hybrid", "chip_models imports only neurosim"),
        ("neurosim/errors.py", "import sim_events", "Pipeline layers"),
        ("sim_events/__init__.py", "from benchmarks_data import synth", "Pipeline layers"),
        # an import inside a function is a dependency too
        ("neurosim/io.py", "def _late():\n    import hybrid.model", "Pipeline layers"),
        ("hybrid/__init__.py", "import chip_models", "No other package imports chip_models"),
    ],
)
def test_broken_arrow_fails(tree_copy, module, line, contract):
    assert lint(tree_copy).returncode == 0
    add_line(tree_copy / module, line)
    result = lint(tree_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert len(broken) == 1 and broken[0].startswith(contract), result.stdout


def test_cli_shell_is_the_one_exception(tree_copy):
    add_line(tree_copy / "neurosim/cli.py", "def _lookup():\n    import hybrid.cli, chip_models.cli")
    assert lint(tree_copy).returncode == 0
    add_line(tree_copy / "neurosim/config.py", "def _lookup():\n    import hybrid.cli")
    assert lint(tree_copy).returncode == 1
