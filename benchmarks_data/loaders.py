"""Torch ``Dataset`` over a dataset folder: windows of APS frames, event bins and boxes.

A *window* of ``frames_per_window = K`` starts at APS frame k of a sequence and covers the K
frame intervals [t_j, t_{j+1}), j = k .. k+K−1 (so it needs frame k+K to exist). Each
interval is cut into ``T = max(1, round(snn_rate_hz / aps_rate_hz))`` equal bins with edges
e_{j,b} = t_j + floor(b · (t_{j+1} − t_j) / T), b = 0..T. An item is a dict of tensors:

==================  ===================  ====================================================
key                 shape / dtype        meaning
==================  ===================  ====================================================
``frames``          (K, 1, H, W) f32     APS frames j = k..k+K−1, intensity / 255
``events``          (K, T, 2, H, W) f32  event counts per bin; channel 0 = OFF, 1 = ON
``boxes``           (K, T, 4) f32        target box (x, y, w, h) at the end e_{j,b+1} of each bin
``frame_boxes``     (K, 4) f32           target box at each frame time t_j
``box_valid``       (K, T) bool          box known (not NaN) at that bin
``bin_t``           (K, T) i64           end time of each bin, µs
``frame_t``         (K,) i64             frame times, µs
``offset``          (2,) i64             (x0, y0) of the crop in sensor pixels (0, 0 full frame)
``has_frames``      () bool              False for an event-only recording (frames are zeros)
``sequence``        int                  index of the sequence in ``dataset.sequences``
==================  ===================  ====================================================

Boxes at bin times are linearly interpolated from the per-input-frame boxes (NaN where
either neighbour is NaN, held constant beyond the first/last box). With ``crop=(cw, ch)``
(training) the window is cut to cw × ch pixels around the target: centre = box centre at t_k
plus a uniform jitter of ±``jitter``·(cw, ch), drawn from ``numpy.random.default_rng((seed,
epoch, index))`` so an item is reproducible; pixels outside the sensor are 0 and boxes are in
crop coordinates. With ``crop=None`` (evaluation) full frames are returned.

A sequence without APS frames (an imported event-only recording, e.g. jAER AEDAT) gets a
virtual frame clock t_k = t_first_event + round(k·10⁶ / aps_rate_hz) and zero frames.

``dataset.events(i)`` gives the raw events of window i as tonic's structured array
(x, y, t µs, p bool), so tonic transforms apply; ``dataset.sequence_events(name)`` a whole
sequence's.
"""

from __future__ import annotations

import pathlib
from typing import Any, Sequence

import numpy as np

from benchmarks_data.index import load_index
from neurosim.errors import InputError, ParameterError

try:  # torch is a hard dependency of neurosim; keep the pure functions importable without it
    import torch
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    torch = None
    _TorchDataset = object


def bin_events(events: np.ndarray, edges: np.ndarray, width: int, height: int,
               x0: int = 0, y0: int = 0) -> np.ndarray:
    """Count events into bins: (T, 2, height, width) float32, channel = polarity (0 OFF, 1 ON).

    ``edges`` (T+1,) int64 µs, increasing; event i goes to bin b with e_b ≤ t_i < e_{b+1}.
    Pixel (x − x0, y − y0) must fall inside width × height, others are dropped. Vectorized
    over the flat index ((b·2 + p)·height + y)·width + x: ``np.bincount`` when events are dense
    (≥ 1/16 of the cells), else ``np.unique`` counts scattered into zeros (no huge int64
    intermediate for full frames at high bin rates).
    """
    edges = np.asarray(edges, dtype=np.int64)
    n_bins = edges.shape[0] - 1
    out_len = n_bins * 2 * height * width
    if events.shape[0] == 0 or n_bins <= 0:
        return np.zeros((max(n_bins, 0), 2, height, width), np.float32)
    # the crop first, on the raw coordinates (a search crop keeps a few per cent of a frame's events)
    ex, ey = events["x"], events["y"]
    inside = ((ex >= max(x0, 0)) & (ex < max(x0 + width, 0)) & (ey >= max(y0, 0)) & (ey < max(y0 + height, 0)))
    events = events[inside]
    b = np.searchsorted(edges, events["t"], side="right") - 1
    keep = (b >= 0) & (b < n_bins)
    x = events["x"][keep].astype(np.int64) - x0
    y = events["y"][keep].astype(np.int64) - y0
    p = events["p"][keep].astype(np.int64)
    flat = ((b[keep] * 2 + p) * height + y) * width + x
    if flat.shape[0] * 16 >= out_len:  # dense: one bincount pass
        return np.bincount(flat, minlength=out_len).astype(np.float32).reshape(n_bins, 2, height, width)
    out = np.zeros(out_len, np.float32)  # sparse: count the occupied cells only
    cells, counts = np.unique(flat, return_counts=True)
    out[cells] = counts
    return out.reshape(n_bins, 2, height, width)


