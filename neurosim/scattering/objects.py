"""Objects to image through the medium, all (B, 32, 32) float32 in [0, 1], max-normalised.

- ``digits``: scikit-learn's bundled handwritten digits (8×8, 16 grey levels; real data, no
  download), bilinearly upscaled to 32×32. Split once with a fixed permutation (seed 0):
  ``test`` = the first 400, ``val`` = the next 200, ``train`` = the other 1197.
- ``natural``: 32×32 patches of real video frames (``tracking_real`` of the project's real
  data folder): grey frames shrunk 4× by area averaging, patches at seeded random places,
  each divided by its maximum. ``train``/``val`` patches come from the 30 fps sequences
  (val: Woman and David only), ``test`` patches from the 10 fps sequences, so test patches
  never share a scene with training patches.
- ``shapes``: 1-3 filled discs, rectangles and triangles of grey levels 0.3-1 on black.

Every set is a pure function of its arguments (``seed``; the files for ``natural``).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from neurosim.errors import InputError, ParameterError

KINDS = ("digits", "natural", "shapes")
SPLITS = ("train", "val", "test")
SIZE = 32
_NATURAL_VAL = ("Woman", "David")


def digits(split: str = "train") -> np.ndarray:
    """scikit-learn's digits of one split, upscaled to (B, 32, 32) float32 in [0, 1]."""
    import cv2
    from sklearn.datasets import load_digits

    images = load_digits().images[np.random.default_rng(0).permutation(1797)]
    chosen = {"test": images[:400], "val": images[400:600], "train": images[600:]}[_split(split)]
    up = np.stack([cv2.resize(im.astype(np.float32) / 16.0, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for im in chosen])
    return _max_normalise(up)


def shapes(count: int, seed: int = 0) -> np.ndarray:
    """``count`` images of 1-3 random filled discs, rectangles and triangles."""
    rng = np.random.default_rng([seed, 7])
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    out = np.zeros((count, SIZE, SIZE), np.float32)
    for img in out:
        for _ in range(int(rng.integers(1, 4))):
            kind, level = int(rng.integers(3)), rng.uniform(0.3, 1.0)
            cx, cy, r = rng.uniform(6, SIZE - 6), rng.uniform(6, SIZE - 6), rng.uniform(3, 9)
            if kind == 0:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            elif kind == 1:
                hw, hh = r, rng.uniform(2, 9)
                mask = (abs(xx - cx) <= hw) & (abs(yy - cy) <= hh)
            else:
                angles = rng.uniform(0, 2 * np.pi) + np.array([0.0, 2.1, 4.2])
                corners = np.stack([cx + 1.3 * r * np.cos(angles), cy + 1.3 * r * np.sin(angles)], axis=1)
                mask = _inside_triangle(xx, yy, corners)
            img[mask] = np.maximum(img[mask], level)
    return _max_normalise(out)


def _inside_triangle(xx: np.ndarray, yy: np.ndarray, c: np.ndarray) -> np.ndarray:
    sides = [(xx - c[i, 0]) * (c[(i + 1) % 3, 1] - c[i, 1]) - (yy - c[i, 1]) * (c[(i + 1) % 3, 0] - c[i, 0]) for i in range(3)]
    return (np.stack(sides) >= 0).all(0) | (np.stack(sides) <= 0).all(0)


def default_data_root() -> pathlib.Path:
    """``$NEUROSIM_SHARED_DATA``, else ``../shared/data`` beside the working directory."""
    return pathlib.Path(os.environ.get("NEUROSIM_SHARED_DATA", pathlib.Path.cwd().parent / "shared" / "data"))


def natural_frames(split: str = "train", root: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """The JPEG frames natural patches of ``split`` are cut from (every 10th frame of a sequence)."""
    base = pathlib.Path(root) if root is not None else default_data_root()
    folder = base / "tracking_real" / ("fps10" if _split(split) == "test" else "fps30")
    if not folder.is_dir():
        raise InputError(f"natural patches need the real frames in {folder}: set NEUROSIM_SHARED_DATA or pass data_root")
    seqs = sorted(p for p in folder.iterdir() if (p / "img").is_dir())
    if split == "train":
        seqs = [p for p in seqs if p.name not in _NATURAL_VAL]
    elif split == "val":
        seqs = [p for p in seqs if p.name in _NATURAL_VAL]
    return [f for s in seqs for f in sorted((s / "img").glob("*.jpg"))[::10]]


def natural(count: int, split: str = "train", seed: int = 0, root: str | os.PathLike | None = None) -> np.ndarray:
    """``count`` max-normalised 32×32 patches of real frames (4× shrunk, grey)."""
    import cv2

    frames = natural_frames(split, root)
    rng = np.random.default_rng([seed, 11])
    picks = rng.integers(0, len(frames), count)
    out = np.empty((count, SIZE, SIZE), np.float32)
    cache: dict[int, np.ndarray] = {}
    for i, f in enumerate(picks):
        if f not in cache:
            grey = cv2.imread(str(frames[f]), cv2.IMREAD_GRAYSCALE)
            if grey is None:
                raise InputError(f"{frames[f]} is not a readable JPEG: restore the real data folder")
            cache[f] = cv2.resize(grey, (grey.shape[1] // 4, grey.shape[0] // 4), interpolation=cv2.INTER_AREA)
        img = cache[f]
        y, x = rng.integers(0, img.shape[0] - SIZE + 1), rng.integers(0, img.shape[1] - SIZE + 1)
        out[i] = img[y : y + SIZE, x : x + SIZE] / 255.0
    return _max_normalise(out)


def make_objects(kind: str, count: int, split: str = "train", seed: int = 0, root: str | os.PathLike | None = None) -> np.ndarray:
    """``count`` objects of ``kind`` (digits: the first ``count`` of the split, at most all of it)."""
    if kind == "digits":
        d = digits(split)
        if count > len(d):
            raise ParameterError(f"count = {count} digits asked, the {split} split has {len(d)}: ask for fewer")
        return d[:count]
    if kind == "natural":
        return natural(count, split, seed, root)
    if kind == "shapes":
        return shapes(count, seed + {"train": 0, "val": 1_000_003, "test": 2_000_003}[_split(split)])
    raise ParameterError(f"objects {kind!r} are unknown: use one of {', '.join(KINDS)}")


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ParameterError(f"split {split!r} is unknown: use one of {', '.join(SPLITS)}")
    return split


def _max_normalise(x: np.ndarray) -> np.ndarray:
    peak = x.reshape(len(x), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, x / np.maximum(peak, 1e-12), 0.0).astype(np.float32)
