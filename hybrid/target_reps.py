"""A target model of positive and negative representatives (NP-RepMet) that re-scores the
online target model's candidates.

Embedding ``e(box)`` of a box in a grey frame (``embed``): the box resampled to 32×32 pixels
(aspect not kept), the online target model's int8 oriented-gradient cell features on it
(``hybrid.dcf.features``, K = 8 orientations + mean intensity, 8×8 cells, no window), flattened
to D = 576 and L2-normalised. It has no trained weights: a target seen once is embedded exactly
as any other box, which is what a one-shot target model needs; E^p = E^n = e.

Tracker (``RepDCFTracker``, ``model.target_reps = "np" | "p"``; ``"off"`` is the plain
``DCFTracker``):

- first frame: positives = 19 boxes around the target with IoU ≥ 0.7 (shifts of 0.1 of the size,
  scales ×0.95/1.05), negatives = the ring around the box (8 boxes shifted to IoU ≈ 0.25) and
  the secondary peaks of the filter's response (distractors); each set k-means'd to K = 5
  representatives (``neurosim.fewshot.support_representatives``);
- each frame: at the winning scale the candidates are the response's main peak and up to 3
  secondary local maxima ≥ ``min_ratio``·peak; candidate i scores (r_i / r_max)·P_i, with
  P_i the NP-RepMet class score of its box (``neurosim.fewshot``: D = d(e, R^p) − β·d(e, R^n) + m,
  P = max_j exp(−D/2σ²)); the best one is the frame's detection, and the filter learns there;
- refresh: when the detection's P is ≥ ``confident`` × the first frame's P, its box joins the
  positive pool and its ring and the losing candidates the negative pool (pools of at most 64,
  the first frame's kept), and the representatives are re-clustered every ``refresh_every``
  confident frames.

``"p"`` is the same tracker with positive representatives only (RepMet, β = 0): the ablation.
"""

from __future__ import annotations

import numpy as np
import torch

from hybrid.dcf import CELL, DCFParams, DCFTracker, features
from neurosim.fewshot import functional as F

