"""Few-shot detection benchmark on real images: RepMet (positive representatives) vs NP-RepMet.

Classes are the targets of real tracking sequences (``../shared/data/tracking_real/fps30``,
``fps10`` and ``tracking``; one class per sequence). An episode (seeded ``(seed, episode)``):

- ``ways`` classes drawn from the split's sequences (``hybrid/configs/real_split.json``: the
  tracker's ``val`` or ``tune`` sequences; ``all``: every sequence found);
- per class ``max(shots)`` support frames and ``queries`` query frames (≥ ``min_gap`` frames from
  every support frame); the n-shot run uses the first n support frames;
- proposals per image (class-agnostic): ``jitter`` random boxes around the object (centre shift
  U(−0.6, 0.6)·size, each side ×exp(U(−0.3, 0.3))) plus sliding windows of the object's size
  over the whole frame (stride ½ size or more, about ``windows`` = 200 a frame at most):
  everything else in the frame;
- support: positive representatives from the support proposals with IoU ≥ 0.7, negative
  representatives from those with IoU 0.2–0.3 after NMS, each k-means'd to K
  (``neurosim.fewshot.support_representatives``);
- queries: every proposal of every query image of the episode is scored for every class,
  softmax(15·[P_0, P_1..P_N]) (``neurosim.fewshot``); per image and class NMS at 0.3; a
  detection of class c is a true positive when its IoU with the object of an image of class c is
  ≥ 0.5 (one object per image); AP per class (VOC, all points), mAP@0.5 over the episode's classes.

RepMet = the same head with β = 0 and no negative representatives. The embedding
(``hybrid.target_reps.embed``) is the online target model's int8 oriented-gradient cell features
of the box (no trained weights), so every sequence is unseen by construction.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import torch

from neurosim.errors import InputError, ParameterError
from neurosim.fewshot import functional as F
from neurosim.fewshot.module import pad_reps

SPLIT_FILE = pathlib.Path(__file__).parent / "configs" / "real_split.json"
FOLDERS = ("tracking_real/fps30", "tracking_real/fps10", "tracking")


@dataclasses.dataclass
class BenchParams:
    """Options of ``neurosim fewshot bench`` (ranges in :data:`BENCH_RANGES`)."""

    split: str = "val"  # val | tune (hybrid/configs/real_split.json) | all
    ways: int = 5  # classes per episode
    episodes: int = 20
    shots: tuple[int, ...] = (1, 5, 10)
    queries: int = 5  # query frames per class and episode
    min_gap: int = 10  # frames between a query and every support frame
    jitter: int = 64  # random proposals around the object per image
    windows: int = 200  # at most about this many sliding windows per query frame
    k: int = 5  # representatives per class
    beta: float = 0.2
    margin: float = 0.4
    sigma: float = 0.5
    int8: bool = False  # score int8-quantized embeddings
    embedding: str = "features"  # "features": the fixed cell features; "learned": + linear heads E^p, E^n trained on the other sequences
    dim: int = 64  # learned: embedding dimensions
    train_steps: int = 400  # learned: Adam steps (batches of 256 proposals)
    train_frames: int = 20  # learned: frames per training sequence
    bootstrap: int = 2000  # resamples of the episodes for the 95 % CIs
    seed: int = 0

    def check(self) -> "BenchParams":
        from neurosim.config import check_range

        if self.split not in ("val", "tune", "all"):
            raise ParameterError(f"fewshot split {self.split!r}: use val, tune or all")
        if self.embedding not in ("features", "learned"):
            raise ParameterError(f"fewshot embedding {self.embedding!r}: use features or learned")
        if self.embedding == "learned" and self.split == "all":
            raise ParameterError("fewshot embedding=learned trains on the sequences outside the split: use split=val or tune")
        for name, (low, high) in BENCH_RANGES.items():
            check_range(name, getattr(self, name), low, high, why="edit BENCH_RANGES in hybrid/fewshot_bench.py")
        if not self.shots or any(not 1 <= s <= 100 for s in self.shots):
            raise ParameterError(f"shots {list(self.shots)} must be 1..100 each, e.g. [1, 5, 10]")
        self.head(self.beta).check()
        self.head(0.0, 0.0).check()
        return self

    def head(self, beta: float, margin: float | None = None) -> F.NPRepMetParams:
        return F.NPRepMetParams(k=self.k, beta=beta, margin=self.margin if margin is None else margin, sigma=self.sigma)

    def method(self, name: str) -> tuple[bool, F.NPRepMetParams]:
        """(negatives, head parameters) of a compared method (:data:`METHODS`)."""
        if name == "repmet":
            return False, self.head(0.0, 0.0)
        if name == "positives_only":
            return False, self.head(0.0)
        return True, self.head(self.beta)


# RepMet: D = d(E, R^p) (its own equations: β = 0, m = 0); positives_only: NP-RepMet's head with
# β = 0 and no negative representatives (D = d + m); np: NP-RepMet.
METHODS = ("repmet", "positives_only", "np")


BENCH_RANGES = {"ways": (2, 100), "episodes": (1, 10_000), "queries": (1, 100), "min_gap": (0, 1000),
                "jitter": (8, 1000), "windows": (1, 10_000), "dim": (2, 4096), "train_steps": (0, 1_000_000), "train_frames": (1, 1000), "bootstrap": (0, 100_000), "seed": (0, 2**32 - 1)}


@dataclasses.dataclass
class Sequence:
    name: str
    files: list[pathlib.Path]
    boxes: np.ndarray  # (N, 4) xywh, NaN = absent

    def frame(self, i: int) -> np.ndarray:
        import cv2

        img = cv2.imread(str(self.files[i]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise InputError(f"frame {self.files[i]} cannot be read: check the file")
        return img

    def usable(self) -> np.ndarray:
        b = self.boxes
        return np.flatnonzero(np.isfinite(b).all(1) & (np.nan_to_num(b[:, 2:]) >= 4).all(1))


def load_sequences(data: str | pathlib.Path, split: str) -> list[Sequence]:
    """The split's sequences under ``data`` (the shared data folder), sorted by name."""
    from benchmarks_data.layouts import check_sequence, discover, image_files

    root = pathlib.Path(data)
    folders = [root / f for f in FOLDERS if (root / f).is_dir()]
    if not folders:
        raise InputError(f"{root} holds none of {', '.join(FOLDERS)}: give the shared data folder (--data ../shared/data)")
    names = None if split == "all" else set(json.loads(SPLIT_FILE.read_text())[split])
    seqs = []
    for spec in (s for f in folders for s in discover(f)):
        if names is not None and spec.name not in names:
            continue
        _, boxes = check_sequence(spec)
        seqs.append(Sequence(spec.name, image_files(spec.frames), np.asarray(boxes, np.float64)))
    if names is not None and len(seqs) < len(names):
        missing = sorted(names - {s.name for s in seqs})
        raise InputError(f"sequences {', '.join(missing)} of the {split} split are not under {root}: give the shared data folder")
    return sorted(seqs, key=lambda s: s.name)


