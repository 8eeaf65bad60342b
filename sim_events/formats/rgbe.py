"""RGB-event tracking benchmarks: VisEvent and COESOT sequence folders (DAVIS346 recordings).

**VisEvent** ``NAME/``::

    vis_imgs/frame0000.bmp …     APS/RGB frames
    event_imgs/frame0000.bmp …   one event image per frame (the events since the previous frame)
    groundtruth.txt              one box per frame: x,y,w,h (or 8 corner values x1,y1,…,x4,y4)
    absent_label.txt             (optional) 1 where the target is visible, 0 where absent
    NAME.aedat4                  (optional) the raw DV recording: events and frames

**COESOT** ``NAME/``: ``NAME_aps/`` (frames), ``NAME_dvs/`` (event images), the same text files
and optional ``NAME.aedat4``.

Events come from the raw ``.aedat4`` where the folder has one (exact times and every event);
its frames' exposure midpoints time the frames and boxes when their count equals the image
count. Without it, frame k is taken at ``(k + 1)/fps`` (default 25 Hz, about DAVIS346's APS
rate in these datasets) and each event image becomes one event per marked pixel at the centre of
the interval since the previous frame, as for FE240hz event frames
(:mod:`sim_events.formats.event_frames`). Event images are read as the datasets' converters draw
them: a uniform background (the image's most common colour), ON events red and OFF events blue;
a grey image with no colour is read as grey-128 event frames (ON white, OFF black).
"""

from __future__ import annotations

import pathlib

import numpy as np

from neurosim.errors import InputError
from sim_events.formats.events import Recording, make_events

DEFAULT_FPS = 25.0
COLOUR_THRESHOLD = 64  # |R − B| (or |grey − 128|) at which a pixel counts as an event


def layout(path: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path] | None:
    """(frames folder, event-image folder) of a VisEvent or COESOT sequence folder, else None."""
    p = pathlib.Path(path)
    if not p.is_dir() or not (p / "groundtruth.txt").is_file():
        return None
    for frames, events in (("vis_imgs", "event_imgs"), (f"{p.name}_aps", f"{p.name}_dvs")):
        if (p / frames).is_dir():
            return p / frames, p / events
    return None


def read_rgbe(path: str | pathlib.Path, fps: float | None = None) -> Recording:
    """A Recording (frames, events, one box per frame) from a VisEvent or COESOT sequence folder."""
    from sim_events.formats.event_frames import frame_files, stack_frames

    root = pathlib.Path(path)
    found = layout(root)
    if found is None:
        raise InputError(f"{root} is not a VisEvent/COESOT sequence folder: it needs groundtruth.txt and vis_imgs/ "
                         f"(VisEvent) or {root.name}_aps/ (COESOT)")
    frame_dir, event_dir = found
    files = frame_files(frame_dir)
    frames = stack_frames(files, _grey)
    boxes = read_boxes(root / "groundtruth.txt", len(files), root / "absent_label.txt")
    raw = root / f"{root.name}.aedat4"
    if raw.is_file():
        rec = _from_raw(raw, frames)
    else:
        rec = _from_event_images(event_dir, frames, float(fps or DEFAULT_FPS))
    rec.boxes_t, rec.boxes_xywh, rec.source = rec.frame_t.copy(), boxes, str(root)
    return rec


def read_boxes(path: pathlib.Path, count: int, absent: pathlib.Path | None = None) -> np.ndarray:
    """(count, 4) float32 ``x,y,w,h`` from 4- or 8-column lines; NaN where absent or w, h ≤ 0."""
    try:
        rows = np.loadtxt(path.read_text().replace(",", " ").replace("\t", " ").splitlines(), ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read boxes ({exc}): expected lines of x,y,w,h") from None
    if rows.shape[1] == 8:  # corners: the axis-aligned box around them
        xs, ys = rows[:, 0::2], rows[:, 1::2]
        rows = np.stack([xs.min(1), ys.min(1), xs.max(1) - xs.min(1), ys.max(1) - ys.min(1)], axis=1)
    if rows.shape[1] != 4:
        raise InputError(f"{path}: lines have {rows.shape[1]} values: give x,y,w,h or 8 corner values")
    if len(rows) != count:
        raise InputError(f"{path} has {len(rows)} boxes for {count} frames: give one box per frame")
    rows[(rows[:, 2] <= 0) | (rows[:, 3] <= 0)] = np.nan
    if absent is not None and absent.is_file():
        visible = np.loadtxt(absent, ndmin=1)
        if visible.shape != (count,):
            raise InputError(f"{absent} has {visible.size} labels for {count} frames: give one 0/1 per frame")
        rows[visible == 0] = np.nan
    return rows.astype(np.float32)


def _grey(path: pathlib.Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path} cannot be read as an image: replace or remove the file")
    if img.ndim == 2:
        return img
    return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)