def interpolate_boxes(box_t: np.ndarray, boxes: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) given at times ``box_t`` (N,) → at times ``t`` (M,), linearly interpolated.

    b(t) = (1 − f)·b_i + f·b_{i+1} with t_i ≤ t < t_{i+1}, f = (t − t_i)/(t_{i+1} − t_i);
    exact at t = t_i (even if b_{i+1} is NaN); NaN if a used neighbour is NaN; clamped to the
    first/last box outside [t_0, t_{N−1}].
    """
    box_t = np.asarray(box_t, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float64)
    t = np.asarray(t, dtype=np.int64)
    if box_t.shape[0] == 0:
        return np.full(t.shape + (4,), np.nan, np.float32)
    i = np.clip(np.searchsorted(box_t, t, side="right") - 1, 0, box_t.shape[0] - 1)
    j = np.minimum(i + 1, box_t.shape[0] - 1)
    span = (box_t[j] - box_t[i]).astype(np.float64)
    f = np.where(span > 0, (t - box_t[i]) / np.where(span > 0, span, 1.0), 0.0)
    f = np.clip(f, 0.0, 1.0)[..., None]
    out = np.where(f == 0.0, boxes[i], (1.0 - f) * boxes[i] + f * boxes[j])
    return out.astype(np.float32)


def crop_frames(frames: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Cut (K, H, W) frames to (K, height, width) starting at (x0, y0); outside the image is 0."""
    k, h, w = frames.shape
    out = np.zeros((k, height, width), frames.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + width, w), min(y0 + height, h)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frames[:, sy0:sy1, sx0:sx1]
    return out


