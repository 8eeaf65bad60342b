"""Shared file helpers: path checks and crash-safe (atomic) output."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import stat
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
    """Check, before any work, that ``path`` can be created as a regular file; raise OutputError
    if not (missing or unwritable folder, a folder, a device node or FIFO at ``path``)."""
    p = pathlib.Path(path)
    parent = p.parent if str(p.parent) else pathlib.Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist: create it or choose another -o path")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable: choose another -o path")
    _check_parent(p, "-o")
    if p.is_dir():
        raise OutputError(f"output {p} is a folder: give a file name")
    special = special_kind(p)
    if special:  # renaming over it would replace the device node or FIFO with a regular file
        raise OutputError(f"output {p} is {special}, not a regular file: give a path to a new file")
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


def temporary_prefix(final: pathlib.Path) -> str:
    """Name start of the temporary sibling of ``final``: hidden, with the writer's process id
    (``.seq.h5.4242.``), so a later writer can tell a dead writer's leftover from a live one's."""
    return f".{final.name}.{os.getpid()}."


def remove_stale_temporaries(final: str | os.PathLike) -> list[pathlib.Path]:
    """Remove the temporaries of ``final`` left by writers that no longer run (killed, crashed).

    Only names of :func:`temporary_prefix`'s form (also nested ones, ``..seq.h5.4242.x.sim.h5.part...``)
    ending in ``.part`` (or ``.part.EXT``) whose process id is not alive on this machine are
    removed; a live writer's temporary is left alone. Returns what was removed.
    """
    final = pathlib.Path(final)
    parent = final.parent if str(final.parent) else pathlib.Path(".")
    marker, removed = f".{final.name}.", []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        at = name.find(marker)
        if not name.startswith(".") or at < 0 or at > 1 or ".part" not in name[at + len(marker):]:
            continue
        pid = name[at + len(marker):].split(".", 1)[0]
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError) as exc:
        return not isinstance(exc, OverflowError)
    return True


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
    remove_stale_temporaries(final)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(final), suffix=suffix, dir=final.parent or ".")
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
def atomic_folder(path: str | os.PathLike, replace: tuple[str, ...] = ()) -> Iterator[pathlib.Path]:
    """Yield an empty temporary folder beside ``path``; rename it to ``path`` if the block succeeds.

    An exception inside the block removes the temporary folder. ``replace``: the names of what
    this folder's writer puts in it (``("network.json", "tensors.safetensors")``); an existing
    folder at ``path`` holding nothing else is replaced, one holding anything else is kept and
    OutputError raised (so only what the tool itself wrote is ever deleted). Without
    ``replace`` an existing non-empty folder makes the rename fail. The folder and everything
    in it get the modes the user's umask gives.
    """
    final = pathlib.Path(path)
    parent = final.parent if str(final.parent) else pathlib.Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist: create it or choose another -o path")
    if replace:
        _check_replaceable(final, replace)
    remove_stale_temporaries(final)
    try:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=temporary_prefix(final), suffix=".part", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create a folder in {parent} ({exc.strerror}): choose another -o path") from None
    try:
        yield tmp
        apply_umask(tmp)
        if replace and final.is_dir() and not final.is_symlink() and any(final.iterdir()):
            _check_replaceable(final, replace)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_replaceable(folder: pathlib.Path, names: tuple[str, ...]) -> None:
    """OutputError unless ``folder`` is absent or a real folder holding only ``names``."""
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise OutputError(f"output {folder} exists and is not a folder this command wrote: choose a new output folder")
    other = sorted(e.name for e in folder.iterdir() if e.name not in names)
    if other:
        raise OutputError(f"output {folder} holds files this command did not write ({', '.join(other[:3])}): "
                          "choose a new output folder")


CONTENT_HASH = "weights_sha256"  # JSON key of a checkpoint's / export's tensor-file SHA-256


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str | None, recorded_in: str | os.PathLike) -> None:
    """InputError unless ``path`` has the SHA-256 ``expected`` (recorded in ``recorded_in``
    when the file was written); files written before hashes were recorded (None) pass."""
    if expected is not None and sha256_file(path) != expected:
        raise InputError(f"{path} does not match the SHA-256 recorded in {recorded_in} (changed or corrupted since it "
                         "was written): restore it from a backup or write it again")


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for neurosim values: numpy arrays/scalars, paths, dataclasses."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


# ------------------------------------------------------------------------------ output policy
# Every verb declares its inputs and outputs (neurosim.cli.add_verb); the shell checks them with
# check_outputs before the verb starts, so a refused output costs no work and writes nothing.

OUTPUT_KINDS = ("file", "folder", "results", "dataset", "run", "file_or_dataset", "into")


@dataclasses.dataclass(frozen=True)
class Output:
    """One output path of a verb and what may happen to whatever is already there.

    ``kind``:

    - ``"file"``: one file, written to a temporary sibling and renamed; an existing file is
      replaced only with ``--overwrite``.
    - ``"folder"``: a folder created whole (``atomic_folder``); an existing one is replaced only
      with ``--overwrite``, and only if it holds nothing but ``marker`` entries (what the verb
      itself writes, e.g. an earlier export); without ``marker`` it must not exist.
    - ``"results"``: a folder the verb writes its files into; an existing non-empty one must
      hold ``marker`` (an earlier result of the verb) and needs ``--overwrite``.
    - ``"dataset"``: a dataset folder that is resumed or added to (never deleted): new, empty,
      or holding ``index.json`` or ``sequences/``.
    - ``"run"``: a training run folder: new or empty, or continued with ``--resume``.
    - ``"file_or_dataset"``: ``"file"`` for names ending in .h5/.hdf5, else ``"dataset"``.
    - ``"into"``: a folder, new or existing, that only gets the ``companions`` files.

    ``dest``: the argparse attribute with the path (None there: nothing written, unless
    ``default(args)`` gives the path). ``companions(path, args)``: further files the verb writes
    with it (``REPORT.md`` beside ``REPORT.json``), checked as ``"file"`` outputs;
    ``companions_replaced``: they replace earlier ones without ``--overwrite`` (a dataset's
    sequence of the same name, which ``data import`` documents as replaced).
    ``inside_inputs``: False where the verb copies an input folder into the output.
    """

    dest: str = "out"
    kind: str = "file"
    option: str = "-o"
    marker: tuple[str, ...] = ()
    companions: Any = None
    companions_replaced: bool = False
    default: Any = None
    inside_inputs: bool = True

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"Output kind {self.kind!r} is not one of {OUTPUT_KINDS}")

    @property
    def offers_overwrite(self) -> bool:
        """Whether the verb needs an ``--overwrite`` flag for this output."""
        return self.kind in ("file", "file_or_dataset", "results") or bool(self.companions) or (
            self.kind == "folder" and bool(self.marker))


INTNET_FILES = ("network.json", "tensors.safetensors")
"""What an integer network folder (neurosim.intnet.save) holds: all an export may replace."""

INTNET_OUTPUT = Output(kind="folder", marker=INTNET_FILES)
"""``-o`` of ``neurosim export``: a folder replaced only with --overwrite, only if it is an export."""


def special_kind(path: str | os.PathLike) -> str | None:
    """'a character device', 'a FIFO', ... if ``path`` (followed through links) is neither a
    regular file nor a folder; None if it is one, or does not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file or folder (same device and inode: through symlinks,
    ``..`` and hard links); False if either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` resolves to ``folder`` or to something below it."""
    inner, outer = pathlib.Path(path).resolve(), pathlib.Path(folder).resolve()
    return inner == outer or outer in inner.parents


def existing_inputs(values: Iterator[Any] | list[Any]) -> list[pathlib.Path]:
    """The paths among ``values`` (strings, paths, lists of them, None) that exist."""
    paths: list[pathlib.Path] = []
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        paths += [pathlib.Path(v) for v in items if isinstance(v, (str, os.PathLike)) and str(v) and os.path.lexists(v)]
    return paths


def check_output(path: str | os.PathLike, spec: Output, inputs: list[pathlib.Path], overwrite: bool = False,
                 resume: bool = False, args: Any = None, companion: bool = False) -> list[pathlib.Path]:
    """Apply the output policy to ``path`` before any work; raise OutputError naming the fix.
    Returns ``path`` and its companion files.

    Refused, whatever the flags: an output that is (or resolves to) one of ``inputs``; a
    folder output that contains an input; a device node, FIFO or socket. Refused unless the
    user asked for it: an existing output (see :class:`Output` for what each kind allows).
    """
    p = pathlib.Path(path)
    opt = f"{spec.option} {path}" if not companion else f"{spec.option}: {path}"
    kind = spec.kind
    if kind == "file_or_dataset":
        kind = "file" if p.suffix.lower() in (".h5", ".hdf5") else "dataset"
    special = special_kind(p)
    if special:
        raise OutputError(f"{opt} is {special}, not a regular {'file' if kind == 'file' else 'folder'}: "
                          "give a path to a new file or folder")
    for source in inputs:
        if same_file(p, source):
            raise OutputError(f"{opt} is the input {source}: choose another output path (nothing was written)")
        if kind == "folder" and p.is_dir() and is_within(source, p):
            raise OutputError(f"{opt} contains the input {source}: choose another output folder")
        if not spec.inside_inputs and os.path.isdir(source) and is_within(p, source):
            raise OutputError(f"{opt} is inside the input folder {source}, which is copied into it: "
                              "choose an output folder outside it")
    if kind == "file":
        _check_file(p, opt, overwrite, companion)
    else:
        _check_folder(p, opt, kind, spec, overwrite, resume)
    written = [p]
    for extra in (spec.companions(p, args) if spec.companions else ()):
        written += check_output(extra, Output(dest=spec.dest, option=spec.option), inputs,
                                overwrite or spec.companions_replaced, companion=True)
    return written


def _check_file(p: pathlib.Path, opt: str, overwrite: bool, companion: bool = False) -> None:
    if p.is_dir():
        raise OutputError(f"{opt} is a folder: give a file name")
    if os.path.lexists(p) and not overwrite:
        raise OutputError(f"{opt} already exists: add --overwrite to replace it, or choose another path")
    if companion:  # written inside or beside the main output, whose folder the verb may create
        _check_parent(p, opt)
    else:
        check_writable(p)


def _check_folder(p: pathlib.Path, opt: str, kind: str, spec: Output, overwrite: bool, resume: bool) -> None:
    if os.path.lexists(p) and not p.is_dir():
        raise OutputError(f"{opt} is a file: give a folder")
    _check_parent(p, opt)
    try:
        entries = sorted(e.name for e in p.iterdir()) if p.is_dir() else []
    except OSError as exc:
        raise OutputError(f"{opt} cannot be read ({exc.strerror}): choose another output folder") from None
    if not p.exists() or (not entries and (kind != "folder" or spec.marker)):
        return
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    if kind == "folder":
        if not spec.marker:
            raise OutputError(f"{opt} already exists: choose a new output folder")
        if not set(entries) <= set(spec.marker):
            raise OutputError(f"{opt} already exists and holds files this command did not write ({shown}): "
                              "choose a new output folder")
        if not overwrite:
            raise OutputError(f"{opt} already exists: add --overwrite to replace it, or choose a new output folder")
    elif kind == "results":
        if not any(m in entries for m in spec.marker):
            raise OutputError(f"{opt} is a folder with other files ({shown}): choose a new or empty output folder")
        if not overwrite:
            raise OutputError(f"{opt} already holds results: add --overwrite to replace them, or choose a new output folder")
    elif kind == "dataset":
        if "index.json" not in entries and "sequences" not in entries:
            raise OutputError(f"{opt} is a folder that is not a dataset ({shown}): choose a new or empty output "
                              "folder (an existing dataset folder is resumed or added to)")
    elif kind == "into":
        return
    elif kind == "run" and not resume:
        raise OutputError(f"{opt} is not empty ({shown}): add --resume to continue the run in it, or choose a new or "
                          "empty output folder")


# room left in a file name for the temporary sibling's affixes (".NAME.PID.RANDOM.part")
TEMP_AFFIX_CHARS = 40


def _check_parent(p: pathlib.Path, opt: str) -> None:
    """The nearest existing folder above ``p`` must be a folder we can create files in (probed:
    permissions alone do not tell, e.g. /proc or a read-only mount for root), and every new name
    must fit the file system with room for the temporary sibling's affixes."""
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{opt}: {parent} is not a folder: choose another output path")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    for part in p.absolute().relative_to(parent).parts:
        if len(os.fsencode(part)) > name_max - TEMP_AFFIX_CHARS:
            raise OutputError(f"{opt}: the name {part[:40]}… is {len(os.fsencode(part))} bytes long, more than "
                              f"{name_max - TEMP_AFFIX_CHARS} this file system allows here: choose a shorter name")
    if p.exists() and os.access(p, os.W_OK):
        return
    # named as a temporary of the first missing name, so a writer killed (SIGKILL) between the
    # two calls leaves a file that the next atomic write of that name clears
    # (remove_stale_temporaries)
    first_new = parent / p.absolute().relative_to(parent).parts[0]
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=temporary_prefix(first_new), suffix=".probe.part")
        try:
            os.close(fd)
        finally:  # also when a SIGTERM handler raises here
            os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{opt}: cannot create files in {parent} ({exc.strerror or exc}): choose another output path") from None


def check_outputs(args: Any, inputs: tuple[str, ...], outputs: tuple[Output, ...]) -> None:
    """Check a verb's declared outputs against its declared inputs (argparse attribute names)
    before it runs; see :func:`check_output`."""
    sources = existing_inputs([getattr(args, name, None) for name in inputs])
    overwrite, resume = bool(getattr(args, "overwrite", False)), bool(getattr(args, "resume", False))
    written: dict[pathlib.Path, str] = {}
    for spec in outputs:
        path = getattr(args, spec.dest, None)
        if path is None and spec.default is not None:
            path = spec.default(args)
        if path is None or str(path) == "":
            continue
        for target in check_output(path, spec, sources, overwrite, resume, args):
            key = target.resolve()
            if key in written:
                raise OutputError(f"{spec.option} {path} would write {target}, which {written[key]} also writes: "
                                  "give each output its own name")
            written[key] = f"{spec.option} {path}"
