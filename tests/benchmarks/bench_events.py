"""Benchmark of the DVS simulator; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_events.py [--minutes 10 --long-fps 5] [--skip-long]

1. ``core``: input frames per second at 346×260 on one core (cv2.setNumThreads(1)), optical
   flow interpolation on, start-up excluded (the first 5 frames are a warm-up). Input: the 30
   real DAVIS346 APS frames of ../shared/data played forward and backward (300 frames of real
   traffic motion), for the davis346 preset and for a calibrated-style parameter set. Wall
   time and this process's CPU time are both given: the machine is shared, so wall time is
   noisy; CPU time is what the simulator itself costs.
2. ``end_to_end``: ``neurosim events simulate`` on those 300 frames (a .npz), as a subprocess,
   start-up included (wall time of the whole process, and its CPU time user + sys, which
   a loaded machine inflates less); checks that torch is not imported.
3. ``long_video``: peak RSS of ``neurosim events simulate`` converting a synthetic 640×480
   video of ``--minutes`` minutes (a textured disc moving over a textured background, written
   frame by frame to an .mp4 at ``--long-fps`` frames per second — 5 fps keeps the run short;
   memory does not depend on the frame rate, only on the frame size and the number of frames
   in flight). RSS from getrusage(RUSAGE_CHILDREN).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "events" / "davis346_traffic_first_half.npz"
NEUROSIM = str(pathlib.Path(sys.executable).with_name("neurosim"))


def traffic_frames(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(DATA)
    f = d["frames"]
    order = [i % 30 if (i // 30) % 2 == 0 else 29 - i % 30 for i in range(n)]  # forward, backward, ...
    return f[order], int(d["frame_ts"][0]) + 40_000 * np.arange(n, dtype=np.int64)


def bench_core(params, frames, times) -> dict:
    import cv2

    from sim_events.simulator import simulate_frames

    cv2.setNumThreads(1)
    it = simulate_frames(zip(times.tolist(), frames), frames.shape[2], frames.shape[1], params, 0)
    for _ in range(4):  # warm-up: first 5 frames (imports, DIS set-up)
        next(it)
    w0, c0 = time.perf_counter(), time.process_time()
    n_events = sum(len(c) for c in it)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = len(frames) - 5
    return {"frames": n, "events": n_events, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "fps_wall": round(n / wall, 1), "fps_cpu": round(n / cpu, 1)}


def bench_dis(frames) -> dict:
    """CPU time of OpenCV DIS (ultrafast) alone per pair: docs/explanation/references.md §1 gives
    ~0.7 ms on an idle machine, so the ratio shows how much the current load inflates every
    timing here."""
    import cv2

    cv2.setNumThreads(1)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    c0 = time.process_time()
    for i in range(len(frames) - 1):
        dis.calc(frames[i], frames[i + 1], None)
    ms = (time.process_time() - c0) / (len(frames) - 1) * 1000
    return {"dis_ms_per_pair_cpu": round(ms, 3), "reference_idle_ms": 0.7, "inflation_vs_idle": round(ms / 0.7, 2)}


def bench_end_to_end(frames, times, tmp: pathlib.Path) -> dict:
    src = tmp / "traffic300.npz"
    np.savez(src, frames=frames, frame_ts=times)
    out = tmp / "e2e.h5"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([NEUROSIM, "events", "simulate", str(src), "-o", str(out), "--json", "-q"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"simulate failed: {r.stderr}")
    summary = json.loads(r.stdout)
    probe = subprocess.run([sys.executable, "-c",
                            "import sys; from neurosim.cli import main; "
                            f"main(['events', 'simulate', {str(src)!r}, '-o', {str(tmp / 'probe.h5')!r}, '-q']); "
                            "print('torch' in sys.modules)"], capture_output=True, text=True)
    return {"frames": summary["frames"], "events": summary["events"], "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3), "target_s": 1.6, "torch_imported": probe.stdout.strip() == "True"}


def write_long_video(path: pathlib.Path, minutes: float, fps: float) -> int:
    import cv2

    h, w = 480, 640
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.uniform(20, 90, (h, w)).astype(np.float32), (0, 0), 2)
    fg = cv2.GaussianBlur(rng.uniform(120, 240, (h, w)).astype(np.float32), (0, 0), 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    n = int(round(minutes * 60 * fps))
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        phase = i / (fps * 8.0)  # one lap every 8 s
        cx = w / 2 + 220 * np.cos(2 * np.pi * phase)
        cy = h / 2 + 150 * np.sin(2 * np.pi * phase)
        disc = np.clip(60 - np.hypot(xx - cx, yy - cy), 0, 1)
        img = np.clip(bg * (1 - disc) + fg * disc, 0, 255).astype(np.uint8)
        vw.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    vw.release()
    return n


def bench_long(tmp: pathlib.Path, minutes: float, fps: float) -> dict:
    video = tmp / "long.mp4"
    t0 = time.perf_counter()
    n = write_long_video(video, minutes, fps)
    gen_s = time.perf_counter() - t0
    out = tmp / "long.h5"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run([NEUROSIM, "events", "simulate", str(video), "-o", str(out), "--json", "-q"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"simulate failed: {r.stderr}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads(r.stdout)
    return {"video": f"640x480, {minutes:g} min at {fps:g} fps (synthetic)", "frames": n,
            "events": summary["events"], "simulate_wall_s": round(wall, 1), "generate_s": round(gen_s, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1), "rss_measured_in_isolation": before < peak_kb,
            "output_mb": round(out.stat().st_size / 2**20, 1), "target_mb": 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--long-fps", type=float, default=5.0)
    ap.add_argument("--skip-long", action="store_true")
    args = ap.parse_args()

    from sim_events.params import preset

    frames, times = traffic_frames(300)
    calibrated = preset("davis346").replace(
        contrast_threshold_on=0.19, contrast_threshold_off=0.23, threshold_sigma=0.0, refractory_us=1858.0,
        cutoff_hz=300.0, latency_us=3500.0, linlog_dn=80.0, highlight_knee_dn=200.0, highlight_gain=0.5,
        noise_gate_sigmas=8.0, blur_px=0.6, aps_read_noise_dn=1.32, aps_shot_gain=0.0133, jitter_us=0.0,
        shot_noise_rate_hz=0.0, leak_rate_hz=0.0038)
    result: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2)}}
    result["dis_alone"] = bench_dis(frames)
    result["core_davis346"] = bench_core(preset("davis346"), frames, times)
    result["core_calibrated"] = bench_core(calibrated, frames, times)
    result["core_no_interpolation"] = bench_core(preset("davis346").replace(interpolation=False), frames, times)
    result["core_target_fps"] = 300
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        result["end_to_end_300_frames"] = bench_end_to_end(frames, times, tmp)
        if not args.skip_long:
            result["long_video"] = bench_long(tmp, args.minutes, args.long_fps)
    result["machine"]["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
