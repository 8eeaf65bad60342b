"""``index.json``: the table of contents of a dataset folder.

A dataset folder holds ``sequences/NAME.h5`` (one sequence file each, see docs/reference/formats.md) and
``index.json``::

    {"format": "neurosim-dataset", "format_version": 1,
     "sensor": {"width": W, "height": H} or {"sizes": [[W, H], ...]} when they differ,
     "simulator": {...DvsParams...}, "aps_rate_hz": 30.0, "seed": 0,
     "sequences": [{"name", "file", "layout", "source", "input_frames", "input_fps",
                    "aps_frames", "duration_us", "events", "width", "height", "seed",
                    "param_hash"}, ...],
     "failed": [{"name", "reason"}, ...],
     "splits": {"train": [...], "val": [...], "test": [...]}, "split": {"seed": 0, ...}}

Splits are either drawn with a fixed seed (sequence names sorted, permuted by
``numpy.random.default_rng(seed)``, the first ``round(test_fraction·n)`` go to test, the next
``round(val_fraction·n)`` to val, the rest to train) or read from a given list.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Iterable

import numpy as np

from neurosim.errors import InputError
from neurosim.io import atomic_output, json_default

INDEX_NAME = "index.json"
FORMAT = "neurosim-dataset"
FORMAT_VERSION = 1


def make_splits(names: Iterable[str], seed: int = 0, test_fraction: float = 0.2,
                val_fraction: float = 0.0) -> dict[str, list[str]]:
    """Deterministic train/val/test split of ``names`` (independent of their order).

    With n names: n_test = round(test_fraction·n) (at least 1 when test_fraction > 0 and n ≥ 2),
    n_val = round(val_fraction·n), the rest train. Each list is sorted.
    """
    names = sorted(set(names))
    n = len(names)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    if test_fraction > 0 and n >= 2:
        n_test = max(n_test, 1)
    n_test = min(n_test, max(n - 1, 0))
    n_val = min(int(round(val_fraction * n)), n - n_test - 1) if n - n_test > 1 else 0
    test = sorted(names[i] for i in order[:n_test])
    val = sorted(names[i] for i in order[n_test:n_test + n_val])
    train = sorted(names[i] for i in order[n_test + n_val:])
    return {"train": train, "val": val, "test": test}


def read_split_list(path: str | pathlib.Path, names: Iterable[str]) -> dict[str, list[str]]:
    """Splits from a file: JSON ``{"train": [...], "test": [...]}`` or lines ``NAME SPLIT``.

    Names of the file that are not in the dataset are ignored (they may have failed to
    build); dataset sequences the file does not mention go to ``"unassigned"``.
    """
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"split list {p} cannot be read ({exc}): check the path") from None
    splits: dict[str, list[str]] = {}
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"split list {p} is not valid JSON ({exc}): fix the file") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise InputError(f"split list {p} must map split names to lists of sequence names")
        splits = {str(k): [str(x) for x in v] for k, v in data.items()}
    else:
        for i, line in enumerate(text.splitlines()):
            parts = line.split("#")[0].split()
            if not parts:
                continue
            if len(parts) != 2:
                raise InputError(f"split list {p} line {i + 1}: expected 'NAME SPLIT', got {line.strip()!r}")
            splits.setdefault(parts[1], []).append(parts[0])
    known = set(names)
    out = {k: sorted(n for n in v if n in known) for k, v in splits.items()}
    listed = {n for v in out.values() for n in v}
    rest = sorted(known - listed)
    if rest:
        out["unassigned"] = rest
    return out


def check_split_list(path: str | pathlib.Path, names: Iterable[str]) -> None:
    """Read a split list before any work: InputError if it is unreadable or malformed, or names
    a sequence that is not among ``names`` (the source's sequences)."""
    known = set(names)
    read_split_list(path, [])  # raises on an unreadable or malformed file
    unknown = sorted(n for n in _listed_names(pathlib.Path(path)) if n not in known)
    if unknown:
        some = ", ".join(sorted(known)[:5]) + (", …" if len(known) > 5 else "")
        raise InputError(f"split list {path} names {unknown[0]!r}"
                         f"{f' (and {len(unknown) - 1} more)' if len(unknown) > 1 else ''}, which the source does not "
                         f"have: fix the list (the source's sequences: {some})")


def _listed_names(p: pathlib.Path) -> list[str]:
    """Every sequence name a (valid) split list mentions."""
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        return [str(x) for v in json.loads(text).values() for x in v]
    return [line.split("#")[0].split()[0] for line in text.splitlines() if line.split("#")[0].split()]


def sensor_of(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"width", "height"}`` when all sequences share one size, else ``{"sizes": [...]}``."""
    sizes = sorted({(int(e["width"]), int(e["height"])) for e in entries})
    if len(sizes) == 1:
        return {"width": sizes[0][0], "height": sizes[0][1]}
    return {"sizes": [list(s) for s in sizes]}


def write_index(out_dir: str | pathlib.Path, index: dict[str, Any]) -> pathlib.Path:
    """Write ``index.json`` atomically (temp file + rename) with sorted keys; return its path."""
    out_dir = pathlib.Path(out_dir)
    final = out_dir / INDEX_NAME
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **index}
    with atomic_output(final) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=json_default)
            f.write("\n")
    return final


def load_index(dataset: str | pathlib.Path) -> dict[str, Any]:
    """Read and check ``DATASET/index.json``; raise InputError naming the problem."""
    root = pathlib.Path(dataset)
    path = root / INDEX_NAME if root.is_dir() else root
    if not path.is_file():
        raise InputError(f"{root} is not a neurosim dataset (no {INDEX_NAME}): build one with 'neurosim data build' or 'neurosim data synth'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"dataset index {path} is unreadable ({exc}): rebuild the dataset") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("sequences"), list):
        raise InputError(f"{path} is not a neurosim dataset index: rebuild the dataset")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"dataset index {path} has format_version {data['format_version']}, newer than this neurosim reads: upgrade neurosim")
    _check_entries(data, path)
    return data


def _check_entries(data: dict[str, Any], path: pathlib.Path) -> None:
    """Every sequence entry names a file; every split names only indexed sequences."""
    if not all(isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("file"), str)
               for e in data["sequences"]):
        raise InputError(f"{path}: a sequence entry lacks its name or file: rebuild the dataset")
    root = path.parent
    for e in data["sequences"]:
        if not (root / e["file"]).is_file():
            raise InputError(f"{path}: sequence {e['name']!r} has no file {root / e['file']}: rebuild the dataset")
    names = {e["name"] for e in data["sequences"]}
    splits = data.get("splits", {})
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise InputError(f"{path}: 'splits' must map split names to lists of sequence names: rebuild the dataset")
    for split, members in splits.items():
        missing = [n for n in members if n not in names]
        if missing:
            raise InputError(f"{path}: split {split!r} names sequence {missing[0]!r}, which the dataset does not have: "
                             "remove it from the split or rebuild the dataset")


