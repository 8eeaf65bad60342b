"""A procedural demo scene: textured objects moving fast over a textured background.

Building blocks, each a pure function of an explicit ``numpy.random.Generator``:

- textures: :func:`noise_texture` (smooth value noise), :func:`stripe_texture` (oriented
  sinusoidal stripes), :func:`random_texture` (one of the two);
- shapes: :func:`ellipse_mask`, :func:`rect_mask` (anti-aliased alpha in [0, 1]);
- motion: :func:`random_trajectory` (smooth wandering heading at constant speed, folded
  into the frame so objects bounce off the borders), :func:`fold` (the reflection);
- compositing: :func:`composite` (alpha-blends sprites at sub-pixel positions with bilinear
  shifts — OpenCV ``warpAffine`` on a small patch per sprite, no per-pixel Python loops).

:func:`render_scene` assembles them into a :class:`Scene`, which is also a frame source
(``width``, ``height``, ``num_frames``, ``boxes``, ``source``; iterating yields
``(t_us, frame uint8 (H, W))``), so ``sim_events.simulator.simulate(scene, ...)`` accepts it.
The same arguments and seed give bit-identical frames.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np


def _cv2():
    import cv2

    return cv2


# ------------------------------------------------------------------------------ textures


def noise_texture(rng: np.random.Generator, height: int, width: int, scale: float = 6.0,
                  lo: float = 30.0, hi: float = 225.0) -> np.ndarray:
    """Smooth value noise (H, W) float32 in [lo, hi]: uniform noise on a grid of ``scale`` px,
    bicubically upsampled, plus a quarter-weight octave at ``scale / 3``, then min-max scaled."""
    cv2 = _cv2()
    out = np.zeros((height, width), np.float32)
    for weight, s in ((1.0, scale), (0.25, max(scale / 3.0, 1.0))):
        gh, gw = int(np.ceil(height / s)) + 2, int(np.ceil(width / s)) + 2
        grid = rng.random((gh, gw), dtype=np.float32)
        big = cv2.resize(grid, (int(gw * s), int(gh * s)), interpolation=cv2.INTER_CUBIC)
        out += weight * big[:height, :width]
    out -= out.min()
    out *= (hi - lo) / max(float(out.max()), 1e-6)
    return out + np.float32(lo)


def stripe_texture(rng: np.random.Generator, height: int, width: int, period: float | None = None,
                   angle: float | None = None, lo: float = 30.0, hi: float = 225.0) -> np.ndarray:
    """Oriented sinusoidal stripes (H, W) float32 in [lo, hi]; period (px) and angle (rad)
    drawn from ``rng`` when not given (period 6–16 px)."""
    period = float(rng.uniform(6.0, 16.0)) if period is None else period
    angle = float(rng.uniform(0.0, np.pi)) if angle is None else angle
    phase = float(rng.uniform(0.0, 2 * np.pi))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u = xx * np.float32(np.cos(angle)) + yy * np.float32(np.sin(angle))
    s = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi / period) * u + np.float32(phase))
    return (lo + (hi - lo) * s).astype(np.float32)


def random_texture(rng: np.random.Generator, height: int, width: int, lo: float = 30.0, hi: float = 225.0) -> np.ndarray:
    """Noise or stripes (equal odds), in [lo, hi]."""
    if rng.random() < 0.5:
        return noise_texture(rng, height, width, scale=float(rng.uniform(3.0, 8.0)), lo=lo, hi=hi)
    return stripe_texture(rng, height, width, lo=lo, hi=hi)


# ------------------------------------------------------------------------------ shapes


def ellipse_mask(height: int, width: int) -> np.ndarray:
    """Anti-aliased filled ellipse inscribed in (H, W); alpha float32 in [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ry, rx = height / 2.0, width / 2.0
    r = np.sqrt(((xx + 0.5 - rx) / rx) ** 2 + ((yy + 0.5 - ry) / ry) ** 2)
    edge = 1.0 / max(min(rx, ry), 1.0)  # ~one pixel of soft edge
    return np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0).astype(np.float32)


def rect_mask(height: int, width: int) -> np.ndarray:
    """Filled rectangle (H, W) of ones."""
    return np.ones((height, width), np.float32)


# ------------------------------------------------------------------------------ motion


def fold(x: np.ndarray, length: float) -> np.ndarray:
    """Reflect unbounded coordinates into [0, length] (a triangle wave): bouncing walls."""
    if length <= 0:
        return np.zeros_like(x)
    m = np.mod(x, 2.0 * length)
    return length - np.abs(m - length)


def random_trajectory(rng: np.random.Generator, n_frames: int, fps: float, width: int, height: int,
                      obj_w: int, obj_h: int, speed_px_s: float, turn_rad_s: float = 2.0) -> np.ndarray:
    """Top-left positions (n_frames, 2) float64 (x, y) of an object of obj_w × obj_h px.

    Constant speed ``speed_px_s``; the heading is a random walk (Gaussian increments of
    ``turn_rad_s`` per √s, smoothed); positions bounce off the frame borders (:func:`fold`),
    so the object stays wholly inside the frame.
    """
    dt = 1.0 / fps
    heading0 = rng.uniform(0.0, 2 * np.pi)
    dtheta = rng.normal(0.0, turn_rad_s * np.sqrt(dt), n_frames)
    heading = heading0 + np.cumsum(dtheta)
    step = speed_px_s * dt
    vel = np.stack([np.cos(heading), np.sin(heading)], axis=1) * step
    start = rng.uniform([0.0, 0.0], [max(width - obj_w, 0), max(height - obj_h, 0)])
    raw = start + np.concatenate([np.zeros((1, 2)), np.cumsum(vel[:-1], axis=0)])
    return np.stack([fold(raw[:, 0], width - obj_w), fold(raw[:, 1], height - obj_h)], axis=1)


