"""Baseline trackers on the APS frames, scored by the same harness as the hybrid tracker.

Every results table carries baselines run through the same protocol (``hybrid.evaluate``), so a
figure says where the tracker stands. A baseline sees only the APS frames, as a frame-based
tracker on a DAVIS would: at frame 0 it is given the box, at frame k ≥ 1 it updates on frame k,
and its box is held over the frame interval [t_k, t_{k+1}). It reports that box at every SNN
step of the interval, the times at which the hybrid tracker reports its boxes (bin ends
``t_k + floor(b·(t_{k+1} − t_k)/T)``, b = 1..T, ``hybrid.data``), so both are scored on the
same times. In the fast regime (APS every 8th input frame) a baseline therefore sees only those
frames, as DashNet's comparison does.

Baselines (:data:`BASELINES`):

- ``static_box``: the first box, never moved (the floor: any tracker must beat it);
- ``csrt``: OpenCV's CSRT, a discriminative correlation filter with channel and spatial
  reliability (Lukežič et al., CVPR 2017), HOG + colour-names features;
- ``kcf``: OpenCV's KCF, a kernelized correlation filter (Henriques et al., TPAMI 2015);
- ``mil``: OpenCV's MIL, multiple-instance online boosting (Babenko et al., CVPR 2009).

The OpenCV trackers come from ``opencv-contrib-python-headless`` (CSRT, KCF) and run with their
default parameters on the grey APS frame replicated to three channels. MIL draws its Haar
features with the C library's ``rand()``, which ``cv2.setRNGSeed`` does not reach; every tracker
``init`` therefore seeds both (``srand(seed)`` through ctypes), so a sequence's MIL boxes are the
same whatever ran before it in the process.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Protocol

import numpy as np

from hybrid.data import Track, aps_rate, bins_per_frame
from hybrid.track import TrackResult, check_first_box, clamp_boxes
from neurosim.errors import ParameterError

BASELINES = ("static_box", "csrt", "kcf", "mil")
_OPENCV = {"csrt": "TrackerCSRT_create", "kcf": "TrackerKCF_create", "mil": "TrackerMIL_create"}


class FrameTracker(Protocol):
    """A tracker on frames: ``init`` on the first frame and box, then ``update`` per frame.

    Frames are (H, W) uint8 grey images; boxes are (4,) float xywh in pixels (0-based top-left)."""

    def init(self, frame: np.ndarray, box: np.ndarray) -> None: ...

    def update(self, frame: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass
class StaticBox:
    """The first box, never moved."""

    box: np.ndarray | None = None

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.box = np.array(box, np.float64)

    def update(self, frame: np.ndarray) -> np.ndarray:
        return self.box


class OpenCVTracker:
    """One of OpenCV's single-object trackers (``csrt``, ``kcf``, ``mil``), default parameters.

    When OpenCV reports a lost target (or raises on a degenerate box), the last box is held."""

    def __init__(self, kind: str, seed: int = 0):
        import cv2

        factory = getattr(cv2, _OPENCV[kind], None)
        if factory is None:
            raise ParameterError(f"baseline {kind!r} needs OpenCV's contrib trackers: pip install opencv-contrib-python-headless "
                                 "(in place of opencv-python-headless)")
        self.kind, self.seed, self._factory = kind, seed, factory
        self._tracker = None
        self.box: np.ndarray | None = None

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        import cv2

        cv2.setRNGSeed(self.seed)  # for OpenCV code that draws from theRNG()
        _seed_c_rand(self.seed)  # MIL's Haar features come from C rand()
        self.box = np.array(box, np.float64)
        self._tracker = self._factory()
        self._tracker.init(_bgr(frame), _rect(self.box))

    def update(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        try:
            ok, rect = self._tracker.update(_bgr(frame))
        except cv2.error:
            ok = False
        if ok and rect[2] > 0 and rect[3] > 0:
            self.box = np.array(rect, np.float64)
        return self.box


def make_baseline(name: str, seed: int = 0) -> FrameTracker:
    """The baseline called ``name`` (one of :data:`BASELINES`)."""
    if name == "static_box":
        return StaticBox()
    if name in _OPENCV:
        return OpenCVTracker(name, seed)
    raise ParameterError(f"baseline {name!r} is unknown: use {', '.join(BASELINES)}")


def parse_baselines(text: str | None) -> list[str]:
    """Comma-separated baseline names → list (``none`` or empty → []); ParameterError if unknown."""
    names = [n.strip() for n in (text or "").split(",") if n.strip() and n.strip() != "none"]
    for n in names:
        if n not in BASELINES:
            raise ParameterError(f"--baselines: {n!r} is unknown: use {', '.join(BASELINES)} or none")
    return list(dict.fromkeys(names))


def track_frames(tracker: FrameTracker, track: Track, snn_rate_hz: float = 1000.0,
                 first_box: np.ndarray | None = None, max_frames: int | None = None) -> TrackResult:
    """Run a frame tracker over ``track``'s APS frames; a box at every SNN step, as the hybrid.

    ``snn_rate_hz`` sets the step times (those of the hybrid it is compared with); ``first_box``
    defaults to the ground truth at frame 0. Boxes are clamped to the image as the hybrid's are."""
    bins = bins_per_frame(snn_rate_hz, aps_rate(track))
    if first_box is None:
        first_box = track.box_at(np.array([track.frame_t[0]]))[0]
    box = check_first_box(first_box, track.width, track.height)
    n = len(track.frame_t) if max_frames is None else min(max_frames, len(track.frame_t))
    boxes, times = [], []
    t0 = time.perf_counter()
    tracker.init(track.frames[0], box)
    for k in range(n):
        if k:
            box = tracker.update(track.frames[k])
        step_times = track.edges(k, bins)[1:]
        boxes.append(np.repeat(np.asarray(box, np.float64)[None], len(step_times), axis=0))
        times.append(step_times)
    seconds = time.perf_counter() - t0
    boxes_a = clamp_boxes(np.concatenate(boxes), track.width, track.height)
    times_a = np.concatenate(times)
    return TrackResult(track.name, boxes_a, times_a, track.box_at(times_a), seconds, len(times_a), n)


def baseline_runner(name: str, snn_rate_hz: float, seed: int = 0) -> Callable[[Track, int | None], TrackResult]:
    """A function (track, max_frames) → TrackResult running a fresh ``name`` baseline per sequence."""
    make_baseline(name, seed)  # fail early on an unknown name or a missing contrib build

    def run(track: Track, max_frames: int | None = None) -> TrackResult:
        return track_frames(make_baseline(name, seed), track, snn_rate_hz, max_frames=max_frames)

    return run


def _seed_c_rand(seed: int) -> None:
    """``srand(seed)`` in the C library OpenCV links (process-wide; a no-op where none is found)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(None) if hasattr(ctypes.CDLL(None), "srand") else ctypes.CDLL(ctypes.util.find_library("c"))
        libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
    except (OSError, AttributeError, TypeError):
        pass


def _bgr(frame: np.ndarray) -> np.ndarray:
    import cv2

    frame = np.ascontiguousarray(frame)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame


def _rect(box: np.ndarray) -> tuple[int, int, int, int]:
    """Integer (x, y, w, h) for OpenCV, at least 1 px wide and high."""
    x, y, w, h = box
    return int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h)))
