"""FE240hz and FE108 sequence folders: real DAVIS346 APS frames, events and Vicon boxes.

The events come from the folder's 240 Hz event frames (:mod:`sim_events.formats.event_frames`)
or from its raw recording.

**FE240hz folder** ``NAME/``::

    img/00001.jpg …           APS frames (346×260, grey stored as RGB), ``aps_rate_hz`` (40)
    stack240/00001.jpg …      event frames at ``event_rate_hz`` (240), ``ratio`` = 6 per APS frame
    groundtruth_rect.txt      one box per event frame: ``x,y,w,h`` (0-based pixels), or one per APS frame
    groundtruth_rect40.txt    (optional) one box per APS frame
    meta.json                 (optional) ``aps_fps``, ``event_frame_hz``

Clock: APS frame k is at ``t = k·10⁶/aps_rate_hz`` µs. The 240 Hz series is offset from it by
an integer number of windows ``o``: event frame and box j are at ``t = (j − o)·10⁶/event_rate_hz``,
and event frame j covers the window that ends there. ``o`` is read off the two box files (the
``o`` for which ``box240[ratio·k + o] == box40[k]``; in ``dove_mul111_0`` it is −7, an exact
match for every k ≥ 2); without ``groundtruth_rect40.txt`` it is 0. A box file with one box per APS
frame is timed by the APS frames; one with fewer boxes than reach the last APS frame is an error.

**FE108 folder with the raw recording** ``NAME/``::

    img/0001.jpg …            APS frames: a stretch of the recording's frames
    events.aedat4             the raw DV recording: every event, and the APS frames with their times
    groundtruth_rect.txt      one box per APS frame of img/, or one per 240 Hz window (as above)
    ../pair.txt               (optional, FE108's) ``NAME start``: img frame 0 is the recording's frame ``start``

Events and times are the recording's own (exact, every event, absolute µs; not capped, so no
``event_frame_hz``). APS frame k of ``img/`` is the recording's frame ``s + k``: ``s`` from
``pair.txt``, else 0 when the counts agree, else found by content (:func:`find_stretch`). Its time
is that frame's exposure midpoint; 240 Hz boxes are at ``t_0 + (j − o)·10⁶/event_rate_hz``. Events
are kept from one frame interval before the first frame to one after the last. A folder with both
``events.aedat4`` and ``stack240/`` is read from the raw recording.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from neurosim.errors import InputError
from sim_events.formats.event_frames import frame_files, read_event_frames, stack_frames
from sim_events.formats.events import Recording

RAW_RECORDING = "events.aedat4"
MAX_STRETCH_MAD = 12.0  # DN: the largest mean |difference| at which img/ is taken to be a stretch of the recording


def is_fe240hz(path: str | pathlib.Path) -> bool:
    """True for a folder with ``img/`` and ``stack240/`` or ``events.aedat4`` (FE240hz / FE108)."""
    p = pathlib.Path(path)
    return p.is_dir() and (p / "img").is_dir() and ((p / "stack240").is_dir() or (p / RAW_RECORDING).is_file())


def has_raw_recording(path: str | pathlib.Path) -> bool:
    """True for an FE240hz / FE108 folder read from its raw ``events.aedat4`` (format ``fe108``),
    False for one read from its event frames (format ``fe240hz``)."""
    return is_fe240hz(path) and (pathlib.Path(path) / RAW_RECORDING).is_file()


def window_offset(boxes_fast: np.ndarray, boxes_slow: np.ndarray, ratio: int, search: int = 12) -> int:
    """The integer ``o`` that best maps ``boxes_fast[ratio·k + o]`` onto ``boxes_slow[k]`` (mean |Δ|)."""
    k = np.arange(len(boxes_slow))
    best, best_err = 0, np.inf
    for o in range(-search, search + 1):
        j = ratio * k + o
        ok = (j >= 0) & (j < len(boxes_fast))
        if ok.sum() < max(2, len(k) // 2):
            continue
        diff = np.abs(boxes_fast[j[ok]] - boxes_slow[k[ok]])
        err = np.nanmean(diff) if np.isfinite(diff).any() else np.inf
        if err < best_err:
            best, best_err = o, err
    return best


def read_fe240hz(path: str | pathlib.Path, aps_rate_hz: float | None = None, event_rate_hz: float | None = None,
                 threshold: int = 64) -> Recording:
    """A Recording (APS frames, events, 240 Hz boxes) from an FE240hz sequence folder.

    Rates default to ``meta.json``'s ``aps_fps`` / ``event_frame_hz``, else the APS rate the frame
    counts give (:func:`_aps_rate_from_counts`) / 240 Hz."""
    root = pathlib.Path(path)
    if not is_fe240hz(root):
        raise InputError(f"{root} is not an FE240hz sequence folder: it needs img/ (APS frames) and stack240/ "
                         f"(event frames) or {RAW_RECORDING} (the raw recording)")
    if (root / RAW_RECORDING).is_file():
        return read_fe108_raw(root, event_rate_hz)
    meta = _meta(root)
    event_rate_hz = float(event_rate_hz or meta.get("event_frame_hz", 240.0))
    aps_rate_hz = float(aps_rate_hz or meta.get("aps_fps") or _aps_rate_from_counts(root, event_rate_hz))
    ratio = event_rate_hz / aps_rate_hz
    if not (aps_rate_hz > 0 and event_rate_hz > 0 and abs(ratio - round(ratio)) < 1e-9 and ratio >= 1):
        raise InputError(f"{root}: event rate {event_rate_hz:g} Hz must be a whole multiple of the APS rate {aps_rate_hz:g} Hz: "
                         "give both rates")
    ratio = int(round(ratio))
    frames = stack_frames(frame_files(root / "img"))
    frame_t = np.round(np.arange(len(frames)) * 1e6 / aps_rate_hz).astype(np.int64)
    boxes, boxes_t, offset = timed_boxes(root, frame_t, ratio, event_rate_hz)
    events, width, height = read_event_frames(root / "stack240", event_rate_hz, offset, threshold)
    if (width, height) != (frames.shape[2], frames.shape[1]):
        raise InputError(f"{root}: event frames are {width}x{height} but APS frames {frames.shape[2]}x{frames.shape[1]}")
    attrs = {"format": "fe240hz", "aps_rate_hz": aps_rate_hz, "event_rate_hz": event_rate_hz,
             "event_frame_hz": event_rate_hz, "window_offset": offset, "event_frame_threshold": threshold}
    return Recording(events, width, height, frames, frame_t, None, boxes_t, boxes, attrs, str(root))


def _aps_rate_from_counts(root: pathlib.Path, event_rate_hz: float) -> float:
    """The APS rate of a folder without ``meta.json``: the event frames and the APS frames span the
    same time, so it is ``event_rate_hz`` / round(event frames / APS frames) (FE240hz records at
    40 fps, some FE108 sequences at 20); 40 Hz where the counts say nothing."""
    ratio = round(len(frame_files(root / "stack240")) / len(frame_files(root / "img")))
    return event_rate_hz / ratio if ratio >= 1 else 40.0


def read_fe108_raw(root: pathlib.Path, event_rate_hz: float | None = None) -> Recording:
    """A Recording from an FE108 folder with its raw ``events.aedat4`` (module docstring)."""
    from sim_events.formats.aedat4 import read_aedat4

    raw_path = root / RAW_RECORDING
    frames = stack_frames(frame_files(root / "img"))
    if len(frames) < 2:
        raise InputError(f"{root / 'img'} holds {len(frames)} APS frame: a sequence needs at least 2 to be timed and tracked")
    rec = read_aedat4(raw_path)
    if rec.frames is None or len(rec.frames) < 2:
        raise InputError(f"{raw_path} holds {0 if rec.frames is None else len(rec.frames)} APS frames, so img/ cannot be "
                         "timed: give a recording with its frames, or the folder's stack240/ event frames instead")
    if rec.frames.shape[1:] != frames.shape[1:]:
        raise InputError(f"{raw_path} has {rec.frames.shape[2]}x{rec.frames.shape[1]} frames but img/ "
                         f"{frames.shape[2]}x{frames.shape[1]}: give the recording these images came from")
    start = _recording_start(root, frames, rec.frames, raw_path)
    frame_t = rec.frame_t[start : start + len(frames)]
    if np.any(np.diff(frame_t) <= 0):
        raise InputError(f"{raw_path}: the frames' times do not increase: re-export the recording from DV")
    interval = int(np.median(np.diff(frame_t)))
    keep = (rec.events["t"] >= frame_t[0] - interval) & (rec.events["t"] <= frame_t[-1] + interval)
    aps_rate_hz = 1e6 / interval
    event_rate_hz = float(event_rate_hz or _meta(root).get("event_frame_hz", 240.0))
    boxes, boxes_t, _ = timed_boxes(root, frame_t, int(round(event_rate_hz / aps_rate_hz)), event_rate_hz)
    attrs = {"format": "fe108", "events_from": "aedat4", "aps_rate_hz": aps_rate_hz, "recording_frame_offset": start}
    return Recording(rec.events[keep], rec.width, rec.height, frames, frame_t, None, boxes_t, boxes, attrs, str(root))


def _recording_start(root: pathlib.Path, frames: np.ndarray, recording_frames: np.ndarray,
                     source: pathlib.Path) -> int:
    """The recording frame of img/ frame 0: FE108's ``pair.txt``, else 0 when the counts agree,
    else :func:`find_stretch`; InputError where img/ would run past the recording's end."""
    start = _pair_start(root)
    if start is None:
        start = 0 if len(recording_frames) == len(frames) else find_stretch(frames, recording_frames, source)
    if not 0 <= start <= len(recording_frames) - len(frames):
        raise InputError(f"img/ frame 0 at recording frame {start} runs past the {len(recording_frames)} frames of "
                         f"{source}: fix {root.parent / 'pair.txt'}")
    return start


