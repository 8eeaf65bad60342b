"""The recording ``.npz`` layout: real frames + events in one numpy archive.

Keys (as in ``shared/data/events/davis346_traffic_first_half.npz``): ``frames`` (N, H, W)
uint8, ``frame_ts`` (N,) int64 µs, optional ``frame_exposure_us`` (N,), ``t`` (M,) int64 µs,
``x``, ``y`` (M,), ``p`` (M,) with +1 = ON and -1 (or 0) = OFF, ``width``, ``height``
(scalars; taken from the frames when absent). A frames-only npz (no t/x/y/p) is a valid
recording with zero events. Pickled objects are never loaded.
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from neurosim.errors import InputError
from sim_events.formats.events import EVENT_DTYPE, Recording


def _load(path: pathlib.Path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz archive ({type(exc).__name__}): check the file is complete") from None


def load_recording_npz(path: str | pathlib.Path) -> Recording:
    """Load a recording .npz (frames, frame_ts, events); p is converted to bool (> 0 = ON)."""
    p = pathlib.Path(path)
    with _load(p) as d:
        keys = set(d.files)
        has_events = {"t", "x", "y", "p"} <= keys
        if not has_events and "frames" not in keys:
            raise InputError(f"{p} has neither events (t, x, y, p) nor frames: pass a recording .npz (keys {sorted(keys)[:8]})")
        try:
            frames = d["frames"] if "frames" in keys else None
            frame_t = d["frame_ts"].astype(np.int64) if "frame_ts" in keys else None
            exposure = d["frame_exposure_us"].astype(np.float64) if "frame_exposure_us" in keys else None
            if has_events:
                t = d["t"]
                events = np.empty(t.shape[0], dtype=EVENT_DTYPE)
                events["t"], events["x"], events["y"], events["p"] = t, d["x"], d["y"], d["p"] > 0
            else:
                events = np.empty(0, dtype=EVENT_DTYPE)
            width = int(d["width"]) if "width" in keys else None
            height = int(d["height"]) if "height" in keys else None
        except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InputError(f"{p} is corrupt or truncated ({type(exc).__name__}): re-create it") from None
    if frames is not None:
        if frames.ndim != 3 or frames.dtype != np.uint8:
            raise InputError(f"{p}: frames must be (N, H, W) uint8, got {frames.shape} {frames.dtype}")
        if frame_t is None or frame_t.shape != (frames.shape[0],):
            raise InputError(f"{p}: frame_ts must hold one µs time per frame ({frames.shape[0]}): add or fix frame_ts")
        height = height or frames.shape[1]
        width = width or frames.shape[2]
    if width is None or height is None:
        if not len(events):
            raise InputError(f"{p}: no width/height and no events to infer them: add width and height")
        width, height = int(events["x"].max()) + 1, int(events["y"].max()) + 1
    if np.any(events["t"][1:] < events["t"][:-1]):
        events = events[np.argsort(events["t"], kind="stable")]
    return Recording(events=events, width=width, height=height, frames=frames, frame_t=frame_t,
                     frame_exposure_us=exposure, source=str(p), attrs={"format": "recording-npz"})
