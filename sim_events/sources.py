"""Frame sources: stream luminance frames with µs timestamps from videos, folders and .npz.

``open_frames(path, fps=None, timestamps=None, resize=None)`` returns a :class:`FrameSource`
for

- any OpenCV-readable video (timestamps ``round(i * 1e6 / fps)`` from the container's frame
  rate, or ``fps`` / a timestamps file when given);
- an image folder (``.png .jpg .jpeg .bmp .tif .tiff .pgm .ppm .webp``, natural sort order;
  needs ``fps`` or a timestamps file);
- an NFS-style sequence folder: images (in the folder or one sub-folder such as ``img/``)
  plus a box annotation file, whose boxes are carried (see :func:`read_annotations`);
- an ``.npz`` with ``frames`` (N, H, W) uint8 (float: 0–255 DN; (N, H, W, 3): RGB) and
  ``frame_ts`` (N,) int64 µs, read frame by frame from the archive.

Timestamps file: one value per line; a file of integers is µs, a file with any decimal
point or exponent is seconds (``0.0333``). Blank lines and ``#`` comments are skipped.

Colour becomes luminance with OpenCV's BGR2GRAY weights, Y = 0.299 R + 0.587 G + 0.114 B
(fixed-point, rounded). ``resize=(w, h)`` scales with INTER_AREA (boxes scale with it).

Iterating a source yields ``(t_us: int, frame: uint8 (H, W))`` one frame at a time; a video
is never loaded whole. Bad input raises :class:`neurosim.errors.InputError` — what is cheap
to check (path, type, first frame, timestamps, annotations) when the source is opened, the
rest (truncation, size changes, NaN pixels) during iteration, before the consumer finishes.
"""

from __future__ import annotations

import os
import pathlib
import re
import zipfile
from typing import Iterator, Sequence

import numpy as np

from neurosim.errors import InputError, ParameterError

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # keep FFmpeg's own warnings off stderr

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}
ANNOTATION_NAMES = ("groundtruth_rect.txt", "groundtruth.txt")
Boxes = tuple[np.ndarray, np.ndarray]  # (t_us int64 (N,), xywh float32 (N, 4))


# ------------------------------------------------------------------------------ helpers


def _cv2():
    import cv2

    return cv2


def to_luminance(img: np.ndarray, order: str = "bgr") -> np.ndarray:
    """uint8 luminance (H, W) of a grey, BGR(A) or RGB(A) image (OpenCV BGR2GRAY weights).

    16-bit images are scaled to 8 bits (>> 8).
    """
    cv2 = _cv2()
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return img
    codes = {("bgr", 3): cv2.COLOR_BGR2GRAY, ("bgr", 4): cv2.COLOR_BGRA2GRAY,
             ("rgb", 3): cv2.COLOR_RGB2GRAY, ("rgb", 4): cv2.COLOR_RGBA2GRAY}
    code = codes.get((order, img.shape[2]))
    if code is None:
        raise InputError(f"images with {img.shape[2]} channels are not supported: give grey, RGB or RGBA")
    return cv2.cvtColor(img, code)


MAX_SIDE_PX = 8192  # largest sensor side accepted by --resize (today's largest event sensors: 1280 px)


