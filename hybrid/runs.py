"""Where trained trackers live: run folders and the model shipped with neurosim.

A run folder (written by :func:`hybrid.train`) holds ``config.json`` (the TrainConfig and its
ModelConfig), ``checkpoint.safetensors`` (weights, optimizer state) and ``metrics.jsonl``. A
shipped model is ``<name>.safetensors`` (weights only) with ``<name>.json`` beside it. This
module is light (no torch): the CLI resolves run names with it before anything heavy loads.
"""

from __future__ import annotations

import pathlib

DEFAULT_MODEL = pathlib.Path(__file__).parent / "models" / "default.safetensors"


def resolve_run(run: str | pathlib.Path) -> pathlib.Path:
    """``"default"`` → the shipped model (:data:`DEFAULT_MODEL`); otherwise ``run`` as a path."""
    return DEFAULT_MODEL if str(run) == "default" else pathlib.Path(run)
