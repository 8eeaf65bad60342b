"""Issue 2's fidelity check on the real DAVIS346 recording: calibrate on frames 0–14, simulate
frames 15–29 from a frames-only .npz, compare with the real events of that span (all via the CLI)."""

import json

import numpy as np

from neurosim.cli import main

TARGETS = {"count_ratio": (0.9, 1.1), "pixel_r_on": (0.93, 1.0), "pixel_r_off": (0.93, 1.0),
           "rate_r": (0.9, 1.0), "phase_cv": (0.0, 0.10), "f1_5ms": (0.45, 1.0)}


def test_calibrated_simulator_matches_held_out_real_events(shared_data, tmp_path, capsys):
    real = shared_data / "events" / "davis346_traffic_first_half.npz"
    d = np.load(real)
    ft = d["frame_ts"]
    seen = d["t"] <= ft[14]  # calibration sees frames 0–14 and their events only
    calib = tmp_path / "calib_0_14.npz"
    np.savez(calib, frames=d["frames"][:15], frame_ts=ft[:15], frame_exposure_us=d["frame_exposure_us"][:15],
             t=d["t"][seen], x=d["x"][seen], y=d["y"][seen], p=d["p"][seen], width=d["width"], height=d["height"])
    frames = tmp_path / "frames_15_29.npz"
    np.savez(frames, frames=d["frames"][15:], frame_ts=ft[15:])  # frames only, no events
    cal, sim = tmp_path / "cal.toml", tmp_path / "sim.h5"

    assert main(["events", "calibrate", str(calib), "-o", str(cal), "-q"]) == 0
    assert main(["events", "simulate", str(frames), "--config", str(cal), "-o", str(sim), "-q"]) == 0
    capsys.readouterr()
    t0 = float(ft[15] - ft[0]) / 1e6
    t1 = float(ft[29] - ft[0]) / 1e6
    assert main(["events", "compare", str(sim), str(real), "--t0", repr(t0), "--t1", repr(t1), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["real_events"] > 17000  # the real events of frames 15–29's span
    print({k: round(m[k], 3) for k in TARGETS})
    for key, (lo, hi) in TARGETS.items():
        assert lo <= m[key] <= hi, f"{key} = {m[key]:.3f} outside [{lo}, {hi}]"
