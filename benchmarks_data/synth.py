"""A procedural high-speed tracking benchmark that needs no download.

Each sequence is rendered from the pieces of :mod:`sim_events.scene` (textures, masks,
trajectories, compositing) and converted like real data (events from every input frame,
APS frames at ``aps_rate_hz``, a box at every input frame):

- **background**: smooth value-noise texture (static camera);
- **target**: a textured ellipse or rectangle, 20–40 px, moving fast (300–1200 px/s) along an
  erratic path (:func:`sim_events.scene.random_trajectory` with a fast-turning heading,
  bouncing off the borders), with **scale change** (a log-scale random walk, factor 0.6–1.6);
- **distractors**: ``n_distractors`` objects that *look like the target* — its texture mirrored
  with a small brightness offset, the same shape, a similar size — each on its own independent
  path at ``distractor_speed_px_s`` (default 0–120 px/s: look-alikes at rest or drifting
  slowly, while the tracked object is the fast one — NFS-style clips are chosen for their fast
  target);
- **occluder**: a textured vertical bar drifting slowly across the frame, drawn on top;
- **lighting change**: a global gain g(t) = 1 + a·sin(2π f t + φ) (a = ``lighting``,
  f ∈ [0.5, 2] Hz) applied to every frame;
- **motion blur**: each input frame is the mean of ``subframes`` renders over its 1/fps
  interval (a 240 fps camera's shutter); each APS frame is the mean of ``aps_exposure_frames``
  input frames centred on its time. The default, 1, is the NFS-DAVIS construction: an APS frame
  *is* one 240 fps video frame (exposure 1/240 s ≈ 4.2 ms, within the few-ms exposures of DAVIS
  APS frames in daylight; at 1000 px/s ~4 px of blur). Larger values model long indoor exposures
  (5 frames ≈ 21 ms, ~20 px of blur at 1000 px/s).

What each sensor sees: an APS frame shows the target sharply enough to find it (absolute
position) but only every 33 ms, and it also shows the look-alikes; the events (from every
240 fps frame, µs timestamps) carry the fast target's motion continuously (relative position)
and come mostly from the moving target, not from the resting look-alikes, but vanish when the
target stops. Between two 30 Hz APS frames the target travels 10–40 px and turns.

Boxes are exact: the box of frame k is the mean over its sub-frames of the target's
sub-pixel top-left position and integer size. Everything is a function of
(config, seed): the same inputs give bit-identical frames, events and boxes.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable, Iterator

import numpy as np

from benchmarks_data.build import BuildOptions, _default_params, frame_times_us, run_build, simulate_with_boxes
from benchmarks_data.layouts import SequenceSpec
from neurosim.config import check_range
from neurosim.errors import ParameterError


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Size and difficulty of the synthetic sequences (px, fps, px/s, fractions).

    Ranges: :data:`SYNTH_RANGES` (checked by :meth:`check`, e.g. ``n_distractors`` in [0, 100]).
    """

    width: int = 240
    height: int = 180
    n_frames: int = 240
    fps: float = 240.0
    subframes: int = 4
    aps_exposure_frames: int = 1  # input frames per APS exposure (1 = one 240 fps frame, ≈ 4.2 ms)
    n_distractors: int = 3
    distractor_speed_px_s: tuple[float, float] = (0.0, 120.0)  # look-alikes' own, independent speeds
    target_size_px: tuple[int, int] = (20, 40)
    speed_px_s: tuple[float, float] = (300.0, 1200.0)
    turn_rad_s: float = 8.0
    scale_range: tuple[float, float] = (0.6, 1.6)
    scale_rate: float = 0.8
    occluder: bool = True
    lighting: float = 0.3

    def check(self) -> None:
        """Raise ParameterError for an impossible configuration or a value outside :data:`SYNTH_RANGES`."""
        for name in ("distractor_speed_px_s", "target_size_px", "speed_px_s", "scale_range"):
            if len(getattr(self, name)) != 2:
                raise ParameterError(f"parameter synth.{name} = {list(getattr(self, name))} must be a pair [low, high]")
        if self.width < 32 or self.height < 32:
            raise ParameterError(f"synthetic sensor {self.width}x{self.height} is too small: give at least 32x32")
        if self.n_frames < 2:
            raise ParameterError(f"--frames {self.n_frames} is too few: give at least 2")
        if self.fps < 240:
            raise ParameterError(f"--fps {self.fps} is below 240: the benchmark is rendered at 240 fps or more")
        if self.subframes < 1 or self.aps_exposure_frames < 1 or self.n_distractors < 0:
            raise ParameterError("subframes and aps_exposure_frames must be >= 1 and n_distractors >= 0")
        lo, hi = self.distractor_speed_px_s
        if not (0 <= lo <= hi):
            raise ParameterError(f"distractor_speed_px_s {self.distractor_speed_px_s} must be [low, high] with 0 <= low <= high (px/s)")
        if max(self.target_size_px) * max(self.scale_range) >= min(self.width, self.height) - 2:
            raise ParameterError(f"target size {self.target_size_px} x scale {self.scale_range} does not fit {self.width}x{self.height}")
        for name, (low, high) in SYNTH_RANGES.items():
            values = getattr(self, name)
            for v in values if isinstance(values, tuple) else (values,):
                check_range(f"synth.{name}", v, low, high,
                            why="the bounds guard against runaway time and memory; to go past one edit SYNTH_RANGES in benchmarks_data/synth.py")


