"""Real DAVIS recordings with target boxes: jAER AEDAT 2.0 / 3.1 reader, box files, import.

Trackers are evaluated on real events by turning a recording plus a box file into a sequence
file (``neurosim data import REC --boxes FILE -o seq.h5``) or adding it to a dataset folder
(``-o DIR/``: ``DIR/sequences/NAME.h5`` + ``DIR/index.json``, loadable by the torch Dataset). Readable recordings: jAER AEDAT
2.0 and 3.1 (the format of the PRED18 predator–prey DAVIS240 recordings), and everything
:func:`sim_events.formats.read_recording` reads (AEDAT4, sequence files, Prophesee .raw,
recording .npz).

**AEDAT 2.0** (jAER, DAVIS family): ``#``-comment header lines, then big-endian pairs
``(uint32 address, int32 timestamp µs)``. Address bits (jAER's DAVIS layout): bit 31 = 1 for
APS/IMU samples (skipped), bit 10 = 1 for external-input events (skipped), y = bits 22–30,
x = bits 12–21, polarity = bit 11 (1 = ON). jAER counts x and y from the bottom-right, so
x = W − 1 − x_raw and y = H − 1 − y_raw. 32-bit timestamp wrap-arounds are unwrapped.

**AEDAT 3.1** (cAER / jAER): header ending in ``#!END-HEADER``, then packets of a 28-byte
little-endian header ``(int16 type, int16 source, int32 size, int32 ts_offset,
int32 ts_overflow, int32 capacity, int32 number, int32 valid)`` and ``capacity·size`` bytes
of events. Polarity events (type 1, 8 bytes): ``uint32 data`` (bit 0 valid, bit 1 polarity,
y = bits 2–16, x = bits 17–31) and ``int32 timestamp``; t = (ts_overflow << 31) | timestamp.
Other packet types (frames, IMU, special) are skipped.

Decoding is vectorized numpy over whole files (2.0) or whole packets (3.1).

**Box files**: one box per line, ``t_us x y w h`` (0-based top-left pixels, µs on the
recording's clock), separated by commas or whitespace; ``#`` lines are comments; NaN or a
non-positive size marks the target absent.
"""

from __future__ import annotations

import pathlib
import re
import struct
from typing import Any

import numpy as np

from neurosim.errors import InputError
from neurosim.io import existing_file

SENSOR_SIZES = {"DAVIS240": (240, 180), "DAVIS346": (346, 260), "DAVIS640": (640, 480), "DVS128": (128, 128),
                "DVXPLORER": (640, 480)}
POLARITY_EVENT = 1


def read_jaer(path: str | pathlib.Path, width: int | None = None, height: int | None = None):
    """Read a jAER AEDAT 2.0 or 3.1 file into a ``sim_events.formats.Recording`` (events only).

    ``width``/``height`` override the sensor size taken from the header's chip name
    (DAVIS240 → 240×180, DAVIS346 → 346×260, ...). Raises InputError for a file that is not
    AEDAT 2/3, an unknown chip without an explicit size, or a truncated packet.
    """
    from sim_events.formats.events import Recording, make_events

    p = existing_file(path, "recording")
    raw = p.read_bytes()
    version, header, start = _header(raw, p)
    size = (int(width), int(height)) if width and height else _sensor_size(header)
    if version.startswith("2"):
        if size is None:
            raise InputError(f"{p}: unknown chip in the AEDAT 2.0 header: give the sensor size (--width/--height)")
        x, y, t, pol = decode_aedat2_davis(raw[start:], size[0], size[1])
    elif version.startswith("3"):
        x, y, t, pol = decode_aedat31_polarity(raw[start:], p)
        if size is None:
            size = (int(x.max()) + 1 if x.size else 1, int(y.max()) + 1 if y.size else 1)
    else:
        raise InputError(f"{p} is AEDAT {version}: only jAER AEDAT 2.0 and 3.1 are read here (AEDAT4 via sim_events)")
    order = np.argsort(t, kind="stable")
    x, y, t, pol = x[order], y[order], t[order], pol[order]
    inside = (x < size[0]) & (y < size[1]) & (x >= 0) & (y >= 0)
    if not inside.all():
        raise InputError(f"{p}: events outside the {size[0]}x{size[1]} sensor: give the right --width/--height")
    events = make_events(x, y, t, pol)
    return Recording(events=events, width=size[0], height=size[1], source=str(p),
                     attrs={"format": f"aedat{version}", "header": header[:4000]})


