"""sim_events: video → DAVIS-style data (APS frames + DVS events), formats, calibration.

One import for the job "events from video"::

    import sim_events

    summary = sim_events.simulate("video.mp4", "seq.h5", sim_events.preset("davis346"), seed=0)
    rec = sim_events.read_recording("seq.h5")          # events (N,) x, y, t µs, p; frames (F, H, W)

Public names (imported on first use: ``import sim_events`` loads nothing heavy):

- :func:`simulate` — a video / image folder / NFS folder / ``.npz`` to a sequence ``.h5``
  (``neurosim events simulate``); :func:`simulate_frames` — the streaming core.
- :class:`DvsParams` and :func:`preset` (davis240, davis346, dvxplorer, prophesee_gen4, clean).
- :func:`calibrate` — fit DvsParams to a real recording with frames and events
  (``neurosim events calibrate``); :func:`write_params_toml` writes them for ``--config``.
- :func:`compare` — fidelity metrics of two event arrays over a window;
  :func:`compare_files` — the same from two files (``neurosim events compare``);
  :func:`meets_targets`.
- :func:`read_recording` (any supported event file), :func:`read_sequence` /
  :func:`write_sequence` (the sequence ``.h5``), :class:`Recording`, :func:`file_info`
  (``neurosim events info``), :func:`render_preview` (``neurosim events render``).

``sim_events.calibrate`` is the function; the module's other names come with
``from sim_events.calibrate import ...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurosim._lazy import attach

_LAZY = {
    "simulate": "sim_events.simulator",
    "simulate_frames": "sim_events.simulator",
    "DvsParams": "sim_events.params",
    "preset": "sim_events.params",
    "calibrate": "sim_events.calibrate",
    "write_params_toml": "sim_events.calibrate",
    "compare": "sim_events.metrics",
    "compare_files": "sim_events.metrics",
    "meets_targets": "sim_events.metrics",
    "read_recording": "sim_events.formats",
    "Recording": "sim_events.formats.events",
    "read_sequence": "sim_events.formats.sequence",
    "write_sequence": "sim_events.formats.sequence",
    "file_info": "sim_events.formats.info",
    "render_preview": "sim_events.formats.preview",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY)

if TYPE_CHECKING:
    from sim_events.calibrate import calibrate, write_params_toml
    from sim_events.formats import read_recording
    from sim_events.formats.events import Recording
    from sim_events.formats.info import file_info
    from sim_events.formats.preview import render_preview
    from sim_events.formats.sequence import read_sequence, write_sequence
    from sim_events.metrics import compare, compare_files, meets_targets
    from sim_events.params import DvsParams, preset
    from sim_events.simulator import simulate, simulate_frames
