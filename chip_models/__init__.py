"""chip_models: a many-core neuromorphic chip model (``neurosim chip estimate | simulate | map``).

One import for the job "chip estimates"::

    import chip_models

    report = chip_models.estimate_network("reference", chip="tianjic", frames=2, seed=0)
    report.summary["fps"], report.summary["energy_per_frame_uj"]
    chip_models.write_report(report, "report.json", plot="report.png")   # + report.md

Public names (imported on first use: ``import chip_models`` loads neither the C++ kernels
nor torch):

- :func:`estimate_network`, :class:`ChipReport`, :func:`write_report` — the one-call estimate;
  :func:`simulate_network` — a bit-exact core-by-core run; :func:`prepare` — chip + network +
  mapping; :func:`load_inputs` — input arrays from an ``.npz``.
- The steps: :func:`load_chip` / :func:`presets` / :class:`ChipConfig`, :func:`load_network`
  (integer network folders, NIR graphs, ``"reference"``), :func:`map_network` (cores and
  routes), :func:`simulate` (int8 kernels, core by core) and :func:`estimate` (cycles, FPS,
  latency, energy). :class:`SimOptions` (kernel path, threads) goes to
  ``chip_models.simulate.compile(mapping, options)``, whose plan ``simulate`` runs.

``chip_models.simulate`` is the function; the module's other names come with
``from chip_models.simulate import ...``. Modules: ``config``, ``network``, ``mapper``,
``kernels`` (C++), ``simulate``, ``timing``, ``report``, ``reference_net``, ``pipeline``, ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurosim._lazy import attach

_LAZY = {
    "estimate_network": "chip_models.pipeline",
    "ChipReport": "chip_models.pipeline",
    "write_report": "chip_models.pipeline",
    "simulate_network": "chip_models.pipeline",
    "prepare": "chip_models.pipeline",
    "load_inputs": "chip_models.pipeline",
    "load_chip": "chip_models.config",
    "presets": "chip_models.config",
    "ChipConfig": "chip_models.config",
    "load_network": "chip_models.network",
    "map_network": "chip_models.mapper",
    "simulate": "chip_models.simulate",
    "SimOptions": "chip_models.simulate",
    "estimate": "chip_models.timing",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY)

if TYPE_CHECKING:
    from chip_models.config import ChipConfig, load_chip, presets
    from chip_models.mapper import map_network
    from chip_models.network import load_network
    from chip_models.pipeline import ChipReport, estimate_network, load_inputs, prepare, simulate_network, write_report
    from chip_models.simulate import SimOptions, simulate
    from chip_models.timing import estimate
