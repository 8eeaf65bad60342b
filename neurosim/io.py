"""Shared file helpers: path checks and crash-safe (atomic) output."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import tempfile
import threading
from typing import Any, Iterator

from neurosim.errors import InputError, OutputError


def existing_file(path: str | os.PathLike, what: str = "input file") -> pathlib.Path:
    """Return ``path`` as a Path, or raise InputError if it is not an existing regular file."""
    p = pathlib.Path(path)
    if not p.exists():
        raise InputError(f"{what} {p} does not exist: check the path")
    if not p.is_file():
        raise InputError(f"{what} {p} is not a file: pass a file path")
    return p


def existing_dir(path: str | os.PathLike, what: str = "input folder") -> pathlib.Path:
    """Return ``path`` as a Path, or raise InputError if it is not an existing directory."""
    p = pathlib.Path(path)
    if not p.is_dir():
        raise InputError(f"{what} {p} does not exist or is not a folder: check the path")
    return p


def check_writable(path: str | os.PathLike) -> pathlib.Path:
    """Check, before any work, that ``path`` can be created; raise OutputError if not."""
    p = pathlib.Path(path)
    parent = p.parent if str(p.parent) else pathlib.Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist: create it or choose another -o path")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable: choose another -o path")
    if p.is_dir():
        raise OutputError(f"output {p} is a folder: give a file name")
    return p


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc).

    ``os.umask`` can only read the mask by setting it, so a file another thread creates
    meanwhile would get the wrong mode; /proc/self/status has it read-only (Linux >= 4.7).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode a new output file gets: 0o666 minus the umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """Mode a new output folder gets: 0o777 minus the umask (0o755 under umask 022)."""
    return 0o777 & ~current_umask()


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` and, for a folder, everything below it the modes a plain create would.

    Temporary files and folders (mkstemp, mkdtemp) are created 0o600/0o700 and copied trees
    keep their source's modes; outputs must follow the user's umask like any other file.
    """
    root = pathlib.Path(path)
    fmode, dmode = file_mode(), folder_mode()
    if root.is_dir() and not root.is_symlink():
        for d, dirs, files in os.walk(root):
            for name in files:
                p = os.path.join(d, name)
                if not os.path.islink(p):
                    os.chmod(p, fmode)
            for name in dirs:
                p = os.path.join(d, name)
                if not os.path.islink(p):
                    os.chmod(p, dmode)
        os.chmod(root, dmode)
    elif not root.is_symlink():
        os.chmod(root, fmode)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A crash or exception inside the block removes the temporary file, so no file that looks
    complete is ever left behind. The renamed file has the mode the user's umask gives (like
    ``open(path, "w")``). ``keep_suffix``: the temporary name ends in ``path``'s suffix
    (``.part.mp4``), for writers that choose a container by the file name (OpenCV).
    """
    final = check_writable(path)
    suffix = f".part{final.suffix}" if keep_suffix else ".part"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent or ".")
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        apply_umask(tmp_path)
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = False) -> Iterator[pathlib.Path]:
    """Yield an empty temporary folder beside ``path``; rename it to ``path`` if the block succeeds.

    An exception inside the block removes the temporary folder. ``replace``: an existing
    folder at ``path`` is removed just before the rename (else the rename fails if it is
    not empty). The folder and everything in it get the modes the user's umask gives.
    """
    final = pathlib.Path(path)
    parent = final.parent if str(final.parent) else pathlib.Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist: create it or choose another -o path")
    try:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create a folder in {parent} ({exc.strerror}): choose another -o path") from None
    try:
        yield tmp
        apply_umask(tmp)
        if replace and final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for neurosim values: numpy arrays/scalars, paths, dataclasses."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
