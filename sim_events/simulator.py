"""Video → DVS events: the public API of the simulator.

- :func:`simulate_frames` — the streaming core: ``(t_us, frame)`` pairs in, time-sorted event
  chunks out, one chunk per frame pair (memory independent of the video's length).
- :func:`simulate` — a video / image folder / NFS folder / ``.npz`` (or a FrameSource) to a
  sequence file with events, APS frames every ``aps_every`` input frames and the boxes.

Example::

    from sim_events import simulate
    from sim_events.params import preset
    summary = simulate("video.mp4", "seq.h5", preset("davis346"), seed=0)
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from neurosim.errors import InputError, ParameterError
from sim_events.params import DvsParams

EVENT_CHUNK_DTYPE = np.dtype([("x", np.uint16), ("y", np.uint16), ("t", np.int64), ("p", np.uint8)])


def _pack(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    out = np.empty(len(t), dtype=EVENT_CHUNK_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def _check_frame(t: int, frame: np.ndarray, width: int, height: int, last_t: int | None, index: int) -> np.ndarray:
    """Frame as contiguous uint8 (H, W); InputError on a wrong size, NaN or non-increasing time."""
    frame = np.asarray(frame)
    if frame.shape != (height, width):
        raise InputError(f"frame {index} is {frame.shape[1] if frame.ndim > 1 else '?'}x{frame.shape[0]}, "
                         f"expected {width}x{height}: frames must all have one size (use --resize)")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and not np.all(np.isfinite(frame)):
            raise InputError(f"frame {index} has NaN or infinite pixels: fix the input frames")
        frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    if last_t is not None and t <= last_t:
        raise InputError(f"frame {index} time {t} µs is not after the previous frame's {last_t} µs: "
                         f"timestamps must increase")
    return np.ascontiguousarray(frame)


def conditioned_frames(frames: Iterable[tuple[int, np.ndarray]], width: int, height: int,
                       params: DvsParams) -> Iterator[tuple[int, np.ndarray, Any]]:
    """The input side: check each frame, apply the noise gate and blur, estimate the flow.

    Yields ``(t_us, frame uint8 (H, W), flow)`` where ``flow`` is None for the first frame
    (and without interpolation), else what :class:`~sim_events.interpolate.FlowEstimator`
    returns for (previous frame → this frame). Depends only on the frames and the input
    parameters (noise gate, blur, interpolation), not on the pixel model or the seed.
    """
    from sim_events.interpolate import FlowEstimator
    from sim_events.pixel import NoiseGate

    gate = NoiseGate(params)
    flow_of = FlowEstimator(params.flow_preset, params.flow_scale) if params.interpolation else None
    prev: np.ndarray | None = None
    prev_t: int | None = None
    for index, (t, frame) in enumerate(frames):
        t = int(t)
        frame = _check_frame(t, frame, width, height, prev_t, index)
        cur = gate(frame)
        if params.blur_px > 0:
            cur = _blur(cur, params.blur_px)
        flow = flow_of(prev, cur) if (flow_of is not None and prev is not None) else None
        yield t, cur, flow
        prev, prev_t = cur, t


def events_from_conditioned(conditioned: Iterable[tuple[int, np.ndarray, Any]], width: int, height: int,
                            params: DvsParams, seed: int = 0) -> Iterator[np.ndarray]:
    """The pixel side: event chunks from :func:`conditioned_frames` output (see simulate_frames).

    Start-up (``preroll``, with interpolation): a real pixel has watched the scene before
    the first frame A. Assuming the first pair's motion also held one interval earlier, the
    pixel then saw A_prev(p) = A(p + f(p)) (f the flow A→B); the model runs over that
    virtual pair (A_prev → A) from references drawn anywhere between the thresholds
    (:func:`~sim_events.pixel.initial_state`), its state becomes the state at A, and of its
    events those that arrive (with ``latency_us``) at or after t_A are kept.
    """
    from sim_events.pixel import draw_constants, linlog_lut, pair_events

    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    consts = draw_constants(params, width, height, rng)
    lut = linlog_lut(params.linlog_dn, params.highlight_knee_dn, params.highlight_gain)
    prev = prev_t = state = None
    for index, (t, cur, flow) in enumerate(conditioned):
        if prev is not None:
            if state is None:
                state, early = _start(prev, prev_t, t, flow, consts, params, lut, rng, seed)
                if early is not None and len(early):
                    yield early
            x, y, tt, p = pair_events(prev, cur, prev_t, t, flow, state, consts, params, lut, seed, index - 1)
            yield _pack(x, y, tt, p)
        prev, prev_t = cur, t


PREROLL_PAIR = (1 << 62)  # pair index of the virtual pair before the first frame (own random stream)


def _start(a: np.ndarray, t_a: int, t_b: int, flow: Any, consts, params: DvsParams, lut: np.ndarray,
           rng: np.random.Generator, seed: int):
    """(state at frame A, early events in [t_A, t_A + latency)) — see events_from_conditioned."""
    import cv2

    from sim_events.pixel import initial_state, pair_events

    if flow is None or not params.preroll:
        return initial_state(lut[a], None, consts, params, rng), None
    f, moving = flow
    fm = f * (moving[..., None] > 0)
    h, w = a.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    a_prev = cv2.remap(a, gx + fm[..., 0], gy + fm[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    state = initial_state(lut[a_prev], None, consts, params, rng)
    t_prev = t_a - (t_b - t_a)
    x, y, tt, p = pair_events(a_prev, a, t_prev, t_a, (np.ascontiguousarray(fm), moving), state, consts, params, lut,
                              seed, PREROLL_PAIR)
    keep = tt >= t_a
    return state, _pack(x[keep], y[keep], tt[keep], p[keep])


def simulate_frames(frames: Iterable[tuple[int, np.ndarray]], width: int, height: int,
                    params: DvsParams, seed: int = 0) -> Iterator[np.ndarray]:
    """Stream DVS events from ``(t_us, frame uint8 (H, W))`` pairs.

    Yields one structured array (fields x, y uint16; t int64 µs absolute; p uint8 1 = ON)
    per frame pair, time-sorted; concatenated, the chunks are a sorted stream. The first
    frame sets the pixels' state (see :func:`sim_events.pixel.initial_state`); each later
    frame B with its predecessor A gives the events in [t_A, t_B) (+ ``latency_us``).
    Same frames, parameters and seed → identical events. Memory: O(width·height).
    Bad frames (size change, NaN, non-increasing time) raise InputError when reached.
    """
    params.validate()
    if not (0 <= int(seed) < 2**63):
        raise ParameterError(f"seed {seed} must be an integer in [0, 2^63)")
    return events_from_conditioned(conditioned_frames(frames, width, height, params), width, height, params, seed)


def _blur(frame: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(frame, (0, 0), float(sigma), borderType=cv2.BORDER_REFLECT)


def simulate(source: Any, out_path: str | pathlib.Path, params: DvsParams | None = None, seed: int = 0,
             aps_every: int = 1, progress: Callable[[Iterable], Iterable] | None = None,
             fps: float | None = None, timestamps: Any = None, resize: Any = None) -> dict:
    """Simulate a whole input into a sequence file; return a summary dict.

    ``source``: a path (video, image folder, NFS folder, .npz) or an opened FrameSource.
    APS frames: every ``aps_every``-th input frame (the first included) at its input time.
    Boxes of NFS-style inputs are carried over. The output is written atomically: on any
    error no file is left at ``out_path``.
    """
    import time

    from neurosim.io import check_writable
    from sim_events.formats.sequence import SequenceWriter
    from sim_events.sources import open_frames

    params = params or DvsParams()
    if int(aps_every) < 1:
        raise ParameterError(f"aps_every = {aps_every} must be >= 1 (1 = every input frame)")
    out_path = check_writable(out_path)
    src = open_frames(source, fps=fps, timestamps=timestamps, resize=resize) if isinstance(source, (str, pathlib.Path)) else source
    width, height = int(src.width), int(src.height)
    meta = {"params": params.to_dict(), "seed": int(seed), "aps_every": int(aps_every)}
    stats = {"frames": 0, "aps_frames": 0, "events": 0, "on": 0}
    aps: list[tuple[int, np.ndarray]] = []
    t_first = t_last = None

    def tapped() -> Iterator[tuple[int, np.ndarray]]:
        nonlocal t_first, t_last
        it = iter(src)
        if progress is not None:
            it = iter(progress(it))
        for i, (t, frame) in enumerate(it):
            if i % aps_every == 0:
                aps.append((int(t), np.array(frame, copy=True)))  # the source may reuse its buffer
            stats["frames"] += 1
            t_first = int(t) if t_first is None else t_first
            t_last = int(t)
            yield t, frame

    start = time.perf_counter()
    with SequenceWriter(out_path, width, height, source=str(getattr(src, "source", source)), simulator=meta) as w:
        for chunk in simulate_frames(tapped(), width, height, params, seed):
            if len(aps) >= APS_BATCH:  # frames go to the file in batches (fewer, larger HDF5 writes)
                _flush_aps(w, aps, stats)
            if len(chunk):
                w.add_events(chunk["x"], chunk["y"], chunk["t"], chunk["p"])
                stats["events"] += len(chunk)
                stats["on"] += int(chunk["p"].sum())
        _flush_aps(w, aps, stats)
        if stats["frames"] == 0:
            raise InputError(f"{getattr(src, 'source', source)} has no frames: give a video or folder with at least two frames")
        if stats["frames"] < 2:
            raise InputError(f"{getattr(src, 'source', source)} has only one frame: events need at least two frames")
        boxes = getattr(src, "boxes", None)
        if boxes is not None:
            w.set_boxes(boxes[0], boxes[1])
    elapsed = time.perf_counter() - start
    return {"output": str(out_path), "width": width, "height": height, "frames": stats["frames"],
            "aps_frames": stats["aps_frames"], "events": stats["events"], "on_events": stats["on"],
            "off_events": stats["events"] - stats["on"], "t_first_us": t_first, "t_last_us": t_last,
            "seconds": round(elapsed, 3), "frames_per_second": round(stats["frames"] / max(elapsed, 1e-9), 1),
            "seed": int(seed)}


APS_BATCH = 16  # APS frames buffered before a write


def _flush_aps(writer: Any, aps: list, stats: dict) -> None:
    if not aps:
        return
    t = np.array([a[0] for a in aps], dtype=np.int64)
    frames = np.stack([a[1] for a in aps]).astype(np.uint8)
    writer.add_frames(frames, t)
    stats["aps_frames"] += len(aps)
    aps.clear()
