"""Event frames: grey frames between two APS frames, integrated from the events since the first.

A DVS pixel fires an ON (OFF) event each time its log intensity rises (falls) by the contrast
threshold C since its last event. So from the APS frame ``I_k`` (DN) at ``t_k`` and the event
counts ``n_ON``, ``n_OFF`` of each pixel in [t_k, t), the intensity at t is, to within one
threshold step per pixel (direct integration; Scheerlinck, Barnes & Mahony, ACCV 2018, whose
complementary filter adds a decay towards the frames that one frame interval does not need):

    log(I(t) + D) = log(I_k + D) + C · (n_ON − n_OFF)
    I(t) = clip((I_k + D) · exp(C · (n_ON − n_OFF)) − D, 0, 255)

``D`` (``dark_dn``) keeps the log finite in black pixels, as a sensor's lin-log knee does.
An event frame shows the scene as it is at t, moved objects included, where the APS frame shows
it at t_k: the online target model (``hybrid.dcf``) searches it to follow the target between two
APS frames (``hybrid.track``, model setting ``event_frames_hz``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

DARK_DN = 8.0
TYPICAL_CONTRAST = 0.25  # log intensity per event of a typical DVS, and the simulator's default threshold


def integrate_events(frame: np.ndarray, counts: np.ndarray, contrast: float | tuple[float, float],
                     dark_dn: float = DARK_DN) -> np.ndarray:
    """The event frame (H, W) uint8 from an APS ``frame`` (H, W) uint8 and the ``counts`` (2, H, W)
    of ON then OFF events per pixel since it; ``contrast``: C, log intensity per event, or a pair
    (C_ON, C_OFF) for a sensor whose two thresholds differ."""
    c_on, c_off = (contrast, contrast) if np.isscalar(contrast) else contrast
    if c_on == c_off:
        log_change = c_on * (counts[0].astype(np.float32) - counts[1].astype(np.float32))
    else:
        log_change = c_on * counts[0].astype(np.float32) - c_off * counts[1].astype(np.float32)
    lit = (frame.astype(np.float32) + np.float32(dark_dn)) * np.exp(log_change) - np.float32(dark_dn)
    return np.clip(np.rint(lit), 0, 255).astype(np.uint8)


@dataclasses.dataclass
class ContrastFit:
    """The contrast C (log intensity per event) of a sequence's events, fitted online from its
    APS frames, for a sensor whose threshold is unknown or whose events are capped.

    Over the pixels that fired in an interval and are unsaturated (0 < I < 255) in both of its
    frames, the frames measure the change ``Δ = log(I_k + D) − log(I_{k−1} + D)`` and the events
    count it, ``n = n_ON − n_OFF ≈ Δ / C``. The count is the noisy, quantized reading, so n is
    regressed on Δ (least squares through 0):

        1 / C = Σ n·Δ / Σ Δ²

    For ideal events this is the threshold (0.24–0.27 on the simulator's C = 0.25 events of the
    real tuning clips). Events capped at one per pixel per event frame (FE240hz's ``stack240``,
    VisEvent's event images) each stand for a larger change, and the fit says how much (0.3–1.4
    on the same clips so capped at 240 Hz). Sums run over every interval seen so far."""

    change_sq: float = 0.0  # Σ Δ²
    count_change: float = 0.0  # Σ n·Δ
    dark_dn: float = DARK_DN

    def add(self, before: np.ndarray, after: np.ndarray, counts: np.ndarray) -> None:
        """One interval: the APS frames (H, W) uint8 at its ends and its event ``counts`` (2, H, W), ON then OFF."""
        n = counts[0].astype(np.float32) - counts[1].astype(np.float32)
        used = (n != 0) & (before > 0) & (before < 255) & (after > 0) & (after < 255)
        log_dn = np.log(np.arange(256, dtype=np.float32) + np.float32(self.dark_dn))
        change = log_dn[after[used]] - log_dn[before[used]]
        self.change_sq += float(np.dot(change, change))
        self.count_change += float(np.dot(n[used], change))

    def contrast(self, default: float, low: float = 0.05, high: float = 2.0) -> float:
        """The fitted C within [``low``, ``high``]; ``default`` until the events agree with the frames' changes."""
        if self.count_change <= 0.0:
            return default
        return float(np.clip(self.change_sq / self.count_change, low, high))


def event_frame_steps(steps: int, per_interval: int) -> np.ndarray:
    """The SNN steps (int, ascending, in 1 .. steps − 1) of a frame interval of ``steps`` steps
    at which its ``per_interval − 1`` event frames are taken, evenly spaced: step j's event frame
    integrates the events up to the start of step j (the end of step j − 1's bin)."""
    if per_interval <= 1 or steps <= 1:
        return np.zeros(0, np.int64)
    js = (np.arange(1, per_interval, dtype=np.int64) * steps) // per_interval
    return np.unique(js[(js >= 1) & (js < steps)])


def frames_per_interval(event_frames_hz: float, aps_rate_hz: float) -> int:
    """Frames per APS interval (the APS frame and the event frames after it) at ``event_frames_hz``:
    round(event_frames_hz / aps_rate_hz), at least 1 (1: the APS frame alone)."""
    if event_frames_hz <= 0:
        return 1
    return max(1, int(round(event_frames_hz / aps_rate_hz)))
