"""The ``hybrid`` stage of ``neurosim demo``: shipped tracker → evaluation → integer export.

Uses the demo dataset of the ``benchmarks_data`` stage. The shipped model
(``hybrid/models/default``) is evaluated on its test split together with its own branches
alone (``ann_only`` / ``snn_only`` views of the same weights) and two frame-tracker baselines
(a never-moving box, OpenCV CSRT; ``hybrid.baselines``); with ``train_batches > 0`` it
is first fine-tuned for that many batches on the demo's training split.

Real video: where the project's real tracking sequences are found (``$NEUROSIM_SHARED_DATA`` or
``../shared/data`` beside the working directory or the package: ``tracking/`` holds OTB
Crossing and VOT bag), they are converted in both regimes of DashNet's comparison — an APS frame
at every input frame (``--fps 30 --aps-rate 30``) and the video played at 240 fps with APS at
30 Hz (``--fps 240 --aps-rate 30``) — and the same trackers and baselines are scored on them
(key ``"real"``). The tracker is then exported to ``outdir/hybrid/intnet`` for the chip stage
(key ``"intnet"``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import os
from typing import Callable

from hybrid.cli import DEFAULT_MODEL

TRAIN_BATCHES = 0
REAL_REGIMES = {"real 30 fps": 30.0, "real played at 240 fps": 240.0}  # input fps; APS at 30 Hz in both


def real_tracking_folder() -> pathlib.Path | None:
    """The real tracking sequences (``tracking/`` of the shared data folder), or None."""
    env = os.environ.get("NEUROSIM_SHARED_DATA")
    roots = [pathlib.Path(env)] if env else [pathlib.Path.cwd() / ".." / "shared" / "data",
                                              pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"]
    for root in roots:
        if (root / "tracking").is_dir():
            return (root / "tracking").resolve()
    return None


def _real(out: pathlib.Path, runs: dict, say: Callable[..., None], seed: int) -> dict:
    from benchmarks_data.build import build_dataset
    from hybrid.evaluate import evaluate

    source = real_tracking_folder()
    if source is None:
        say("hybrid: no real tracking sequences found (../shared/data/tracking); skipping the real-video tables")
        return {}
    result = {}
    for regime, fps in REAL_REGIMES.items():
        slug = f"real{int(fps)}"
        say(f"hybrid: {regime}: converting {source} (APS at 30 Hz) and scoring the trackers")
        build_dataset(source, out / slug / "dataset", aps_rate_hz=30.0, fps=fps, seed=seed, test_fraction=0.0)
        ev = evaluate(runs, out / slug / "dataset", out / slug / "eval", "all",
                      say=lambda *a: say(f"hybrid: {regime}: " + " ".join(map(str, a))),
                      baselines=("static_box", "csrt", "kcf", "mil"))
        result[slug] = {"regime": regime, "eval": ev}
    return result


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
        result["real"] = _real(out, runs, say, seed) if summary.get("real_video", True) else {}
    else:
        say("hybrid: no demo dataset from the benchmarks_data stage; skipping evaluation")
    exp = export_run(run_dir, out / "intnet")
    say(f"hybrid: exported the tracker ({exp['layers']} integer layers) -> {exp['intnet']}")
    result["intnet"] = exp["intnet"]
    return result


_ = dataclasses
