"""Online target model of the ANN branch: a discriminative correlation filter (DCF) on int8 conv features.

A fixed first-frame template loses a target that turns, deforms or changes scale. This model
learns the target online, in closed form, at every APS frame (the correlation-filter layer of
CFNet; Bolme et al. 2010, Danelljan et al. 2014 for the multichannel form):

Search region. A square of side ``A = √((w + c(w+h))·(h + c(w+h)))`` image pixels around the
box centre (``c = context``; for a square target of side a, A = (1 + 2c)·a), resampled to
``R×R`` network pixels (``region_px``), pixels outside the image replicated from the border.

Features ``φ`` (C, R/4, R/4), stride 4 (``features``):

    o_k = ReLU(I ∗ G_k),  G_k = (c_k·[−1 0 1] + s_k·[−1 0 1]ᵀ)/64   (I = intensity / 255)
    c_k, s_k = round(64·cos θ_k), round(64·sin θ_k),  θ_k = 2πk/K   (K = ``orientations``, signed)
    O_k = 4×4 sum-pool of o_k;  N = 3×3 box sum of Σ_k O_k²
    φ = [O_k / √(N/9 + ε) for k] ++ [4×4 mean of I − mean of I]        (C = K + 1)

each channel multiplied by a Hann window (the filter's periodic boundary). The first layer is
an int8 convolution (weights ``c_k, s_k`` ∈ [−64, 64], scale 1/64; on 8-bit pixels its sums are
exact int32), the layer ``neurosim.quant`` and the chip model run; pooling and normalization
follow it.

Filter (per channel c, 2-D DFT ``^``, ``*`` complex conjugate, ⊙ elementwise):

    A_c ← (1 − η)·A_c + η·Ŷ* ⊙ Φ̂_c,       B ← (1 − η)·B + η·Σ_c Φ̂_c* ⊙ Φ̂_c
    response  r = Re F⁻¹{ Σ_c A_c* ⊙ Ẑ_c / (B + λ) }

with ``Ŷ`` the DFT of a Gaussian label of σ = ``sigma_factor``·√(w·h)/cell px centred at the
origin (η = 1 at the first frame). The peak of ``r`` (sub-cell by a parabola through its
neighbours) is the translation, in cells of the region, of the target since the last frame.

Spatially constrained filter (``filter_support`` > 0; BACF, Kiani Galoogahi et al. 2017, and
the spatial constraint of CSR-DCF). The closed form above learns a filter as large as the region,
so a larger region teaches it the background too. With a support, the filter is zero outside a
box of ``filter_support`` × the target's size centred on the target, and the region can be large
(``context``) without that: with the feature average ``X̂_c ← (1 − η)·X̂_c + η·Φ̂_c``, the filter
``Ĝ`` (response ``r = Re F⁻¹{Σ_c Ĝ_c ⊙ Ẑ_c}``) solves

    min ½‖Ŷ − Σ_c Ĝ_c ⊙ X̂_c‖² + ½λ‖Ĥ‖²   subject to  G_c = H_c,  H_c = M ⊙ H_c  (M: the support box)

by ``admm_iterations`` ADMM steps from zero at every frame (dual L̂, penalty μ: 1, ×10 a step):

    Ĝ ← (1/μ)·(q − X̂*·(X̂ᵀq)/(μ + Σ_c|X̂_c|²)),   q = X̂*·Ŷ − L̂ + μ·Ĥ   (Sherman–Morrison, per frequency)
    H ← M ⊙ F⁻¹{(μ·Ĝ + L̂)/(λ + μ)},   L̂ ← L̂ + μ·(Ĝ − Ĥ)

With ``filter_support = 0`` (M everywhere, one step from zero) this is the closed form.

Scale (SAMF-style): the region is sampled at ``s_i = scale_step^i``, i ∈ {−n..n}
(``scales = 2n + 1``); the scale whose peak (times ``scale_penalty`` when i ≠ 0) is highest
wins, and the size moves to it by ``scale_lr``. The filter is updated at the new box.

Event channels (``event_weight`` > 0; the hybrid's attention in the target model). The events
of the frame interval before each APS frame, counted per pixel and polarity, are sampled over the
same region (bilinear, as the frame), summed per 4×4 cell and compressed, ``E_p = log(1 + n_p)``;
both are scaled together so that a cell's event vector has unit mean energy over the region:

    φ ← φ ++ [w · E_p / √(mean over cells of (E_ON² + E_OFF²) + ε) for p in ON, OFF]   (w = ``event_weight``)

so the filter also learns where the target's events are (a moving target lights up against a
still background; its leading and trailing edges have opposite polarities) and weighs that cue
against the frame's gradients online, as it learns the rest. A frame without events (the first
one) gives zero channels. A search between APS frames (:meth:`DCFTracker.relocate`, on an event
frame) takes the events from the last APS frame to its time, the same events the event frame
integrates, so the channels show the target where that frame does. With ``event_weight = 0``
(the default, and the ANN branch alone) the features are the frame's only.

Re-detection on event blobs (``redetect_ratio`` > 0, with events; a long-term tracker's
re-detection, its candidates given by the events). The filter's peak value v at an APS frame
falls when the target is lost (occluded, out of the region, or gone past it): a peak below
``redetect_ratio`` × the running peak v̄ (v̄ ← (1 − 0.05)·v̄ + 0.05·v over the frames not lost)
counts as lost. Then the region is also searched, at the current size, around each of the
``redetect_blobs`` densest target-sized blobs of the interval's events (:func:`event_blobs`: the
local maxima of the event count per w×h box), where anything that moved is; the best blob takes
over when its peak reaches ``redetect_accept`` × v̄ (it looks like the target as the filter knows
it) and beats the detection, else the detection stands. Without events it never re-detects.

Dark frames. A region whose mean intensity is below ``min_brightness`` (16 DN: under 4 bits of
signal, e.g. a DAVIS in a dark room) shows the filter sensor noise, on which it would latch onto
static background with a confident peak. Such a frame is neither searched nor learned: the box
is held and :attr:`DCFTracker.usable` is False, so the hybrid moves with its events alone.
All arithmetic is float32/float64 NumPy and OpenCV (no threads, no random numbers): the same
frames give the same boxes bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CELL = 4


@dataclasses.dataclass(frozen=True)
class DCFParams:
    """Online target model parameters (ranges in :data:`DCF_RANGES`)."""

    context: float = 0.75  # c: region side = √((w + c(w+h))(h + c(w+h)))
    region_px: int = 128  # R: the region's side in network pixels (a multiple of 4)
    orientations: int = 8  # K signed orientation channels
    regularization: float = 1e-2  # λ
    learning_rate: float = 0.02  # η
    sigma_factor: float = 0.1  # label σ = sigma_factor·√(w·h) in region pixels / cell
    scales: int = 3  # 2n + 1 sampled scales
    scale_step: float = 1.04
    scale_penalty: float = 0.985
    scale_lr: float = 0.6
    min_brightness: float = 16.0  # DN: a region darker than this on average is not searched or learned
    filter_support: float = 1.0  # > 0: the filter is zero outside this × the target box (BACF); 0: unconstrained closed form
    admm_iterations: int = 2  # ADMM steps per frame of the constrained filter
    event_weight: float = 0.0  # w of the two event channels (ON, OFF); 0: frame features only
    redetect_ratio: float = 0.0  # > 0: an APS peak under this × the running peak also searches the interval's event blobs
    redetect_blobs: int = 4  # the most event blobs searched then
    redetect_accept: float = 0.7  # a blob's peak must reach this × the running peak to take over

    def check(self) -> "DCFParams":
        """ParameterError naming the first value outside :data:`DCF_RANGES` (or a region not a multiple of 4)."""
        from neurosim.config import check_range
        from neurosim.errors import ParameterError

        for name, (low, high) in DCF_RANGES.items():
            check_range(f"dcf.{name}", getattr(self, name), low, high, why="edit DCF_RANGES in hybrid/dcf.py")
        if self.region_px % CELL:
            raise ParameterError(f"dcf.region_px {self.region_px} must be a multiple of {CELL}")
        if self.scales % 2 == 0:
            raise ParameterError(f"dcf.scales {self.scales} must be odd (2n + 1 scales around 1)")
        return self


DCF_RANGES: dict[str, tuple[float, float]] = {
    "context": (0.0, 4.0),
    "region_px": (32, 512),
    "orientations": (2, 32),
    "regularization": (1e-8, 10.0),
    "learning_rate": (0.0, 1.0),
    "sigma_factor": (0.01, 2.0),
    "scales": (1, 15),
    "scale_step": (1.0, 1.5),
    "scale_penalty": (0.5, 1.0),
    "scale_lr": (0.0, 1.0),
    "min_brightness": (0.0, 255.0),
    "filter_support": (0.0, 4.0),
    "admm_iterations": (1, 20),
    "event_weight": (0.0, 10.0),
    "redetect_ratio": (0.0, 1.0),
    "redetect_blobs": (1, 64),
    "redetect_accept": (0.0, 2.0),
}

PEAK_RATE = 0.05  # the running peak's update rate per APS frame


def region_side(wh: np.ndarray, context: float) -> float:
    """Side A (image pixels) of the square search region of a w×h target."""
    w, h = float(wh[0]), float(wh[1])
    pad = context * (w + h)
    return float(np.sqrt((w + pad) * (h + pad)))


def warp_region(image: np.ndarray, centre: np.ndarray, side: float, out_px: int) -> np.ndarray:
    """The side×side square of ``image`` (H, W) centred at ``centre`` (x, y), resampled bilinearly
    to (out_px, out_px) in the image's dtype; outside pixels replicate the border."""
    import cv2

    s = out_px / side
    # output pixel u (centre u + ½) ← image x = c − A/2 + (u + ½)/s (continuous; pixel i spans [i, i + 1))
    tx, ty = (out_px / 2.0 - s * float(c) + 0.5 * (s - 1) for c in centre[:2])
    m = np.array([[s, 0.0, tx], [0.0, s, ty]], np.float64)
    return cv2.warpAffine(image, m, (out_px, out_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def sample_region(frame: np.ndarray, centre: np.ndarray, side: float, out_px: int) -> np.ndarray:
    """:func:`warp_region` of a uint8 ``frame`` as float32 in [0, 1]."""
    return warp_region(frame, centre, side, out_px).astype(np.float32) / np.float32(255.0)


def gradient_filters(orientations: int) -> np.ndarray:
    """The conv layer's int8 weights (K, 3, 3): ``c_k·[−1 0 1] + s_k·[−1 0 1]ᵀ`` (scale 1/64)."""
    theta = 2 * np.pi * np.arange(orientations) / orientations
    c, s = np.round(64 * np.cos(theta)), np.round(64 * np.sin(theta))
    f = np.zeros((orientations, 3, 3), np.int8)
    f[:, 1, 0], f[:, 1, 2] = -c, c
    f[:, 0, 1], f[:, 2, 1] = -s, s
    return f


def cell_sums(x: np.ndarray) -> np.ndarray:
    """Sums over the CELL×CELL cells of ``x`` (..., R, R) → (..., R/CELL, R/CELL), rows first, in
    the same order for every cell (explicit adds: 13× faster than ``reshape(...).sum(axis=(-3, -1))``)."""
    r = x.shape[-1] // CELL
    rows = x.reshape(*x.shape[:-2], r, CELL, x.shape[-1])
    acc = rows[..., 0, :].copy()
    for i in range(1, CELL):
        acc += rows[..., i, :]
    cols = acc.reshape(*acc.shape[:-1], r, CELL)
    out = cols[..., 0].copy()
    for j in range(1, CELL):
        out += cols[..., j]
    return out


def features(patch: np.ndarray, orientations: int, window: np.ndarray) -> np.ndarray:
    """φ (K + 1, R/4, R/4) float32 of a (R, R) patch in [0, 1] (module docstring)."""
    r = patch.shape[0]
    p = np.pad(patch, 1, mode="edge")
    gx = p[1:-1, 2:] - p[1:-1, :-2]
    gy = p[2:, 1:-1] - p[:-2, 1:-1]
    f = gradient_filters(orientations).astype(np.float32) / np.float32(64.0)
    cos, sin = f[:, 1, 2], f[:, 2, 1]
    o = np.maximum(cos[:, None, None] * gx + sin[:, None, None] * gy, 0)  # (K, R, R)
    n = r // CELL
    pooled = cell_sums(o)
    energy = np.pad((pooled * pooled).sum(0), 1, mode="edge")
    block = sum(energy[i : i + n, j : j + n] for i in range(3) for j in range(3)) / np.float32(9.0)
    grads = pooled / np.sqrt(block + np.float32(1e-4))
    grey = cell_sums(patch) / np.float32(CELL * CELL) - patch.mean()
    return np.concatenate([grads, grey[None]]).astype(np.float32) * window


def event_features(counts: np.ndarray, centre: np.ndarray, side: float, out_px: int, window: np.ndarray,
                   weight: float) -> np.ndarray:
    """The event channels (2, R/4, R/4) float32 of ``counts`` (2, H, W) events per pixel (ON, OFF)
    over the region of side ``side`` at ``centre``, R = ``out_px`` (module docstring)."""
    cells = cell_sums(np.stack([warp_region(c, centre, side, out_px) for c in counts]))
    e = np.log1p(cells)
    e /= np.sqrt((e * e).sum(0).mean() + np.float32(1e-3))
    return (np.float32(weight) * e * window).astype(np.float32)


def hann(n: int) -> np.ndarray:
    """(n, n) float32 Hann window."""
    w = np.hanning(n + 2)[1:-1]
    return np.outer(w, w).astype(np.float32)


def gaussian_label_dft(n: int, sigma_cells: float) -> np.ndarray:
    """DFT (n, n//2+1) of a Gaussian of σ cells centred at cell (0, 0), periodic."""
    d = np.minimum(np.arange(n), n - np.arange(n)).astype(np.float64)
    g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma_cells**2))
    return np.fft.rfft2(g)


