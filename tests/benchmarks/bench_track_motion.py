"""How much true between-frame motion a tracker's boxes carry: one JSON object.

Usage::

    neurosim eval default --variants full --dataset real240 --split tune --baselines none -o e
    python tests/benchmarks/bench_track_motion.py e real240 [--tracker default:full]

For every frame interval (unit) of every scored sequence: the tracker's centre displacement from
the unit's first to its last SNN step, P (2,), against the ground truth's, G (2,). A tracker that
holds its box between frames (``ann_only``) has P = 0 and a mean error ‖G‖; a useful event branch
has P correlated with G and a mean error ‖G − P‖ below ‖G‖. ``kappa`` = ΣP·G / ΣP·P is the
least-squares gain of P (1: unbiased; 0: no information), and ``error_at_gain`` the mean error of
κ'·P for a few κ'. Pixels; the steps per unit are ``bins`` (33 at 1 kHz SNN steps, 30 Hz APS).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np


def unit_displacements(boxes: np.ndarray, gt: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, G) (U, 2): first-to-last-step centre displacement of each complete unit with ground truth."""
    c = boxes[:, :2] + boxes[:, 2:] / 2
    g = gt[:, :2] + gt[:, 2:] / 2
    units = len(c) // bins
    c, g = c[: units * bins].reshape(units, bins, 2), g[: units * bins].reshape(units, bins, 2)
    ok = ~np.isnan(g).any(axis=(1, 2))
    return (c[:, -1] - c[:, 0])[ok], (g[:, -1] - g[:, 0])[ok]


def motion_scores(pred: np.ndarray, true: np.ndarray) -> dict:
    kappa = float((pred * true).sum() / max(float((pred * pred).sum()), 1e-12))
    corr = [float(np.corrcoef(pred[:, i], true[:, i])[0, 1]) if pred[:, i].std() > 0 else 0.0 for i in range(2)]
    return {
        "units": int(len(pred)),
        "corr_x": round(corr[0], 3), "corr_y": round(corr[1], 3), "kappa": round(kappa, 3),
        "mean_predicted_px": round(float(np.linalg.norm(pred, axis=1).mean()), 2),
        "mean_true_px": round(float(np.linalg.norm(true, axis=1).mean()), 2),
        "error_held_px": round(float(np.linalg.norm(true, axis=1).mean()), 2),
        "error_tracker_px": round(float(np.linalg.norm(true - pred, axis=1).mean()), 2),
        "error_at_gain": {str(k): round(float(np.linalg.norm(true - k * pred, axis=1).mean()), 2)
                          for k in (0.25, 0.5, 0.75)},
    }


def eval_arguments(description: str, tracker: str) -> argparse.Namespace:
    """The command line of a script that reads a `neurosim eval` folder: eval_dir, dataset, --tracker, --bins."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("eval_dir", help="a `neurosim eval` output folder (results/<tracker>/<sequence>.txt)")
    ap.add_argument("dataset", help="the dataset folder it scored")
    ap.add_argument("--tracker", default=tracker)
    ap.add_argument("--bins", type=int, default=33, help="SNN steps per frame interval")
    return ap.parse_args()


def eval_boxes(eval_dir: str, dataset: str, tracker: str, bins: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{run: (boxes (N, 4), ground truth at their step times (N, 4))} of ``tracker`` in a
    `neurosim eval` folder; a TRE run ``NAME@K`` (``--starts``) is sequence NAME from frame K.
    Exits with 2 and a line naming the folder when it holds no results."""
    from hybrid.data import load_track

    results = pathlib.Path(eval_dir) / "results" / tracker
    tracks, out = {}, {}
    for path in sorted(results.glob("*.txt")):
        name, _, first = path.stem.partition("@")
        if name not in tracks:
            tracks[name] = load_track(pathlib.Path(dataset) / "sequences" / f"{name}.h5")
        track = tracks[name].from_frame(int(first or 0))
        boxes = np.loadtxt(path, delimiter=",", ndmin=2)
        times = np.concatenate([track.edges(k, bins)[1:] for k in range(len(track.frame_t))])[: len(boxes)]
        out[path.stem] = (boxes, track.box_at(times))
    if not out:
        print(f"no results in {results}: run `neurosim eval` with that tracker first, or name it with --tracker",
              file=sys.stderr)
        raise SystemExit(2)
    return out


def main() -> None:
    args = eval_arguments(__doc__.split("\n")[0], "default:full")
    pairs = [unit_displacements(boxes, gt, args.bins) for boxes, gt in eval_boxes(args.eval_dir, args.dataset, args.tracker, args.bins).values()]
    out = motion_scores(np.concatenate([p for p, _ in pairs]), np.concatenate([g for _, g in pairs]))
    print(json.dumps({"eval_dir": args.eval_dir, "tracker": args.tracker, "sequences": len(pairs), **out}, indent=1))


if __name__ == "__main__":
    main()
