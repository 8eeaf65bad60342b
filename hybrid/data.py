"""Sequences, search crops and tracking units (the tracker's view of a sequence file).

The tracker uses the conventions of ``benchmarks_data.loaders`` (training windows come from
its ``TrackingWindows``), so training and tracking see identical inputs:

- native resolution: a search crop is S×S sensor pixels with integer origin
  ``(x0, y0) = floor(c − S/2)`` around the current centre ``c = (x + w/2, y + h/2)``;
  pixels outside the sensor are 0 (``loaders.crop_frames``); frames are intensity/255;
- frame interval k, [t_k, t_{k+1}), is cut into ``T = round(snn_rate_hz / aps_rate_hz)`` bins
  with edges ``e_b = t_k + floor(b·(t_{k+1} − t_k)/T)``; counts per (bin, polarity, y, x)
  with channel 0 = OFF, 1 = ON (``loaders.bin_events``); a box is estimated at each bin end;
- a *unit* for frame k: the frame crop, the last W bins of interval k−1 (warm-up; zeros for
  k = 0) and the T bins of interval k, all in the same crop.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from benchmarks_data.loaders import bin_events, crop_frames, interpolate_boxes
from neurosim.errors import InputError


@dataclasses.dataclass
class Track:
    """One loaded sequence: frames (F, H, W) uint8, frame_t (F,) µs, events, boxes (µs, xywh)."""

    name: str
    frames: np.ndarray
    frame_t: np.ndarray
    events: np.ndarray
    boxes_t: np.ndarray | None
    boxes_xywh: np.ndarray | None
    width: int
    height: int
    contrast: tuple[float, float] | None = None  # the ON / OFF thresholds (log intensity) that made the events, where the file says
    event_frame_hz: float | None = None  # the events were read from event frames at this rate (at most one per pixel and frame)

    def box_at(self, t: np.ndarray) -> np.ndarray:
        """Ground-truth boxes at times ``t`` (µs), interpolated as the loaders do; NaN where absent."""
        t = np.atleast_1d(np.asarray(t, np.int64))
        if self.boxes_t is None or len(self.boxes_t) == 0:
            return np.full((len(t), 4), np.nan)
        return interpolate_boxes(self.boxes_t, self.boxes_xywh, t).astype(np.float64)

    def event_times(self) -> np.ndarray:
        """The events' times (N,) int64 µs as a contiguous array, kept while ``events`` is the same
        array: ``searchsorted`` on the strided ``events["t"]`` view copies all N times per call,
        which was half the tracker's time on real sequences."""
        cached = self.__dict__.get("_event_times")
        if cached is None or cached[0] is not self.events:
            cached = (self.events, np.ascontiguousarray(self.events["t"]))
            self.__dict__["_event_times"] = cached
        return cached[1]

    def events_between(self, t0: int, t1: int) -> np.ndarray:
        """The events with t0 ≤ t < t1 (µs)."""
        lo, hi = np.searchsorted(self.event_times(), [t0, t1])
        return self.events[lo:hi]

    def event_counts(self, t0: int, t1: int) -> np.ndarray:
        """Events per pixel with t0 ≤ t < t1 (µs): (2, H, W) float32, ON (p > 0) then OFF.

        ``bin_events(ev, [t0, t1], W, H)`` gives the same counts (OFF first) but tests every event's
        bin and crop: 7.4 against 2.7 ms for the 0.62 M events of a Human7 interval."""
        ev = self.events_between(t0, t1)
        plane = self.width * self.height
        pixel = ev["y"].astype(np.intp)
        pixel *= self.width
        pixel += ev["x"]
        pixel += (ev["p"] == 0).astype(np.intp) * plane  # OFF events in the second plane
        counts = np.bincount(pixel, minlength=2 * plane)
        return counts.reshape(2, self.height, self.width).astype(np.float32)

    def from_frame(self, first: int) -> "Track":
        """This sequence from frame ``first`` on, named ``NAME@first`` (itself for 0), for a run
        that starts there (OTB's TRE); events, boxes and the event-time index are shared, since
        the tracker reads them by time."""
        if first == 0:
            return self
        sub = dataclasses.replace(self, name=f"{self.name}@{first}", frames=self.frames[first:],
                                  frame_t=self.frame_t[first:])
        if "_event_times" in self.__dict__:
            sub.__dict__["_event_times"] = self.__dict__["_event_times"]
        return sub

    def edges(self, k: int, bins: int) -> np.ndarray:
        """Bin edges (T+1,) of frame interval k (the last interval copies the previous length)."""
        ft = self.frame_t
        t_k = int(ft[k])
        dt = int(ft[k + 1] - ft[k]) if k + 1 < len(ft) else int(ft[k] - ft[k - 1])
        return t_k + (np.arange(bins + 1, dtype=np.int64) * dt) // bins


