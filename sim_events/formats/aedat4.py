"""AEDAT4 (iniVation DV) reader via the ``aedat`` package: polarity events and APS frames."""

from __future__ import annotations

import pathlib

import numpy as np

from neurosim.errors import InputError
from sim_events.formats.events import EVENT_DTYPE, Recording

MAGIC = b"#!AER-DAT4.0"


def read_aedat4(path: str | pathlib.Path) -> Recording:
    """Read every polarity event and APS frame of an AEDAT4 file.

    Events keep the camera's absolute µs timestamps. Frames are converted to 8-bit grey
    (BGR/BGRA with OpenCV's BGR2GRAY weights 0.114 B + 0.587 G + 0.299 R); ``frame_t`` is the
    exposure midpoint and ``frame_exposure_us`` the exposure length. With several streams of a
    kind, the one with the lowest id is read (as tonic does); the sensor size is that of the
    event stream (else the frame stream).

    The ``aedat`` decoder runs in a child process: on some corrupt files its Rust code panics
    inside a destructor while unwinding, which aborts the whole process (uncatchable); a crashed
    child is an InputError here.
    """
    import subprocess
    import sys
    import tempfile

    p = pathlib.Path(path)
    with open(p, "rb") as fh:
        if fh.read(len(MAGIC)) != MAGIC:
            raise InputError(f"{p} is not an AEDAT4 file (no #!AER-DAT4.0 header): pass a DV .aedat4 recording")
    with tempfile.TemporaryDirectory(prefix="neurosim-aedat4-") as tmp:
        out = pathlib.Path(tmp) / "decoded.npz"
        child = subprocess.run([sys.executable, "-m", "sim_events.formats.aedat4", str(p.resolve()), str(out)],
                               capture_output=True, text=True)
        if child.returncode != 0 or not out.is_file():
            reason = (child.stderr.strip().splitlines() or [f"decoder exit code {child.returncode}"])[-1]
            if child.returncode == 2 and reason.startswith("InputError: "):
                raise InputError(reason.removeprefix("InputError: "))
            raise InputError(f"AEDAT4 file {p} is corrupt or truncated ({reason[:80]}): re-export it from DV")
        with np.load(out) as d:
            arrays = {k: d[k] for k in d.files}
    width, height = (int(v) for v in arrays["size"])
    rec = Recording(events=arrays["events"], width=width, height=height, source=str(p), attrs={"format": "aedat4"})
    if arrays["frames"].shape[0]:
        rec.frames = arrays["frames"]
        rec.frame_t = arrays["frame_t"].astype(np.int64)
        rec.frame_exposure_us = arrays["exposure"].astype(np.float64)
    return rec


def decode(p: pathlib.Path) -> dict[str, np.ndarray]:
    """The decoding itself (run in the child process by :func:`read_aedat4`): events (N,)
    EVENT_DTYPE time-sorted, frames (F, H, W) uint8, frame_t, exposure, size (width, height)."""
    import aedat

    try:
        dec = aedat.Decoder(str(p))
        streams = dec.id_to_stream()
        ev_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
        fr_ids = sorted(i for i, s in streams.items() if s.get("type") == "frame")
        ev_id = ev_ids[0] if ev_ids else None
        fr_id = fr_ids[0] if fr_ids else None
        chunks, frames, frame_t, exposure = [], [], [], []
        for packet in dec:
            if "events" in packet and packet["stream_id"] == ev_id:
                chunks.append(packet["events"])
            elif "frame" in packet and packet["stream_id"] == fr_id:
                f = packet["frame"]
                pix = np.asarray(f["pixels"])
                if pix.ndim == 3:
                    import cv2

                    code = {"BGR": cv2.COLOR_BGR2GRAY, "BGRA": cv2.COLOR_BGRA2GRAY,
                            "RGB": cv2.COLOR_RGB2GRAY, "RGBA": cv2.COLOR_RGBA2GRAY}.get(f.get("format"), cv2.COLOR_BGR2GRAY)
                    pix = cv2.cvtColor(pix, code)
                frames.append(pix.astype(np.uint8))
                b, e = int(f.get("exposure_begin_t", f["t"])), int(f.get("exposure_end_t", f["t"]))
                frame_t.append((b + e) // 2)
                exposure.append(float(e - b))
    except BaseException as exc:  # the Rust decoder panics (PanicException, a BaseException) on bad data
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise InputError(f"AEDAT4 file {p} is corrupt or truncated ({' '.join(str(exc).split())[:80]}): re-export it from DV") from None
    sizes = [(streams[i]["width"], streams[i]["height"]) for i in (ev_id, fr_id) if i is not None]
    if not sizes:
        raise InputError(f"AEDAT4 file {p} has no event or frame stream: pass a recording with DVS events")
    n = sum(len(c) for c in chunks)
    events = np.empty(n, dtype=EVENT_DTYPE)
    if n:
        raw = np.concatenate(chunks)
        names = raw.dtype.names
        pol = "on" if "on" in names else "p"
        events["x"], events["y"], events["t"], events["p"] = raw["x"], raw["y"], raw["t"].astype(np.int64), raw[pol]
        if np.any(events["t"][1:] < events["t"][:-1]):
            events = events[np.argsort(events["t"], kind="stable")]
    if len({f.shape for f in frames}) > 1:
        raise InputError(f"AEDAT4 file {p} has frames of several sizes: export one camera's frames")
    return {"events": events, "size": np.array(sizes[0], np.int64),
            "frames": np.stack(frames) if frames else np.zeros((0, 0, 0), np.uint8),
            "frame_t": np.asarray(frame_t, np.int64), "exposure": np.asarray(exposure, np.float64)}


if __name__ == "__main__":  # python -m sim_events.formats.aedat4 FILE OUT.npz (read_aedat4's child)
    import sys

    try:
        np.savez(sys.argv[2], **decode(pathlib.Path(sys.argv[1])))
    except InputError as err:
        print(f"InputError: {err}", file=sys.stderr)
        sys.exit(2)
