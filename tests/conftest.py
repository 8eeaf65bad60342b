"""Shared fixtures: the real recordings of ../shared/data (skipped with a reason where absent)."""

import pathlib

import pytest

PROJECT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = (PROJECT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Folder of the real recordings, videos and tracking sequences (see its README.md)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it ships beside the project in CI)")
    return SHARED_DATA
