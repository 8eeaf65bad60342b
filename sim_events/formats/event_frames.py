"""Event frames: the 240 Hz event images of FE240hz / FE108 and AFNet's releases, read back as events.

**Event frames** (FE240hz, FE108 and AFNet's releases): one image per time window of length
``1/rate`` (240 Hz: 4,167 µs); grey 128 where the window had no event, white (255) where it
had ON events, black (0) OFF. They are JPEG-compressed, so values near 128 are noise: a pixel
is ON where its value is ≥ 128 + ``threshold`` and OFF where ≤ 128 − ``threshold`` (default
64, half-way between the levels). An event frame keeps at most one polarity per pixel and
window and no time inside the window, so each marked pixel becomes **one** event at the
window's centre. Counts and exact times are lost; per-window activity is kept exactly.
"""

from __future__ import annotations

import pathlib

import numpy as np

from neurosim.errors import InputError
from sim_events.formats.events import make_events

NO_EVENT_LEVEL = 128
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


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


def stack_frames(files: list[pathlib.Path], read=read_grey) -> np.ndarray:
    """(F, H, W) uint8 of the image ``files`` read with ``read``; InputError naming the first
    image whose size differs from the first one's."""
    frames = [read(f) for f in files]
    for f, frame in zip(files, frames):
        if frame.shape != frames[0].shape:
            raise InputError(f"{f} is {frame.shape[1]}x{frame.shape[0]}, {files[0].name} {frames[0].shape[1]}x"
                             f"{frames[0].shape[0]}: every frame of a sequence must have one size")
    return np.stack(frames)


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
