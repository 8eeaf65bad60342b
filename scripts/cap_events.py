"""Copy a dataset with its events capped as event-frame recordings give them (a results-page tool).

Usage: ``.venv/bin/python scripts/cap_events.py DATASET OUT SPLIT [--rate-hz 240]``, from the
repository root: the sequences of ``SPLIT`` (a split of DATASET's index) are written to
``OUT/sequences`` with, per pixel and window of ``1/rate_hz`` s, at most one event: the sign of the
window's net count (ON − OFF), at the window's end. That is what a recording read from event
frames holds (FE240hz's ``stack240``, VisEvent's and COESOT's event images: one polarity per pixel
per frame). The copies say so as an imported recording does (``"event_frame_hz"`` in their
``simulator`` attribute, no simulator parameters), so with ``model.event_contrast = 0`` the
tracker integrates them with its ``capped_contrast`` (``hybrid.track.frame_contrast``). ``OUT/index.json`` keeps that split only. Used by docs/results/tracker.md, "Event frames from real sensors".
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from sim_events.formats.sequence import read_sequence, write_sequence


def cap_events(events: np.ndarray, width: int, height: int, rate_hz: float) -> np.ndarray:
    """At most one event per pixel and window of 1/``rate_hz`` s: the net polarity, at the window's end (µs)."""
    t0, period = int(events["t"][0]), 1e6 / rate_hz
    window = ((events["t"] - t0) // period).astype(np.int64)
    key = (window * height + events["y"].astype(np.int64)) * width + events["x"].astype(np.int64)
    cells, inverse = np.unique(key, return_inverse=True)
    net = np.bincount(inverse, weights=np.where(events["p"], 1, -1)).astype(np.int64)
    cells, net = cells[net != 0], net[net != 0]
    t = (t0 + np.floor((cells // (width * height) + 1) * period)).astype(np.int64)
    order = np.argsort(t, kind="stable")
    out = np.zeros(len(cells), events.dtype)
    out["x"], out["y"] = (cells % width)[order], ((cells // width) % height)[order]
    out["t"], out["p"] = t[order], (net > 0)[order]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=pathlib.Path)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("split")
    ap.add_argument("--rate-hz", type=float, default=240.0)
    args = ap.parse_args()
    index = json.loads((args.dataset / "index.json").read_text())
    names = set(index["splits"][args.split])
    (args.out / "sequences").mkdir(parents=True, exist_ok=False)
    kept = []
    for entry in index["sequences"]:
        if entry["name"] not in names:
            continue
        rec = read_sequence(args.dataset / entry["file"])
        rec.events = cap_events(rec.events, rec.width, rec.height, args.rate_hz)
        write_sequence(args.out / entry["file"], rec,
                       simulator={"recording": True, "format": "capped", "event_frame_hz": args.rate_hz})
        kept.append({**entry, "events": len(rec.events)})
        print(f"{entry['name']}: {entry['events']:,} -> {len(rec.events):,} events")
    index.update(sequences=kept, splits={args.split: index["splits"][args.split]})
    (args.out / "index.json").write_text(json.dumps(index, indent=1))


if __name__ == "__main__":
    main()