def decode_aedat2_davis(data: bytes, width: int, height: int) -> tuple[np.ndarray, ...]:
    """DVS events of AEDAT 2.0 DAVIS data (no header): x, y (int64), t (int64 µs), p (bool)."""
    n = len(data) // 8
    words = np.frombuffer(data, dtype=">u4", count=2 * n).reshape(n, 2)
    addr = words[:, 0].astype(np.int64)
    ts = words[:, 1].astype(np.int64)
    dvs = ((addr >> 31) & 1 == 0) & ((addr >> 10) & 1 == 0)
    addr, ts = addr[dvs], _unwrap32(ts)[dvs]
    x = (width - 1) - ((addr >> 12) & 0x3FF)
    y = (height - 1) - ((addr >> 22) & 0x1FF)
    pol = ((addr >> 11) & 1).astype(bool)
    return x, y, ts, pol


def decode_aedat31_polarity(data: bytes, path: Any = "") -> tuple[np.ndarray, ...]:
    """Polarity events of AEDAT 3.1 packet data (no header): x, y, t (int64 µs), p (bool)."""
    xs, ys, ts, ps = [], [], [], []
    pos, end = 0, len(data)
    while pos + 28 <= end:
        etype, _src, esize, _tsoff, overflow, capacity, number, _valid = struct.unpack_from("<hhiiiiii", data, pos)
        pos += 28
        nbytes = capacity * esize
        if esize <= 0 or capacity < 0 or pos + nbytes > end:
            raise InputError(f"AEDAT 3.1 file {path} is truncated or corrupt (packet at byte {pos - 28}): re-export it")
        if etype == POLARITY_EVENT and esize == 8 and number > 0:
            words = np.frombuffer(data, dtype="<u4", count=2 * number, offset=pos).reshape(number, 2)
            d = words[:, 0].astype(np.int64)
            valid = (d & 1) == 1
            d = d[valid]
            xs.append((d >> 17) & 0x7FFF)
            ys.append((d >> 2) & 0x7FFF)
            ps.append(((d >> 1) & 1).astype(bool))
            ts.append((np.int64(overflow) << 31) | words[valid, 1].astype(np.int64))
        pos += nbytes
    if not xs:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0, bool)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ts), np.concatenate(ps)


def read_box_file(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """``(t_us (B,) int64, xywh (B, 4) float32)`` from a box file (see the module doc)."""
    p = existing_file(path, "box file")
    rows = []
    for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines()):
        line = line.split("#")[0].strip()
        if not line:
            continue
        parts = [v for v in re.split(r"[,\s;]+", line) if v]
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise InputError(f"box file {p} line {i + 1} is not 't_us x y w h' numbers: {line[:60]!r}") from None
        if len(vals) != 5:
            raise InputError(f"box file {p} line {i + 1} has {len(vals)} values: expected 't_us x y w h'")
        rows.append(vals)
    if not rows:
        raise InputError(f"box file {p} has no boxes: write one 't_us x y w h' line per box")
    arr = np.array(rows, dtype=np.float64)
    t = np.round(arr[:, 0]).astype(np.int64)
    if np.any(np.diff(t) <= 0):
        raise InputError(f"box file {p}: times do not increase: sort the lines by time")
    xywh = arr[:, 1:].astype(np.float32)
    bad = ~np.isfinite(xywh).all(axis=1) | (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
    xywh[bad] = np.nan
    return t, xywh


def read_any_recording(path: str | pathlib.Path, width: int | None = None, height: int | None = None):
    """A Recording from jAER AEDAT 2/3.1 (this module) or any sim_events format (FE240hz, VisEvent and
    COESOT folders too)."""
    from sim_events.formats import read_recording
    from sim_events.formats.fe240hz import is_fe240hz
    from sim_events.formats.rgbe import layout

    if is_fe240hz(path) or layout(path) is not None:
        return read_recording(path)
    p = existing_file(path, "recording")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"#!AER-DAT2") or head.startswith(b"#!AER-DAT3"):
        return read_jaer(p, width, height)
    return read_recording(p)


