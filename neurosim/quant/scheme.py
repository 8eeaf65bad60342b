"""Quantization schemes: one table of bit widths per data path (docs/explanation/references.md §3).

A :class:`Scheme` names, for every path of a training step, how many bits it has (``None``
keeps the path in float):

=============== ======================================================================
``w``           weights in the GEMMs, ``scale·C(Q(W/scale, w))`` (scale: a layer constant)
``a``           activations entering a GEMM, a ``a``-bit integer × power of two
``g``           weight gradients, constant quantization CQ (int ``n``, update uses ``n·2^−14``)
``e``           errors entering a GEMM (backward), shift quantization SQ
``error_flagged`` errors leaving a batch norm use the flagged int8 format (``e`` bits + flag)
``e_bn``        errors entering a batch norm's backward (SQ)
``u``           stored weights (the optimizer's copy), on the grid ``scale·2^(1−u)``
``update``      the weight update ΔW itself (EOQ: int8 × power of two, stochastic rounding)
``bn_mean``/``bn_std`` batch-norm statistics; ``bn_xhat`` normalized x̂; ``bn_param`` γ, β;
``bn_grad``     γ/β gradients
``momentum_acc`` the momentum accumulator; ``lr`` the learning rate
=============== ======================================================================

plus ``batchnorm`` (``"wageubn"`` or ``"l1"``: square-root-free, σ = mean|x − μ|),
``momentum_shift`` (momentum ``β = 2^−shift``; WAGEUBN: 2, i.e. 1/4), ``weight_decay`` and
``cq_range`` (the CQ integer range d).

Presets: ``wageubn`` (the published widths), ``eoq`` (BN-free with Fixup, int8 weight
updates, 16-bit stored weights), ``seg8`` (the 8-bit segmentation recipe: L1 batch norm,
16-bit errors into BN) and ``fp32`` (everything float). User schemes are TOML tables of the
same keys, optionally starting from ``base = "<preset>"``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping

from neurosim.errors import ParameterError

BIT_FIELDS = (
    "w", "a", "g", "e", "e_bn", "u", "update", "bn_mean", "bn_std", "bn_xhat", "bn_param",
    "bn_grad", "momentum_acc", "lr",
)
BATCHNORMS = ("wageubn", "l1")
GRAD_MODES = ("constant", "shift")
_SHIFT_MOMENTA = {0.0} | {2.0**-m for m in range(1, 17)} | {1 - 2.0**-m for m in range(1, 17)}


@dataclasses.dataclass(frozen=True)
class Scheme:
    """Bit widths per data path; ``None`` = float. See the module docstring for each field."""

    name: str = "custom"
    w: int | None = 8
    a: int | None = 8
    g: int | None = 8
    e: int | None = 8
    error_flagged: bool = True
    e_bn: int | None = 8
    u: int | None = 24
    update: int | None = None
    batchnorm: str = "wageubn"
    bn_mean: int | None = 16
    bn_std: int | None = 16
    bn_xhat: int | None = 8
    bn_param: int | None = 8
    bn_grad: int | None = 15
    momentum_acc: int | None = 13
    momentum: float = 0.25
    lr: int | None = 10
    weight_decay: float = 1e-4
    cq_range: int | None = None
    grad_mode: str = "constant"

    def __post_init__(self) -> None:
        for f in BIT_FIELDS:
            v = getattr(self, f)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= 32:
                raise ParameterError(
                    f"scheme {self.name!r}: bit width {f} = {v!r} is outside 2-32: use an integer from 2 to 32 (or leave it out for float)"
                )
        if self.batchnorm not in BATCHNORMS:
            raise ParameterError(f"scheme {self.name!r}: batchnorm {self.batchnorm!r} is unknown, use one of {BATCHNORMS}")
        if self.momentum not in _SHIFT_MOMENTA:
            raise ParameterError(
                f"scheme {self.name!r}: momentum {self.momentum} is not a shift: use 0, 2^-m or 1 - 2^-m (e.g. 0.25, 0.5, 0.875)"
            )
        if self.grad_mode not in GRAD_MODES:
            raise ParameterError(f"scheme {self.name!r}: grad_mode {self.grad_mode!r} is unknown, use one of {GRAD_MODES}")
        if self.weight_decay < 0:
            raise ParameterError(f"scheme {self.name!r}: weight_decay {self.weight_decay} must be >= 0")
        if self.cq_range is not None and self.g is not None and not 2 <= self.cq_range <= 2 ** (self.g - 1):
            raise ParameterError(f"scheme {self.name!r}: cq_range {self.cq_range} must be 2..2^(g-1) = {2 ** (self.g - 1)}")

    @property
    def is_float(self) -> bool:
        """True when no GEMM path is quantized (the fp32 preset)."""
        return all(getattr(self, f) is None for f in ("w", "a", "g", "e"))

    def replace(self, **changes: Any) -> "Scheme":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``None`` fields left out, as TOML has no null)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


_FLOAT = {f: None for f in BIT_FIELDS}

PRESETS: dict[str, Scheme] = {
    "wageubn": Scheme(name="wageubn"),
    "eoq": Scheme(name="eoq", grad_mode="shift", momentum=0.875, momentum_acc=16, u=16, update=8),
    "seg8": Scheme(name="seg8", batchnorm="l1", e_bn=16, error_flagged=False),
    "fp32": Scheme(name="fp32", error_flagged=False, weight_decay=0.0, **_FLOAT),
}


def get_scheme(scheme: "str | Scheme | Mapping[str, Any] | pathlib.Path") -> Scheme:
    """A scheme from a preset name, a ``.toml`` path, a mapping of fields, or a Scheme.

    Unknown names raise ParameterError listing the presets.
    """
    if isinstance(scheme, Scheme):
        return scheme
    if isinstance(scheme, Mapping):
        return scheme_from_dict(scheme)
    text = str(scheme)
    if text in PRESETS:
        return PRESETS[text]
    if text.endswith(".toml") or isinstance(scheme, pathlib.Path):
        return load_scheme(text)
    raise ParameterError(f"unknown quantization scheme {text!r}: use one of {', '.join(PRESETS)} or a .toml file")


def scheme_from_dict(values: Mapping[str, Any], where: str = "scheme") -> Scheme:
    """Build a scheme from TOML-like values; ``base`` picks the preset the rest overrides."""
    values = dict(values)
    if "scheme" in values and isinstance(values["scheme"], Mapping):
        values = dict(values["scheme"])
    base = values.pop("base", None)
    start = dataclasses.asdict(get_scheme(base)) if base is not None else dataclasses.asdict(Scheme())
    if base is not None and "name" not in values:
        values["name"] = f"{base}-custom"
    known = {f.name for f in dataclasses.fields(Scheme)}
    for key, value in values.items():
        if key not in known:
            raise ParameterError(f"{where}: unknown key {key!r}; known keys are {', '.join(sorted(known | {'base'}))}")
        if key in BIT_FIELDS and isinstance(value, str) and value.lower() in ("float", "none", "fp32"):
            value = None
        start[key] = value
    return Scheme(**start)


def load_scheme(path: str | pathlib.Path) -> Scheme:
    """Read a user scheme from a TOML file (keys of :class:`Scheme`, optional ``base``; a
    bit width of ``"float"`` keeps that path in float)."""
    from neurosim.config import load_toml

    return scheme_from_dict(load_toml(path), where=str(path))
