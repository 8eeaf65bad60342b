"""Tracking a whole sequence: one unit per frame interval, a box at every SNN step.

For frame k the S×S search crop is centred on the current estimate (see ``hybrid.data``);
the unit's T boxes are shifted back to image pixels, and the last one is the
estimate the next crop is centred on. The ANN template is taken once from the first frame at
the given first box; with ``target_model="dcf"`` the online target model (``hybrid.dcf``) is
learned at the first frame instead and, at every later frame, searches around the current
(fused) estimate, learns the frame (with the events since the previous frame when
``target_events`` > 0 and the variant is ``full``), and gives the unit its ANN box. With
``event_frames_hz`` > 0 (variant ``full``) it then follows the target through the interval on
event frames (``hybrid.event_frames``: the APS frame brightened and darkened by the events since
it), and the unit gets a box from each. Boxes are clamped to the image (centre inside, size
2 px .. image size).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from hybrid.data import Track, aps_rate, bins_per_frame, crop_origin, make_unit
from hybrid.event_frames import TYPICAL_CONTRAST, ContrastFit, event_frame_steps, frames_per_interval, integrate_events
from neurosim.errors import InputError


@dataclasses.dataclass
class TrackResult:
    """Boxes (N, 4) image xywh at times (N,) µs, ground truth at those times, timing."""

    name: str
    boxes: np.ndarray
    times: np.ndarray
    gt: np.ndarray
    seconds: float
    steps: int
    frames: int

    @property
    def steps_per_second(self) -> float:
        return self.steps / max(self.seconds, 1e-9)


def check_first_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """The first box as float (4,); InputError unless it is finite, positive and inside the image."""
    box = np.asarray(box, np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise InputError(f"first box {box.tolist()} must be 4 finite numbers x,y,w,h: pass --box x,y,w,h")
    x, y, w, h = box
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width + 0.5 or y + h > height + 0.5:
        raise InputError(f"first box {x:g},{y:g},{w:g},{h:g} is outside the {width}x{height} image: give a box inside it (--box x,y,w,h)")
    return box


def clamp_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes (N, 4) with sizes in [2, image size] and centres inside the image."""
    b = boxes.copy()
    b[:, 2] = np.clip(b[:, 2], 2.0, width)
    b[:, 3] = np.clip(b[:, 3], 2.0, height)
    c = np.clip(b[:, :2] + b[:, 2:] / 2, 0, [width, height])
    b[:, :2] = c - b[:, 2:] / 2
    return b


def track_sequence(model, track: Track, first_box: np.ndarray | None = None, max_frames: int | None = None,
                   threads: int = 1) -> TrackResult:
    """Run ``model`` (a DashNet) over ``track`` from ``first_box`` (default: the GT at frame 0).

    ``threads``: torch intra-op threads during tracking (default 1: batch-1 tensors are small, and
    on a busy machine OpenMP synchronization costs more than a second thread gains)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            return _track(model, track, first_box, max_frames)
    finally:
        torch.set_num_threads(old)


def event_frame_boxes(dcf, track: Track, k: int, times: np.ndarray, shift: np.ndarray, per_interval: int,
                      contrast: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The target model's box at every step of frame interval k, (T, 1, 4) float32 crop pixels
    (image box − ``shift``), and where it is new, (T,) bool: the APS frame's box from step 0 on,
    then each event frame's (``per_interval − 1`` of them, hybrid.event_frames) from its step on.
    ``times`` (T,): the steps' bin ends, µs. Each search's event channels (with ``event_weight``
    > 0) are the events since the APS frame, the counts its event frame integrates. Moves ``dcf``
    along (no learning). Also returns those counts (2, H, W), from the APS frame's time to the
    last returned time (µs), which the next APS frame's event channels continue instead of
    counting again."""
    steps = len(times)
    boxes = np.repeat((dcf.box - shift)[None, None], steps, axis=0).astype(np.float32)
    fresh = np.zeros(steps, bool)
    fresh[0] = True
    counts = np.zeros((2, track.height, track.width), np.float32)
    t_prev = int(track.frame_t[k])
    for j in event_frame_steps(steps, per_interval):
        t_j = int(times[j - 1])
        counts += track.event_counts(t_prev, t_j)
        t_prev = t_j
        event_frame = integrate_events(track.frames[k], counts, contrast)
        dcf.relocate(event_frame, counts if dcf.p.event_weight > 0 else None)
        boxes[j:, 0] = dcf.box - shift
        fresh[j] = True
    return boxes, fresh, counts, t_prev


def frame_contrast(event_contrast: float, track: Track, capped_contrast: float = 1.0
                   ) -> tuple[float | tuple[float, float], ContrastFit | None]:
    """(C, fit) for the event frames of ``track``: the model's ``event_contrast`` where it is set
    (> 0); else the ON / OFF thresholds its file says made the events (a simulated sequence); else
    ``capped_contrast`` for events read from event frames (at most one per pixel and frame);
    else the typical 0.25 with a :class:`ContrastFit` that refines it from the second frame
    interval on (a recording of raw events from a sensor of unknown threshold)."""
    if event_contrast > 0:
        return event_contrast, None
    if track.contrast is not None:
        return track.contrast, None
    if track.event_frame_hz is not None:
        return capped_contrast, None
    return TYPICAL_CONTRAST, ContrastFit()


