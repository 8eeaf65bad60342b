"""The neurosim sequence file (HDF5): frames + DVS events + target boxes, one sequence a file.

Layout (docs/reference/formats.md; the events group follows DSEC so DSEC readers work):

- ``events/x``, ``events/y`` uint16; ``events/t`` int64 µs, sorted, relative to ``t_offset``;
  ``events/p`` uint8 (1 = ON, 0 = OFF); ``t_offset`` int64 µs (absolute time = t + t_offset);
  ``ms_to_idx`` uint64: ``ms_to_idx[k]`` is the index of the first event with
  ``t >= k * 1000`` (relative), for k = 0 .. floor(t_last / 1000) + 1 (the last entry is the
  event count, so ``ms_to_idx[k + 1]`` ends millisecond k).
- ``frames/data`` uint8 (N, H, W); ``frames/t`` int64 µs absolute (exposure midpoint);
  optional ``frames/exposure_us`` float64.
- ``boxes/t`` int64 µs absolute; ``boxes/xywh`` float32 (0-based top-left x, y, w, h; NaN
  where the target is absent).
- root attributes ``width``, ``height``, ``format_version``, ``source``, ``simulator`` (JSON,
  the full parameter set with the seed), ``neurosim_version``.

Datasets are chunked, shuffled and compressed and grow as data arrives; the writer keeps at
most ``buffer_events`` events in memory, so memory does not grow with the sequence length.
The file is written under a temporary name and renamed only when the writer closes without
an error (``neurosim.io.atomic_output``). Same calls, same bytes: the file's layout does not
depend on when Python frees h5py objects (see ``SequenceWriter._ds``).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from neurosim.errors import InputError, ParameterError
from neurosim.io import atomic_output
from sim_events.formats.events import EVENT_DTYPE, Recording

FORMAT_VERSION = 1
EVENT_CHUNK = 1 << 16  # events per HDF5 chunk
Sequence = Recording  # what read_sequence returns (events, frames, frame_t, boxes, attrs, ...)


def _json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if isinstance(obj, pathlib.Path):
            return str(obj)
        import dataclasses

        if dataclasses.is_dataclass(obj):
            return dataclasses.asdict(obj)
        raise TypeError(f"not JSON serializable: {type(obj).__name__}")

    return json.dumps(value, sort_keys=True, default=default)


SPACE_MARGIN = 256 * 1024  # bytes kept free for HDF5's metadata and the final flush


class SequenceWriter:
    """Stream frames, events and boxes into a sequence file; use as a context manager.

    ``SequenceWriter(path, width, height, source="", simulator={})``: ``simulator`` is the
    parameter set (with the seed) stored as JSON in the root attribute ``simulator``.
    ``add_events(x, y, t, p)`` takes one time-sorted chunk (t absolute int64 µs, each chunk
    starting at or after the previous one's last event; p truthy = ON),
    ``add_frames(frames (n, H, W) uint8, t (n,) µs, exposure_us=None)``,
    ``set_boxes(t (B,) µs, xywh (B, 4))``. Leaving the ``with`` block normally renames the
    temporary file to ``path``; an exception deletes it.

    ``compression``: "gzip" (level 1, with shuffle; the default, readable everywhere), "lzf"
    (h5py only) or None, for events. APS frames are stored uncompressed, one chunk per frame:
    gzip saved only ~17 % on them and cost a third of a simulation's time. ``buffer_events``: events gathered before a write (bounds memory).
    Raises ParameterError for out-of-order or malformed input, OutputError when ``path``
    cannot be written.
    """

    def __init__(
        self, path: str | pathlib.Path, width: int, height: int, source: str = "",
        simulator: dict | None = None, compression: str = "gzip", buffer_events: int = 1 << 18,
    ):
        import h5py

        from neurosim import __version__

        if int(width) <= 0 or int(height) <= 0:
            raise ParameterError(f"sequence size {width}x{height} is impossible: give a positive width and height")
        if compression not in ("gzip", "lzf", None):
            raise ParameterError(f"compression {compression!r} is unknown: use 'gzip', 'lzf' or None")
        self.path = pathlib.Path(path)
        self.width, self.height = int(width), int(height)
        self._comp = {"compression": compression, "shuffle": compression is not None}
        if compression == "gzip":
            self._comp["compression_opts"] = 1
        self._buffer_events = int(buffer_events)
        # Every dataset this writer fills, held open from creation to close() and written only
        # through these handles. HDF5 gives a cached chunk its place in the file when the chunk
        # leaves the dataset's cache, which also happens when the dataset's *last* open handle
        # closes; h5py closes a handle when its Python object is freed, and that moment is not
        # ours: a sampling profiler (Dask's worker samples the task thread's frames every 10 ms)
        # or a debugger holding a frame keeps its h5py objects alive. Chunks then landed in
        # another order and the same events gave different file bytes (a Dask-built dataset
        # differed from the single-process build under load). With our handles open, chunks
        # reach the file only on cache eviction (same calls, same order) and in close(), which
        # flushes these datasets one by one in creation order.
        self._ds: dict[str, Any] = {}
        self._atomic = atomic_output(self.path)
        self._tmp = self._atomic.__enter__()
        self._closed = False
        try:
            self._h5 = h5py.File(self._tmp, "w")
            a = self._h5.attrs
            a["width"], a["height"] = self.width, self.height
            a["format_version"] = FORMAT_VERSION
            a["source"] = str(source)
            a["simulator"] = _json(simulator or {})
            a["neurosim_version"] = __version__
            ev = self._h5.create_group("events")
            for name, dtype in (("x", np.uint16), ("y", np.uint16), ("t", np.int64), ("p", np.uint8)):
                self._ds[f"events/{name}"] = ev.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                                               chunks=(EVENT_CHUNK,), **self._comp)
            self._ms = self._ds["ms_to_idx"] = self._h5.create_dataset(
                "ms_to_idx", shape=(0,), maxshape=(None,), dtype=np.uint64, chunks=(4096,), **self._comp)
        except BaseException as exc:
            self._abort(exc)
            raise
        self._t_offset: int | None = None
        self._last_t: int | None = None
        self._n_written = 0  # events in the file
        self._n_ms = 0  # ms_to_idx entries in the file
        self._buf: list[tuple[np.ndarray, ...]] = []
        self._n_buf = 0
        self._last_frame_t: int | None = None
        self._n_frames = 0
        self._has_exposure: bool | None = None

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> "SequenceWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort(exc)

    @property
    def num_events(self) -> int:
        """Events added so far (written or buffered)."""
        return self._n_written + self._n_buf

    @property
    def num_frames(self) -> int:
        """Frames added so far."""
        return self._n_frames

    @property
    def buffered_events(self) -> int:
        """Events held in memory, waiting to be written (never more than ``buffer_events``)."""
        return self._n_buf

    # ---------------------------------------------------------------- events
    def add_events(self, x: Any, y: Any, t: Any, p: Any) -> None:
        """Append one chunk of events: x, y pixels, t absolute int64 µs (sorted), p truthy = ON."""
        t = np.asarray(t)
        n = t.shape[0]
        x, y, p = np.asarray(x), np.asarray(y), np.asarray(p)
        if t.ndim != 1 or x.shape != (n,) or y.shape != (n,) or p.shape != (n,):
            raise ParameterError(f"add_events needs equal-length 1-D x, y, t, p; got shapes {x.shape}, {y.shape}, {t.shape}, {p.shape}")
        if n == 0:
            return
        if t.dtype.kind not in "iu":
            raise ParameterError(f"event times must be integer µs (int64), got dtype {t.dtype}")
        t = t.astype(np.int64, copy=False)
        if n > 1 and np.any(t[1:] < t[:-1]):
            raise ParameterError("event chunk is not sorted by time: sort each chunk by t before add_events")
        if self._last_t is not None and t[0] < self._last_t:
            raise ParameterError(
                f"event chunk starts at {int(t[0])} µs, before the previous chunk's last event at "
                f"{self._last_t} µs: add chunks in time order")
        if np.any((x < 0) | (x >= self.width) | (y < 0) | (y >= self.height)):
            raise ParameterError(f"event coordinates outside the {self.width}x{self.height} sensor: check x, y")
        if self._t_offset is None:
            self._t_offset = int(t[0])
            self._h5.create_dataset("t_offset", data=np.int64(self._t_offset))
        self._last_t = int(t[-1])
        self._buf.append((x.astype(np.uint16), y.astype(np.uint16), t - self._t_offset, (p > 0).astype(np.uint8)))
        self._n_buf += n
        if self._n_buf >= self._buffer_events:
            self._flush()

    def _ensure_space(self, nbytes: int) -> None:
        """OSError(ENOSPC) unless the file system has room for ``nbytes`` more (uncompressed, so
        an upper bound) plus a margin for HDF5's metadata. HDF5 cannot recover from a failed
        write (closing the file afterwards crashed the process), so a full disk must be caught
        before HDF5 sees it; the writer then closes cleanly and the temporary file is deleted."""
        import errno
        import shutil

        free = shutil.disk_usage(self._tmp.parent).free
        if free < nbytes + SPACE_MARGIN:
            raise OSError(errno.ENOSPC, f"No space left on device ({free / 1e6:.1f} MB free, up to "
                          f"{(nbytes + SPACE_MARGIN) / 1e6:.1f} MB needed for the next write)", str(self.path))

    def _flush(self) -> None:
        """Write the buffered events and the ms_to_idx entries they complete."""
        if not self._buf:
            return
        self._ensure_space(self._n_buf * 13)  # x, y uint16 + t int64 + p uint8 per event
        cols = [np.concatenate([c[i] for c in self._buf]) for i in range(4)]
        self._buf, n = [], self._n_buf
        self._n_buf = 0
        start = self._n_written
        for name, col in zip("xytp", cols):
            ds = self._ds[f"events/{name}"]
            ds.resize((start + n,))
            ds[start:] = col
        self._n_written = start + n
        t_rel = cols[2]
        # entries k whose first event at/after k ms is now known: k * 1000 <= last event
        last_ms = int(t_rel[-1]) // 1000
        if last_ms >= self._n_ms:
            ks = np.arange(self._n_ms, last_ms + 1, dtype=np.int64)
            idx = start + np.searchsorted(t_rel, ks * 1000, side="left")
            self._append_ms(idx)

    def _append_ms(self, idx: np.ndarray) -> None:
        k0 = self._n_ms
        self._ms.resize((k0 + idx.shape[0],))
        self._ms[k0:] = idx.astype(np.uint64)
        self._n_ms = k0 + idx.shape[0]

    # ---------------------------------------------------------------- frames and boxes
    def add_frames(self, frames: Any, t: Any, exposure_us: Any = None) -> None:
        """Append APS frames (n, H, W) uint8 with times t (n,) int64 µs (exposure midpoint)."""
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        t = np.atleast_1d(np.asarray(t))
        n = frames.shape[0]
        if frames.shape[1:] != (self.height, self.width):
            raise ParameterError(f"frames of shape {frames.shape[1:]} do not match the sequence's {self.height}x{self.width} (H x W)")
        if frames.dtype != np.uint8:
            raise ParameterError(f"frames must be uint8, got {frames.dtype}: convert them first")
        if t.shape != (n,) or t.dtype.kind not in "iu":
            raise ParameterError(f"frame times must be {n} integer µs values, got shape {t.shape} dtype {t.dtype}")
        if n == 0:
            return
        t = t.astype(np.int64)
        prev = np.concatenate([[self._last_frame_t], t[:-1]]) if self._last_frame_t is not None else t[:-1]
        cur = t if self._last_frame_t is not None else t[1:]
        if np.any(cur <= prev):
            raise ParameterError("frame times do not increase: give each frame a later time than the one before")
        has_exp = exposure_us is not None
        if self._has_exposure is None:
            self._has_exposure = has_exp
            g = self._h5.create_group("frames")
            self._ds["frames/data"] = g.create_dataset(
                "data", shape=(0, self.height, self.width), maxshape=(None, self.height, self.width),
                dtype=np.uint8, chunks=(1, self.height, self.width))
            self._ds["frames/t"] = g.create_dataset("t", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
            if has_exp:
                self._ds["frames/exposure_us"] = g.create_dataset(
                    "exposure_us", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        elif self._has_exposure != has_exp:
            raise ParameterError("give exposure_us for every add_frames call or for none")
        self._ensure_space(frames.nbytes + 16 * n)
        k = self._n_frames
        items = [("data", frames), ("t", t)]
        if has_exp:
            exp = np.broadcast_to(np.asarray(exposure_us, dtype=np.float64), (n,))
            items.append(("exposure_us", exp))
        for name, arr in items:
            ds = self._ds[f"frames/{name}"]
            ds.resize((k + n,) + ds.shape[1:])
            ds[k:] = arr
        self._n_frames = k + n
        self._last_frame_t = int(t[-1])

    def set_boxes(self, t: Any, xywh: Any) -> None:
        """Store the target's boxes: t (B,) int64 µs, xywh (B, 4) float (NaN = absent)."""
        t = np.asarray(t)
        xywh = np.asarray(xywh, dtype=np.float32)
        if t.ndim != 1 or xywh.shape != (t.shape[0], 4) or (t.size and t.dtype.kind not in "iu"):
            raise ParameterError(f"boxes need t (B,) integer µs and xywh (B, 4); got {t.shape} and {xywh.shape}")
        if "boxes" in self._h5:
            del self._h5["boxes"]
        g = self._h5.create_group("boxes")
        g.create_dataset("t", data=t.astype(np.int64))
        g.create_dataset("xywh", data=xywh)

    # ---------------------------------------------------------------- finishing
    def close(self) -> pathlib.Path:
        """Write what is buffered, finish ms_to_idx, and rename the file to its final name."""
        if self._closed:
            return self.path
        try:
            self._flush()
            if self._t_offset is None:
                self._h5.create_dataset("t_offset", data=np.int64(0))
            self._append_ms(np.array([self._n_written], dtype=np.int64))  # end sentinel
            self._h5.attrs["num_events"] = self._n_written
            for ds in self._ds.values():  # cached chunks to the file in a fixed order (see self._ds)
                ds.flush()
            self._ds.clear()
            self._ms = None
            self._h5.close()
        except BaseException as exc:
            self._abort(exc)
            raise
        self._closed = True
        self._atomic.__exit__(None, None, None)
        return self.path

    def _abort(self, exc: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._ds.clear()
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            try:
                h5.close()
            except Exception:
                pass
        err = exc if exc is not None else RuntimeError("sequence writer aborted")
        try:
            self._atomic.__exit__(type(err), err, None)
        except BaseException:
            pass


def write_sequence(path: str | pathlib.Path, rec: Recording, source: str = "", simulator: dict | None = None) -> pathlib.Path:
    """Write a whole in-memory Recording as a sequence ``.h5`` (convenience for small data):
    events (N,) x, y, t µs, p; frames (F, H, W) uint8 at frame_t (F,) µs; boxes (B, 4) pixels at
    boxes_t (B,) µs. ``simulator``: parameters stored in the file's metadata. Returns the path."""
    with SequenceWriter(path, rec.width, rec.height, source=source or rec.source, simulator=simulator) as w:
        ev = rec.events
        if ev.shape[0]:
            w.add_events(ev["x"], ev["y"], ev["t"], ev["p"])
        if rec.frames is not None and len(rec.frames):
            w.add_frames(rec.frames, rec.frame_t, rec.frame_exposure_us)
        if rec.boxes_t is not None:
            w.set_boxes(rec.boxes_t, rec.boxes_xywh)
    return pathlib.Path(path)


def _open(path: str | pathlib.Path):
    import h5py

    from neurosim.io import existing_file

    p = existing_file(path, "sequence file")
    try:
        # a 32 MB chunk cache keeps the decompressed chunks of consecutive windows
        h5 = h5py.File(p, "r", rdcc_nbytes=32 << 20, rdcc_nslots=10007)
    except OSError:
        raise InputError(f"sequence file {p} is not a readable HDF5 file (corrupt or truncated?): re-create it with neurosim events simulate") from None
    try:
        for key in ("events/x", "events/y", "events/t", "events/p", "t_offset", "ms_to_idx"):
            if key not in h5:
                raise InputError(f"{p} is not a neurosim/DSEC sequence file (no {key}): pass a file written by neurosim events simulate")
    except BaseException:
        h5.close()
        raise
    return h5


def _size(h5: Any, p: Any) -> tuple[int, int]:
    a = h5.attrs
    if "width" in a and "height" in a:
        return int(a["width"]), int(a["height"])
    if "frames/data" in h5:
        _, hh, ww = h5["frames/data"].shape
        return int(ww), int(hh)
    n = h5["events/x"].shape[0]
    if n:  # a DSEC file: no size attributes; the sensor spans the largest coordinates seen
        return int(h5["events/x"][:].max()) + 1, int(h5["events/y"][:].max()) + 1
    raise InputError(f"{p} has no width/height attributes and no events: add root attributes width, height")


class SequenceReader:
    """An open sequence file for windowed access: ``events(t0, t1)``, ``frame(i)``, ...

    ``with SequenceReader(path) as r:`` — ``r.width``, ``r.height``, ``r.t_offset``,
    ``r.num_events``, ``r.frame_t`` (absolute µs or None), ``r.boxes`` ((t, xywh) or None),
    ``r.attrs``. Raises InputError for a missing, corrupt or non-sequence file.
    """

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self._h5 = _open(self.path)
        try:
            h5 = self._h5
            self.width, self.height = _size(h5, self.path)
            self.t_offset = int(h5["t_offset"][()])
            self._ev = {name: h5["events"][name] for name in "xytp"}
            self._frames = h5["frames/data"] if "frames/data" in h5 else None
            self._ms = h5["ms_to_idx"][:]
            self.num_events = int(self._ev["t"].shape[0])
            self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in h5.attrs.items()}
            self.attrs["t_offset"] = self.t_offset
            self.frame_t = h5["frames/t"][:] if "frames/t" in h5 else None
            self.frame_exposure_us = h5["frames/exposure_us"][:] if "frames/exposure_us" in h5 else None
            self.boxes = (h5["boxes/t"][:], h5["boxes/xywh"][:].astype(np.float32)) if "boxes/t" in h5 else None
        except InputError:
            self.close()
            raise
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            self.close()
            raise InputError(f"sequence file {self.path} is corrupt or truncated ({type(exc).__name__}): re-create it") from None

    def __enter__(self) -> "SequenceReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 file."""
        self._h5.close()

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise InputError(f"sequence file {self.path} is corrupt or truncated ({type(exc).__name__}): re-create it") from None

    def span(self) -> tuple[int, int]:
        """(first, last) event time in absolute µs ((t_offset, t_offset) without events)."""
        if self.num_events == 0:
            return self.t_offset, self.t_offset
        t = self._ev["t"]
        return self._guard(lambda: (int(t[0]) + self.t_offset, int(t[self.num_events - 1]) + self.t_offset))

    def index_range(self, t0: int | None, t1: int | None) -> tuple[int, int]:
        """Event index range [lo, hi) of the window t0 <= t < t1 (absolute µs), from ms_to_idx
        then refined on the few events of the boundary milliseconds."""
        return self._guard(self._index_range, t0, t1)

    def _index_range(self, t0: int | None, t1: int | None) -> tuple[int, int]:
        n, ms = self.num_events, self._ms
        lo, hi = 0, n
        n_ms = ms.shape[0]
        if n_ms:
            if t0 is not None:
                lo = int(ms[min(max((t0 - self.t_offset) // 1000, 0), n_ms - 1)])
            if t1 is not None:
                k = -(-(t1 - self.t_offset) // 1000)
                hi = n if k >= n_ms else int(ms[max(k, 0)])
        hi = max(hi, lo)
        t = self._ev["t"]
        if t0 is not None and lo < hi:
            end = min(hi, int(ms[min(max((t0 - self.t_offset) // 1000 + 1, 0), n_ms - 1)]) if n_ms else hi)
            end = max(end, lo)
            lo += int(np.searchsorted(t[lo:end], t0 - self.t_offset, "left")) if end > lo else 0
        if t1 is not None and lo < hi:
            k = (t1 - self.t_offset) // 1000
            start = max(lo, int(ms[min(max(k, 0), n_ms - 1)])) if n_ms else lo
            start = min(start, hi)
            hi = start + int(np.searchsorted(t[start:hi], t1 - self.t_offset, "left"))
        return lo, hi

    def count_on(self, chunk: int = 1 << 20) -> int:
        """Number of ON events, scanning ``events/p`` ``chunk`` events at a time."""
        p, n = self._ev["p"], self.num_events
        return sum(int(np.count_nonzero(self._guard(lambda a=a: p[a:min(a + chunk, n)]))) for a in range(0, n, chunk))

    def events(self, t0: int | None = None, t1: int | None = None) -> np.ndarray:
        """Events with t0 <= t < t1 (absolute µs) in tonic's layout (absolute times)."""
        lo, hi = self.index_range(t0, t1)
        return self._guard(self._read, lo, hi)

    def _read(self, lo: int, hi: int) -> np.ndarray:
        out = np.empty(hi - lo, dtype=EVENT_DTYPE)
        out["t"] = self._ev["t"][lo:hi] + self.t_offset
        out["x"] = self._ev["x"][lo:hi]
        out["y"] = self._ev["y"][lo:hi]
        out["p"] = self._ev["p"][lo:hi] > 0
        return out

    def frames(self, sel: slice | np.ndarray | int = slice(None)) -> np.ndarray:
        """APS frames (uint8) selected by index or slice."""
        if self.frame_t is None:
            raise InputError(f"sequence file {self.path} has no frames")
        return self._guard(lambda: self._frames[sel])


def read_sequence(path: str | pathlib.Path, t0: int | None = None, t1: int | None = None,
                  load_frames: bool = True) -> Recording:
    """Read a sequence file, optionally only the window ``t0 <= t < t1`` (absolute µs).

    Events come back in tonic's layout (absolute µs, p bool); ``ms_to_idx`` bounds the slice
    read from disk, so a short window of a long file reads only that window. Frames and boxes
    are restricted to the same window; ``load_frames=False`` skips the frame data.
    Raises InputError for a missing, corrupt, truncated or non-sequence file.
    """
    with SequenceReader(path) as r:
        rec = Recording(events=r.events(t0, t1), width=r.width, height=r.height,
                        source=str(r.attrs.get("source", "")), attrs=r.attrs)
        if r.frame_t is not None:
            sel = _window(r.frame_t, t0, t1)
            rec.frame_t = r.frame_t[sel]
            if load_frames:
                rec.frames = r.frames(sel)
            if r.frame_exposure_us is not None:
                rec.frame_exposure_us = r.frame_exposure_us[sel]
        if r.boxes is not None:
            sel = _window(r.boxes[0], t0, t1)
            rec.boxes_t, rec.boxes_xywh = r.boxes[0][sel], r.boxes[1][sel]
    return rec


def _window(t: np.ndarray, t0: int | None, t1: int | None) -> slice:
    a = int(np.searchsorted(t, t0, "left")) if t0 is not None else 0
    b = int(np.searchsorted(t, t1, "left")) if t1 is not None else t.shape[0]
    return slice(a, b)