# [low, high] of each SynthConfig number (both ends of a range pair); generous for real use.
SYNTH_RANGES: dict[str, tuple[float, float]] = {
    "width": (32, 8192), "height": (32, 8192),  # px
    "n_frames": (2, 1_000_000),
    "fps": (240, 100_000),
    "subframes": (1, 64),
    "aps_exposure_frames": (1, 10_000),
    "n_distractors": (0, 100),
    "distractor_speed_px_s": (0, 1e5),
    "target_size_px": (1, 8192),
    "speed_px_s": (0, 1e5),
    "turn_rad_s": (0, 1000),
    "scale_range": (0.01, 100),
    "scale_rate": (0, 100),
    "lighting": (0, 1),
}


@dataclasses.dataclass
class _Object:
    texture: np.ndarray  # base texture at the largest scale (H, W) float32
    mask: np.ndarray
    base_size: tuple[int, int]  # (w, h) at scale 1
    path: np.ndarray  # (n_sub, 2) top-left of the largest extent
    scale: np.ndarray  # (n_sub,)
    cache: dict = dataclasses.field(default_factory=dict)  # (w, h) -> resized (texture, mask)


class SynthSequence:
    """One synthetic sequence as a frame source (``width``, ``height``, ``num_frames``,
    ``boxes``, ``source``; iterating yields ``(t_us, frame uint8 (H, W))``)."""

    def __init__(self, config: SynthConfig, seed: int):
        from sim_events.scene import ellipse_mask, noise_texture, random_texture, random_trajectory, rect_mask

        config.check()
        self.config, self.seed = config, int(seed)
        c = config
        rng = np.random.default_rng(seed)
        self.width, self.height, self.num_frames = c.width, c.height, c.n_frames
        self.source = f"synth(seed={seed}, {c.width}x{c.height}, {c.n_frames} frames at {c.fps:g} fps)"
        n_sub = c.n_frames * c.subframes
        sub_fps = c.fps * c.subframes
        self.background = noise_texture(rng, c.height, c.width, scale=float(rng.uniform(8.0, 20.0)), lo=50.0, hi=200.0)
        smax = c.scale_range[1]
        bw, bh = (int(v) for v in rng.integers(c.target_size_px[0], c.target_size_px[1] + 1, 2))
        big = (int(np.ceil(bw * smax)), int(np.ceil(bh * smax)))
        tex = random_texture(rng, big[1], big[0], lo=20.0, hi=235.0)
        ellipse = bool(rng.random() < 0.5)
        shape = ellipse_mask if ellipse else rect_mask
        objs = []
        for k in range(1 + c.n_distractors):
            if k == 0:
                t, size = tex, (bw, bh)
            else:  # a look-alike: mirrored texture, small brightness offset, similar size
                t = np.clip(tex[:, ::-1] + np.float32(rng.uniform(-15, 15)), 0, 255).astype(np.float32)
                f = rng.uniform(0.85, 1.15)
                size = (max(4, int(round(bw * f))), max(4, int(round(bh * f))))
            ext = (int(np.ceil(size[0] * smax)), int(np.ceil(size[1] * smax)))
            t = _resize(np.ascontiguousarray(t), ext)
            speed = float(rng.uniform(*(c.speed_px_s if k == 0 else c.distractor_speed_px_s)))
            path = random_trajectory(rng, n_sub, sub_fps, c.width, c.height, ext[0], ext[1], speed, c.turn_rad_s)
            objs.append(_Object(t, shape(ext[1], ext[0]), size, path, _scale_walk(rng, n_sub, sub_fps, c)))
        self.objects = objs
        self.occluder = None
        if c.occluder:
            ow = int(rng.integers(c.width // 10, c.width // 5 + 1))
            otex = random_texture(rng, c.height, ow, lo=20.0, hi=235.0)
            speed = float(rng.uniform(40.0, 120.0)) * (1 if rng.random() < 0.5 else -1)
            x0 = float(rng.uniform(0, c.width))
            xs = x0 + speed * np.arange(n_sub) / sub_fps
            xs = np.mod(xs + ow, c.width + ow) - ow  # wraps around
            self.occluder = (otex, np.ones_like(otex), np.stack([xs, np.zeros(n_sub)], axis=1))
        self.gain_phase = float(rng.uniform(0, 2 * np.pi))
        self.gain_freq = float(rng.uniform(0.5, 2.0))
        self.frame_t = frame_times_us(c.n_frames, c.fps)
        self._boxes = self._target_boxes()

    @property
    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """(t_us (N,), xywh float32 (N, 4)) of the target at every frame."""
        return self.frame_t, self._boxes

    def _extent(self, obj: _Object, i: int) -> tuple[float, float, int, int]:
        """Top-left (x, y) and integer size (w, h) of ``obj`` at sub-frame i (centred in its extent)."""
        s = float(obj.scale[i])
        w, h = max(2, int(round(obj.base_size[0] * s))), max(2, int(round(obj.base_size[1] * s)))
        ew, eh = obj.mask.shape[1], obj.mask.shape[0]
        x, y = obj.path[i]
        return x + (ew - w) / 2.0, y + (eh - h) / 2.0, w, h

    def _target_boxes(self) -> np.ndarray:
        c = self.config
        sub = np.array([self._extent(self.objects[0], i) for i in range(c.n_frames * c.subframes)], dtype=np.float64)
        return sub.reshape(c.n_frames, c.subframes, 4).mean(axis=1).astype(np.float32)

    def gain(self, t_us: np.ndarray | float) -> np.ndarray | float:
        """Lighting gain g(t) = 1 + a·sin(2π f t + φ)."""
        return 1.0 + self.config.lighting * np.sin(2 * np.pi * self.gain_freq * np.asarray(t_us) / 1e6 + self.gain_phase)

    def frame(self, k: int) -> np.ndarray:
        """Input frame k (uint8 (H, W)): the mean of its sub-frame renders, times g(t_k)."""
        from sim_events.scene import Sprite, composite

        c = self.config
        acc = np.zeros((c.height, c.width), np.float32)
        for j in range(c.subframes):
            i = k * c.subframes + j
            sprites = []
            for obj in self.objects[1:] + self.objects[:1]:  # target drawn above the distractors
                x, y, w, h = self._extent(obj, i)
                if (w, h) not in obj.cache:  # sizes change slowly: resize each size once
                    obj.cache[(w, h)] = (_resize(obj.texture, (w, h)), _resize(obj.mask, (w, h)))
                tex, mask = obj.cache[(w, h)]
                sprites.append(Sprite(tex, mask, np.array([[x, y]])))
            if self.occluder is not None:
                otex, omask, opath = self.occluder
                sprites.append(Sprite(otex, omask, opath[i:i + 1]))
            acc += composite(self.background, sprites, 0)
        img = acc / np.float32(c.subframes) * np.float32(self.gain(self.frame_t[k]))
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for k in range(self.num_frames):
            yield int(self.frame_t[k]), self.frame(k)


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, tuple(int(v) for v in size), interpolation=cv2.INTER_AREA)


def _scale_walk(rng: np.random.Generator, n: int, fps: float, c: SynthConfig) -> np.ndarray:
    """Scale factor per sub-frame: a log-space random walk (σ = scale_rate per √s), reflected
    into [log s_min, log s_max] and smoothed over ~50 ms."""
    lo, hi = np.log(c.scale_range[0]), np.log(c.scale_range[1])
    steps = rng.normal(0.0, c.scale_rate * np.sqrt(1.0 / fps), n)
    walk = np.cumsum(steps) + rng.uniform(lo, hi)
    k = max(1, int(0.05 * fps))
    walk = np.convolve(np.pad(walk, (k, k), mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
    from sim_events.scene import fold

    return np.exp(lo + fold(walk - lo, hi - lo))


class _ApsExposure:
    """Wraps a SynthSequence: passes frames through and accumulates the long-exposure APS frames."""

    def __init__(self, seq: SynthSequence, aps_every: int):
        self.seq, self.aps_every = seq, aps_every
        self.width, self.height, self.num_frames = seq.width, seq.height, seq.num_frames
        self.source, self.boxes = seq.source, seq.boxes
        m = seq.config.aps_exposure_frames
        n = seq.num_frames
        self.aps_index = np.arange(0, n, aps_every)
        self.lo = np.maximum(self.aps_index - (m - 1) // 2, 0)
        self.hi = np.minimum(self.aps_index + m // 2, n - 1)
        self.acc = np.zeros((len(self.aps_index), seq.height, seq.width), np.float32)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for k, (t, img) in enumerate(self.seq):
            hit = np.nonzero((self.lo <= k) & (k <= self.hi))[0]
            for j in hit:
                self.acc[j] += img
            yield t, img

    def replace_frames(self, h5: Any) -> None:
        """Write the long-exposure APS frames (and their exposure) into the open sequence file."""
        count = (self.hi - self.lo + 1).astype(np.float32)
        frames = np.clip(np.rint(self.acc / count[:, None, None]), 0, 255).astype(np.uint8)
        data = h5["frames/data"]
        if data.shape[0] != frames.shape[0]:
            raise ParameterError(f"simulator wrote {data.shape[0]} APS frames, expected {frames.shape[0]}")
        data[...] = frames
        exposure = count.astype(np.float64) * 1e6 / self.seq.config.fps
        if "frames/exposure_us" in h5:
            h5["frames/exposure_us"][...] = exposure
        else:
            h5["frames"].create_dataset("exposure_us", data=exposure)


def convert_synth(spec: SequenceSpec, config: dict, final: pathlib.Path, params: Any, seed: int,
                  aps_every: int) -> dict[str, Any]:
    """Render and simulate one synthetic sequence into ``final`` (called by the build engine)."""
    cfg = _config_from_dict(config)
    seq = SynthSequence(cfg, seed)
    src = _ApsExposure(seq, aps_every)
    t, xywh = seq.boxes
    return simulate_with_boxes(src, final, params, seed, aps_every, t, xywh, spec, cfg.fps, postprocess=src.replace_frames)


def synth_dataset(out_dir: str | os.PathLike, n_sequences: int = 8, seed: int = 0, config: SynthConfig | None = None,
                  params: Any = None, aps_rate_hz: float = 30.0, workers: int = 1, scheduler: str | None = None,
                  split_seed: int = 0, test_fraction: float = 0.25, val_fraction: float = 0.0,
                  split_list: str | os.PathLike | None = None,
                  progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Generate ``n_sequences`` synthetic sequences ``synth_000 ..`` into ``out_dir``; return the report.

    Same engine as :func:`benchmarks_data.build.build_dataset` (resumable, parallel, Dask);
    sequence i's seed is derived from ``seed`` and its name.
    """
    config = config or SynthConfig()
    config.check()
    if n_sequences < 1:
        raise ParameterError(f"n_sequences={n_sequences} is impossible: give 1 or more")
    specs = [SequenceSpec(f"synth_{i:03d}", "synth", "synth", None, config.fps) for i in range(n_sequences)]
    opts = BuildOptions(float(aps_rate_hz), int(seed), None, None)
    return run_build(specs, out_dir, _default_params(params), opts, workers, scheduler, split_seed, test_fraction,
                     val_fraction, split_list, progress, synth=dataclasses.asdict(config))


def _config_from_dict(d: dict) -> SynthConfig:
    from neurosim.config import from_dict

    return from_dict(SynthConfig, d)
