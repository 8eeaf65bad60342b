"""Encoders (events or frames → spike tensors) and decoders (spike/membrane sequences → values).

Events are numpy structured arrays with fields ``x, y, t, p`` (tonic's layout; ``t`` int64 µs,
``p`` 1 = ON, 0 = OFF), as read from the sequence files. Binning is vectorized
(``np.bincount``), never a Python loop over events.

Event bins: for a window ``[t_start, t_start + n_bins·bin_us)`` the event at time ``t`` lands in
bin ``⌊(t − t_start) / bin_us⌋``, channel ``0`` for OFF and ``1`` for ON (polarity channels, as
tonic's ``ToFrame``), pixel ``(y, x)``. Output (T, 2, H, W) float32 counts, or 0/1 spikes with
``binary=True``. :func:`events_to_batch` stacks several recordings to (T, B, 2, H, W).

Frames: ``rate_code`` draws Bernoulli spikes with probability = intensity ∈ [0, 1] per step;
``latency_code`` fires once at step ``round((1 − intensity)·(T − 1))`` (brighter = earlier),
not at all below ``threshold``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import torch

from neurosim.errors import InputError, ParameterError

EVENT_FIELDS = ("x", "y", "t", "p")


def check_events(events: np.ndarray, sensor_size: tuple[int, int]) -> None:
    """InputError unless ``events`` is a structured array x, y, t, p inside ``sensor_size`` (W, H)."""
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    missing = [f for f in EVENT_FIELDS if f not in names]
    if missing:
        raise InputError(f"events lack the fields {missing}: pass a structured array with x, y, t (µs), p")
    w, h = sensor_size
    if w < 1 or h < 1:
        raise ParameterError(f"sensor_size {sensor_size} must be positive (width, height)")
    if len(events) and (
        events["x"].min() < 0 or events["x"].max() >= w or events["y"].min() < 0 or events["y"].max() >= h
    ):
        raise InputError(f"events fall outside the {w}x{h} sensor: check sensor_size (width, height)")


def events_to_bins(
    events: np.ndarray, sensor_size: tuple[int, int], bin_us: int, n_bins: int,
    t_start: Optional[int] = None, binary: bool = False,
) -> np.ndarray:
    """Bin events into (n_bins, 2, H, W) float32 (counts, or 0/1 with ``binary``).

    ``sensor_size`` is (width, height); ``bin_us`` the bin length in µs; ``t_start`` defaults
    to the first event's time. Events outside the window are dropped.
    """
    if bin_us < 1 or n_bins < 1:
        raise ParameterError(f"bin_us {bin_us} and n_bins {n_bins} must be ≥ 1")
    check_events(events, sensor_size)
    w, h = sensor_size
    t = events["t"].astype(np.int64)
    t0 = int(t.min()) if (t_start is None and len(t)) else int(t_start or 0)
    b = (t - t0) // int(bin_us)
    keep = (b >= 0) & (b < n_bins)
    p = (events["p"][keep].astype(np.int64) > 0).astype(np.int64)
    idx = ((b[keep] * 2 + p) * h + events["y"][keep].astype(np.int64)) * w + events["x"][keep].astype(np.int64)
    counts = np.bincount(idx, minlength=n_bins * 2 * h * w).astype(np.float32).reshape(n_bins, 2, h, w)
    return np.minimum(counts, 1.0) if binary else counts


@dataclasses.dataclass(frozen=True)
class EventsToBins:
    """tonic-style transform: ``EventsToBins(sensor_size, bin_us, n_bins)(events)`` → (T, 2, H, W)."""

    sensor_size: tuple[int, int]
    bin_us: int
    n_bins: int
    binary: bool = True

    def __call__(self, events: np.ndarray, t_start: Optional[int] = None) -> np.ndarray:
        return events_to_bins(events, self.sensor_size, self.bin_us, self.n_bins, t_start, self.binary)


def events_to_batch(
    recordings: Sequence[np.ndarray], sensor_size: tuple[int, int], bin_us: int, n_bins: int,
    binary: bool = True, t_starts: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Several event arrays → a (T, B, 2, H, W) float32 spike tensor."""
    if not len(recordings):
        raise InputError("no event recordings given")
    starts = list(t_starts) if t_starts is not None else [None] * len(recordings)
    bins = [events_to_bins(e, sensor_size, bin_us, n_bins, s, binary) for e, s in zip(recordings, starts)]
    return torch.from_numpy(np.stack(bins, axis=1))


