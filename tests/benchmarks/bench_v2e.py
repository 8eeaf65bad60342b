"""v2e on every real recording here, scored like bench_event_fidelity.py; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_v2e.py [--seed 0] [--v2e-python /tmp/v2evenv/bin/python]

v2e (SensorsINI) is **not** a dependency of neurosim and must never be installed into
``.venv``. It runs in a throwaway virtual environment whose interpreter is ``--v2e-python``
(default ``/tmp/v2evenv/bin/python``; ``$V2E_PYTHON`` overrides the default)::

    python3 -m venv /tmp/v2evenv
    /tmp/v2evenv/bin/pip install -c scripts/constraints.txt "torch==2.13.*" <v2e: a checkout of SensorsINI/v2e>

v2e is not published on PyPI (``pip install v2e``: "No matching distribution found"; the index
has no ``v2e`` page), so it has to come from a checkout of its repository. When that
interpreter cannot ``import v2ecore.emulator`` the benchmark prints ``{"skipped": reason}`` and
exits 0.

How it runs: this process (``.venv``) reads the recordings and writes each frame span to a
temporary .npz; ``--v2e-python`` runs this same file with ``--emulate`` (numpy and v2e only),
which feeds the frames to ``v2ecore.emulator.EventEmulator.generate_events(frame, t_s)`` on
the CPU and writes the events (x, y, t µs, p) back; this process scores them with
:mod:`sim_events.metrics` over exactly the windows of bench_event_fidelity.py (same
frames, fresh start, same origin and frame interval).

v2e settings (its constructor arguments; v2e seed = ``--seed`` + 1 because v2e leaves its
random generators unseeded for seed 0):

- ``v2e_clean``: v2e's ``clean`` DVS model (``EventEmulator.set_dvs_params('clean')``):
  θ_on = θ_off = 0.2, σ_θ 0.02, no photoreceptor low-pass, leak, shot noise or refractory period;
- ``v2e_noisy``: v2e's ``noisy`` model: 0.2 / 0.2, σ_θ 0.05, 30 Hz cutoff, 0.1 Hz leak,
  5 Hz shot noise, no refractory period (current v2e; earlier versions set 10 ms);
- ``v2e_tuned``: the clean model with θ_on, θ_off matched to the **fit part's** ON/OFF counts
  by bisection in log θ over [0.01, 5] (``TUNE_ROUNDS`` halvings, both polarities at once, as
  :func:`sim_events.v2e_model.count_matched`; the multiplicative rule θ ← θ·N_sim/N_real
  oscillates on v2e's model because APS read noise dominates at small θ).
  Never tuned on the scored part. Not for FE240hz (its real side has no counts).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_V2E_PYTHON = os.environ.get("V2E_PYTHON", "/tmp/v2evenv/bin/python")
CLEAN = {"pos_thres": 0.2, "neg_thres": 0.2, "sigma_thres": 0.02, "cutoff_hz": 0.0, "leak_rate_hz": 0.0,
         "shot_noise_rate_hz": 0.0, "refractory_period_s": 0.0, "leak_jitter_fraction": 0.0,
         "noise_rate_cov_decades": 0.0}
NOISY = {"pos_thres": 0.2, "neg_thres": 0.2, "sigma_thres": 0.05, "cutoff_hz": 30.0, "leak_rate_hz": 0.1,
         "shot_noise_rate_hz": 5.0, "refractory_period_s": 0.0, "leak_jitter_fraction": 0.1,
         "noise_rate_cov_decades": 0.1}
TUNE_ROUNDS = 12
TUNE_BOUNDS = (0.01, 5.0)


# ---- inside the v2e venv: numpy and v2ecore only ----------------------------------------

def emulate(frames: np.ndarray, t_us: np.ndarray, settings: dict, seed: int) -> dict[str, np.ndarray]:
    """v2e events of ``frames`` [N, H, W] uint8 at ``t_us`` [N] µs → columns x, y, t (µs), p (bool).

    The first frame only initialises v2e's memorised log intensity (no events), as in every
    frame-driven simulator; times go to v2e in seconds relative to the first frame."""
    import random

    import torch
    from v2ecore.emulator import EventEmulator

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)
    n, height, width = frames.shape
    emu = EventEmulator(seed=seed, device="cpu", output_width=width, output_height=height, **settings)
    t0 = int(t_us[0])
    chunks = []
    for frame, t in zip(frames, t_us):
        ev = emu.generate_events(frame.astype(np.float32), (int(t) - t0) * 1e-6)
        if ev is not None and len(ev):
            chunks.append(np.asarray(ev, dtype=np.float64))
    ev = np.concatenate(chunks) if chunks else np.zeros((0, 4))
    x, y = ev[:, 1].astype(np.int64), ev[:, 2].astype(np.int64)
    if len(ev) and (x.max() >= width or y.max() >= height or x.min() < 0 or y.min() < 0):
        raise RuntimeError(f"v2e event columns are not [t, x, y, p] for a {width}x{height} frame")
    t = t0 + np.round(ev[:, 0] * 1e6).astype(np.int64)
    order = np.argsort(t, kind="stable")
    return {"x": x[order], "y": y[order], "t": t[order], "p": (ev[:, 3] > 0)[order]}


def _emulate_main(src: str, dst: str, settings_json: str, seed: int) -> None:
    with np.load(src) as z:
        frames, t_us = z["frames"], z["frame_t"]
    np.savez(dst, **emulate(frames, t_us, json.loads(settings_json), seed))


# ---- inside .venv: recordings, scoring ---------------------------------------------------

def v2e_version(python: str) -> str | None:
    """v2e's version as its interpreter sees it, or None when ``import v2ecore.emulator`` fails."""
    code = ("import importlib.metadata as m, v2ecore.emulator\n"
            "try: print(m.version('v2e'))\nexcept Exception: print('unknown (no package metadata)')")
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=600)
    except OSError:
        return None
    lines = r.stdout.strip().splitlines()
    return lines[-1] if r.returncode == 0 and lines else None


