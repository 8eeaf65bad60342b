"""Reports of a chip estimate: a text table, JSON, Markdown and a PNG plot."""

from __future__ import annotations

import json
import pathlib

from chip_models.timing import PHASES, Estimate
from neurosim.io import atomic_output

DASHNET_FPS = 2083.0  # DashNet on neuromorphic chips (docs/explanation/references.md §4, §5): 480 µs per frame


def headline(e: Estimate) -> dict:
    """The chip-level figures as a flat dict."""
    return {
        "chip": e.chip, "network": e.network, "cores_used": e.cores_used, "cores_available": e.cores_available,
        "fps": round(e.fps, 1), "lockstep_fps": round(e.lockstep_fps, 1), "latency_us": round(e.latency_s * 1e6, 2),
        "energy_per_frame_uj": round(e.energy_per_frame_j * 1e6, 3), "power_mw": round(e.power_w * 1e3, 2),
        "macs_per_frame": e.macs_per_frame, "sops_per_frame": e.sops_per_frame,
        "packets_per_frame": round(e.packets_per_frame, 1), "mac_utilization": round(e.mac_utilization, 4),
        "core_utilization": round(e.core_utilization, 4), "bottleneck": e.bottleneck,
    }


def table(e: Estimate) -> str:
    """Human-readable summary and per-layer table."""
    h = headline(e)
    lines = [
        f"network {e.network} on chip {e.chip}: {e.cores_used}/{e.cores_available} cores",
        f"  pipelined: {e.fps:,.0f} FPS (frame interval {e.frame_interval_cycles:,.0f} cycles), "
        f"latency {e.latency_s * 1e6:,.1f} us; bottleneck: {e.bottleneck}",
        f"  lock-step: {e.lockstep_fps:,.0f} FPS ({e.rounds_per_frame} rounds of {e.round_cycles:,.0f} cycles)",
        f"  energy {h['energy_per_frame_uj']} uJ/frame (MAC {e.energy_breakdown_j['mac'] * 1e6:.3f}, SOP "
        f"{e.energy_breakdown_j['sop'] * 1e6:.3f}, router {e.energy_breakdown_j['router'] * 1e6:.3f}, static "
        f"{e.energy_breakdown_j['static'] * 1e6:.3f}), {h['power_mw']} mW; MAC-array utilization "
        f"{e.mac_utilization:.1%}, core utilization {e.core_utilization:.1%}",
        f"  DashNet published: {DASHNET_FPS:,.0f} FPS",
        "",
        f"{'layer':<14}{'mode':<5}{'cores':>6}{'steps':>6}{'cycles/frame':>14}" + "".join(f"{p:>10}" for p in PHASES)
        + f"{'MACs':>12}{'SOPs':>12}{'packets':>10}{'energy uJ':>11}",
    ]
    for lay in e.layers:
        ph = lay["phase_cycles_max_core"]
        lines.append(
            f"{lay['name']:<14}{lay['mode']:<5}{lay['cores']:>6}{lay['steps']:>6}{lay['cycles_per_frame_max_core']:>14,.0f}"
            + "".join(f"{ph[p]:>10,.0f}" for p in PHASES)
            + f"{lay['macs']:>12,.0f}{lay['sops']:>12,.0f}{lay['packets']:>10,.0f}{lay['energy_j'] * 1e6:>11.3f}"
        )
    return "\n".join(lines)


def markdown(e: Estimate) -> str:
    h = headline(e)
    rows = ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in h.items()]
    rows += ["", f"DashNet's published figure: {DASHNET_FPS:,.0f} FPS.", "",
             "| layer | mode | cores | steps | cycles/frame (busiest core) | MACs | SOPs | packets | energy µJ |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {x['name']} | {x['mode']} | {x['cores']} | {x['steps']} | {x['cycles_per_frame_max_core']:,.0f} | "
             f"{x['macs']:,.0f} | {x['sops']:,.0f} | {x['packets']:,.0f} | {x['energy_j'] * 1e6:.3f} |" for x in e.layers]
    return f"# Chip estimate: {e.network} on {e.chip}\n\n" + "\n".join(rows) + "\n"


def write_json(e: Estimate, path: str | pathlib.Path, extra: dict | None = None) -> pathlib.Path:
    doc = {"summary": headline(e), **e.to_dict(), **(extra or {})}
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1))
    return pathlib.Path(path)


def write_markdown(e: Estimate, path: str | pathlib.Path) -> pathlib.Path:
    with atomic_output(path) as tmp:
        tmp.write_text(markdown(e))
    return pathlib.Path(path)


def write_plot(e: Estimate, path: str | pathlib.Path, mesh: tuple[int, int] | None = None) -> pathlib.Path:
    """PNG: per-layer phase cycles of the busiest core (stacked bars) and per-core busy cycles on the mesh."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = [x["name"] for x in e.layers]
    bottom = np.zeros(len(names))
    for p in PHASES:
        v = np.array([x["phase_cycles_max_core"][p] for x in e.layers])
        a.bar(names, v, bottom=bottom, label=p)
        bottom += v
    a.axhline(e.frame_interval_cycles, ls="--", color="k", lw=1, label=f"frame interval ({e.bottleneck})")
    a.set_ylabel("cycles per frame (busiest core)")
    a.set_title(f"{e.network} on {e.chip}: {e.fps:,.0f} FPS, {e.energy_per_frame_j * 1e6:.1f} uJ/frame")
    a.tick_params(axis="x", rotation=45)
    a.legend()
    rows = max(c["core"][0] for c in e.cores) + 1 if mesh is None else mesh[0]
    cols = max(c["core"][1] for c in e.cores) + 1 if mesh is None else mesh[1]
    grid = np.full((rows, cols), np.nan)
    for c in e.cores:
        grid[c["core"][0], c["core"][1]] = c["busy"]
    im = b.imshow(grid, cmap="viridis")
    b.set_title("busy cycles per frame per core (mesh)")
    b.set_xlabel("column")
    b.set_ylabel("row")
    fig.colorbar(im, ax=b)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return pathlib.Path(path)