def support_mask(n: int, size_cells: np.ndarray) -> np.ndarray:
    """(n, n) float32 mask M of the constrained filter: 1 on the cells within ``size_cells`` (w, h)
    /2 of the region centre (cell n/2, where the target's filter lies in the periodic layout), 0
    elsewhere; at least the centre cell."""
    d = np.abs(np.arange(n) - n // 2)
    half = np.maximum(np.asarray(size_cells, np.float64) / 2, 0.5)
    return ((d[:, None] <= half[1]) & (d[None, :] <= half[0])).astype(np.float32)


def constrained_filter(x: np.ndarray, label: np.ndarray, mask: np.ndarray, regularization: float,
                       iterations: int, mu: float = 1.0, mu_growth: float = 10.0, mu_max: float = 1e4) -> np.ndarray:
    """Ĝ (C, n, n//2+1) of the spatially constrained filter (module docstring) from the feature
    spectra ``x`` (C, n, n//2+1), the label spectrum (n, n//2+1) and the support ``mask`` (n, n).
    The penalty starts at ``mu`` and grows by ``mu_growth`` a step up to ``mu_max`` (BACF's
    schedule: a good filter in 2 steps; a fixed μ converges to the exact optimum, slowly)."""
    n = mask.shape[0]
    sxx = (x * np.conj(x)).real.sum(0)
    xy = np.conj(x) * label[None]
    h = dual = np.zeros_like(x)
    g = xy
    for _ in range(iterations):
        q = xy - dual + mu * h
        g = (q - np.conj(x) * (x * q).sum(0)[None] / (mu + sxx)[None]) / mu
        spatial = np.fft.irfft2((mu * g + dual) / (regularization + mu), s=(n, n)) * mask[None]
        h = np.fft.rfft2(spatial)
        dual = dual + mu * (g - h)
        mu = min(mu_growth * mu, mu_max)
    return g


def peak(response: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, value): the response's maximum as a periodic shift in cells, sub-cell by a
    parabola through the neighbours."""
    n = response.shape[0]
    iy, ix = np.unravel_index(int(np.argmax(response)), response.shape)
    value = float(response[iy, ix])

    def refine(a: float, b: float, c: float) -> float:
        d = a - 2 * b + c
        return 0.5 * (a - c) / d if d < 0 else 0.0

    sx = refine(response[iy, (ix - 1) % n], value, response[iy, (ix + 1) % n])
    sy = refine(response[(iy - 1) % n, ix], value, response[(iy + 1) % n, ix])
    dx = ((ix + n // 2) % n) - n // 2 + sx
    dy = ((iy + n // 2) % n) - n // 2 + sy
    return float(dx), float(dy), value


def event_blobs(counts: np.ndarray, wh: np.ndarray, count: int) -> np.ndarray:
    """Centres (≤ count, 2) x, y pixels of the densest target-sized blobs of events in ``counts``
    (2, H, W): the local maxima of the events per w×h box, highest first (none where no events)."""
    import cv2

    w, h = (max(1, int(round(float(v)))) for v in wh)
    density = cv2.boxFilter(counts.sum(0), -1, (w, h), normalize=False, borderType=cv2.BORDER_CONSTANT)
    peaks = (density == cv2.dilate(density, np.ones((h, w), np.uint8))) & (density > 0)
    ys, xs = np.nonzero(peaks)
    best = np.argsort(-density[ys, xs], kind="stable")[:count]
    return np.stack([xs[best] + 0.5, ys[best] + 0.5], 1).astype(np.float64)


class DCFTracker:
    """The online target model as a frame tracker (``init`` / ``update`` on grey frames, boxes
    xywh float in pixels), usable alone (``hybrid.baselines``' protocol) or as the ANN branch."""

    def __init__(self, params: DCFParams | None = None):
        self.p = (params or DCFParams()).check()
        n = self.p.region_px // CELL
        self.window = hann(n)
        half = self.p.scales // 2
        self.scale_factors = self.p.scale_step ** np.arange(-half, half + 1, dtype=np.float64)
        self.num = self.den = self.label = None
        self.model_x = self.filter = self.mask = None  # the constrained filter's feature average, Ĝ, M
        self.centre = np.zeros(2)
        self.wh = np.ones(2)
        self.side = 1.0
        self.last_peak = 0.0
        self.usable = True
        self.events = None  # (2, H, W) event counts of the interval before the current frame
        self.peak_mean = None  # running mean of the APS frames' peaks where the target was not lost

    def _phi(self, frame: np.ndarray, centre: np.ndarray, side: float) -> np.ndarray:
        patch = sample_region(frame, centre, side, self.p.region_px)
        phi = features(patch, self.p.orientations, self.window)
        if self.p.event_weight > 0:
            ev = (np.zeros((2,) + self.window.shape, np.float32) if self.events is None else
                  event_features(self.events, centre, side, self.p.region_px, self.window, self.p.event_weight))
            phi = np.concatenate([phi, ev])
        return np.fft.rfft2(phi)

    def _learn(self, frame: np.ndarray, rate: float) -> None:
        phi = self._phi(frame, self.centre, self.side)
        if self.p.filter_support > 0:
            self.model_x = phi if self.model_x is None else (1 - rate) * self.model_x + rate * phi
            self.filter = constrained_filter(self.model_x, self.label, self.mask, self.p.regularization,
                                             self.p.admm_iterations)
            return
        num = np.conj(self.label)[None] * phi
        den = (phi * np.conj(phi)).real.sum(0)
        if self.num is None:
            self.num, self.den = num, den
        else:
            self.num = (1 - rate) * self.num + rate * num
            self.den = (1 - rate) * self.den + rate * den

    def init(self, frame: np.ndarray, box: np.ndarray, events: np.ndarray | None = None) -> None:
        """Learn the target in ``box`` (xywh pixels) of ``frame`` (H, W) uint8; ``events`` (2, H, W)
        the event counts before it (used with ``event_weight`` > 0; None: zero channels)."""
        self.events = events
        box = np.asarray(box, np.float64)
        self.wh = box[2:].copy()
        self.centre = box[:2] + box[2:] / 2
        self.side = region_side(self.wh, self.p.context)
        n = self.p.region_px // CELL
        sigma = self.p.sigma_factor * np.sqrt(self.wh.prod()) * (self.p.region_px / self.side) / CELL
        self.label = gaussian_label_dft(n, max(sigma, 0.25))
        self.mask = support_mask(n, self.p.filter_support * self.wh * (self.p.region_px / self.side) / CELL)
        self.num = self.model_x = self.peak_mean = None
        self._learn(frame, 1.0)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(centre (2,), scale factor, peak value) of the target in ``frame``; no update."""
        best = None
        for i, s in enumerate(self.scale_factors):
            side = self.side * s
            dx, dy, v = peak(self.response(self._phi(frame, self.centre, side)))
            if s != 1.0:
                v *= self.p.scale_penalty
            if best is None or v > best[3]:
                best = (dx, dy, s, v)
        dx, dy, s, v = best
        step = self.side * s / (self.p.region_px / CELL)  # image pixels per cell
        return self.centre + np.array([dx, dy]) * step, s, v

    def response(self, z: np.ndarray) -> np.ndarray:
        """The filter's response (n, n) to region features ``z`` (C, n, n//2+1) (spectra)."""
        if self.p.filter_support > 0:
            spectrum = (self.filter * z).sum(0)
        else:
            spectrum = (np.conj(self.num) * z).sum(0) / (self.den + self.p.regularization)
        return np.fft.irfft2(spectrum, s=(self.window.shape[0],) * 2)

    def update(self, frame: np.ndarray, events: np.ndarray | None = None) -> np.ndarray:
        """Search and learn ``frame`` (H, W) uint8; ``events`` (2, H, W) the ON / OFF event counts
        since the previous frame (used with ``event_weight`` > 0). Returns the box xywh."""
        self.events = events
        patch = sample_region(frame, self.centre, self.side, self.p.region_px)
        self.usable = float(patch.mean()) * 255.0 >= self.p.min_brightness
        if not self.usable:
            return self.box
        centre, s, v = self.detect(frame)
        if not self._lost(v):
            self.peak_mean = v if self.peak_mean is None else (1 - PEAK_RATE) * self.peak_mean + PEAK_RATE * v
        elif events is not None:
            centre, s, v = self._redetect(frame, events, centre, s, v)
        self.last_peak = v
        scale = 1 + self.p.scale_lr * (s - 1)
        self.centre, self.wh, self.side = centre, self.wh * scale, self.side * scale
        self._learn(frame, self.p.learning_rate)
        return self.box

    def _lost(self, peak_value: float) -> bool:
        """Whether an APS peak counts as the target lost: under ``redetect_ratio`` × the running peak."""
        return self.p.redetect_ratio > 0 and self.peak_mean is not None and peak_value < self.p.redetect_ratio * self.peak_mean

    def _redetect(self, frame: np.ndarray, events: np.ndarray, centre: np.ndarray, s: float, v: float
                  ) -> tuple[np.ndarray, float, float]:
        """(centre, scale, peak) of the best of the detection and a search at the current size
        around each of the interval's densest event blobs (:func:`event_blobs`)."""
        cell_px = self.side / (self.p.region_px / CELL)
        best = max(v, self.p.redetect_accept * self.peak_mean)
        for blob in event_blobs(events, self.wh, self.p.redetect_blobs):
            dx, dy, v_blob = peak(self.response(self._phi(frame, blob, self.side)))
            if v_blob > best:
                centre, s, v, best = blob + np.array([dx, dy]) * cell_px, 1.0, v_blob, v_blob
        return centre, s, v

    def relocate(self, frame: np.ndarray, events: np.ndarray | None = None) -> float:
        """Search ``frame`` (H, W) uint8 at the current size only and move the centre to the
        response peak, without learning: the target between two APS frames, on an event frame
        (``hybrid.event_frames``). ``events`` (2, H, W): the ON / OFF counts from the last APS
        frame to this frame's time, the event channels of this search (used with ``event_weight``
        > 0; None keeps those of the last APS frame). Returns the peak value."""
        if events is not None:
            self.events = events
        dx, dy, v = peak(self.response(self._phi(frame, self.centre, self.side)))
        self.centre = self.centre + np.array([dx, dy]) * (self.side / (self.p.region_px / CELL))
        return v

    def correct(self, centre: np.ndarray) -> None:
        """Move the estimate (e.g. to the fused hybrid estimate) without learning."""
        self.centre = np.asarray(centre, np.float64).copy()

    @property
    def box(self) -> np.ndarray:
        return np.concatenate([self.centre - self.wh / 2, self.wh])