def find_stretch(frames: np.ndarray, recording_frames: np.ndarray, source: pathlib.Path, samples: int = 8) -> int:
    """The index s at which ``frames`` (F, H, W) appear in ``recording_frames`` (R, H, W), R > F:
    the s of least mean |frames[k] − recording_frames[s + k]| over up to ``samples`` frames k,
    compared at a quarter of the resolution. InputError where even that differs by more than
    MAX_STRETCH_MAD DN (the images are not from this recording)."""
    import cv2

    def small(x):
        h, w = x.shape[1:]
        return np.stack([cv2.resize(f, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
                         for f in x]).astype(np.int16)

    n, total = len(frames), len(recording_frames)
    if total < n:
        raise InputError(f"img/ has {n} frames but {source} only {total}: give the recording these images came from")
    ks = np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(np.int64))
    mine, theirs = small(frames[ks]), small(recording_frames)
    starts = np.arange(total - n + 1)
    cost = np.zeros(len(starts))
    for i, k in enumerate(ks):
        cost += np.abs(theirs[starts + k] - mine[i]).mean(axis=(1, 2))
    cost /= len(ks)
    best = int(np.argmin(cost))
    if cost[best] > MAX_STRETCH_MAD:
        raise InputError(f"img/ is not a stretch of the frames in {source} (they differ by {cost[best]:.0f} DN at best): "
                         "give the recording these images came from, or FE108's pair.txt beside the folder")
    return best


