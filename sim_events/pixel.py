"""The DVS pixel model: per-pixel constants, state, and one frame pair → events.

Math (per pixel p; the loop itself runs in C++, ``sim_events/cpp/dvs.cpp``):

- Response: L(DN) = log(DN) for DN ≥ D (``linlog_dn``), else log(D) + (DN − D)/D
  (lin-log: value and slope continuous at D), + g·(DN − K)/(255 − K) above a highlight
  knee K (APS highlight compression undone; off by default). A 256-entry table,
  :func:`linlog_lut`.
- Between frame A (time t_a) and frame B (t_b) the pixel sees, at s = (t − t_a)/(t_b − t_a),

      L_in(s) = (1 − s)·L_A(p − s·f) + s·L_B(p + (1 − s)·f)

  with f the optical flow A→B at p (bilinear sampling; without flow L_in is linear in s).
  The pair is cut into n(p) sub-steps, n = ceil(max(|f|/max_px_per_step,
  max(|L_B − L_A|, |L_B − L_lp|)/(max_theta_fraction·min θ))), clamped to [1, max_substeps].
- Photoreceptor low-pass (``cutoff_hz`` > 0): L_lp += α·(L_in − L_lp) per sub-step with
  α = 1 − exp(−2π f_c Δt), f_c = cutoff_hz·(DN + 20)/275; α is computed at the pixel's DN in
  A and in B and interpolated linearly in between.
- Leak: L_ref −= leak_hz(p)·θ_on(p)·Δt each sub-step.
- Crossings: while L_lp − L_ref ≥ θ_on(p): an ON event at the time where the sub-step's
  linear segment of L_lp reaches L_ref + θ_on, then L_ref += θ_on (OFF mirrored). A
  crossing within ``refractory_us`` of the pixel's last event makes no event.
- Noise: shot-noise events (Poisson, rate shot_noise_rate_hz·2/(1 + DN_B/64), ON/OFF
  equally likely, uniform times), hot pixels (Poisson ON at hot_pixel_rate_hz), then
  Gaussian jitter (σ jitter_us, clipped to the pair's span) and a constant ``latency_us``.
  Random numbers come from a counter-based generator of (seed, pair index, pixel), so the
  stream is identical on every run.

Events of one pair are returned sorted by time (ties in pixel order) and all lie in
[t_a + latency, t_b + latency), so consecutive pairs concatenate into a sorted stream.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim_events.params import DvsParams


class PixelConstants(NamedTuple):
    """Fixed pattern drawn once from the seed: all (H, W) float32."""

    th_on: np.ndarray  # ON threshold θ_on(p), log units
    th_off: np.ndarray  # OFF threshold θ_off(p)
    leak_hz: np.ndarray  # leak event rate of a static pixel
    hot_hz: np.ndarray  # hot-pixel event rate (0 for normal pixels)
    has_hot: bool = False  # any hot pixel at all (the pixel loop skips hot_hz otherwise)
    off_hot_idx: np.ndarray | None = None  # flat indices of OFF hot pixels (int64), or None
    off_hot_hz: np.ndarray | None = None  # their OFF event rates (float64)


class PixelState(NamedTuple):
    """What a pixel remembers between frames: all (H, W), updated in place."""

    ref: np.ndarray  # float32 L_ref, the reference log level
    lp: np.ndarray  # float32 low-passed log intensity L_lp
    last_t: np.ndarray  # int64 µs time of the last event (very negative: none yet)


def linlog_lut(linlog_dn: float, highlight_knee_dn: float = 255.0, highlight_gain: float = 0.0) -> np.ndarray:
    """float32 (256,) table DN → L: log above ``linlog_dn``, linear below (continuous, C¹),
    plus ``highlight_gain``·(DN − K)/(255 − K) above the knee K (APS highlight expansion)."""
    dn = np.arange(256, dtype=np.float64)
    d = float(linlog_dn)
    lut = np.where(dn >= d, np.log(np.maximum(dn, d)), np.log(d) + (dn - d) / d)
    k = float(highlight_knee_dn)
    if highlight_gain and k < 255:
        lut = lut + highlight_gain * np.clip((dn - k) / (255.0 - k), 0.0, None)
    return lut.astype(np.float32)


def draw_constants(params: DvsParams, width: int, height: int, rng: np.random.Generator) -> PixelConstants:
    """Per-pixel thresholds (mismatch, floor), leak rates (log-normal) and hot pixels."""
    shape = (height, width)
    th_on = params.contrast_threshold_on + params.threshold_sigma * rng.standard_normal(shape)
    th_off = params.contrast_threshold_off + params.threshold_sigma * rng.standard_normal(shape)
    th_on = np.maximum(th_on, params.threshold_floor).astype(np.float32)
    th_off = np.maximum(th_off, params.threshold_floor).astype(np.float32)
    if params.leak_rate_hz > 0:
        # log-normal with mean leak_rate_hz: exp(σz − σ²/2)
        s = params.leak_sigma
        leak = params.leak_rate_hz * np.exp(s * rng.standard_normal(shape) - 0.5 * s * s)
    else:
        leak = np.zeros(shape)
    hot = np.zeros(width * height)
    n_hot = int(round(params.hot_pixel_fraction * width * height))
    if n_hot:
        hot[rng.choice(width * height, size=n_hot, replace=False)] = params.hot_pixel_rate_hz
    listed = np.asarray(params.hot_pixels, dtype=np.int64)
    if listed.size and listed.max() >= width * height:
        from neurosim.errors import ParameterError

        raise ParameterError(f"hot_pixels index {int(listed.max())} is outside the {width}x{height} sensor (flat indices "
                             f"y*{width} + x must be below {width * height}): fix hot_pixels or the sensor size")
    hot[listed] = np.asarray(params.hot_pixel_rates_hz, np.float64) if params.hot_pixel_rates_hz else params.hot_pixel_rate_hz
    off_idx = np.asarray(params.off_hot_pixels, dtype=np.int64)
    if off_idx.size and off_idx.max() >= width * height:
        from neurosim.errors import ParameterError

        raise ParameterError(f"off_hot_pixels index {int(off_idx.max())} is outside the {width}x{height} sensor: fix "
                             f"off_hot_pixels or the sensor size")
    off_hz = np.asarray(params.off_hot_pixel_rates_hz, dtype=np.float64) if off_idx.size else None
    return PixelConstants(th_on, th_off, leak.astype(np.float32), hot.reshape(shape).astype(np.float32),
                          bool(np.any(hot > 0)), off_idx if off_idx.size else None, off_hz)


def initial_state(log_a: np.ndarray, flow: np.ndarray | None, consts: PixelConstants, params: DvsParams,
                  rng: np.random.Generator) -> PixelState:
    """State at a first frame (log intensity ``log_a``): L_lp = L_A, L_ref = L_A − u.

    u ~ U(−a·θ_off, a·θ_on) (a = ``initial_offset``): a still pixel's reference is anywhere
    between its thresholds. With ``flow`` (A→B, (H, W, 2)), a pixel that changed over the
    previous interval — it showed L_A(p + f) one frame earlier under constant motion, a
    change d = L_A(p) − L_A(p + f) — fired then with probability min(1, |d|/θ) and its
    reference trails the signal: u ~ U(0, a·θ_on) if d > 0, U(−a·θ_off, 0) if d < 0. (The
    simulator's default start-up, ``preroll``, runs the model itself over that interval
    instead and calls this without flow.)
    """
    a = params.initial_offset
    v = rng.uniform(0.0, 1.0, size=log_a.shape)
    u = a * (v * (consts.th_on + consts.th_off) - consts.th_off)
    if flow is not None:
        import cv2

        w = rng.uniform(0.0, 1.0, size=log_a.shape)
        h, wd = log_a.shape
        gx, gy = np.meshgrid(np.arange(wd, dtype=np.float32), np.arange(h, dtype=np.float32))
        before = cv2.remap(log_a.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        d = log_a.astype(np.float64) - before
        fired = w < np.minimum(1.0, np.abs(d) / np.where(d > 0, consts.th_on, consts.th_off))
        u = np.where(fired & (d > 0), a * v * consts.th_on, np.where(fired & (d < 0), -a * v * consts.th_off, u))
    ref = (log_a - u).astype(np.float32)
    lp = log_a.astype(np.float32).copy()
    last = np.full(log_a.shape, np.iinfo(np.int64).min // 4, dtype=np.int64)
    return PixelState(ref, lp, last)


def pair_events(frame_a: np.ndarray, frame_b: np.ndarray, t_a: int, t_b: int,
                flow: tuple[np.ndarray, np.ndarray] | None, state: PixelState, consts: PixelConstants, params: DvsParams, lut: np.ndarray,
                seed: int, pair_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events of one frame pair: (x uint16, y uint16, t int64 µs, p uint8 1=ON), time-sorted.

    ``frame_a``, ``frame_b``: (H, W) uint8 (after the noise gate); ``flow``: None or
    (flow (H, W, 2) float32 A→B, moving (H, W) uint8 — flow is used only where moving ≠ 0),
    as :class:`sim_events.interpolate.FlowEstimator` returns; ``state`` is updated in place.
    """
    from sim_events import _dvs

    use_flow = flow is not None
    flow, moving = flow if use_flow else (_NO_FLOW, _NO_MASK)
    out = _dvs.simulate_pair(
        frame_a, frame_b, lut, flow, moving, use_flow, state.ref, state.lp, state.last_t,
        consts.th_on, consts.th_off, consts.leak_hz, consts.hot_hz, consts.has_hot, int(t_a), int(t_b),
        float(params.refractory_us), float(params.cutoff_hz), float(params.shot_noise_rate_hz),
        float(params.jitter_us), float(params.latency_us), float(params.max_px_per_step),
        float(params.max_theta_fraction), int(params.max_substeps), float(params.bridge_sigma), int(seed) & 0xFFFFFFFFFFFFFFFF, int(pair_index),
    )
    if consts.off_hot_idx is None:
        return out
    return _with_off_hot(out, consts, int(t_a), int(t_b), float(params.latency_us), frame_a.shape[1], seed, pair_index)


