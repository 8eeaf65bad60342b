"""Demo stage: estimate the network of the earlier stages (or the built-in reference) on Tianjic.

``run(outdir, summary, say, seed)`` writes ``chip/report.json``, ``report.md`` and ``report.png``
into ``outdir`` and returns its part of summary.json. If an earlier stage exported an integer
network (a path under key ``"intnet"`` in ``summary["stages"][<package>]``), that network is
estimated; otherwise the DashNet-like reference network. A network too big for one chip is
estimated on as many chips as it needs (up to 16).
"""

from __future__ import annotations

import pathlib

from chip_models import report
from chip_models.config import load_chip
from chip_models.mapper import map_network
from chip_models.network import load_network
from chip_models.reference_net import synthetic_inputs
from chip_models.simulate import simulate
from chip_models.timing import estimate
from neurosim.errors import CapacityError


def _exported(summary: dict) -> str | None:
    for stage in summary.get("stages", {}).values():
        if isinstance(stage, dict) and stage.get("intnet"):
            return str(stage["intnet"])
    return None


def run(outdir: pathlib.Path, summary: dict, say, seed: int = 0) -> dict:
    spec = _exported(summary) or "reference"
    net = load_network(spec, seed=seed)
    for chips in range(1, 17):
        chip = load_chip("tianjic", [f"chips={chips}"])
        try:
            mapping = map_network(net, chip)
            break
        except CapacityError:
            if chips == 16:
                raise
    sim = simulate(mapping, synthetic_inputs(net, frames=2, seed=seed))
    est = estimate(mapping, sim)
    folder = pathlib.Path(outdir) / "chip"
    folder.mkdir(parents=True, exist_ok=True)
    report.write_json(est, folder / "report.json", {"network_source": spec, "chips": chips})
    report.write_markdown(est, folder / "report.md")
    report.write_plot(est, folder / "report.png", (chip.rows, chip.cols))
    say(f"chip: {net.name} on {chips} x tianjic: {est.fps:,.0f} FPS, {est.latency_s * 1e6:.1f} us latency, "
        f"{est.energy_per_frame_j * 1e6:.2f} uJ/frame, {est.cores_used} cores (DashNet published {report.DASHNET_FPS:,.0f} FPS)")
    return {**report.headline(est), "network_source": spec, "chips": chips,
            "report": str(folder / "report.json"), "plot": str(folder / "report.png")}
