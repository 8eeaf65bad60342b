"""Lazily loaded public APIs of neurosim's packages (PEP 562).

Each package's ``__init__.py`` lists its public names in a table ``_LAZY = {name: module}``
and calls :func:`attach`; a name's module is imported on first use, so ``import hybrid`` loads
neither torch nor the C++ kernels. Example (a package ``pkg``)::

    _LAZY = {"simulate": "pkg.simulator"}
    __all__ = sorted(_LAZY)
    __getattr__, __dir__ = attach(__name__, _LAZY)

A public function may share its name with the submodule that defines it (``hybrid.train`` is
the function :func:`hybrid.train.train`; the module's other names come with
``from hybrid.train import TrainConfig``). The package attribute is then always the function:
Python's import machinery, which sets ``pkg.<submodule>`` on the package when the submodule is
first imported, does not replace a public name.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable

from neurosim.extras import import_attribute


_MACHINERY = {"attach", "TYPE_CHECKING", "annotations"}  # names an __init__ imports to set itself up


class _Package(types.ModuleType):
    """A package whose public names are not replaced by same-named submodules."""

    def __setattr__(self, name: str, value: Any) -> None:
        lazy = self.__dict__.get("_LAZY", {})
        if name in lazy and isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            return
        super().__setattr__(name, value)


def attach(package: str, lazy: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for ``package`` (a name in ``sys.modules``).

    Args:
        package: the package's ``__name__``.
        lazy: public name -> module that defines an attribute of that name.

    Returns:
        ``(__getattr__, __dir__)`` to assign at module level. ``__getattr__`` imports the
        name's module on first use and caches the value in the package; any other name raises
        AttributeError.
    """
    module = sys.modules[package]
    module.__class__ = _Package

    def __getattr__(name: str) -> Any:
        target = lazy.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = import_attribute(target, name, f"{package}.{name}")  # a missing extra: one line naming it
        module.__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted((set(module.__dict__) - _MACHINERY) | set(lazy))

    return __getattr__, __dir__

