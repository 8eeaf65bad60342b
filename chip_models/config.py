"""Chip configurations: a many-core neuromorphic chip as one flat dataclass, read from TOML.

Presets live in ``chip_models/presets/<name>.toml`` (``tianjic``, ``tianjicx``, ``generic``),
each figure with its source in a comment. ``--set key=value`` overrides single fields.

Units: bytes, clock cycles, Hz, picojoules (pJ) and watts. A chip is a ``mesh_rows`` ×
``mesh_cols`` mesh of cores; ``chips`` chips are tiled side by side (the mesh becomes
``mesh_rows`` × ``chips·mesh_cols``, inter-chip hops cost the same as on-chip hops — an
assumption). Each core: ``fan_in`` axons × ``fan_out`` neurons, ``memory_bytes`` for weights
and neuron state, a ``mac_rows`` × ``mac_cols`` MAC array (``mac_rows`` inputs times
``mac_cols`` neurons per clock), an axon unit moving ``axon_bytes_per_clock`` and a soma
updating ``soma_neurons_per_clock`` neurons per clock, and an XY router sending
``router_packets_per_clock`` packets of ``packet_bytes`` (``packet_payload_bytes`` of data)
with ``hop_cycles`` per hop.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

from neurosim.config import apply_overrides, check_range, from_dict, load_toml
from neurosim.errors import ParameterError

PRESET_DIR = pathlib.Path(__file__).with_name("presets")


@dataclasses.dataclass(frozen=True)
class ChipConfig:
    """One neuromorphic chip model (see the module docstring for units)."""

    name: str = "generic"
    chips: int = 1
    mesh_rows: int = 16
    mesh_cols: int = 16
    fan_in: int = 256
    fan_out: int = 256
    memory_bytes: int = 65536
    state_bytes_per_neuron: int = 4
    mac_rows: int = 4
    mac_cols: int = 32
    axon_bytes_per_clock: int = 32
    soma_neurons_per_clock: int = 1
    clock_hz: float = 300e6
    packet_bytes: int = 8
    packet_payload_bytes: int = 4
    hop_cycles: int = 1
    router_packets_per_clock: float = 1.0
    energy_per_mac_pj: float = 4.6
    energy_per_sop_pj: float = 0.9
    energy_per_hop_pj: float = 3.0
    static_power_w: float = 0.1

    def __post_init__(self) -> None:
        for f in ("chips", "mesh_rows", "mesh_cols", "fan_in", "fan_out", "memory_bytes", "mac_rows",
                  "mac_cols", "axon_bytes_per_clock", "soma_neurons_per_clock", "packet_bytes",
                  "packet_payload_bytes"):
            if getattr(self, f) <= 0:
                raise ParameterError(f"chip {self.name}: {f} = {getattr(self, f)} must be positive")
        if self.packet_payload_bytes > self.packet_bytes:
            raise ParameterError(f"chip {self.name}: packet_payload_bytes exceeds packet_bytes")
        for f in ("clock_hz", "router_packets_per_clock"):
            if not getattr(self, f) > 0:
                raise ParameterError(f"chip {self.name}: {f} must be positive")
        for f in ("hop_cycles", "energy_per_mac_pj", "energy_per_sop_pj", "energy_per_hop_pj", "static_power_w"):
            if getattr(self, f) < 0:
                raise ParameterError(f"chip {self.name}: {f} must not be negative")
        for f, (low, high) in CHIP_RANGES.items():
            check_range(f"chip {self.name}: {f}", getattr(self, f), low, high,
                        why="the upper bounds lie far past real chips and guard against runaway mapping; "
                        "edit CHIP_RANGES in chip_models/config.py to go past one")

    @property
    def rows(self) -> int:
        """Mesh rows of the whole system."""
        return self.mesh_rows

    @property
    def cols(self) -> int:
        """Mesh columns of the whole system (chips side by side)."""
        return self.mesh_cols * self.chips

    @property
    def cores(self) -> int:
        return self.rows * self.cols


# [low, high] of each ChipConfig number: a Tianjic has 12×13 cores of 256 neurons and 22 KiB.
CHIP_RANGES: dict[str, tuple[float, float]] = {
    "chips": (1, 1024), "mesh_rows": (1, 1024), "mesh_cols": (1, 1024),
    "fan_in": (1, 2**20), "fan_out": (1, 2**20), "memory_bytes": (1, 2**32), "state_bytes_per_neuron": (1, 1024),
    "mac_rows": (1, 4096), "mac_cols": (1, 4096), "axon_bytes_per_clock": (1, 2**20),
    "soma_neurons_per_clock": (1, 2**20), "clock_hz": (1, 1e12), "packet_bytes": (1, 4096),
    "packet_payload_bytes": (1, 4096), "hop_cycles": (0, 1e6), "router_packets_per_clock": (1e-6, 1e6),
    "energy_per_mac_pj": (0, 1e9), "energy_per_sop_pj": (0, 1e9), "energy_per_hop_pj": (0, 1e9),
    "static_power_w": (0, 1e6),
}


def presets() -> list[str]:
    """Names of the built-in chip presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_chip(name_or_path: str, overrides: Sequence[str] = (), extra: dict[str, Any] | None = None) -> ChipConfig:
    """A preset name (:func:`presets`) or a TOML file, then ``extra`` values and ``overrides``
    (``"KEY=VALUE"`` strings, e.g. ``"chips=2"``) → ChipConfig. ParameterError on an unknown
    chip or field."""
    path = pathlib.Path(name_or_path)
    if path.suffix == ".toml":
        values = load_toml(path)
    elif (PRESET_DIR / f"{name_or_path}.toml").is_file():
        values = load_toml(PRESET_DIR / f"{name_or_path}.toml")
    else:
        raise ParameterError(f"chip {name_or_path!r} is unknown: use a preset ({', '.join(presets())}) or a .toml file")
    values.update(extra or {})
    return from_dict(ChipConfig, apply_overrides(values, list(overrides)))
