"""The fixtures of tests/data are what tests/data/make_fixtures.py makes, byte for byte, and small."""

import hashlib
import importlib.util
import json

from conftest import FIXTURES


def _make_fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixtures_are_small_and_match_their_manifest():
    manifest = json.loads((FIXTURES / "fixtures.json").read_text())
    names = manifest["sha256"]
    assert len(names) >= 8
    for name, digest in names.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, f"{name} changed after it was made"
    total = sum(p.stat().st_size for p in FIXTURES.iterdir())
    assert total < 512 * 1024, f"tests/data holds {total / 1024:.0f} KiB: keep fixtures tiny"


def test_make_fixtures_rewrites_the_same_bytes(tmp_path):
    _make_fixtures().make_all(tmp_path)
    made = json.loads((tmp_path / "fixtures.json").read_text())
    committed = json.loads((FIXTURES / "fixtures.json").read_text())
    stale = sorted(n for n in made["sha256"] if made["sha256"][n] != committed["sha256"].get(n))
    assert not stale, (f"tests/data is stale ({', '.join(stale)} differ from what make_fixtures.py writes now): "
                       "run python tests/data/make_fixtures.py and commit the result")
    assert made == committed
