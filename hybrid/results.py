"""Tracking results on disk in the got10k / OTB text layout.

``<dir>/<sequence>.txt``: one box per line, ``x,y,w,h`` (pixels, 0-based, comma-separated,
``%.3f``); ``<dir>/times/<sequence>_time.txt``: seconds spent per box (one per line), as the
got10k toolkit reads them (``np.loadtxt(..., delimiter=',')``).
"""

from __future__ import annotations

import pathlib

import numpy as np

from neurosim.errors import InputError
from neurosim.io import atomic_output


def write_boxes(path: str | pathlib.Path, boxes: np.ndarray) -> pathlib.Path:
    """Write (N, 4) xywh boxes as ``x,y,w,h`` lines (atomically)."""
    path = pathlib.Path(path)
    with atomic_output(path) as tmp:
        np.savetxt(tmp, np.asarray(boxes, float).reshape(-1, 4), fmt="%.3f", delimiter=",")
    return path


def read_boxes(path: str | pathlib.Path) -> np.ndarray:
    """Read a result or ground-truth text file (comma, tab or space separated) → (N, 4) float."""
    path = pathlib.Path(path)
    try:
        text = path.read_text().replace(",", " ").replace("\t", " ")
        boxes = np.loadtxt(text.splitlines(), dtype=float, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read boxes ({exc}); expected lines of x,y,w,h") from None
    if boxes.shape[1] != 4:
        raise InputError(f"{path}: lines have {boxes.shape[1]} values, expected 4 (x,y,w,h)")
    return boxes


def write_results(folder: str | pathlib.Path, name: str, boxes: np.ndarray, seconds: np.ndarray) -> None:
    """Write ``<folder>/<name>.txt`` and ``<folder>/times/<name>_time.txt``."""
    folder = pathlib.Path(folder)
    (folder / "times").mkdir(parents=True, exist_ok=True)
    write_boxes(folder / f"{name}.txt", boxes)
    with atomic_output(folder / "times" / f"{name}_time.txt") as tmp:
        np.savetxt(tmp, np.asarray(seconds, float).reshape(-1), fmt="%.9f")
