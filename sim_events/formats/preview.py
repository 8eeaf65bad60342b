"""Render an event file as a preview video: ON/OFF events coloured over the APS frames.

Output frame k shows time ``t_k = t_start + (k + 1) / fps``: the latest APS frame at or
before ``t_k`` (dimmed to 60 %; black when the file has no frames), and every pixel with
events in ``[t_k - window, t_k)`` coloured ON (green, BGR 40,220,40) or OFF (red, BGR
40,40,230) by the sign of its net count (a tie counts as ON). Counts
are accumulated with ``np.bincount`` (no loops over events). The target box, when the file
has boxes, is drawn in yellow (latest box at or before ``t_k``). Small sensors are scaled
up (nearest neighbour) so the shorter side is at least 240 px. Video codec: mp4v (OpenCV).
"""

from __future__ import annotations

import pathlib
from typing import Callable, Iterable

import numpy as np

from neurosim.errors import OutputError, ParameterError
from neurosim.io import atomic_output, check_writable
from sim_events.formats import detect_format, read_recording

ON_BGR = np.array([40, 220, 40], np.uint8)
OFF_BGR = np.array([40, 40, 230], np.uint8)
BOX_BGR = (0, 220, 255)
MIN_SIDE = 240
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv"}


class _InMemory:
    """Windowed access to an in-memory Recording (searchsorted on t)."""

    def __init__(self, rec):
        self.rec, self.width, self.height = rec, rec.width, rec.height
        self.frame_t = rec.frame_t if rec.frames is not None else None
        self.boxes = (rec.boxes_t, rec.boxes_xywh) if rec.boxes_t is not None else None
        t = rec.events["t"]
        self._t = t
        self.span = (int(t[0]), int(t[-1])) if len(t) else None

    def events(self, t0: int, t1: int) -> np.ndarray:
        a, b = np.searchsorted(self._t, [t0, t1], "left")
        return self.rec.events[a:b]

    def frame(self, i: int) -> np.ndarray:
        return self.rec.frames[i]

    def close(self) -> None:
        pass


class _OnDisk:
    """Windowed access to a sequence file (ms_to_idx), frames read one at a time."""

    def __init__(self, path):
        from sim_events.formats.sequence import SequenceReader

        self.r = SequenceReader(path)
        self.width, self.height = self.r.width, self.r.height
        self.frame_t, self.boxes = self.r.frame_t, self.r.boxes
        self.span = self.r.span() if self.r.num_events else None

    def events(self, t0: int, t1: int) -> np.ndarray:
        return self.r.events(t0, t1)

    def frame(self, i: int) -> np.ndarray:
        return self.r.frames(i)

    def close(self) -> None:
        self.r.close()


def colour_events(base: np.ndarray, events: np.ndarray, width: int, height: int) -> np.ndarray:
    """Colour ``base`` (H, W, 3) uint8 in place where ``events`` fell: net ON > 0 → ON_BGR,
    net < 0 → OFF_BGR, a tie of nonzero counts → ON_BGR. Returns ``base``."""
    if len(events) == 0:
        return base
    idx = events["y"].astype(np.int64) * width + events["x"].astype(np.int64)
    sign = np.where(events["p"], 1, -1)
    net = np.bincount(idx, weights=sign, minlength=width * height).reshape(height, width)
    hit = np.bincount(idx, minlength=width * height).reshape(height, width) > 0
    base[hit & (net >= 0)] = ON_BGR
    base[hit & (net < 0)] = OFF_BGR
    return base


