"""Event frames and the FE240hz sequence folder (real DAVIS346 APS frames + 240 Hz event frames).

**Event frames** (FE240hz, FE108 and AFNet's releases): one image per time window of length
``1/rate`` (240 Hz: 4,167 µs); grey 128 where the window had no event, white (255) where it
had ON events, black (0) OFF. They are JPEG-compressed, so values near 128 are noise: a pixel
is ON where its value is ≥ 128 + ``threshold`` and OFF where ≤ 128 − ``threshold`` (default
64, half-way between the levels). An event frame keeps at most one polarity per pixel and
window and no time inside the window, so each marked pixel becomes **one** event at the
window's centre. Counts and exact times are lost; per-window activity is kept exactly.

**FE240hz folder** ``NAME/``::

    img/00001.jpg …           APS frames (346×260, grey stored as RGB), ``aps_rate_hz`` (40)
    stack240/00001.jpg …      event frames at ``event_rate_hz`` (240), ``ratio`` = 6 per APS frame
    groundtruth_rect.txt      one box per event frame: ``x,y,w,h`` (0-based pixels)
    groundtruth_rect40.txt    (optional) one box per APS frame
    meta.json                 (optional) ``aps_fps``, ``event_frame_hz``

Clock: APS frame k is at ``t = k·10⁶/aps_rate_hz`` µs. The 240 Hz series is offset from it by
an integer number of windows ``o``: event frame and box j are at ``t = (j − o)·10⁶/event_rate_hz``,
and event frame j covers the window that ends there. ``o`` is read off the two box files (the
``o`` for which ``box240[ratio·k + o] == box40[k]``; in ``dove_mul111_0`` it is −7, an exact
match for every k ≥ 2); without ``groundtruth_rect40.txt`` it is 0.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from neurosim.errors import InputError
from sim_events.formats.events import Recording, make_events

NO_EVENT_LEVEL = 128
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def is_fe240hz(path: str | pathlib.Path) -> bool:
    """True for a folder with ``img/`` and ``stack240/`` (the FE240hz layout)."""
    p = pathlib.Path(path)
    return p.is_dir() and (p / "img").is_dir() and (p / "stack240").is_dir()


def frame_files(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """Image files of ``folder`` in name order; InputError if there are none."""
    folder = pathlib.Path(folder)
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise InputError(f"{folder} holds no image files ({', '.join(FRAME_SUFFIXES)}): check the folder")
    return files


def read_grey(path: pathlib.Path) -> np.ndarray:
    """One image as (H, W) uint8 (the first channel of a colour file); InputError if unreadable."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path} cannot be read as an image: replace or remove the file")
    return img if img.ndim == 2 else img[..., 0]


def event_frame_events(frame: np.ndarray, t_us: int, threshold: int = 64) -> tuple[np.ndarray, ...]:
    """Events of one event frame (H, W) uint8: ``x, y, t, p`` arrays, all at ``t_us``, p ON = 1."""
    on = frame >= NO_EVENT_LEVEL + threshold
    off = frame <= NO_EVENT_LEVEL - threshold
    y, x = np.nonzero(on | off)
    return x, y, np.full(x.shape, t_us, np.int64), on[y, x].astype(np.uint8)


def read_event_frames(folder: str | pathlib.Path, rate_hz: float, offset: int = 0,
                      threshold: int = 64) -> tuple[np.ndarray, int, int]:
    """``(events, width, height)`` from a folder of event frames at ``rate_hz``.

    Frame j covers ``[(j − o − 1)·w, (j − o)·w)`` µs with ``w = 10⁶/rate_hz`` and ``o = offset``;
    its events get the window's centre time ``floor((j − o − 0.5)·w)``."""
    if not (0 < threshold < NO_EVENT_LEVEL):
        raise InputError(f"event-frame threshold {threshold} must be in 1..127: 64 is half-way between the levels")
    files = frame_files(folder)
    window = 1e6 / rate_hz
    parts, shape = [], None
    for j, f in enumerate(files):
        frame = read_grey(f)
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise InputError(f"{f} is {frame.shape[1]}x{frame.shape[0]}, the first event frame {shape[1]}x{shape[0]}: "
                             "every event frame must have one size")
        parts.append(event_frame_events(frame, int(np.floor((j - offset - 0.5) * window)), threshold))
    x, y, t, p = (np.concatenate(c) for c in zip(*parts))
    order = np.argsort(t, kind="stable")
    return make_events(x[order], y[order], t[order], p[order]), int(shape[1]), int(shape[0])


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

    Rates default to ``meta.json``'s ``aps_fps`` / ``event_frame_hz``, else 40 / 240 Hz."""
    root = pathlib.Path(path)
    if not is_fe240hz(root):
        raise InputError(f"{root} is not an FE240hz sequence folder: it needs img/ (APS frames) and stack240/ (event frames)")
    meta = _meta(root)
    aps_rate_hz = float(aps_rate_hz or meta.get("aps_fps", 40.0))
    event_rate_hz = float(event_rate_hz or meta.get("event_frame_hz", 240.0))
    ratio = event_rate_hz / aps_rate_hz
    if not (aps_rate_hz > 0 and event_rate_hz > 0 and abs(ratio - round(ratio)) < 1e-9 and ratio >= 1):
        raise InputError(f"{root}: event rate {event_rate_hz:g} Hz must be a whole multiple of the APS rate {aps_rate_hz:g} Hz: "
                         "give both rates")
    ratio = int(round(ratio))
    frames = np.stack([read_grey(f) for f in frame_files(root / "img")])
    frame_t = np.round(np.arange(len(frames)) * 1e6 / aps_rate_hz).astype(np.int64)
    boxes = _boxes(root / "groundtruth_rect.txt")
    slow = root / "groundtruth_rect40.txt"
    offset = window_offset(boxes, _boxes(slow), ratio) if boxes is not None and slow.is_file() else 0
    window = 1e6 / event_rate_hz
    events, width, height = read_event_frames(root / "stack240", event_rate_hz, offset, threshold)
    if (width, height) != (frames.shape[2], frames.shape[1]):
        raise InputError(f"{root}: event frames are {width}x{height} but APS frames {frames.shape[2]}x{frames.shape[1]}")
    boxes_t = None if boxes is None else np.round((np.arange(len(boxes)) - offset) * window).astype(np.int64)
    attrs = {"format": "fe240hz", "aps_rate_hz": aps_rate_hz, "event_rate_hz": event_rate_hz,
             "event_frame_hz": event_rate_hz, "window_offset": offset, "event_frame_threshold": threshold}
    return Recording(events, width, height, frames, frame_t, None, boxes_t, boxes, attrs, str(root))


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
