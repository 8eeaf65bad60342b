"""How much a frame tracker could gain from between-frame motion alone: one JSON object.

Usage::

    neurosim eval default --variants ann_only --dataset real30 --split val --baselines none -o e
    python tests/benchmarks/bench_track_interp_bound.py e real30 [--tracker default:ann_only]

An eval folder of ``--starts N`` runs (``NAME@K``) is read the same way, each run from its frame.

A frame tracker (``ann_only``, the baselines) holds its box over each frame interval (unit) of
``bins`` SNN steps. Here each unit's boxes are replaced by the straight line from the unit's
first box to the next unit's first box, b(t) = (1 − t/bins)·b_k + (t/bins)·b_{k+1} for step t of
unit k: the boxes of a between-frame motion estimate that knew the next frame's box (not causal;
an upper bound for linear motion). The AUC of the held and the interpolated boxes (OTB protocol,
``hybrid.metrics``) bounds what an event branch can add to that frame tracker *without* changing
where the frame tracker is at the frames: a larger gain has to come from holding the target
where the frames alone lose it.
"""

from __future__ import annotations

import json

import numpy as np


def interpolate_units(boxes: np.ndarray, bins: int) -> np.ndarray:
    """Boxes (N, 4) with each complete unit of ``bins`` steps that has a next unit replaced by the
    line from its first box to the next unit's first box (module docstring); the rest unchanged."""
    out = np.array(boxes, np.float64, copy=True)
    starts = out[::bins].copy()
    frac = (np.arange(bins, dtype=np.float64) / bins)[:, None]
    units = min(len(out) // bins, len(starts) - 1)
    line = (1 - frac)[None] * starts[:units, None] + frac[None] * starts[1 : units + 1, None]  # (units, bins, 4)
    out[: units * bins] = line.reshape(-1, 4)
    return out


def main() -> None:
    from bench_track_motion import eval_arguments, eval_boxes

    from hybrid import metrics

    args = eval_arguments(__doc__.split("\n")[0], "default:ann_only")
    held = eval_boxes(args.eval_dir, args.dataset, args.tracker, args.bins)
    line = {name: (interpolate_units(boxes, args.bins), gt) for name, (boxes, gt) in held.items()}
    a, b = metrics.evaluate(held), metrics.evaluate(line)
    print(json.dumps({
        "eval_dir": args.eval_dir, "tracker": args.tracker, "sequences": len(held),
        "auc_held": round(a.auc, 4), "auc_interpolated": round(b.auc, 4), "gain": round(b.auc - a.auc, 4),
        "per_sequence": {n: [round(a.per_sequence[n]["auc"], 3), round(b.per_sequence[n]["auc"], 3)] for n in held},
    }, indent=1))


if __name__ == "__main__":
    main()