class _SeqMeta:
    """What a Dataset keeps in memory per sequence: times and boxes, no events or pixels."""

    def __init__(self, name: str, path: pathlib.Path, aps_rate_hz: float):
        import h5py

        self.name, self.path = name, path
        try:
            with h5py.File(path, "r") as h5:
                self.width, self.height = int(h5.attrs["width"]), int(h5.attrs["height"])
                self.frame_t = h5["frames/t"][:].astype(np.int64) if "frames/t" in h5 else np.zeros(0, np.int64)
                self.box_t = h5["boxes/t"][:].astype(np.int64) if "boxes/t" in h5 else np.zeros(0, np.int64)
                self.boxes = h5["boxes/xywh"][:].astype(np.float32) if "boxes/xywh" in h5 else np.zeros((0, 4), np.float32)
                t_ev = h5["events/t"]
                off = int(h5["t_offset"][()]) if "t_offset" in h5 else 0
                span = (int(t_ev[0]) + off, int(t_ev[t_ev.shape[0] - 1]) + off) if t_ev.shape[0] else None
        except (OSError, KeyError) as exc:
            raise InputError(f"sequence file {path} is missing or unreadable ({type(exc).__name__}): rebuild the dataset") from None
        self.has_frames = len(self.frame_t) >= 2
        if not self.has_frames and span is not None:
            # an event-only recording: a virtual frame clock at the dataset's APS rate
            step = 1e6 / aps_rate_hz
            n = int((span[1] - span[0]) // step) + 1
            self.frame_t = span[0] + np.round(np.arange(n) * step).astype(np.int64)


class TrackingWindows(_TorchDataset):
    """Windows of (APS frames, event bins, boxes) from a built dataset (see the module doc).

    ``dataset``: folder with ``index.json``; ``split``: a split name of the index (``"train"``,
    ``"test"``, ...), a list of sequence names, or None for all; ``frames_per_window`` K;
    ``snn_rate_hz``: event-bin rate; ``crop``: (cw, ch) for training crops, None for full
    frames; ``stride``: APS frames between window starts; ``jitter``: crop-centre jitter as
    a fraction of the crop size; ``seed``: crop randomness (call :meth:`set_epoch` to vary it).
    """

    def __init__(self, dataset: str | pathlib.Path, split: str | Sequence[str] | None = None,
                 frames_per_window: int = 1, snn_rate_hz: float = 1000.0, crop: tuple[int, int] | None = None,
                 stride: int = 1, jitter: float = 0.25, seed: int = 0):
        if frames_per_window < 1 or stride < 1:
            raise ParameterError(f"frames_per_window={frames_per_window} and stride={stride} must be ≥ 1")
        if snn_rate_hz <= 0:
            raise ParameterError(f"snn_rate_hz={snn_rate_hz} is impossible: give a positive rate")
        self.root = pathlib.Path(dataset)
        self.index = load_index(self.root)
        entries = {e["name"]: e for e in self.index["sequences"]}
        if split is None:
            names = sorted(entries)
        elif isinstance(split, str):
            splits = self.index.get("splits", {})
            if split not in splits:
                raise ParameterError(f"split {split!r} is not in {self.root}/index.json: choose one of {sorted(splits)}")
            names = list(splits[split])
        else:
            names = list(split)
            missing = [n for n in names if n not in entries]
            if missing:
                raise ParameterError(f"sequences {missing[:3]} are not in {self.root}/index.json")
        aps_rate = float(self.index.get("aps_rate_hz") or 30.0)
        self.sequences = [_SeqMeta(n, self.root / entries[n]["file"], aps_rate) for n in names]
        self.frames_per_window = int(frames_per_window)
        self.bins_per_frame = max(1, int(round(float(snn_rate_hz) / aps_rate)))
        self.snn_rate_hz = float(snn_rate_hz)
        self.crop = tuple(int(v) for v in crop) if crop is not None else None
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.epoch = 0
        windows = []
        for s, meta in enumerate(self.sequences):
            n_start = len(meta.frame_t) - self.frames_per_window
            for k in range(0, max(n_start, 0), int(stride)):
                windows.append((s, k))
        self.windows = np.array(windows, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Change the crop randomness (items stay reproducible for a given epoch)."""
        self.epoch = int(epoch)

    def window_span(self, i: int) -> tuple[int, int, int]:
        """(sequence index, first frame time t_k, end time t_{k+K}) of window i, µs."""
        s, k = (int(v) for v in self.windows[i])
        ft = self.sequences[s].frame_t
        return s, int(ft[k]), int(ft[k + self.frames_per_window])

    def events(self, i: int) -> np.ndarray:
        """Raw events of window i, tonic layout (x, y int16; t int64 µs; p bool)."""
        from sim_events.formats.sequence import read_sequence

        s, t0, t1 = self.window_span(i)
        return read_sequence(self.sequences[s].path, t0, t1, load_frames=False).events

    def sequence_events(self, name: str) -> np.ndarray:
        """All events of sequence ``name`` in tonic's layout."""
        from sim_events.formats.sequence import read_sequence

        meta = next((m for m in self.sequences if m.name == name), None)
        if meta is None:
            raise ParameterError(f"sequence {name!r} is not in this split")
        return read_sequence(meta.path, load_frames=False).events

    def __getitem__(self, i: int) -> dict[str, Any]:
        from sim_events.formats.sequence import read_sequence

        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        s, t0, t1 = self.window_span(i)
        meta = self.sequences[s]
        k = int(self.windows[i, 1])
        K, T = self.frames_per_window, self.bins_per_frame
        rec = read_sequence(meta.path, t0, t1, load_frames=meta.has_frames)
        frames = rec.frames if meta.has_frames else np.zeros((K, meta.height, meta.width), np.uint8)
        frame_t = meta.frame_t[k:k + K + 1]
        # bin edges: (K, T+1), e_{j,b} = t_j + floor(b (t_{j+1} - t_j) / T)
        span = np.diff(frame_t)[:, None]
        edges = frame_t[:K, None] + (np.arange(T + 1)[None, :] * span) // T
        bin_end = edges[:, 1:]
        boxes = interpolate_boxes(meta.box_t, meta.boxes, bin_end.reshape(-1)).reshape(K, T, 4)
        frame_boxes = interpolate_boxes(meta.box_t, meta.boxes, frame_t[:K])
        if self.crop is None:
            x0 = y0 = 0
            cw, ch = meta.width, meta.height
        else:
            cw, ch = self.crop
            x0, y0 = self._crop_origin(i, frame_boxes[0], meta)
            frames = crop_frames(frames, x0, y0, cw, ch)
            boxes = boxes - np.array([x0, y0, 0, 0], np.float32)
            frame_boxes = frame_boxes - np.array([x0, y0, 0, 0], np.float32)
        flat_edges = np.concatenate([edges[:, :-1].reshape(-1), edges[-1:, -1]])
        ev = bin_events(rec.events, flat_edges, cw, ch, x0, y0).reshape(K, T, 2, ch, cw)
        return {
            "frames": torch.from_numpy(frames.astype(np.float32)[:, None] / 255.0),
            "events": torch.from_numpy(ev),
            "boxes": torch.from_numpy(boxes),
            "frame_boxes": torch.from_numpy(frame_boxes),
            "box_valid": torch.from_numpy(np.isfinite(boxes).all(axis=-1)),
            "bin_t": torch.from_numpy(bin_end.astype(np.int64)),
            "frame_t": torch.from_numpy(frame_t[:K].astype(np.int64)),
            "offset": torch.tensor([x0, y0], dtype=torch.int64),
            "has_frames": torch.tensor(meta.has_frames),
            "sequence": s,
        }

    def _crop_origin(self, i: int, box: np.ndarray, meta: _SeqMeta) -> tuple[int, int]:
        cw, ch = self.crop
        rng = np.random.default_rng((self.seed, self.epoch, i))
        if np.isfinite(box).all():
            cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
        else:
            cx, cy = meta.width / 2.0, meta.height / 2.0
        jx, jy = rng.uniform(-self.jitter, self.jitter, 2) * np.array([cw, ch])
        return int(np.floor(cx + jx - cw / 2.0)), int(np.floor(cy + jy - ch / 2.0))


def dataset_folders(dataset: str | pathlib.Path | Sequence[str | pathlib.Path]) -> list[pathlib.Path]:
    """One dataset folder or a list of them, as a list of paths."""
    if isinstance(dataset, (str, pathlib.Path)):
        return [pathlib.Path(dataset)]
    return [pathlib.Path(d) for d in dataset]


class ConcatWindows(_TorchDataset):
    """The windows of several :class:`TrackingWindows` in order, as one dataset.

    Item ``i`` is item ``i − offset_d`` of part ``d``, where ``offset_d`` is the number of
    windows of the parts before it. The parts must agree on the SNN bins per APS frame, so
    every item has the same shapes. :meth:`set_epoch` reaches every part.
    """

    def __init__(self, parts: Sequence[TrackingWindows]):
        if not parts:
            raise ParameterError("no datasets: give at least one dataset folder")
        bins = {p.bins_per_frame for p in parts}
        if len(bins) > 1:
            names = ", ".join(f"{p.root} ({p.bins_per_frame})" for p in parts)
            raise ParameterError(f"the datasets have different SNN bins per APS frame: {names}: build them at one --aps-rate")
        self.parts = list(parts)
        self.bins_per_frame = parts[0].bins_per_frame
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        for p in self.parts:
            p.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        d = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[d][i - int(self.offsets[d])]
