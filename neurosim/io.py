"""Shared file helpers: path checks and crash-safe (atomic) output."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import tempfile
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A crash or exception inside the block removes the temporary file, so no file that looks
    complete is ever left behind.
    """
    final = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent or ".")
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
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