def load_track(path: str | pathlib.Path, name: str | None = None) -> Track:
    """Read a sequence ``.h5`` into a :class:`Track`: frames (F, H, W) uint8, frame_t (F,) µs,
    events (N,) x, y, t µs, p, boxes_t (B,) µs and boxes_xywh (B, 4) pixels (None without boxes).
    ``name`` defaults to the file's stem. InputError if it has fewer than 2 APS frames."""
    from sim_events.formats.sequence import read_sequence

    path = pathlib.Path(path)
    rec = read_sequence(path)
    if rec.frames is None or len(rec.frames) < 2:
        raise InputError(f"{path} has fewer than 2 APS frames: the tracker needs frames (build with an APS rate)")
    return Track(name or path.stem, rec.frames, np.asarray(rec.frame_t, np.int64), rec.events,
                 None if rec.boxes_t is None else np.asarray(rec.boxes_t, np.int64),
                 None if rec.boxes_xywh is None else np.asarray(rec.boxes_xywh, np.float32),
                 int(rec.width), int(rec.height), *event_origin(rec.attrs))


def event_origin(attrs: dict) -> tuple[tuple[float, float] | None, float | None]:
    """What a sequence file's ``simulator`` attribute says made its events: (the ON / OFF contrast
    thresholds of a simulated file, as ``neurosim data build`` and ``events simulate`` store them,
    or None; the rate of the event frames an imported recording's events were read from, or None)."""
    try:
        meta = json.loads(attrs.get("simulator", "{}"))
    except (ValueError, TypeError):
        meta = None
    if not isinstance(meta, dict):
        return None, None
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    on, off = _positive(params.get("contrast_threshold_on")), _positive(params.get("contrast_threshold_off"))
    return ((on, off) if on and off else None), _positive(meta.get("event_frame_hz"))


def _positive(value) -> float | None:
    """``value`` as a finite float > 0, else None."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) and x > 0 else None


def crop_origin(box: np.ndarray, size: int) -> tuple[int, int]:
    """Integer origin of the S×S crop centred on ``box`` (x, y, w, h)."""
    return int(np.floor(box[0] + box[2] / 2 - size / 2)), int(np.floor(box[1] + box[3] / 2 - size / 2))


def bins_per_frame(snn_rate_hz: float, aps_rate_hz: float) -> int:
    """T = max(1, round(snn_rate / aps_rate)), as in ``benchmarks_data.loaders``."""
    return max(1, int(round(snn_rate_hz / aps_rate_hz)))


def aps_rate(track: Track) -> float:
    """Frame rate (Hz) from the median frame interval."""
    return 1e6 / float(np.median(np.diff(track.frame_t)))


def make_unit(track: Track, k: int, origin: tuple[int, int], size: int, bins: int, warmup: int) -> dict[str, np.ndarray]:
    """The unit of frame k in the crop at ``origin``: frame (1,S,S) in [0,1], events (W+T,2,S,S),
    times (T,) bin ends µs."""
    x0, y0 = origin
    frame = crop_frames(track.frames[k : k + 1], x0, y0, size, size).astype(np.float32) / 255.0
    edges = track.edges(k, bins)
    if warmup and k > 0:
        prev = track.edges(k - 1, bins)[-warmup - 1 :]
        all_edges = np.concatenate([prev[:-1], edges])
        ev = bin_events(track.events_between(all_edges[0], all_edges[-1]), all_edges, size, size, x0, y0)
    else:
        ev = bin_events(track.events_between(edges[0], edges[-1]), edges, size, size, x0, y0)
        ev = np.concatenate([np.zeros((warmup, 2, size, size), np.float32), ev])
    return {"frame": frame, "events": ev, "times": edges[1:]}

