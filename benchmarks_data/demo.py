"""The ``benchmarks_data`` stage of ``neurosim demo``: a tiny synthetic tracking dataset.

Generates ``DEMO_SEQUENCES`` short synthetic sequences (160×120, 0.5 s at 240 fps, APS at
30 Hz, DAVIS346-preset events) into ``outdir/dataset`` with train/test splits, then loads one
training window through :class:`benchmarks_data.loaders.TrackingWindows` as a check. The
hybrid stage trains and evaluates on this dataset (``summary["stages"]["benchmarks_data"]["dataset"]``).
"""

from __future__ import annotations

import pathlib
from typing import Callable

DEMO_SEQUENCES = 6
DEMO_CONFIG = {"width": 160, "height": 120, "n_frames": 120, "fps": 240.0, "target_size_px": (14, 28)}


def run(outdir: pathlib.Path, summary: dict, say: Callable[..., None], seed: int = 0) -> dict:
    """Build the demo dataset; return its path, size and one window's tensor shapes."""
    from benchmarks_data.loaders import TrackingWindows
    from benchmarks_data.synth import SynthConfig, synth_dataset
    from sim_events.params import preset

    out = pathlib.Path(outdir) / "dataset"
    cfg = SynthConfig(**DEMO_CONFIG)
    say(f"data: generating {DEMO_SEQUENCES} synthetic high-speed sequences ({cfg.width}x{cfg.height}, "
        f"{cfg.n_frames} frames at {cfg.fps:g} fps) -> {out}")
    report = synth_dataset(out, n_sequences=DEMO_SEQUENCES, seed=seed, config=cfg, params=preset("davis346"),
                           aps_rate_hz=30.0, test_fraction=0.34)
    if report["failed"]:
        raise RuntimeError(f"demo dataset: {report['failed'][0]['name']} failed: {report['failed'][0]['reason']}")
    train = TrackingWindows(out, split="train", frames_per_window=2, snn_rate_hz=1000.0, crop=(64, 64), seed=seed)
    item = train[0]
    shapes = {k: list(v.shape) for k, v in item.items() if hasattr(v, "shape")}
    say(f"data: {report['sequences']} sequences, {report['input_frames']} input frames, {report['events']:,} events; "
        f"{len(train)} training windows, events tensor {shapes['events']}")
    return {
        "dataset": str(out), "index": report["index"], "sequences": report["sequences"],
        "input_frames": report["input_frames"], "events": report["events"],
        "train_windows": len(train), "window_shapes": shapes,
    }
