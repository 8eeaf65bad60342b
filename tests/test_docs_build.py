"""The documentation site builds strictly, every page is in the nav, and the CLI page is complete.

``mkdocs build --strict`` (mkdocs.yml sets ``validation`` so that broken internal links, missing
anchors and nav entries without a file are warnings, and strict turns every warning into a
failure). Pages left out of the nav are only INFO for mkdocs, so that is checked here.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

needs_mkdocs = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "material", "mkdocstrings", "yaml")),
    reason='mkdocs, mkdocs-material or mkdocstrings is not installed: pip install "neurosim[docs]"',
)


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, str]:
    """Build the site once: (site folder, mkdocs' combined output)."""
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{output[-4000:]}"
    return site, output


@needs_mkdocs
def test_docs_build_strictly_without_warnings(built_site: tuple[pathlib.Path, str]) -> None:
    site, output = built_site
    warnings = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "\n".join(warnings)
    assert (site / "index.html").is_file()


def _nav_files(nav: list) -> list[str]:
    """Every page path named in a mkdocs nav (nested lists of {title: path or list})."""
    files: list[str] = []
    for item in nav:
        values = item.values() if isinstance(item, dict) else [item]
        for value in values:
            files += _nav_files(value) if isinstance(value, list) else [value]
    return files


@needs_mkdocs
def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_files(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "hooks" not in p.parts)
    assert sorted(set(pages) - set(nav)) == [], "pages in docs/ missing from mkdocs.yml's nav"
    assert sorted(set(nav) - set(pages)) == [], "nav entries in mkdocs.yml without a file in docs/"
    assert len(nav) == len(set(nav)), "a page appears twice in the nav"


@needs_mkdocs
def test_cli_reference_has_every_command_and_verb(built_site: tuple[pathlib.Path, str]) -> None:
    from neurosim import cli

    html = (built_site[0] / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "cli-reference" not in html, "the hook did not replace the marker"
    for name in cli.COMMANDS:
        assert f"usage: neurosim {name}" in html, name
    for verb in ("events simulate", "events calibrate", "data build", "chip estimate", "quant schemes"):
        assert f"usage: neurosim {verb}" in html, verb


def test_readme_links_to_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    missing = [t for t in local if t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


API_PAGES = {"sim_events": "sim_events", "benchmarks_data": "benchmarks_data", "hybrid": "hybrid",
             "chip_models": "chip_models", "neurosim.snn": "snn", "neurosim.quant": "quant",
             "neurosim.scattering": "scattering"}


@needs_mkdocs
@pytest.mark.parametrize("package", sorted(API_PAGES))
def test_api_page_documents_every_public_name(built_site: tuple[pathlib.Path, str], package: str) -> None:
    import importlib

    pkg = importlib.import_module(package)
    html = (built_site[0] / "reference" / "api" / API_PAGES[package] / "index.html").read_text(encoding="utf-8")
    table = getattr(pkg, "_LAZY", {})
    missing = [n for n in pkg.__all__ if f'id="{table.get(n, package)}.{n}"' not in html]
    assert not missing, f"{package}: public names without an entry on the API page: {missing}"


def test_code_cites_the_projects_own_docs_not_the_shared_design_files() -> None:
    """The design lives in docs/: no source, config or test cites ../shared/DESIGN.md or REFERENCE.md."""
    pattern = re.compile(r"\bDESIGN\.md\b|\bREFERENCE(?:\.md)?\s*§|\bREFERENCE\.md\b|REFERENCE's")
    folders = ["neurosim", "sim_events", "benchmarks_data", "hybrid", "chip_models", "scripts", "tests"]
    hits = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".toml", ".sh", ".h", ".cpp", ".txt"} or path.name == "test_docs_build.py":
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "cite docs/explanation/design.md or docs/explanation/references.md instead:\n" + "\n".join(hits)


@pytest.mark.parametrize("package", sorted(API_PAGES))
def test_api_page_lists_every_module_of_its_package(package: str) -> None:
    """Each module (not private, not the CLI or demo glue) has its docstring on the package's API page."""
    folder = ROOT.joinpath(*package.split("."))
    page = (DOCS / "reference" / "api" / f"{API_PAGES[package]}.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^::: ([\w.]+)$", page, re.M))
    modules = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if path.name == "__init__.py":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts) or parts[-1].startswith("cli") or parts[-1] == "demo":
            continue
        modules.append(".".join(parts))
    missing = [m for m in modules if m not in listed and m != package]
    assert not missing, f"modules missing from docs/reference/api/{API_PAGES[package]}.md: {missing}"