def _with_off_hot(events: tuple, consts: PixelConstants, t_a: int, t_b: int, latency_us: float, width: int,
                  seed: int, pair_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Add Poisson OFF events of the OFF hot pixels in [t_a, t_b) (+ latency) to one pair's
    events; random numbers from (seed, pair index), so chunking does not change them; the
    result stays sorted by time (ties in pixel order)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, int(pair_index) & 0xFFFFFFFFFFFFFFFF, 0x0FF])
    n = rng.poisson(consts.off_hot_hz * (t_b - t_a) * 1e-6)
    pix = np.repeat(consts.off_hot_idx, n)
    t = t_a + np.floor(rng.uniform(0.0, 1.0, len(pix)) * (t_b - t_a)).astype(np.int64) + int(round(latency_us))
    x, y, tt, p = events
    xs = np.concatenate([x, (pix % width).astype(np.uint16)])
    ys = np.concatenate([y, (pix // width).astype(np.uint16)])
    ts = np.concatenate([tt, t])
    ps = np.concatenate([p, np.zeros(len(pix), np.uint8)])
    order = np.lexsort((ys.astype(np.int64) * width + xs, ts))
    return xs[order], ys[order], ts[order], ps[order]


_NO_FLOW = np.zeros((1, 1, 2), dtype=np.float32)
_NO_MASK = np.zeros((1, 1), dtype=np.uint8)


class NoiseGate:
    """Input noise gate: keeps a frame that follows the input only where it changed by more
    than k·σ(DN), σ(DN) = sqrt(read² + gain·DN) — APS read noise makes no DVS events.

    ``NoiseGate(params)(frame) -> uint8 (H, W)`` (the kept frame; the first frame passes).
    With ``noise_gate_sigmas = 0`` frames pass unchanged.
    """

    def __init__(self, params: DvsParams):
        self.k = float(params.noise_gate_sigmas)
        self.read = float(params.aps_read_noise_dn)
        self.gain = float(params.aps_shot_gain)
        self.kept: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.k <= 0:
            return frame
        if self.kept is None or self.kept.shape != frame.shape:
            self.kept = np.ascontiguousarray(frame, dtype=np.uint8).copy()
            return self.kept.copy()
        from sim_events import _dvs

        _dvs.noise_gate(self.kept, np.ascontiguousarray(frame, dtype=np.uint8), self.read, self.gain, self.k)
        return self.kept.copy()
