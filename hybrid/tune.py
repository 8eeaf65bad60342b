"""Fitting the TCF crossover (α_frame, α_hold) by closed-loop tracking on training sequences.

Why: training sees one frame interval at a time, starting from the true box plus a small
error (``start_noise``), so the box loss learns how far to trust a fresh frame against an
almost exact prior estimate — it learns to distrust the frame (α_frame ≈ 0.6 for the shipped model). While tracking,
the prior at a frame is the estimate carried by the events over the whole previous interval,
with its accumulated drift: the complementary filter's gain must match *that* error
(for a Kalman-like filter, α ≈ σ²_frame / (σ²_frame + σ²_prior)).

So the crossover is fitted on the tracker as it is used: every candidate (α_frame, α_hold) is set
into the trained model, whole sequences of the **training** split are tracked (closed loop, a
box at every SNN step) and scored with the OTB protocol; the pair with the highest AUC is written
into a copy of the run (the two TCF logits and ``model.alpha_hold``; nothing else changes). The
test split is never seen. α_hold < 1 pulls the estimate towards the held frame estimate between
frames: a lag for fast targets, but a brake on the SNN's drift where events are sparse (slow or
small targets), so it is fitted on training data that has both.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
from typing import Any, Callable, Sequence

import torch

from neurosim.errors import ParameterError

DEFAULT_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)


def track_score(model, tracks: list, threads: int = 1) -> dict[str, float]:
    """OTB AUC and P@20 of ``model`` tracking ``tracks`` (hybrid.data.Track) from their first boxes."""
    from hybrid import metrics
    from hybrid.track import track_sequence

    results = {}
    for i, track in enumerate(tracks):  # keyed by position: two datasets may both have a "synth_000"
        r = track_sequence(model, track, threads=threads)
        results[f"{i}:{track.name}"] = (r.boxes, r.gt)
    s = metrics.evaluate(results).summary()
    return {"auc": float(s["auc"]), "precision_20": float(s["precision_20"])}


def set_alpha_frame(model, alpha: float) -> None:
    """Set the TCF's α_frame (0 < α < 1) in place."""
    if not 0 < alpha < 1:
        raise ParameterError(f"alpha_frame {alpha} must be in (0, 1)")
    with torch.no_grad():
        model.tcf.logit_frame.fill_(math.log(alpha / (1 - alpha)))


def set_alpha_hold(model, alpha: float) -> None:
    """Set the TCF's α_hold in place (0 < α ≤ 1; 1: the SNN alone between frames)."""
    if not 0 < alpha <= 1:
        raise ParameterError(f"alpha_hold {alpha} must be in (0, 1]")
    model.tcf.hold_is_one = alpha >= 1
    if alpha < 1:
        with torch.no_grad():
            model.tcf.logit_hold.fill_(math.log(alpha / (1 - alpha)))


def fit_tcf(run: str | pathlib.Path, dataset: str | pathlib.Path | Sequence[str | pathlib.Path], out: str | pathlib.Path,
            alphas: Sequence[float] = DEFAULT_ALPHAS, holds: Sequence[float] = (1.0,), split: str = "train",
            max_sequences: int = 0, say: Callable[..., None] = print) -> dict[str, Any]:
    """Track ``split`` of ``dataset`` with each (α_frame, α_hold) of ``alphas`` × ``holds``; copy
    ``run`` to ``out`` with the pair of the highest AUC.

    ``dataset``: a folder, or a list of folders whose split sequences are pooled. ``max_sequences``
    > 0 uses the first N sequences of each folder's split (in index order). Returns
    ``{"alpha_frame", "alpha_hold", "learned_alpha_frame", "scores": {"α_frame/α_hold": {auc,
    precision_20}}, "run"}``."""
    from safetensors.torch import load_file, save_file

    from benchmarks_data.loaders import dataset_folders
    from hybrid.checkpoint import CONFIG, WEIGHTS, find_checkpoint, load_model
    from hybrid.data import load_track
    from hybrid.evaluate import split_sequences

    run, out = find_checkpoint(run), pathlib.Path(out)
    if run.suffix == ".safetensors" or out.exists():
        raise ParameterError(f"fitting the TCF needs a run folder and a new output folder (got {run} -> {out})")
    model = load_model(run)
    if model.cfg.variant not in ("full", "no_attention"):
        raise ParameterError(f"{run} is a {model.cfg.variant} run: only full / no_attention runs have a TCF")
    learned = float(model.tcf.alphas[0].detach())
    folders = dataset_folders(dataset)
    seqs = []
    for folder in folders:
        part = split_sequences(folder, split)
        part = part[:max_sequences] if max_sequences > 0 else part
        seqs += part if len(folders) == 1 else [(f"{folder}/{n}", f) for n, f in part]
    tracks = [load_track(p, n) for n, p in seqs]
    scores = {}
    for hold in holds:
        set_alpha_hold(model, hold)
        for a in alphas:
            set_alpha_frame(model, a)
            key = f"{a:g}/{hold:g}"
            scores[key] = {"alpha_frame": float(a), "alpha_hold": float(hold), **track_score(model, tracks)}
            say(f"alpha_frame {a:g}, alpha_hold {hold:g}: AUC {scores[key]['auc']:.4f}  P@20 "
                f"{scores[key]['precision_20']:.4f} ({len(tracks)} {split} sequences)")
    best = scores[max(scores, key=lambda k: scores[k]["auc"])]
    doc = {"alpha_frame": best["alpha_frame"], "alpha_hold": best["alpha_hold"], "learned_alpha_frame": learned,
           "split": split, "sequences": [n for n, _ in seqs], "scores": scores, "from_run": str(run)}
    # the copy is built beside `out` and renamed at the end: no half-written run folder on failure
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(run, partial)
        set_alpha_frame(model, best["alpha_frame"])
        set_alpha_hold(model, best["alpha_hold"])
        weights = load_file(str(partial / WEIGHTS))
        for name in ("tcf.logit_frame", "tcf.logit_hold"):
            weights[name] = getattr(model.tcf, name.split(".")[1]).detach().clone()
        save_file(weights, str(partial / WEIGHTS))
        config = json.loads((partial / CONFIG).read_text())
        config["model"]["alpha_hold"] = best["alpha_hold"]  # 1 rebuilds the exact α_hold ≡ 1 filter
        (partial / CONFIG).write_text(json.dumps(config, indent=1))
        (partial / "alpha_fit.json").write_text(json.dumps(doc, indent=1))
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {**doc, "run": str(out)}
