"""One call per chip job: load a network, map it onto a chip, simulate it, estimate and report.

:func:`estimate_network` and :func:`write_report` are ``neurosim chip estimate``;
:func:`simulate_network` is ``neurosim chip simulate``; :func:`prepare` (network + chip +
mapping) is what ``neurosim chip map`` shows. Inputs are int8 arrays ``(T, *shape)`` per
network input, ``T = frames × steps`` of that input (event bins 0/1, frames 0..127).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from typing import TYPE_CHECKING, Any, Mapping as MappingT, Sequence

import numpy as np

from chip_models.config import ChipConfig, load_chip
from chip_models.mapper import Mapping, map_network
from chip_models.network import load_network
from chip_models.timing import Estimate
from neurosim.errors import InputError, ParameterError
from neurosim.intnet import IntNetwork

if TYPE_CHECKING:
    from chip_models.simulate import SimOptions

Inputs = MappingT[str, np.ndarray]


def prepare(network: str | os.PathLike | IntNetwork, chip: str | ChipConfig = "tianjic", *, dt: float | None = None,
            steps: int = 1, seed: int = 0, overrides: Sequence[str] = (),
            config: str | os.PathLike | None = None) -> tuple[ChipConfig, IntNetwork, Mapping]:
    """The chip, the network and the network mapped onto the chip's cores.

    Args:
        network: an integer network folder (``neurosim.intnet.save``), a ``.nir`` file,
            ``"reference"`` (the built-in DashNet-like network) or an IntNetwork.
        chip: a preset name (:func:`chip_models.presets`: tianjic, tianjicx, generic), a ``.toml``
            file, or a ChipConfig.
        dt: NIR import: time step in seconds (default: the graph's metadata dt, else 1e-3).
        steps: NIR import: time steps per frame (≥ 1).
        seed: seed of the reference network's weights.
        overrides: ``KEY=VALUE`` chip figures that replace the preset's, e.g. ``["chips=2"]``.
        config: a TOML file of chip figures applied before ``overrides``.

    Raises:
        ParameterError: bad ``steps`` / ``dt`` or chip figures. InputError: an unreadable network.
        CapacityError: the network does not fit the chip.
    """
    from neurosim.config import load_toml

    if steps < 1 or (dt is not None and not dt > 0):
        raise ParameterError("--steps must be ≥ 1 and --dt positive")
    if not isinstance(chip, ChipConfig):
        chip = load_chip(str(chip), overrides, load_toml(config) if config else None)
    net = network if isinstance(network, IntNetwork) else load_network(network, dt=dt, steps=steps, seed=seed)
    return chip, net, map_network(net, chip)


def load_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Input arrays from an ``.npz`` file (``numpy.savez``, one array per network input)."""
    import zipfile

    from neurosim.io import existing_file

    p = existing_file(path, "input file")
    try:
        data = np.load(p, allow_pickle=False)
        if not hasattr(data, "files"):
            raise ValueError("a single array, not an .npz archive")
        with data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p} is not a readable .npz file ({exc}): save the inputs with numpy.savez") from None


@dataclasses.dataclass
class ChipReport:
    """A network's estimate on a chip (:func:`estimate_network`).

    ``estimate``: the figures (FPS, latency in s, energy per frame in J, per-layer and
    per-core tables); ``chip``: the chip configuration; ``inputs``: what was run;
    ``simulation_seconds``: wall time of the simulation on this machine.
    """

    estimate: Estimate
    chip: ChipConfig
    inputs: str
    simulation_seconds: float

    @property
    def summary(self) -> dict[str, Any]:
        """The chip-level figures as a flat dict: ``fps``, ``latency_us``, ``energy_per_frame_uj``,
        ``power_mw``, ``cores_used``, ``bottleneck``, … (:func:`chip_models.report.headline`)."""
        from chip_models.report import headline

        return headline(self.estimate)

    def table(self) -> str:
        """The text table ``neurosim chip estimate`` prints."""
        from chip_models.report import table

        return table(self.estimate)

    def extra(self) -> dict[str, Any]:
        """The fields the JSON report adds to the estimate: inputs, chip_config, simulation_seconds."""
        return {"inputs": self.inputs, "chip_config": self.chip.__dict__,
                "simulation_seconds": round(self.simulation_seconds, 3)}


