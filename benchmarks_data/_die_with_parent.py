"""Imported for its effect, and only in the forkserver of a build's process pool (its preload list).

Linux sends a process a chosen signal when its parent dies if it asked with
``prctl(PR_SET_PDEATHSIG)``; a SIGKILLed build cannot stop its pool, so the forkserver (a child
of the build) asks for SIGTERM here, and each worker (a child of the forkserver) asks the same in
``benchmarks_data.build._pool_worker_init``: no process of a build outlives it. Elsewhere, or
where ``prctl`` is missing, nothing happens.
"""

from __future__ import annotations

import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask for ``signum`` when this process's parent dies (Linux; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum))
    except (OSError, AttributeError):
        pass


if __name__ != "__main__" and "multiprocessing.forkserver" in sys.modules:
    die_with_parent()