def _from_raw(raw: pathlib.Path, frames: np.ndarray) -> Recording:
    """Events (and frame times) of the raw recording; the folder's frames are kept."""
    from sim_events.formats.aedat4 import read_aedat4

    rec = read_aedat4(raw)
    if rec.frame_t is None or len(rec.frame_t) != len(frames):
        have = 0 if rec.frame_t is None else len(rec.frame_t)
        raise InputError(f"{raw} has {have} frames but the folder {len(frames)} images, so the boxes cannot be timed: "
                         "move the .aedat4 away to read the event images instead")
    if (rec.width, rec.height) != (frames.shape[2], frames.shape[1]):
        raise InputError(f"{raw} is {rec.width}x{rec.height} but the frames {frames.shape[2]}x{frames.shape[1]}")
    rec.frames = frames
    rec.attrs = {**rec.attrs, "format": "rgbe", "events_from": "aedat4"}
    return rec


def _from_event_images(folder: pathlib.Path, frames: np.ndarray, fps: float) -> Recording:
    """Frame k at ``(k + 1)/fps``; image k's events at the centre of ``(k/fps, (k + 1)/fps]``."""
    from sim_events.formats.event_frames import frame_files

    if not (0 < fps <= 1e6):
        raise InputError(f"frame rate {fps:g} Hz is impossible: give a rate in (0, 1e6]")
    files = frame_files(folder)
    if len(files) != len(frames):
        raise InputError(f"{folder} has {len(files)} event images for {len(frames)} frames: give one per frame")
    frame_t = np.round(np.arange(1, len(frames) + 1) * 1e6 / fps).astype(np.int64)
    parts = []
    for k, f in enumerate(files):
        on, off = event_image_polarity(f, frames.shape[1:])
        y, x = np.nonzero(on | off)
        t = int(frame_t[k] - 0.5e6 / fps)
        parts.append((x, y, np.full(x.shape, t, np.int64), on[y, x].astype(np.uint8)))
    x, y, t, p = (np.concatenate(c) for c in zip(*parts))
    attrs = {"format": "rgbe", "events_from": "event images", "frame_rate_hz": fps, "event_frame_hz": fps}
    return Recording(make_events(x, y, t, p), frames.shape[2], frames.shape[1], frames, frame_t, None, None, None, attrs)


def event_image_polarity(path: pathlib.Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(on, off) bool (H, W) of one event image: red / blue on a uniform background, or grey 128 ± 64."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path} cannot be read as an image: replace or remove the file")
    if img.shape[:2] != tuple(shape):
        raise InputError(f"{path} is {img.shape[1]}x{img.shape[0]} but the frames {shape[1]}x{shape[0]}")
    if img.ndim == 2 or np.array_equal(img[..., 0], img[..., 2]):
        grey = (img if img.ndim == 2 else img[..., 0]).astype(np.int16)
        return grey >= 128 + COLOUR_THRESHOLD, grey <= 128 - COLOUR_THRESHOLD
    b, r = img[..., 0].astype(np.int16), img[..., 2].astype(np.int16)
    flat = img[..., :3].reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = np.all(img[..., :3] == colours[np.argmax(counts)], axis=-1)
    return ~background & (r - b >= COLOUR_THRESHOLD), ~background & (b - r >= COLOUR_THRESHOLD)