class V2E:
    """Runs :func:`emulate` in the v2e interpreter on frame spans of a recording."""

    def __init__(self, python: str, seed: int, tmp: pathlib.Path):
        self.python, self.seed, self.tmp = python, seed + 1, tmp

    def events(self, rec, a: int, b: int, settings: dict) -> np.ndarray:
        from sim_events.formats.events import make_events

        src, dst = self.tmp / "frames.npz", self.tmp / "events.npz"
        np.savez(src, frames=rec.frames[a:b + 1], frame_t=rec.frame_t[a:b + 1])
        subprocess.run([self.python, __file__, "--emulate", str(src), str(dst), json.dumps(settings),
                        "--seed", str(self.seed)], check=True)
        with np.load(dst) as z:
            return make_events(z["x"], z["y"], z["t"], z["p"])

    def tuned(self, rec, a: int, b: int) -> dict:
        """Clean settings with θ_on, θ_off matched to the real ON/OFF counts of frames a..b."""
        ft = rec.frame_t
        real = rec.events[(rec.events["t"] >= ft[a]) & (rec.events["t"] < ft[b])]
        n_on, n_off = int(real["p"].sum()), int((~real["p"]).sum())
        lo, hi = np.log([TUNE_BOUNDS[0]] * 2), np.log([TUNE_BOUNDS[1]] * 2)
        for _ in range(TUNE_ROUNDS):
            mid = (lo + hi) / 2
            ev = self.events(rec, a, b, {**CLEAN, "pos_thres": float(np.exp(mid[0])), "neg_thres": float(np.exp(mid[1]))})
            too_many = np.array([ev["p"].sum() > n_on, (~ev["p"]).sum() > n_off])
            lo, hi = np.where(too_many, mid, lo), np.where(too_many, hi, mid)
        th = np.exp((lo + hi) / 2)
        return {**CLEAN, "pos_thres": float(th[0]), "neg_thres": float(th[1])}


