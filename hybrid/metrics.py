"""Tracking metrics of the OTB / NFS protocol (as in the got10k toolkit and pytracking).

Boxes are (x, y, w, h) in pixels, 0-based top-left corner, one row per evaluated time step.

- Centre: ``c = (x + (w - 1)/2, y + (h - 1)/2)``; centre error ``e = ||c_pred - c_gt||_2`` (px).
- Overlap: ``IoU = |A ∩ B| / (|A| + |B| - |A ∩ B| + eps)`` with ``eps`` = float64 machine
  epsilon, clipped to [0, 1] (areas as ``w·h``, the intersection of the two rectangles).
- Success curve: ``S(τ) = mean_t [IoU_t > τ]`` for τ in ``linspace(0, 1, 21)``; AUC = mean S(τ).
- Precision curve: ``P(d) = mean_t [e_t ≤ d]`` for d = 0, 1, …, 50 px; the score is P(20).
- Per sequence the first prediction is replaced by the ground truth (the tracker was given
  it); curves are averaged over sequences, then AUC and P@20 are read off the mean curves.
- Frames whose ground truth is absent (NaN) are skipped. A NaN prediction counts as a miss
  (IoU 0, infinite centre error).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from neurosim.errors import ParameterError

IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
ERROR_THRESHOLDS = np.arange(0, 51, dtype=float)
PRECISION_AT = 20


def centers(boxes: np.ndarray) -> np.ndarray:
    """Box centres ``x + (w-1)/2, y + (h-1)/2`` of (N, 4) xywh boxes → (N, 2)."""
    b = np.asarray(boxes, float)
    return b[..., :2] + (b[..., 2:] - 1.0) / 2.0


def center_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) between the centres of (N, 4) boxes → (N,)."""
    d = centers(pred) - centers(gt)
    return np.sqrt(np.sum(d * d, axis=-1))


def iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Intersection over union of (N, 4) xywh boxes → (N,) in [0, 1]."""
    a, b = np.asarray(pred, float), np.asarray(gt, float)
    x1 = np.maximum(a[..., 0], b[..., 0])
    y1 = np.maximum(a[..., 1], b[..., 1])
    x2 = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y2 = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def sequence_curves(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Success (21,) and precision (51,) curves of one sequence (first box set to the GT)."""
    pred = np.array(pred, float, copy=True)
    gt = np.asarray(gt, float)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] != 4:
        raise ValueError(f"boxes must be two (N, 4) arrays of equal shape, got {pred.shape} and {gt.shape}")
    pred[0] = gt[0]
    valid = ~np.isnan(gt).any(axis=1)
    p, g = pred[valid], gt[valid]
    ious = np.nan_to_num(iou(p, g), nan=0.0)
    errors = np.nan_to_num(center_error(p, g), nan=np.inf)
    success = np.mean(ious[:, None] > IOU_THRESHOLDS[None, :], axis=0)
    precision = np.mean(errors[:, None] <= ERROR_THRESHOLDS[None, :], axis=0)
    return success, precision


@dataclasses.dataclass
class Scores:
    """OTB scores of a set of sequences: mean curves, AUC, P@20 and per-sequence values."""

    success_curve: np.ndarray
    precision_curve: np.ndarray
    auc: float
    precision_20: float
    per_sequence: dict[str, dict[str, float]]

    def summary(self) -> dict:
        return {
            "auc": self.auc, "precision_20": self.precision_20,
            "success_curve": self.success_curve.tolist(), "precision_curve": self.precision_curve.tolist(),
            "per_sequence": self.per_sequence,
        }


def evaluate(results: dict[str, tuple[np.ndarray, np.ndarray]]) -> Scores:
    """Score ``{sequence: (pred (N,4), gt (N,4))}``: curves averaged over sequences."""
    if not results:
        raise ValueError("no sequences to evaluate")
    succ, prec, per = [], [], {}
    for name, (pred, gt) in results.items():
        s, p = sequence_curves(pred, gt)
        succ.append(s)
        prec.append(p)
        per[name] = {"auc": float(np.mean(s)), "precision_20": float(p[PRECISION_AT])}
    s_mean, p_mean = np.mean(succ, axis=0), np.mean(prec, axis=0)
    return Scores(s_mean, p_mean, float(np.mean(s_mean)), float(p_mean[PRECISION_AT]), per)


def paired_bootstrap(a: dict[str, float], b: dict[str, float], n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Noise floor of a score difference: paired bootstrap over sequences.

    ``a``, ``b``: per-sequence scores (e.g. AUC) of two trackers on the same sequences. The
    difference d_i = a_i − b_i is resampled with replacement (``numpy.random.default_rng(seed)``);
    returns the mean difference, its 95 % percentile interval, the bootstrap standard error and
    the number of sequences where ``a`` is higher."""
    names = sorted(a)
    if set(names) != set(b) or not names:
        raise ParameterError("paired_bootstrap needs per-sequence scores of the same, non-empty set of "
                             "sequences for both trackers: evaluate both on the same dataset split")
    d = np.array([a[k] - b[k] for k in names], np.float64)
    idx = np.random.default_rng(seed).integers(0, len(d), (n_resamples, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "se": float(means.std()),
            "wins": int((d > 0).sum()), "n": len(d)}