def compose_preview(events: np.ndarray, width: int, height: int, grey: np.ndarray | None = None,
                    box: np.ndarray | None = None, scale: int = 1, size: tuple[int, int] | None = None) -> np.ndarray:
    """One preview image (BGR uint8): ``grey`` (H, W) dimmed to 60 % (black if None), the
    pixels of ``events`` coloured by :func:`colour_events`, scaled up ``scale`` times
    (nearest), padded to ``size`` (w, h), and the box ``xywh`` (if given and finite) in yellow."""
    import cv2

    img = np.zeros((height, width, 3), np.uint8)
    if grey is not None:
        img[:] = (grey.astype(np.uint16) * 3 // 5).astype(np.uint8)[:, :, None]
    colour_events(img, events, width, height)
    size = size or (width * scale, height * scale)
    if scale > 1:
        img = cv2.resize(img, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)
    if (img.shape[1], img.shape[0]) != tuple(size):
        img = cv2.copyMakeBorder(img, 0, size[1] - img.shape[0], 0, size[0] - img.shape[1], cv2.BORDER_CONSTANT)
    if box is not None and np.all(np.isfinite(box)):
        x, y, bw, bh = (np.asarray(box, np.float64) * scale).tolist()
        cv2.rectangle(img, (int(round(x)), int(round(y))), (int(round(x + bw)), int(round(y + bh))), BOX_BGR, 1)
    return img


def render_preview(path: str | pathlib.Path, out: str | pathlib.Path, fps: float = 30.0,
                   window_ms: float | None = None, max_frames: int | None = None,
                   play_fps: float | None = None, progress: Callable[[Iterable], Iterable] | None = None) -> dict:
    """Write a preview video of an event file; returns ``{"out", "frames", "fps", "window_ms",
    "width", "height"}``. ``fps`` is output frames per second of recording time;
    ``window_ms`` defaults to one output frame interval (1000 / fps); ``play_fps`` is the
    playback rate written in the video (default ``fps``: real time; lower = slow motion).

    The video is written to a temporary file beside ``out`` and renamed when complete.
    """
    import cv2

    if not (fps > 0 and np.isfinite(fps)):
        raise ParameterError(f"--fps {fps} is impossible: give a positive frame rate, e.g. --fps 30")
    window_ms = 1000.0 / fps if window_ms is None else float(window_ms)
    if not (window_ms > 0 and np.isfinite(window_ms)):
        raise ParameterError(f"--window-ms {window_ms} is impossible: give a positive window in ms")
    out = pathlib.Path(out)
    if out.suffix.lower() not in VIDEO_EXTS:
        raise ParameterError(f"output {out} must end in .mp4 (or .avi/.mov/.mkv): choose e.g. -o preview.mp4")
    play_fps = fps if play_fps is None else float(play_fps)
    if not (play_fps > 0 and np.isfinite(play_fps)):
        raise ParameterError(f"--play-fps {play_fps} is impossible: give a positive playback rate")
    check_writable(out)
    kind = detect_format(path)
    src = _OnDisk(path) if kind == "sequence" else _InMemory(read_recording(path))
    try:
        return _render(src, path, out, fps, window_ms, max_frames, play_fps, progress, cv2)
    finally:
        src.close()


def _render(src, path, out, fps, window_ms, max_frames, play_fps, progress, cv2) -> dict:
    w, h = src.width, src.height
    starts = [v for v in (src.span[0] if src.span else None,
                          int(src.frame_t[0]) if src.frame_t is not None and len(src.frame_t) else None) if v is not None]
    ends = [v for v in (src.span[1] if src.span else None,
                        int(src.frame_t[-1]) if src.frame_t is not None and len(src.frame_t) else None) if v is not None]
    if not starts:
        from neurosim.errors import InputError

        raise InputError(f"{path} has neither events nor frames: nothing to render; pass a file with events")
    t_start, t_end = min(starts), max(ends)
    period = 1e6 / fps
    n_out = max(1, int(np.ceil((t_end - t_start + 1) / period)))
    if max_frames is not None:
        n_out = min(n_out, int(max_frames))
    scale = max(1, int(np.ceil(MIN_SIDE / min(w, h))))
    size = (w * scale + (w * scale) % 2, h * scale + (h * scale) % 2)  # even sides for mp4v
    with atomic_output(out, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), play_fps, size)
        try:
            if not writer.isOpened():
                raise OutputError(f"cannot write video {out} with the mp4v codec: choose a .mp4 or .avi name")
            win = int(round(window_ms * 1000))
            ks = range(n_out)
            for k in (progress(ks) if progress else ks):
                tk = t_start + int(round((k + 1) * period))
                grey = None
                if src.frame_t is not None and len(src.frame_t):
                    i = int(np.searchsorted(src.frame_t, tk, "right")) - 1
                    grey = src.frame(i) if i >= 0 else None
                box = None
                if src.boxes is not None and len(src.boxes[0]):
                    j = int(np.searchsorted(src.boxes[0], tk, "right")) - 1
                    box = src.boxes[1][j] if j >= 0 else None
                img = compose_preview(src.events(tk - win, tk), w, h, grey=grey, box=box, scale=scale, size=size)
                writer.write(img)
        finally:
            writer.release()
        if tmp.stat().st_size == 0:
            raise OutputError(f"OpenCV wrote nothing to {out}: check that its mp4v encoder works here")
    return {"out": str(out), "frames": n_out, "fps": fps, "play_fps": play_fps, "window_ms": window_ms,
            "width": size[0], "height": size[1], "t_start_us": t_start, "t_end_us": t_end}
