"""Summary statistics of any supported event file (what ``neurosim events info`` prints)."""

from __future__ import annotations

import pathlib

import numpy as np

from sim_events.formats import detect_format, read_recording
from sim_events.formats.events import Recording

CHUNK = 1 << 20  # events read at a time from a sequence file


def file_info(path: str | pathlib.Path) -> dict:
    """Sensor size, time span, event count and rate, ON fraction, frames and boxes of a file.

    Keys: ``path, format, width, height, events, t_first_us, t_last_us, duration_s,
    event_rate_hz`` (events / duration), ``on_fraction``, ``frames``, ``frame_rate_hz``
    (from the median frame interval), ``exposure_us`` (median), ``boxes``,
    ``boxes_present`` (boxes that are not NaN) and, for sequence files, ``source`` and
    ``simulator``. Sequence files are scanned in chunks, so memory stays small.
    """
    kind = detect_format(path)
    if kind == "sequence":
        return _sequence_info(pathlib.Path(path))
    rec = read_recording(path)
    ev = rec.events
    n = int(ev.shape[0])
    t_first = int(ev["t"][0]) if n else None
    t_last = int(ev["t"][-1]) if n else None
    on = int(np.count_nonzero(ev["p"]))
    return _assemble(path, kind, rec.width, rec.height, n, on, t_first, t_last, rec.frame_t,
                     rec.frame_exposure_us, rec, rec.attrs)


def _sequence_info(path: pathlib.Path) -> dict:
    from sim_events.formats.sequence import SequenceReader

    with SequenceReader(path) as r:
        n = r.num_events
        on = r.count_on(CHUNK)
        t_first, t_last = r.span() if n else (None, None)
        rec = Recording(events=np.empty(0), width=r.width, height=r.height)
        if r.boxes is not None:
            rec.boxes_t, rec.boxes_xywh = r.boxes
        info = _assemble(path, "sequence", r.width, r.height, n, on, t_first, t_last, r.frame_t,
                         r.frame_exposure_us, rec, r.attrs)
        info["source"] = str(r.attrs.get("source", ""))
        info["simulator"] = str(r.attrs.get("simulator", ""))
        info["format_version"] = r.attrs.get("format_version")
    return info


def _assemble(path, kind, width, height, n, on, t_first, t_last, frame_t, exposure, rec, attrs) -> dict:
    info: dict = {"path": str(path), "format": attrs.get("format", kind) if kind != "sequence" else "sequence",
                  "width": int(width), "height": int(height), "events": n,
                  "t_first_us": t_first, "t_last_us": t_last}
    duration = (t_last - t_first) / 1e6 if n > 1 else 0.0
    info["duration_s"] = round(duration, 6)
    info["event_rate_hz"] = round(n / duration, 1) if duration > 0 else None
    info["on_fraction"] = round(on / n, 4) if n else None
    nf = 0 if frame_t is None else int(len(frame_t))
    info["frames"] = nf
    info["frame_rate_hz"] = round(1e6 / float(np.median(np.diff(frame_t))), 3) if nf > 1 else None
    info["exposure_us"] = float(np.median(exposure)) if exposure is not None and len(exposure) else None
    if rec.boxes_xywh is not None:
        info["boxes"] = int(len(rec.boxes_xywh))
        info["boxes_present"] = int(np.all(np.isfinite(rec.boxes_xywh), axis=1).sum())
    else:
        info["boxes"] = 0
        info["boxes_present"] = 0
    return info


def format_info(info: dict) -> str:
    """Human-readable lines of a :func:`file_info` dict."""
    lines = [f"{info['path']}  ({info['format']})",
             f"  sensor       {info['width']} x {info['height']}"]
    if info["events"]:
        lines += [f"  events       {info['events']:,} over {info['duration_s']:.3f} s "
                  f"({info['t_first_us']} .. {info['t_last_us']} µs)",
                  f"  event rate   {info['event_rate_hz'] or 0:,.0f} ev/s, ON fraction {info['on_fraction']:.3f}"]
    else:
        lines.append("  events       0")
    if info["frames"]:
        rate = f" at {info['frame_rate_hz']:g} Hz" if info["frame_rate_hz"] else ""
        exp = f", exposure {info['exposure_us']:g} µs" if info.get("exposure_us") is not None else ""
        lines.append(f"  frames       {info['frames']}{rate}{exp}")
    else:
        lines.append("  frames       none")
    lines.append(f"  boxes        {info['boxes']} ({info['boxes_present']} with the target present)" if info["boxes"] else "  boxes        none")
    if info.get("source"):
        lines.append(f"  source       {info['source']}")
    return "\n".join(lines)
