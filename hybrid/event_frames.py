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

import numpy as np

DARK_DN = 8.0


def integrate_events(frame: np.ndarray, counts: np.ndarray, contrast: float, dark_dn: float = DARK_DN) -> np.ndarray:
    """The event frame (H, W) uint8 from an APS ``frame`` (H, W) uint8 and the ``counts`` (2, H, W)
    of ON then OFF events per pixel since it; ``contrast``: C, log intensity per event."""
    log_change = contrast * (counts[0].astype(np.float32) - counts[1].astype(np.float32))
    lit = (frame.astype(np.float32) + np.float32(dark_dn)) * np.exp(log_change) - np.float32(dark_dn)
    return np.clip(np.rint(lit), 0, 255).astype(np.uint8)


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