def _check_frames(frames: torch.Tensor) -> None:
    if not torch.is_floating_point(frames):
        raise InputError("frames must be float intensities in [0, 1]: divide uint8 frames by 255")
    if bool((frames < 0).any()) or bool((frames > 1).any()) or bool(torch.isnan(frames).any()):
        raise InputError("frame intensities must lie in [0, 1] (no NaN): normalize the frames first")


def rate_code(frames: torch.Tensor, steps: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bernoulli rate code: (B, ...) intensities in [0, 1] → (steps, B, ...) 0/1 spikes."""
    if steps < 1:
        raise ParameterError(f"steps {steps} must be ≥ 1")
    _check_frames(frames)
    probs = frames.unsqueeze(0).expand((steps,) + tuple(frames.shape))
    return torch.bernoulli(probs, generator=generator)


def latency_code(frames: torch.Tensor, steps: int, threshold: float = 0.01) -> torch.Tensor:
    """Linear latency code: one spike at step ``round((1 − x)·(steps − 1))``, none for ``x < threshold``."""
    if steps < 1:
        raise ParameterError(f"steps {steps} must be ≥ 1")
    _check_frames(frames)
    when = torch.round((1.0 - frames) * (steps - 1)).long()
    t = torch.arange(steps).reshape((steps,) + (1,) * frames.ndim)
    return ((t == when.unsqueeze(0)) & (frames >= threshold).unsqueeze(0)).to(frames.dtype)


# ------------------------------------------------------------------------------- decoders


def spike_counts(z: torch.Tensor) -> torch.Tensor:
    """Spikes per neuron over time: (T, B, ...) → (B, ...)."""
    return z.sum(0)


def spike_rates(z: torch.Tensor) -> torch.Tensor:
    """Mean firing probability per step: (T, B, ...) → (B, ...)."""
    return z.mean(0)


def membrane_readout(v: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Read a (T, B, ...) membrane sequence (LI readout): ``max`` over time, ``mean`` or ``last``."""
    if mode == "max":
        return v.max(0).values
    if mode == "mean":
        return v.mean(0)
    if mode == "last":
        return v[-1]
    raise ParameterError(f"membrane readout mode {mode!r} is unknown: use max, mean or last")


def first_spike_times(z: torch.Tensor) -> torch.Tensor:
    """Index of the first spike per neuron (T where a neuron never fires): (T, B, ...) → (B, ...)."""
    T = z.shape[0]
    t = torch.arange(T).reshape((T,) + (1,) * (z.ndim - 1)).expand_as(z)
    return torch.where(z > 0, t, torch.full_like(t, T)).min(0).values


def read_sequence_events(path, t_start_us: int, t_end_us: int) -> np.ndarray:
    """Events of a sequence file (docs/reference/formats.md) with ``t_start_us ≤ t < t_end_us``.

    Times are relative to the file's ``t_offset`` (as stored); ``ms_to_idx`` narrows the read
    to the window, so only that part of the file is loaded. Returns a structured x, y, t, p array.
    """
    import h5py

    from neurosim.io import existing_file

    p = existing_file(path, "sequence file")
    if t_end_us <= t_start_us:
        raise ParameterError(f"time window [{t_start_us}, {t_end_us}) µs is empty")
    try:
        with h5py.File(p, "r") as f:
            if "events" not in f or any(k not in f["events"] for k in EVENT_FIELDS):
                raise InputError(f"{p} has no events/x, y, t, p datasets: is it a neurosim sequence file?")
            ev = f["events"]
            n = ev["t"].shape[0]
            lo, hi = 0, n
            if "ms_to_idx" in f:
                idx = f["ms_to_idx"]
                m0, m1 = max(t_start_us // 1000, 0), t_end_us // 1000 + 1
                lo = int(idx[m0]) if m0 < idx.shape[0] else n
                hi = int(idx[m1]) if m1 < idx.shape[0] else n
            t = ev["t"][lo:hi]
            keep = np.nonzero((t >= t_start_us) & (t < t_end_us))[0]
            a, b = (int(keep[0]) + lo, int(keep[-1]) + lo + 1) if len(keep) else (lo, lo)
            out = np.zeros(b - a, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
            for name in EVENT_FIELDS:
                out[name] = ev[name][a:b]
    except OSError as exc:
        raise InputError(f"{p} is not a readable HDF5 sequence file ({exc}): check the file") from None
    return out
