"""Fitting the tracking-time parameters by closed-loop tracking on training sequences: the TCF
crossover (α_frame, α_hold) and the ANN centre's soft-argmax temperature τ_ann.

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

τ_ann: the response loss trains the ANN's softmax to match a Gaussian label one cell wide, so
at τ = 1 the soft-argmax also averages in the mass of look-alikes and clutter and its centre is
pulled off the peak; a lower τ moves it onto the main peak. It is fitted the same way, for
ann_only runs too, so the ANN-only baseline gets the same help.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
from typing import Any, Callable, Sequence

import torch

from neurosim.errors import ParameterError
from neurosim.io import atomic_folder

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


def set_ann_temperature(model, tau: float) -> None:
    """Set the soft-argmax τ of the ANN centre in place (τ > 0)."""
    if not tau > 0:
        raise ParameterError(f"ann_temperature {tau} must be > 0")
    model.cfg.ann_temperature = float(tau)


def fit_tracking(run: str | pathlib.Path, dataset: str | pathlib.Path | Sequence[str | pathlib.Path], out: str | pathlib.Path,
                 alphas: Sequence[float] = DEFAULT_ALPHAS, holds: Sequence[float] = (1.0,),
                 ann_temperatures: Sequence[float] = (1.0,), split: str = "train", max_sequences: int = 0,
                 say: Callable[..., None] = print) -> dict[str, Any]:
    """Track ``split`` of ``dataset`` with each candidate and copy ``run`` to ``out`` with the one
    of the highest AUC.

    Candidates: ``ann_temperatures`` × ``alphas`` × ``holds`` for full / no_attention runs, and
    ``ann_temperatures`` alone for ann_only runs (no TCF). ``dataset``: a folder, or a list of
    folders whose split sequences are pooled. ``max_sequences`` > 0 uses the first N sequences of
    each folder's split (in index order). Writes ``tune.json`` into the copy. Returns
    ``{"alpha_frame", "alpha_hold", "ann_temperature", "learned_alpha_frame", "scores": {key:
    {..., auc, precision_20}}, "run"}``."""
    from hybrid.checkpoint import find_checkpoint, load_model

    run, out = find_checkpoint(run), pathlib.Path(out)
    if run.suffix == ".safetensors" or out.exists():
        raise ParameterError(f"tuning needs a run folder and a new output folder (got {run} -> {out})")
    model = load_model(run)
    has_tcf = model.cfg.variant in ("full", "no_attention")
    if not has_tcf and model.cfg.variant != "ann_only":
        raise ParameterError(f"{run} is a {model.cfg.variant} run: only full / no_attention (TCF) and ann_only runs have tracking parameters to fit")
    if not has_tcf and (tuple(alphas) != tuple(DEFAULT_ALPHAS) or tuple(holds) != (1.0,)):
        raise ParameterError(f"{run} is an ann_only run: it has no TCF, so fit only --ann-temperatures (drop --alphas / --holds)")
    learned = float(model.tcf.alphas[0].detach())
    seqs = _sequences(dataset, split, max_sequences)
    from hybrid.data import load_track

    tracks = [load_track(p, n) for n, p in seqs]
    grid = [(t, a, h) for t in ann_temperatures for h in holds for a in alphas] if has_tcf else \
        [(t, learned, 1.0 if model.tcf.hold_is_one else float(model.tcf.alphas[1])) for t in ann_temperatures]
    scores = {}
    for tau, a, hold in grid:
        set_ann_temperature(model, tau)
        set_alpha_hold(model, hold)
        set_alpha_frame(model, a)
        key = f"{tau:g}/{a:g}/{hold:g}" if has_tcf else f"{tau:g}"
        scores[key] = {"ann_temperature": float(tau), "alpha_frame": float(a), "alpha_hold": float(hold),
                       **track_score(model, tracks)}
        say(f"{'ann_temperature ' + format(tau, 'g')}" + (f", alpha_frame {a:g}, alpha_hold {hold:g}" if has_tcf else "")
            + f": AUC {scores[key]['auc']:.4f}  P@20 {scores[key]['precision_20']:.4f} ({len(tracks)} {split} sequences)")
    best = scores[max(scores, key=lambda k: scores[k]["auc"])]
    doc = {"variant": model.cfg.variant, "alpha_frame": best["alpha_frame"], "alpha_hold": best["alpha_hold"], "ann_temperature": best["ann_temperature"],
           "learned_alpha_frame": learned, "split": split, "sequences": [n for n, _ in seqs], "scores": scores,
           "from_run": str(run)}
    _write_copy(run, out, model, best, doc)
    return {**doc, "run": str(out)}


def _sequences(dataset, split: str, max_sequences: int) -> list[tuple[str, pathlib.Path]]:
    """(name, file) of ``split`` of one or several dataset folders (names prefixed by the folder
    when there are several), the first ``max_sequences`` of each (0: all)."""
    from benchmarks_data.loaders import dataset_folders
    from hybrid.evaluate import split_sequences

    folders = dataset_folders(dataset)
    seqs = []
    for folder in folders:
        part = split_sequences(folder, split)
        part = part[:max_sequences] if max_sequences > 0 else part
        seqs += part if len(folders) == 1 else [(f"{folder}/{n}", f) for n, f in part]
    return seqs


def _write_copy(run: pathlib.Path, out: pathlib.Path, model, best: dict, doc: dict) -> None:
    """Copy ``run`` to ``out`` with ``best``'s parameters (TCF logits, model.alpha_hold,
    model.ann_temperature) and ``tune.json``; built beside ``out`` and renamed at the end, so a
    failure leaves no half-written run folder."""
    from safetensors.torch import load_file, save_file

    from hybrid.checkpoint import CONFIG, WEIGHTS
    from neurosim.io import CONTENT_HASH, sha256_file

    with atomic_folder(out) as partial:
        shutil.copytree(run, partial, dirs_exist_ok=True)
        set_alpha_frame(model, best["alpha_frame"])
        set_alpha_hold(model, best["alpha_hold"])
        weights = load_file(str(partial / WEIGHTS))
        for name in ("tcf.logit_frame", "tcf.logit_hold"):
            weights[name] = getattr(model.tcf, name.split(".")[1]).detach().clone()
        save_file(weights, str(partial / WEIGHTS))
        config = json.loads((partial / CONFIG).read_text())
        config[CONTENT_HASH] = sha256_file(partial / WEIGHTS)
        config["model"]["alpha_hold"] = best["alpha_hold"]  # 1 rebuilds the exact α_hold ≡ 1 filter
        config["model"]["ann_temperature"] = best["ann_temperature"]
        (partial / CONFIG).write_text(json.dumps(config, indent=1))
        (partial / "tune.json").write_text(json.dumps(doc, indent=1))
