"""benchmarks_data: event datasets for tracking (``neurosim data``).

One import for the job "datasets"::

    import benchmarks_data

    report = benchmarks_data.synth_dataset("synth/", n_sequences=8, seed=0)
    index = benchmarks_data.load_index("synth/")        # the dataset's index.json as a dict
    windows = benchmarks_data.TrackingWindows("synth/", split="train")   # a torch Dataset

Public names (imported on first use: ``import benchmarks_data`` loads neither torch nor the
simulator):

- :func:`build_dataset` — NFS / OTB / VOT folders or videos with boxes → a dataset folder
  (``neurosim data build``); :class:`BuildOptions`.
- :func:`synth_dataset` and :class:`SynthConfig` — the procedural high-speed tracking
  benchmark (``neurosim data synth``).
- :func:`import_recording` (a real recording + box file → one sequence ``.h5``) and
  :func:`import_to_dataset` (… added to a dataset folder) (``neurosim data import``).
- :func:`load_index` and :func:`dataset_info` (``neurosim data info``).
- :class:`TrackingWindows` — the torch Dataset of training windows (needs ``neurosim[train]``).

Modules: ``layouts`` (sequence discovery), ``build``, ``synth``, ``index``, ``loaders``,
``recordings``, ``info``, ``cli``, ``demo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurosim._lazy import attach

_LAZY = {
    "build_dataset": "benchmarks_data.build",
    "BuildOptions": "benchmarks_data.build",
    "synth_dataset": "benchmarks_data.synth",
    "SynthConfig": "benchmarks_data.synth",
    "import_recording": "benchmarks_data.recordings",
    "import_to_dataset": "benchmarks_data.recordings",
    "load_index": "benchmarks_data.index",
    "dataset_info": "benchmarks_data.info",
    "TrackingWindows": "benchmarks_data.loaders",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY)

if TYPE_CHECKING:
    from benchmarks_data.build import BuildOptions, build_dataset
    from benchmarks_data.index import load_index
    from benchmarks_data.info import dataset_info
    from benchmarks_data.loaders import TrackingWindows
    from benchmarks_data.recordings import import_recording, import_to_dataset
    from benchmarks_data.synth import SynthConfig, synth_dataset
