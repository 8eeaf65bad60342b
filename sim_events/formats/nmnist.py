"""N-MNIST / N-Caltech101 ``.bin`` reader (ATIS, 5 bytes per event), vectorized with numpy.

Each event is 40 bits, big-endian: x (8 bits), y (8 bits), polarity (1 bit, 1 = ON) and a
23-bit timestamp in µs. An event with y == 240 is a timestamp-overflow marker: it adds
2**13 µs to itself and every later timestamp and is not itself an event (the convention of
Orchard's eventvision.py, which tonic follows). N-MNIST's sensor is 34×34.
"""

from __future__ import annotations

import pathlib

import numpy as np

from neurosim.errors import InputError
from sim_events.formats.events import EVENT_DTYPE, Recording

NMNIST_SIZE = (34, 34)
OVERFLOW_Y = 240
OVERFLOW_US = 1 << 13


def decode_nmnist(raw: bytes | np.ndarray) -> np.ndarray:
    """Decode the bytes of an N-MNIST .bin file into EVENT_DTYPE events (N,)."""
    b = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw
    rec = b.reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    pol = rec[:, 2] >> 7
    t = ((rec[:, 2] & 127) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    overflow = y == OVERFLOW_Y
    t = t + OVERFLOW_US * np.cumsum(overflow)
    keep = ~overflow
    out = np.empty(int(keep.sum()), dtype=EVENT_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x[keep], y[keep], t[keep], pol[keep] > 0
    return out


def read_nmnist(path: str | pathlib.Path, width: int = NMNIST_SIZE[0], height: int = NMNIST_SIZE[1]) -> Recording:
    """Read an N-MNIST-format ``.bin`` file (34×34 unless told otherwise, e.g. N-Caltech101)."""
    p = pathlib.Path(path)
    raw = p.read_bytes()
    if len(raw) == 0 or len(raw) % 5:
        raise InputError(f"{p} is {len(raw)} bytes, not a whole number of 5-byte N-MNIST events: the file is truncated or not N-MNIST")
    events = decode_nmnist(raw)
    if len(events) and (events["x"].max() >= width or events["y"].max() >= height):
        raise InputError(f"{p}: events outside the {width}x{height} N-MNIST sensor: not an N-MNIST .bin file")
    if np.any(events["t"][1:] < events["t"][:-1]):
        events = events[np.argsort(events["t"], kind="stable")]
    return Recording(events=events, width=width, height=height, source=str(p), attrs={"format": "nmnist"})