def import_recording(recording: str | pathlib.Path, boxes: str | pathlib.Path | None, out: str | pathlib.Path,
                     width: int | None = None, height: int | None = None, chunk: int = 1 << 20) -> dict[str, Any]:
    """Write ``recording`` (+ its frames, + the boxes of ``boxes``) as a sequence file ``out``.

    Boxes from the file replace any the recording has. Raises InputError (and leaves no
    ``out``) when the recording or box file is bad or no box overlaps the sensor.
    """
    from sim_events.formats.sequence import SequenceWriter

    rec = read_any_recording(recording, width, height)
    box_t, box_xywh = (read_box_file(boxes) if boxes is not None else (rec.boxes_t, rec.boxes_xywh))
    if box_t is not None and len(box_t):
        ok = np.isfinite(box_xywh).all(axis=1)
        x, y, w, h = (box_xywh[ok, i] for i in range(4))
        overlaps = (x < rec.width) & (y < rec.height) & (x + w > 0) & (y + h > 0)
        if ok.any() and not overlaps.any():
            raise InputError(f"no box of {boxes} overlaps the {rec.width}x{rec.height} sensor: check the box file's coordinates")
    ev = rec.events
    meta = {"recording": True, "format": rec.attrs.get("format", "")}
    if rec.attrs.get("event_frame_hz"):  # events read from event frames: at most one per pixel and frame
        meta["event_frame_hz"] = float(rec.attrs["event_frame_hz"])
    with SequenceWriter(out, rec.width, rec.height, source=str(recording), simulator=meta) as w:
        for a in range(0, ev.shape[0], chunk):
            c = ev[a:a + chunk]
            w.add_events(c["x"], c["y"], c["t"], c["p"])
        if rec.frames is not None and len(rec.frames):
            w.add_frames(rec.frames, rec.frame_t, rec.frame_exposure_us)
        if box_t is not None:
            w.set_boxes(box_t, box_xywh)
    span = (int(ev["t"][0]), int(ev["t"][-1])) if ev.shape[0] else (0, 0)
    return {"out": str(out), "events": int(ev.shape[0]), "width": rec.width, "height": rec.height,
            "frames": 0 if rec.frames is None else int(len(rec.frames)),
            "boxes": 0 if box_t is None else int(len(box_t)), "t_start_us": span[0], "t_end_us": span[1]}


