"""NP-RepMet few-shot head as pure functions (Yang et al. 2020, on RepMet, Karlinsky et al. 2019).

Shapes: B proposals, D embedding dimensions, N classes, K representatives per class.
Embeddings and representatives live on the unit sphere (L2-normalised), so the distance

    d(a, b) = ‖a − b‖² = 2 − 2·a·b   ∈ [0, 4]

Scoring (per proposal, class i, representative j; E^p, E^n the positive and negative
embedding heads, R^p_ij, R^n_ij the positive and negative representatives):

    D_ij = d(E^p, R^p_ij) − β·d(E^n, R^n_ij) + m          (β = 0.2, m = 0.4)
    p_ij = exp(−D_ij / (2σ²))                              (σ = 0.5)
    P_i  = max_j p_ij                                      class score
    P_0  = 1 − ½·max_i P_i                                 background score
    logits = s·[P_0, P_1, …, P_N]                          (s = 15) → softmax cross-entropy

β = 0 (or no negative representatives) is RepMet: D_ij = d(E^p, R^p_ij) + m, the margin m then
only rescales every p_ij by the same factor exp(−m/2σ²).

Embedding losses (y the proposal's class, 1..N; background proposals have none):

    L_p = ReLU(min_j d(E^p, R^p_yj) − min_{i≠y, j} d(E^p, R^p_ij) + α)     α = 0.5 (RepMet)
    L_n = ReLU(min_j d(E^n, R^n_yj) − min_{i≠y, j} d(E^n, R^n_ij))          no margin

L_p is applied to a class's positive proposals, L_n to its hard negatives (IoU 0.2–0.3 with an
object of class y): the negative head learns to put a class's hard negatives next to that
class's negative representatives.

Few-shot replacement: a class's K positive representatives are the k-means centres of the
embeddings of the support proposals with IoU ≥ ``pos_iou`` (0.7) to its support boxes, its K
negative representatives the centres of the proposals with IoU in ``neg_iou`` (0.2–0.3) kept by
non-maximum suppression; centres are L2-normalised again.

int8 embeddings: any input tensor is cast to float and L2-normalised, so an int8-quantized
embedding q = round(e/scale) scores exactly as its dequantized value q·scale (the scale
cancels in the normalisation).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class NPRepMetParams:
    """Head parameters; ranges in :data:`NPREPMET_RANGES`."""

    k: int = 5  # K representatives per class (positive and negative)
    beta: float = 0.2  # β: weight of the negative distance (0: RepMet)
    margin: float = 0.4  # m in D_ij
    sigma: float = 0.5  # σ of p_ij = exp(−D/2σ²)
    logit_scale: float = 15.0  # s: logits = s·P
    embed_margin: float = 0.5  # α of the positive embedding loss
    pos_iou: float = 0.7  # support positives: IoU ≥ this
    neg_iou: tuple[float, float] = (0.2, 0.3)  # support hard negatives: IoU in [low, high]
    nms_iou: float = 0.5  # NMS of the negatives

    def check(self) -> "NPRepMetParams":
        """ParameterError naming the first value outside :data:`NPREPMET_RANGES`."""
        from neurosim.config import check_range
        from neurosim.errors import ParameterError

        for name, (low, high, low_open) in NPREPMET_RANGES.items():
            check_range(f"fewshot.{name}", getattr(self, name), low, high, low_open=low_open,
                        why="edit NPREPMET_RANGES in neurosim/fewshot/functional.py")
        lo, hi = self.neg_iou
        if not (0.0 <= lo <= hi < self.pos_iou):
            raise ParameterError(f"fewshot.neg_iou {list(self.neg_iou)} must be [low, high] with 0 ≤ low ≤ high < pos_iou "
                                 f"{self.pos_iou}: e.g. [0.2, 0.3]")
        return self


# (low, high, low excluded)
NPREPMET_RANGES: dict[str, tuple[float, float, bool]] = {
    "k": (1, 64, False),
    "beta": (0.0, 4.0, False),
    "margin": (0.0, 4.0, False),
    "sigma": (0.0, 10.0, True),
    "logit_scale": (0.0, 1000.0, True),
    "embed_margin": (0.0, 4.0, False),
    "pos_iou": (0.0, 1.0, True),
    "nms_iou": (0.0, 1.0, True),
}


def normalize(e: Tensor) -> Tensor:
    """L2-normalise the last axis; any dtype (int8 included) is cast to float32 first."""
    e = e.to(torch.float32) if not e.is_floating_point() else e
    return e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def sq_distance(e: Tensor, reps: Tensor) -> Tensor:
    """d (B, N, K) = ‖e_b − r_ij‖² of unit vectors e (B, D) and representatives (N, K, D)."""
    return (2.0 - 2.0 * torch.einsum("bd,nkd->bnk", e, reps)).clamp_min(0.0)


def rep_distances(e_pos: Tensor, reps_pos: Tensor, e_neg: Tensor | None = None, reps_neg: Tensor | None = None,
                  beta: float = 0.2, margin: float = 0.4) -> Tensor:
    """D (B, N, K) = d(E^p, R^p) − β·d(E^n, R^n) + m; without negatives (or β = 0) RepMet's d + m."""
    dist = sq_distance(normalize(e_pos), normalize(reps_pos))
    if reps_neg is not None and beta:
        dist = dist - beta * sq_distance(normalize(e_pos if e_neg is None else e_neg), normalize(reps_neg))
    return dist + margin


