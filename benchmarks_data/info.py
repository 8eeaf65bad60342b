"""Summaries of a dataset folder (``neurosim data info``)."""

from __future__ import annotations

import pathlib
from typing import Any

from benchmarks_data.index import load_index
from neurosim.errors import InputError


def dataset_info(dataset: str | pathlib.Path) -> dict[str, Any]:
    """Sequences, durations, event rates (events / duration) and splits of a dataset.

    Raises InputError if the folder is not a dataset or a listed sequence file is missing.
    """
    root = pathlib.Path(dataset)
    index = load_index(root)
    split_of = {n: k for k, names in index.get("splits", {}).items() for n in names}
    rows = []
    for e in index["sequences"]:
        path = root / e["file"]
        if not path.is_file():
            raise InputError(f"sequence file {path} listed in {root}/index.json is missing: re-run the build")
        dur_s = max(int(e["duration_us"]), 1) / 1e6
        rows.append({
            "name": e["name"], "split": split_of.get(e["name"], "-"), "file": e["file"],
            "width": int(e["width"]), "height": int(e["height"]), "input_frames": int(e["input_frames"]),
            "input_fps": float(e["input_fps"]), "aps_frames": int(e["aps_frames"]), "duration_s": dur_s,
            "events": int(e["events"]), "event_rate_mev_s": e["events"] / dur_s / 1e6,
            "size_mb": path.stat().st_size / 1e6,
        })
    total_dur = sum(r["duration_s"] for r in rows)
    total_ev = sum(r["events"] for r in rows)
    return {
        "dataset": str(root), "num_sequences": len(rows), "sensor": index.get("sensor"),
        "aps_rate_hz": index.get("aps_rate_hz"), "seed": index.get("seed"),
        "total_duration_s": total_dur, "total_events": total_ev,
        "mean_event_rate_mev_s": total_ev / total_dur / 1e6 if total_dur else 0.0,
        "total_input_frames": sum(r["input_frames"] for r in rows),
        "size_mb": sum(r["size_mb"] for r in rows),
        "sequences": rows, "splits": index.get("splits", {}), "failed": index.get("failed", []),
        "simulator": index.get("simulator", {}),
    }
