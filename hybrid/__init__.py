"""hybrid: a DashNet-style hybrid ANN–SNN tracker (``neurosim train | tune | eval | compare | track | export``).

One import for the job "train and evaluate a tracker"::

    import hybrid

    cfg = hybrid.TrainConfig(epochs=3, model=hybrid.ModelConfig(variant="full"))
    hybrid.train("synth/", "runs/full", cfg)                       # a run folder
    scores = hybrid.evaluate({"full": "runs/full"}, "synth/", "runs/eval")
    summary = hybrid.track_file("runs/full", "seq.h5", "out.mp4")  # video + boxes per SNN step

Public names (imported on first use: ``import hybrid`` loads no torch):

- :class:`TrainConfig`, :class:`ModelConfig`, :func:`train` (one run folder) and
  :func:`train_variants` (one run per variant, ``--variants``).
- :func:`fit_tracking` — fit the TCF crossover and ANN temperature by closed-loop tracking
  (``neurosim tune``).
- :func:`evaluate` — OTB scores, result files and plots of runs on a dataset split
  (``neurosim eval``); :func:`compare` and :func:`write_compare` — trackers over training
  seeds (``neurosim compare``).
- :func:`load_model`, :func:`load_track`, :func:`track_sequence` — track in Python;
  :func:`write_track_results` and :func:`track_file` — the files of ``neurosim track``.
- :func:`export_run` — a run to the integer network format (``neurosim export``).
- :class:`DCFTracker`, :class:`DCFParams` — the online target model of the ANN branch, also a
  frame tracker on its own (``hybrid.dcf``).

The model: an ANN on APS frames (``ann``), an SNN of STBP neurons on event bins
(``snn_branch``), a template/correlation head (``template``), spike attention (``attention``)
and a temporal complementary filter (``tcf``) make ``model.DashNet`` (variants ``ann_only``,
``snn_only``, ``no_tcf``, ``no_attention``, ``full``).

``hybrid.train``, ``hybrid.evaluate`` and ``hybrid.compare`` are the functions; their modules'
other names come with ``from hybrid.train import ...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurosim._lazy import attach

_LAZY = {
    "TrainConfig": "hybrid.train",
    "ModelConfig": "hybrid.model",
    "train": "hybrid.train",
    "train_variants": "hybrid.train",
    "fit_tracking": "hybrid.tune",
    "evaluate": "hybrid.evaluate",
    "compare": "hybrid.compare",
    "write_compare": "hybrid.compare",
    "load_model": "hybrid.checkpoint",
    "load_track": "hybrid.data",
    "track_sequence": "hybrid.track",
    "write_track_results": "hybrid.results",
    "track_file": "hybrid.results",
    "export_run": "hybrid.export",
    "DCFTracker": "hybrid.dcf",
    "DCFParams": "hybrid.dcf",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY)

if TYPE_CHECKING:
    from hybrid.checkpoint import load_model
    from hybrid.compare import compare, write_compare
    from hybrid.data import load_track
    from hybrid.dcf import DCFParams, DCFTracker
    from hybrid.evaluate import evaluate
    from hybrid.export import export_run
    from hybrid.model import ModelConfig
    from hybrid.results import track_file, write_track_results
    from hybrid.track import track_sequence
    from hybrid.train import TrainConfig, train, train_variants
    from hybrid.tune import fit_tracking