def jitter_boxes(box: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) random boxes around ``box``: centre shift U(−0.6, 0.6)·size, sides ×exp(U(−0.3, 0.3))."""
    x, y, w, h = box
    c = np.array([x + w / 2, y + h / 2]) + rng.uniform(-0.6, 0.6, (n, 2)) * [w, h]
    wh = np.array([w, h]) * np.exp(rng.uniform(-0.3, 0.3, (n, 2)))
    return np.concatenate([c - wh / 2, wh], axis=1)


def sliding_windows(wh: np.ndarray, width: int, height: int, most: int = 200) -> np.ndarray:
    """(M, 4) boxes of size wh tiling the frame, stride max(½ size, √(W·H/most))."""
    step = max(0.5 * float(min(wh)), float(np.sqrt(width * height / most)), 1.0)
    xs = np.arange(0, max(width - wh[0], 0) + 1e-9, step)
    ys = np.arange(0, max(height - wh[1], 0) + 1e-9, step)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, wh[0]), np.full(gx.size, wh[1])], axis=1)


def average_precision(scores: np.ndarray, hits: np.ndarray, positives: int) -> float:
    """VOC all-point AP of detections (scores, hit = true positive) against ``positives`` objects."""
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = np.concatenate([[0.0], tp / positives, [1.0]])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    i = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[i + 1] - recall[i]) * precision[i + 1]))


@dataclasses.dataclass
class Image:
    cls: int
    boxes: np.ndarray  # proposals (M, 4)
    iou: np.ndarray  # (M,) IoU with the object
    e: torch.Tensor  # (M, D)


def _image(seq: Sequence, i: int, cls: int, jitter: int, windows: int, rng: np.random.Generator, int8: bool) -> Image:
    from hybrid.target_reps import embed, quantize_int8

    frame = seq.frame(i)
    box = seq.boxes[i]
    boxes = np.concatenate([box[None], jitter_boxes(box, jitter, rng)])
    if windows:
        boxes = np.concatenate([boxes, sliding_windows(box[2:], frame.shape[1], frame.shape[0], windows)])
    e = embed(frame, boxes)
    return Image(cls, boxes, F.box_iou(boxes, box[None])[:, 0], quantize_int8(e) if int8 else e)


Heads = tuple  # (E^p, E^n): callables (B, D) features -> (B, d) embeddings


def _identity(e: torch.Tensor) -> torch.Tensor:
    return e


def _episode_map(support: list[list[Image]], queries: list[Image], n: int, p: BenchParams, method: str,
                 heads: Heads = (_identity, _identity)) -> float:
    negatives, head = p.method(method)
    ep, en = heads
    pos, neg = [], []
    for imgs in support:
        used = imgs[:n]
        x = torch.cat([im.e for im in used])
        rp, rn = F.support_representatives(ep(x), en(x),
                                           np.concatenate([im.boxes for im in used]), np.concatenate([im.iou for im in used]),
                                           head, np.concatenate([np.full(len(im.iou), j) for j, im in enumerate(used)]))
        pos.append(rp)
        neg.append(rn if rn is not None else rp[:0])
    reps_pos = pad_reps(pos, head.k)
    reps_neg = pad_reps(neg, head.k) if negatives and all(len(r) for r in neg) else None
    ways = len(support)
    per_class: list[list[tuple[float, bool]]] = [[] for _ in range(ways)]
    for im in queries:
        _, logit = F.score(ep(im.e), reps_pos, en(im.e), reps_neg, head)
        prob = torch.softmax(logit, dim=-1)[:, 1:].numpy()
        for c in range(ways):
            top = np.argsort(-prob[:, c], kind="stable")[:50]
            keep = top[F.nms(im.boxes[top], prob[top, c], 0.3)]
            hit = np.zeros(len(keep), bool)
            if im.cls == c:
                good = np.flatnonzero(im.iou[keep] >= 0.5)
                if good.size:
                    hit[good[0]] = True  # keep is sorted by score: the first match is the true positive
            per_class[c] += list(zip(prob[keep, c].tolist(), hit.tolist()))
    aps = []
    for c in range(ways):
        s, h = np.array([d[0] for d in per_class[c]]), np.array([d[1] for d in per_class[c]], bool)
        aps.append(average_precision(s, h, sum(im.cls == c for im in queries)))
    return float(np.mean(aps))


def _pick_frames(seq: Sequence, shots: int, queries: int, gap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ok = seq.usable()
    support = rng.choice(ok, size=min(shots, len(ok)), replace=False)
    far = ok[np.min(np.abs(ok[:, None] - support[None]), axis=1) >= max(gap, 1)]
    if len(far) < queries:
        far = np.setdiff1d(ok, support)
    return support, np.sort(rng.choice(far, size=min(queries, len(far)), replace=False))


def run_episode(seqs: list[Sequence], e: int, p: BenchParams, heads: dict[str, Heads] | None = None) -> dict[str, list[float]]:
    """{method: [mAP per shot]} of episode e for each of :data:`METHODS` (``heads``: learned E^p, E^n per method)."""
    rng = np.random.default_rng((p.seed, e))
    classes = rng.choice(len(seqs), size=p.ways, replace=False)
    support, queries = [], []
    for c, idx in enumerate(classes):
        sup, qry = _pick_frames(seqs[idx], max(p.shots), p.queries, p.min_gap, rng)
        support.append([_image(seqs[idx], int(i), c, p.jitter, 0, rng, p.int8) for i in sup])
        queries += [_image(seqs[idx], int(i), c, p.jitter // 2, p.windows, rng, p.int8) for i in qry]
    heads = heads or {}
    return {name: [_episode_map(support, queries, n, p, name, heads.get(name, (_identity, _identity))) for n in p.shots]
            for name in METHODS}


def _training_rows(seqs: list[Sequence], p: BenchParams, rng: np.random.Generator):
    """Features (R, D), class labels (R,) (0 = background) and hard-negative labels (R,) of
    proposals in ``train_frames`` frames of each training sequence: IoU ≥ 0.6 → its class,
    IoU 0.2–0.3 → background and a hard negative of its class, IoU < 0.2 → background."""
    xs, ys, ns = [], [], []
    for c, seq in enumerate(seqs):
        ok = seq.usable()
        for i in np.sort(rng.choice(ok, size=min(p.train_frames, len(ok)), replace=False)):
            im = _image(seq, int(i), c, p.jitter, 50, rng, False)
            keep = (im.iou >= 0.6) | (im.iou <= 0.3)
            xs.append(im.e[torch.from_numpy(keep)])
            ys.append(np.where(im.iou[keep] >= 0.6, c + 1, 0))
            ns.append(np.where((im.iou[keep] >= 0.2) & (im.iou[keep] <= 0.3), c + 1, 0))
    return torch.cat(xs), torch.from_numpy(np.concatenate(ys)), torch.from_numpy(np.concatenate(ns))


def train_heads(rows: tuple, classes: int, p: BenchParams, method: str) -> tuple[Heads, list[float]]:
    """Linear heads E^p, E^n (D → ``dim``, L2-normalised) and the N × K representatives trained
    with the head's loss (cross-entropy + L_p, + L_n with negatives) on the training ``rows``
    (:func:`_training_rows` of ``classes`` sequences).
    Batches: ½ object, ¼ hard-negative, ¼ other background proposals. Seeded: (seed, 8) and torch's seed."""
    from torch import nn

    from neurosim.fewshot.module import NPRepMetHead

    negatives, params = p.method(method)
    rng = np.random.default_rng((p.seed, 8))
    x, y, hard = rows
    torch.manual_seed(p.seed)
    proj_p, proj_n = nn.Linear(x.shape[1], p.dim, bias=False), nn.Linear(x.shape[1], p.dim, bias=False)
    head = NPRepMetHead(classes, p.dim, params, negatives=negatives, seed=p.seed)
    params = list(proj_p.parameters()) + list(head.parameters()) + (list(proj_n.parameters()) if negatives else [])
    opt = torch.optim.Adam(params, lr=1e-2)
    pools = [np.flatnonzero(y.numpy() > 0), np.flatnonzero(hard.numpy() > 0), np.flatnonzero((y.numpy() == 0) & (hard.numpy() == 0))]
    losses = []
    for _ in range(p.train_steps):
        idx = torch.from_numpy(np.concatenate([rng.choice(pool, size=n) for pool, n in zip(pools, (128, 64, 64)) if len(pool)]))
        e_pos = F.normalize(proj_p(x[idx]))
        e_neg = F.normalize(proj_n(x[idx])) if negatives else None
        loss = head.loss(e_pos, y[idx], e_neg, hard[idx] if negatives else None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    proj_p.requires_grad_(False)
    proj_n.requires_grad_(False)
    ep = lambda e: F.normalize(proj_p(F.normalize(e)))  # noqa: E731
    en = (lambda e: F.normalize(proj_n(F.normalize(e)))) if negatives else ep  # noqa: E731
    return (ep, en), losses


def summarize(values: np.ndarray, rng: np.random.Generator, resamples: int) -> dict[str, float]:
    """mean, sd (ddof 1) and the 95 % percentile-bootstrap CI of the mean over episodes."""
    out = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    if resamples and len(values) > 1:
        means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
        out["ci95"] = [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
    return out


def fewshot_bench(data: str | pathlib.Path, params: BenchParams | None = None, progress=None) -> dict:
    """Run the benchmark; JSON-ready summary (module docstring)."""
    p = (params or BenchParams()).check()
    seqs = load_sequences(data, p.split)
    if len(seqs) < p.ways:
        raise ParameterError(f"ways {p.ways} is more than the {len(seqs)} sequences of the {p.split} split: lower it")
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    heads, training = None, {}
    try:
        if p.embedding == "learned":
            names = {s.name for s in seqs}
            train = [s for s in load_sequences(data, "all") if s.name not in names]
            rows, heads = _training_rows(train, p, np.random.default_rng((p.seed, 7))), {}
            for name in METHODS:
                heads[name], losses = train_heads(rows, len(train), p, name)
                training[name] = {"first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}
            training["sequences"] = [s.name for s in train]
        runs = []
        for e in range(p.episodes):
            runs.append(run_episode(seqs, e, p, heads))
            if progress:
                progress(e + 1, p.episodes)
    finally:
        torch.set_num_threads(torch_threads)
    rng = np.random.default_rng((p.seed, 2**31))
    table = {}
    for j, n in enumerate(p.shots):
        m = {name: np.array([r[name][j] for r in runs]) for name in METHODS}
        table[f"{n}-shot"] = {**{name: summarize(v, rng, p.bootstrap) for name, v in m.items()},
                              "np_minus_repmet": summarize(m["np"] - m["repmet"], rng, p.bootstrap),
                              "np_minus_positives_only": summarize(m["np"] - m["positives_only"], rng, p.bootstrap),
                              "np_better_than_repmet": int((m["np"] > m["repmet"]).sum()),
                              "np_better_than_positives_only": int((m["np"] > m["positives_only"]).sum()),
                              "episodes": len(runs)}
    return {"split": p.split, "sequences": [s.name for s in seqs], "params": dataclasses.asdict(p), "map50": table,
            "training": training, "episodes": runs}