# ------------------------------------------------------------------------------ compositing


@dataclasses.dataclass
class Sprite:
    """A textured object: ``texture`` (h, w) float32 DN, ``mask`` (h, w) alpha, ``path``
    (n_frames, 2) top-left (x, y) per frame (float, sub-pixel)."""

    texture: np.ndarray
    mask: np.ndarray
    path: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in px."""
        return self.texture.shape[1], self.texture.shape[0]


def composite(background: np.ndarray, sprites: list[Sprite], index: int) -> np.ndarray:
    """Frame ``index``: sprites alpha-blended over ``background`` (H, W) float32, in list
    order (later sprites on top), each shifted to its sub-pixel position with bilinear
    interpolation; returns uint8 (H, W) (rounded, clipped to 0–255)."""
    cv2 = _cv2()
    canvas = background.copy()
    hh, ww = canvas.shape
    for sp in sprites:
        x, y = sp.path[index]
        h, w = sp.texture.shape
        x0, y0 = int(np.floor(x)) - 1, int(np.floor(y)) - 1
        m = np.float32([[1, 0, x - x0], [0, 1, y - y0]])
        size = (w + 3, h + 3)
        tex = cv2.warpAffine(sp.texture, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        alpha = cv2.warpAffine(sp.mask, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        # clip the patch to the canvas
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + size[0], ww), min(y0 + size[1], hh)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        px0, py0 = cx0 - x0, cy0 - y0
        a = alpha[py0:py0 + cy1 - cy0, px0:px0 + cx1 - cx0]
        t = tex[py0:py0 + cy1 - cy0, px0:px0 + cx1 - cx0]
        region = canvas[cy0:cy1, cx0:cx1]
        region += a * (t - region)  # tex was warped unpremultiplied with its mask's support
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ scene


@dataclasses.dataclass
class Scene:
    """A rendered-on-demand scene; iterating yields ``(t_us, frame uint8 (H, W))``.

    ``sprites[target]`` is the tracked target; ``boxes`` gives its (t_us, xywh) per frame.
    """

    background: np.ndarray
    sprites: list[Sprite]
    fps: float
    n_frames: int
    target: int = 0
    source: str = "scene"

    @property
    def width(self) -> int:
        return int(self.background.shape[1])

    @property
    def height(self) -> int:
        return int(self.background.shape[0])

    @property
    def num_frames(self) -> int:
        return self.n_frames

    @property
    def frame_t(self) -> np.ndarray:
        """Frame times (n_frames,) int64 µs: round(i * 1e6 / fps)."""
        return np.round(np.arange(self.n_frames) * (1e6 / self.fps)).astype(np.int64)

    @property
    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """(t_us (N,) int64, xywh (N, 4) float32) of the target: its sprite's extent."""
        sp = self.sprites[self.target]
        w, h = sp.size
        xywh = np.concatenate([sp.path, np.broadcast_to([w, h], sp.path.shape)], axis=1)
        return self.frame_t, xywh.astype(np.float32)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (uint8 (H, W))."""
        return composite(self.background, self.sprites, index)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        ts = self.frame_t
        for i in range(self.n_frames):
            yield int(ts[i]), self.frame(i)

    def frames(self) -> np.ndarray:
        """All frames (N, H, W) uint8 (for short scenes)."""
        return np.stack([self.frame(i) for i in range(self.n_frames)])


def render_scene(width: int = 346, height: int = 260, fps: float = 240.0, n_frames: int = 240,
                 n_objects: int = 3, seed: int = 0, speed_px_s: tuple[float, float] = (250.0, 600.0),
                 size_px: tuple[int, int] = (28, 72)) -> Scene:
    """The default demo scene: ``n_objects`` textured ellipses/rectangles moving fast over a
    noise background; sprite 0 (drawn on top) is the target whose boxes are carried.

    Speeds are drawn uniformly in ``speed_px_s`` (px/s; at 240 fps the default is 1–2.5 px
    per frame), sizes in ``size_px``. Deterministic per ``seed``.
    """
    if width <= 0 or height <= 0 or n_frames <= 0 or fps <= 0 or n_objects <= 0:
        from neurosim.errors import ParameterError

        raise ParameterError(f"scene {width}x{height}, {n_frames} frames at {fps} fps, {n_objects} objects is impossible: give positive values")
    rng = np.random.default_rng(seed)
    background = noise_texture(rng, height, width, scale=float(rng.uniform(10.0, 20.0)), lo=60.0, hi=190.0)
    sprites = []
    for k in range(n_objects):
        w = int(min(rng.integers(size_px[0], size_px[1] + 1), max(width - 2, 1)))
        h = int(min(rng.integers(size_px[0], size_px[1] + 1), max(height - 2, 1)))
        tex = random_texture(rng, h, w, lo=15.0, hi=240.0)
        mask = ellipse_mask(h, w) if rng.random() < 0.5 else rect_mask(h, w)
        speed = float(rng.uniform(*speed_px_s))
        path = random_trajectory(rng, n_frames, fps, width, height, w, h, speed)
        sprites.append(Sprite(tex, mask, path))
    # draw the target (sprite 0) last, so it is on top
    order = sprites[1:] + sprites[:1]
    return Scene(background, order, fps, n_frames, target=len(order) - 1,
                 source=f"scene(seed={seed}, {width}x{height}, {n_frames} frames at {fps:g} fps, {n_objects} objects)")
