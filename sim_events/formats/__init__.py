"""Event file formats: read any supported recording into tonic's event layout.

Supported (chosen by content, then extension):

=====================  ================================================  =====================
format                 detected by                                       gives
=====================  ================================================  =====================
sequence (.h5/.hdf5)   HDF5 signature                                    events, frames, boxes
AEDAT4 (.aedat4)       ``#!AER-DAT4.0`` header (``aedat`` package)        events, frames
Prophesee .raw         ``% evt 2.0/3.0`` header (``expelliarmus``)        events (EVT2, EVT3)
N-MNIST (.bin)         extension .bin, size a multiple of 5 bytes         events (34×34)
recording (.npz)       zip signature / .npz                              events, frames
FE240hz folder         ``img/`` + ``stack240/``                           frames, events, boxes
FE108 folder           ``img/`` + ``events.aedat4``                       frames, events, boxes
VisEvent/COESOT folder ``groundtruth.txt`` + ``vis_imgs/`` or ``NAME_aps/``  frames, events, boxes
=====================  ================================================  =====================

FE240hz folders hold real DAVIS346 APS frames and 240 Hz *event frames*; their events are
read back one per marked pixel and window (``sim_events.formats.fe240hz``). An FE108 folder
with its raw ``events.aedat4`` gives the recording's own events and frame times instead. VisEvent and
COESOT folders give the raw ``.aedat4``'s events where present, else their event images
(``sim_events.formats.rgbe``).

Events are a structured array ``x, y`` int16, ``t`` int64 µs (absolute), ``p`` bool (ON =
True) — tonic's layout: ``tonic.transforms.ToFrame(sensor_size=(W, H, 2), ...)`` applies.
"""

from __future__ import annotations

import pathlib

import numpy as np

from neurosim.errors import InputError
from neurosim.io import existing_file
from sim_events.formats.events import EVENT_DTYPE, Recording, make_events, to_tonic
from sim_events.formats.recording import load_recording_npz

__all__ = ["EVENT_DTYPE", "Recording", "make_events", "to_tonic", "load_recording_npz",
           "read_recording", "read_events", "detect_format"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


def detect_format(path: str | pathlib.Path) -> str:
    """Name of the format of ``path``: sequence, aedat4, prophesee, nmnist, npz, or a folder: fe240hz (its
    event frames), fe108 (its raw recording), rgbe.

    Raises InputError for a missing file or one of no supported kind.
    """
    from sim_events.formats.fe240hz import has_raw_recording, is_fe240hz
    from sim_events.formats.rgbe import layout

    if is_fe240hz(path):
        return "fe108" if has_raw_recording(path) else "fe240hz"
    if layout(path) is not None:
        return "rgbe"
    p = existing_file(path, "event file")
    with open(p, "rb") as fh:
        head = fh.read(64)
    suffix = p.suffix.lower()
    if head.startswith(HDF5_MAGIC):
        return "sequence"
    if head.startswith(b"#!AER-DAT4"):
        return "aedat4"
    if head.startswith(b"#!AER-DAT"):
        raise InputError(f"{p} is AEDAT 2/3, which is not supported: convert it to AEDAT4 with DV")
    if head.startswith(b"%") and suffix in (".raw", ".dat", ""):
        if suffix == ".dat":
            raise InputError(f"{p} is a Prophesee .dat file, which is not supported: convert it to EVT3 .raw")
        return "prophesee"
    if head.startswith(ZIP_MAGIC) or suffix == ".npz":
        return "npz"
    if suffix == ".bin":
        return "nmnist"
    if suffix in (".h5", ".hdf5", ".aedat4", ".raw"):
        raise InputError(f"{p} does not start like a {suffix} file (corrupt or truncated?): check the file")
    raise InputError(f"{p} is not a supported event file (.h5 sequence, .aedat4, Prophesee .raw, N-MNIST .bin, .npz): convert it first")


def read_recording(path: str | pathlib.Path) -> Recording:
    """Read events (and frames and boxes where the format has them) from any supported file."""
    kind = detect_format(path)
    if kind == "sequence":
        from sim_events.formats.sequence import read_sequence

        return read_sequence(path)
    if kind == "aedat4":
        from sim_events.formats.aedat4 import read_aedat4

        return read_aedat4(path)
    if kind == "prophesee":
        from sim_events.formats.prophesee import read_prophesee_raw

        return read_prophesee_raw(path)
    if kind in ("fe240hz", "fe108"):
        from sim_events.formats.fe240hz import read_fe240hz

        return read_fe240hz(path)
    if kind == "rgbe":
        from sim_events.formats.rgbe import read_rgbe

        return read_rgbe(path)
    if kind == "nmnist":
        from sim_events.formats.nmnist import read_nmnist

        return read_nmnist(path)
    return load_recording_npz(path)


def read_events(path: str | pathlib.Path) -> tuple[np.ndarray, int, int]:
    """``(events, width, height)`` of any supported file; events in tonic's layout (absolute µs)."""
    rec = read_recording(path)
    return rec.events, rec.width, rec.height
