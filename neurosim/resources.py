"""Up-front checks of memory and disk space, before a verb starts its work.

A verb estimates what it will need from its inputs and parameters (sizes, frame counts) and
calls :func:`check_memory` / :func:`check_disk` before it writes anything. An estimate that
does not fit stops the verb with one line (:class:`neurosim.errors.CapacityError`, exit 2)
naming what was needed, what is free, and how to ask for less. The estimates are lower bounds
where the real need depends on the data (an event stream's size depends on the scene), so a
refusal is certain to be right; the writers still check the space before each write
(:class:`sim_events.formats.sequence.SequenceWriter`) for what the estimate cannot know.
"""

from __future__ import annotations

import os
import pathlib
import shutil

from neurosim.errors import CapacityError

SIMULATE_BYTES_PER_PIXEL = 192
"""Peak working memory of ``events simulate`` per sensor pixel (bytes).

Measured with ``/usr/bin/time -f %M``: 641 MB at 2000x1500 and 1.89 GB at 4000x3000 over a
108 MB base at 346x260 (138-183 B/px), rounded up."""

BASE_PROCESS_BYTES = 128 * 1024 * 1024
"""Memory of the Python process before the work (interpreter, numpy, OpenCV, h5py)."""


def available_memory() -> int | None:
    """Bytes this process may still allocate, None if unknown.

    The least of: the machine's ``MemAvailable`` (Linux), the room left under a cgroup v2
    memory limit (containers, batch schedulers) and under the address-space limit
    (``ulimit -v``, measured against this process's current virtual size).
    """
    limits = [_meminfo_available(), _cgroup_room(), _address_space_room()]
    known = [v for v in limits if v is not None]
    return max(0, min(known)) if known else None


def _meminfo_available() -> int | None:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    try:
        limit = pathlib.Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(pathlib.Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def _address_space_room() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        pages = int(pathlib.Path("/proc/self/statm").read_text().split()[0])
        return soft - pages * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, IndexError):
        return None


def free_disk(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system that will hold ``path`` (its nearest existing ancestor)."""
    p = pathlib.Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _mb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def check_memory(needed: int, what: str, fix: str) -> None:
    """CapacityError when ``needed`` bytes (an estimate of peak memory) exceed what is available."""
    avail = available_memory()
    if avail is not None and needed > avail:
        raise CapacityError(f"{what} needs about {_mb(needed)} of memory but {_mb(avail)} is available: {fix}")


def check_disk(path: str | os.PathLike, needed: int, what: str, fix: str) -> None:
    """CapacityError when at least ``needed`` bytes will be written under ``path`` and do not fit."""
    free = free_disk(path)
    if free is not None and needed > free:
        raise CapacityError(f"{what} needs at least {_mb(needed)} of disk but {_mb(free)} is free for {path}: {fix}")


def simulate_needs(width: int, height: int, aps_frames: int | None) -> tuple[int, int]:
    """(peak memory, least output bytes) of simulating a ``width`` x ``height`` sensor.

    The output holds every APS frame uncompressed (``aps_frames`` x H x W bytes; 0 if the
    frame count is unknown, as for some videos) plus the events, which depend on the scene.
    """
    pixels = width * height
    return BASE_PROCESS_BYTES + SIMULATE_BYTES_PER_PIXEL * pixels, (aps_frames or 0) * pixels
