"""Tracker speed: inference in SNN steps per second (target ≥ 1,000 = real time at 1 kHz) and
training time per epoch. Prints JSON. Timings on a shared 2-core machine are noisy.

    .venv/bin/python tests/benchmarks/bench_track.py [--run RUN] [--dataset DIR] [--batches 10]

Without --dataset a small synthetic dataset is generated into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(ROOT / "hybrid" / "models" / "default.safetensors"))
    ap.add_argument("--dataset")
    ap.add_argument("--batches", type=int, default=10, help="training batches timed (epoch time is extrapolated)")
    ap.add_argument("--sequences", type=int, default=2)
    args = ap.parse_args()

    from hybrid.checkpoint import load_model
    from hybrid.data import load_track
    from hybrid.evaluate import split_sequences
    from hybrid.track import track_sequence
    from hybrid.train import TrainConfig, make_windows
    from neurosim.config import from_dict

    tmp = None
    dataset = args.dataset
    if dataset is None:
        from benchmarks_data.synth import synth_dataset

        tmp = tempfile.TemporaryDirectory()
        dataset = pathlib.Path(tmp.name) / "ds"
        synth_dataset(dataset, n_sequences=3, seed=0, test_fraction=0.34)  # train + test splits
    torch.set_num_threads(1)  # as the tracker and the trainer run (see hybrid/track.py)
    out: dict = {"torch_threads": torch.get_num_threads(), "note": "shared 2-core machine: timings are noisy"}
    for variant in ("full", "ann_only", "snn_only"):
        model = load_model(args.run, variant=variant if variant != "full" else None)
        seqs = split_sequences(dataset, "all")[: args.sequences]
        steps = secs = frames = 0
        for name, f in seqs:
            res = track_sequence(model, load_track(f, name))
            steps, secs, frames = steps + res.steps, secs + res.seconds, frames + res.frames
        out[f"inference_{variant}"] = {"snn_steps_per_second": steps / secs, "frames_per_second": frames / secs,
                                       "steps": steps, "seconds": secs, "search_size": model.cfg.search_size}
    # network only (no crop/binning): one frame interval of 33 bins, batch 1
    model = load_model(args.run)
    S, W = model.cfg.search_size, model.cfg.warmup_bins
    g = torch.Generator().manual_seed(0)
    unit = {"frame": torch.rand(1, 1, S, S, generator=g), "events": (torch.rand(1, W + 33, 2, S, S, generator=g) < 0.02).float(),
            "start_box": torch.tensor([[S / 2 - 10, S / 2 - 10, 20.0, 20.0]]), "template_frame": torch.rand(1, 1, S, S, generator=g),
            "template_box": torch.tensor([[S / 2 - 10, S / 2 - 10, 20.0, 20.0]])}
    with torch.no_grad():
        z = model.template(unit["template_frame"], unit["template_box"])
        model(unit, z_ann=z)
        t0 = time.perf_counter()
        n = 20
        for _ in range(n):
            model(unit, z_ann=z)
        dt = (time.perf_counter() - t0) / n
    out["network_only_full"] = {"snn_steps_per_second": 33 / dt, "ms_per_frame_interval": dt * 1e3}
    # training time per epoch
    from hybrid.checkpoint import load_config

    cfg_doc = load_config(args.run)
    cfg = from_dict(TrainConfig, {k: v for k, v in cfg_doc.items() if k not in ("dataset", "weights_sha256")})
    from hybrid.train import _collate, build_model, make_optimizers, unit_loss, window_unit

    windows = make_windows(dataset, cfg, split="train")
    model = build_model(cfg)
    opts = make_optimizers(model, cfg)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for b in range(args.batches):
        idx = np.arange(b * cfg.batch_size, (b + 1) * cfg.batch_size) % len(windows)
        unit, targets = window_unit(_collate([windows[int(i)] for i in idx]), cfg.model.warmup_bins, cfg.start_noise, gen)
        loss, _ = unit_loss(model, model(unit), targets, unit, cfg)
        for o in opts.values():
            o.zero_grad()
        loss.backward()
        for o in opts.values():
            o.step()
    per_batch = (time.perf_counter() - t0) / args.batches
    out["training"] = {"seconds_per_batch": per_batch, "batch_size": cfg.batch_size, "batches_per_epoch": cfg.batches_per_epoch,
                       "seconds_per_epoch": per_batch * cfg.batches_per_epoch}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