def class_scores(dist: Tensor, sigma: float = 0.5) -> Tensor:
    """P (B, N) = max_j exp(−D_ij / 2σ²)."""
    return torch.exp(-dist / (2.0 * sigma**2)).amax(dim=-1)


def logits(scores: Tensor, scale: float = 15.0) -> Tensor:
    """(B, N + 1) = s·[1 − ½·max_i P_i, P_1, …, P_N]; column 0 is background."""
    background = 1.0 - 0.5 * scores.amax(dim=-1, keepdim=True)
    return scale * torch.cat([background, scores], dim=-1)


def score(e_pos: Tensor, reps_pos: Tensor, e_neg: Tensor | None = None, reps_neg: Tensor | None = None,
          p: "NPRepMetParams" = NPRepMetParams()) -> tuple[Tensor, Tensor]:
    """(P (B, N), logits (B, N + 1)) of proposals with embeddings e_pos/e_neg (B, D)."""
    P = class_scores(rep_distances(e_pos, reps_pos, e_neg, reps_neg, p.beta, p.margin), p.sigma)
    return P, logits(P, p.logit_scale)


def classification_loss(logit: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy; labels (B,) int64, 0 = background, 1..N = classes."""
    return torch.nn.functional.cross_entropy(logit, labels)


def _triplet(e: Tensor, reps: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Mean ReLU(min_j d(e, R_yj) − min_{i≠y,j} d(e, R_ij) + margin) over rows with labels y ≥ 1."""
    keep = labels > 0
    if not bool(keep.any()) or reps.shape[0] < 2:
        return e.new_zeros(())
    d = sq_distance(normalize(e[keep]), normalize(reps)).amin(dim=-1)  # (B', N)
    y = labels[keep] - 1
    own = d.gather(1, y[:, None])[:, 0]
    other = d.scatter(1, y[:, None], float("inf")).amin(dim=1)
    return torch.relu(own - other + margin).mean()


def embedding_loss_pos(e_pos: Tensor, reps_pos: Tensor, labels: Tensor, margin: float = 0.5) -> Tensor:
    """L_p over positive proposals (labels 1..N; 0 = skip): margin α (module docstring)."""
    return _triplet(e_pos, reps_pos, labels, margin)


def embedding_loss_neg(e_neg: Tensor, reps_neg: Tensor, labels: Tensor) -> Tensor:
    """L_n over hard-negative proposals (labels = the class they are a hard negative of; 0 = skip), no margin."""
    return _triplet(e_neg, reps_neg, labels, 0.0)


def update_representatives(reps: Tensor, e: Tensor, rate: float) -> Tensor:
    """Online k-means step (K, D): each embedding e (B, D) pulls its nearest representative,
    R_j ← normalize((1 − η)·R_j + η·mean{e_b : nearest(e_b) = j}); others unchanged."""
    e, reps = normalize(e), normalize(reps)
    nearest = sq_distance(e, reps[None])[:, 0].argmin(dim=1)
    out = reps.clone()
    for j in nearest.unique().tolist():
        out[j] = (1 - rate) * reps[j] + rate * e[nearest == j].mean(dim=0)
    return normalize(out)


# ---- boxes and the few-shot replacement (NumPy; boxes are (x, y, w, h)) ---------------------

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of xywh boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / np.maximum(union, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first (ties: lower index)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlap = box_iou(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(overlap[i, j] <= iou for j in keep):
            keep.append(int(i))
    return np.array(keep, np.int64)


def kmeans(e: Tensor, k: int, iters: int = 20) -> Tensor:
    """k L2-normalised centres (min(k, B), D) of unit embeddings e (B, D) by spherical k-means.

    Deterministic: the first centre is the embedding nearest the mean, each next one the
    embedding farthest from the centres so far; then Lloyd iterations (nearest by d)."""
    e = normalize(e)
    k = min(k, e.shape[0])
    first = int(sq_distance(normalize(e.mean(0, keepdim=True)), e[None])[0, 0].argmin())
    idx = [first]
    for _ in range(k - 1):
        d = sq_distance(e, e[idx][None])[:, 0].amin(dim=1)
        idx.append(int(d.argmax()))
    centres = e[idx].clone()
    for _ in range(iters):
        nearest = sq_distance(e, centres[None])[:, 0].argmin(dim=1)
        new = torch.stack([e[nearest == j].mean(0) if bool((nearest == j).any()) else centres[j] for j in range(k)])
        new = normalize(new)
        if torch.equal(new, centres):
            break
        centres = new
    return centres


def support_representatives(e_pos: Tensor, e_neg: Tensor, boxes: np.ndarray, iou: np.ndarray,
                            p: NPRepMetParams = NPRepMetParams(),
                            image: np.ndarray | None = None) -> tuple[Tensor, Tensor | None]:
    """(R^p (K', D), R^n (K'', D) or None) of one class from its support proposals.

    ``boxes`` (B, 4) proposals with embeddings e_pos/e_neg (B, D) and ``iou`` (B,) their IoU with
    the class's object in their image; ``image`` (B,) the support image of each (NMS runs per
    image; default: one image). Positives: IoU ≥ pos_iou (the best proposal if none), k-means to
    K. Negatives: IoU in neg_iou, NMS (score: IoU) at nms_iou per image, k-means to K; None when
    there are none."""
    iou = np.asarray(iou, np.float64)
    image = np.zeros(len(iou), np.int64) if image is None else np.asarray(image)
    pos = np.flatnonzero(iou >= p.pos_iou)
    if pos.size == 0:
        pos = np.array([int(np.argmax(iou))])
    reps_pos = kmeans(e_pos[torch.from_numpy(pos)], p.k)
    lo, hi = p.neg_iou
    cand = np.flatnonzero((iou >= lo) & (iou <= hi))
    neg = [cand[image[cand] == g][nms(np.asarray(boxes)[cand[image[cand] == g]], iou[cand[image[cand] == g]], p.nms_iou)]
           for g in np.unique(image[cand])]
    if not neg:
        return reps_pos, None
    return reps_pos, kmeans(e_neg[torch.from_numpy(np.sort(np.concatenate(neg)))], p.k)
