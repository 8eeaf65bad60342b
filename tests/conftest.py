"""Shared fixtures: the real recordings of ../shared/data (skipped with a reason where absent)
and the small fixture files of tests/data (always there; see tests/data/README.md).

``NEUROSIM_SHARED_DATA`` names another real-data folder (e.g. a missing one, to check what a
plain clone runs).
"""

import os
import pathlib

import pytest

PROJECT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("NEUROSIM_SHARED_DATA", PROJECT / ".." / "shared" / "data")).resolve()
FIXTURES = PROJECT / "tests" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Folder of the real recordings, videos and tracking sequences (see its README.md)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it ships beside the project in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fixture_data() -> pathlib.Path:
    """Folder of the small fixture files made by tests/data/make_fixtures.py."""
    return FIXTURES