def interval_counts(track: Track, k: int, counted: list | None) -> np.ndarray:
    """The event counts (2, H, W) of frame interval k − 1 (from APS frame k − 1 to frame k): the
    ``counted`` part that interval's event frames integrated ([counts, until µs]) plus the rest."""
    t0, t1 = int(track.frame_t[k - 1]), int(track.frame_t[k])
    if counted is None:
        return track.event_counts(t0, t1)
    counts, until = counted
    return counts + track.event_counts(until, t1)


def make_target_model(cfg, with_events: bool):
    """The online target model (``hybrid.dcf``) of a ``target_model = "dcf"`` configuration: the
    filter, or its re-scoring by representatives (``target_reps``), with the event channels at
    weight ``target_events`` and re-detection on event blobs (``target_redetect``) when
    ``with_events``."""
    from hybrid.dcf import DCFParams, DCFTracker

    params = DCFParams(event_weight=cfg.target_events if with_events else 0.0,
                       redetect_ratio=cfg.target_redetect if with_events else 0.0)
    if cfg.target_reps == "off":
        return DCFTracker(params)
    from hybrid.target_reps import RepDCFTracker

    return RepDCFTracker(params, negatives=cfg.target_reps == "np", min_ratio=cfg.target_min_ratio)


def _track(model, track: Track, first_box, max_frames) -> TrackResult:
    cfg = model.cfg
    S, W = cfg.search_size, cfg.warmup_bins
    bins = bins_per_frame(cfg.snn_rate_hz, aps_rate(track))
    if W > bins:
        from neurosim.errors import ParameterError

        raise ParameterError(f"model.warmup_bins {W} is more than the {bins} SNN steps of a frame interval of {track.name} "
                             f"({aps_rate(track):g} Hz APS at {cfg.snn_rate_hz:g} Hz): use at most {bins}")
    if first_box is None:
        first_box = track.box_at(np.array([track.frame_t[0]]))[0]
    box = check_first_box(first_box, track.width, track.height)
    model.eval()
    z_ann = dcf = None
    t0 = time.perf_counter()
    with_events = model.uses_attention and cfg.target_events > 0
    if model.uses_ann and cfg.target_model == "dcf":
        dcf = make_target_model(cfg, with_events)
        dcf.init(track.frames[0], box)
    elif model.uses_ann:
        x0, y0 = crop_origin(box, S)
        unit = make_unit(track, 0, (x0, y0), S, bins, 0)
        tb = torch.tensor([[box[0] - x0, box[1] - y0, box[2], box[3]]], dtype=torch.float32)
        z_ann = model.template(torch.from_numpy(unit["frame"][None]), tb)
    per_interval = frames_per_interval(cfg.event_frames_hz, aps_rate(track)) if dcf is not None and model.uses_attention else 1
    contrast, fit = frame_contrast(cfg.event_contrast, track, cfg.capped_contrast) if per_interval > 1 else (None, None)
    boxes, times, steps = [], [], 0
    counted = None  # (counts, until µs) of the previous interval's events, from its event frames
    n = len(track.frame_t) if max_frames is None else min(max_frames, len(track.frame_t))
    for k in range(n):
        x0, y0 = crop_origin(box, S)
        unit = make_unit(track, k, (x0, y0), S, bins, W)
        shift = np.array([x0, y0, 0, 0], np.float64)
        ann_estimate, ann_fresh = None, True
        if dcf is not None:
            if k:
                dcf.correct(box[:2] + box[2:] / 2)
                events = interval_counts(track, k, counted) if with_events or fit is not None else None
                dcf.update(track.frames[k], events if with_events else None)
                if fit is not None:
                    fit.add(track.frames[k - 1], track.frames[k], events)
                    contrast = fit.contrast(TYPICAL_CONTRAST)
                ann_fresh = dcf.usable
            ann_estimate = torch.from_numpy((dcf.box - shift)[None].astype(np.float32))
        ann_steps = counted = None
        if per_interval > 1 and ann_fresh:
            step_boxes, step_fresh, *counted = event_frame_boxes(dcf, track, k, unit["times"], shift, per_interval,
                                                                 contrast)
            ann_estimate, ann_steps = torch.from_numpy(step_boxes), torch.from_numpy(step_fresh)
        batch = {
            "frame": torch.from_numpy(unit["frame"][None]),
            "events": torch.from_numpy(unit["events"][None]),
            "start_box": torch.from_numpy((box - shift)[None].astype(np.float32)),
        }
        out = model(batch, z_ann=z_ann, ann_estimate=ann_estimate, ann_fresh=ann_fresh, ann_steps=ann_steps)["boxes"][:, 0].double().numpy() + shift
        out = clamp_boxes(out, track.width, track.height)
        boxes.append(out)
        times.append(unit["times"])
        steps += len(unit["times"])
        box = out[-1]
    seconds = time.perf_counter() - t0
    boxes_a, times_a = np.concatenate(boxes), np.concatenate(times)
    return TrackResult(track.name, boxes_a, times_a, track.box_at(times_a), seconds, steps, n)
