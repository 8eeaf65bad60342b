"""Parameters from TOML files and ``--set key=value`` overrides, checked against dataclasses.

Every CLI verb reads its parameters the same way: defaults of a dataclass, then a TOML file
(``--config``), then single overrides (``--set``). Unknown keys and values of the wrong type
are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import pathlib
import types
import typing
from typing import Any, Mapping, Sequence, TypeVar

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a core dependency there)
    import tomli as tomllib

from neurosim.errors import InputError, ParameterError
from neurosim.io import existing_file

T = TypeVar("T")


def load_toml(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a TOML file into a dict; raise InputError naming the file on a syntax error."""
    p = existing_file(path, "config file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config file {p} is not valid TOML ({exc}): fix the file") from None


def parse_value(text: str) -> Any:
    """Parse one override value as a TOML literal (``3``, ``0.2``, ``true``, ``[1,2]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(params: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``params`` with each ``dotted.key=value`` of ``overrides`` set."""
    out = _deep_copy(params)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--set {item!r} is not key=value: write e.g. --set contrast_threshold=0.25")
        node = out
        *parents, leaf = key.strip().split(".")
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ParameterError(f"--set {item!r}: {name} is not a table")
        node[leaf] = parse_value(value.strip())
    return out


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``; unknown keys and wrong types raise ParameterError.

    Nested dataclass fields take nested tables. Ints are accepted where floats are expected.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ParameterError(f"unknown parameter {where}{key}: known parameters are {known}")
        kwargs[key] = _coerce(hints[key], value, f"{where}{key}")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):  # every parameter dataclass declares its ranges in check()
        check()
    return obj


def check_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False, why: str = "") -> None:
    """Raise ParameterError unless ``value`` is a finite number in [low, high] ((low, high] if ``low_open``).

    The one range check of every parameter dataclass: the message names the parameter, its
    range and, in ``why``, what the bound guards (how to go past a safety bound).
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        span = f"{'(' if low_open else '['}{_number(low)}, {_number(high)}]"
        label = name if name.startswith("-") else f"parameter {name}"
        why = f" ({why})" if why else ""
        raise ParameterError(f"{label} = {value!r} is out of range: give a finite value in {span}{why}")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (tuples as lists), ready for TOML or JSON."""
    return _plain(dataclasses.asdict(obj))


def _coerce(hint: Any, value: Any, name: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_dict(hint, value, f"{name}.")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, name)
            except ParameterError:
                continue
        raise ParameterError(f"parameter {name} = {value!r} has the wrong type: expected {hint}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParameterError(f"parameter {name} = {value!r} must be a list")
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = args[0] if args else Any
        items = [_coerce(item, v, name) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (type(value) is hint):
        raise ParameterError(f"parameter {name} = {value!r} must be of type {hint.__name__}")
    return value


def _deep_copy(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in d.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