EMBED_PX = 32
_ONES = np.ones((EMBED_PX // CELL,) * 2, np.float32)


def sample_box(frame: np.ndarray, box: np.ndarray, out_px: int = EMBED_PX) -> np.ndarray:
    """The xywh box of ``frame`` (H, W) uint8 resampled bilinearly to (out_px, out_px) float32 in [0, 1]."""
    import cv2

    x, y, w, h = (float(v) for v in box)
    sx, sy = out_px / max(w, 1e-3), out_px / max(h, 1e-3)
    m = np.array([[sx, 0.0, -sx * x + 0.5 * (sx - 1)], [0.0, sy, -sy * y + 0.5 * (sy - 1)]], np.float64)
    patch = cv2.warpAffine(frame, m, (out_px, out_px), flags=cv2.INTER_AREA if min(sx, sy) < 1 else cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return patch.astype(np.float32) / np.float32(255.0)


def embed(frame: np.ndarray, boxes: np.ndarray, orientations: int = 8) -> torch.Tensor:
    """(B, (K + 1)·64) L2-normalised embeddings of xywh boxes (B, 4) of a grey frame."""
    rows = [features(sample_box(frame, b), orientations, _ONES).reshape(-1) for b in np.asarray(boxes).reshape(-1, 4)]
    return F.normalize(torch.from_numpy(np.stack(rows)))


def quantize_int8(e: torch.Tensor) -> torch.Tensor:
    """int8 embedding q = round(127·e / max|e|) per row (the head normalises it again)."""
    scale = e.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.round(127.0 * e / scale).to(torch.int8)


def positive_boxes(box: np.ndarray) -> np.ndarray:
    """(19, 4): the box, its shifts by ±0.1·size along x and y (IoU 9/11) and ±0.07·size along the
    diagonals (IoU 0.93²/(2 − 0.93²) = 0.762), and ×0.95 / ×1.05 with shifts of ±0.05·size: all IoU ≥ 0.7."""
    x, y, w, h = box
    out = [box]
    for dx, dy in [(1, 0), (-1, 0), (0, 1), (0, -1), (0.7, 0.7), (0.7, -0.7), (-0.7, 0.7), (-0.7, -0.7)]:
        out.append([x + 0.1 * dx * w, y + 0.1 * dy * h, w, h])
    for s in (0.95, 1.05):
        for dx, dy in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]:
            cw, ch = w * s, h * s
            out.append([x + (w - cw) / 2 + 0.05 * dx * w, y + (h - ch) / 2 + 0.05 * dy * h, cw, ch])
    return np.asarray(out, np.float64)


def ring_boxes(box: np.ndarray) -> np.ndarray:
    """(8, 4): the box shifted to IoU 0.25 with itself (0.6·size along an axis, 0.368 diagonally)."""
    x, y, w, h = box
    a, d = 0.6, 1 - np.sqrt(0.4)
    shifts = [(a, 0), (-a, 0), (0, a), (0, -a), (d, d), (d, -d), (-d, d), (-d, -d)]
    return np.asarray([[x + sx * w, y + sy * h, w, h] for sx, sy in shifts], np.float64)


def local_maxima(r: np.ndarray, count: int, min_ratio: float) -> list[tuple[int, int, float]]:
    """Up to ``count`` (iy, ix, value) strict periodic 3×3 maxima of ``r`` ≥ min_ratio·max, highest first."""
    best = float(r.max())
    neigh = np.max([np.roll(np.roll(r, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx], axis=0)
    iy, ix = np.nonzero((r > neigh) & (r >= min_ratio * best))
    order = np.argsort(-r[iy, ix], kind="stable")[:count]
    return [(int(iy[i]), int(ix[i]), float(r[iy[i], ix[i]])) for i in order]


class RepDCFTracker(DCFTracker):
    """``DCFTracker`` whose detection is re-scored by positive (and negative) representatives."""

    def __init__(self, params: DCFParams | None = None, negatives: bool = True, head: F.NPRepMetParams | None = None,
                 min_ratio: float = 0.5, candidates: int = 4, confident: float = 0.8, refresh_every: int = 5,
                 pool: int = 64):
        super().__init__(params)
        self.head = (head or F.NPRepMetParams()).check()
        if not negatives:
            self.head = F.NPRepMetParams(**{**self.head.__dict__, "beta": 0.0})
        self.negatives, self.min_ratio, self.candidates = negatives, min_ratio, candidates
        self.confident, self.refresh_every, self.pool = confident, refresh_every, pool

    # -- representatives --------------------------------------------------------------------
    def _score(self, e: torch.Tensor) -> np.ndarray:
        neg = self.reps_neg[None] if (self.negatives and self.reps_neg is not None) else None
        return F.class_scores(F.rep_distances(e, self.reps_pos[None], None, neg, self.head.beta, self.head.margin),
                              self.head.sigma)[:, 0].numpy()

    def _cluster(self) -> None:
        self.reps_pos = F.kmeans(torch.cat(self.pos_first + self.pos_pool), self.head.k)
        negs = self.neg_first + self.neg_pool
        self.reps_neg = F.kmeans(torch.cat(negs), self.head.k) if negs else None

    def init(self, frame: np.ndarray, box: np.ndarray, events: np.ndarray | None = None) -> None:
        super().init(frame, box, events)
        box = np.asarray(box, np.float64)
        self.pos_first, self.pos_pool, self.neg_pool = [embed(frame, positive_boxes(box))], [], []
        _, peaks = self._candidates(frame, 1.0)
        self.neg_first = [embed(frame, np.concatenate([ring_boxes(box), peaks[1:]]))]
        self._cluster()
        self.p_ref = float(self._score(embed(frame, box[None]))[0])
        self.fresh = 0

    # -- detection ----------------------------------------------------------------------------
    def _response(self, frame: np.ndarray, side: float) -> np.ndarray:
        z = self._phi(frame, self.centre, side)
        return self.response(z)

    def _candidates(self, frame: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
        """(values (C,), boxes (C, 4)) of the response's local maxima at scale s, the main peak first."""
        r = self._response(frame, self.side * s)
        n = r.shape[0]
        step = self.side * s / (self.p.region_px / CELL)
        wh = self.wh * s
        vals, boxes = [], []
        for iy, ix, v in local_maxima(r, self.candidates, self.min_ratio):
            shift = np.array([((ix + n // 2) % n) - n // 2, ((iy + n // 2) % n) - n // 2], np.float64)
            c = self.centre + shift * step
            vals.append(v)
            boxes.append(np.concatenate([c - wh / 2, wh]))
        return np.asarray(vals), np.asarray(boxes, np.float64).reshape(-1, 4)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, float, float]:
        centre, s, v = super().detect(frame)
        vals, boxes = self._candidates(frame, s)
        self.losers = np.zeros((0, 4))
        if len(vals) < 2:
            return centre, s, v
        p = self._score(embed(frame, boxes))
        total = vals / vals.max() * p
        best = int(np.argmax(total))
        self.last_p = float(p[best])
        self.losers = np.delete(boxes, best, axis=0)
        if best == 0:
            return centre, s, v
        return boxes[best, :2] + boxes[best, 2:] / 2, s, v * float(vals[best] / vals[0])

    def update(self, frame: np.ndarray, events: np.ndarray | None = None) -> np.ndarray:
        self.last_p, self.losers = None, np.zeros((0, 4))
        box = super().update(frame, events)
        if not self.usable:
            return box
        e = embed(frame, box[None])
        p = float(self._score(e)[0]) if self.last_p is None else self.last_p
        if p >= self.confident * self.p_ref:
            self.pos_pool = (self.pos_pool + [e])[-self.pool:]
            self.neg_pool = (self.neg_pool + [embed(frame, np.concatenate([ring_boxes(box), self.losers]))])[-self.pool // 8:]
            self.fresh += 1
            if self.fresh % self.refresh_every == 0:
                self._cluster()
        return box
