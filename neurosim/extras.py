"""Optional parts of neurosim and the extra that installs each.

A plain ``pip install neurosim`` gives the event simulator and the file formats. The other jobs
need third-party packages that come with an extra, e.g. ``pip install "neurosim[train]"``.
Using a part whose extra is missing raises :class:`~neurosim.errors.MissingExtraError`: one
line naming the missing package, what needed it and the ``pip install`` to run. The ``neurosim``
command prints that line and exits with code 2.

Three ways to use it:

- ``torch = require("torch", "hybrid.train")``: import an optional module or raise.
- ``ensure_installed(["matplotlib"], "neurosim chip estimate --plot")``: check before any work
  (no import), so a command stops before it writes anything.
- ``with translate_missing("hybrid.train"): ...``: any ``import`` of a module of
  :data:`OPTIONAL` that fails inside the block (however deep) becomes the one-line error.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import types
from typing import Iterable, Iterator, Sequence

from neurosim.errors import MissingExtraError

# import name -> (package on PyPI, extras that install it; the first is the default hint)
OPTIONAL: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("torch", ("train",)),
    "tensorboard": ("tensorboard", ("train",)),
    "sklearn": ("scikit-learn", ("train",)),
    "nir": ("nir", ("train", "chip")),
    "matplotlib": ("matplotlib", ("chip", "train")),
    "dask": ("dask", ("dask",)),
    "distributed": ("distributed", ("dask",)),
    "brian2": ("brian2", ("crosscheck",)),
    "norse": ("norse", ("crosscheck",)),
}


def install_hint(modules: str | Sequence[str], prefer: str | None = None) -> str:
    """The ``pip install`` that provides optional ``modules`` (keys of :data:`OPTIONAL`).

    ``prefer`` picks one extra where several provide a module (``nir``: ``train`` or
    ``chip``); without a match, every extra that provides it is named.
    """
    modules = [modules] if isinstance(modules, str) else list(modules)
    choices = [OPTIONAL[m][1] for m in modules]
    if len(modules) == 1 and prefer not in choices[0]:
        return "pip install " + " or ".join(f'"neurosim[{extra}]"' for extra in choices[0])
    extras = dict.fromkeys(prefer if prefer in options else options[0] for options in choices)
    return f'pip install "neurosim[{",".join(extras)}]"'


def missing_extra(modules: str | Sequence[str], feature: str, prefer: str | None = None) -> MissingExtraError:
    """The error for optional ``modules`` (keys of :data:`OPTIONAL`) missing for ``feature``."""
    modules = [modules] if isinstance(modules, str) else list(modules)
    packages = [OPTIONAL[m][0] for m in modules]
    names = packages[0] if len(packages) == 1 else ", ".join(packages[:-1]) + " and " + packages[-1]
    verb = "is" if len(packages) == 1 else "are"
    error = MissingExtraError(f"{feature} needs {names}, which {verb} not installed: {install_hint(modules, prefer)}")
    error.name = modules[0]
    return error


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def ensure_installed(modules: Iterable[str], feature: str, prefer: str | None = None) -> None:
    """Raise MissingExtraError naming every one of ``modules`` that is not installed."""
    missing = [module for module in modules if not is_installed(module)]
    if missing:
        raise missing_extra(missing, feature, prefer)


def require(module: str, feature: str, prefer: str | None = None) -> types.ModuleType:
    """Import optional ``module`` (e.g. ``"matplotlib.pyplot"``) for ``feature``, or raise MissingExtraError."""
    with translate_missing(feature, prefer):
        return importlib.import_module(module)


def missing_optional(exc: BaseException) -> str | None:
    """The key of :data:`OPTIONAL` whose absence caused ``exc``, else None.

    Follows ``exc``'s cause and context (``dask.distributed`` re-raises a missing
    ``distributed`` as a plain ImportError). Only a module that is absent counts: a
    ``ModuleNotFoundError`` for a submodule of an installed package is a broken install,
    not a missing extra.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MissingExtraError):
            return None
        if isinstance(exc, ModuleNotFoundError) and exc.name in OPTIONAL:
            return exc.name
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def translate_missing(feature: str, prefer: str | None = None) -> Iterator[None]:
    """Turn a missing optional module imported inside the block into MissingExtraError."""
    try:
        yield
    except ImportError as exc:
        module = missing_optional(exc)
        if module is None:
            raise
        raise missing_extra(module, feature, prefer) from None


def import_attribute(module: str, name: str, feature: str | None = None) -> object:
    """``getattr(import_module(module), name)`` with a missing extra as MissingExtraError.

    For a package's lazy ``__getattr__`` (PEP 562): ``feature`` defaults to ``module.name``.
    """
    with translate_missing(feature or f"{module}.{name}"):
        return getattr(importlib.import_module(module), name)
