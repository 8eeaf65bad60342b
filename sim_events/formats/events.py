"""Core in-memory types of the event formats: tonic's event layout and a recording record.

Events are a numpy structured array with fields ``x, y`` (int16, pixels, x right, y down),
``t`` (int64, µs, absolute) and ``p`` (bool, True = ON). This is tonic's layout
(``tonic.io.events_struct``), so tonic transforms apply directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])


def make_events(x: Any, y: Any, t: Any, p: Any) -> np.ndarray:
    """Pack equal-length x, y, t (µs), p (truthy = ON) arrays into an EVENT_DTYPE array (N,)."""
    x = np.asarray(x)
    out = np.empty(x.shape[0], dtype=EVENT_DTYPE)
    out["x"] = x
    out["y"] = y
    out["t"] = t
    out["p"] = np.asarray(p) > 0
    return out


def to_tonic(events: np.ndarray) -> np.ndarray:
    """Return ``events`` in tonic's structured layout (x, y int16; t int64 µs; p bool).

    Accepts any structured array with fields x, y, t, p (p as bool, 0/1 or ±1; ON is > 0)
    and returns a new EVENT_DTYPE array; an EVENT_DTYPE array is returned unchanged.
    ``tonic.transforms.ToFrame(sensor_size=(width, height, 2), ...)`` works on the result.
    """
    if events.dtype == EVENT_DTYPE:
        return events
    names = set(events.dtype.names or ())
    if not {"x", "y", "t", "p"} <= names:
        raise ValueError(f"events need fields x, y, t, p; got {sorted(names)}")
    return make_events(events["x"], events["y"], events["t"], events["p"])


@dataclasses.dataclass
class Recording:
    """Events plus, where the file has them, APS frames and target boxes.

    Shapes and units: ``events`` (N,) EVENT_DTYPE (absolute µs); ``frames`` (F, H, W) uint8
    or None; ``frame_t`` (F,) int64 µs (exposure midpoint) or None; ``frame_exposure_us``
    (F,) float64 or None; ``boxes_t`` (B,) int64 µs and ``boxes_xywh`` (B, 4) float32
    (0-based top-left x, y, width, height; NaN where the target is absent) or None;
    ``attrs`` the file's metadata (root attributes of a sequence file, header of a .raw).
    """

    events: np.ndarray
    width: int
    height: int
    frames: np.ndarray | None = None
    frame_t: np.ndarray | None = None
    frame_exposure_us: np.ndarray | None = None
    boxes_t: np.ndarray | None = None
    boxes_xywh: np.ndarray | None = None
    attrs: dict = dataclasses.field(default_factory=dict)
    source: str = ""

    @property
    def frame_ts(self) -> np.ndarray | None:
        """Alias of ``frame_t`` (the key name of the recording .npz layout)."""
        return self.frame_t

    @property
    def sensor_size(self) -> tuple[int, int, int]:
        """``(width, height, 2)``: tonic's sensor_size."""
        return (self.width, self.height, 2)
