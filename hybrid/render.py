"""Tracking videos: boxes drawn over APS frames and events.

One video frame every ``every`` SNN steps: the latest APS frame (grey), the events of those
steps on top (ON red, OFF blue; vectorized colour assignment), the tracker's box (green) and
the ground truth where known (white). Written with OpenCV (``mp4v``) to a temporary file that
is renamed on success.
"""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

from neurosim.errors import OutputError
from neurosim.io import atomic_output


def draw_step(track, res, j: int, every: int) -> np.ndarray:
    """The BGR image of output step j."""
    t = int(res.times[j])
    k = max(int(np.searchsorted(track.frame_t, t, "right")) - 1, 0)
    img = cv2.cvtColor(track.frames[k], cv2.COLOR_GRAY2BGR)
    t0 = int(res.times[max(j - every, 0)]) if j else t - 1000
    ev = track.events_between(t0, t)
    on = ev["p"].astype(bool)
    img[ev["y"][on], ev["x"][on]] = (0, 0, 255)
    img[ev["y"][~on], ev["x"][~on]] = (255, 0, 0)
    for box, colour in ((res.gt[j], (255, 255, 255)), (res.boxes[j], (0, 255, 0))):
        if np.isfinite(box).all():
            x, y, w, h = box
            cv2.rectangle(img, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), colour, 1)
    cv2.putText(img, f"{t / 1000:.0f} ms", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 255, 255), 1)
    return img


def write_tracking_video(path: str | pathlib.Path, track, res, every: int = 4, fps: float = 30.0) -> pathlib.Path:
    """Write the tracking video of ``res`` (a TrackResult on ``track``) to ``path``."""
    path = pathlib.Path(path)
    with atomic_output(path, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (track.width, track.height))
        try:
            if not writer.isOpened():
                raise OutputError(f"cannot write video {path}: use an .mp4 or .avi file name")
            for j in range(0, len(res.times), every):
                writer.write(draw_step(track, res, j, every))
        finally:
            writer.release()
    return path
