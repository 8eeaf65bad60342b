"""Issue 2's fidelity check on the real DAVIS346 recording: calibrate on frames 0–14, simulate
frames 15–29 from a frames-only .npz, compare with the real events of that span (all via the CLI).
In a plain clone (no ../shared/data) the same procedure runs on a simulated recording whose
pixel parameters are known (tests/data/scene_davis346.npz)."""

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
    header = [line for line in cal.read_text().splitlines() if line.startswith("#")]
    assert any(line.startswith("# held-out blocks (2,") for line in header)  # reported beside the fit
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

    # A second scene no choice has seen: the street AEDAT4 (4 APS frames), simulated with the
    # same parameters (calibrated on traffic frames 0-14) and compared over its 3 frame intervals.
    from sim_events.formats import read_recording

    street = shared_data / "events" / "davis346_street_sample.aedat4"
    rec = read_recording(street)
    street_frames, street_sim = tmp_path / "street_frames.npz", tmp_path / "street.h5"
    np.savez(street_frames, frames=rec.frames, frame_ts=rec.frame_t)
    assert main(["events", "simulate", str(street_frames), "--config", str(cal), "-o", str(street_sim), "-q"]) == 0
    capsys.readouterr()
    assert main(["events", "compare", str(street_sim), str(street), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    print("street", {k: round(s[k], 3) for k in STREET_LEVELS})
    for key, (lo, hi) in STREET_LEVELS.items():
        assert lo <= s[key] <= hi, f"street {key} = {s[key]:.3f} outside [{lo}, {hi}]"


# Street AEDAT4 with the calibration of traffic frames 0-14, measured 2026-12-05: count ratio
# 1.039, pixel r 0.923 / 0.922, phase CV 0.074, F1 0.580 (davis346 preset: 1.095, 0.848 / 0.893,
# 0.139, 0.554; docs/results/events.md). Regression levels set after that measurement, a little
# outside it; 3 frame intervals, so rate r is not checked.
STREET_LEVELS = {"count_ratio": (0.9, 1.15), "pixel_r_on": (0.9, 1.0), "pixel_r_off": (0.9, 1.0),
                 "phase_cv": (0.0, 0.10), "f1_5ms": (0.5, 1.0)}


# The plain-clone version: a recording simulated from a procedural scene with KNOWN pixel
# parameters (tests/data/scene_davis346.npz; davis346 preset with θ_on 0.25, θ_off 0.35 and a
# 1.5 ms latency, seed 7). Calibrating on its first half must find those parameters again and
# predict the held-out second half. Tolerances: the spread of the fit over five scene/noise
# seeds (θ within 6 %, latency within one 0.5 ms step; held-out pixel r >= 0.92, F1 >= 0.61).
KNOWN_TOLERANCE = {"contrast_threshold_on": 0.10, "contrast_threshold_off": 0.10}  # relative
LATENCY_STEP_US = 500.0
SCENE_TARGETS = {"count_ratio": (0.9, 1.1), "pixel_r_on": (0.9, 1.0), "pixel_r_off": (0.9, 1.0),
                 "rate_r": (0.9, 1.0), "phase_cv": (0.0, 0.15), "f1_5ms": (0.6, 1.0)}


def test_calibration_recovers_known_parameters_of_a_simulated_recording(fixture_data, tmp_path, capsys):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    truth = json.loads((fixture_data / "fixtures.json").read_text())["truth"]
    rec = fixture_data / "scene_davis346.npz"
    d = np.load(rec)
    ft, half = d["frame_ts"], len(d["frame_ts"]) // 2 - 1  # frames 0-7 for calibration, 7-15 held out
    seen = d["t"] <= ft[half]
    calib = tmp_path / "first_half.npz"
    np.savez(calib, frames=d["frames"][:half + 1], frame_ts=ft[:half + 1], t=d["t"][seen], x=d["x"][seen],
             y=d["y"][seen], p=d["p"][seen], width=d["width"], height=d["height"])
    frames = tmp_path / "second_half_frames.npz"
    np.savez(frames, frames=d["frames"][half:], frame_ts=ft[half:])
    cal, sim = tmp_path / "cal.toml", tmp_path / "sim.h5"

    assert main(["events", "calibrate", str(calib), "-o", str(cal), "-q"]) == 0
    fitted = tomllib.loads(cal.read_text())
    for key, rel in KNOWN_TOLERANCE.items():
        assert abs(fitted[key] / truth[key] - 1) <= rel, f"{key} = {fitted[key]:.3f}, simulated with {truth[key]}"
    assert abs(fitted["latency_us"] - truth["latency_us"]) <= LATENCY_STEP_US
    assert main(["events", "simulate", str(frames), "--config", str(cal), "-o", str(sim), "-q"]) == 0
    capsys.readouterr()
    t0, t1 = float(ft[half] - ft[0]) / 1e6, float(ft[-1] - ft[0]) / 1e6
    assert main(["events", "compare", str(sim), str(rec), "--t0", repr(t0), "--t1", repr(t1), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["real_events"] > 5000
    print({k: fitted[k] for k in (*KNOWN_TOLERANCE, "latency_us")}, {k: round(m[k], 3) for k in SCENE_TARGETS})
    for key, (lo, hi) in SCENE_TARGETS.items():
        assert lo <= m[key] <= hi, f"{key} = {m[key]:.3f} outside [{lo}, {hi}]"
