"""sim_events: video → DAVIS-style data (APS frames + DVS events), formats, calibration.

The simulator (see ``README.md``):

- :func:`simulate` (``sim_events.simulator``) — a video / image folder / NFS folder / .npz
  to a sequence .h5 (events, APS frames every ``aps_every`` input frames, boxes);
  :func:`~sim_events.simulator.simulate_frames` is the streaming core.
- :class:`~sim_events.params.DvsParams` and the presets davis240, davis346, dvxplorer,
  prophesee_gen4, clean (``sim_events.params.preset``).
- ``sim_events.pixel`` — the pixel model (lin-log, mismatch, refractory, low-pass, leak,
  shot noise, hot pixels, jitter) with its C++ loop ``sim_events._dvs``;
  ``sim_events.interpolate`` — optical-flow interpolation between frames.
- ``sim_events.calibrate`` — fit DvsParams to a real recording with frames and events;
  ``sim_events.metrics`` — fidelity metrics (count ratio, pixel r, rate r, phase CV, F1).

Imports are lazy: ``import sim_events`` loads nothing heavy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["simulate"]


def simulate(*args: Any, **kwargs: Any) -> dict:
    """See :func:`sim_events.simulator.simulate` (re-exported here, imported on first use)."""
    from sim_events.simulator import simulate as _simulate

    return _simulate(*args, **kwargs)
