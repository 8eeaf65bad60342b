"""The ``hybrid`` stage of ``neurosim demo``: shipped tracker → evaluation → integer export.

Uses the demo dataset of the ``benchmarks_data`` stage. The shipped model
(``hybrid/models/default``) is evaluated on its test split together with its own branches
alone (``ann_only`` / ``snn_only`` views of the same weights) and two frame-tracker baselines
(a never-moving box, OpenCV CSRT; ``hybrid.baselines``); with ``train_batches > 0`` it
is first fine-tuned for that many batches on the demo's training split. The tracker is then
exported to ``outdir/hybrid/intnet`` for the chip stage (key ``"intnet"``).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

from hybrid.cli import DEFAULT_MODEL

TRAIN_BATCHES = 0


def run(outdir: pathlib.Path, summary: dict, say: Callable[..., None], seed: int = 0,
        train_batches: int = TRAIN_BATCHES) -> dict:
    from hybrid.evaluate import evaluate
    from hybrid.export import export_run

    out = pathlib.Path(outdir) / "hybrid"
    out.mkdir(parents=True, exist_ok=True)
    data_stage = summary.get("stages", {}).get("benchmarks_data", {})
    dataset = data_stage.get("dataset")
    run_dir = DEFAULT_MODEL
    result: dict = {"model": str(run_dir)}
    if dataset and train_batches > 0:
        from hybrid.checkpoint import load_config
        from hybrid.model import ModelConfig
        from hybrid.train import TrainConfig, train
        from neurosim.config import from_dict

        doc = load_config(DEFAULT_MODEL)
        cfg = TrainConfig(model=from_dict(ModelConfig, doc["model"]), epochs=1, batches_per_epoch=train_batches,
                          batch_size=8, seed=seed)
        say(f"hybrid: fine-tuning the shipped tracker for {train_batches} batches on {dataset}")
        run_dir = out / "run"
        train(dataset, run_dir, cfg, say=say, init_from=str(DEFAULT_MODEL))
        result["fine_tuned"] = str(run_dir)
    if dataset:
        say(f"hybrid: evaluating the tracker and its branches alone on the test split of {dataset}")
        runs = {"hybrid (full)": run_dir, "ANN branch only": (run_dir, "ann_only"), "SNN branch only": (run_dir, "snn_only")}
        ev = evaluate(runs, dataset, out / "eval", "test", say=lambda *a: say("hybrid: " + " ".join(map(str, a))),
                      baselines=("static_box", "csrt"))
        result["eval"] = ev
        result["plots"] = [str(out / "eval" / "success.png"), str(out / "eval" / "precision.png")]
    else:
        say("hybrid: no demo dataset from the benchmarks_data stage; skipping evaluation")
    exp = export_run(run_dir, out / "intnet")
    say(f"hybrid: exported the tracker ({exp['layers']} integer layers) -> {exp['intnet']}")
    result["intnet"] = exp["intnet"]
    return result


_ = dataclasses