def parse_resize(value: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"346x260"`` or ``(346, 260)`` → (width, height); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", value)
        if not m:
            raise ParameterError(f"--resize {value!r} is not WIDTHxHEIGHT: write e.g. --resize 346x260")
        value = (int(m.group(1)), int(m.group(2)))
    w, h = (int(v) for v in value)
    if w <= 0 or h <= 0:
        raise ParameterError(f"resize {w}x{h} is impossible: give a positive width and height")
    if max(w, h) > MAX_SIDE_PX:
        raise ParameterError(f"resize {w}x{h} is out of range: give at most {MAX_SIDE_PX} pixels per side "
                             "(a guard against running out of memory; edit MAX_SIDE_PX in sim_events/sources.py to go past it)")
    return w, h


def read_timestamps(path: str | os.PathLike) -> np.ndarray:
    """Frame times (int64 µs) from a text file: integers are µs, decimals are seconds."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise InputError(f"timestamps file {p} does not exist: check the path")
    tokens = []
    for line in p.read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            tokens.append(line.split()[0].rstrip(","))
    if not tokens:
        raise InputError(f"timestamps file {p} is empty: write one time per line (integer µs or decimal seconds)")
    seconds = any(("." in tok or "e" in tok.lower()) for tok in tokens)
    try:
        if seconds:
            vals = np.array([float(tok) for tok in tokens], dtype=np.float64)
            if not np.all(np.isfinite(vals)):
                raise ValueError
            ts = np.round(vals * 1e6).astype(np.int64)
        else:
            ts = np.array([int(tok) for tok in tokens], dtype=np.int64)
    except ValueError:
        raise InputError(f"timestamps file {p} has a line that is not a number: write one time per line (integer µs or decimal seconds)") from None
    check_increasing(ts, f"timestamps file {p}")
    return ts


def check_increasing(ts: np.ndarray, what: str) -> None:
    """Raise InputError naming the first frame whose time does not increase."""
    bad = np.nonzero(np.diff(ts) <= 0)[0]
    if bad.size:
        i = int(bad[0]) + 1
        raise InputError(f"{what}: time of frame {i} ({int(ts[i])} µs) does not increase after frame {i - 1} ({int(ts[i - 1])} µs): fix the timestamps")


def _fps_times(n: int, fps: float) -> np.ndarray:
    return np.round(np.arange(n, dtype=np.float64) * (1e6 / fps)).astype(np.int64)


def _check_fps(fps: float | None) -> float | None:
    if fps is None:
        return None
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise ParameterError(f"--fps {fps} is impossible: give a positive frame rate")
    return fps


def _natural_key(path: pathlib.Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_images(folder: pathlib.Path) -> list[pathlib.Path]:
    """Image files of ``folder`` in natural order (2.png before 10.png)."""
    return sorted((f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file()), key=_natural_key)


# ------------------------------------------------------------------------------ annotations


def _numbers(line: str) -> list[float]:
    return [float(v) for v in re.split(r"[,\s;]+", line.strip()) if v]


def read_annotations(path: str | os.PathLike) -> tuple[np.ndarray | None, np.ndarray]:
    """Boxes of a tracking annotation file → (frame index or None, xywh float32 (N, 4)).

    Formats (0-based top-left x, y, width, height out; NaN where the target is absent):

    - OTB ``groundtruth_rect.txt``: ``x y w h`` per frame, separated by commas, tabs or
      spaces, 1-based pixels → subtract 1 from x and y.
    - VOT ``groundtruth.txt``: 8-value polygons ``x1,y1,...,x4,y4`` → the axis-aligned box
      spanning the corners (min/max); 4-value lines are rectangles ``x,y,w,h`` (0-based, as
      the VOT toolkit writes them); a line ``0`` or NaNs means absent.
    - NFS: ``track_id xmin ymin xmax ymax frame lost occluded generated "label"`` (0-based
      corners, 1-based frame number; lost = 1 → absent); returns the frame indices.

    Zero-size boxes are absent (NaN).
    """
    p = pathlib.Path(path)
    lines = [ln for ln in p.read_text(encoding="utf-8-sig", errors="replace").splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"annotation file {p} is empty: give one box per frame")
    if '"' in lines[0] or len(lines[0].split()) >= 9:
        return _read_nfs(p, lines)
    otb = p.name.lower().startswith("groundtruth_rect")
    boxes = np.full((len(lines), 4), np.nan, dtype=np.float64)
    for i, line in enumerate(lines):
        try:
            v = _numbers(line)
        except ValueError:
            raise InputError(f"annotation file {p} line {i + 1} is not numbers: {line.strip()[:40]!r}") from None
        if len(v) == 4:
            boxes[i] = v
            if otb:
                boxes[i, :2] -= 1.0
        elif len(v) == 8:
            pts = np.asarray(v).reshape(4, 2)
            lo, hi = pts.min(0), pts.max(0)
            boxes[i] = [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]
        elif len(v) == 1 and (v[0] == 0 or np.isnan(v[0])):
            continue
        else:
            raise InputError(f"annotation file {p} line {i + 1} has {len(v)} values: give x y w h (OTB) or 8 polygon values (VOT)")
    return None, _absent_to_nan(boxes)


def _read_nfs(p: pathlib.Path, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    frames, boxes = [], []
    for i, line in enumerate(lines):
        parts = line.split('"')[0].split()
        try:
            _, x0, y0, x1, y1, frame, lost = (float(v) for v in parts[:7])
        except ValueError:
            raise InputError(f"NFS annotation {p} line {i + 1} is not 'id xmin ymin xmax ymax frame lost ...': fix it") from None
        frames.append(int(frame) - 1)
        boxes.append([np.nan] * 4 if lost else [x0, y0, x1 - x0, y1 - y0])
    return np.asarray(frames, dtype=np.int64), _absent_to_nan(np.asarray(boxes, dtype=np.float64))


def _absent_to_nan(boxes: np.ndarray) -> np.ndarray:
    boxes = boxes.astype(np.float32)
    absent = ~np.all(np.isfinite(boxes), axis=1) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    boxes[absent] = np.nan
    return boxes


def find_annotation(folder: pathlib.Path) -> pathlib.Path | None:
    """The box annotation file of a sequence folder: groundtruth_rect.txt, groundtruth.txt,
    OTB's ``groundtruth_rect.1.txt`` (first target of a multi-target sequence), or a single
    NFS-style ``*.txt``; None if there is none."""
    for name in ANNOTATION_NAMES:
        if (folder / name).is_file():
            return folder / name
    multi = sorted(folder.glob("groundtruth_rect.*.txt"), key=_natural_key)  # OTB multi-target: target 1
    if multi:
        return multi[0]
    txts = [f for f in folder.glob("*.txt") if f.is_file() and not f.name.lower().startswith(("timestamps", "frame_ts"))]
    nfs = []
    for f in txts:
        with open(f, errors="replace") as fh:
            first = fh.readline()
        if '"' in first or len(first.split()) >= 9:
            nfs.append(f)
    return nfs[0] if len(nfs) == 1 else None


# ------------------------------------------------------------------------------ sources


class FrameSource:
    """A stream of ``(t_us, frame uint8 (H, W))``; attributes describe the stream.

    ``width``, ``height`` (after resize), ``boxes`` (None or (t_us (N,), xywh float32 (N, 4))),
    ``source`` (what it was opened from), ``num_frames`` (int, or None if unknown).
    """

    width: int
    height: int
    boxes: Boxes | None = None
    source: str = ""
    num_frames: int | None = None

    def __init__(self, source: str, native_size: tuple[int, int], resize: tuple[int, int] | None):
        self.source = source
        self.native_width, self.native_height = native_size
        self._resize = resize
        self.width, self.height = resize if resize else native_size

    def _finish(self, img: np.ndarray, what: str, order: str = "bgr") -> np.ndarray:
        """Luminance, size check against the first frame, then resize."""
        frame = to_luminance(img, order)
        if frame.shape != (self.native_height, self.native_width):
            raise InputError(
                f"{what} is {frame.shape[1]}x{frame.shape[0]}, but the first frame was "
                f"{self.native_width}x{self.native_height}: all frames must have one size")
        if self._resize and self._resize != (self.native_width, self.native_height):
            frame = _cv2().resize(frame, self._resize, interpolation=_cv2().INTER_AREA)
        return np.ascontiguousarray(frame)

    def _scale_boxes(self, t: np.ndarray, xywh: np.ndarray) -> Boxes:
        sx, sy = self.width / self.native_width, self.height / self.native_height
        xywh = xywh * np.array([sx, sy, sx, sy], dtype=np.float32)
        return t.astype(np.int64), xywh.astype(np.float32)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {self.width}x{self.height}, frames={self.num_frames})"


class VideoSource(FrameSource):
    """Frames of an OpenCV-readable video, decoded one at a time."""

    def __init__(self, path: pathlib.Path, fps: float | None, timestamps: np.ndarray | None,
                 resize: tuple[int, int] | None):
        cv2 = _cv2()
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise InputError(f"{path} is not a readable video (unknown type, corrupt or truncated): check the file or convert it to .mp4")
            ok, first = cap.read()
            if not ok or first is None:
                raise InputError(f"video {path} has zero readable frames: check the file (it may be empty or truncated)")
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            native_fps = float(cap.get(cv2.CAP_PROP_FPS))
        finally:
            cap.release()
        super().__init__(str(path), (first.shape[1], first.shape[0]), resize)
        self.path = path
        self.expected_frames = count if count > 0 else None
        if timestamps is not None:
            if self.expected_frames is not None and timestamps.shape[0] != self.expected_frames:
                raise InputError(f"timestamps file has {timestamps.shape[0]} times but video {path} has {self.expected_frames} frames: give one time per frame")
            self.num_frames = int(timestamps.shape[0])
            self._ts = timestamps
            self.fps = None
        else:
            self.fps = fps or (native_fps if np.isfinite(native_fps) and native_fps > 0 else None)
            if self.fps is None:
                raise InputError(f"video {path} does not state its frame rate: pass --fps or --timestamps FILE")
            self.num_frames = self.expected_frames
            self._ts = None

    def _time(self, i: int) -> int:
        if self._ts is not None:
            return int(self._ts[i])
        return int(round(i * 1e6 / self.fps))

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        cv2 = _cv2()
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise InputError(f"video {self.path} can no longer be opened: check the file")
        i = 0
        try:
            while True:
                ok, img = cap.read()
                if not ok or img is None:
                    break
                if self._ts is not None and i >= self._ts.shape[0]:
                    raise InputError(f"video {self.path} has more frames than its {self._ts.shape[0]} timestamps: give one time per frame")
                yield self._time(i), self._finish(img, f"frame {i} of {self.path}")
                i += 1
        finally:
            cap.release()
        expected = self._ts.shape[0] if self._ts is not None else self.expected_frames
        if expected is not None and i < expected:
            what = "timestamps" if self._ts is not None and self.expected_frames is None else "frames"
            raise InputError(f"video {self.path} ended after {i} of its {expected} {what}: the file is truncated or corrupt; re-encode or re-download it")


class ImageFolderSource(FrameSource):
    """Frames from the images of a folder (natural order), optionally with boxes."""

    def __init__(self, folder: pathlib.Path, files: list[pathlib.Path], fps: float | None,
                 timestamps: np.ndarray | None, resize: tuple[int, int] | None,
                 annotation: pathlib.Path | None = None):
        if not files:
            raise InputError(f"folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTS))}): check the path")
        if timestamps is not None:
            if timestamps.shape[0] != len(files):
                raise InputError(f"timestamps file has {timestamps.shape[0]} times but folder {folder} has {len(files)} images: give one time per image")
            ts = timestamps
        elif fps is not None:
            ts = _fps_times(len(files), fps)
        else:
            raise InputError(f"image folder {folder} has no frame rate: pass --fps (e.g. --fps 240) or --timestamps FILE")
        first = _imread(files[0])
        super().__init__(str(folder), (first.shape[1], first.shape[0]), resize)
        self.files, self._ts, self.num_frames = files, ts, len(files)
        self.annotation = annotation
        if annotation is not None:
            idx, xywh = read_annotations(annotation)
            if idx is None:
                if xywh.shape[0] != len(files):
                    raise InputError(f"annotation {annotation} has {xywh.shape[0]} boxes for {len(files)} images: give one box per image")
                idx = np.arange(len(files))
            elif idx.size and (idx.min() < 0 or idx.max() >= len(files)):
                raise InputError(f"annotation {annotation} names frame {int(idx.max()) + 1}, but the folder has {len(files)} images: check the sequence")
            _check_boxes_inside(annotation, idx, xywh, self.native_width, self.native_height)
            self.boxes = self._scale_boxes(ts[idx], xywh)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for i, f in enumerate(self.files):
            yield int(self._ts[i]), self._finish(_imread(f), f"image {f}")


def _check_boxes_inside(annotation: pathlib.Path, idx: np.ndarray, xywh: np.ndarray, width: int, height: int) -> None:
    """Raise InputError for a box that lies wholly outside the image (partly outside is fine)."""
    x, y, w, h = xywh.T
    with np.errstate(invalid="ignore"):
        outside = (x + w <= 0) | (y + h <= 0) | (x >= width) | (y >= height)
    if outside.any():
        k = int(np.nonzero(outside)[0][0])
        raise InputError(f"annotation {annotation}: the box of frame {int(idx[k]) + 1} ({', '.join(f'{v:g}' for v in xywh[k])}) "
                         f"lies outside the {width}x{height} image: fix the box or the annotation format")


def _imread(f: pathlib.Path) -> np.ndarray:
    img = _cv2().imread(str(f), _cv2().IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"image {f} cannot be decoded (corrupt or truncated): replace or delete it")
    return img


class NpzSource(FrameSource):
    """Frames of an ``.npz`` (``frames``, ``frame_ts``), streamed from the archive one by one."""

    def __init__(self, path: pathlib.Path, resize: tuple[int, int] | None, timestamps: np.ndarray | None = None):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError):
            raise InputError(f"{path} is not a readable .npz archive (corrupt or truncated?): re-create it") from None
        with zf:
            names = set(zf.namelist())
            if "frames.npy" not in names:
                raise InputError(f"{path} has no 'frames' array: save frames (N, H, W) uint8 and frame_ts (N,) µs in the .npz")
            shape, dtype, fortran = _npy_header(zf, "frames.npy", path)
            if timestamps is None:
                if "frame_ts.npy" not in names:
                    raise InputError(f"{path} has no 'frame_ts' array: save frame_ts (N,) int64 µs beside frames, or pass --timestamps")
                try:
                    with zf.open("frame_ts.npy") as fh:
                        timestamps = np.lib.format.read_array(fh, allow_pickle=False)
                except (ValueError, OSError, EOFError, zipfile.BadZipFile):
                    raise InputError(f"{path}: frame_ts is unreadable (corrupt or truncated?): re-create the file") from None
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
            raise InputError(f"{path}: frames have shape {shape}; expected (N, H, W) or (N, H, W, 3)")
        if dtype != np.uint8 and dtype.kind != "f":
            raise InputError(f"{path}: frames have dtype {dtype}; save them as uint8 (or float on a 0-255 scale)")
        if fortran:
            raise InputError(f"{path}: frames are stored in Fortran order and cannot be streamed: save np.ascontiguousarray(frames)")
        n = shape[0]
        if n == 0:
            raise InputError(f"{path} has zero frames: give at least two frames")
        timestamps = np.asarray(timestamps)
        if timestamps.ndim != 1 or timestamps.shape[0] != n:
            raise InputError(f"{path}: frame_ts has {timestamps.size} times for {n} frames: give one time per frame")
        if timestamps.dtype.kind == "f":
            if not np.all(np.isfinite(timestamps)):
                raise InputError(f"{path}: frame_ts holds NaN or infinite times: fix frame_ts (int64 µs)")
            timestamps = np.round(timestamps).astype(np.int64)
        elif timestamps.dtype.kind not in "iu":
            raise InputError(f"{path}: frame_ts has dtype {timestamps.dtype}; expected int64 µs")
        timestamps = timestamps.astype(np.int64)
        check_increasing(timestamps, f"{path} frame_ts")
        super().__init__(str(path), (shape[2], shape[1]), resize)
        self.path, self._shape, self._dtype, self._ts = path, shape, dtype, timestamps
        self.num_frames = n

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        frame_bytes = int(np.prod(self._shape[1:])) * self._dtype.itemsize
        with zipfile.ZipFile(self.path) as zf:
            with zf.open("frames.npy") as fh:
                _read_npy_header(fh)
                for i in range(self._shape[0]):
                    try:
                        buf = fh.read(frame_bytes)
                    except (zipfile.BadZipFile, OSError, EOFError):
                        buf = b""
                    if len(buf) != frame_bytes:
                        raise InputError(f"{self.path}: frame {i} is incomplete (truncated archive): re-create the file")
                    img = np.frombuffer(buf, dtype=self._dtype).reshape(self._shape[1:])
                    if self._dtype.kind == "f":
                        if np.isnan(img).any():
                            raise InputError(f"{self.path}: frame {i} has NaN pixels: replace them (e.g. np.nan_to_num) before converting")
                        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
                    yield int(self._ts[i]), self._finish(img, f"frame {i} of {self.path}", order="rgb")


def _read_npy_header(fh) -> tuple:
    """(shape, fortran_order, dtype) of an .npy stream, leaving ``fh`` at the first data byte."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


def _npy_header(zf: zipfile.ZipFile, name: str, path: pathlib.Path):
    try:
        with zf.open(name) as fh:
            shape, fortran, dtype = _read_npy_header(fh)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise InputError(f"{path}: {name} is unreadable (corrupt or truncated?): re-create the file") from None
    if dtype.hasobject:
        raise InputError(f"{path}: {name} holds Python objects, which are never loaded: save a numeric array")
    return shape, dtype, fortran


# ------------------------------------------------------------------------------ entry point


def open_frames(path: str | os.PathLike, fps: float | None = None, timestamps: str | os.PathLike | np.ndarray | None = None,
                resize: str | Sequence[int] | None = None) -> FrameSource:
    """Open a video, image folder, NFS-style sequence folder or frames .npz as a FrameSource.

    ``fps`` overrides a video's frame rate and is required for an image folder unless
    ``timestamps`` (a file path, see :func:`read_timestamps`, or an int64 µs array) is given.
    ``resize`` is ``(width, height)`` or ``"WxH"``. Raises InputError / ParameterError with a
    one-line message naming the file and the fix.
    """
    fps = _check_fps(fps)
    size = parse_resize(resize)
    p = pathlib.Path(path)
    if not p.exists():
        raise InputError(f"input {p} does not exist: check the path")
    ts = None
    if timestamps is not None:
        ts = read_timestamps(timestamps) if isinstance(timestamps, (str, os.PathLike)) else np.asarray(timestamps, dtype=np.int64)
        check_increasing(ts, "timestamps")
    if p.is_dir():
        files = list_images(p)
        folder = p
        if not files:
            subs = [d for d in sorted(p.iterdir()) if d.is_dir() and list_images(d)]
            if len(subs) == 1:
                folder, files = subs[0], list_images(subs[0])
            elif len(subs) > 1:
                raise InputError(f"folder {p} has several image sub-folders ({', '.join(d.name for d in subs[:3])}): pass one of them")
        if ts is None and fps is None and (p / "timestamps.txt").is_file():
            ts = read_timestamps(p / "timestamps.txt")
        ann = find_annotation(p) or (find_annotation(folder) if folder != p else None)
        return ImageFolderSource(folder, files, fps, ts, size, ann)
    if p.suffix.lower() == ".npz":
        return NpzSource(p, size, ts)
    if p.suffix.lower() in IMAGE_EXTS:
        raise InputError(f"{p} is a single image: pass the folder that holds the frames")
    if p.stat().st_size == 0:
        raise InputError(f"{p} is empty (0 bytes): it has zero frames; check the file")
    return VideoSource(p, fps, ts, size)