def traffic(v2e: V2E, fid) -> dict:
    from sim_events.formats import read_recording

    rec = read_recording(fid.DATA / "events" / "davis346_traffic_first_half.npz")
    out = {}
    for (fa, fb), (ha, hb) in (((0, 14), (15, 29)), ((15, 29), (0, 14))):
        tuned = v2e.tuned(rec, fa, fb)
        out[f"fit_{fa}_{fb}_score_{ha}_{hb}"] = {
            "v2e_clean": fid._score(v2e.events(rec, ha, hb, CLEAN), rec, ha, hb),
            "v2e_noisy": fid._score(v2e.events(rec, ha, hb, NOISY), rec, ha, hb),
            "v2e_tuned": {**fid._score(v2e.events(rec, ha, hb, tuned), rec, ha, hb),
                          "pos_neg_thres": [round(tuned["pos_thres"], 3), round(tuned["neg_thres"], 3)]},
        }
    return out


def street(v2e: V2E, fid) -> dict:
    from sim_events.formats import read_recording

    rec = read_recording(fid.DATA / "events" / "davis346_street_sample.aedat4")
    traffic_rec = read_recording(fid.DATA / "events" / "davis346_traffic_first_half.npz")
    n = len(rec.frames) - 1
    on_traffic = v2e.tuned(traffic_rec, 0, len(traffic_rec.frames) - 1)
    self_fit = v2e.tuned(rec, 0, n)
    return {
        "v2e_clean": fid._score(v2e.events(rec, 0, n, CLEAN), rec, 0, n),
        "v2e_noisy": fid._score(v2e.events(rec, 0, n, NOISY), rec, 0, n),
        "v2e_thresholds_from_traffic": {**fid._score(v2e.events(rec, 0, n, on_traffic), rec, 0, n),
                                        "pos_neg_thres": [round(on_traffic["pos_thres"], 3), round(on_traffic["neg_thres"], 3)]},
        "in_sample_v2e_count_matched_on_street": fid._score(v2e.events(rec, 0, n, self_fit), rec, 0, n),
    }


def fe240hz(v2e: V2E, fid) -> dict:
    """Second half of the windows, cut as ``calibrate_event_frames`` cuts them (fit_fraction 0.5)."""
    from sim_events.formats import read_recording
    from sim_events.metrics import compare_event_frames

    rec = read_recording(fid.DATA / "tracking_real" / "fe240hz" / "dove_mul111_0")
    rate = float(rec.attrs["event_rate_hz"])
    w = 1e6 / rate
    t0, t_end = int(rec.frame_t[0]), int(rec.frame_t[-1])
    t_fit = t0 + int(round(int(int((t_end - t0) / w) * 0.5) * w))
    keys = ("activity_ratio", "pixel_activity_r_on", "pixel_activity_r_off", "window_activity_r")
    last = len(rec.frames) - 1
    return {"scored_windows_us": [t_fit, t_end], **{
        name: fid._round(compare_event_frames(v2e.events(rec, 0, last, s), rec.events, rec.width, rec.height,
                                              t_fit, t_end, rate), keys)
        for name, s in (("v2e_clean", CLEAN), ("v2e_noisy", NOISY))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--v2e-python", default=DEFAULT_V2E_PYTHON, help="interpreter of the throwaway venv with v2e")
    ap.add_argument("--emulate", nargs=3, metavar=("FRAMES_NPZ", "EVENTS_NPZ", "SETTINGS_JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.emulate:
        _emulate_main(*args.emulate, seed=args.seed)
        return
    version = v2e_version(args.v2e_python)
    if version is None:
        print(json.dumps({"skipped": f"v2e is not importable by {args.v2e_python} (import v2ecore.emulator failed); "
                                     "see this file's docstring for the throwaway venv"}))
        return
    import cv2

    cv2.setNumThreads(1)
    sys.path.insert(0, str(HERE))
    import bench_event_fidelity as fid

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        v2e = V2E(args.v2e_python, args.seed, pathlib.Path(tmp))
        out = {"seed": args.seed, "v2e_seed": v2e.seed, "v2e_version": version, "v2e_python": args.v2e_python,
               "settings": {"v2e_clean": CLEAN, "v2e_noisy": NOISY},
               "traffic": traffic(v2e, fid), "street": street(v2e, fid), "fe240hz": fe240hz(v2e, fid)}
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
