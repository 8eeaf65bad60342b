"""Before / after of the chip kernels in one run: the dense int8 MAC per path, torch's fbgemm int8
linear and the reference network's simulation, measured alternately on a baseline build and on
this tree, so that load changes on a shared machine hit both alike. Prints JSON.

Run::

    git archive BASE chip_models tests/benchmarks | tar -x -C /tmp/before
    cp BASE_BUILD/_kernels.cpython-*.so /tmp/before/chip_models/   # that commit's built module
    .venv/bin/python tests/benchmarks/bench_chip_before_after.py /tmp/before [--rounds 3]

Each round runs, in a fresh process per side (before, then after), ``bench_chip.dense``,
``bench_chip.fbgemm`` and ``bench_chip.simulation(n_rounds=3)`` of that side's own
``tests/benchmarks/bench_chip.py``; the summary gives each figure's median over the rounds per
side and the after / before ratio. The baseline side imports ``chip_models`` from BEFORE (the
editable install's import hook is taken out of its process); ``neurosim`` is this tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]

CHILD = """
import json, os, sys
before = {before!r}
if before:
    sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__ and "skbc" not in type(f).__module__]
    sys.path[:0] = [before, {root!r}]
sys.path.insert(0, os.path.join(before or {root!r}, "tests", "benchmarks"))
import bench_chip as b
import chip_models
info = b.cpu_info()
out = {{"chip_models": chip_models.__file__, "dense": b.dense(info), "fbgemm": b.fbgemm(),
        "simulation": b.simulation(n_rounds=3), "load_average": os.getloadavg()[0]}}
print("@@" + json.dumps(out))
"""


def run_side(before: str | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", CHILD.format(before=before, root=str(ROOT))], capture_output=True,
                         text=True, env=env, cwd=str(ROOT), check=True)
    line = next(x for x in res.stdout.splitlines() if x.startswith("@@"))
    return json.loads(line[2:])


def figures(r: dict) -> dict:
    """The compared figures of one side's run."""
    out = {f"dense_gops/{k}": v["gops_per_s"] for k, v in r["dense"]["paths"].items()}
    out["fbgemm_gops"] = r["fbgemm"].get("gops_per_s")
    s = r["simulation"]
    n = s["threads"]
    out.update({"sim_cpu_ms_per_frame_1_thread": s["chip_sim_s_per_frame"] * 1e3,
                f"sim_wall_ms_per_frame_{n}_threads": s[f"chip_sim_wall_s_per_frame_{n}_threads"] * 1e3,
                "reference_ms_per_frame": s["reference_s_per_frame"] * 1e3,
                "speedup_cpu_1_thread": s["speedup_cpu_1_thread"],
                f"speedup_wall_{n}_threads": s[f"speedup_wall_{n}_threads"],
                "bit_exact": s["bit_exact"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="folder with the baseline's chip_models/ (built module inside) and tests/benchmarks/")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    rounds = []
    for _ in range(args.rounds):
        rounds.append({"before": run_side(str(pathlib.Path(args.before).resolve())), "after": run_side(None)})
    per = {side: [figures(r[side]) for r in rounds] for side in ("before", "after")}
    keys = [k for k in per["after"][0] if k in per["before"][0]]
    summary = {}
    for k in keys:
        b, a = ([f[k] for f in per[side] if f.get(k) is not None] for side in ("before", "after"))
        if k == "bit_exact":
            summary[k] = {"before": all(b), "after": all(a)}
            continue
        if not a or not b:
            continue
        mb, ma = float(np.median(b)), float(np.median(a))
        summary[k] = {"before": round(mb, 4), "after": round(ma, 4), "after_over_before": round(ma / mb, 3)}
    print(json.dumps({"command": "tests/benchmarks/bench_chip_before_after.py " + " ".join(sys.argv[1:]),
                      "rounds": args.rounds, "load_average_before": load0, "load_average_after": os.getloadavg()[0],
                      "cpu": rounds[0]["after"]["dense"].get("peak_mac_per_s"),
                      "summary_median_of_rounds": summary,
                      "after_only": {k: per["after"][0][k] for k in per["after"][0] if k not in keys},
                      "runs": rounds}, indent=1))


if __name__ == "__main__":
    main()