def sequence_name(recording: str | pathlib.Path, name: str | None = None) -> str:
    """The name a recording gets in a dataset: ``name`` or the recording's stem, made file-safe."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name or pathlib.Path(recording).stem).strip("._") or "recording"


def import_to_dataset(recording: str | pathlib.Path, boxes: str | pathlib.Path | None, dataset: str | pathlib.Path,
                      name: str | None = None, split: str = "test", aps_rate_hz: float = 30.0,
                      width: int | None = None, height: int | None = None) -> dict[str, Any]:
    """Import ``recording`` as ``dataset/sequences/NAME.h5`` and list it in ``dataset/index.json``.

    The index is created if absent (``aps_rate_hz`` then sets the frame clock used by the
    loaders for recordings without APS frames) or updated (an entry of the same name is
    replaced); the sequence is put in split ``split``. NAME defaults to the recording's stem.
    """
    from benchmarks_data import index as index_mod

    root = pathlib.Path(dataset)
    if root.exists() and not root.is_dir():
        raise InputError(f"dataset {root} is a file: give a folder, or an output name ending in .h5")
    index = index_mod.load_index(root) if (root / index_mod.INDEX_NAME).is_file() else None
    name = sequence_name(recording, name)
    seq_dir = root / "sequences"
    seq_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = import_recording(recording, boxes, seq_dir / f"{name}.h5", width, height)
    except BaseException:
        for d in (seq_dir, root):  # leave no empty folders behind
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    n_frames = result["frames"]
    from sim_events.formats.sequence import read_sequence

    seq = read_sequence(seq_dir / f"{name}.h5", load_frames=False)
    t = seq.frame_t if seq.frame_t is not None and len(seq.frame_t) else None
    fps = float(1e6 / np.median(np.diff(t))) if t is not None and len(t) > 1 else 0.0
    entry = {"name": name, "file": f"sequences/{name}.h5", "layout": "recording", "source": str(recording),
             "annotation": str(boxes) if boxes else None, "input_fps": fps, "aps_every": 1, "seed": None,
             "param_hash": None, "width": result["width"], "height": result["height"], "input_frames": n_frames,
             "aps_frames": n_frames, "events": result["events"],
             "duration_us": max(result["t_end_us"] - result["t_start_us"], 0),
             "t_start_us": result["t_start_us"], "t_end_us": result["t_end_us"]}
    if index is None:
        index = {"simulator": {"recording": True}, "aps_rate_hz": float(aps_rate_hz), "seed": None, "resize": None,
                 "sequences": [], "failed": [], "splits": {}, "split": {"list": "neurosim data import"}}
    index = {k: v for k, v in index.items() if k not in ("format", "format_version")}
    index["sequences"] = sorted([e for e in index["sequences"] if e["name"] != name] + [entry], key=lambda e: e["name"])
    splits = {k: [n for n in v if n != name] for k, v in index.get("splits", {}).items()}
    splits.setdefault(split, []).append(name)
    index["splits"] = {k: sorted(v) for k, v in splits.items()}
    index["sensor"] = index_mod.sensor_of(index["sequences"])
    index_mod.write_index(root, index)
    return {**result, "dataset": str(root), "name": name, "split": split}


def _header(raw: bytes, p: pathlib.Path) -> tuple[str, str, int]:
    if not raw.startswith(b"#!AER-DAT"):
        raise InputError(f"{p} is not a jAER AEDAT file (no '#!AER-DAT' header): check the file")
    version = raw[9:16].split(b"\r")[0].split(b"\n")[0].decode("ascii", "replace").strip()
    if version.startswith("3"):
        end = raw.find(b"#!END-HEADER")
        if end < 0:
            raise InputError(f"AEDAT 3 file {p} has no '#!END-HEADER' line: the file is truncated or corrupt")
        start = raw.index(b"\n", end) + 1
    else:
        start = 0
        while start < len(raw) and raw[start:start + 1] == b"#":
            nl = raw.find(b"\n", start)
            if nl < 0:
                raise InputError(f"AEDAT 2 file {p} has a header but no events: the file is truncated")
            start = nl + 1
    return version, raw[:start].decode("latin-1"), start


def _sensor_size(header: str) -> tuple[int, int] | None:
    up = header.upper()
    for key, size in SENSOR_SIZES.items():
        if key in up:
            return size
    return None


def _unwrap32(ts: np.ndarray) -> np.ndarray:
    """Undo 32-bit wrap-arounds of a mostly increasing int64 timestamp array."""
    if ts.shape[0] < 2:
        return ts
    ts = np.where(ts >= 1 << 31, ts - (1 << 32), ts)  # read as signed int32
    jumps = np.diff(ts) < -(1 << 31)
    return ts + np.concatenate([[0], np.cumsum(jumps)]).astype(np.int64) * (1 << 32)
