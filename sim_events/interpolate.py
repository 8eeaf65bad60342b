"""Optical-flow frame interpolation for the DVS simulator.

The simulator never renders intermediate frames: it estimates the dense flow f (A→B) of
each frame pair with OpenCV's DIS optical flow and hands it to the pixel model, which reads
the log intensity a pixel p sees at s ∈ [0, 1] of the pair as

    L(p, s) = (1 − s)·L_A(p − s·f(p)) + s·L_B(p + (1 − s)·f(p))

(each frame carried along the flow towards time s, then blended), in adaptive sub-steps of
at most ``max_px_per_step`` pixels of motion and ``max_theta_fraction``·θ of change
(sim_events/pixel.py, sim_events/cpp/dvs.cpp). Where the flow is right, an edge sweeping
over a pixel crosses its levels when it really passes, not at a frame-locked time.

DIS costs ~0.7 ms (ultrafast) to ~1.3 ms (fast) per pair at 346×260 on one core
(docs/explanation/references.md §1).
"""

from __future__ import annotations

import numpy as np

from sim_events.params import FLOW_PRESETS


class FlowEstimator:
    """``FlowEstimator(preset)(a, b) -> (flow float32 (H, W, 2), moving uint8 (H, W))``.

    ``flow``: DIS optical flow from a to b (px), computed only in boxes around the areas
    that changed (:meth:`regions`; zero elsewhere — DIS cost grows with the area, and most of
    a frame is usually still); ``moving``: 1 where a and b differ within ``STILL_RADIUS`` px —
    elsewhere the flow would be DIS noise (~0.2 px) and is not used, so still pixels take the
    pixel model's fast path (a thin object that passes a pixel between two frames without
    touching it at either frame is lost; it is without flow too).
    """

    def __init__(self, preset: str = "ultrafast", scale: float = 1.0):
        import cv2

        self.scale = float(scale)
        if preset not in FLOW_PRESETS:
            raise ValueError(f"unknown flow preset {preset!r}")
        code = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset]
        self._code = code
        self._dis: dict[tuple[int, int], object] = {}  # one DIS per image size: it re-allocates on a size change

    def __call__(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        k = 2 * STILL_RADIUS + 1
        changed = (a != b).view(np.uint8)
        moving = np.ascontiguousarray(cv2.dilate(changed, np.ones((k, k), np.uint8)))
        h, w = a.shape
        flow = np.zeros((h, w, 2), dtype=np.float32)
        for y0, y1, x0, x1, (iy0, iy1, ix0, ix1) in self.regions(changed):
            flow[y0 + iy0:y0 + iy1, x0 + ix0:x0 + ix1] = self._flow(a[y0:y1, x0:x1], b[y0:y1, x0:x1])[iy0:iy1, ix0:ix1]
        return flow, moving

    @staticmethod
    def regions(changed: np.ndarray) -> list[tuple[int, int, int, int, tuple[int, int, int, int]]]:
        """Where to run DIS: boxes (y0, y1, x0, x1) around the changing areas with ``MARGIN`` px of
        context, and inside each the part (rows/cols relative to the box) whose flow is kept.

        The frame is cut into CELL×CELL cells; a cell is active if ≥ MIN_CHANGED of its pixels
        changed (isolated changed pixels are noise that passed the gate: they get no flow, i.e.
        linear interpolation). Connected groups of active cells (grown by one cell) give one box
        each; if the boxes cover more than half the frame, one box is the whole frame.
        """
        import cv2

        h, w = changed.shape
        ch, cw = -(-h // CELL), -(-w // CELL)
        padded = np.zeros((ch * CELL, cw * CELL), np.int32)
        padded[:h, :w] = changed
        counts = padded.reshape(ch, CELL, cw, CELL).sum(axis=(1, 3))
        active = (counts >= MIN_CHANGED).astype(np.uint8)
        if not active.any():
            return []
        active = cv2.dilate(active, np.ones((3, 3), np.uint8))
        n, _, stats, _ = cv2.connectedComponentsWithStats(active, connectivity=8)
        boxes = []
        for x, y, bw, bh, _ in stats[1:]:
            iy0, iy1 = min(y * CELL, h), min((y + bh) * CELL, h)
            ix0, ix1 = min(x * CELL, w), min((x + bw) * CELL, w)
            y0, y1 = _snap(iy0 - MARGIN, iy1 + MARGIN, h)
            x0, x1 = _snap(ix0 - MARGIN, ix1 + MARGIN, w)
            boxes.append((y0, y1, x0, x1, (iy0 - y0, iy1 - y0, ix0 - x0, ix1 - x0)))
        if sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1, _ in boxes) > FULL_FRACTION * h * w:
            return [(0, h, 0, w, (0, h, 0, w))]
        return boxes

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import cv2

        h, w = a.shape
        if self.scale != 1.0:  # flow on a smaller image (DIS cost ~ pixels), scaled back up
            sw, sh = max(1, int(round(w * self.scale))), max(1, int(round(h * self.scale)))
            a = cv2.resize(a, (sw, sh), interpolation=cv2.INTER_AREA)
            b = cv2.resize(b, (sw, sh), interpolation=cv2.INTER_AREA)
        fh, fw = a.shape
        ph, pw = max(0, MIN_SIDE - fh), max(0, MIN_SIDE - fw)
        if ph or pw:  # OpenCV's DIS crashes on images smaller than a few patches: pad them
            a = cv2.copyMakeBorder(a, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
            b = cv2.copyMakeBorder(b, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        dis = self._dis.get(a.shape)
        if dis is None:
            if len(self._dis) > 64:
                self._dis.clear()
            dis = self._dis[a.shape] = cv2.DISOpticalFlow_create(self._code)
        flow = dis.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)[:fh, :fw]
        if self.scale != 1.0:
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow *= np.float32(w / fw), np.float32(h / fh)
        return flow


def _snap(lo: int, hi: int, size: int) -> tuple[int, int]:
    """[lo, hi) grown to a multiple of SNAP px (few distinct box sizes) and moved inside [0, size)."""
    n = min(size, -(-(hi - lo) // SNAP) * SNAP)
    lo = min(max(0, lo), size - n)
    return lo, lo + n


STILL_RADIUS = 2  # px: a pixel keeps its flow if a and b differ within this distance
MIN_SIDE = 48  # px: smaller images are padded (replicated border) before DIS
CELL = 16  # px: cells of the changed-area map
MIN_CHANGED = 32  # changed pixels (of CELL*CELL) that make a cell active
MARGIN = 16  # px of context around each DIS box
SNAP = 32  # px: box sides are multiples of this (or the frame's side)
FULL_FRACTION = 0.75  # if the boxes cover more than this fraction of the frame, use the whole frame