def _pair_start(root: pathlib.Path) -> int | None:
    """FE108's ``pair.txt`` (beside the sequence folder): the recording frame of img/ frame 0, or None."""
    pair = root.parent / "pair.txt"
    if not pair.is_file():
        return None
    for line in pair.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == root.name:
            try:
                return int(parts[1])
            except ValueError:
                raise InputError(f"{pair}: '{line.strip()}' does not end in a frame number: fix the line") from None
    return None


def timed_boxes(root: pathlib.Path, frame_t: np.ndarray, ratio: int, event_rate_hz: float
                ) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """``(xywh, times µs, o)`` of the folder's ``groundtruth_rect.txt`` for APS frames at
    ``frame_t``: one box per APS frame (their times), or one per event window (``t_0 + (j −
    o)·10⁶/event_rate_hz``, ``o`` from the two box files); (None, None, 0) without a box file."""
    boxes = _boxes(root / "groundtruth_rect.txt")
    per_window = _boxes_per_window(root, boxes, len(frame_t), ratio, event_rate_hz)
    offset = _window_offset(root, boxes, ratio) if per_window else 0
    return boxes, _box_times(boxes, frame_t, per_window, offset, event_rate_hz), offset


def _boxes_per_window(root: pathlib.Path, boxes: np.ndarray | None, aps_frames: int, ratio: int,
                      event_rate_hz: float) -> bool:
    """True where ``groundtruth_rect.txt`` holds one box per event window (``ratio`` per APS frame:
    at least enough to reach the last APS frame, give or take one frame's worth; more is fine, as
    in a folder cut short), False where one per APS frame or none; else InputError."""
    if boxes is None or len(boxes) == aps_frames:
        return False
    if ratio > 1 and len(boxes) >= ratio * (aps_frames - 1):
        return True
    raise InputError(f"{root / 'groundtruth_rect.txt'} has {len(boxes)} boxes for {aps_frames} APS frames: give one "
                     f"per APS frame or one per {event_rate_hz:g} Hz window ({ratio * aps_frames})")


def _window_offset(root: pathlib.Path, boxes: np.ndarray, ratio: int) -> int:
    """The event windows' offset ``o`` from the two box files (module docstring); 0 without
    ``groundtruth_rect40.txt``."""
    slow = root / "groundtruth_rect40.txt"
    return window_offset(boxes, _boxes(slow), ratio) if slow.is_file() else 0


def _box_times(boxes: np.ndarray | None, frame_t: np.ndarray, per_window: bool, offset: int,
               event_rate_hz: float) -> np.ndarray | None:
    """The boxes' times (µs): the APS frames' own, or ``t_0 + (j − o)·10⁶/event_rate_hz``."""
    if boxes is None:
        return None
    if not per_window:
        return frame_t.copy()
    return np.round(frame_t[0] + (np.arange(len(boxes)) - offset) * (1e6 / event_rate_hz)).astype(np.int64)


def _meta(root: pathlib.Path) -> dict:
    try:
        return json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _boxes(path: pathlib.Path) -> np.ndarray | None:
    """(N, 4) float32 ``x,y,w,h`` lines (commas, tabs or spaces); NaN rows where w or h ≤ 0."""
    if not path.is_file():
        return None
    try:
        text = path.read_text().replace(",", " ").replace("\t", " ")
        boxes = np.loadtxt(text.splitlines(), dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read boxes ({exc}): expected lines of x,y,w,h") from None
    if boxes.shape[1] != 4:
        raise InputError(f"{path}: lines have {boxes.shape[1]} values, expected 4 (x,y,w,h)")
    boxes[(boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)] = np.nan
    return boxes.astype(np.float32)
