"""Tracker speed with the event slice searched on the strided ``events["t"]`` view (the previous
implementation, "before") and on ``Track.event_times`` ("after"), swapped in one process, two
rounds each; also checks that both give the same boxes. Prints JSON.

    .venv/bin/python tests/benchmarks/bench_track_slice.py DATASET [DATASET ...] [--split val]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def strided_events_between(self, t0: int, t1: int) -> np.ndarray:
    lo, hi = np.searchsorted(self.events["t"], [t0, t1])
    return self.events[lo:hi]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--split", default="val")
    args = ap.parse_args()

    from hybrid.checkpoint import load_model
    from hybrid.data import Track, load_track
    from hybrid.evaluate import split_sequences
    from hybrid.track import track_sequence

    after = Track.events_between
    model = load_model("default", "full")
    out: dict = {"machine": platform.machine(), "date": time.strftime("%Y-%m-%d"), "split": args.split}
    for ds in args.datasets:
        tracks = [load_track(f, n) for n, f in split_sequences(ds, args.split)]
        row: dict = {"before": [], "after": []}
        sums = set()
        for label, fn in (("before", strided_events_between), ("after", after)) * 2:
            Track.events_between = fn
            steps = secs = 0.0
            boxes = []
            for tr in tracks:
                res = track_sequence(model, tr)
                steps, secs = steps + res.steps, secs + res.seconds
                boxes.append(res.boxes)
            row[label].append(round(steps / secs))
            sums.add(np.concatenate(boxes).tobytes())
        Track.events_between = after
        row["identical_boxes"] = len(sums) == 1
        out[ds] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
