"""Tracking results on disk in the got10k / OTB text layout.

``<dir>/<sequence>.txt``: one box per line, ``x,y,w,h`` (pixels, 0-based, comma-separated,
``%.3f``); ``<dir>/times/<sequence>_time.txt``: seconds spent per box (one per line), as the
got10k toolkit reads them (``np.loadtxt(..., delimiter=',')``).
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np

from neurosim.errors import InputError
from neurosim.io import atomic_output

if TYPE_CHECKING:
    from hybrid.data import Track
    from hybrid.track import TrackResult


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


def write_track_results(out: str | pathlib.Path, track: Track, result: TrackResult, every: int = 4) -> dict:
    """Write the result files of one tracked sequence (those of ``neurosim track``).

    Args:
        out: the video path (``.mp4`` or ``.avi``); the boxes go to ``out`` with suffix ``.txt``
            (``x,y,w,h`` per SNN step, pixels, 0-based, ``%.3f``) and the box times to
            ``.times.txt`` (one integer per line, µs, the sequence's clock).
        track: the ``hybrid.data.Track`` that was tracked (frames, events, ground truth).
        result: its ``hybrid.track.TrackResult`` (boxes (N, 4), times (N,) µs, gt (N, 4)).
        every: draw one video frame every ``every`` SNN steps (≥ 1).
        model: ModelConfig fields to override (``--set model.*``, as in ``neurosim eval``).

    Returns:
        ``{"video", "boxes", "steps", "frames", "steps_per_second"}`` plus ``auc`` and
        ``precision_20`` (OTB success AUC, precision at 20 px) where the sequence has ground truth.
    """
    from hybrid.render import write_tracking_video

    out = pathlib.Path(out)
    txt = out.with_suffix(".txt")
    write_tracking_video(out, track, result, every)
    write_boxes(txt, result.boxes)
    with atomic_output(out.with_suffix(".times.txt")) as tmp:
        np.savetxt(tmp, result.times, fmt="%d")
    summary = {"video": str(out), "boxes": str(txt), "steps": result.steps, "frames": result.frames,
               "steps_per_second": result.steps_per_second}
    if np.isfinite(result.gt).all(axis=1).any():
        from hybrid import metrics

        sc = metrics.evaluate({track.name: (result.boxes, result.gt)})
        summary.update(auc=sc.auc, precision_20=sc.precision_20)
    return summary


def track_file(run: str | pathlib.Path, sequence: str | pathlib.Path, out: str | pathlib.Path,
               box: np.ndarray | list[float] | None = None, every: int = 4, model: dict | None = None) -> dict:
    """Track a target through a sequence file and write the video and boxes (``neurosim track``).

    Args:
        run: a run folder, a shipped ``.safetensors`` model, or ``"default"`` (the shipped model).
        sequence: a sequence ``.h5`` with APS frames and events (``neurosim events simulate``,
            ``neurosim data build``).
        out: the video path; see :func:`write_track_results` for the files written beside it.
        box: first box ``(x, y, w, h)`` in pixels, 0-based (default: the file's ground truth at
            the first frame).
        every: draw one video frame every ``every`` SNN steps (≥ 1).
        model: ModelConfig fields to override (``--set model.*``, as in ``neurosim eval``).

    Returns:
        The summary of :func:`write_track_results`.

    Raises:
        ParameterError: ``every`` < 1. InputError: no first box (none given, none in the
        file) or a box outside the image. OutputError: ``out`` is not writable.
    """
    from hybrid.checkpoint import load_model
    from hybrid.data import load_track
    from hybrid.track import check_first_box, track_sequence
    from neurosim.errors import ParameterError
    from neurosim.io import check_writable

    out = check_writable(out)
    if every < 1:
        raise ParameterError(f"--every {every} must be ≥ 1")
    tracker = load_model(run, model=model)
    track = load_track(sequence)
    if box is None and (track.boxes_t is None or len(track.boxes_t) == 0):
        raise InputError(f"{sequence} has no boxes: give the first box with --box x,y,w,h")
    if box is not None:
        check_first_box(box, track.width, track.height)
    return write_track_results(out, track, track_sequence(tracker, track, box), every)
