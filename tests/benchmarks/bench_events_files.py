"""Throughput of the event-file layer: readers, sequence writer/reader, frame sources, scene,
preview rendering. Prints JSON. Run: ``.venv/bin/python tests/benchmarks/bench_events_files.py``.

Timings are best-of-3 CPU time of this process (``time.process_time``): the code is
single-threaded, so on an idle machine this equals wall time, and on a shared, loaded box it
is not inflated by other jobs (wall-clock figures there are much noisier). Each figure names
its unit.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import time

import numpy as np

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> dict:
    from sim_events.formats import read_events
    from sim_events.formats.preview import render_preview
    from sim_events.formats.sequence import SequenceReader, SequenceWriter
    from sim_events.scene import render_scene
    from sim_events.sources import open_frames

    out: dict = {"readers_events_per_s": {}}
    for name in ("prophesee_evt3_sample.raw", "dvxplorer_sample.aedat4", "nmnist_sample.bin", "davis346_traffic_first_half.npz"):
        path = DATA / "events" / name
        if path.is_file():
            n = len(read_events(path)[0])
            out["readers_events_per_s"][name] = round(n / best_of(lambda: read_events(path)))

    rng = np.random.default_rng(0)
    n = 2_000_000
    t = np.sort(rng.integers(0, 2_000_000, n))
    x, y, p = rng.integers(0, 346, n), rng.integers(0, 260, n), rng.random(n) < 0.5
    with tempfile.TemporaryDirectory() as tmp:
        seq = pathlib.Path(tmp) / "bench.h5"
        for comp in ("gzip", "lzf", None):
            def write(comp=comp):
                with SequenceWriter(seq, 346, 260, compression=comp) as w:
                    for a in range(0, n, 10_000):  # 200 chunks, like a simulator's per-frame output
                        w.add_events(x[a:a + 10_000], y[a:a + 10_000], t[a:a + 10_000], p[a:a + 10_000])
            out[f"writer_{comp or 'none'}_events_per_s"] = round(n / best_of(write))
            out[f"writer_{comp or 'none'}_bytes_per_event"] = round(seq.stat().st_size / n, 2)
        write()  # leave a gzip file for the reads below

        def read_windows():
            with SequenceReader(seq) as r:
                for k in range(0, 2_000_000, 10_000):  # 200 windows of 10 ms
                    r.events(k, k + 10_000)
        out["reader_10ms_windows_per_s"] = round(200 / best_of(read_windows))
        out["reader_all_events_per_s"] = round(n / best_of(lambda: SequenceReader(seq).events()))

        scene = render_scene(seed=0)
        out["scene_frames_per_s_346x260"] = round(scene.n_frames / best_of(lambda: [f for _, f in scene]))
        demo_seq = pathlib.Path(tmp) / "scene.h5"
        with SequenceWriter(demo_seq, 346, 260) as w:
            w.add_frames(scene.frames()[::8], scene.frame_t[::8])
            w.add_events(x[:500_000] % 346, y[:500_000] % 260, t[:500_000] // 2, p[:500_000])
        res = {}
        out["render_output_frames_per_s"] = round(
            120 / best_of(lambda: res.update(render_preview(demo_seq, pathlib.Path(tmp) / "p.mp4", fps=120))))

    video = DATA / "video" / "carphone_pristine.mp4"
    if video.is_file():
        out["video_source_frames_per_s_176x144"] = round(120 / best_of(lambda: [f for _, f in open_frames(video)]))
    folder = DATA / "tracking" / "bag"
    if folder.is_dir():
        out["jpeg_folder_frames_per_s_480x360"] = round(196 / best_of(lambda: [f for _, f in open_frames(folder, fps=30)]))
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    print(json.dumps(main(), indent=2))