def estimate_network(network: str | os.PathLike | IntNetwork, chip: str | ChipConfig = "tianjic", *,
                     inputs: str | os.PathLike | Inputs | None = None, frames: int = 2, activity: float = 0.1,
                     seed: int = 0, dt: float | None = None, steps: int = 1, overrides: Sequence[str] = (),
                     config: str | os.PathLike | None = None, options: SimOptions | None = None) -> ChipReport:
    """Map, simulate and estimate a network on a chip in one call (``neurosim chip estimate``).

    ``network``, ``chip``, ``dt``, ``steps``, ``seed``, ``overrides`` and ``config`` are those of
    :func:`prepare`; ``seed`` also draws the synthetic inputs.

    Args:
        inputs: an ``.npz`` file or a dict of int8 arrays ``(T, *shape)``, one per network
            input; default: ``frames`` synthetic frames (uniform 0..127) and event bins (1 with
            probability ``activity`` per input and step), drawn with ``seed``.
        frames: synthetic frames to run (≥ 1).
        activity: synthetic event probability per input and step, in [0, 1].
        options: how the simulation runs (:class:`chip_models.simulate.SimOptions`: kernel path,
            threads; the estimate is the same for every choice).

    Returns:
        A :class:`ChipReport`; ``report.summary["fps"]`` etc., or :func:`write_report`.
    """
    from chip_models.reference_net import synthetic_inputs
    from chip_models.simulate import compile as compile_plan
    from chip_models.simulate import simulate
    from chip_models.timing import estimate

    if frames < 1 or not 0 <= activity <= 1:
        raise ParameterError("--frames must be ≥ 1 and --activity within 0..1")
    chip, net, mapping = prepare(network, chip, dt=dt, steps=steps, seed=seed, overrides=overrides, config=config)
    if inputs is None:
        arrays = synthetic_inputs(net, frames, seed, activity)
        what = f"synthetic: {frames} frames, event activity {activity}, seed {seed}"
    elif isinstance(inputs, (str, os.PathLike)):
        arrays, what = load_inputs(inputs), str(inputs)
    else:
        arrays, what = dict(inputs), "arrays"
    t0 = time.perf_counter()
    sim = simulate(compile_plan(mapping, options), arrays)
    est = estimate(mapping, sim)
    return ChipReport(est, chip, what, time.perf_counter() - t0)


def write_report(report: ChipReport, path: str | os.PathLike | None = None,
                 plot: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """Write the files of ``neurosim chip estimate -o PATH --plot PLOT``; return their paths.

    ``path``: the full report as JSON (summary, estimate, per-layer and per-core tables, inputs,
    chip configuration) and, beside it with suffix ``.md``, Markdown tables. ``plot``: a PNG of
    the per-layer phase cycles of the busiest core and the busy cycles per core on the mesh.
    """
    from chip_models import report as rep

    written = []
    if path:
        written += [rep.write_json(report.estimate, path, report.extra()),
                    rep.write_markdown(report.estimate, pathlib.Path(path).with_suffix(".md"))]
    if plot:
        written.append(rep.write_plot(report.estimate, plot, (report.chip.rows, report.chip.cols)))
    return written


def simulate_network(network: str | os.PathLike | IntNetwork, inputs: str | os.PathLike | Inputs,
                     chip: str | ChipConfig = "tianjic", *, check: bool = False, out: str | os.PathLike | None = None,
                     dt: float | None = None, steps: int = 1, seed: int = 0, overrides: Sequence[str] = (),
                     config: str | os.PathLike | None = None, options: SimOptions | None = None) -> dict[str, Any]:
    """Run a network core by core on the chip's int8 kernels (``neurosim chip simulate``).

    ``network``, ``chip``, ``dt``, ``steps``, ``seed``, ``overrides`` and ``config`` are those of
    :func:`prepare`.

    Args:
        inputs: an ``.npz`` file or a dict of int8 arrays ``(T, *shape)`` named as the network inputs.
        check: also run the Python integer reference (``neurosim.intnet.run_reference``) and
            compare the outputs bit for bit.
        out: write the outputs to this ``.npz`` (one int8 array ``(T, *shape)`` per network output).
        options: how the simulation runs (:class:`chip_models.simulate.SimOptions`: kernel path,
            threads; the outputs are the same for every choice).

    Returns:
        ``{"network", "chip", "frames", "cores_used", "seconds", "outputs": {name: shape}}``,
        with ``check`` also ``reference_seconds`` and ``bit_exact``, with ``out`` also ``out``.

    Raises:
        ParameterError: with ``check``, when the chip simulation differs from the reference.
    """
    from chip_models.simulate import compile as compile_plan
    from chip_models.simulate import simulate
    from neurosim.intnet import run_reference
    from neurosim.io import atomic_output

    chip, net, mapping = prepare(network, chip, dt=dt, steps=steps, seed=seed, overrides=overrides, config=config)
    arrays = load_inputs(inputs) if isinstance(inputs, (str, os.PathLike)) else dict(inputs)
    t0 = time.perf_counter()
    sim = simulate(compile_plan(mapping, options), arrays)
    seconds = time.perf_counter() - t0
    summary = {"network": net.name, "chip": chip.name, "frames": sim.frames, "cores_used": len(mapping.tiles),
               "seconds": round(seconds, 4), "outputs": {k: list(v.shape) for k, v in sim.outputs.items()}}
    if check:
        t0 = time.perf_counter()
        ref = run_reference(net, {k: arrays[k] for k in net.inputs})
        summary["reference_seconds"] = round(time.perf_counter() - t0, 4)
        summary["bit_exact"] = all(np.array_equal(ref[k], sim.outputs[k]) for k in ref)
        if not summary["bit_exact"]:
            raise ParameterError("the chip simulation differs from the integer reference: please report this bug")
    if out:
        with atomic_output(out) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **sim.outputs)
        summary["out"] = str(out)
    return summary
