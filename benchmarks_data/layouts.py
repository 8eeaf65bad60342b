"""Find the sequences of a tracking collection and read their box annotations.

A *source* is either one sequence or a folder of sequences. Recognised sequence layouts:

========  ==========================================================================  =========
layout    files                                                                        frame rate
========  ==========================================================================  =========
``nfs``   ``NAME/240/NAME/*.jpg`` + ``NAME/240/NAME.txt`` (NFS annotation lines:       240 fps
          ``id xmin ymin xmax ymax frame lost occluded generated label``)
``otb``   ``NAME/img/*.jpg`` + ``NAME/groundtruth_rect.txt`` (``x y w h``, 1-based,    30 fps
          separated by commas, tabs or spaces)
``vot``   ``NAME/{img,color,.}/*.jpg`` + ``NAME/groundtruth.txt`` (8-value polygons   30 fps
          → the axis-aligned box around them, or 4-value ``x y w h`` rectangles)
``video`` ``NAME.mp4`` (any OpenCV video) + ``NAME.txt`` (``x y w h`` per frame,       the video's
          0-based pixels, commas or whitespace)
========  ==========================================================================  =========

Boxes are returned as float32 ``(N, 4)`` arrays of 0-based top-left ``x, y, w, h`` in pixels;
a target marked absent (all-zero rows, non-positive size, NaN, or NFS ``lost`` = 1) is NaN.

Discovery is cheap and never fails on one broken sequence: problems (missing annotation, an
empty folder, ...) are checked by :func:`check_sequence`, which the dataset builder calls per
sequence so that one bad sequence is reported with its reason and the rest go on.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import numpy as np

from neurosim.errors import InputError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"}
DEFAULT_FPS = {"nfs": 240.0, "otb": 30.0, "vot": 30.0, "frames": 30.0}


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """One sequence of a collection, as discovered (not yet validated).

    ``frames`` is the frame folder or video file, ``annotation`` the box file (None when none
    was found), ``fps`` the input frame rate (None for a video: read from the file).
    """

    name: str
    layout: str
    frames: str
    annotation: str | None
    fps: float | None


def discover(source: str | pathlib.Path, fps: float | None = None) -> list[SequenceSpec]:
    """All sequences under ``source`` (one sequence folder, one video, or a folder of them).

    ``fps`` overrides the layout's frame rate. Sequences are sorted by name; names are unique
    (a clash gets ``_2``, ``_3`` ... appended in sorted path order). Raises InputError only when
    ``source`` does not exist or holds nothing that could be a sequence.
    """
    root = pathlib.Path(source)
    if not root.exists():
        raise InputError(f"dataset source {root} does not exist: give a sequence folder, a video or a folder of them")
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"dataset source {root} is not a video or a folder: give a sequence folder or a video")
        specs = [_video_spec(root, fps)]
    else:
        spec = _folder_spec(root, fps)
        if spec is not None:
            specs = [spec]
        else:
            specs = []
            for child in sorted(root.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_dir():
                    specs.append(_folder_spec(child, fps) or SequenceSpec(child.name, "frames", str(child), None, fps or DEFAULT_FPS["frames"]))
                elif child.suffix.lower() in VIDEO_SUFFIXES:
                    specs.append(_video_spec(child, fps))
    if not specs:
        raise InputError(
            f"dataset source {root} holds no sequences: expected sequence folders (OTB img/ + groundtruth_rect.txt, "
            "VOT groundtruth.txt, NFS 240/) or videos with box files"
        )
    return _unique_names(specs)


def check_sequence(spec: SequenceSpec) -> tuple[int, np.ndarray]:
    """Validate ``spec`` cheaply and return ``(num_frames or -1 for videos, boxes (N, 4))``.

    Raises InputError naming the problem: missing annotation file, empty frame folder,
    unparsable annotation, box count different from the frame count.
    """
    frames = pathlib.Path(spec.frames)
    if spec.layout == "synth":
        return -1, np.zeros((0, 4), np.float32)
    if spec.layout == "video":
        if not frames.is_file():
            raise InputError(f"video {frames} does not exist")
        n_frames = -1
    else:
        n_frames = len(image_files(frames))
        if n_frames == 0:
            raise InputError(f"sequence {spec.name}: frame folder {frames} has no images")
    if spec.annotation is None:
        raise InputError(
            f"sequence {spec.name}: missing annotation file (expected groundtruth_rect.txt, groundtruth.txt, "
            "an NFS 240/NAME.txt or a NAME.txt beside the video)"
        )
    boxes = read_boxes(spec.annotation, spec.layout)
    if n_frames >= 0 and len(boxes) != n_frames:
        raise InputError(
            f"sequence {spec.name}: {len(boxes)} boxes in {pathlib.Path(spec.annotation).name} but {n_frames} frames: "
            "the annotation must have one box per frame"
        )
    return n_frames, boxes


def image_files(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """Image files of ``folder`` in natural order (:func:`sim_events.sources.list_images`); [] if no folder."""
    from sim_events.sources import list_images

    folder = pathlib.Path(folder)
    return list_images(folder) if folder.is_dir() else []


def read_boxes(path: str | pathlib.Path, layout: str = "") -> np.ndarray:
    """Read a box file into float32 ``(N, 4)`` 0-based ``x, y, w, h`` (NaN = absent).

    Parsing is :func:`sim_events.sources.read_annotations` (OTB ``groundtruth_rect*.txt`` 1-based
    → 0-based; VOT 8-value polygons → the axis-aligned box around them; NFS lines
    ``id xmin ymin xmax ymax frame lost ...``; other files ``x y w h`` 0-based). ``layout`` is
    only used in messages.
    """
    from sim_events.sources import read_annotations

    path = pathlib.Path(path)
    try:
        _, boxes = read_annotations(path)
    except OSError as exc:
        raise InputError(f"annotation file {path} cannot be read ({exc.strerror}): check the file") from None
    return boxes


def _folder_spec(folder: pathlib.Path, fps: float | None) -> SequenceSpec | None:
    """The layout of one folder if it is a sequence, else None."""
    name = folder.name
    nfs = folder / "240"
    if nfs.is_dir():
        frames = nfs / name if (nfs / name).is_dir() else next((d for d in sorted(nfs.iterdir()) if d.is_dir()), nfs)
        ann = nfs / f"{frames.name}.txt"
        if not ann.is_file():
            ann = next(iter(sorted(nfs.glob("*.txt"))), None)
        return SequenceSpec(name, "nfs", str(frames), str(ann) if ann else None, fps or DEFAULT_FPS["nfs"])
    otb = sorted(folder.glob("groundtruth_rect*.txt"))
    if (folder / "img").is_dir() and (otb or not (folder / "groundtruth.txt").is_file()):
        return SequenceSpec(name, "otb", str(folder / "img"), str(otb[0]) if otb else None, fps or DEFAULT_FPS["otb"])
    if (folder / "groundtruth.txt").is_file():
        frames = next((folder / d for d in ("img", "color") if (folder / d).is_dir()), folder)
        return SequenceSpec(name, "vot", str(frames), str(folder / "groundtruth.txt"), fps or DEFAULT_FPS["vot"])
    if otb:
        return SequenceSpec(name, "otb", str(folder), str(otb[0]), fps or DEFAULT_FPS["otb"])
    if image_files(folder):
        return SequenceSpec(name, "frames", str(folder), None, fps or DEFAULT_FPS["frames"])
    return None


def _video_spec(video: pathlib.Path, fps: float | None) -> SequenceSpec:
    ann = next((video.with_suffix(s) for s in (".txt", ".csv") if video.with_suffix(s).is_file()), None)
    return SequenceSpec(video.stem, "video", str(video), str(ann) if ann else None, fps)


def _unique_names(specs: list[SequenceSpec]) -> list[SequenceSpec]:
    seen: dict[str, int] = {}
    out = []
    for s in sorted(specs, key=lambda s: (s.name, s.frames)):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", s.name).strip("._") or "sequence"
        n = seen.get(safe, 0) + 1
        seen[safe] = n
        out.append(dataclasses.replace(s, name=safe if n == 1 else f"{safe}_{n}"))
    return out

